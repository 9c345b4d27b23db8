-- 080: accounts, login sessions and roles (SPEC §6a). A password is stored only as an
-- Argon2id string (libsodium's crypto_pwhash_str); users made before this migration have
-- none and cannot log in until an admin sets one (reserved --add-admin) or they sign up
-- again under another email. A login token is never stored: only its SHA-256, so a copy
-- of this table logs nobody in. Logging out deletes the row, and every reserved process
-- looks the token up on every request, so the logout holds everywhere at once.
ALTER TABLE users
    ADD COLUMN password_hash text CHECK (password_hash LIKE '$argon2id$%'),
    ADD COLUMN role text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin'));

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
-- the sweeper deletes expired sessions in expiry order
CREATE INDEX sessions_expires_at ON sessions (expires_at);
