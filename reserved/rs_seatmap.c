/*
 * rs_seatmap: the seat map and its cache (contract in rs_seatmap.h).
 *
 * A kept map is exact for its version: the performance's key (its prices and hall, what
 * the map shows of the performances row) and the id of its newest seat event (top). Every
 * change of a seat's state (sold, held, released, freed, whatever code path made it)
 * writes a seat event in the changing transaction, with the seats' states at its commit,
 * its id taken at COMMIT under a lock per performance (migration 110): ids of one
 * performance follow commit order. So a snapshot that sees event N of a performance sees
 * every earlier one, and "the kept map, then the seats of the events above its top, in id
 * order" is the map of the snapshot that read those events. The hall's seats never change
 * once created (no route edits a venue).
 *
 * A read: GET -> kept and checked within SM_PATCH_AGE_MS: DELTA (one statement: the key,
 * the top, the seats of the newer events) -> the same top answers the kept bytes (a hit);
 * a newer one patches them (rs_seatpatch) and answers, also when another read patched the
 * map meanwhile (the rows replay); another key, too many changes, or a map older than the
 * one asked about -> BUILD. Nothing kept (or kept too long unchecked) ->
 * BUILD (the full statement, which returns the version of its own snapshot) -> answer and
 * keep. The age bound keeps a delta away from events the prune could have deleted: those
 * above a top were committed after it was read, and the prune takes only events older
 * than an hour (rs_events). Two misses of one performance at once both build; each answers
 * its own, and the newer of the two is kept (by top, when the keys are the same).
 */
#include "rs_seatmap.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm_log.h"
#include "cm_time.h"
#include "rs_app.h"
#include "rs_dberr.h"
#include "rs_seatlist.h"
#include "rs_seatpatch.h"

#define KEY_MAX 96
#define NUM_LEN 24
/* A kept map checked longer ago than this is built again, not patched (the top comment). */
#define SM_PATCH_AGE_MS (10 * 60 * 1000)
/* A delta with more changed seats than this is built again: past a few thousand rows of
 * events the full statement costs about the same. */
#define SM_DELTA_ROWS 4096

/* What the map shows of the performances row, and the newest seat event: the same
 * expressions in both statements; the newest event by the index seat_events_performance
 * (the pending rows of other transactions are invisible). */
#define SEATMAP_KEY "p.normal_price::text || '/' || p.vip_price::text || '/' || p.venue_id::text"
#define SEATMAP_TOP                                                                                \
    "coalesce((SELECT max(e.id) FROM seat_events e WHERE e.performance_id = $1::bigint), 0)"

static const rs_db_stmt seatmap_stmts[] = {
    /* $2: the kept map's top, echoed; $3: the most changes wanted. The seats of each
     * newer event in id order (a later state of a seat overrides an earlier one). */
    {"seatmap_delta",
     "SELECT $2::bigint, v.key, v.top, d.seat, d.available, d.held "
     "FROM (SELECT " SEATMAP_KEY " AS key, " SEATMAP_TOP " AS top "
     "      FROM performances p WHERE p.id = $1::bigint) v "
     "LEFT JOIN LATERAL (SELECT (x.s->>'id')::bigint AS seat, "
     "       (x.s->>'available')::boolean AS available, (x.s->>'held')::boolean AS held "
     "  FROM seat_events e CROSS JOIN LATERAL "
     "       jsonb_array_elements(e.payload->'seats') WITH ORDINALITY AS x(s, o) "
     "  WHERE e.performance_id = $1::bigint AND e.id > $2::bigint "
     "  ORDER BY e.id, x.o LIMIT $3::int) d ON true",
     3},
    /* The sold seats come from one range of the partial unique index (performance_id =
     * $1), whatever the statistics: a NOT EXISTS per seat was planned as a hashed subplan
     * over every confirmed seat of every performance (63 ms against 4.5 ms on 80,000
     * sold seats). */
    {"seatmap_build",
     "SELECT p.id, s.id, s.row_label, s.number, s.type, "
     "       CASE s.type WHEN 'VIP' THEN p.vip_price ELSE p.normal_price END, "
     "       t.seat_id IS NULL AND h.seat_id IS NULL, s.row_index, s.row_position, "
     "       h.seat_id IS NOT NULL, " SEATMAP_KEY ", " SEATMAP_TOP " "
     "FROM performances p LEFT JOIN venue_seats s ON s.venue_id = p.venue_id "
     "LEFT JOIN reservation_seats t "
     "       ON t.performance_id = $1::bigint AND t.seat_id = s.id AND t.confirmed "
     /* held seats (SPEC §9): one range of hold_seats_one_active, as the sold ones */
     "LEFT JOIN hold_seats h ON h.performance_id = $1::bigint AND h.seat_id = s.id AND h.active "
     "WHERE p.id = $1::bigint ORDER BY s.row_index, s.row_position",
     1},
};
enum { COL_PERF, COL_SEAT, COL_KEY = 10, COL_TOP };
enum { D_SENT, D_KEY, D_TOP, D_SEAT, D_AVAILABLE, D_HELD };

