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
    // 2: the webhook tables, in `webhooks.rs`.
    (
        3,
        r#"
CREATE TABLE fhir_resources (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (org_id, resource_type, id, version)
) WITHOUT ROWID;

CREATE TABLE fhir_current (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (org_id, resource_type, id)
) WITHOUT ROWID;
CREATE INDEX fhir_current_updated ON fhir_current (org_id, resource_type, last_updated, id);

CREATE TABLE fhir_search (
    org_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (org_id, resource_type, param, value, id)
) WITHOUT ROWID;
CREATE INDEX fhir_search_by_id ON fhir_search (org_id, resource_type, id);
"#,
    ),
    (2, super::webhooks::MIGRATION),
    // 4: one search row per identifier, `value` U+001F `system` (`fhir::index::identifier_token`), instead of two
    // (`system|value` and `value`); Encounters are indexed by identifier too.
    (
        4,
        r#"
DELETE FROM fhir_search WHERE param = 'identifier';
INSERT OR IGNORE INTO fhir_search (org_id, resource_type, param, value, id)
SELECT c.org_id, c.resource_type, 'identifier',
    (CASE WHEN i.type = 'object' THEN
        (CASE WHEN json_type(i.value, '$.value') = 'text' THEN json_extract(i.value, '$.value') ELSE '' END)
     ELSE '' END)
    || char(31) ||
    (CASE WHEN i.type = 'object' THEN
        (CASE WHEN json_type(i.value, '$.system') = 'text' THEN json_extract(i.value, '$.system') ELSE '' END)
     ELSE '' END),
    c.id
FROM fhir_current c
JOIN fhir_resources r ON r.org_id = c.org_id AND r.resource_type = c.resource_type AND r.id = c.id
    AND r.version = c.version
JOIN json_each(r.body, '$.identifier') i
WHERE c.deleted = 0 AND c.resource_type IN ('Patient', 'Encounter')
    AND json_type(r.body, '$.identifier') = 'array';
"#,
    ),
];
