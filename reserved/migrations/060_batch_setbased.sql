-- 060: group booking without a subtransaction per booking (issue 11 §2, the serial
-- ceiling). 050's rs_book_batch books each request through rs_book inside its own
-- savepoint: per booking a subtransaction (more than 64 in one transaction overflow every
-- other backend's snapshot cache), a new version of the hot performances row, two
-- INSERTs and, in rs_book_batch_read, a read-back statement. Measured under the lock in
-- bench/booking.sh that cost about as much per booking as a whole pgbench transaction
-- with its COMMIT, so a batch could not pass the serial ceiling.
--
-- Now the batch decides every request's outcome first, from what it read once for the
-- whole batch (the fence row, the users, the asked seats: in the venue? sold?) and from
-- what the batch's earlier requests took, in request order, exactly as 050 did one
-- savepoint at a time: the Idempotency-Key record, then rs_book's checks in rs_book's
-- order (user, seats in the venue, seats taken, capacity) with rs_book's SQLSTATEs,
-- messages and details. Then it writes all the booked requests at once: one INSERT of
-- reservations (ids drawn from the sequence first, so each request knows its own), one
-- of their seats, one capacity update. A guard that fires anyway (a constraint these
-- checks do not know, or a writer that was not supposed to be there) fails that one
-- block, and the batch is booked again the 050 way, one savepoint per request, so only
-- the request that trips it is refused: the guard semantics of 050 stand.
ALTER FUNCTION rs_book_batch(bigint, numeric, bigint[], text[], text[], text[])
    RENAME TO rs_book_batch_each;

CREATE FUNCTION rs_book_batch(p_perf bigint, p_fence numeric, p_users bigint[],
                              p_seats text[], p_refs text[], p_keys text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text, o_message text,
               o_detail text, o_hash text, o_status integer, o_response text)
LANGUAGE plpgsql
-- generic plans: the statements take arrays (see 030's rs_book)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n           integer := coalesce(cardinality(p_users), 0);
    v_venue     bigint;
    v_normal    bigint;
    v_vip       bigint;
    v_remaining integer;
    v_users     bigint[]; -- the asked users that exist
    v_outside   bigint[]; -- asked seats not in the performance's venue
    v_sold      bigint[]; -- asked seats with a confirmed reservation before this batch
    v_took      bigint[] := '{}'; -- seats booked by this batch's earlier requests
    v_seats     bigint[];
    v_bad       text;
    v_hash      text;
    v_status    integer;
    v_response  text;
    v_totals    bigint[];
    s_id        bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    s_total     bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    s_state     text[] := array_fill(''::text, ARRAY[n]);
    s_message   text[] := array_fill(''::text, ARRAY[n]);
    s_detail    text[] := array_fill(''::text, ARRAY[n]);
    s_hash      text[] := array_fill(NULL::text, ARRAY[n]);
    s_status    integer[] := array_fill(NULL::integer, ARRAY[n]);
    s_response  text[] := array_fill(NULL::text, ARRAY[n]);
    b_i         integer[] := '{}'; -- the booked requests
    b_seats     text[] := '{}';
    k           integer;
    fast        boolean := true;
BEGIN
    UPDATE performances SET last_fence = p_fence WHERE id = p_perf AND last_fence <= p_fence
    RETURNING venue_id, normal_price, vip_price, remaining_capacity
         INTO v_venue, v_normal, v_vip, v_remaining;
    IF NOT FOUND THEN
        -- a newer holder's fence, or no such performance: 050 raises rs_book's answers
        RETURN QUERY SELECT * FROM rs_book_batch_each(p_perf, p_fence, p_users, p_seats,
                                                      p_refs, p_keys);
        RETURN;
    END IF;
    -- as 050: the keys' advisory locks, all at once and in one order
    PERFORM pg_advisory_xact_lock(h)
       FROM (SELECT DISTINCT hashtextextended(x, 0) AS h FROM unnest(p_keys) AS x
              WHERE x <> '' ORDER BY 1) AS keys;

    SELECT array_agg(u.id) INTO v_users FROM users u WHERE u.id = ANY (p_users);
    SELECT array_agg(a.s) FILTER (WHERE vs.id IS NULL),
           array_agg(a.s) FILTER (WHERE EXISTS (
               SELECT 1 FROM reservation_seats rs
                WHERE rs.performance_id = p_perf AND rs.seat_id = a.s AND rs.confirmed))
      INTO v_outside, v_sold
      FROM (SELECT DISTINCT x::bigint AS s
              FROM unnest(p_seats) AS t(txt), unnest(t.txt::bigint[]) AS x) AS a
      LEFT JOIN venue_seats vs ON vs.id = a.s AND vs.venue_id = v_venue;
    v_users := coalesce(v_users, '{}');
    v_outside := coalesce(v_outside, '{}');
    v_sold := coalesce(v_sold, '{}');

    FOR i IN 1 .. n LOOP
        IF p_keys[i] <> '' THEN
            SELECT x.request_hash, x.status_code, x.response::text
              INTO v_hash, v_status, v_response
              FROM idempotency_keys x WHERE x.key = p_keys[i];
            IF FOUND THEN
                s_state[i] := 'REPLAY';
                s_hash[i] := v_hash;
                s_status[i] := v_status;
                s_response[i] := v_response;
                CONTINUE;
            END IF;
        END IF;
        v_seats := p_seats[i]::bigint[];
        IF NOT p_users[i] = ANY (v_users) THEN
            s_state[i] := 'RBU04';
            s_message[i] := format('user %s not found', p_users[i]);
            CONTINUE;
        END IF;
        SELECT string_agg(x::text, ',' ORDER BY x) INTO v_bad
          FROM unnest(v_seats) AS x WHERE x = ANY (v_outside);
        IF v_bad IS NOT NULL THEN
            s_state[i] := 'RBSEA';
            s_message[i] := format('seats not in the venue of performance %s: %s', p_perf, v_bad);
            s_detail[i] := v_bad;
            CONTINUE;
        END IF;
        SELECT string_agg(x::text, ',' ORDER BY x) INTO v_bad
          FROM unnest(v_seats) AS x WHERE x = ANY (v_sold) OR x = ANY (v_took);
        IF v_bad IS NOT NULL THEN
            s_state[i] := 'RBTAK';
            s_message[i] := format('seats already taken: %s', v_bad);
            s_detail[i] := v_bad;
            CONTINUE;
        END IF;
        IF v_remaining < cardinality(v_seats) THEN
            s_state[i] := 'RBSOL';
            s_message[i] := format('performance %s has %s seats left, %s asked', p_perf,
                                   v_remaining, cardinality(v_seats));
            CONTINUE;
        END IF;
        v_remaining := v_remaining - cardinality(v_seats);
        v_took := v_took || v_seats;
        b_i := b_i || i;
        b_seats := b_seats || p_seats[i];
    END LOOP;

    IF cardinality(b_i) > 0 THEN
        BEGIN
            -- ids first, so that every request knows its reservation
            FOR j IN 1 .. cardinality(b_i) LOOP
                s_id[b_i[j]] := nextval(pg_get_serial_sequence('reservations', 'id'));
            END LOOP;
            WITH o AS (SELECT * FROM unnest(b_i, b_seats) AS o(i, seats)),
                 t AS (SELECT o.i, coalesce(sum(CASE WHEN vs.type = 'VIP' THEN v_vip
                                                    ELSE v_normal END), 0)::bigint AS total
                         FROM o LEFT JOIN venue_seats vs ON vs.id = ANY (o.seats::bigint[])
                        GROUP BY o.i),
                 r AS (INSERT INTO reservations (id, user_id, performance_id, status,
                                                 normal_price, vip_price, total_amount,
                                                 payment_reference, fence)
                       SELECT s_id[t.i], p_users[t.i], p_perf, 'CONFIRMED', v_normal, v_vip,
                              t.total, p_refs[t.i], p_fence
                         FROM t ORDER BY t.i
                       RETURNING id, total_amount)
            SELECT array_agg(r.total_amount ORDER BY r.id) INTO v_totals FROM r;
            FOR j IN 1 .. cardinality(b_i) LOOP -- ids grow with j: totals in that order
                s_total[b_i[j]] := v_totals[j];
            END LOOP;
            INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type,
                                           price)
            SELECT s_id[o.i], p_perf, vs.id, vs.type,
                   CASE WHEN vs.type = 'VIP' THEN v_vip ELSE v_normal END
              FROM unnest(b_i, b_seats) AS o(i, seats)
              JOIN venue_seats vs ON vs.id = ANY (o.seats::bigint[]);
            UPDATE performances SET remaining_capacity = remaining_capacity - cardinality(v_took)
             WHERE id = p_perf;
        EXCEPTION WHEN OTHERS THEN
            fast := false; -- a guard fired: one savepoint per request, as 050
        END;
    END IF;

    IF NOT fast THEN
        RETURN QUERY SELECT * FROM rs_book_batch_each(p_perf, p_fence, p_users, p_seats,
                                                      p_refs, p_keys);
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        o_i := i;
        o_id := s_id[i];
        o_total := s_total[i];
        o_state := s_state[i];
        o_message := s_message[i];
        o_detail := s_detail[i];
        o_hash := s_hash[i];
        o_status := s_status[i];
        o_response := s_response[i];
        IF o_state <> '' THEN
            o_id := NULL;
            o_total := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- The read-back of 050 in one statement instead of one per request: the batch's rows are
-- kept first (the read-back is a statement of its own, so it sees what the batch
-- inserted), then joined to their reservations and seats.
CREATE TYPE rs_batch_row AS (o_i integer, o_id bigint, o_total bigint, o_state text,
                             o_message text, o_detail text, o_hash text, o_status integer,
                             o_response text);

CREATE OR REPLACE FUNCTION rs_book_batch_read(p_perf bigint, p_fence numeric, p_users bigint[],
                                              p_seats text[], p_refs text[], p_keys text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text, o_message text,
               o_detail text, o_hash text, o_status integer, o_response text,
               r_id bigint, r_user bigint, r_perf bigint, r_status text, r_normal bigint,
               r_vip bigint, r_total bigint, r_payment text, r_created text, r_seat bigint,
               r_row text, r_number integer, r_type text, r_price bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_rows rs_batch_row[];
BEGIN
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
