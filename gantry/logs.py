"""Logging set-up, once, at start-up: structlog for Gantry's own events, and the stdlib loggers
of pykka, pysyncobj and grpc routed through the same renderer (structlog ProcessorFormatter).

JSON lines on stdout when ``LOG_FORMAT=json`` or stdout is not a terminal; a pretty console
otherwise. Every line carries ``node_id``. Event names are past-tense snake_case.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def _drop_matching_truncation(record: logging.LogRecord) -> bool:
    """pysyncobj logs CRITICAL "truncating already-applied log entries" whenever a leader resends
    entries a follower already has. Gantry's journal keeps matching entries (truncating only at a
    real term conflict, which it logs as ``raft_log_conflict_truncated``), so the line is noise."""
    return "truncating already-applied log entries" not in str(record.msg)


def configure(node_id: str, log_format: str = "", level: str = "info",
              extra: dict[str, Any] | None = None) -> None:
    """Configure structlog and stdlib logging for this process.

    ``log_format``: ``"json"``, ``"pretty"`` or ``""`` (auto by ``sys.stdout.isatty()``).
    ``level``: debug|info|warning|error|critical. ``extra``: fields every line carries too
    (a read worker's ``worker``: :mod:`gantry.readworker`).

    Gantry's own events take structlog's native path (a filtering bound logger writing rendered
    lines straight to stdout, JSON by orjson): the per-RPC line is on the hot path, and going
    through stdlib ``logging`` cost about a fifth of a write's CPU. Library loggers (pykka,
    pysyncobj, grpc, yoyo) go through stdlib ``logging`` and the same renderer.
    """
    json_out = log_format == "json" or (log_format == "" and not sys.stdout.isatty())
    levelno = _LEVELS.get(level, logging.INFO)
    fixed = tuple((extra or {}).items())

    def add_node_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("node_id", node_id)
        for k, v in fixed:
            event.setdefault(k, v)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _add_logger_name,
        add_node_id,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json_out:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=_named_logger_factory,
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
    root.setLevel(levelno)
    # pysyncobj logs every reconnect attempt at warning/debug; keep it but not noisier than asked.
    logging.getLogger("pysyncobj").setLevel(max(root.level, logging.INFO))
    logging.getLogger("pysyncobj.syncobj").addFilter(_drop_matching_truncation)
    # yoyo narrates every migration step; Gantry logs migration_applied itself.
    logging.getLogger("yoyo").setLevel(max(root.level, logging.WARNING))


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name it was created for (``get_logger("gantry.x")``)."""

    name = ""


def _named_logger_factory(*args: Any) -> _NamedWriteLogger:
    lg = _NamedWriteLogger(sys.stdout)
    lg.name = str(args[0]) if args else ""
    return lg


def _add_logger_name(logger: Any, _: str, event: dict[str, Any]) -> dict[str, Any]:
    # Gantry's loggers are _NamedWriteLogger; stdlib records arrive with their logging.Logger.
    name = getattr(logger, "name", "")
    if name:
        event.setdefault("logger", name)
    return event


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def exit_now(code: int) -> NoReturn:
    """Flush stdout and stderr (the JSON log lines written so far) and end the process at once
    with ``code`` (``os._exit``: no atexit hooks, no waiting for pykka or grpc threads). For the
    paths that must not wait: a failed Raft log fsync, a stuck shutdown, an orphaned worker."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
