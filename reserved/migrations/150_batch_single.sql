-- 150: a small batch costs about what its bookings cost alone. Measured with pgbench
-- (8 clients on 2 cores, each on its own performance, payment off), against 060:
--  * rs_book_batch_read's read-back was planned again on every call (plan_cache_mode
--    auto keeps custom plans for "unnest(v_rows)": the generic one guesses more rows),
--    0.18 ms of planning a call, more than the read-back itself. The function now keeps
--    generic plans, as rs_book and rs_book_batch do. Batches of 4: ~1,100 -> ~1,340 a s.
--  * One booking through the set-based batch cost about twice rs_book_read (~1,400
--    against ~2,400 a second): with no gateway, the batch of a performance contended a
--    moment ago is often a single request. rs_book_batch_read books a single request
--    without an Idempotency-Key through rs_book_read.
-- The single request's answers are the batch's. Booked: its row and its read-back.
-- Refused (RBTAK, RBSOL, RBSEA, RBU04, a guard's SQLSTATE): the statement fails with
-- rs_book's SQLSTATE, message and detail, which are the batch's row for that request
-- (050's savepoint per request returns exactly them), and reserved fails every member
-- still open, here the one, with that answer, then rolls back; the fence update goes
-- with it, as for a booking alone (a refused booking wrote nothing to protect). A stale
-- fence fails the statement in both (RBFEN). A request with a key keeps the batch's
-- path: the key's record, its lock and REPLAY.
CREATE OR REPLACE FUNCTION rs_book_batch_read(p_perf bigint, p_fence numeric, p_users bigint[],
                                              p_seats text[], p_refs text[], p_keys text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text, o_message text,
               o_detail text, o_hash text, o_status integer, o_response text,
               r_id bigint, r_user bigint, r_perf bigint, r_status text, r_normal bigint,
               r_vip bigint, r_total bigint, r_payment text, r_created text, r_seat bigint,
               r_row text, r_number integer, r_type text, r_price bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_rows rs_batch_row[];
BEGIN
    IF cardinality(p_users) = 1 AND p_keys[1] = '' THEN
        RETURN QUERY
        SELECT 1, b.o_id, b.o_total, ''::text, ''::text, ''::text, NULL::text, NULL::integer,
               NULL::text, b.*
          FROM rs_book_read(p_perf, p_users[1], p_seats[1]::bigint[], p_fence, false,
                            p_refs[1]) AS b;
        RETURN;
    END IF;
    SELECT array_agg(ROW(b.*)::rs_batch_row ORDER BY b.o_i) INTO v_rows
      FROM rs_book_batch(p_perf, p_fence, p_users, p_seats, p_refs, p_keys) AS b;
    RETURN QUERY
    SELECT b.o_i, b.o_id, b.o_total, b.o_state, b.o_message, b.o_detail, b.o_hash,
           b.o_status, b.o_response, r.id, r.user_id, r.performance_id, r.status,
           r.normal_price, r.vip_price, r.total_amount, r.payment_id,
           to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           s.seat_id, vs.row_label, vs.number, s.seat_type, s.price
      FROM unnest(v_rows) AS b
      LEFT JOIN reservations r ON r.id = b.o_id
      LEFT JOIN reservation_seats s ON s.reservation_id = r.id
      LEFT JOIN venue_seats vs ON vs.id = s.seat_id
     ORDER BY b.o_i, s.seat_id;
END;
$$;
