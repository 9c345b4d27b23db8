/*
 * rs_seatmap: the seat map and its cache (contract in rs_seatmap.h).
 *
 * The version of a performance's map is "<xmin of its performances row>:<id of its newest
 * seat event>". The row holds the prices (PATCH) and is rewritten by every booking; every
 * change of a seat's state (sold, held, released, freed, whatever code path made it)
 * writes a seat event in the changing transaction, its id taken at COMMIT under a lock
 * per performance (migration 110): ids of one performance follow commit order. So two
 * snapshots that see the same newest event and the same row version see the same seats:
 * a change committed between them would have taken an id above the newest. The hall's
 * seats never change once created (no route edits a venue). The full statement returns
 * the version of its own snapshot, so a cached body is exactly the state of its version.
 *
 * A read: GET -> VERSION (the probe) -> a hit answers the cached bytes; a miss -> BUILD
 * (the full statement) -> answer, and keep the bytes. Two misses of one performance at
 * once both build (the later result replaces the earlier: the probe decides what is
 * served, never the order the builds end in).
 */
#include "rs_seatmap.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "rs_app.h"
#include "rs_dberr.h"
#include "rs_seatlist.h"

#define VERSION_MAX 64
#define NUM_LEN     24

/* The version, the same expression in both statements; the newest event by the index
 * seat_events_performance (the pending rows of other transactions are invisible). */
#define SEATMAP_VERSION                                                                            \
    "p.xmin::text || ':' || coalesce((SELECT max(e.id) FROM seat_events e "                        \
    "WHERE e.performance_id = $1::bigint), 0)"

static const rs_db_stmt seatmap_stmts[] = {
    {"seatmap_version", "SELECT " SEATMAP_VERSION " FROM performances p WHERE p.id = $1::bigint",
     1},
    /* The sold seats come from one range of the partial unique index (performance_id =
     * $1), whatever the statistics: a NOT EXISTS per seat was planned as a hashed subplan
     * over every confirmed seat of every performance (63 ms against 4.5 ms on 80,000
     * sold seats). */
    {"seatmap_build",
     "SELECT p.id, s.id, s.row_label, s.number, s.type, "
     "       CASE s.type WHEN 'VIP' THEN p.vip_price ELSE p.normal_price END, "
     "       t.seat_id IS NULL AND h.seat_id IS NULL, s.row_index, s.row_position, "
     "       h.seat_id IS NOT NULL, " SEATMAP_VERSION " "
     "FROM performances p LEFT JOIN venue_seats s ON s.venue_id = p.venue_id "
     "LEFT JOIN reservation_seats t "
     "       ON t.performance_id = $1::bigint AND t.seat_id = s.id AND t.confirmed "
     /* held seats (SPEC §9): one range of hold_seats_one_active, as the sold ones */
     "LEFT JOIN hold_seats h ON h.performance_id = $1::bigint AND h.seat_id = s.id AND h.active "
     "WHERE p.id = $1::bigint ORDER BY s.row_index, s.row_position",
     1},
};
enum { COL_PERF, COL_VERSION = 10 };

typedef struct sm_entry {
    int64_t perf; /* 0: a free slot */
    char version[VERSION_MAX];
    char *body;
    size_t len;
    uint64_t used; /* sm.clock at its last hit or store: the smallest goes first */
} sm_entry;

static struct {
    sm_entry e[RS_SEATMAP_CACHE_MAX_ENTRIES];
    size_t bytes;
    uint64_t clock;
    uint64_t hits, misses, evictions;
} sm;

void rs_seatmap_register(rs_db *db)
{
    rs_db_register(db, seatmap_stmts, sizeof(seatmap_stmts) / sizeof(seatmap_stmts[0]));
}

static sm_entry *sm_find(int64_t perf)
{
    for (size_t i = 0; i < RS_SEATMAP_CACHE_MAX_ENTRIES; i++)
        if (sm.e[i].perf == perf)
            return &sm.e[i];
    return NULL;
}

static void sm_drop(sm_entry *e)
{
    sm.bytes -= e->len;
    free(e->body);
    memset(e, 0, sizeof(*e));
}

static sm_entry *sm_lru(void)
{
    sm_entry *old = NULL;
    for (size_t i = 0; i < RS_SEATMAP_CACHE_MAX_ENTRIES; i++)
        if (sm.e[i].perf != 0 && (!old || sm.e[i].used < old->used))
            old = &sm.e[i];
    return old;
}

