DROP INDEX request_dedupe_log_index;
DROP TABLE request_dedupe;
