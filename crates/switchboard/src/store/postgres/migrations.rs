//! The PostgreSQL schema: the same tables and numbered migrations as on SQLite, in PostgreSQL's types. Append new
//! ones; never edit old ones.
//!
//! `log_head` holds the last `seq` ever assigned and the latest event timestamp. An append locks that one row for the rest of its transaction, so
//! appends from every instance commit one after another and `seq` is gap-free in commit order (see `events.rs`).

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    id UUID NOT NULL,
    ts BIGINT NOT NULL,
    org_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    message_type TEXT,
    message_control_id TEXT,
    resource_type TEXT,
    resource_id TEXT,
    data TEXT NOT NULL,
    metadata TEXT,
    actor TEXT,
    idempotency_key TEXT
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_org_ts ON events (org_id, ts, seq);
CREATE INDEX events_org_type_ts ON events (org_id, event_type, ts, seq);
CREATE INDEX events_org_resource ON events (org_id, resource_type, resource_id, seq)
    WHERE resource_id IS NOT NULL;
CREATE UNIQUE INDEX events_idempotency ON events (org_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE log_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL
);
INSERT INTO log_head (one, seq, ts) VALUES (1, 0, 0);

CREATE TABLE listener_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT,
    name TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor TEXT,
    org_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_org_ts ON audit_log (org_id, ts);
CREATE INDEX audit_ts ON audit_log (ts);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE webhook_subscriptions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    filters TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until BIGINT,
    active BOOLEAN NOT NULL,
    retry_config TEXT NOT NULL,
    headers TEXT NOT NULL,
    rate_limit DOUBLE PRECISION,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_subscriptions_org ON webhook_subscriptions (org_id, created_at);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    priority SMALLINT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    last_status INTEGER,
    last_error TEXT
);
CREATE UNIQUE INDEX webhook_deliveries_sub_event ON webhook_deliveries (subscription_id, event_seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, priority, due_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_sub_status ON webhook_deliveries (subscription_id, status, id);
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (org_id, id) WHERE status = 'dead';
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (claimed_until) WHERE claimed_until > 0;

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code INTEGER,
    duration_us BIGINT NOT NULL,
    error TEXT,
    response_body TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE fhir_resources (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (org_id, resource_type, id, version)
);

CREATE TABLE fhir_current (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    PRIMARY KEY (org_id, resource_type, id)
);
CREATE INDEX fhir_current_updated ON fhir_current (org_id, resource_type, last_updated, id);

CREATE TABLE fhir_search (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, resource_type, param, value, id)
);
CREATE INDEX fhir_search_by_id ON fhir_search (org_id, resource_type, id);
"#,
    ),
    // 4: `fhir_resources.id` in the "C" collation like the columns it is joined with (`fhir_current.id`); with
    // mixed collations the join could not use the primary key and every read of a current resource scanned
    // `fhir_resources` whole.
    (
        4,
        r#"
ALTER TABLE fhir_resources ALTER COLUMN id TYPE TEXT COLLATE "C";
"#,
    ),
    // 5: one search row per identifier, `value` U+001F `system` (`fhir::index::identifier_token`), instead of two
    // (`system|value` and `value`); Encounters are indexed by identifier too.
    (
        5,
        r#"
DELETE FROM fhir_search WHERE param = 'identifier';
INSERT INTO fhir_search (org_id, resource_type, param, value, id)
SELECT c.org_id, c.resource_type, 'identifier',
    (CASE WHEN jsonb_typeof(i.value -> 'value') = 'string' THEN i.value ->> 'value' ELSE '' END)
    || chr(31) ||
    (CASE WHEN jsonb_typeof(i.value -> 'system') = 'string' THEN i.value ->> 'system' ELSE '' END),
    c.id
FROM fhir_current c
JOIN fhir_resources r ON r.org_id = c.org_id AND r.resource_type = c.resource_type AND r.id = c.id
    AND r.version = c.version
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.body::jsonb -> 'identifier') = 'array' THEN r.body::jsonb -> 'identifier'
    ELSE '[]'::jsonb END) AS i(value)
WHERE c.deleted = false AND c.resource_type IN ('Patient', 'Encounter')
ON CONFLICT DO NOTHING;
"#,
    ),
];
