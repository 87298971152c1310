-- depends: 0002_request_dedupe
-- Where each cluster member serves gRPC, announced by the member itself through the log, so any
-- node can name the leader's client address in an UNAVAILABLE error.
CREATE TABLE cluster_nodes (
    raft_addr  TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL,
    grpc_addr  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
