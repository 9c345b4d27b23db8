-- 110: live seat events (SPEC §8). Every committed change of a seat's state (sold, held,
-- released, freed) becomes a row of seat_events and a NOTIFY on channel rs_seat_events,
-- made by the database itself inside the writing transaction, whatever code path made
-- the change: statement-level triggers (transition tables) on reservation_seats (a booking
-- inserts confirmed rows, a cancel sets confirmed = false) and on hold_seats (a hold
-- inserts active rows, its release, expiry or booking sets active = false). A rolled-back
-- transaction (or savepoint) leaves no event and sends no notification.
--
-- Two steps, because the payload must show the state at COMMIT: rs_book inserts its seats
-- BEFORE it takes them off remaining_capacity (db mode), rs_cancel frees them before it
-- gives the capacity back, and a booking of a hold ends the hold in a later statement.
--   1. each statement's trigger inserts one PENDING row per performance it touched (id and
--      payload NULL, the seat ids in seat_ids);
--   2. a deferred constraint trigger on those rows runs at COMMIT: the first firing of the
--      transaction takes every pending row of it (only the transaction's own are visible
--      with a NULL id) and writes ONE finished event per performance (the seats of all its
--      statements merged), with the final state and capacity, then NOTIFYs it.
-- Ids are taken at commit under a transaction-level advisory lock per performance (held
-- until the commit ends, after the NOTIFY is queued): for one performance, id order is
-- commit order is notification order, even for writers that hold no performance lock
-- (releases and expiries, migration 120). A reader that has seen event N of performance P
-- has seen every earlier event of P: "events of P after N" (Last-Event-ID, reserved's
-- catch-up after a reconnect) is exact. The locks are taken in one order (by key) in one
-- place, so two transactions touching several performances cannot deadlock on them.
--
-- The NOTIFY payload is "<id> <performance id> <commit time, epoch µs>[ <payload JSON>]":
-- the JSON only when it fits well under PostgreSQL's 8000-byte limit (a group booking can
-- change many seats); without it the listener reads the row. Rows are kept
-- rs_seat_events_prune's p_keep_s (reserved: one hour), then deleted a bounded batch at a
-- time.
CREATE SEQUENCE seat_events_id_seq;

CREATE TABLE seat_events (
    -- NULL while the writing transaction runs (a pending row); set at its commit from
    -- seat_events_id_seq, in commit order per performance. Not a bigserial for that reason.
    id             bigint,
    performance_id bigint NOT NULL, -- no foreign key: nothing to check on the booking path
    seat_ids       bigint[],        -- a pending row's changed seats; NULL once finished
    payload        jsonb,           -- SPEC §8: {"performanceId","seats":[{"id","available",
                                    -- "held"}],"remainingCapacity"}; NULL while pending
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(), -- finished: the commit
    CHECK ((id IS NULL) = (payload IS NULL) AND (id IS NULL) = (seat_ids IS NOT NULL))
);
-- Unique ids; also finds a transaction's pending rows (id IS NULL) by index.
CREATE UNIQUE INDEX seat_events_id ON seat_events (id);
-- "events of performance P after id N": replays and catch-ups.
CREATE INDEX seat_events_performance ON seat_events (performance_id, id);

-- The payload of an event: the state of seats p_seats of p_perf as this transaction sees
-- it. available = neither sold (a confirmed reservation_seats row) nor held (an active
-- hold_seats row). Each seat is two index probes (the one-confirmed and one-active
-- indexes).
CREATE FUNCTION rs_seat_event_payload(p_perf bigint, p_seats bigint[]) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan -- as 030: no re-planning per call for the array
AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                   'performanceId', p_perf,
                   'seats', coalesce(jsonb_agg(jsonb_build_object(
                                'id', s.id, 'available', NOT (s.sold OR s.held), 'held', s.held)
                                ORDER BY s.id), '[]'::jsonb),
                   'remainingCapacity',
                   (SELECT p.remaining_capacity FROM performances p WHERE p.id = p_perf))
          FROM (SELECT u.id,
                       EXISTS (SELECT 1 FROM reservation_seats r
                                WHERE r.performance_id = p_perf AND r.seat_id = u.id
                                  AND r.confirmed) AS sold,
                       EXISTS (SELECT 1 FROM hold_seats h
                                WHERE h.performance_id = p_perf AND h.seat_id = u.id
                                  AND h.active) AS held
                  FROM unnest(p_seats) AS u(id)) AS s);
END;
$$;

