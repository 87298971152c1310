-- Down: DELETED objects and deleted buckets have no place in the old schema and are dropped.
CREATE TABLE cradle_servers_old (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO cradle_servers_old SELECT id, address, created_at, updated_at FROM cradle_servers;
DROP TABLE cradle_servers;
ALTER TABLE cradle_servers_old RENAME TO cradle_servers;

CREATE TABLE objects_old (
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
INSERT INTO objects_old SELECT o.* FROM objects o JOIN buckets b ON b.id = o.bucket_id
    WHERE o.state != 'DELETED' AND b.deleted_at IS NULL;
DROP TABLE objects;
ALTER TABLE objects_old RENAME TO objects;
CREATE UNIQUE INDEX objects_one_committed ON objects (bucket_id, key) WHERE state = 'COMMITTED';
CREATE INDEX objects_bucket_key ON objects (bucket_id, key);

CREATE TABLE buckets_old (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO buckets_old SELECT id, name, created_at, updated_at FROM buckets WHERE deleted_at IS NULL;
DROP TABLE buckets;
ALTER TABLE buckets_old RENAME TO buckets;
