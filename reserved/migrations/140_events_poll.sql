-- 140: seat events without NOTIFY. Migration 110's commit step also sent each event as a
-- NOTIFY; reserved now reads seat_events instead (rs_events polls it per performance,
-- after each stream's last id). A transaction that notifies holds one lock for the whole
-- database from before its commit record until the commit ends, WAL flush included, so
-- with it every transaction that changed seats, on any performance, committed one at a
-- time: with 128 clients booking on 50 performances, most active backends were found
-- waiting there. What stays: one finished row per performance and transaction, its id
-- taken at COMMIT under the per-performance advisory lock, which is released only after
-- the commit is visible, so a reader that sees event N of a performance sees every earlier
-- one of it ("events of P after N" is exact).
CREATE OR REPLACE FUNCTION rs_seat_events_commit() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        WITH gone AS (DELETE FROM seat_events e WHERE e.id IS NULL
                      RETURNING e.performance_id, e.seat_ids)
        SELECT g.performance_id, array_agg(DISTINCT s.id ORDER BY s.id) AS seats
          FROM gone g, unnest(g.seat_ids) AS s(id)
         GROUP BY g.performance_id
         ORDER BY hashint8(g.performance_id), g.performance_id
    LOOP
        -- two int4 keys: a lock space of its own (the one-bigint keys are the
        -- Idempotency-Keys' and the migrations')
        PERFORM pg_advisory_xact_lock(110, hashint8(v.performance_id));
        INSERT INTO seat_events (id, performance_id, payload, created_at)
        VALUES (nextval('seat_events_id_seq'), v.performance_id,
                rs_seat_event_payload(v.performance_id, v.seats), clock_timestamp());
    END LOOP;
    RETURN NULL;
END;
$$;