typedef struct sm_entry {
    int64_t perf; /* 0: a free slot */
    char key[KEY_MAX];
    int64_t top;
    uint64_t checked_ms; /* when a statement last confirmed it (cm_now_ms) */
    rs_seatpatch map;
    size_t bytes;  /* rs_seatpatch_bytes at its last store or patch */
    uint64_t used; /* sm.clock at its last hit or store: the smallest goes first */
} sm_entry;

static struct {
    sm_entry e[RS_SEATMAP_CACHE_MAX_ENTRIES];
    size_t bytes;
    uint64_t clock;
    uint64_t hits, patches, misses, evictions;
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
    sm.bytes -= e->bytes;
    rs_seatpatch_free(&e->map);
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

/* Keeps map (taken) as perf's at (key, top); frees it when it cannot be kept, or when the
 * map kept is of the same key and newer (a build answered after a patch went past it). */
static void sm_store(int64_t perf, const char *key, int64_t top, rs_seatpatch *map)
{
    sm_entry *e = sm_find(perf);
    if (e && e->top > top && strcmp(e->key, key) == 0) {
        rs_seatpatch_free(map);
        return;
    }
    if (e)
        sm_drop(e);
    size_t bytes = rs_seatpatch_bytes(map);
    if (bytes > RS_SEATMAP_CACHE_MAX_BYTES || strlen(key) >= KEY_MAX) {
        rs_seatpatch_free(map);
        return;
    }
    while (sm.bytes + bytes > RS_SEATMAP_CACHE_MAX_BYTES || !(e = sm_find(0))) {
        sm_drop(sm_lru());
        sm.evictions++;
    }
    e->perf = perf;
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->top = top;
    e->checked_ms = cm_now_ms();
    e->map = *map;
    e->bytes = bytes;
    e->used = ++sm.clock;
    sm.bytes += bytes;
}

/* Runs stmt on the request's performance id and the other params; 503 when the database
 * cannot take it. */
static void sm_exec(rs_req *r, const char *stmt, int nparams, const char *const *more, rs_db_cb cb)
{
    char id[NUM_LEN];
    snprintf(id, sizeof(id), "%" PRId64, rs_req_id(r, 0));
    const char *params[3] = {id, NULL, NULL};
    for (int i = 1; i < nparams; i++)
        params[i] = more[i - 1];
    if (!rs_db_exec(rs_app_g.db, stmt, nparams, params, cb, r))
        rs_reply_error(r, 503, "UNAVAILABLE", "the database is unavailable");
}

static void not_found(rs_req *r)
{
    rs_reply_error(r, 404, "NOT_FOUND", "performance %" PRId64 " does not exist", rs_req_id(r, 0));
}

static void built(void *arg, const rs_db_result *res);

static void build(rs_req *r)
{
    sm.misses++;
    sm_exec(r, "seatmap_build", 1, NULL, built);
}

static void reply_kept(rs_req *r, sm_entry *e)
{
    e->used = ++sm.clock;
    e->checked_ms = cm_now_ms();
    rs_reply_blob(r, 200, "application/json", e->map.text);
}

static void built(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (rs_dberr_failed(r, res, "a catalogue statement"))
        return;
    int rows = PQntuples(res->pg);
    if (rows == 0) {
        not_found(r);
        return;
    }
    static const rs_seatlist_cols cols = {.id = COL_SEAT,
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
    rs_blob *text = rs_blob_take(sb.data, sb.len);
    if (!text) {
        rs_reply_error(r, 500, "INTERNAL", "out of memory");
        return;
    }
    rs_reply_blob(r, 200, "application/json", text);
    /* the seats in the text's order (the rows with a seat: rs_seatlist_text's) */
    int64_t *ids = malloc((size_t)rows * sizeof(*ids));
    size_t n = 0;
    for (int i = 0; ids && i < rows; i++)
        if (!PQgetisnull(res->pg, i, COL_SEAT))
            ids[n++] = strtoll(PQgetvalue(res->pg, i, COL_SEAT), NULL, 10);
    rs_seatpatch map;
    if (ids && rs_seatpatch_init(&map, text, ids, n))
        sm_store(perf, PQgetvalue(res->pg, 0, COL_KEY),
                 strtoll(PQgetvalue(res->pg, 0, COL_TOP), NULL, 10), &map);
    else if (ids)
        log_warn("seat map of performance %" PRId64 ": its text has not one state per seat; "
                 "not kept",
                 perf);
    rs_blob_unref(text);
    free(ids);
}

/* The kept map's delta: the same top is a hit, a newer one a patch; anything the delta
 * cannot bring exactly goes to the full statement. */
static void deltaed(void *arg, const rs_db_result *res)
{
    rs_req *r = arg;
    if (rs_dberr_failed(r, res, "a catalogue statement"))
        return;
    int64_t perf = rs_req_id(r, 0);
    sm_entry *e = sm_find(perf);
    const PGresult *pg = res->pg;
    int rows = PQntuples(pg);
    if (rows == 0) {
        if (e)
            sm_drop(e);
        not_found(r);
        return;
    }
    /* Another answer may have patched the map since this statement was sent (two reads of
     * one performance at once): its rows are absolute states in id order from the top sent,
     * so replaying all of them over a map at a top between the one sent and the one read
     * leaves every seat at its newest event, as over the map sent. Only a map older than the
     * one sent (replaced by an older build meanwhile) or of another key needs the build. */
    int64_t sent = strtoll(PQgetvalue(pg, 0, D_SENT), NULL, 10);
    if (!e || e->top < sent || strcmp(e->key, PQgetvalue(pg, 0, D_KEY)) != 0 ||
        rows > SM_DELTA_ROWS) {
        build(r);
        return;
    }
    int64_t top = strtoll(PQgetvalue(pg, 0, D_TOP), NULL, 10);
    if (top <= e->top) { /* the kept map is as new as this statement's snapshot, or newer */
        sm.hits++;
        reply_kept(r, e);
        return;
    }
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(pg, i, D_SEAT))
            continue;
        if (!rs_seatpatch_set(&e->map, strtoll(PQgetvalue(pg, i, D_SEAT), NULL, 10),
                              PQgetvalue(pg, i, D_AVAILABLE)[0] == 't',
                              PQgetvalue(pg, i, D_HELD)[0] == 't')) {
            log_warn("seat map of performance %" PRId64 ": an event names a seat not in "
                     "it; built again",
                     perf);
            sm_drop(e);
            build(r);
            return;
        }
    }
    if (!rs_seatpatch_render(&e->map)) {
        sm_drop(e); /* its wanted states are ahead of its text */
        build(r);
        return;
    }
    sm.patches++;
    sm.bytes -= e->bytes;
    e->bytes = rs_seatpatch_bytes(&e->map);
    sm.bytes += e->bytes;
    e->top = top;
    reply_kept(r, e);
}

