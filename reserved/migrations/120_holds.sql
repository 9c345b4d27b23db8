-- 120: the rules of seat holds (SPEC §9) on migration 100's tables.
--
-- A seat is held while its hold_seats row is active; a hold's status and its seats'
-- active flags change together, in one transaction, so "ACTIVE" and "its seats active"
-- mean the same. Every change goes through hold_seats rows (the seat events of migration
-- 110 are triggers on them). Who writes:
--   rs_hold_take     a new hold, under the performance lock: the performance row FOR
--                    UPDATE in db mode, the fence of the lockd lock otherwise (as rs_book);
--   the trigger      reservation_seats_holds: a booking of a seat another user holds is
--                    refused (RBTAK, as a sold seat), a booking of seats the user holds
--                    itself consumes those holds (BOOKED). Every booking path is covered at
--                    once: rs_book (db and lockd mode), rs_book_batch (its one seat INSERT
--                    raises, and the batch is booked again one savepoint per request, where
--                    only the offending request is refused) and rs_book_batch_each;
--   rs_book_hold     a booking with {"holdId"}: the hold must still be ACTIVE and not past
--                    expires_at (RBHEX: 409 HOLD_EXPIRED), then rs_book books its seats
--                    (and the trigger consumes it);
--   rs_hold_release  DELETE /holds/{id}: RELEASED;
--   rs_hold_expire   the sweeper of every reserved process: EXPIRED, a bounded batch at a
--                    time, SKIP LOCKED (two sweepers never wait for each other nor expire
--                    one hold twice: the second finds it no longer ACTIVE).
-- Freeing (release, expiry, consumption) needs no performance lock: it makes no seat
-- taken. Row locks are taken holds first, then hold_seats, everywhere.
-- New SQLSTATEs: RBHEX (409 HOLD_EXPIRED), RBH04 (404: no such hold for this caller).

-- The reservation that consumed a BOOKED hold (reservation_seats_holds): 050's
-- rs_book_undo, which takes a booking back inside a batch's transaction, gives the hold
-- back with it (below). No foreign key: the undo deletes the reservation.
ALTER TABLE holds ADD COLUMN booked_by bigint;

-- What the purchase limit counts of a user on a performance: its seats in CONFIRMED
-- reservations and the seats of its ACTIVE holds.
CREATE FUNCTION rs_user_seats(p_user bigint, p_perf bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM reservations r
              JOIN reservation_seats s ON s.reservation_id = r.id AND s.confirmed
             WHERE r.user_id = p_user AND r.performance_id = p_perf AND r.status = 'CONFIRMED')
         + (SELECT count(*) FROM holds h JOIN hold_seats hs ON hs.hold_id = h.id AND hs.active
             WHERE h.user_id = p_user AND h.performance_id = p_perf AND h.status = 'ACTIVE')
$$;

-- The purchase limit (090) counts the user's held seats too (rs_user_seats, the inserted
-- seats included: it runs after the INSERT, in its transaction). The hold being booked
-- is not counted twice: reservation_seats_holds runs first (the triggers of one event
-- fire in name order: "holds" < "limit") and has already made it BOOKED. Same SQLSTATE
-- and DETAIL as 090's.
CREATE OR REPLACE FUNCTION rs_seats_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_max integer := nullif(current_setting('rs.max_seats_per_user', true), '')::integer;
    v     record;
    v_has bigint;
BEGIN
    IF coalesce(v_max, 0) <= 0 THEN
        RETURN NULL;
    END IF;
    FOR v IN SELECT r.user_id AS usr, n.performance_id AS perf, count(*) AS asked
               FROM rs_new_seats n JOIN reservations r ON r.id = n.reservation_id
              WHERE n.confirmed AND r.status = 'CONFIRMED'
              GROUP BY 1, 2 ORDER BY 1, 2
    LOOP
        v_has := rs_user_seats(v.usr, v.perf);
        CONTINUE WHEN v_has <= v_max;
        RAISE EXCEPTION 'user % would have % seats of performance %, at most % allowed',
                        v.usr, v_has, v.perf, v_max
            USING ERRCODE = 'RBLIM', DETAIL = format('%s,%s,%s', v_max, v_has - v.asked, v.asked);
    END LOOP;
    RETURN NULL;
END;
$$;

-- Bookings respect holds (see the top). Statement level, over the inserted seats: a seat
-- held by another user than the reservation's raises RBTAK with DETAIL the seat ids (a
-- booking's SEAT_TAKEN); the user's own holds among them end BOOKED, all their seats
-- inactive (a hold is taken whole: booking part of it gives the rest back).
CREATE FUNCTION rs_seats_holds() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_bad   text;
    v_holds bigint[]; -- the user's own holds among the inserted seats, one entry a seat
    v_by    bigint[]; -- the reservation that books each of those seats
