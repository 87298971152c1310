"""The ``gantry`` command: ``serve`` runs a node; ``migrate`` manages the schema; ``repair-log``
cuts a damaged Raft log (node stopped); ``status``, ``add-node``, ``remove-node``,
``transfer-leader`` and ``unregister-cradle`` talk to a running node's ClusterService;
``status --cluster`` asks every member (:mod:`gantry.clusterview`); ``--version`` prints the
package version; ``backup`` streams a copy of a node's database and ``restore`` seeds a new data
directory from one (:mod:`gantry.backup`).

Exit codes: 0 clean stop or success; 1 fatal error while running, or the asked node's admin call
failed; 2 bad configuration or schema (for the admin commands: unusable ``--tls-*`` files); 3
(``status --cluster`` only) a member is unreachable or not SERVING.

The admin commands reach a TLS node with ``--tls-ca`` (and ``--tls-cert``/``--tls-key`` for
mTLS), and send ``--admin-token``/``GANTRY_ADMIN_TOKEN`` (:mod:`gantry.tlsconfig`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sqlite3
import sys
import threading
import time

import structlog

from gantry import config as config_mod
from gantry import logs
from gantry.state import migrate

#: Permission bits gantry never grants on what it creates (group and others: none).
PRIVATE_UMASK = 0o077


def _serve(ns: argparse.Namespace) -> int:
    from gantry.node import Node, StartError  # heavy imports only for serve

    try:
        cfg = config_mod.from_args(ns)
    except config_mod.ConfigError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    cfg.force_new_cluster = bool(getattr(ns, "force_new_cluster", False))
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
    except sqlite3.DatabaseError as e:  # damage the start-up checks could not see
        log.error("database_damaged", db_path=str(cfg.database), error=str(e))
        print(f"gantry: database {cfg.database} is damaged ({e}); move it out of the way to "
              "let the node rebuild it from its Raft log and snapshot, or restore the node from "
              "a peer (README, Damaged files)", file=sys.stderr)
        node.stop()
        return 2
    except Exception as e:
        log.exception("start_failed")
        print(f"gantry: start failed: {e!r} (the log has the stack; `start_failed`)",
              file=sys.stderr)
        node.stop()
        return 1
    while not stop.wait(0.2):
        if node.fatal.is_set():
            log.critical("node_failed", reason=node.fatal_reason)
            break
    node.stop()
    if node.fatal.is_set():  # the log may be a file nobody watches: say it where the shell does
        print(f"gantry: node stopped: {node.fatal_reason} (the log has the details; "
              "`node_failed`)", file=sys.stderr)
    code = 1 if node.fatal.is_set() else 0
    _exit_within(EXIT_BOUND_S, code)
    return code


#: After the node stopped, the longest (seconds) the interpreter may take to exit.
EXIT_BOUND_S = 2.0


def _exit_within(bound_s: float, code: int) -> None:
    """Make sure the process ends ``bound_s`` seconds from now: a thread that outlived the node's
    stop (a gRPC handler stuck past the grace, which the interpreter would join at exit) must not
    hold the exit past the operator's grace. A daemon thread, so a normal exit is not delayed."""
    log = structlog.get_logger("gantry.cli")

    def force() -> None:
        time.sleep(bound_s)
        alive = [t.name for t in threading.enumerate()
                 if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        log.warning("exit_forced", exit_code=code, threads=alive)
        logs.exit_now(code)

    threading.Thread(target=force, name="exit-watchdog", daemon=True).start()


def _migrate_refused(db: pathlib.Path, e: Exception) -> int:
    """Say why ``gantry migrate`` refused ``db`` (a :class:`~gantry.state.migrate.SchemaError`'s
    own message, or a file SQLite cannot read) on stderr; the exit status, 2."""
    if isinstance(e, migrate.SchemaError):
        print(f"gantry: {e}", file=sys.stderr)
    else:
        print(f"gantry: {db} is not a usable SQLite database ({e})", file=sys.stderr)
    return 2


def _migrate(ns: argparse.Namespace) -> int:
    from gantry.datadir import DataDirInUse, DataDirLock

    logs.configure("migrate", (config_mod.env("LOG_FORMAT") or "").lower(), "info")
    db = pathlib.Path(ns.db)
    if ns.action != "up" and not db.exists():
        print(f"gantry: no database at {db}", file=sys.stderr)
        return 2
    if db.exists() and not db.is_file():
        print(f"gantry: {db} is not a database file (give --db the node's gantry.db)",
              file=sys.stderr)
        return 2
    # SQLite leaves -wal/-shm beside a file it opened read-only (it cannot checkpoint them
    # away): `status` takes away the ones it made, so it changes nothing.
    sidecars = [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm")]
    made = [p for p in sidecars if not p.exists()] if ns.action == "status" else []
    try:  # before the lock: a refused file gets no LOCK beside it
        migrate.refuse_foreign(db)
    except (migrate.SchemaError, sqlite3.DatabaseError) as e:
        return _migrate_refused(db, e)
    lock = DataDirLock(db.parent)
    try:
        if ns.action == "status":  # reads only: asks whether a node runs, makes no LOCK
            holder = lock.holder()
            if holder:
                raise lock.in_use_error(holder)
        else:
            lock.acquire()  # a running node holds it: never migrate under a live node
    except DataDirInUse as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    try:
        if ns.action == "up":
            print("applied:", ", ".join(migrate.upgrade(db)) or "nothing")
        elif ns.action == "down":
            plan = migrate.rollback_plan(db, ns.steps)
            if len(plan) > 1 and not ns.yes and not _confirm_rollback(db, plan):
                return 2
            print("rolled back:", ", ".join(migrate.downgrade(db, ns.steps)) or "nothing")
        elif ns.action == "break-lock":
            print("lock removed" if migrate.break_lock(db) else "no lock to remove")
        else:
            st = migrate.status(db)
            print(f"applied: {', '.join(st.applied) or '-'}")
            print(f"pending: {', '.join(st.pending) or '-'}")
            if st.unknown_applied:
                print(f"unknown (newer build): {st.unknown_applied}")
    except (migrate.SchemaError, sqlite3.DatabaseError) as e:
        return _migrate_refused(db, e)
    finally:
        wal = sidecars[0]
        if not (wal in made and wal.exists() and wal.stat().st_size > 0):
            for p in made:
                p.unlink(missing_ok=True)
        lock.release()
    return 0


def _confirm_rollback(db: pathlib.Path, plan: list[str]) -> bool:
    """Ask on the terminal before rolling back several migrations (their rollbacks drop tables
    and the rows in them). Without a terminal on stdin, refuse: the caller must pass --yes."""
    what = ", ".join(plan)
    if not sys.stdin.isatty():
        print(f"gantry: `migrate down --steps {len(plan)}` would roll back {what} on {db}, "
              "dropping their tables and data; stdin is not a terminal, so pass --yes to confirm",
              file=sys.stderr)
        return False
    sys.stderr.write(f"Roll back {len(plan)} migrations ({what}) on {db}? Their tables and the "
                     "data in them are dropped. Continue? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        print("gantry: nothing rolled back", file=sys.stderr)
        return False
    return True


def _repair_log(ns: argparse.Namespace) -> int:
    from gantry.consensus import journal
    from gantry.datadir import DataDirInUse, DataDirLock

    data_dir = pathlib.Path(ns.data_dir)
    path = data_dir / "raft.log"
    if not path.is_file():
        print(f"gantry: no Raft log at {path}", file=sys.stderr)
        return 2
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()  # a running node holds it: never cut a log under a live node
    except DataDirInUse as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    try:
        r = journal.repair_log(str(path))
    except OSError as e:
        print(f"gantry: cannot repair {path}: {e}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    scan = r.scan
    if not r.backup:
        print(f"{path}: intact ({len(scan.entries)} records, log index {scan.first_index}.."
              f"{scan.last_index}); nothing to do")
        return 0
    print(f"{path}: {scan.damage} at byte {scan.good_end} of {scan.size} ({scan.reason})")
    print(f"kept a copy of the whole log: {r.backup}")
    later = (f"{len(scan.later)} valid-looking record(s) after the damage (log index "
             f"{scan.later[0][1]}..{scan.later[-1][1]})" if scan.later else
             "no valid-looking record after the damage")
    print(f"dropped {r.dropped_bytes} bytes: the damaged record and {later}")
    print(f"the log now ends at log index {scan.last_index or '-'} "
          f"({len(scan.entries)} records)")
    applied, known = _repair_db_check(data_dir, scan.last_index)
    if applied > known:
        print(f"note: {data_dir / 'gantry.db'} has applied up to log index {applied}, past what "
              f"the log and snapshot now hold ({known}); the node refuses to start on it. Move "
              "gantry.db (and any gantry.db-wal, gantry.db-shm) out of the way too: the node "
              "rebuilds it from raft.snapshot and raft.log, and in a cluster the leader sends "
              "the rest; on a single node the later entries survive only in the moved database")
    return 0


def _repair_db_check(data_dir: pathlib.Path, log_end: int) -> tuple[int, int]:
    """``(database applied index, highest index the log or the snapshot holds)``."""
    import json

    from gantry import preflight
    from gantry.state import snapshot

    known = log_end
    snap = data_dir / "raft.snapshot"
    if preflight.snapshot_problem(snap) is None:
        meta_json, snap_applied = snapshot.read_meta(snap)
        known = max(known, snap_applied, int(json.loads(meta_json)["last"][1]))
    return preflight.applied_index(data_dir / "gantry.db"), known


def _admin_call(ns: argparse.Namespace, method: str, request: object) -> object:
    from gantry import tlsconfig
    from gantry.pb.admin.v1 import admin_pb2_grpc

    client = getattr(ns, "client", None) or tlsconfig.client_from_args(ns)
    with client.channel(ns.addr) as ch:
        stub = admin_pb2_grpc.ClusterServiceStub(ch)
        return getattr(stub, method)(request, timeout=ns.timeout, metadata=client.metadata())


def _admin(ns: argparse.Namespace) -> int:
    import json

    import grpc

    from gantry import clusterview, tlsconfig
    from gantry.pb.admin.v1 import admin_pb2 as pb

    try:
        ns.client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    try:
        if ns.command == "status" and ns.cluster:
            view = clusterview.collect(ns.addr, ns.timeout, client=ns.client)
            print(json.dumps(view.to_dict(), indent=2) if ns.json else view.table())
            return view.exit_code()
        if ns.command == "status":
            st = _admin_call(ns, "Status", pb.StatusRequest())
            assert isinstance(st, pb.StatusResponse)
            if ns.json:
                print(json.dumps(clusterview.message_to_dict(st), indent=2))
                return 0
            print(f"node       {st.node_id}  raft {st.raft_addr}  grpc {st.grpc_addr}")
            print(f"role       {st.role}  (serving: {st.serving})")
            print(f"leader     {st.leader_raft_addr or '-'}  grpc {st.leader_grpc_addr or '-'}")
            print(f"term       {st.term}")
            print(f"indexes    commit {st.commit_index}  applied {st.applied_index}  "
                  f"last-applied {st.last_applied}  last snapshot {st.last_snapshot_index}  "
                  f"log entries {st.log_entries}")
            print("members")
            for m in st.members:
                flags = ",".join(f for f, on in (("self", m.is_self), ("leader", m.is_leader),
                                                 ("connected", m.connected)) if on)
                print(f"  {m.raft_addr:22} {m.node_id or '-':12} grpc {m.grpc_addr or '-':22} {flags}")
        elif ns.command == "add-node":
            _admin_call(ns, "AddNode", pb.AddNodeRequest(raft_addr=ns.raft_addr))
            print(f"added {ns.raft_addr}")
        elif ns.command == "remove-node":
            _admin_call(ns, "RemoveNode", pb.RemoveNodeRequest(raft_addr=ns.raft_addr))
            print(f"removed {ns.raft_addr}")
        elif ns.command == "unregister-cradle":
            u = _admin_call(ns, "UnregisterCradleServer", pb.UnregisterCradleServerRequest(
                address=ns.address, force=ns.force))
            assert isinstance(u, pb.UnregisterCradleServerResponse)
            left = (f"; {u.live_objects} PENDING or COMMITTED objects still name it"
                    if u.live_objects else "")
            print(f"unregistered cradle server {u.address} ({u.cradle_server_id}){left}")
        else:
            r = _admin_call(ns, "TransferLeadership",
                            pb.TransferLeadershipRequest(raft_addr=ns.raft_addr or ""))
            assert isinstance(r, pb.TransferLeadershipResponse)
            print(f"leader is now {r.new_leader_raft_addr}")
    except grpc.RpcError as e:
        print(f"gantry: {e.code().name}: {e.details()}{_hint(e)}", file=sys.stderr)
        details = e.details() or ""
        if e.code() == grpc.StatusCode.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in details:
            print(f"gantry: the certificate of the node at {ns.addr} is not signed by --tls-ca "
                  "(or does not name the host in --addr)", file=sys.stderr)
        elif e.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details:
            print(f"gantry: is a node running at {ns.addr}? A node serving TLS needs --tls-ca; "
                  "one with --tls-client-ca also --tls-cert and --tls-key", file=sys.stderr)
        return 1
    return 0


def _hint(err: object) -> str:
    """What to do about a refused ``unregister-cradle``, or what a refused ``add-node``'s
    node was seen to be, from the status's ErrorInfo."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)  # type: ignore[arg-type]
    for d in st.details if st is not None else ():
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info) and info.reason == "CRADLE_SERVER_HAS_LIVE_OBJECTS":
            return (" (PENDING or COMMITTED objects are placed on it, listed by the live_objects "
                    "view: delete or abort them first, or pass --force to unregister it anyway)")
        if d.Unpack(info) and info.reason.startswith("JOINER_") and info.metadata.get("seen"):
            return f" ({info.metadata['raft_addr']}: {info.metadata['seen']})"
    return ""


class _Version(argparse.Action):
    """``gantry --version``: looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **_kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        import gantry

        print(f"gantry {gantry.version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from gantry import tlsconfig

    parser = argparse.ArgumentParser(prog="gantry", description="Gantry metadata node")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a node (single-node cluster by default)")
    config_mod.add_serve_arguments(serve)
    serve.add_argument(
        "--force-new-cluster", action="store_true",
        help="disaster recovery (majority lost): start this node's data directory as a "
             "one-member cluster keeping its data, dropping the old members and any entries not "
             "known to be committed (old files kept in DATA_DIR/force-new-cluster-<time>/); "
             "then add new members. Use once, without --peers (docs/OPERATIONS.md)")
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="inspect or change the database schema")
    mig.add_argument("action", choices=["status", "up", "down", "break-lock"])
    mig.add_argument("--db", default="data/gantry.db", help="SQLite file (default data/gantry.db)")
    mig.add_argument("--steps", type=int, default=1, help="migrations to roll back (down)")
    mig.add_argument("--yes", action="store_true",
                     help="down: roll back several steps without asking (needed without a terminal)")
    mig.set_defaults(func=_migrate)
    rep = sub.add_parser(
        "repair-log", help="cut a damaged Raft log at its first bad record (node stopped)",
        description="Copy DIR/raft.log to raft.log.corrupt-<unix time>, then cut it at its first "
                    "bad record and print what was dropped. Refused while a node runs on DIR.")
    rep.add_argument("--data-dir", required=True, help="the node's data directory")
    rep.set_defaults(func=_repair_log)
    from gantry.backup import add_subcommands as add_backup_commands

    add_backup_commands(sub)  # backup, restore

    def admin_parser(name: str, help_: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=help_)
        a.add_argument("--addr", default=config_mod.env("GANTRY_ADDR") or config_mod.DEFAULT_ADDR,
                       type=config_mod.node_addr_arg,
                       help="gRPC address of any node (env GANTRY_ADDR; default "
                            f"{config_mod.DEFAULT_ADDR})")
        a.add_argument("--timeout", type=config_mod.seconds_arg, default=15.0,
                       help="seconds (default 15)")
        tlsconfig.add_client_arguments(a, admin_token=True)
        a.set_defaults(func=_admin)
        return a

    status = admin_parser("status", "show a node's view of the cluster (--cluster: every member's)")
    status.add_argument("--cluster", action="store_true",
                        help="ask every member for its own status and print one table; exit 3 "
                             "unless every member answered and is SERVING")
    status.add_argument("--json", action="store_true",
                        help="print JSON (proto field names, integers as numbers)")
    admin_parser("add-node", "add a member by Raft address").add_argument("raft_addr")
    admin_parser("remove-node", "remove a member by Raft address").add_argument("raft_addr")
    admin_parser("transfer-leader", "hand leadership to a caught-up follower").add_argument(
        "raft_addr", nargs="?", default="", help="target (default: the most caught-up follower)")
    unreg = admin_parser("unregister-cradle",
                         "unregister a storage server: PlanWrite and heartbeats stop using it")
    unreg.add_argument("address", help="the cradle server's HOST:PORT, as registered")
    unreg.add_argument("--force", action="store_true",
                       help="even while PENDING or COMMITTED objects are placed on it (they stay "
                            "as they are, naming this address)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # What gantry creates — data directories, the database, the Raft log and snapshots, backups
    # — is for the node's user only (0700 / 0600), as etcd does: it is every row of metadata.
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)
    ns = build_parser().parse_args(argv)
    if ns.func is not _serve:
        # A client command reports a failed call in one `gantry:` line; grpc's C core would
        # print its own log lines first (a TLS handshake failure, say). Set before grpc loads.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        return int(ns.func(ns))
    except BrokenPipeError:  # e.g. `gantry status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
