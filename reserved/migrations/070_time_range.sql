-- 070: every stored performance time has an RFC 3339 form (issue 13): its UTC instant lies
-- in years 0001..9999. reserved refuses other times on input (rs_rfc3339.h says why: year
-- 10000 is five digits in to_char, 1 BC is "0001" without the era, and the search cursor
-- the server issued for such a row was then refused); this constraint keeps every other
-- writer in the same range. A row stored before that check is brought to the nearest
-- representable instant first, so that it can be shown and paged over (the API could
-- neither show nor page over it as it was).
UPDATE performances SET starts_at = '9999-12-31T23:59:59.999999Z'
 WHERE starts_at >= '10000-01-01T00:00:00Z';
UPDATE performances SET starts_at = '0001-01-01T00:00:00Z'
 WHERE starts_at < '0001-01-01T00:00:00Z';
ALTER TABLE performances ADD CONSTRAINT performances_starts_at_rfc3339
    CHECK (starts_at >= '0001-01-01T00:00:00Z' AND starts_at < '10000-01-01T00:00:00Z');
