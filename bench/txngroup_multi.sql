-- bench/txngroup_multi.sql: a PROTOTYPE for bench/txngroup.sh's "multi" form, not part of
-- reserved's schema and not called by it. It books requests of DIFFERENT performances
-- (each under its own lock and fence) in one set-based statement, as rs_book_batch
-- (migration 060) books the requests of one performance: every row it needs read once,
-- the outcomes decided in memory in request order with rs_book's checks and SQLSTATE
-- codes (user, seats in the venue, seats taken, capacity), then one INSERT of
-- reservations, one of their seats, one capacity update, and the read-back of
-- rs_book_batch_read. What it leaves out, because the measurement does not need it:
-- Idempotency-Keys, the guard fallback (a savepoint per request), and the error of a
-- stale fence (here it refuses that performance's requests with RBFEN).
-- The performances rows are locked in id order first: two such statements that share
-- performances (a lock lost and taken over) cannot deadlock on them.
CREATE OR REPLACE FUNCTION rs_book_multi_proto(p_perfs bigint[], p_fences numeric[],
                                               p_users bigint[], p_seats text[],
                                               p_refs text[])
RETURNS TABLE (o_i integer, o_id bigint, o_total bigint, o_state text,
               r_id bigint, r_user bigint, r_perf bigint, r_status text, r_normal bigint,
               r_vip bigint, r_total bigint, r_payment text, r_created text, r_seat bigint,
               r_row text, r_number integer, r_type text, r_price bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n         integer := coalesce(cardinality(p_perfs), 0);
    f_perf    bigint[]; -- the performances whose fence stands, and their rows
    f_venue   bigint[];
    f_normal  bigint[];
    f_vip     bigint[];
    f_rem     integer[];
    v_users   bigint[];
    v_outside text[]; -- 'perf:seat'
    v_sold    text[];
    v_took    text[] := '{}';
    v_seats   text[];
    v_n       integer[];
    k         integer;
    s_id      bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    s_state   text[] := array_fill(''::text, ARRAY[n]);
    b_i       integer[] := '{}';
    b_seats   text[] := '{}';
    b_k       integer[] := '{}';
    v_rows    rs_batch_row[];
BEGIN
    PERFORM 1 FROM performances WHERE id = ANY (p_perfs) ORDER BY id FOR UPDATE;
    WITH v AS (SELECT DISTINCT ON (perf) perf, fence
                 FROM unnest(p_perfs, p_fences) AS v(perf, fence) ORDER BY perf),
         u AS (UPDATE performances p SET last_fence = v.fence FROM v
                WHERE p.id = v.perf AND p.last_fence <= v.fence
               RETURNING p.id, p.venue_id, p.normal_price, p.vip_price, p.remaining_capacity)
    SELECT array_agg(u.id), array_agg(u.venue_id), array_agg(u.normal_price),
           array_agg(u.vip_price), array_agg(u.remaining_capacity)
      INTO f_perf, f_venue, f_normal, f_vip, f_rem FROM u;
    f_perf := coalesce(f_perf, '{}');
    v_n := array_fill(0, ARRAY[greatest(cardinality(f_perf), 1)]);

    SELECT array_agg(u.id) INTO v_users FROM users u WHERE u.id = ANY (p_users);
    SELECT array_agg(a.perf || ':' || a.s) FILTER (WHERE vs.id IS NULL),
           array_agg(a.perf || ':' || a.s) FILTER (WHERE EXISTS (
               SELECT 1 FROM reservation_seats rs
                WHERE rs.performance_id = a.perf AND rs.seat_id = a.s AND rs.confirmed))
      INTO v_outside, v_sold
      FROM (SELECT DISTINCT t.perf, x::bigint AS s
              FROM unnest(p_perfs, p_seats) AS t(perf, txt), unnest(t.txt::bigint[]) AS x
             WHERE t.perf = ANY (f_perf)) AS a
      JOIN performances p ON p.id = a.perf
      LEFT JOIN venue_seats vs ON vs.id = a.s AND vs.venue_id = p.venue_id;
    v_users := coalesce(v_users, '{}');
    v_outside := coalesce(v_outside, '{}');
    v_sold := coalesce(v_sold, '{}');

    FOR i IN 1 .. n LOOP
        k := array_position(f_perf, p_perfs[i]);
        IF k IS NULL THEN
            s_state[i] := 'RBFEN';
            CONTINUE;
        END IF;
        v_seats := ARRAY(SELECT p_perfs[i] || ':' || x
                           FROM unnest(p_seats[i]::bigint[]) AS x);
        IF NOT p_users[i] = ANY (v_users) THEN
            s_state[i] := 'RBU04';
        ELSIF v_seats && v_outside THEN
            s_state[i] := 'RBSEA';
        ELSIF v_seats && v_sold OR v_seats && v_took THEN
            s_state[i] := 'RBTAK';
        ELSIF f_rem[k] < cardinality(v_seats) THEN
            s_state[i] := 'RBSOL';
        ELSE
            f_rem[k] := f_rem[k] - cardinality(v_seats);
            v_n[k] := v_n[k] + cardinality(v_seats);
            v_took := v_took || v_seats;
            b_i := b_i || i;
            b_seats := b_seats || p_seats[i];
            b_k := b_k || k;
        END IF;
    END LOOP;

    IF cardinality(b_i) > 0 THEN
        FOR j IN 1 .. cardinality(b_i) LOOP
            s_id[b_i[j]] := nextval(pg_get_serial_sequence('reservations', 'id'));
        END LOOP;
        WITH o AS (SELECT * FROM unnest(b_i, b_seats, b_k) AS o(i, seats, k)),
             t AS (SELECT o.i, o.k, coalesce(sum(CASE WHEN vs.type = 'VIP' THEN f_vip[o.k]
                                                     ELSE f_normal[o.k] END), 0)::bigint AS total
                     FROM o LEFT JOIN venue_seats vs ON vs.id = ANY (o.seats::bigint[])
                    GROUP BY o.i, o.k)
        INSERT INTO reservations (id, user_id, performance_id, status, normal_price,
                                  vip_price, total_amount, payment_reference, fence)
        SELECT s_id[t.i], p_users[t.i], f_perf[t.k], 'CONFIRMED', f_normal[t.k], f_vip[t.k],
               t.total, p_refs[t.i], p_fences[t.i]
          FROM t ORDER BY t.i;
        INSERT INTO reservation_seats (reservation_id, performance_id, seat_id, seat_type,
                                       price)
        SELECT s_id[o.i], f_perf[o.k], vs.id, vs.type,
               CASE WHEN vs.type = 'VIP' THEN f_vip[o.k] ELSE f_normal[o.k] END
          FROM unnest(b_i, b_seats, b_k) AS o(i, seats, k)
          JOIN venue_seats vs ON vs.id = ANY (o.seats::bigint[]);
        UPDATE performances p SET remaining_capacity = p.remaining_capacity - d.n
          FROM unnest(f_perf, v_n) AS d(perf, n)
         WHERE p.id = d.perf AND d.n > 0;
    END IF;

    SELECT array_agg(ROW(i, s_id[i], NULL, s_state[i], '', '', NULL, NULL,
                         NULL)::rs_batch_row ORDER BY i)
      INTO v_rows FROM generate_series(1, n) AS i;
    RETURN QUERY
    SELECT b.o_i, b.o_id, r.total_amount, b.o_state, r.id, r.user_id, r.performance_id,
           r.status, r.normal_price, r.vip_price, r.total_amount, r.payment_id,
           to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           s.seat_id, vs.row_label, vs.number, s.seat_type, s.price
      FROM unnest(v_rows) AS b
      LEFT JOIN reservations r ON r.id = b.o_id
      LEFT JOIN reservation_seats s ON s.reservation_id = r.id
      LEFT JOIN venue_seats vs ON vs.id = s.seat_id
     ORDER BY b.o_i, s.seat_id;
END;
$$;
