"""The ``gantry`` command: ``serve`` runs a node; ``migrate`` manages the schema.

Exit codes: 0 clean stop, 1 fatal error while running, 2 bad configuration or schema.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import threading

import structlog

from gantry import config as config_mod
from gantry import logs, migrate


def _serve(ns: argparse.Namespace) -> int:
    from gantry.node import Node, StartError  # heavy imports only for serve

    try:
        cfg = config_mod.from_args(ns)
    except config_mod.ConfigError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    logs.configure(cfg.node_id, cfg.log_format, cfg.log_level)
    log = structlog.get_logger("gantry.cli")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = Node(cfg)
    try:
        node.start()
    except migrate.SchemaError as e:
        log.error("schema_refused", error=str(e))
        print(f"gantry: {e}", file=sys.stderr)
        node.stop()
        return 2
    except StartError as e:
        log.error("start_refused", error=str(e))
        print(f"gantry: {e}", file=sys.stderr)
        node.stop()
        return 2
    except Exception:
        log.exception("start_failed")
        node.stop()
        return 1
    while not stop.wait(0.2):
        if node.fatal.is_set():
            log.critical("node_failed", reason=node.fatal_reason)
            break
    node.stop()
    return 1 if node.fatal.is_set() else 0


def _migrate(ns: argparse.Namespace) -> int:
    db = pathlib.Path(ns.db)
    try:
        if ns.action == "up":
            print("applied:", ", ".join(migrate.upgrade(db)) or "nothing")
        elif ns.action == "down":
            print("rolled back:", ", ".join(migrate.downgrade(db, ns.steps)) or "nothing")
        elif ns.action == "break-lock":
            migrate.break_lock(db)
            print("lock removed")
        else:
            st = migrate.status(db)
            print(f"applied: {', '.join(st.applied) or '-'}")
            print(f"pending: {', '.join(st.pending) or '-'}")
            if st.unknown_applied:
                print(f"unknown (newer build): {st.unknown_applied}")
    except migrate.SchemaError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gantry", description="Gantry metadata node")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a node (single-node cluster by default)")
    config_mod.add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="inspect or change the database schema")
    mig.add_argument("action", choices=["status", "up", "down", "break-lock"])
    mig.add_argument("--db", default="data/gantry.db", help="SQLite file (default data/gantry.db)")
    mig.add_argument("--steps", type=int, default=1, help="migrations to roll back (down)")
    mig.set_defaults(func=_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
