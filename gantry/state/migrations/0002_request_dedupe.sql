-- depends: 0001_initial
-- Idempotent writes: the outcome of each mutation that carried a client request id
-- (x-request-id), so a retry returns the original outcome instead of applying twice.
-- Rows are pruned by log index during apply (deterministic on every node), never by wall clock.
CREATE TABLE request_dedupe (
    request_id TEXT NOT NULL,
    op         TEXT NOT NULL,
    log_index  INTEGER NOT NULL,
    result     TEXT NOT NULL,
    PRIMARY KEY (request_id, op)
);
CREATE INDEX request_dedupe_log_index ON request_dedupe (log_index);
