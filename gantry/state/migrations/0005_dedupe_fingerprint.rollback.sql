ALTER TABLE request_dedupe DROP COLUMN fingerprint;
