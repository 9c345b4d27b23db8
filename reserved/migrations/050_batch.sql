-- 050: group booking (issue 11 §2). The process that holds a performance's lock books
-- every request queued behind it in ONE transaction (rs_batch.c). rs_book_batch takes
-- the fence once for the whole batch, then books each request in its own subtransaction
-- (a plpgsql block with an EXCEPTION clause is a savepoint): one booking's SEAT_TAKEN,
-- SOLD_OUT or guard rolls back that booking only, and the next one goes on. One row per
-- request, in the order asked:
--   o_state ''       booked: o_id, o_total (the price captured under the lock)
--   o_state 'REPLAY' its Idempotency-Key has a record (o_hash, o_status, o_response, the
--                    columns of idem_get): nothing booked
--   o_state SQLSTATE rolled back to its savepoint; o_message, o_detail as rs_book raised
--                    them (rs_bk maps them as for one booking)
-- A stale fence (RBFEN) or an unknown performance (RBP04) fails the whole statement.
-- Each booking still calls rs_book with the batch's fence: after the batch's own update
-- the compare finds the fence it stored (a no-op under our row lock), and the capacity
-- decrement rides in that row version, as in 030.
CREATE FUNCTION rs_book_batch(p_perf bigint, p_fence numeric, p_users bigint[],
                              p_seats text[], p_refs text[], p_keys text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text, o_message text,
               o_detail text, o_hash text, o_status integer, o_response text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE performances SET last_fence = p_fence WHERE id = p_perf AND last_fence <= p_fence;
    IF NOT FOUND THEN
        -- rs_book's answers: a newer holder's fence, or no such performance
        PERFORM 1 FROM performances WHERE id = p_perf;
        IF FOUND THEN
            RAISE EXCEPTION 'stale fence % for a batch on performance %', p_fence, p_perf
                USING ERRCODE = 'RBFEN';
        END IF;
        RAISE EXCEPTION 'performance % not found', p_perf USING ERRCODE = 'RBP04';
    END IF;
    -- The keys' advisory locks (idem_lock's), all at once and in one order: one
    -- transaction now takes several, and two batches taking them in request order could
    -- deadlock.
    PERFORM pg_advisory_xact_lock(h)
       FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(p_keys) AS k
              WHERE k <> '' ORDER BY 1) AS keys;
    FOR i IN 1 .. coalesce(cardinality(p_users), 0) LOOP
        o_i := i;
        o_id := NULL;
        o_total := NULL;
        o_state := '';
        o_message := '';
        o_detail := '';
        o_hash := NULL;
        o_status := NULL;
        o_response := NULL;
        IF p_keys[i] <> '' THEN
            -- as idem_get under idem_lock: a request with the same key in another
            -- process's transaction was waited for above, and its record is seen here
            SELECT k.request_hash, k.status_code, k.response::text
              INTO o_hash, o_status, o_response
              FROM idempotency_keys k WHERE k.key = p_keys[i];
            IF FOUND THEN
                o_state := 'REPLAY';
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        BEGIN
            SELECT b.reservation_id, b.total INTO o_id, o_total
              FROM rs_book(p_perf, p_users[i], p_seats[i]::bigint[], p_fence, false,
                           p_refs[i]) AS b;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS o_state = RETURNED_SQLSTATE, o_message = MESSAGE_TEXT,
                                    o_detail = PG_EXCEPTION_DETAIL;
            o_id := NULL;
            o_total := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Takes back, inside the batch's transaction, bookings that rs_book_batch made but that
-- must not commit (payment declined or unknown, capture refused): their seats, their
-- rows and their capacity, as if their savepoint had been rolled back.
CREATE FUNCTION rs_book_undo(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH s AS (DELETE FROM reservation_seats WHERE reservation_id = ANY (p_ids)
               RETURNING performance_id),
         n AS (SELECT performance_id, count(*) AS seats FROM s GROUP BY performance_id)
    UPDATE performances p SET remaining_capacity = p.remaining_capacity + n.seats
      FROM n WHERE p.id = n.performance_id;
    DELETE FROM reservations WHERE id = ANY (p_ids);
END;
$$;

-- rs_book_batch and the read-back of what it booked, in one call: with no payment to
-- make nothing runs between the two, so the lock is held one round trip less a batch
-- (as rs_book_read does for one booking). Each request's row of rs_book_batch, followed
-- by the columns of RS_RESV_COLS (rs_resv.h): one row per seat of the reservation it
-- booked, by seat id, or one row of NULLs when it booked nothing. The read-back is a
-- statement of its own per request, so it sees what rs_book_batch inserted.
CREATE FUNCTION rs_book_batch_read(p_perf bigint, p_fence numeric, p_users bigint[],
                                   p_seats text[], p_refs text[], p_keys text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text, o_message text,
               o_detail text, o_hash text, o_status integer, o_response text,
               r_id bigint, r_user bigint, r_perf bigint, r_status text, r_normal bigint,
               r_vip bigint, r_total bigint, r_payment text, r_created text, r_seat bigint,
               r_row text, r_number integer, r_type text, r_price bigint)
LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    FOR b IN SELECT * FROM rs_book_batch(p_perf, p_fence, p_users, p_seats, p_refs, p_keys)
    LOOP
        IF b.o_id IS NULL THEN
            RETURN QUERY
            SELECT b.o_i, b.o_id, b.o_total, b.o_state, b.o_message, b.o_detail, b.o_hash,
                   b.o_status, b.o_response, NULL::bigint, NULL::bigint, NULL::bigint,
                   NULL::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text, NULL::text,
                   NULL::bigint, NULL::text, NULL::integer, NULL::text, NULL::bigint;
        ELSE
            RETURN QUERY
            SELECT b.o_i, b.o_id, b.o_total, b.o_state, b.o_message, b.o_detail, b.o_hash,
                   b.o_status, b.o_response, r.id, r.user_id, r.performance_id, r.status,
                   r.normal_price, r.vip_price, r.total_amount, r.payment_id,
                   to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   s.seat_id, vs.row_label, vs.number, s.seat_type, s.price
              FROM reservations r
              JOIN reservation_seats s ON s.reservation_id = r.id
              JOIN venue_seats vs ON vs.id = s.seat_id
             WHERE r.id = b.o_id
             ORDER BY s.seat_id;
        END IF;
    END LOOP;
END;
$$;
