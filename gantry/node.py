"""The composition root: config → migrations → writer → raft → front door; stop in reverse.

One :class:`Node` is one Gantry process's worth of parts. ``start()`` returns once the gRPC port
is bound (the cluster may still be electing a leader: health says NOT_SERVING until a leader is
known and this node has applied the log up to it). ``stop()`` is the SIGTERM path: health
NOT_SERVING, refuse new RPCs, let in-flight ones finish within the grace period, stop Raft, let the
writer apply what it holds, checkpoint the WAL, close.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pykka
import structlog
from grpc_health.v1 import health, health_pb2

from gantry import diskspace, logs, metrics, preflight, readworker, recovery, tlsconfig
from gantry.actors.frontdoor import FrontDoorActor
from gantry.actors.raft import Proposer, RaftActor, RaftStatus, ReadIndexSource
from gantry.actors.writer import EntryQueue, WriterActor
from gantry.api.admin import SERVICE_NAME as ADMIN_SERVICE_NAME
from gantry.api.admin import AdminService
from gantry.api.auth import admin_interceptor
from gantry.api.backup import BackupService
from gantry.api.service import GantryService
from gantry.backup import CopyTaker
from gantry.config import Config
from gantry.consensus import probe
from gantry.consensus.errors import ConsensusError, NoLeader, NoSpace, RequestDenied, Stopping
from gantry.consensus.proposals import Proposals
from gantry.consensus.readindex import ReadIndex, barrier_future, with_fallback
from gantry.datadir import DataDirInUse, DataDirLock
from gantry.db import ReadPool, Watermark
from gantry.heartbeat import CradleMonitor
from gantry.pb.admin.v1 import admin_pb2
from gantry.pb.command.v1 import command_pb2
from gantry.registration import Registrar
from gantry.state import commands, migrate
from gantry.state.statemachine import ApplyResult

log = structlog.get_logger("gantry.node")


#: Shutdown: waiting calls are answered "node stopping" this long (seconds) before the grace ends.
END_WAITS_MARGIN_S = 0.5


def _exit_now(reason: str) -> None:
    """The Raft log failed an fsync or a term write (gantry/consensus/journal.py): end the process
    now, as kill -9 would (which loses nothing acknowledged), before this node can commit or
    acknowledge anything more; the next start reads the log from the disk."""
    log.critical("node_failed", reason=reason, exit_code=1)
    logs.exit_now(1)


class StartError(RuntimeError):
    """The node cannot start (a port in use, …); the message says what to change."""




class Node:
    """A running Gantry node. ``fatal`` is set (with ``fatal_reason``) if the writer hit a
    non-deterministic failure; the process must then exit non-zero."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.watermark = Watermark()
        self.proposals = Proposals()
        self.queue = EntryQueue()
        self.health = health.HealthServicer()
        #: The disk-full alarm (gantry/diskspace.py): raised by the Raft log and the writer.
        self.disk = diskspace.DiskSpace()
        self._free = diskspace.FreeSpace(self.disk, [config.data_dir, config.database.parent],
                                         config.min_free_bytes)
        self.fatal = threading.Event()
        self.fatal_reason = ""
        self.port = 0
        self._writer: pykka.ActorRef[Any] | None = None
        self._raft: pykka.ActorRef[Any] | None = None
        self._proposer: Proposer | None = None
        self._read_source: ReadIndexSource | None = None
        self._frontdoor: pykka.ActorRef[Any] | None = None
        self._reads: ReadPool | None = None
        self._stopping = threading.Event()
        #: What health reports: Raft's verdict AND (with --cradle-addr) that server placeable.
        self._serving = False
        #: Raft's verdict (RaftActor's on_health): a leader is known and this node caught up.
        self._raft_serving = False
        #: With --cradle-addr: set once that server is registered and placeable on this node.
        self._cradle_ready = not config.cradle_addr
        self._health_lock = threading.Lock()
        self._background: list[threading.Thread] = []
        self._monitor: CradleMonitor | None = None
        self._lock = DataDirLock(config.data_dir)
        self._db_lock: DataDirLock | None = None
        self._registrar = Registrar(self.propose, lambda: self._raft_serving, self._stopping)
        self._metrics: tuple[metrics.MetricsServer, metrics.NodeCollector] | None = None
        #: With --read-workers: the worker processes and the internal listener they use.
        self._workers: readworker.ReadWorkers | None = None
        #: Raft asks made for the event loop (the disk-full read index), off its thread.
        self._aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-aside")

    # -- lifecycle --
    def start(self) -> None:
        cfg = self.config
        # Refusals that need no file first, so a refused start leaves the disk as it was.
        if cfg.force_new_cluster:
            try:
                recovery.check(cfg)  # reads only; force_new_cluster checks again, locked
            except recovery.RecoveryError as e:
                raise StartError(str(e)) from None
        # A probe without SO_REUSEPORT: with read workers the front door's own bind would
        # share a port another node holds (readworker.check_port_free).
        raft_host, _, raft_port = cfg.raft_addr.rpartition(":")
        listens = [(cfg.host, cfg.port, "gRPC", "--port"),
                   (raft_host.strip("[]"), int(raft_port or 0), "Raft", "--raft-addr")]
        if cfg.metrics_addr:
            m_host, _, m_port = cfg.metrics_addr.rpartition(":")
            listens.append((m_host.strip("[]"), int(m_port or 0), "metrics", "--metrics-addr"))
        for host, port, what, flag in listens:
            try:
                socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise StartError(f"cannot listen on {what} address {host}:{port}: "
                                 f"{e.strerror or e} (check {flag})") from None
            if what != "metrics" and not readworker.check_port_free(host, port):
                raise StartError(f"cannot listen on {what} address {host}:{port} (in use?)")
        for d, flag in ((cfg.data_dir, "--data-dir"), (cfg.database.parent, "--db-path")):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                if isinstance(e, FileExistsError):
                    what = "exists and is not a directory"
                elif isinstance(e, NotADirectoryError):
                    what = "cannot be created: a parent of it is not a directory"
                else:
                    what = f"cannot be created ({e.strerror or e})"
                raise StartError(f"{flag} {d} {what}: give a directory the node may create or "
                                 "write to") from None
        if cfg.database.parent.resolve() != cfg.data_dir.resolve():
            try:  # before its directory's lock: a refused file gets no LOCK beside it
                migrate.refuse_foreign(cfg.database)
            except migrate.SchemaError as e:
                raise StartError(str(e)) from None
            except sqlite3.DatabaseError:
                pass  # damage: preflight.check names it, with the way out, once locked
        try:
            self._lock.acquire()
            if cfg.database.parent.resolve() != cfg.data_dir.resolve():
                self._db_lock = DataDirLock(cfg.database.parent)
                self._db_lock.acquire()
        except DataDirInUse as e:
            raise StartError(str(e)) from None
        if cfg.metrics_addr:  # first: /livez answers while the rest starts
            try:
                self._metrics = metrics.serve(cfg.metrics_addr, self)
            except OSError as e:
                raise StartError(f"cannot listen on metrics address {cfg.metrics_addr}: "
                                 f"{e.strerror or e} (set --metrics-addr / GANTRY_METRICS_ADDR "
                                 "to a free HOST:PORT, or off)") from None
        log.info("node_starting", data_dir=str(cfg.data_dir), db_path=str(cfg.database),
                 raft_addr=cfg.raft_addr, peers=cfg.peers)
        settled = preflight.settle_interrupted_install(pathlib.Path(cfg.data_dir))
        if settled:
            log.warning("snapshot_install_settled", outcome=settled,
                        reason="the node stopped while a leader's snapshot was being loaded")
        try:  # damaged files: refuse in one line before anything writes to them
            members = preflight.check(cfg)
        except preflight.PreflightError as e:
            raise StartError(str(e)) from None
        if members is not None:
            log.warning("raft_address_not_a_member", raft_addr=cfg.raft_addr, members=members,
                        hint="this data directory's last configuration does not hold this "
                             "--raft-addr: the node will wait for a leader for ever. Start it "
                             "with the address it had, or add it with `gantry add-node`")
        migrate.upgrade(cfg.database)
        if cfg.force_new_cluster:  # before the writer and Raft open anything (gantry/recovery.py)
            try:
                recovery.force_new_cluster(cfg)
            except recovery.RecoveryError as e:
                raise StartError(str(e)) from None
        self._set_health(False)
        self._writer = WriterActor.start(cfg.database, self.queue, self.watermark,
                                         self.proposals, self._on_fatal, self.disk)
        # Answered once the writer's on_start ran: the watermark holds the database's index.
        self._writer.proxy().applied_index().get(timeout=30)
        self._raft = RaftActor.start(cfg, self.queue, self._writer, self.proposals,
                                     self.watermark, self._set_health, self.disk, _exit_now)
        err = self._raft.proxy().get_start_error().get(timeout=30)
        if err:
            raise StartError(err)
        self._proposer = self._raft.proxy().proposer().get(timeout=30)
        self._read_source = self._raft.proxy().read_index_source().get(timeout=30)
        self._reads = ReadPool(cfg.database)
        read_index = ReadIndex(self._read_barrier)
        service = GantryService(self._reads, self.propose_aio, cfg.app_env, self.watermark,
                                read_index, heartbeats=cfg.heartbeat_interval_s > 0)
        admin = AdminService(self, tlsconfig.node_client(cfg))
        backup = BackupService(CopyTaker(cfg.database, cfg.data_dir), cfg.node_id, cfg.raft_addr)
        auth = admin_interceptor(cfg)
        handlers = [service.generic_handler(), admin.generic_handler(),
                    backup.generic_handler(), service.admin_handler()]
        self._frontdoor = FrontDoorActor.start(
            cfg.host, cfg.port, handlers, self.health,
            cfg.reflection, (ADMIN_SERVICE_NAME,), tlsconfig.node_server_credentials(cfg),
            (auth,) if auth.required else (),  # on loopback: no interceptor in the call path
            reuse_port=cfg.read_workers > 0,
        )
        err = self._frontdoor.proxy().get_start_error().get(timeout=30)
        if err:
            raise StartError(err)
        port = self._frontdoor.proxy().port().get(timeout=30)
        if cfg.read_workers:  # after the front door: workers bind the port it got
            try:
                loop = self._frontdoor.proxy().loop().get(timeout=30)
                self._workers = readworker.ReadWorkers(cfg, port, handlers, self.watermark,
                                                       lambda: self._serving, read_index.get,
                                                       loop)
                self._workers.start()
            except readworker.WorkerStartError as e:
                raise StartError(str(e)) from None
        self.port = port
        self._spawn(self._register_self, "register-node")
        if cfg.cradle_addr:
            self._spawn(self._register_cradle, "register-cradle")
        self._monitor = CradleMonitor(self._reads, self._is_leader, self.propose,
                                      cfg.heartbeat_interval_s)
        self._monitor.start()
        log.info("node_started", grpc_port=self.port, raft_addr=cfg.raft_addr,
                 tls=tlsconfig.mode(cfg), admin_auth=auth.mode)
        if cfg.grpc_beyond_loopback and cfg.tls_cert is None:  # --insecure
            log.warning("grpc_plaintext_beyond_loopback", host=cfg.host)

    def stop(self) -> None:
        """Graceful stop; safe to call more than once and after a failed start."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("node_stopping", grace_s=self.config.grace_s)
        self._publish_health()
        if self._workers is not None:  # they drain beside the front door, within the grace
            self._workers.begin_stop()
        if self._frontdoor is not None:
            grace = self.config.grace_s
            try:
                # With workers the loop outlives the public server: the internal listener on
                # it answers the workers' forwarded calls until they are gone (finish_stop).
                stopped = self._frontdoor.proxy().stop_serving(
                    grace, keep_loop=self._workers is not None)
                try:  # in-flight calls get the grace, less a margin to answer the waiting ones
                    stopped.get(timeout=grace - min(END_WAITS_MARGIN_S, grace / 2))
                except pykka.Timeout:
                    self._end_waits()
                    stopped.get(timeout=grace + 5)
            except Exception:
                log.exception("frontdoor_stop_failed")
        if self._workers is not None:
            self._workers.finish_stop(self.config.grace_s + 5)
        if self._frontdoor is not None:
            self._frontdoor.stop()  # ends the loop thread
        self._end_waits()
        if self._monitor is not None:
            self._monitor.stop()
        for t in self._background:
            t.join(timeout=5)
        if self._raft is not None:
            if self.port:  # started fully: a leader hands over before leaving
                self._hand_over_leadership()
            self._raft.stop()
        if self._writer is not None:
            self._writer.stop()
        if self._reads is not None:
            self._reads.close()
        if self._db_lock is not None:
            self._db_lock.release()
        self._aside.shutdown(wait=False, cancel_futures=True)
        if self._metrics is not None:  # last: /readyz said 503 all through the stop
            metrics.stop(*self._metrics)
        self._lock.release()
        log.info("node_stopped", applied_index=self.watermark.value)

    # -- used by the service --
    def propose(self, command: command_pb2.Command, timeout_s: float) -> tuple[ApplyResult, int]:
        """Propose ``command`` and wait up to ``timeout_s`` seconds until this node applied it.

        Raises ConsensusError (consensus failed / node stopping) or
        ``concurrent.futures.TimeoutError``.
        """
        if self._stopping.is_set() or self._raft is None:
            raise Stopping()
        fut = self.propose_async(command)
        try:
            result: tuple[ApplyResult, int] = fut.result(timeout=timeout_s)
            return result
        except FutureTimeout:
            self.proposals.discard(command.proposal_id)
            raise

    async def propose_aio(self, command: command_pb2.Command,
                          timeout_s: float) -> tuple[ApplyResult, int]:
        """:meth:`propose` for the gRPC event loop: the wait is an asyncio future the writer
        resolves with the rest of its batch (no thread waits). Raises what :meth:`propose`
        raises (``TimeoutError`` after ``timeout_s`` seconds)."""
        self._check_proposable()
        pid = command.proposal_id
        fut = self.proposals.register_async(pid)
        try:
            self._proposer.propose(pid, commands.encode(command))  # type: ignore[union-attr]
            async with asyncio.timeout(timeout_s):
                result: tuple[ApplyResult, int] = await fut
            return result
        finally:
            self.proposals.discard(pid)  # a no-op once resolved; forgets it on a timeout

    def _check_proposable(self) -> None:
        """Raises Stopping / NoLeader / NoSpace when a proposal cannot be made now."""
        if self._stopping.is_set() or self._proposer is None:
            raise Stopping()
        if not self._raft_serving:  # no (reachable) leader, or still catching up: fail fast
            raise NoLeader()
        self._free.check()  # raises the alarm up front when the disk is about to be full
        if self.disk.full:  # etcd's NOSPACE alarm: refused until the write that failed fits
            raise NoSpace()

    def propose_async(self, command: command_pb2.Command) -> Future[tuple[ApplyResult, int]]:
        """Propose ``command``; the Future resolves with ``(ApplyResult, log index)`` once this
        node applied it, or fails with ConsensusError. Raises Stopping / NoLeader at once when the
        node is stopping or knows no reachable leader."""
        self._check_proposable()
        assert self._proposer is not None
        pid = command.proposal_id
        fut = self.proposals.register(pid)
        self._proposer.propose(pid, commands.encode(command))  # on this thread: no mailbox hop
        return fut

    def _read_barrier(self) -> Future[int]:
        """A read index for :class:`ReadIndex` (one per batch of reads; raises or fails with a
        ConsensusError or ``TimeoutError``): normally a ReadIndex round, no log entry
        (:class:`~gantry.actors.raft.ReadIndexSource`, Raft §6.4). A barrier entry through the
        log instead when the leader, or its voting majority, is an older build without ReadIndex
        (a rolling upgrade: docs/OPERATIONS.md).

        While this node's database has no room (the writer holds a batch it cannot apply), the
        leader of a one-member cluster uses its commit index capped at its applied index (nothing
        above it was acknowledged: on one member a write is acknowledged only once applied here);
        elsewhere such a read is refused (UNAVAILABLE, ErrorInfo DISK_FULL: try another node),
        since this node could not apply a read index it obtains. When only the Raft log is full a
        ReadIndex round still works (it appends nothing); its barrier fallback is refused. That
        disk-full case asks the Raft actor on a thread of its own: the caller may be the gRPC
        event loop, which never waits on an actor."""
        self._free.check()
        if self._stopping.is_set() or self._raft is None or self._read_source is None:
            raise Stopping()
        if not (self.disk.full and diskspace.DATABASE_PART in self.disk.where()):
            if not self._raft_serving:  # no (reachable) leader, or still catching up: fail fast
                raise NoLeader()

            def barrier() -> Future[int]:
                if self.disk.full:
                    raise NoSpace()
                return barrier_future(self.propose_async, commands.barrier)

            return with_fallback(self._read_source.request(), barrier)
        return self._aside.submit(self._solo_read_index)

    def _solo_read_index(self) -> int:
        """The one-member leader's read index while its database is full (see
        :meth:`_read_barrier`); an ask of the Raft actor, run on ``node-aside``."""
        assert self._raft is not None
        index = self._raft.proxy().solo_read_index().get(timeout=10)
        if index is None:
            raise NoSpace()
        return min(int(index), self.watermark.value)

    def status(self) -> RaftStatus:
        """Raft role, leader, term, commit/applied indexes, members."""
        assert self._raft is not None
        status: RaftStatus = self._raft.proxy().status().get(timeout=5)
        return status

    @property
    def serving(self) -> bool:
        """What health reports (see :meth:`_set_health`)."""
        return self._serving

    # -- used by the admin service --
    def _grpc_addrs(self) -> dict[str, tuple[str, str]]:
        """raft_addr → (node_id, grpc_addr) as announced through the log."""
        assert self._reads is not None
        rows = self._reads.conn().execute(
            "SELECT raft_addr, node_id, grpc_addr FROM cluster_nodes").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def cluster_status(self) -> admin_pb2.StatusResponse:
        """This node's view of the cluster (role, leader, term, indexes, members)."""
        st = self.status()
        addrs = self._grpc_addrs()
        leader = st.leader or ""
        members = [
            admin_pb2.Member(
                raft_addr=m, node_id=addrs.get(m, ("", ""))[0], grpc_addr=addrs.get(m, ("", ""))[1],
                connected=(m == st.raft_addr or m in st.connected), is_self=(m == st.raft_addr),
                is_leader=(m == leader))
            for m in st.members
        ]
        return admin_pb2.StatusResponse(
            node_id=st.node_id, raft_addr=st.raft_addr, grpc_addr=self.advertised_addr,
            role=st.role, leader_raft_addr=leader,
            leader_grpc_addr=addrs.get(leader, ("", ""))[1] if leader else "",
            term=st.term, commit_index=st.commit_index, applied_index=st.applied_index,
            last_applied=st.last_applied, last_snapshot_index=st.last_snapshot_index,
            members=members, serving=self._serving, log_entries=st.log_size)

    def identify(self, raft_addr: str, timeout_s: float) -> probe.Identity:
        """Who the node at ``raft_addr`` says it is, asked over the Raft transport with this
        node's address and ``--raft-password`` (:func:`gantry.consensus.probe.ask`). Raises
        :class:`~gantry.consensus.probe.ProbeError`."""
        cfg = self.config
        return probe.ask(raft_addr, own_addr=cfg.raft_addr, password=cfg.raft_password or None,
                         timeout_s=timeout_s)

    def log_entry(self, index: int) -> tuple[int, str] | None:
        """``(term, entry digest)`` of this node's Raft log entry at ``index``, or None when the
        log does not hold it (compacted, or past its end)."""
        assert self._raft is not None
        entry: tuple[int, str] | None = self._raft.proxy().entry_at(index).get(timeout=5)
        return entry

    def log_noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        """Whether this node's Raft log holds a no-op at each ``(log index, term)`` of ``pairs``
        (False for an index it does not hold: compacted, or past its end)."""
        assert self._raft is not None
        match: bool = self._raft.proxy().noops_match(pairs).get(timeout=5)
        return match

    def change_membership(self, op: str, raft_addr: str,
                          timeout_s: float) -> ConsensusError | None:
        """Add or remove a member through the log: None once this node applied the change, else
        its typed error (:class:`~gantry.consensus.errors.RequestDenied` with the strict
        reconfig check's reason when refused). Raises ``concurrent.futures.TimeoutError`` after
        ``timeout_s`` seconds."""
        assert self._raft is not None
        fut = self._raft.proxy().change_membership(op, raft_addr).get(timeout=5)
        error: ConsensusError | None = fut.result(timeout=timeout_s)
        if error is None:
            log.info("membership_changed", op=op, raft_addr=raft_addr)
        return error

    def transfer_leadership(self, raft_addr: str, timeout_s: float) -> str:
        """Hand leadership to ``raft_addr`` (empty: the most caught-up follower) and wait up to
        ``timeout_s`` seconds for another node to lead; returns its Raft address, or "" when no
        follower took over in time (pysyncobj refuses a target that is not fully caught up, so
        the request is repeated until one is). Raises
        :class:`~gantry.consensus.errors.RequestDenied` (``why`` says which) at once when the
        target, or every follower, has not answered within the minimum election timeout: a
        stopped, frozen or cut-off member would never take over."""
        assert self._raft is not None
        proxy = self._raft.proxy()
        deadline = time.monotonic() + timeout_s
        asked_at = 0.0
        while time.monotonic() < deadline:
            leader = proxy.leader().get(timeout=5)
            if leader and leader != self.config.raft_addr:
                log.info("leadership_transferred", new_leader=leader)
                return str(leader)
            if time.monotonic() - asked_at > 0.5:  # re-ask: denied, or the election failed
                error = proxy.transfer_leadership(raft_addr or None).get(timeout=5).result(timeout=5)
                if isinstance(error, RequestDenied) and error.why:
                    log.info("leadership_transfer_refused", target=raft_addr or None,
                             reason=error.why)
                    raise error
                asked_at = time.monotonic() if error is None else 0.0
            time.sleep(0.01)
        return ""

    # -- internals --
    def _is_leader(self) -> bool:
        if self._raft is None or not self._raft_serving:
            return False
        leader: str | None = self._raft.proxy().leader().get(timeout=5)
        return leader == self.config.raft_addr

    def _hand_over_leadership(self, timeout_s: float = 3.0) -> None:
        """On the way out, a leader hands leadership to a caught-up follower (Raft TimeoutNow)
        so the cluster does not wait an election timeout for a new one. Best effort."""
        assert self._raft is not None
        try:
            self._raft.proxy().begin_drain().get(timeout=5)
            st = self._raft.proxy().status().get(timeout=5)
            if st.role != "leader" or len(st.members) < 2:
                return
            new = self.transfer_leadership("", timeout_s)
            log.info("leadership_handed_over" if new else "leadership_handover_failed",
                     new_leader=new or None)
        except Exception:
            log.exception("leadership_handover_failed")

    def _set_health(self, raft_serving: bool) -> None:
        """Raft's verdict (RaftActor's ``on_health``). Health is SERVING only while Raft says so,
        the node is not stopping and, with ``--cradle-addr``, that server is placeable here."""
        self._raft_serving = raft_serving
        self._publish_health()

    def _publish_health(self) -> None:
        with self._health_lock:
            self._serving = (self._raft_serving and self._cradle_ready
                             and not self._stopping.is_set())
            st = (health_pb2.HealthCheckResponse.SERVING if self._serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
            self.health.set("", st)
            self.health.set("gantry.service.v1.GantryService", st)
            log.info("health_changed", serving=self._serving, raft_serving=self._raft_serving,
                     cradle_ready=self._cradle_ready)

    def _end_waits(self) -> None:
        """Shutdown: calls still waiting (reads on the watermark or a read index, writes on their
        proposal) answer UNAVAILABLE "node stopping" now, before gRPC's grace runs out and cancels
        them with its own status, and their handler threads end (they would hold the exit)."""
        if not self.watermark.closed:
            log.info("ending_waiting_calls")
        self.watermark.close()
        self.proposals.fail_all(Stopping())
        if self._read_source is not None:
            self._read_source.end_waits()

    def _on_fatal(self, reason: str) -> None:
        self.fatal_reason = reason
        self.fatal.set()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._background.append(t)

    @property
    def advertised_addr(self) -> str:
        """``host:port`` clients should use for this node's gRPC API."""
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = self.config.raft_addr.rpartition(":")[0]
        return f"{host}:{self.port}"

    def _register_self(self) -> None:
        cfg = self.config
        self._registrar.register_node(cfg.raft_addr, cfg.node_id, self.advertised_addr)

    def _register_cradle(self) -> None:
        """Register ``--cradle-addr`` once a leader exists, then hold health NOT_SERVING until
        that server is placeable here (see :mod:`gantry.registration`)."""
        assert self._reads is not None
        addr = self.config.cradle_addr
        cradle_id = self._registrar.register_cradle(addr)
        if cradle_id is not None and self._registrar.wait_cradle_placeable(
                self._reads, cradle_id, addr, self.config.heartbeat_interval_s > 0):
            self._cradle_ready = True
            self._publish_health()
