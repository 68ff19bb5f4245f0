-- 0007: the relationship manager's book and availability; the customer service desk
-- (queues, agents, routing, service sessions, figures). See docs/service-desk.md.

-- A customer's account class: I (full-function), II and III (limited electronic accounts).
ALTER TABLE users ADD COLUMN account_class text CHECK (account_class IN ('I', 'II', 'III'));

-- A customer's chat with the service desk is a conversation of its own kind.
ALTER TABLE conversations DROP CONSTRAINT conversations_kind_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_kind_check CHECK (kind IN ('direct', 'group', 'service'));

-- --- relationship managers -------------------------------------------------------------

-- An RM's declared availability. No row: online.
CREATE TABLE rm_status (
    user_id  uuid PRIMARY KEY REFERENCES users (id),
    status   text NOT NULL CHECK (status IN ('online', 'away', 'off_duty')),
    -- the RM's own auto-reply text (NULL: the default one)
    message  text CHECK (length(message) BETWEEN 1 AND 500),
    -- bumped whenever the RM enters away or off duty: customers get one auto-reply per period
    period   bigint NOT NULL DEFAULT 0,
    since    timestamptz NOT NULL DEFAULT now()
);

-- The last away period each customer got an auto-reply in (one per period, not per message).
CREATE TABLE rm_auto_replies (
    rm_id       uuid NOT NULL REFERENCES users (id),
    customer_id uuid NOT NULL REFERENCES users (id),
    period      bigint NOT NULL,
    replied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rm_id, customer_id)
);

-- --- service desk ----------------------------------------------------------------------

-- Queues by department or skill. Business hours: the window [open_minute, close_minute) of
-- local time in ``timezone`` on the ISO weekdays ``days`` (a window with close <= open runs
-- past midnight into the next day).
CREATE TABLE service_queues (
    code          text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_-]{1,31}$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    timezone      text NOT NULL DEFAULT 'Asia/Shanghai',
    days          smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}' CHECK (days <@ '{1,2,3,4,5,6,7}'),
    open_minute   smallint NOT NULL DEFAULT 0 CHECK (open_minute BETWEEN 0 AND 1439),
    close_minute  smallint NOT NULL DEFAULT 1440 CHECK (close_minute BETWEEN 1 AND 1440),
    -- the reply to a customer who asks for a person outside business hours ('': the default)
    out_of_hours_text text NOT NULL DEFAULT '' CHECK (length(out_of_hours_text) <= 1000),
    -- FIFO: each waiting customer takes the next ticket, under this row's lock
    last_ticket   bigint NOT NULL DEFAULT 0,
    -- bumped by every change of the queue's waiting list; carried by the live position updates
    revision      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Agents on the desk: state, capacity (concurrent conversations) and current load.
CREATE TABLE service_agents (
    user_id           uuid PRIMARY KEY REFERENCES users (id),
    state             text NOT NULL DEFAULT 'away' CHECK (state IN ('available', 'busy', 'away')),
    capacity          integer NOT NULL DEFAULT 3 CHECK (capacity BETWEEN 1 AND 50),
    -- conversations being handled now; routing never goes past capacity (also checked here)
    active            integer NOT NULL DEFAULT 0 CHECK (active >= 0),
    -- fairness among equally loaded agents: the one who waited longest since an assignment
    last_assigned_at  timestamptz,
    state_since       timestamptz NOT NULL DEFAULT now(),
    CHECK (active <= capacity)
);

-- Which queues an agent serves (skills).
CREATE TABLE service_agent_queues (
    user_id  uuid NOT NULL REFERENCES service_agents (user_id),
    queue    text NOT NULL REFERENCES service_queues (code),
    PRIMARY KEY (user_id, queue)
);
CREATE INDEX service_agent_queues_queue ON service_agent_queues (queue);

-- A customer's one conversation with the desk (kind 'service'): every session lands in it.
CREATE TABLE service_conversations (
    customer_id      uuid PRIMARY KEY REFERENCES users (id),
    conversation_id  uuid NOT NULL UNIQUE REFERENCES conversations (id)
);

