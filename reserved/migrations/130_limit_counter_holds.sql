-- 130: the purchase limit reads migration 095's counter again, now with held seats.
-- Migration 120 (holds) had put back a count of the user's bookings and holds in every
-- booking statement (rs_user_seats), which grows with the user's bookings (095 says what
-- that cost), and 095 itself missed one writer: rs_book_undo (050) DELETEs the seats of a
-- booking a batch takes back, which left the counter too high.
--
-- user_performance_seats counts, per (user, performance), the seats in confirmed
-- reservations plus the seats in active holds. Every writer is covered by statement
-- triggers, so the count is kept in the writer's own transaction:
--   reservation_seats  INSERT confirmed: +n and the limit check (reservation_seats_limit,
--                      after reservation_seats_holds: a booking from one's own hold first
--                      ends the hold, whose seats then leave the count: no double count);
--                      UPDATE confirmed -> false (a cancel): -n (095); DELETE of confirmed
--                      seats (rs_book_undo): -n;
--   hold_seats         INSERT active (rs_hold_take): +n and the check; UPDATE active
--                      true -> false (booked, released, expired): -n, false -> true (a hold
--                      given back by rs_book_undo): +n; DELETE of active seats: -n.
-- rs_user_seats (rs_hold_take's check before it inserts) reads the counter.

-- The counter as it should be now (120 stopped 095's additions).
DELETE FROM user_performance_seats;
INSERT INTO user_performance_seats (user_id, performance_id, seats)
SELECT u, p, sum(n)::integer FROM (
    SELECT r.user_id AS u, r.performance_id AS p, count(*) AS n
      FROM reservations r JOIN reservation_seats s ON s.reservation_id = r.id AND s.confirmed
     WHERE r.status = 'CONFIRMED' GROUP BY 1, 2
    UNION ALL
    SELECT h.user_id, h.performance_id, count(*)
      FROM holds h JOIN hold_seats hs ON hs.hold_id = h.id AND hs.active
     WHERE h.status = 'ACTIVE' GROUP BY 1, 2) AS x
 GROUP BY u, p;

CREATE OR REPLACE FUNCTION rs_user_seats(p_user bigint, p_perf bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT c.seats FROM user_performance_seats c
                      WHERE c.user_id = p_user AND c.performance_id = p_perf), 0)::bigint
$$;

-- Inserted confirmed seats: add, then check (095's, in place of 120's count).
CREATE OR REPLACE FUNCTION rs_seats_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    SELECT array_agg(x.user_id) AS u, array_agg(x.performance_id) AS p, array_agg(x.n) AS d
      INTO a
      FROM (SELECT r.user_id, n.performance_id, count(*)::integer AS n
              FROM rs_new_seats n JOIN reservations r ON r.id = n.reservation_id
             WHERE n.confirmed
             GROUP BY r.user_id, n.performance_id) AS x;
    IF a.u IS NOT NULL THEN
        PERFORM rs_seats_count(a.u, a.p, a.d);
    END IF;
    RETURN NULL;
END;
$$;

-- Deleted confirmed seats (rs_book_undo): take them away.
CREATE FUNCTION rs_seats_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    SELECT array_agg(x.user_id) AS u, array_agg(x.performance_id) AS p, array_agg(-x.n) AS d
      INTO a
      FROM (SELECT r.user_id, o.performance_id, count(*)::integer AS n
              FROM rs_old_seats o JOIN reservations r ON r.id = o.reservation_id
             WHERE o.confirmed
             GROUP BY r.user_id, o.performance_id) AS x;
    IF a.u IS NOT NULL THEN
        PERFORM rs_seats_count(a.u, a.p, a.d);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservation_seats_uncount AFTER DELETE ON reservation_seats
    REFERENCING OLD TABLE AS rs_old_seats
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seats_deleted();

-- Held seats: +n for rows that became active (inserted active, or false -> true), -n for
-- rows that stopped being active (true -> false, or deleted active).
CREATE FUNCTION rs_hold_seats_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(x.u) AS u, array_agg(x.p) AS p, array_agg(x.n) AS d INTO a
          FROM (SELECT h.user_id AS u, n.performance_id AS p, count(*)::integer AS n
                  FROM rs_new_holds n JOIN holds h ON h.id = n.hold_id
                 WHERE n.active GROUP BY 1, 2) AS x;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(x.u) AS u, array_agg(x.p) AS p, array_agg(-x.n) AS d INTO a
          FROM (SELECT h.user_id AS u, o.performance_id AS p, count(*)::integer AS n
                  FROM rs_old_holds o JOIN holds h ON h.id = o.hold_id
                 WHERE o.active GROUP BY 1, 2) AS x;
    ELSE
        SELECT array_agg(x.u) AS u, array_agg(x.p) AS p, array_agg(x.n) AS d INTO a
          FROM (SELECT h.user_id AS u, n.performance_id AS p,
                       sum(CASE WHEN n.active THEN 1 ELSE -1 END)::integer AS n
                  FROM rs_old_holds o
                  JOIN rs_new_holds n ON n.hold_id = o.hold_id AND n.seat_id = o.seat_id
                  JOIN holds h ON h.id = n.hold_id
                 WHERE o.active <> n.active GROUP BY 1, 2) AS x
         WHERE x.n <> 0;
    END IF;
    IF a.u IS NOT NULL THEN
        PERFORM rs_seats_count(a.u, a.p, a.d);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER hold_seats_count_insert AFTER INSERT ON hold_seats
    REFERENCING NEW TABLE AS rs_new_holds
    FOR EACH STATEMENT EXECUTE FUNCTION rs_hold_seats_count();
CREATE TRIGGER hold_seats_count_update AFTER UPDATE ON hold_seats
    REFERENCING OLD TABLE AS rs_old_holds NEW TABLE AS rs_new_holds
    FOR EACH STATEMENT EXECUTE FUNCTION rs_hold_seats_count();
CREATE TRIGGER hold_seats_count_delete AFTER DELETE ON hold_seats
    REFERENCING OLD TABLE AS rs_old_holds
    FOR EACH STATEMENT EXECUTE FUNCTION rs_hold_seats_count();
