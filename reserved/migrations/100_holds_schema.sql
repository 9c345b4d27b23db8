-- 100: the tables of seat holds (SPEC §9). A hold keeps seats of one performance for one
-- user until expires_at; its rules (taken under the performance lock and fence, counted by
-- the purchase limit, consumed by a booking, freed by DELETE or by the expiry sweeper) come
-- with the code that applies them. A seat is held while its hold_seats row is active: at
-- most one active hold per seat (the index below is the guard, as
-- reservation_seats_one_confirmed is for sales).
CREATE TABLE holds (
    id             bigserial PRIMARY KEY,
    performance_id bigint NOT NULL REFERENCES performances (id),
    user_id        bigint NOT NULL REFERENCES users (id),
    -- ACTIVE -> BOOKED (a booking took its seats) | RELEASED (DELETE) | EXPIRED (sweeper)
    status         text NOT NULL DEFAULT 'ACTIVE'
                   CHECK (status IN ('ACTIVE', 'BOOKED', 'RELEASED', 'EXPIRED')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    fence          numeric, -- the performance lock's fence it was taken under (lockd mode)
    CHECK ((status = 'ACTIVE') = (ended_at IS NULL))
);
CREATE INDEX holds_active_expiry ON holds (expires_at) WHERE status = 'ACTIVE';
CREATE INDEX holds_user_performance ON holds (user_id, performance_id) WHERE status = 'ACTIVE';

CREATE TABLE hold_seats (
    hold_id        bigint NOT NULL REFERENCES holds (id),
    performance_id bigint NOT NULL REFERENCES performances (id),
    seat_id        bigint NOT NULL REFERENCES venue_seats (id),
    active         boolean NOT NULL DEFAULT true, -- false once its hold is no longer ACTIVE
    PRIMARY KEY (hold_id, seat_id)
);
CREATE UNIQUE INDEX hold_seats_one_active ON hold_seats (performance_id, seat_id) WHERE active;
