-- 030: query plans that stay good as the booking tables grow.
-- reserved's pool plans every statement of its own for each call
-- (plan_cache_mode = force_custom_plan, rs_db.c): a generic plan cached while a table was
-- small (a fresh database) stays a sequential scan until the next ANALYZE, and the
-- reservation read-back under the performance lock went from 0.08 to 4.3 ms per call as
-- the tables grew in bench/booking.sh. Inside rs_book the statements are planned once per
-- connection again (plan_cache_mode = auto for the function: planning ten statements per
-- booking cost 30% of its throughput in pgbench), except the seat check, which is the
-- one whose generic plan degrades (0.08 -> 0.57 ms) and is now planned per call.
CREATE OR REPLACE FUNCTION rs_book(p_perf bigint, p_user bigint, p_seats bigint[], p_fence numeric,
                        p_lock_rows boolean, p_reference text,
                        OUT reservation_id bigint, OUT total bigint)
LANGUAGE plpgsql SET plan_cache_mode = auto AS $$
DECLARE
    v_venue     bigint;
    v_normal    bigint;
    v_vip       bigint;
    v_remaining integer;
    v_bad       text;
    v_n         integer := cardinality(p_seats);
BEGIN
    IF p_lock_rows THEN
        SELECT venue_id, normal_price, vip_price, remaining_capacity
          INTO v_venue, v_normal, v_vip, v_remaining
          FROM performances WHERE id = p_perf FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'performance % not found', p_perf USING ERRCODE = 'RBP04';
        END IF;
    ELSE
        UPDATE performances SET last_fence = p_fence
         WHERE id = p_perf AND last_fence <= p_fence
        RETURNING venue_id, normal_price, vip_price, remaining_capacity
             INTO v_venue, v_normal, v_vip, v_remaining;
        IF NOT FOUND THEN
            IF NOT EXISTS (SELECT 1 FROM performances WHERE id = p_perf) THEN
                RAISE EXCEPTION 'performance % not found', p_perf USING ERRCODE = 'RBP04';
            END IF;
            RAISE EXCEPTION 'stale fence % for performance %', p_fence, p_perf
                USING ERRCODE = 'RBFEN';
        END IF;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user % not found', p_user USING ERRCODE = 'RBU04';
    END IF;

    SELECT string_agg(s::text, ',' ORDER BY s) INTO v_bad
      FROM unnest(p_seats) AS s
     WHERE NOT EXISTS (SELECT 1 FROM venue_seats vs WHERE vs.id = s AND vs.venue_id = v_venue);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'seats not in the venue of performance %: %', p_perf, v_bad
            USING ERRCODE = 'RBSEA', DETAIL = v_bad;
    END IF;

    -- Planned at every call (EXECUTE): a generic plan made while reservation_seats was
    -- small stays a sequential scan of the whole table as it grows.
    EXECUTE 'SELECT string_agg(rs.seat_id::text, '','' ORDER BY rs.seat_id)
               FROM reservation_seats rs
              WHERE rs.performance_id = $1 AND rs.seat_id = ANY ($2) AND rs.confirmed'
       INTO v_bad USING p_perf, p_seats;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'seats already taken: %', v_bad USING ERRCODE = 'RBTAK', DETAIL = v_bad;
    END IF;

    IF v_remaining < v_n THEN
        RAISE EXCEPTION 'performance % has % seats left, % asked', p_perf, v_remaining, v_n
            USING ERRCODE = 'RBSOL';
    END IF;

    SELECT coalesce(sum(CASE WHEN vs.type = 'VIP' THEN v_vip ELSE v_normal END), 0)::bigint
      INTO total
      FROM venue_seats vs WHERE vs.id = ANY (p_seats);

    INSERT INTO reservations (user_id, performance_id, status, normal_price, vip_price,
                              total_amount, payment_reference, fence)
    VALUES (p_user, p_perf, 'CONFIRMED', v_normal, v_vip, total, p_reference,
            CASE WHEN p_lock_rows THEN NULL ELSE p_fence END)
    RETURNING id INTO reservation_id;

    INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type, price)
    SELECT reservation_id, p_perf, vs.id, vs.type,
           CASE WHEN vs.type = 'VIP' THEN v_vip ELSE v_normal END
      FROM venue_seats vs WHERE vs.id = ANY (p_seats);

    UPDATE performances SET remaining_capacity = remaining_capacity - v_n WHERE id = p_perf;
END;
$$;