BEGIN
    SELECT string_agg(n.seat_id::text, ',' ORDER BY n.seat_id) FILTER (WHERE h.user_id <> r.user_id),
           array_agg(h.id) FILTER (WHERE h.user_id = r.user_id),
           array_agg(r.id) FILTER (WHERE h.user_id = r.user_id)
      INTO v_bad, v_holds, v_by
      FROM rs_new_seats n
      JOIN hold_seats hs ON hs.performance_id = n.performance_id AND hs.seat_id = n.seat_id
                        AND hs.active
      JOIN holds h ON h.id = hs.hold_id
      JOIN reservations r ON r.id = n.reservation_id
     WHERE n.confirmed;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'seats held by another user: %', v_bad
            USING ERRCODE = 'RBTAK', DETAIL = v_bad;
    END IF;
    IF v_holds IS NOT NULL THEN
        WITH c AS (SELECT DISTINCT ON (x.hold) x.hold, x.res
                     FROM unnest(v_holds, v_by) AS x(hold, res) ORDER BY x.hold, x.res),
             b AS (UPDATE holds h SET status = 'BOOKED', ended_at = clock_timestamp(),
                                      booked_by = c.res
                     FROM c WHERE h.id = c.hold AND h.status = 'ACTIVE' RETURNING h.id)
        UPDATE hold_seats SET active = false WHERE hold_id IN (SELECT id FROM b) AND active;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservation_seats_holds AFTER INSERT ON reservation_seats
    REFERENCING NEW TABLE AS rs_new_seats
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seats_holds();

-- One hold as the API shows it (rs_holds.c reads these columns): id, performance, user,
-- status, expiresAt (RFC 3339), the seat ids ("1,2,3", by id).
CREATE FUNCTION rs_hold_row(p_hold bigint)
RETURNS TABLE (id bigint, performance_id bigint, user_id bigint, status text,
               expires_at text, seat_ids text)
LANGUAGE sql STABLE AS $$
    SELECT h.id, h.performance_id, h.user_id, h.status, rs_rfc3339(h.expires_at),
           (SELECT string_agg(hs.seat_id::text, ',' ORDER BY hs.seat_id)
              FROM hold_seats hs WHERE hs.hold_id = h.id)
      FROM holds h WHERE h.id = p_hold
$$;

-- A new hold of p_seats for p_user, for p_ttl_s seconds. The lock and the checks are
-- rs_book's, in rs_book's order and with its SQLSTATEs (RBP04, RBFEN, RBU04, RBSEA, RBTAK
-- for a seat sold or held by anyone, the caller included), then the purchase limit
-- (RBLIM, DETAIL as 090's: the user's confirmed and held seats plus these may not pass
-- rs.max_seats_per_user). The fence is stored like a booking's; no capacity changes (a
-- held seat is not sold). expires_at from the clock, not now(): the transaction may have
-- begun while the booking machine waited for the lock.
CREATE FUNCTION rs_hold_take(p_perf bigint, p_user bigint, p_seats bigint[], p_fence numeric,
                             p_lock_rows boolean, p_ttl_s bigint)
