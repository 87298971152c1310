-- depends: 0004_deletes_and_cradle_health
-- A retried request id must carry the same request: remember a fingerprint of its arguments.
ALTER TABLE request_dedupe ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
