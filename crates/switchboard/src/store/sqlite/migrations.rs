//! The SQLite schema, as numbered migrations applied in order at start. Append new ones; never edit old ones.

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL,
    ts INTEGER NOT NULL,
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

CREATE TABLE listener_cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
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
    (2, super::webhooks::MIGRATION),
];