RETURNS TABLE (id bigint, performance_id bigint, user_id bigint, status text,
               expires_at text, seat_ids text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_venue   bigint;
    v_outside text;
    v_taken   text;
    v_max     integer := nullif(current_setting('rs.max_seats_per_user', true), '')::integer;
    v_has     bigint;
    v_n       integer := cardinality(p_seats);
    v_id      bigint;
BEGIN
    -- the lock: the row in db mode, the fence (SPEC §4) otherwise; no row: which one
    IF p_lock_rows THEN
        SELECT p.venue_id INTO v_venue FROM performances p WHERE p.id = p_perf FOR UPDATE;
    ELSE
        UPDATE performances p SET last_fence = p_fence
         WHERE p.id = p_perf AND p.last_fence <= p_fence RETURNING p.venue_id INTO v_venue;
    END IF;
    IF v_venue IS NULL THEN
        RAISE EXCEPTION 'performance % not found, or fence % is stale', p_perf, p_fence
            USING ERRCODE = CASE WHEN EXISTS (SELECT 1 FROM performances p WHERE p.id = p_perf)
                                 THEN 'RBFEN' ELSE 'RBP04' END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p_user) THEN
        RAISE EXCEPTION 'user % not found', p_user USING ERRCODE = 'RBU04';
    END IF;
    -- every asked seat once: in the venue? sold or held (by anyone)?
    SELECT string_agg(a.s::text, ',' ORDER BY a.s) FILTER (WHERE NOT a.here),
           string_agg(a.s::text, ',' ORDER BY a.s) FILTER (WHERE a.here AND a.taken)
      INTO v_outside, v_taken
      FROM (SELECT x AS s,
                   EXISTS (SELECT 1 FROM venue_seats vs WHERE vs.id = x AND vs.venue_id = v_venue)
                       AS here,
                   EXISTS (SELECT 1 FROM reservation_seats rs
                            WHERE rs.performance_id = p_perf AND rs.seat_id = x AND rs.confirmed)
                   OR EXISTS (SELECT 1 FROM hold_seats hs
                               WHERE hs.performance_id = p_perf AND hs.seat_id = x AND hs.active)
                       AS taken
              FROM unnest(p_seats) AS x) AS a;
    IF v_outside IS NOT NULL THEN
        RAISE EXCEPTION 'seats not in the venue of performance %: %', p_perf, v_outside
            USING ERRCODE = 'RBSEA', DETAIL = v_outside;
    END IF;
    IF v_taken IS NOT NULL THEN
        RAISE EXCEPTION 'seats sold or held: %', v_taken USING ERRCODE = 'RBTAK', DETAIL = v_taken;
    END IF;
    IF v_max > 0 THEN -- NULL (no limit) is not
        v_has := rs_user_seats(p_user, p_perf);
        IF v_has + v_n > v_max THEN
            RAISE EXCEPTION 'user % would have % seats of performance %, at most % allowed',
                            p_user, v_has + v_n, p_perf, v_max
                USING ERRCODE = 'RBLIM', DETAIL = format('%s,%s,%s', v_max, v_has, v_n);
        END IF;
    END IF;
    INSERT INTO holds (performance_id, user_id, expires_at, fence)
    VALUES (p_perf, p_user,
            date_trunc('milliseconds', clock_timestamp() + p_ttl_s * interval '1 second'),
            CASE WHEN p_lock_rows THEN NULL ELSE p_fence END)
    RETURNING holds.id INTO v_id;
    INSERT INTO hold_seats (hold_id, performance_id, seat_id)
    SELECT v_id, p_perf, s FROM unnest(p_seats) AS s;
    RETURN QUERY SELECT * FROM rs_hold_row(v_id);
END;
$$;

