-- fence.sql: the fence check ("sequencer", Chubby) for any lockd client, in PostgreSQL.
--
-- Load once per database (idempotent: safe to run again, and from several sessions):
--     psql -v ON_ERROR_STOP=1 -f sql/fence.sql
--
-- Then, inside the transaction that does the protected work, before COMMIT:
--     SELECT lock_fence_advance('Performance:42', 1207);
-- true:  1207 is >= every fence recorded for that resource; it is now the one recorded
--        (the same fence again is true: one holder may write many times).
-- false: a newer holder has written already; this holder lost its lock: ROLLBACK.
--
-- Concurrency: INSERT ... ON CONFLICT DO UPDATE takes the resource's row lock, so two
-- holders' transactions that advance the same resource run one after the other: the
-- second waits for the first to commit or roll back, then compares against what the
-- first committed (READ COMMITTED re-checks the latest row version). A first record of
-- a resource races the same way, through the primary key. Under REPEATABLE READ or
-- SERIALIZABLE the second gets a serialization failure instead: roll back, as for false.
-- The row lock is held to the end of the transaction, so no older holder can commit
-- between the check and this transaction's COMMIT.
--
-- Fences are LOCKP's unsigned 64-bit numbers: numeric, because bigint stops at 2^63-1.

CREATE TABLE IF NOT EXISTS lock_fences (
    resource   text PRIMARY KEY,            -- the LOCKP resource name
    fence      numeric(20, 0) NOT NULL CHECK (fence >= 0),  -- the largest fence seen
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION lock_fence_advance(resource text, fence numeric)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    advanced boolean;
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR $2 < 0 OR $2 <> trunc($2) THEN
        RAISE EXCEPTION 'lock_fence_advance: bad arguments (%, %)', $1, $2
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO lock_fences AS f (resource, fence) VALUES ($1, $2)
    ON CONFLICT ON CONSTRAINT lock_fences_pkey
    DO UPDATE SET fence = excluded.fence, updated_at = now()
        WHERE f.fence <= excluded.fence
    RETURNING true INTO advanced;
    RETURN coalesce(advanced, false);
END
$$;

COMMENT ON FUNCTION lock_fence_advance(text, numeric) IS
    'true (and records it) when fence >= every fence seen for resource; false: a newer lock holder wrote first';
