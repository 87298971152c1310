-- depends: 0006_applied_term
-- Storage servers can be unregistered (gantry.admin.v1 UnregisterCradleServer). The row stays,
-- stamped with the time (Unix µs) it was unregistered: objects keep referencing the server they
-- were placed on (ON DELETE RESTRICT), and their history keeps its address. NULL = registered.
ALTER TABLE cradle_servers ADD COLUMN unregistered_at INTEGER;
