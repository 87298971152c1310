-- depends: 0005_dedupe_fingerprint
-- The term of the last applied entry, beside its log index: a replica's state is identified by
-- (applied index, applied term), so a node that applied an entry the leader's log does not hold
-- (same index, other term) is detected and restored from the leader's snapshot (Raft §5.3–5.4).
ALTER TABLE raft_applied ADD COLUMN applied_term INTEGER NOT NULL DEFAULT 0;
