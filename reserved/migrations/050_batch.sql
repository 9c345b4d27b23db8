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
            -- as idem_lock + idem_get: a request with the same key in another process's
            -- transaction is waited for, and its record seen
            PERFORM pg_advisory_xact_lock(hashtextextended(p_keys[i], 0));
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
