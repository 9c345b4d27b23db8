-- 001: the booking model (issue 3 §1). Guards in the database catch what the lock
-- should already prevent; a guard that fires is a bug signal that reserved counts.
CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 320),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venues (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venue_seats (
    id        bigserial PRIMARY KEY,
    venue_id  bigint NOT NULL REFERENCES venues (id),
    row_label text NOT NULL CHECK (length(row_label) BETWEEN 1 AND 16),
    number    integer NOT NULL CHECK (number > 0),
    type      text NOT NULL CHECK (type IN ('NORMAL', 'VIP')),
    UNIQUE (venue_id, row_label, number)
);
CREATE INDEX venue_seats_venue ON venue_seats (venue_id, id);

CREATE TABLE performances (
    id                 bigserial PRIMARY KEY,
    venue_id           bigint NOT NULL REFERENCES venues (id),
    title              text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    starts_at          timestamptz NOT NULL,
    normal_price       bigint NOT NULL CHECK (normal_price >= 0),
    vip_price          bigint NOT NULL CHECK (vip_price >= 0),
    total_capacity     integer NOT NULL CHECK (total_capacity >= 0),
    remaining_capacity integer NOT NULL,
    -- The largest lock fence that committed a booking (SPEC §4): a holder with a smaller
    -- fence lost its lock and must not commit.
    last_fence         numeric(20, 0) NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT performances_capacity_guard
        CHECK (remaining_capacity >= 0 AND remaining_capacity <= total_capacity)
);
CREATE INDEX performances_starts ON performances (starts_at, id);
CREATE INDEX performances_venue_starts ON performances (venue_id, starts_at, id);

CREATE TABLE reservations (
    id                bigserial PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id),
    performance_id    bigint NOT NULL REFERENCES performances (id),
    status            text NOT NULL CHECK (status IN ('CONFIRMED', 'CANCELLED')),
    -- prices captured at booking time: a later PATCH of the performance changes nothing here
    normal_price      bigint NOT NULL CHECK (normal_price >= 0),
    vip_price         bigint NOT NULL CHECK (vip_price >= 0),
    total_amount      bigint NOT NULL CHECK (total_amount >= 0),
    payment_id        text,
    -- links the reservation to its payment_attempts row (the reconciler's join key)
    payment_reference text UNIQUE,
    fence             numeric(20, 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    cancelled_at      timestamptz
);
CREATE INDEX reservations_user ON reservations (user_id, id);
CREATE INDEX reservations_performance ON reservations (performance_id);

CREATE TABLE reservation_seats (
    reservation_id bigint NOT NULL REFERENCES reservations (id),
    performance_id bigint NOT NULL REFERENCES performances (id),
    seat_id        bigint NOT NULL REFERENCES venue_seats (id),
    seat_type      text NOT NULL CHECK (seat_type IN ('NORMAL', 'VIP')), -- captured at booking
    price          bigint NOT NULL CHECK (price >= 0),                   -- captured at booking
    confirmed      boolean NOT NULL DEFAULT true, -- false once the reservation is cancelled
    PRIMARY KEY (reservation_id, seat_id)
);
-- The guard against selling a seat twice: at most one CONFIRMED reservation per seat and
-- performance.
CREATE UNIQUE INDEX reservation_seats_one_confirmed
    ON reservation_seats (performance_id, seat_id) WHERE confirmed;

-- Every payment attempt is recorded durably BEFORE the gateway is called, in its own
-- committed row outside the booking transaction, so a crash leaves a trace the
-- reconciler can find (issue 3 §3).
CREATE TABLE payment_attempts (
    reference      text PRIMARY KEY, -- sent to the gateway as reference and Idempotency-Key
    performance_id bigint NOT NULL,
    user_id        bigint NOT NULL,
    amount         bigint NOT NULL CHECK (amount >= 0),
    -- PENDING: gateway called, outcome unknown; APPROVED: approved, booking not committed
    -- yet; CAPTURED: the booking committed with it (set inside the booking transaction);
    -- DECLINED; CANCELLING/CANCELLED: compensation in progress / done.
    status         text NOT NULL
        CHECK (status IN ('PENDING', 'APPROVED', 'CAPTURED', 'DECLINED', 'CANCELLING', 'CANCELLED')),
    payment_id     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_attempts_open ON payment_attempts (created_at)
    WHERE status IN ('PENDING', 'APPROVED', 'CANCELLING');

-- Idempotency-Key of POST /performances/{id}/reservations: the first outcome, replayed.
CREATE TABLE idempotency_keys (
    key            text PRIMARY KEY,
    request_hash   text NOT NULL, -- hash of (performance id, body): same key, other body -> 422
    status_code    integer NOT NULL,
    response       jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
