DROP TABLE raft_applied;
DROP INDEX objects_bucket_key;
DROP INDEX objects_one_committed;
DROP TABLE objects;
DROP TABLE cradle_servers;
DROP TABLE buckets;