void rs_seatmap_get(rs_req *r)
{
    sm_entry *e = sm_find(rs_req_id(r, 0));
    if (e && cm_now_ms() - e->checked_ms >= SM_PATCH_AGE_MS) {
        /* dropped, not kept beside the build: after an hour without changes the prune
         * takes the performance's events, and the build's top (0) would lose to it */
        sm_drop(e);
        e = NULL;
    }
    if (!e) {
        build(r);
        return;
    }
    char top[NUM_LEN], limit[NUM_LEN];
    snprintf(top, sizeof(top), "%" PRId64, e->top);
    snprintf(limit, sizeof(limit), "%d", SM_DELTA_ROWS + 1);
    const char *more[] = {top, limit};
    sm_exec(r, "seatmap_delta", 3, more, deltaed);
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
        "# HELP reserved_seatmap_cache_patches_total seat maps answered from the cache "
        "after writing in the seats of newer seat events\n"
        "# TYPE reserved_seatmap_cache_patches_total counter\n"
        "reserved_seatmap_cache_patches_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_misses_total seat maps built (none kept, or kept "
        "but not patchable)\n# TYPE reserved_seatmap_cache_misses_total counter\n"
        "reserved_seatmap_cache_misses_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_evictions_total maps dropped to stay within the "
        "cache's bounds\n# TYPE reserved_seatmap_cache_evictions_total counter\n"
        "reserved_seatmap_cache_evictions_total %" PRIu64 "\n"
        "# HELP reserved_seatmap_cache_entries performances whose map is kept\n"
        "# TYPE reserved_seatmap_cache_entries gauge\nreserved_seatmap_cache_entries %zu\n"
        "# HELP reserved_seatmap_cache_bytes bytes of the kept maps\n"
        "# TYPE reserved_seatmap_cache_bytes gauge\nreserved_seatmap_cache_bytes %zu\n",
        sm.hits, sm.patches, sm.misses, sm.evictions, n, sm.bytes);
}

void rs_seatmap_stop(void)
{
    for (size_t i = 0; i < RS_SEATMAP_CACHE_MAX_ENTRIES; i++)
        if (sm.e[i].perf != 0)
            sm_drop(&sm.e[i]);
}
