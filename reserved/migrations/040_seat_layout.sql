-- 040: the seat map in natural order (issue 9). Each seat stores where it is drawn:
-- row_index, its row's 0-based place among the venue's rows in natural order ("R2" before
-- "R10", "A" before "B"), and row_position, its 0-based place in its row by number. The
-- seat map and the venue list seats in that order and return both (rowIndex, position).
-- Computed once when seats are inserted, not per map: a map is read far more often than
-- a venue is made, and sorting 20,000 seats by a natural key on every read would run on
-- the event loop's critical path (the statement that feeds it).
ALTER TABLE venue_seats ADD COLUMN row_index integer, ADD COLUMN row_position integer;

-- The natural sort key of a row label, compared bytewise (COLLATE "C"): every run of
-- ASCII digits becomes its value's digit count (two digits; a label has at most 16
-- characters) followed by the value without leading zeros, so numbers compare by value
-- and still sort where a digit would against any other character; everything else stays
-- as it is (case-sensitive, by code point). Labels with the same key ("R01", "R1") are
-- ordered by the label itself.
--   '0' -> '010'   'R2' -> 'R012'   'R10' -> 'R0210'   'Balcony 12' -> 'Balcony 0212'
CREATE FUNCTION rs_row_key(label text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT string_agg(CASE WHEN t.m[1] ~ '^[0-9]'
                           THEN lpad(length(z.v)::text, 2, '0') || z.v
                           ELSE t.m[1] END, '' ORDER BY t.n)
      FROM regexp_matches(label, '[0-9]+|[^0-9]+', 'g') WITH ORDINALITY AS t(m, n)
      CROSS JOIN LATERAL (SELECT COALESCE(NULLIF(ltrim(t.m[1], '0'), ''), '0')) AS z(v)
$$;

-- The layout of a set of seats given as parallel arrays of row labels and numbers: for
-- the i-th seat (1-based), its row_index and row_position. The one definition of the
-- order: POST /venues inserts with it, rs_seat_layout lays out seats inserted otherwise.
CREATE FUNCTION rs_layout(p_rows text[], p_numbers integer[])
RETURNS TABLE (i bigint, row_index integer, row_position integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH x AS (SELECT u.r, u.n, u.i FROM unnest(p_rows, p_numbers) WITH ORDINALITY AS u(r, n, i)),
    k AS (SELECT d.r,
                 (row_number() OVER (ORDER BY rs_row_key(d.r) COLLATE "C", d.r COLLATE "C")
                  - 1)::integer AS ri
            FROM (SELECT DISTINCT r FROM x) d)
    SELECT x.i, k.ri, (row_number() OVER (PARTITION BY x.r ORDER BY x.n) - 1)::integer
      FROM x JOIN k USING (r)
$$;

-- Lays out every seat of one venue again (the whole venue: a new row shifts the rows
-- after it). Seats already in place are not rewritten.
CREATE FUNCTION rs_seat_layout(p_venue bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE venue_seats vs SET row_index = l.row_index, row_position = l.row_position
      FROM (SELECT array_agg(id ORDER BY id) AS ids, array_agg(row_label ORDER BY id) AS r,
                   array_agg(number ORDER BY id) AS n
              FROM venue_seats WHERE venue_id = p_venue) a
     CROSS JOIN LATERAL rs_layout(a.r, a.n) l
     WHERE vs.id = a.ids[l.i]
       AND (vs.row_index, vs.row_position) IS DISTINCT FROM (l.row_index, l.row_position)
$$;

-- POST /venues inserts its seats laid out, in layout order (so a map reads them in heap
-- order too). Seats inserted without a layout (the benchmark's and tests' SQL) get one
-- here, once per statement and venue. The API never changes or deletes a venue's seats.
CREATE FUNCTION rs_venue_seats_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rs_seat_layout(v.venue_id)
       FROM (SELECT DISTINCT venue_id FROM new_seats WHERE row_index IS NULL) v;
    RETURN NULL;
END
$$;
CREATE TRIGGER venue_seats_layout AFTER INSERT ON venue_seats
    REFERENCING NEW TABLE AS new_seats FOR EACH STATEMENT EXECUTE FUNCTION rs_venue_seats_inserted();

-- The venues made before this migration.
SELECT rs_seat_layout(id) FROM venues;

-- The seat map and the venue read their seats in this order straight off the index.
CREATE INDEX venue_seats_layout ON venue_seats (venue_id, row_index, row_position);
