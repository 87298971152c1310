-- Initial schema (upstream ADR 0011 conventions): TEXT ULID primary keys, INTEGER Unix-µs
-- timestamps, ON DELETE RESTRICT foreign keys, no triggers, no clock-reading defaults.
CREATE TABLE buckets (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE cradle_servers (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE objects (
    object_id        TEXT PRIMARY KEY,
    bucket_id        TEXT NOT NULL REFERENCES buckets (id) ON DELETE RESTRICT,
    key              TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'COMMITTED', 'FAILED', 'REPLACED')),
    size_expected    INTEGER NOT NULL,
    size_actual      INTEGER,
    last_modified    INTEGER,
    cradle_server_id TEXT NOT NULL REFERENCES cradle_servers (id) ON DELETE RESTRICT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- At most one COMMITTED object per (bucket, key).
CREATE UNIQUE INDEX objects_one_committed ON objects (bucket_id, key) WHERE state = 'COMMITTED';
CREATE INDEX objects_bucket_key ON objects (bucket_id, key);

-- The Raft log index of the last entry applied to these tables; written in the same
-- transaction as each entry's effect (exactly-once apply across journal replays).
CREATE TABLE raft_applied (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    applied_index INTEGER NOT NULL
);
INSERT INTO raft_applied (id, applied_index) VALUES (1, 0);