/* Keeps body (taken) as perf's map at version; frees it when it cannot be kept. */
static void sm_store(int64_t perf, const char *version, char *body, size_t len)
{
    sm_entry *e = sm_find(perf);
    if (e)
        sm_drop(e);
    if (len > RS_SEATMAP_CACHE_MAX_BYTES || strlen(version) >= VERSION_MAX) {
        free(body);
        return;
    }
    while (sm.bytes + len > RS_SEATMAP_CACHE_MAX_BYTES || !(e = sm_find(0))) {
        sm_drop(sm_lru());
        sm.evictions++;
    }
    e->perf = perf;
    snprintf(e->version, sizeof(e->version), "%s", version);
    e->body = body;
    e->len = len;
    e->used = ++sm.clock;
    sm.bytes += len;
}

/* Runs stmt on the request's performance id; 503 when the database cannot take it. */
static void sm_exec(rs_req *r, const char *stmt, rs_db_cb cb)
{
    char id[NUM_LEN];
    snprintf(id, sizeof(id), "%" PRId64, rs_req_id(r, 0));
    const char *params[] = {id};
    if (!rs_db_exec(rs_app_g.db, stmt, 1, params, cb, r))
        rs_reply_error(r, 503, "UNAVAILABLE", "the database is unavailable");
}

static void not_found(rs_req *r)
{
    rs_reply_error(r, 404, "NOT_FOUND", "performance %" PRId64 " does not exist", rs_req_id(r, 0));
}

static void built(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (rs_dberr_failed(r, res, "a catalogue statement"))
        return;
    if (PQntuples(res->pg) == 0) {
        not_found(r);
        return;
    }
    static const rs_seatlist_cols cols = {.id = 1,
                                          .row = 2,
                                          .number = 3,
                                          .type = 4,
                                          .price = 5,
                                          .available = 6,
                                          .row_index = 7,
                                          .position = 8,
                                          .held = 9};
    int64_t perf = strtoll(PQgetvalue(res->pg, 0, COL_PERF), NULL, 10);
    /* written as text straight from the rows: with a JSON value per field, their dump and
     * their frees, building maps took three quarters of reserved's CPU in the mixed
     * benchmark (perf) */
    cm_strbuf sb = CM_STRBUF_INIT;
    cm_strbuf_printf(&sb, "{\"performanceId\":%" PRId64 ",\"seats\":", perf);
    rs_seatlist_text(res->pg, &cols, &sb);
    cm_strbuf_append(&sb, "}", 1);
    rs_reply_text(r, 200, "application/json", sb.data, sb.len);
    sm_store(perf, PQgetvalue(res->pg, 0, COL_VERSION), sb.data, sb.len); /* takes sb.data */
}

static void versioned(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (rs_dberr_failed(r, res, "a catalogue statement"))
        return;
    int64_t perf = rs_req_id(r, 0);
    sm_entry *e = sm_find(perf);
    if (PQntuples(res->pg) == 0) {
        if (e)
            sm_drop(e);
        not_found(r);
        return;
    }
    if (e && strcmp(e->version, PQgetvalue(res->pg, 0, 0)) == 0) {
        sm.hits++;
        e->used = ++sm.clock;
        rs_reply_text(r, 200, "application/json", e->body, e->len);
        return;
    }
    sm.misses++;
    sm_exec(r, "seatmap_build", built);
}

void rs_seatmap_get(rs_req *r)
{
    sm_exec(r, "seatmap_version", versioned);
}

void rs_seatmap_metrics(cm_strbuf *out)
{
    size_t n = 0;
    for (size_t i = 0; i < RS_SEATMAP_CACHE_MAX_ENTRIES; i++)
        n += sm.e[i].perf != 0;
    cm_strbuf_printf(
        out,
        "# HELP reserved_seatmap_cache_hits_total seat maps answered from the cache (the "
        "database's version matched)\n# TYPE reserved_seatmap_cache_hits_total counter\n"
        "reserved_seatmap_cache_hits_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_misses_total seat maps built (none kept, or an older "
        "version)\n# TYPE reserved_seatmap_cache_misses_total counter\n"
        "reserved_seatmap_cache_misses_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_evictions_total maps dropped to stay within the "
        "cache's bounds\n# TYPE reserved_seatmap_cache_evictions_total counter\n"
        "reserved_seatmap_cache_evictions_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_entries performances whose map is kept\n"
        "# TYPE reserved_seatmap_cache_entries gauge\nreserved_seatmap_cache_entries %zu\n"
        "# HELP reserved_seatmap_cache_bytes bytes of the kept maps\n"
        "# TYPE reserved_seatmap_cache_bytes gauge\nreserved_seatmap_cache_bytes %zu\n",
        sm.hits, sm.misses, sm.evictions, n, sm.bytes);
}

void rs_seatmap_stop(void)
{
    for (size_t i = 0; i < RS_SEATMAP_CACHE_MAX_ENTRIES; i++)
        if (sm.e[i].perf != 0)
            sm_drop(&sm.e[i]);
}
