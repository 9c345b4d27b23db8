/*
 * rs_bkphase: the phase names and the table of legal moves (see rs_bkphase.h).
 */
#include "rs_bkphase.h"

#include <assert.h>
#include <inttypes.h>

#include "cm_log.h"

static const char *const bk_phase_names[BK_NPHASES] = {
    [BK_NEW] = "new",
    [BK_IDEM_LOOKUP] = "idem-lookup",
    [BK_RECORDING] = "recording",
    [BK_HEAD] = "head",
    [BK_HOLD_LOOKUP] = "hold-lookup",
    [BK_QUEUED] = "queued",
    [BK_QUEUED_LEASING] = "queued-leasing",
    [BK_QUEUED_BEGINNING] = "queued-beginning",
    [BK_QUEUED_IN_TXN] = "queued-in-txn",
    [BK_GRANTED_BEGINNING] = "granted-beginning",
    [BK_REFUSED_BEGINNING] = "refused-beginning",
    [BK_LEASING] = "leasing",
    [BK_BEGINNING] = "beginning",
    [BK_IN_TXN] = "in-txn",
    [BK_CHARGING] = "charging",
    [BK_BATCHED] = "batched",
    [BK_BATCH_CHARGING] = "batch-charging",
    [BK_COMMITTING] = "committing",
    [BK_UNWINDING] = "unwinding",
    [BK_COMPENSATING] = "compensating",
    [BK_STORING] = "storing",
    [BK_ANSWERED] = "answered",
};

_Static_assert(BK_NPHASES <= 32, "one bit per phase in a uint32_t");
#define TO(p) (1u << (p))
/* Where a booking goes once its transaction is over, its connection back and its lock
 * released (or it never had them): compensate, store the failure, or just answer. */
#define SETTLE (TO(BK_COMPENSATING) | TO(BK_STORING) | TO(BK_ANSWERED))
/* Where it goes for the lock: queued (lockd mode) or straight to a connection (db). */
#define TO_LOCK (TO(BK_QUEUED) | TO(BK_LEASING))

static const uint32_t bk_moves[BK_NPHASES] = {
    [BK_NEW] = TO(BK_IDEM_LOOKUP) | TO(BK_HOLD_LOOKUP) | TO(BK_RECORDING) | TO(BK_HEAD) | TO_LOCK |
               TO(BK_BATCHED) | SETTLE,
    [BK_IDEM_LOOKUP] = TO(BK_HOLD_LOOKUP) | TO(BK_RECORDING) | TO_LOCK | TO(BK_BATCHED) | SETTLE,
    /* a booking of a hold never joins a batch (its claim is a statement of its own) */
    [BK_HOLD_LOOKUP] = TO(BK_RECORDING) | TO_LOCK | SETTLE,
    [BK_RECORDING] = TO_LOCK | TO(BK_BATCHED) | SETTLE,
    [BK_HEAD] = TO_LOCK | SETTLE,
    /* next_in_line; granted; refused */
    [BK_QUEUED] = TO(BK_QUEUED_LEASING) | TO(BK_LEASING) | SETTLE,
    /* no connection (back to plain waiting); the connection; granted; refused */
    [BK_QUEUED_LEASING] = TO(BK_QUEUED) | TO(BK_QUEUED_BEGINNING) | TO(BK_LEASING) | SETTLE,
    /* BEGIN failed; BEGIN done; granted; refused */
    [BK_QUEUED_BEGINNING] =
        TO(BK_QUEUED) | TO(BK_QUEUED_IN_TXN) | TO(BK_GRANTED_BEGINNING) | TO(BK_REFUSED_BEGINNING),
    /* granted; refused */
    [BK_QUEUED_IN_TXN] = TO(BK_IN_TXN) | TO(BK_UNWINDING),
    /* BEGIN done; BEGIN failed: a new lease */
    [BK_GRANTED_BEGINNING] = TO(BK_IN_TXN) | TO(BK_LEASING),
    /* BEGIN done: roll back; BEGIN failed: nothing to roll back */
    [BK_REFUSED_BEGINNING] = TO(BK_UNWINDING) | SETTLE,
    /* the connection; none (or the lock lost meanwhile) */
    [BK_LEASING] = TO(BK_BEGINNING) | SETTLE,
    /* BEGIN done; failed */
    [BK_BEGINNING] = TO(BK_IN_TXN) | SETTLE,
    /* the charge; COMMIT; a failure (ROLLBACK, or the connection given back when even
     * ROLLBACK cannot be sent) */
    [BK_IN_TXN] = TO(BK_CHARGING) | TO(BK_COMMITTING) | TO(BK_UNWINDING) | SETTLE,
    /* the gateway answered: back to statements (or to the unwind from there) */
    [BK_CHARGING] = TO(BK_IN_TXN),
    /* its charge; the batch's transaction is over (committed or not): settle */
    [BK_BATCHED] = TO(BK_BATCH_CHARGING) | SETTLE,
    /* the gateway answered */
    [BK_BATCH_CHARGING] = TO(BK_BATCHED),
    [BK_COMMITTING] = SETTLE,
    [BK_UNWINDING] = SETTLE,
    [BK_COMPENSATING] = TO(BK_STORING) | TO(BK_ANSWERED),
    [BK_STORING] = TO(BK_ANSWERED),
    [BK_ANSWERED] = 0,
};

#define CONN_PHASES                                                                                \
    (TO(BK_QUEUED_BEGINNING) | TO(BK_QUEUED_IN_TXN) | TO(BK_GRANTED_BEGINNING) |                   \
     TO(BK_REFUSED_BEGINNING) | TO(BK_BEGINNING) | TO(BK_IN_TXN) | TO(BK_CHARGING) |               \
     TO(BK_COMMITTING) | TO(BK_UNWINDING))

const char *rs_bk_phase_name(rs_bk_phase p)
{
    return p < BK_NPHASES ? bk_phase_names[p] : "?";
}

bool rs_bk_phase_legal(rs_bk_phase from, rs_bk_phase to)
{
    return from < BK_NPHASES && to < BK_NPHASES && (bk_moves[from] & TO(to)) != 0;
}

bool rs_bk_phase_has_conn(rs_bk_phase p)
{
    return p < BK_NPHASES && (CONN_PHASES & TO(p)) != 0;
}

void rs_bk_phase_move(rs_bk_phase *p, rs_bk_phase to, const char *what, uint64_t id)
{
    log_debug("%s %" PRIu64 ": %s -> %s", what, id, rs_bk_phase_name(*p), rs_bk_phase_name(to));
    assert(rs_bk_phase_legal(*p, to));
    *p = to;
}
