"""Fault injectors and the two schedules (``random`` and ``isolate-leader-during-snapshot``).

Every injector applies one fault, holds it, and heals it (restart with the same data directory,
SIGCONT, flush the partition chain, re-add a removed node). ``heal_all`` repairs whatever an
interrupted injector left behind.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from gantry.pb.admin.v1 import admin_pb2 as apb
from tests.chaos.cluster import ChaosCluster, ChaosNode, poll
from tests.chaos.net import Partitioner
from tests.chaos.workload import Workload

PARTITION_KINDS = ("partition_node", "partition_leader", "partition_pair")
ALL_KINDS = ("kill", "kill_leader", "kill_all", "pause", *PARTITION_KINDS, "transfer_leader",
             "remove_readd")
#: Relative weights of the random schedule.
WEIGHTS = {"kill": 3, "kill_leader": 3, "kill_all": 1, "pause": 3, "partition_node": 2,
           "partition_leader": 3, "partition_pair": 2, "transfer_leader": 2, "remove_readd": 1}


@dataclass
class Nemesis:
    """Injects faults into ``cluster`` and remembers what it did."""

    cluster: ChaosCluster
    net: Partitioner
    rng: random.Random
    say: Callable[[str], None]
    kinds: tuple[str, ...] = ALL_KINDS
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    notes: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    #: The snapshot schedule grows the database to this size so the transfer takes a while.
    snapshot_bytes: int = 4 << 20

    def _log(self, text: str) -> None:
        self.say(f"  [{time.monotonic() - self.t0:6.1f}s] {text}")

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self._log(f"note: {text}")

    def _follower(self) -> tuple[ChaosNode | None, ChaosNode]:
        lead = self.cluster.leader(5)
        cands = [n for n in self.cluster.nodes if n is not lead and n.alive()]
        return lead, self.rng.choice(cands or self.cluster.nodes)

    def _hold(self, lo: float, hi: float, stop: threading.Event) -> None:
        stop.wait(self.rng.uniform(lo, hi))

    # -- injectors --

    def kill(self, nd: ChaosNode, stop: threading.Event, kind: str) -> None:
        """kill -9 one node, restart it with the same data directory after a while."""
        self._log(f"{kind}: kill -9 {nd.name}")
        nd.kill()
        self.faults[kind] += 1
        self._hold(0.3, 4.0, stop)
        nd.start()
        self._log(f"{kind}: restarted {nd.name}")

    def kill_all(self, stop: threading.Event) -> None:
        """kill -9 every node, restart them all."""
        self._log("kill_all: kill -9 every node")
        for nd in self.cluster.nodes:
            nd.kill()
        self.faults["kill_all"] += 1
        self._hold(0.2, 2.0, stop)
        for nd in self.cluster.nodes:
            nd.start()
        self._log("kill_all: restarted every node")

    def pause(self, stop: threading.Event) -> None:
        """SIGSTOP a node (the leader half of the time) for up to 5 s, then SIGCONT."""
        lead, fol = self._follower()
        nd = lead if lead is not None and self.rng.random() < 0.5 else fol
        hold = self.rng.uniform(0.5, 5.0)
        self._log(f"pause: SIGSTOP {nd.name}{' (leader)' if nd is lead else ''} for {hold:.1f}s")
        nd.pause()
        self.faults["pause"] += 1
        stop.wait(hold)
        nd.resume()

    def partition(self, kind: str, stop: threading.Event) -> None:
        """Isolate a node, isolate the leader, or cut one pair; heal after 1–6 s."""
        nodes = self.cluster.nodes
        if kind == "partition_pair":
            a, b = self.rng.sample(nodes, 2)
            self._log(f"partition_pair: cut {a.name} <-> {b.name}")
            self.net.cut(a.endpoint, b.endpoint)
        else:
            if kind == "partition_leader":
                nd = self.cluster.leader(5) or self.rng.choice(nodes)
            else:
                nd = self.rng.choice(nodes)
            self._log(f"{kind}: isolate {nd.name}")
            self.net.isolate(nd.endpoint, [o.endpoint for o in nodes])
        self.faults[kind] += 1
        self._hold(1.0, 6.0, stop)
        self.net.heal()
        self._log(f"{kind}: healed")

    def transfer_leader(self) -> None:
        """Ask the leader to hand leadership over (admin TransferLeadership)."""
        lead = self.cluster.leader(5)
        if lead is None:
            self._note("transfer_leader: no leader to ask")
            return
        self.faults["transfer_leader"] += 1
        try:
            r = lead.admin().TransferLeadership(apb.TransferLeadershipRequest(), timeout=10)
            self._log(f"transfer_leader: {lead.name} -> {r.new_leader_raft_addr}")
        except grpc.RpcError as e:
            self._note(f"transfer_leader on {lead.name}: {e.code().name} {e.details()!r}")

    def _members(self, nd: ChaosNode) -> set[str]:
        return {m.raft_addr for m in nd.status(2).members}

    def remove_readd(self, stop: threading.Event) -> None:
        """Stop a follower, remove it, start it again and add it back: half the time with its
        data directory wiped first, else with its data kept (``remove_readd_kept``) — accepted
        while its log ends at an entry the leader's log still holds; when add-node refuses its
        history (the leader compacted past it), wiped and added again, as the refusal says."""
        lead, victim = self._follower()
        if lead is None or victim is lead:
            self._note("remove_readd: no leader/follower pair")
            return
        keep = self.rng.random() < 0.5
        self.faults["remove_readd_kept" if keep else "remove_readd"] += 1
        self._log(f"remove_readd: stop {victim.name}, remove-node via {lead.name}"
                  + (" (data kept)" if keep else ""))
        victim.kill()
        try:
            lead.admin().RemoveNode(apb.RemoveNodeRequest(raft_addr=victim.raft_addr), timeout=15)
        except grpc.RpcError as e:
            self._note(f"remove-node {victim.name} via {lead.name}: {e.code().name} {e.details()!r}")
        removed = poll(lambda: victim.raft_addr not in self._members(lead), 10, 0.1)
        if not removed:
            self._note(f"remove_readd: {victim.name} still a member on {lead.name}; restarting it "
                       "with its data")
            victim.start()
            return
        self._hold(1.0, 3.0, stop)
        if keep:
            victim.start()
            self._log(f"remove_readd: {victim.name} started with its data, add-node")
            if self.readd(victim) != "history":
                return
            self._log(f"remove_readd: add-node refused {victim.name}'s history: wipe, add again")
            victim.kill()
        victim.wipe()
        victim.start()
        self._log(f"remove_readd: {victim.name} wiped and started, add-node")
        self.readd(victim)

    def readd(self, victim: ChaosNode, timeout_s: float = 40.0) -> str:
        """AddNode ``victim`` through the current leader until it is a member: "added"; or
        "history" at once when add-node refuses the Raft history it holds; "failed" (noted)
        when neither happened within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            lead = self.cluster.leader(5)
            if lead is None or lead is victim:
                continue
            try:
                lead.admin().AddNode(apb.AddNodeRequest(raft_addr=victim.raft_addr), timeout=15)
                return "added"
            except grpc.RpcError as e:
                last = f"{e.code().name} {e.details()!r}"
                if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                    return "added"
                if (e.code() == grpc.StatusCode.FAILED_PRECONDITION
                        and "Raft history that is not this cluster's" in str(e.details())):
                    return "history"
            time.sleep(0.2)
        self._note(f"add-node {victim.name} failed for {timeout_s:.0f}s: {last}")
        return "failed"

    # -- schedules --

    def settle(self, timeout_s: float = 15.0) -> None:
        """Between faults: wait (bounded) until every node is SERVING again."""
        slow = self.cluster.wait_serving(timeout_s)
        if slow:
            self._note(f"not SERVING {timeout_s:.0f}s after the last fault: "
                       f"{', '.join(n.name for n in slow)}")

    def run_random(self, duration_s: float, stop: threading.Event) -> None:
        """Random faults, one at a time, with quiet gaps, until ``duration_s`` passes."""
        kinds = [k for k in self.kinds if k not in PARTITION_KINDS or self.net.available]
        weights = [WEIGHTS.get(k, 1) for k in kinds]
        end = time.monotonic() + duration_s
        while time.monotonic() < end and not stop.is_set():
            if stop.wait(self.rng.uniform(0.5, 2.5)) or time.monotonic() >= end:
                break
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "kill":
                self.kill(self.rng.choice(self.cluster.nodes), stop, "kill")
            elif kind == "kill_leader":
                lead = self.cluster.leader(5)
                self.kill(lead or self.rng.choice(self.cluster.nodes), stop, "kill_leader")
            elif kind == "kill_all":
                self.kill_all(stop)
            elif kind == "pause":
                self.pause(stop)
            elif kind in PARTITION_KINDS:
                self.partition(kind, stop)
            elif kind == "transfer_leader":
                self.transfer_leader()
            elif kind == "remove_readd":
                self.remove_readd(stop)
            self.settle()

    def run_isolate_leader_during_snapshot(self, wl: Workload, stop: threading.Event) -> None:
        """Stop a follower, write until the leader's snapshot is past it, restart it, and cut
        the leader's Raft traffic while the snapshot streams; the majority keeps taking writes
        (the old leader keeps receiving some: its uncommitted tail), then heal."""
        lead, fol = self._follower()
        if lead is None:
            self._note("snapshot schedule: no leader")
            return
        self._log(f"snapshot schedule: leader {lead.name}, kill -9 follower {fol.name}")
        fol.kill()
        self.faults["kill"] += 1
        try:
            behind = fol.db_applied_index()
        except Exception:  # noqa: BLE001 - a wiped or fresh node
            behind = 0
        wl.start_fillers(4)

        def compacted_past() -> bool:
            cur = self.cluster.leader(2)
            if cur is None or cur.status(2).last_snapshot_index < behind + 600:
                return False
            snap = cur.data_dir / "raft.snapshot"
            return snap.exists() and snap.stat().st_size >= self.snapshot_bytes

        if not poll(compacted_past, 120, 0.1):
            self._note(f"snapshot schedule: the leader's snapshot did not pass the stopped follower "
                       f"by 600 entries and reach {self.snapshot_bytes} bytes within 120s")
        lead = self.cluster.leader(5) or lead
        tmp = fol.data_dir / "raft.snapshot.1.tmp"
        fol.start()
        self._log(f"snapshot schedule: restarted {fol.name}, waiting for the snapshot to stream")
        seen = poll(tmp.exists, 30, 0.002)
        time.sleep(self.rng.uniform(0.0, 0.01))  # somewhere inside the transfer
        self.net.isolate(lead.endpoint, [o.endpoint for o in self.cluster.nodes])
        still = tmp.exists()
        self.faults["partition_leader_during_snapshot"] += 1
        if seen:
            self.faults["snapshot_transfer_cut"] += int(still)
        else:
            self._note("snapshot schedule: no snapshot transfer observed before the cut")
        self._log(f"snapshot schedule: isolated leader {lead.name} (transfer seen={bool(seen)}, "
                  f"in progress at cut={still})")
        with contextlib.suppress(grpc.RpcError):
            time.sleep(0.5)
            st = lead.status(2)
            tail = st.last_snapshot_index + st.log_entries - st.commit_index
            self._log(f"snapshot schedule: isolated {lead.name} term {st.term} commit "
                      f"{st.commit_index}, ~{tail} entries past its commit index")
        others = [n for n in self.cluster.nodes if n is not lead]
        new = poll(lambda: any(n.status(1).role == "leader" for n in others), 20, 0.1)
        if not new:
            self._note("snapshot schedule: the majority elected no leader within 20s")
        self._hold(3.0, 6.0, stop)
        wl.stop_fillers()
        self.net.heal()
        self._log("snapshot schedule: healed")

    def heal_all(self) -> None:
        """Flush partitions, SIGCONT everything, restart dead nodes, re-add non-members."""
        self.net.heal()
        for nd in self.cluster.nodes:
            nd.resume()
        for nd in self.cluster.nodes:
            if not nd.alive():
                self._note(f"heal: {nd.name} was down, restarting it")
                nd.start()
        lead = self.cluster.leader(20)
        if lead is None:
            return
        with contextlib.suppress(grpc.RpcError):
            members = self._members(lead)
            for nd in self.cluster.nodes:
                if nd.raft_addr not in members:
                    self._note(f"heal: {nd.name} not a member on {lead.name}, adding it")
                    self.readd(nd)
