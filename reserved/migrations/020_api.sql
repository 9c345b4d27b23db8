-- 020: helpers of the catalogue API (rs_api).
-- Times go out as RFC 3339 in UTC ("2026-12-01T19:00:00Z"), with microseconds only when
-- the stored value has them, so what a client sent comes back unchanged.
CREATE FUNCTION rs_rfc3339(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN date_trunc('second', t) = t
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
$$;

-- E-mail addresses are unique regardless of case ("Ann@x.org" is "ann@x.org").
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

-- Catalogue search filters by title substring, case-insensitively, walking starts_at
-- order (performances_starts); no trigram index: the catalogue is small next to bookings.
