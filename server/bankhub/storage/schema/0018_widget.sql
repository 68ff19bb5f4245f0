-- 0018: the embeddable service widget (see docs/widget.md).
--
-- A widget partner is a site or app that embeds the hub's service chat. Its backend signs
-- short-lived visitor tokens with an HMAC secret stored like a calling system's secret:
-- 32 random bytes, wrapped under a KEK (kek_id, wrapped_secret), never in clear. The hub
-- frames the widget only inside the partner's registered origins (CSP frame-ancestors) and
-- accepts postMessage only from them.
--
-- A visitor is a user row (role customer, widget_visitor = true) that can do nothing but
-- talk to the service desk: the policy checks the flag on every HTTP route and WebSocket
-- frame. Its password hash is unusable, so it can never sign in with a password.

CREATE TABLE widget_partners (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    -- exact origins (scheme://host[:port], lower case, no path): https, or loopback http
    -- which a hub honours only with BANKHUB_WIDGET_DEV_ORIGINS=loopback
    origins         text[] NOT NULL CHECK (cardinality(origins) BETWEEN 1 AND 16),
    -- the org the partner's visitors belong to (the head office by default)
    org_id          uuid NOT NULL REFERENCES orgs (id),
    kek_id          text NOT NULL,
    wrapped_secret  bytea NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz
);

ALTER TABLE users ADD COLUMN widget_visitor boolean NOT NULL DEFAULT false;

-- A partner's visitor (its own id for them) and the hub user standing for them.
CREATE TABLE widget_visitors (
    partner_id   uuid NOT NULL REFERENCES widget_partners (id),
    external_id  text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 128),
    user_id      uuid NOT NULL UNIQUE REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, external_id)
);

-- Token nonces: a visitor token is exchanged once. A row is kept until its token has
-- expired (plus the clock-skew bound); older rows are deleted as new ones arrive.
CREATE TABLE widget_nonces (
    partner_id  uuid NOT NULL REFERENCES widget_partners (id),
    nonce       text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (partner_id, nonce)
);
CREATE INDEX widget_nonces_expires ON widget_nonces (expires_at);
