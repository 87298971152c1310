-- depends: 0003_cluster_nodes
-- Deletes and storage-server health.
-- * buckets: soft delete (deleted_at), so objects kept for the cleanup worker still reference
--   their bucket; a name is unique among live buckets only.
-- * objects: new state DELETED (the key's COMMITTED object after DeleteObject).
-- * cradle_servers: heartbeat status and available bytes, written through the log.
-- SQLite cannot alter a UNIQUE or CHECK constraint: both tables are rebuilt (yoyo's connection
-- runs with foreign-key enforcement off, so the rebuild keeps every row and reference).
CREATE TABLE buckets_new (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
INSERT INTO buckets_new (id, name, created_at, updated_at) SELECT id, name, created_at, updated_at FROM buckets;
DROP TABLE buckets;
ALTER TABLE buckets_new RENAME TO buckets;
CREATE UNIQUE INDEX buckets_live_name ON buckets (name) WHERE deleted_at IS NULL;
CREATE INDEX buckets_created ON buckets (created_at, id);

CREATE TABLE objects_new (
    object_id        TEXT PRIMARY KEY,
    bucket_id        TEXT NOT NULL REFERENCES buckets (id) ON DELETE RESTRICT,
    key              TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'COMMITTED', 'FAILED', 'REPLACED', 'DELETED')),
    size_expected    INTEGER NOT NULL,
    size_actual      INTEGER,
    last_modified    INTEGER,
    cradle_server_id TEXT NOT NULL REFERENCES cradle_servers (id) ON DELETE RESTRICT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO objects_new SELECT * FROM objects;
DROP TABLE objects;
ALTER TABLE objects_new RENAME TO objects;
CREATE UNIQUE INDEX objects_one_committed ON objects (bucket_id, key) WHERE state = 'COMMITTED';
CREATE INDEX objects_bucket_key ON objects (bucket_id, key);

CREATE TABLE cradle_servers_new (
    id                 TEXT PRIMARY KEY,
    address            TEXT NOT NULL UNIQUE,
    status             TEXT NOT NULL CHECK (status IN ('HEALTHY', 'DEGRADED', 'OFFLINE')),
    available_bytes    INTEGER NOT NULL,  -- -1: never reported
    consecutive_misses INTEGER NOT NULL,
    last_heartbeat_at  INTEGER NOT NULL,  -- Unix µs; 0: never
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
INSERT INTO cradle_servers_new
    SELECT id, address, 'HEALTHY', -1, 0, 0, created_at, updated_at FROM cradle_servers;
DROP TABLE cradle_servers;
ALTER TABLE cradle_servers_new RENAME TO cradle_servers;
