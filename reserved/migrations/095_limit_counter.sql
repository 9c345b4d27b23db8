-- 095: the purchase limit from a counter, not a count (measured: 090's count grew with the
-- user's bookings of the performance, a join over all of them in every booking statement;
-- in bench/booking.sh's hot sale, 200 buyers with about a hundred bookings each by the end,
-- lockd mode fell from 1,932-2,394 to 1,253-1,382 hot bookings/s).
--
-- user_performance_seats holds, per (user, performance), the seats the user has there:
-- seats in confirmed reservations, plus (SPEC §9) seats in active holds. Statement-level
-- triggers keep it: a seat insert adds, a cancel (confirmed -> false) takes away. The check
-- stays where 090 put it, in the same statement and transaction and under the same lock,
-- with the same SQLSTATE RBLIM and DETAIL; it reads the counter after its own increment,
-- so it is one upsert per (user, performance) per statement whatever the history.
-- Held seats: rows of hold_seats count the same way (insert active: add and check;
-- active -> false: take away). A booking that takes seats out of the user's own hold must
-- set those hold_seats rows inactive BEFORE it inserts the reservation's seats, or the
-- seats count twice for the moment of the insert.
CREATE TABLE user_performance_seats (
    user_id        bigint NOT NULL REFERENCES users (id),
    performance_id bigint NOT NULL REFERENCES performances (id),
    seats          integer NOT NULL CHECK (seats >= 0),
    PRIMARY KEY (user_id, performance_id)
);

INSERT INTO user_performance_seats (user_id, performance_id, seats)
SELECT r.user_id, r.performance_id, count(*)
  FROM reservations r JOIN reservation_seats s ON s.reservation_id = r.id AND s.confirmed
 WHERE r.status = 'CONFIRMED'
 GROUP BY r.user_id, r.performance_id;

-- Adds delta seats to each (user, performance) of p_users/p_perfs/p_deltas; with the limit
-- set (rs.max_seats_per_user) and a positive delta, raises RBLIM when the new count is over.
CREATE FUNCTION rs_seats_count(p_users bigint[], p_perfs bigint[], p_deltas integer[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_max integer := nullif(current_setting('rs.max_seats_per_user', true), '')::integer;
    v     record;
BEGIN
    FOR v IN
        WITH x AS (SELECT u, p, d FROM unnest(p_users, p_perfs, p_deltas) AS x(u, p, d))
        INSERT INTO user_performance_seats AS c (user_id, performance_id, seats)
        SELECT u, p, greatest(d, 0) FROM x
        ORDER BY u, p -- one order for every writer: no deadlock between two statements
        ON CONFLICT (user_id, performance_id) DO UPDATE
            SET seats = greatest(c.seats + (SELECT x.d FROM x WHERE x.u = c.user_id
                                                                AND x.p = c.performance_id), 0)
        RETURNING c.user_id, c.performance_id, c.seats,
                  (SELECT x.d FROM x WHERE x.u = c.user_id AND x.p = c.performance_id) AS d
    LOOP
        IF v_max IS NOT NULL AND v_max > 0 AND v.d > 0 AND v.seats > v_max THEN
            RAISE EXCEPTION 'user % would have % seats of performance %, at most % allowed',
                            v.user_id, v.seats, v.performance_id, v_max
                USING ERRCODE = 'RBLIM',
                      DETAIL = format('%s,%s,%s', v_max, v.seats - v.d, v.d);
        END IF;
    END LOOP;
END;
$$;

-- Inserted confirmed seats: add, then check (replaces 090's count).
CREATE OR REPLACE FUNCTION rs_seats_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    SELECT array_agg(x.user_id) AS u, array_agg(x.performance_id) AS p,
           array_agg(x.n) AS d INTO a
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

-- Seats that stop being confirmed (a cancel): take them away.
CREATE FUNCTION rs_seats_unconfirmed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a record;
BEGIN
    SELECT array_agg(x.user_id) AS u, array_agg(x.performance_id) AS p,
           array_agg(-x.n) AS d INTO a
      FROM (SELECT r.user_id, o.performance_id, count(*)::integer AS n
              FROM rs_old_seats o JOIN rs_new_seats n
                   ON n.reservation_id = o.reservation_id AND n.seat_id = o.seat_id
              JOIN reservations r ON r.id = o.reservation_id
             WHERE o.confirmed AND NOT n.confirmed
             GROUP BY r.user_id, o.performance_id) AS x;
    IF a.u IS NOT NULL THEN
        PERFORM rs_seats_count(a.u, a.p, a.d);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservation_seats_unconfirmed AFTER UPDATE ON reservation_seats
    REFERENCING OLD TABLE AS rs_old_seats NEW TABLE AS rs_new_seats
    FOR EACH STATEMENT EXECUTE FUNCTION rs_seats_unconfirmed();