-- The check of a booking with {"holdId"}, inside its transaction, before rs_book: in db
-- mode under the performance row lock first (the order of every booking), then the hold's
-- row lock (the sweeper skips it from now on). The hold must be p_user's and
-- p_perf's (RBH04), ACTIVE and not past expires_at, and hold exactly p_seats (RBHEX).
CREATE FUNCTION rs_hold_claim(p_hold bigint, p_perf bigint, p_user bigint, p_seats bigint[],
                              p_lock_rows boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_hold holds%ROWTYPE;
BEGIN
    IF p_lock_rows THEN
        PERFORM 1 FROM performances WHERE id = p_perf FOR UPDATE;
    END IF;
    SELECT * INTO v_hold FROM holds WHERE id = p_hold FOR UPDATE;
    IF NOT FOUND OR v_hold.performance_id <> p_perf OR v_hold.user_id <> p_user THEN
        RAISE EXCEPTION 'hold % not found', p_hold USING ERRCODE = 'RBH04';
    END IF;
    IF v_hold.status <> 'ACTIVE' OR v_hold.expires_at <= clock_timestamp()
       OR (SELECT array_agg(seat_id ORDER BY seat_id) FROM hold_seats WHERE hold_id = p_hold)
          IS DISTINCT FROM (SELECT array_agg(s ORDER BY s) FROM unnest(p_seats) AS s) THEN
        RAISE EXCEPTION 'hold % is %', p_hold,
                        CASE WHEN v_hold.status = 'ACTIVE' THEN 'past its expiry'
                             ELSE lower(v_hold.status) END
            USING ERRCODE = 'RBHEX';
    END IF;
END;
$$;

-- rs_book (and rs_book_read) for a booking with {"holdId"}: the claim, then the booking,
-- whose seat INSERT consumes the hold (reservation_seats_holds).
CREATE FUNCTION rs_book_hold(p_hold bigint, p_perf bigint, p_user bigint, p_seats bigint[],
                             p_fence numeric, p_lock_rows boolean, p_reference text,
                             OUT reservation_id bigint, OUT total bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rs_hold_claim(p_hold, p_perf, p_user, p_seats, p_lock_rows);
    SELECT b.reservation_id, b.total INTO reservation_id, total
      FROM rs_book(p_perf, p_user, p_seats, p_fence, p_lock_rows, p_reference) AS b;
END;
$$;

CREATE FUNCTION rs_book_hold_read(p_hold bigint, p_perf bigint, p_user bigint,
                                  p_seats bigint[], p_fence numeric, p_lock_rows boolean,
                                  p_reference text)
RETURNS TABLE (o_id bigint, o_user bigint, o_perf bigint, o_status text, o_normal bigint,
               o_vip bigint, o_total bigint, o_payment text, o_created text, o_seat bigint,
               o_row text, o_number integer, o_type text, o_price bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rs_hold_claim(p_hold, p_perf, p_user, p_seats, p_lock_rows);
    RETURN QUERY SELECT * FROM rs_book_read(p_perf, p_user, p_seats, p_fence, p_lock_rows,
                                            p_reference);
END;
$$;

-- DELETE /holds/{id}: an ACTIVE hold of p_owner (any owner when NULL: an admin) becomes
-- RELEASED and its seats free. The hold as it stands after (any status: a second DELETE
-- gets the same answer), with whether this call released it; no row: no such hold of
-- p_owner.
CREATE FUNCTION rs_hold_release(p_hold bigint, p_owner bigint)
RETURNS TABLE (id bigint, performance_id bigint, user_id bigint, status text,
               expires_at text, seat_ids text, released boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_released boolean;
BEGIN
    WITH r AS (UPDATE holds h SET status = 'RELEASED', ended_at = clock_timestamp()
                WHERE h.id = p_hold AND h.status = 'ACTIVE'
                  AND (p_owner IS NULL OR h.user_id = p_owner)
               RETURNING h.id),
         s AS (UPDATE hold_seats hs SET active = false
                WHERE hs.hold_id IN (SELECT r.id FROM r) AND hs.active)
    SELECT EXISTS (SELECT 1 FROM r) INTO v_released; -- s runs all the same (a data-modifying WITH)
    RETURN QUERY SELECT x.*, v_released FROM rs_hold_row(p_hold) AS x
                  WHERE p_owner IS NULL OR x.user_id = p_owner;
END;
$$;

-- The sweeper's step: at most p_max ACTIVE holds past expires_at become EXPIRED and their
-- seats free, oldest first. SKIP LOCKED: a hold another sweeper (or a booking claiming
-- it) has locked is left to that one; a hold another sweeper expired after this
-- statement's snapshot is re-checked under its row lock and no longer ACTIVE. Returns how
-- many holds this call expired.
CREATE FUNCTION rs_hold_expire(p_max integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_n bigint;
BEGIN
    WITH due AS (SELECT h.id FROM holds h
                  WHERE h.status = 'ACTIVE' AND h.expires_at <= clock_timestamp()
                  ORDER BY h.expires_at LIMIT p_max FOR UPDATE SKIP LOCKED),
         e AS (UPDATE holds h SET status = 'EXPIRED', ended_at = clock_timestamp()
                 FROM due WHERE h.id = due.id AND h.status = 'ACTIVE' RETURNING h.id),
         s AS (UPDATE hold_seats hs SET active = false
                WHERE hs.hold_id IN (SELECT e.id FROM e) AND hs.active)
    SELECT count(*) INTO v_n FROM e; -- s runs all the same (a data-modifying WITH)
    RETURN v_n;
END;
$$;

-- 050's rs_book_undo takes back, inside a batch's transaction, bookings that must not
-- commit (payment declined or unknown) as if their savepoint had been rolled back: the
-- holds they consumed must come back too, as a rollback would bring them. It stays as it
-- was under a new name; rs_book_undo now calls it, then makes ACTIVE again each hold one
-- of these bookings consumed that is not past expires_at and none of whose seats has
-- been sold or held since (another member of the batch may have booked a seat of it that
-- the consumption freed: that hold stays BOOKED, its seats free).
ALTER FUNCTION rs_book_undo(bigint[]) RENAME TO rs_book_undo_seats;

CREATE FUNCTION rs_book_undo(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rs_book_undo_seats(p_ids);
    WITH back AS (
        UPDATE holds h SET status = 'ACTIVE', ended_at = NULL, booked_by = NULL
         WHERE h.booked_by = ANY (p_ids) AND h.status = 'BOOKED'
           AND h.expires_at > clock_timestamp()
           AND NOT EXISTS (SELECT 1 FROM hold_seats hs
                            WHERE hs.hold_id = h.id
                              AND (EXISTS (SELECT 1 FROM reservation_seats rs
                                            WHERE rs.performance_id = hs.performance_id
                                              AND rs.seat_id = hs.seat_id AND rs.confirmed)
                                   OR EXISTS (SELECT 1 FROM hold_seats o
                                               WHERE o.performance_id = hs.performance_id
                                                 AND o.seat_id = hs.seat_id AND o.active)))
        RETURNING h.id)
    UPDATE hold_seats SET active = true WHERE hold_id IN (SELECT id FROM back);
END;
$$;
