ALTER TABLE raft_applied DROP COLUMN applied_term;
