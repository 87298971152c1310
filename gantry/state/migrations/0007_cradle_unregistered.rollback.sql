-- Down: the old schema cannot say "unregistered", so such servers become registered again;
-- they come back OFFLINE (PlanWrite skips them) until a heartbeat reaches them.
UPDATE cradle_servers SET status = 'OFFLINE' WHERE unregistered_at IS NOT NULL;
ALTER TABLE cradle_servers DROP COLUMN unregistered_at;
