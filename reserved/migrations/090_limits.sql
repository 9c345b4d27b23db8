-- 090: limits against hoarding (issue 13 §2, SPEC §6a).
--
-- The purchase limit: a user's seats in CONFIRMED reservations of one performance may not
-- go above the session setting rs.max_seats_per_user (reserved sets it on every pooled
-- connection from limits.max_seats_per_user_per_performance; a session that does not set
-- it, psql or a migration, is not limited). The check is a statement-level trigger on
-- reservation_seats, so every writer of seats is covered at once, inside its own
-- transaction and under whatever lock it holds (the performance row lock in db mode, the
-- lockd lock and its fence otherwise):
--   rs_book: its seat INSERT raises, the booking is refused (reserved rolls it back);
--   rs_book_batch (060): the batch's one seat INSERT raises, its block is rolled back and
--     the batch is booked again one savepoint per request (rs_book_batch_each, 050), where
--     only the request over the limit raises: the others commit;
--   rs_book_batch_each: its savepoint per request, as rs_book.
-- It raises SQLSTATE RBLIM (409 LIMIT_EXCEEDED in rs_bk) with DETAIL
-- '<limit>,<seats the user had before>,<seats asked>'.
-- Held seats (SPEC §9) do not exist yet: when they do, they count too (see "has" below).
CREATE INDEX reservations_user_perf_confirmed
    ON reservations (user_id, performance_id) WHERE status = 'CONFIRMED';

CREATE FUNCTION rs_seats_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_max integer := nullif(current_setting('rs.max_seats_per_user', true), '')::integer;
    v     record;
BEGIN
    IF v_max IS NULL OR v_max <= 0 THEN
        RETURN NULL;
    END IF;
    -- per (user, performance) of the inserted confirmed seats: how many were asked here,
    -- and how many the user now has (the inserted ones included: the count runs after
    -- the INSERT, in its transaction). Held seats (SPEC §9), when they exist: the user's
    -- live holds on the performance are added to "has", except the hold being booked
    -- (its seats are the inserted ones).
    FOR v IN
        SELECT a.user_id, a.performance_id, a.asked,
               (SELECT count(*) FROM reservations r
                  JOIN reservation_seats s ON s.reservation_id = r.id AND s.confirmed
                 WHERE r.user_id = a.user_id AND r.performance_id = a.performance_id
                   AND r.status = 'CONFIRMED') AS has
          FROM (SELECT r.user_id, n.performance_id, count(*) AS asked
                  FROM rs_new_seats n JOIN reservations r ON r.id = n.reservation_id
                 WHERE n.confirmed AND r.status = 'CONFIRMED'
                 GROUP BY r.user_id, n.performance_id) AS a
         ORDER BY a.user_id, a.performance_id
    LOOP
        IF v.has > v_max THEN
            RAISE EXCEPTION 'user % would have % seats of performance %, at most % allowed',
                            v.user_id, v.has, v.performance_id, v_max
                USING ERRCODE = 'RBLIM',
                      DETAIL = format('%s,%s,%s', v_max, v.has - v.asked, v.asked);
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservation_seats_limit AFTER INSERT ON reservation_seats
    REFERENCING NEW TABLE AS rs_new_seats
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seats_limit();

-- Idempotency-Key records are kept idempotency.ttl_s, then deleted by rs_sweep: it walks
-- them by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- One bounded sweep: at most p_max expired Idempotency-Key records and at most p_max
-- expired login sessions (the table comes with migration 080; without it only the keys
-- are swept). SKIP LOCKED: several reserved processes sweeping at once never wait for
-- each other, each deletes rows the others did not take. Returns what it deleted.
CREATE FUNCTION rs_sweep(p_ttl_s bigint, p_max integer, OUT keys bigint, OUT sessions bigint)
LANGUAGE plpgsql AS $$
BEGIN
    WITH old AS (SELECT k.key FROM idempotency_keys k
                  WHERE k.created_at < now() - p_ttl_s * interval '1 second'
                  ORDER BY k.created_at LIMIT p_max FOR UPDATE SKIP LOCKED),
         gone AS (DELETE FROM idempotency_keys k USING old WHERE k.key = old.key RETURNING 1)
    SELECT count(*) INTO keys FROM gone;
    sessions := 0;
    IF to_regclass('sessions') IS NOT NULL THEN
        EXECUTE 'WITH old AS (SELECT ctid FROM sessions WHERE expires_at < now()'
                ' LIMIT $1 FOR UPDATE SKIP LOCKED),'
                ' gone AS (DELETE FROM sessions s USING old WHERE s.ctid = old.ctid RETURNING 1)'
                ' SELECT count(*) FROM gone'
           INTO sessions USING p_max;
    END IF;
END;
$$;
