-- depends: 0007_cradle_unregistered
-- Read-only views for people inspecting a node's file with sqlite3 or a GUI (README, "Look inside
-- with sqlite3"): what is live, joined to the names you know, with times as UTC ISO-8601 text
-- (millisecond precision; the tables keep Unix µs integers). "Live" means: buckets not deleted,
-- objects PENDING or COMMITTED, storage servers not unregistered.
-- Nothing in gantry reads these views — the state machine and the API query the tables — so
-- they may change shape in a later release without touching the log or the wire. They live in
-- the schema, so snapshots and backups carry them.
-- A later migration that rebuilds a table named here (create, copy, DROP, RENAME) or drops one of
-- its columns must drop these views first and create them again after: SQLite refuses the rename
-- or drop while a view names the table or column.
CREATE VIEW live_buckets AS
SELECT b.name,
       strftime('%Y-%m-%dT%H:%M:%fZ', b.created_at / 1e6, 'unixepoch') AS created_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', b.updated_at / 1e6, 'unixepoch') AS updated_at,
       b.id AS bucket_id
FROM buckets b
WHERE b.deleted_at IS NULL;

CREATE VIEW live_objects AS
SELECT b.name AS bucket,
       o.key,
       o.state,
       -- COMMITTED: the size CommitObject recorded; PENDING: the size PlanWrite planned.
       CASE WHEN o.state = 'COMMITTED' THEN o.size_actual ELSE o.size_expected END AS size,
       c.address AS cradle_address,
       CASE WHEN c.unregistered_at IS NOT NULL THEN 'UNREGISTERED' ELSE c.status END
           AS cradle_status,
       strftime('%Y-%m-%dT%H:%M:%fZ', o.last_modified / 1e6, 'unixepoch') AS last_modified,
       strftime('%Y-%m-%dT%H:%M:%fZ', o.created_at / 1e6, 'unixepoch') AS created_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', o.updated_at / 1e6, 'unixepoch') AS updated_at,
       o.object_id
FROM objects o
JOIN buckets b ON b.id = o.bucket_id
LEFT JOIN cradle_servers c ON c.id = o.cradle_server_id
WHERE o.state IN ('PENDING', 'COMMITTED');

CREATE VIEW live_cradle_servers AS
SELECT c.address,
       c.status,
       -- NULL until a heartbeat reported it (the table's -1).
       CASE WHEN c.available_bytes >= 0 THEN c.available_bytes END AS available_bytes,
       CASE
           WHEN c.available_bytes < 0 THEN NULL
           WHEN c.available_bytes >= 1099511627776
               THEN printf('%.1f TiB', c.available_bytes / 1099511627776.0)
           WHEN c.available_bytes >= 1073741824
               THEN printf('%.1f GiB', c.available_bytes / 1073741824.0)
           WHEN c.available_bytes >= 1048576 THEN printf('%.1f MiB', c.available_bytes / 1048576.0)
           WHEN c.available_bytes >= 1024 THEN printf('%.1f KiB', c.available_bytes / 1024.0)
           ELSE printf('%d B', c.available_bytes)
       END AS available,
       c.consecutive_misses,
       -- NULL: never answered a heartbeat (the table's 0).
       strftime('%Y-%m-%dT%H:%M:%fZ', NULLIF(c.last_heartbeat_at, 0) / 1e6, 'unixepoch')
           AS last_heartbeat_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.created_at / 1e6, 'unixepoch') AS created_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', c.updated_at / 1e6, 'unixepoch') AS updated_at,
       c.id AS cradle_server_id
FROM cradle_servers c
WHERE c.unregistered_at IS NULL;
