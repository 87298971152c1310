DROP VIEW live_cradle_servers;
DROP VIEW live_objects;
DROP VIEW live_buckets;
