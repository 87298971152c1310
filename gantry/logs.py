"""Logging set-up, once, at start-up: structlog for Gantry's own events, and the stdlib loggers
of pykka, pysyncobj and grpc routed through the same renderer (structlog ProcessorFormatter).

JSON lines on stdout when ``LOG_FORMAT=json`` or stdout is not a terminal; a pretty console
otherwise. Every line carries ``node_id``. Event names are past-tense snake_case.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def _drop_matching_truncation(record: logging.LogRecord) -> bool:
    """pysyncobj logs CRITICAL "truncating already-applied log entries" whenever a leader resends
    entries a follower already has. Gantry's journal keeps matching entries (truncating only at a
    real term conflict, which it logs as ``raft_log_conflict_truncated``), so the line is noise."""
    return "truncating already-applied log entries" not in str(record.msg)


def configure(node_id: str, log_format: str = "", level: str = "info") -> None:
    """Configure structlog and stdlib logging for this process.

    ``log_format``: ``"json"``, ``"pretty"`` or ``""`` (auto by ``sys.stdout.isatty()``).
    ``level``: debug|info|warning|error|critical.
    """
    json_out = log_format == "json" or (log_format == "" and not sys.stdout.isatty())

    def add_node_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("node_id", node_id)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_node_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_out:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())

    structlog.configure(
        # filter_by_level first: a debug call below the level costs a comparison, not a render.
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # pysyncobj logs every reconnect attempt at warning/debug; keep it but not noisier than asked.
    logging.getLogger("pysyncobj").setLevel(max(root.level, logging.INFO))
    logging.getLogger("pysyncobj.syncobj").addFilter(_drop_matching_truncation)
    # yoyo narrates every migration step; Gantry logs migration_applied itself.
    logging.getLogger("yoyo").setLevel(max(root.level, logging.WARNING))