-- Step 2, at COMMIT (see the top). Later firings of the same transaction find nothing
-- pending and do nothing.
CREATE FUNCTION rs_seat_events_commit() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v         record;
    v_id      bigint;
    v_at      timestamptz;
    v_payload jsonb;
    v_text    text;
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
        v_id := nextval('seat_events_id_seq');
        v_at := clock_timestamp();
        v_payload := rs_seat_event_payload(v.performance_id, v.seats);
        INSERT INTO seat_events (id, performance_id, payload, created_at)
        VALUES (v_id, v.performance_id, v_payload, v_at);
        v_text := v_payload::text;
        PERFORM pg_notify('rs_seat_events',
                          v_id || ' ' || v.performance_id || ' ' ||
                          (extract(epoch FROM v_at) * 1000000)::bigint ||
                          CASE WHEN octet_length(v_text) <= 7000 THEN ' ' || v_text ELSE '' END);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER seat_events_commit AFTER INSERT ON seat_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION rs_seat_events_commit();

-- Step 1 for sales: seats that became confirmed (INSERT), changed (UPDATE) or stopped
-- being confirmed (DELETE), one pending row per performance. One function for the three
-- triggers: each statement below is planned only when its branch runs, so the transition
-- tables a branch names are those of its own trigger.
CREATE FUNCTION rs_seat_events_sales() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT n.performance_id, array_agg(n.seat_id)
          FROM ev_new n WHERE n.confirmed GROUP BY n.performance_id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT n.performance_id, array_agg(n.seat_id)
          FROM ev_new n JOIN ev_old o ON o.reservation_id = n.reservation_id
                                     AND o.seat_id = n.seat_id
         WHERE n.confirmed IS DISTINCT FROM o.confirmed GROUP BY n.performance_id;
    ELSE
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT o.performance_id, array_agg(o.seat_id)
          FROM ev_old o WHERE o.confirmed GROUP BY o.performance_id;
    END IF;
    RETURN NULL;
END;
$$;

-- Named to fire after reservation_seats_holds and reservation_seats_limit (triggers of one
-- event fire in name order): a booking they refuse costs no pending row.
CREATE TRIGGER reservation_seats_seat_events_ins AFTER INSERT ON reservation_seats
    REFERENCING NEW TABLE AS ev_new
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_sales();
CREATE TRIGGER reservation_seats_seat_events_upd AFTER UPDATE ON reservation_seats
    REFERENCING OLD TABLE AS ev_old NEW TABLE AS ev_new
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_sales();
CREATE TRIGGER reservation_seats_seat_events_del AFTER DELETE ON reservation_seats
    REFERENCING OLD TABLE AS ev_old
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_sales();

-- Step 1 for holds: seats whose hold_seats row became active or stopped being active.
CREATE FUNCTION rs_seat_events_holds() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT n.performance_id, array_agg(n.seat_id)
          FROM ev_new n WHERE n.active GROUP BY n.performance_id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT n.performance_id, array_agg(n.seat_id)
          FROM ev_new n JOIN ev_old o ON o.hold_id = n.hold_id AND o.seat_id = n.seat_id
         WHERE n.active IS DISTINCT FROM o.active GROUP BY n.performance_id;
    ELSE
        INSERT INTO seat_events (performance_id, seat_ids)
        SELECT o.performance_id, array_agg(o.seat_id)
          FROM ev_old o WHERE o.active GROUP BY o.performance_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER hold_seats_seat_events_ins AFTER INSERT ON hold_seats
    REFERENCING NEW TABLE AS ev_new
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_holds();
CREATE TRIGGER hold_seats_seat_events_upd AFTER UPDATE ON hold_seats
    REFERENCING OLD TABLE AS ev_old NEW TABLE AS ev_new
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_holds();
CREATE TRIGGER hold_seats_seat_events_del AFTER DELETE ON hold_seats
    REFERENCING OLD TABLE AS ev_old
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seat_events_holds();

-- One bounded prune: of the p_max oldest events, those finished more than p_keep_s ago.
-- Several reserved processes may prune at once: the second waits for the first's rows and
-- finds them gone. Returns how many it deleted (p_max: call again soon).
CREATE FUNCTION rs_seat_events_prune(p_keep_s bigint, p_max integer) RETURNS bigint
LANGUAGE sql AS $$
    WITH first AS (SELECT e.id, e.created_at FROM seat_events e
                    WHERE e.id IS NOT NULL ORDER BY e.id LIMIT p_max),
         old AS (SELECT f.id FROM first f
                  WHERE f.created_at < clock_timestamp() - p_keep_s * interval '1 second'),
         gone AS (DELETE FROM seat_events e USING old WHERE e.id = old.id RETURNING 1)
    SELECT count(*) FROM gone
$$;