-- Tags an agent closes a session with (at least one is required).
CREATE TABLE service_tags (
    tag    text PRIMARY KEY CHECK (tag ~ '^[a-z][a-z0-9_]{1,31}$'),
    label  text NOT NULL
);
INSERT INTO service_tags (tag, label) VALUES
    ('resolved', 'Resolved'),
    ('card_activation', 'Card activation'),
    ('card_loss', 'Lost or stolen card'),
    ('card_limit', 'Card limit'),
    ('loan_inquiry', 'Loan inquiry'),
    ('repayment', 'Repayment'),
    ('account_inquiry', 'Account inquiry'),
    ('transfer_issue', 'Transfer issue'),
    ('complaint', 'Complaint'),
    ('fraud_report', 'Fraud report'),
    ('follow_up', 'Needs follow-up'),
    ('other', 'Other');

-- One service session: bot first, then waiting in a queue, then with an agent, then closed.
CREATE TABLE service_sessions (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    customer_id      uuid NOT NULL REFERENCES users (id),
    queue            text NOT NULL REFERENCES service_queues (code),
    state            text NOT NULL CHECK (state IN ('bot', 'waiting', 'active', 'closed')),
    -- FIFO place in the queue while waiting; transferred sessions wait with priority 1
    ticket           bigint,
    priority         smallint NOT NULL DEFAULT 0,
    -- the agent serving now (active), or the last one (closed)
    agent_id         uuid REFERENCES users (id),
    -- the conversation's last seq when the session opened: agents read it from here
    start_seq        bigint NOT NULL DEFAULT 0,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    queued_at        timestamptz,
    assigned_at      timestamptz,
    closed_at        timestamptz,
    closed_by        uuid REFERENCES users (id),
    tags             text[] NOT NULL DEFAULT '{}',
    csat             smallint CHECK (csat BETWEEN 1 AND 5),
    csat_comment     text CHECK (length(csat_comment) <= 1000),
    csat_at          timestamptz,
    CHECK ((state = 'waiting') = (ticket IS NOT NULL)),
    CHECK (state <> 'active' OR agent_id IS NOT NULL),
    CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
    CHECK ((csat IS NULL) = (csat_at IS NULL))
);
-- at most one open session per customer
CREATE UNIQUE INDEX service_sessions_open ON service_sessions (customer_id) WHERE state <> 'closed';
CREATE INDEX service_sessions_waiting ON service_sessions (queue, priority DESC, ticket) WHERE state = 'waiting';
CREATE INDEX service_sessions_agent ON service_sessions (agent_id) WHERE state = 'active';
CREATE INDEX service_sessions_conversation ON service_sessions (conversation_id);
CREATE INDEX service_sessions_closed ON service_sessions (closed_at) WHERE closed_at IS NOT NULL;

-- One row per agent stint on a session (from the queue or by transfer): wait and handle times.
CREATE TABLE service_assignments (
    seq          bigserial PRIMARY KEY,
    session_id   uuid NOT NULL REFERENCES service_sessions (id),
    agent_id     uuid NOT NULL REFERENCES users (id),
    queue        text NOT NULL REFERENCES service_queues (code),
    via          text NOT NULL CHECK (via IN ('queue', 'transfer')),
    ticket       bigint,
    queued_at    timestamptz NOT NULL,
    assigned_at  timestamptz NOT NULL,
    ended_at     timestamptz,
    outcome      text CHECK (outcome IN ('transferred', 'closed')),
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX service_assignments_session ON service_assignments (session_id);
CREATE INDEX service_assignments_assigned ON service_assignments (assigned_at);
CREATE INDEX service_assignments_ended ON service_assignments (queue, ended_at) WHERE ended_at IS NOT NULL;

-- Notes on a session for agents and supervisors only (never shown to the customer).
CREATE TABLE service_notes (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES service_sessions (id),
    author_id   uuid NOT NULL REFERENCES users (id),
    kind        text NOT NULL CHECK (kind IN ('transfer', 'close')),
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    to_queue    text REFERENCES service_queues (code),
    to_agent    uuid REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_notes_session ON service_notes (session_id);
