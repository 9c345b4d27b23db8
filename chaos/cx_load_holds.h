/*
 * cx_load_holds: the seat-hold ops of chaos_load's booking clients (SPEC §9, issue 14 §2).
 * A share of each load client's ops on the hot performance become hold ops: take a hold of
 * seats the client last saw free (POST /performances/{id}/holds), then, on later ops of the
 * same client, book it ({"holdId"}), release it (DELETE /holds/{id}) or leave it to expire.
 * The holds are the caller's: chaos_load sends the admin's token, so every hold is the
 * admin's while the ordinary bookings are for --users: "held by one, sold to another" is
 * what the other clients' bookings try (cx_holds_target aims some of them at held seats).
 *
 * Owns: one hold state per client and the free-seat view of the hot performance (both
 * freed by cx_holds_free). Every hold op is one history line (cx_hwriter), written when it
 * ends: op "hold" | "release" | "book" with "hold" (see chaos.md for the fields).
 *
 * Determinism: cx_holds_next draws the same number of values from the client's PRNG on
 * every call, whatever it decides; only what the servers answered changes the decisions.
 */
#ifndef CX_LOAD_HOLDS_H
#define CX_LOAD_HOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cm_httpc.h"
#include "cx_history_writer.h"
#include "lg_driver.h"
#include "lg_seatmap.h"

#define CX_HOLD_MAX_SEATS 3

typedef struct cx_holds cx_holds;

/* A reservation made by booking a hold (to be offered to the cancels). */
typedef struct cx_hold_booked {
    long long id, perf, user;
    long long seats[CX_HOLD_MAX_SEATS];
    int nseats;
} cx_hold_booked;

/* share_pct: the share (0..100) of an idle client's ops that take a hold, and of a holding
 * client's ops that act on its hold. hot: the performance, map its seats (borrowed, must
 * outlive the cx_holds). NULL when out of memory. */
cx_holds *cx_holds_new(cx_hwriter *hist, uint32_t clients, long long hot, const lg_seatmap *map,
                       unsigned share_pct);
void cx_holds_free(cx_holds *h);

/* A seat map of the hot performance as a read answered it: the free-seat view. */
void cx_holds_seen_map(cx_holds *h, const char *body, size_t len);

/* Draws the hold dice of the client's op; true when the op is a hold op (req filled, the
 * client's op is then cx_holds' until cx_holds_answered). */
bool cx_holds_next(cx_holds *h, uint32_t client, uint64_t *rng, lg_request *req);

/* The answer of the client's hold op (resp NULL: abandoned at the stop, outcome unknown):
 * writes its history line (op_id, start_ms, server as chaos_load numbered them). True when a
 * booking by holdId was acknowledged: *booked says what. */
bool cx_holds_answered(cx_holds *h, uint32_t client, const cm_httpc_resp *resp, uint64_t op_id,
                       uint64_t start_ms, const char *server, cx_hold_booked *booked);

/* The seats of some client's acknowledged, still held hold (chosen by pick), for a booking
 * by another user to aim at; false when no hold is held. */
bool cx_holds_target(const cx_holds *h, uint64_t pick, long long *seats, int *nseats);

/* Ops by kind so far, for the summary line: "holds=N held=N booked=N released=N left=N". */
void cx_holds_summary(const cx_holds *h, char *buf, size_t len);

#endif
