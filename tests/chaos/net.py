"""Partitions of the Raft traffic between node processes that share one loopback interface.

Every node process runs with its own primary group id. A private iptables chain (``GNEM<pid>``,
jumped to from ``OUTPUT`` for TCP on ``lo``) CONNMARKs every connection whose first packets come
from a process of group ``G`` and go to a peer's Raft port, and drops every packet of a connection
carrying that mark, so an established connection is cut in both directions (the replies of the
accepting side match through the connection mark, not through their owner). Only Raft ports are
ever matched; gRPC traffic (clients, health, admin) is never touched.

Each cut gets a fresh mark value, so connections marked by an earlier, healed cut are not dropped
by a later one. Only this campaign's own chain and jump rule are ever created or removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

IPTABLES_CANDIDATES = ("/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables")


@dataclass(frozen=True)
class Endpoint:
    """What the partitioner needs to know about one node: its group id and its Raft port."""

    name: str
    gid: int
    raft_port: int


def find_iptables() -> str | None:
    """Path of the iptables binary, or None."""
    found = shutil.which("iptables")
    if found:
        return found
    for c in IPTABLES_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return None


@dataclass
class Partitioner:
    """Cuts and heals Raft connections between :class:`Endpoint` pairs.

    ``setup()`` creates the chain and the jump rule (returns False, with ``reason`` set, when
    iptables is missing or not permitted); ``close()`` removes both and is idempotent.
    """

    chain: str = field(default_factory=lambda: f"GNEM{os.getpid()}")
    binary: str | None = field(default_factory=find_iptables)
    available: bool = False
    reason: str = ""
    _cuts: dict[frozenset[str], int] = field(default_factory=dict)
    _next_mark: int = 1
    _installed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Rules :meth:`drop_port` put in INPUT (deleted by :meth:`heal` and :meth:`close`).
    _input_rules: list[tuple[str, ...]] = field(default_factory=list)

    _JUMP = ("-o", "lo", "-p", "tcp")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.binary is not None
        return subprocess.run([self.binary, "-w", "5", *args], capture_output=True, text=True,
                              check=check, timeout=30)

    def setup(self) -> bool:
        """Create the private chain and jump to it from OUTPUT. False when not possible."""
        if self.binary is None:
            self.reason = "iptables not found"
            return False
        if os.geteuid() != 0:
            self.reason = "not root"
            return False
        try:
            self._run("-N", self.chain)
            self._installed = True
            self._run("-I", "OUTPUT", "1", *self._JUMP, "-j", self.chain)
        except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as e:
            err = getattr(e, "stderr", "") or str(e)
            self.reason = f"iptables not usable: {err.strip()}"
            self.close()
            return False
        self.available = True
        return True

    def _mark(self) -> int:
        # 0x4e4d____: recognisable, distinct per cut.
        m = 0x4E4D0000 | (self._next_mark & 0xFFFF)
        self._next_mark += 1
        return m

    def _rules(self, a: Endpoint, b: Endpoint, mark: int) -> list[list[str]]:
        hexmark = hex(mark)
        return [
            ["-p", "tcp", "-m", "owner", "--gid-owner", str(a.gid), "--dport", str(b.raft_port),
             "-j", "CONNMARK", "--set-mark", hexmark],
            ["-p", "tcp", "-m", "owner", "--gid-owner", str(b.gid), "--dport", str(a.raft_port),
             "-j", "CONNMARK", "--set-mark", hexmark],
            ["-p", "tcp", "-m", "connmark", "--mark", hexmark, "-j", "DROP"],
        ]

    def _append(self, rules: list[list[str]]) -> None:
        """Append ``rules`` to the chain in one ``iptables-restore --noflush`` (one atomic
        commit, so an isolation takes effect on all its pairs at once), else one by one."""
        restore = self.binary + "-restore" if self.binary else None
        if restore and os.access(restore, os.X_OK):
            text = "*filter\n" + "".join(f"-A {self.chain} {' '.join(r)}\n" for r in rules) + "COMMIT\n"
            r = subprocess.run([restore, "-w", "5", "--noflush"], input=text, capture_output=True,
                               text=True, timeout=30)
            if r.returncode == 0:
                return
        for rule in rules:
            self._run("-A", self.chain, *rule)

    def cut_many(self, pairs: Iterable[tuple[Endpoint, Endpoint]]) -> None:
        """Drop all Raft traffic between each pair (both directions, established connections
        too), all pairs in one commit."""
        if not self.available:
            return
        with self._lock:
            rules: list[list[str]] = []
            for a, b in pairs:
                key = frozenset((a.name, b.name))
                if key in self._cuts or a.name == b.name:
                    continue
                mark = self._mark()
                rules += self._rules(a, b, mark)
                self._cuts[key] = mark
            if rules:
                self._append(rules)

    def cut(self, a: Endpoint, b: Endpoint) -> None:
        """Drop all Raft traffic between ``a`` and ``b``."""
        self.cut_many([(a, b)])

    def isolate(self, victim: Endpoint, others: Iterable[Endpoint]) -> None:
        """Cut ``victim`` from every endpoint in ``others``."""
        self.cut_many([(victim, o) for o in others if o.name != victim.name])

    def drop_port(self, raft_port: int) -> None:
        """Drop every packet arriving on loopback to or from ``raft_port``, in INPUT, as an
        operator's ``iptables -A INPUT … -j DROP`` would (for the member with the lowest
        address, which every other member dials, a full isolation). Unlike a drop in OUTPUT,
        which fails the sender's connect at once (EPERM), connection attempts into it hang in
        SYN-SENT until the heal."""
        with self._lock:
            for flag in ("--dport", "--sport"):
                rule = ("INPUT", "-i", "lo", "-p", "tcp", flag, str(raft_port), "-j", "DROP")
                self._run("-I", *rule)
                self._input_rules.append(rule)
            self._cuts[frozenset({f"port:{raft_port}"})] = 0

    def _remove_input_rules(self) -> None:
        for rule in self._input_rules:
            self._run("-D", *rule, check=False)
        self._input_rules.clear()

    def heal(self) -> None:
        """Remove every cut (flush the private chain)."""
        if not self.available:
            return
        with self._lock:
            self._run("-F", self.chain, check=False)
            self._remove_input_rules()
            self._cuts.clear()

    @property
    def cuts(self) -> list[tuple[str, ...]]:
        """The pairs currently cut, as sorted name tuples."""
        return sorted(tuple(sorted(k)) for k in self._cuts)

    def close(self) -> None:
        """Remove the jump rule and the chain (only ours). Safe to call more than once."""
        if self.binary is None or not self._installed:
            return
        with self._lock:
            # Delete every copy of our jump rule (normally one), then flush and drop the chain.
            for _ in range(10):
                r = self._run("-D", "OUTPUT", *self._JUMP, "-j", self.chain, check=False)
                if r.returncode != 0:
                    break
            self._run("-F", self.chain, check=False)
            self._run("-X", self.chain, check=False)
            self._remove_input_rules()
            self._installed = False
            self.available = False
            self._cuts.clear()
