-- 010: the booking and cancellation steps as functions, so each is ONE prepared call
-- inside the booking transaction (one round trip while the performance lock is held).
-- Outcomes other than success are raised with custom SQLSTATEs that rs_booking maps:
--   RBP04 performance not found (404)     RBU04 user not found (404)
--   RBFEN stale fence: a newer lock holder committed (503, the lock was lost)
--   RBSEA seats not in the venue (400; DETAIL = the ids, comma-separated)
--   RBTAK seats already taken (409 SEAT_TAKEN; DETAIL = the ids)
--   RBSOL not enough remaining capacity (409 SOLD_OUT)
-- The unique index and the capacity CHECK of 001 stay the last line of defence; they
-- surface as 23505 / 23514 and are counted as guard firings.

-- p_lock_rows: db lock mode (SELECT ... FOR UPDATE on the performance row, no fence);
-- otherwise the fence update of SPEC §4 comes first.
CREATE FUNCTION rs_book(p_perf bigint, p_user bigint, p_seats bigint[], p_fence numeric,
                        p_lock_rows boolean, p_reference text,
                        OUT reservation_id bigint, OUT total bigint)
LANGUAGE plpgsql AS $$
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

    SELECT string_agg(rs.seat_id::text, ',' ORDER BY rs.seat_id) INTO v_bad
      FROM reservation_seats rs
     WHERE rs.performance_id = p_perf AND rs.seat_id = ANY (p_seats) AND rs.confirmed;
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

-- Cancels a CONFIRMED reservation: frees its seats, gives the capacity back and, in the
-- same transaction, moves its captured payment attempt to CANCELLING, so a crash before
-- the gateway cancel leaves an open attempt the reconciler finishes. Returns whether
-- anything changed (false: already CANCELLED) and the payment to cancel. Same fence /
-- row-lock rule as rs_book.
CREATE FUNCTION rs_cancel(p_res bigint, p_fence numeric, p_lock_rows boolean,
                          OUT changed boolean, OUT reference text, OUT payment_id text)
LANGUAGE plpgsql AS $$
DECLARE
    v_perf bigint;
    v_n    integer;
BEGIN
    SELECT performance_id INTO v_perf FROM reservations WHERE id = p_res;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reservation % not found', p_res USING ERRCODE = 'RBR04';
    END IF;
    IF p_lock_rows THEN
        PERFORM 1 FROM performances WHERE id = v_perf FOR UPDATE;
    ELSE
        UPDATE performances SET last_fence = p_fence WHERE id = v_perf AND last_fence <= p_fence;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'stale fence % for performance %', p_fence, v_perf
                USING ERRCODE = 'RBFEN';
        END IF;
    END IF;
    UPDATE reservations SET status = 'CANCELLED', cancelled_at = now()
     WHERE id = p_res AND status = 'CONFIRMED'
    RETURNING reservations.payment_reference, reservations.payment_id INTO reference, payment_id;
    changed := FOUND;
    IF NOT changed THEN
        RETURN;
    END IF;
    UPDATE payment_attempts SET status = 'CANCELLING', updated_at = now()
     WHERE payment_attempts.reference = rs_cancel.reference AND status = 'CAPTURED';
    UPDATE reservation_seats SET confirmed = false WHERE reservation_id = p_res AND confirmed;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE performances SET remaining_capacity = remaining_capacity + v_n WHERE id = v_perf;
END;
$$;
