"""The one door to pysyncobj 0.3.17 internals: :class:`SafeSyncObj` fixes the engine's Raft
defects that the fault campaign found, by overriding its private (name-mangled) methods.

Purpose: Gantry builds on pysyncobj (pinned to 0.3.17, ``tests/actors/test_raft_index.py``
checks the pin) but its follower, walk-back and membership rules are not Raft's. Each override
below names the rule it restores (Raft paper §5.3–5.4, §6 of the thesis, etcd's strict reconfig
check) and has a test in ``tests/unit/test_pysyncobj_compat.py`` that shows the defect on the
stock class and its absence here.

Invariants this module protects:

1. **A follower only commits what it verified** (Raft Figure 2, AppendEntries rule 5:
   ``commitIndex = min(leaderCommit, index of last new entry)``). pysyncobj uses the index of the
   *last entry in the log*, which includes a stale, never-committed tail that Gantry's durable
   journal keeps until a real conflict shows up (see :mod:`gantry.consensus.journal`). That applied a
   deposed leader's own uncommitted entries: acknowledged writes lost, replicas diverged. Here the
   commit index only advances to the last entry the leader's message proved matching
   (``prevLogIdx + len(entries)``), or to a snapshot's index once it is fully installed; a message
   that proves nothing (rejected, partial snapshot chunk, a ``serialized=None`` probe) never
   advances it.
2. **Log walk-back converges** (Raft §5.3; the "conflict term" optimisation of the thesis §3.5).
   The leader pipelines several batches per pass; when the first one is rejected at a conflict,
   each later one is rejected too ("previous entry missing") and pysyncobj's reply told the
   leader to resume at the follower's *end*, undoing the step back. A follower more than one
   batch behind with a conflicting tail never converged. Here a rejection never points past a
   lower hint already sent to the same leader in the same term since the last success, and a
   conflict hint skips the whole conflicting term at once (never below commit index + 1, which
   every leader's log holds).
3. **Membership changes keep an up-to-date quorum** (etcd's ``--strict-reconfig-check``,
   ``isReadyToAddVotingMember`` / ``isReadyToRemoveVotingMember``). A change is refused unless
   the members of the *new* configuration that are reachable and caught up (answered within the
   minimum election timeout, match index within :data:`RECONFIG_MAX_LAG` of the commit index)
   form a majority of it; adding a second member to a one-member cluster is allowed (etcd's
   special case: growing a restored node). A change that would otherwise leave a quorum
   needing a stuck replica is refused with :attr:`SafeSyncObj.change_refusal` saying why.
4. **Snapshot provenance is known**: :attr:`SafeSyncObj.loading_from_leader` is True while a
   snapshot sent by the leader is being loaded (it replaces this node's log: the state machine must
   be restored unless it is exactly at the snapshot's entry), False while this node's own dump is
   loaded at start-up.
5. **A follower receiving a snapshot still answers its leader** (CheckQuorum keeps a leader
   whose followers are alive). pysyncobj's follower answers only after the last chunk; when the
   leader needs it for quorum (a restored one-member cluster growing to two) and the snapshot
   takes longer than ``leaderFallbackTimeout`` to stream, the leader stepped down and the
   transfer restarted in every new term. Here a chunk is answered with a keep-alive
   (``next_node_idx`` with neither success nor reset), at most every
   :data:`SNAPSHOT_KEEPALIVE_S`.
6. **An append that does not fit changes nothing** (the disk is full: :mod:`gantry.diskspace`).
   pysyncobj calls the journal's ``add`` assuming it cannot fail; when it raises, a leader loses
   the popped command and its callback, keeps a membership change in memory without its entry,
   and skips the rest of the tick; a follower keeps half a batch whose membership changes it never
   applied; a new leader is left without its no-op. Here a full leader refuses queued commands
   with :data:`~gantry.consensus.errors.FAIL_DISK_FULL` until the journal finds room, undoes the
   membership change, and hands the failed command to the Raft actor
   (:meth:`SafeSyncObj.take_refused`); a follower takes the batch back whole and acknowledges
   nothing; a leader without room for its no-op steps down.
   :class:`DurableTransport` sends nothing once the journal failed an fsync or a term write.
7. **Linearizable reads without log entries** (Raft thesis §6.4, ReadIndex; pysyncobj has none).
   :attr:`SafeSyncObj.reads` (:class:`~gantry.consensus.readindex.ReadRounds`) gets the messages
   it needs here: every append_entries a leader sends carries the current round id
   (:class:`DurableTransport`), a follower that accepts one (its term not above the message's)
   remembers it before replying, every next_node_idx it sends echoes ``(term, round)``, the
   leader counts the echoes it receives, and the read-index request/response messages between a
   follower and its leader are handled on the tick thread. :meth:`SafeSyncObj.heartbeat_now`
   sends a round at once. The argument that this is safe is in :mod:`gantry.consensus.readindex`.

8. **Entries and messages are encoded once, cheaply** (issue 10 part 5), and stay readable by
   pysyncobj 0.3.17 and older Gantry builds, so no version negotiation is needed:

   - A proposal (:meth:`SafeSyncObj.propose_call`) is the same REGULAR entry ``@replicated``
     makes, ``(method id, (entry bytes,))``, but pickled with protocol 5, which frames the
     protobuf bytes as they are. pysyncobj pickles with protocol 2, which spells bytes as a
     latin-1 string re-encoded as UTF-8 (up to twice the size, 7x the time to pickle and load).
   - A Raft message (:func:`encode_message`, installed on every connection by
     :class:`DurableTransport`) is pickled with protocol 5 and wrapped as a *stored* zlib stream
     (deflate level 0, a 512-byte window): ``zlib.decompress`` on the receiving side reads it as
     before. pysyncobj's ``zlib.compress(data, 3)`` allocates and clears about 256 KiB of
     compressor state per message, about 100 µs on this machine for a 300-byte heartbeat,
     several times the cost of the rest of the message. Messages of
     :data:`DEFLATE_MIN_BYTES` or more (snapshot chunks, long catch-up batches) are still
     deflated at level 3, where the set-up cost is small against the bytes saved.

9. **One append_entries per follower per tick, not per command** (group commit on the leader,
   as etcd's and hashicorp/raft's leaders send what accumulated since their last loop). With
   ``appendEntriesUseBatch`` off (the pipe notifier wakes the tick at once), pysyncobj sends
   append_entries to every follower for *each* command it appends, and again after applying:
   64 concurrent writes made 64 messages to each follower and 64 acknowledgements back per
   tick. Here every append_entries the tick wants up to the end of its command drain is
   deferred and sent once, carrying all new entries and the latest commit index. Messages
   received while polling are answered as before (nothing is deferred there), so a
   heartbeat, a ReadIndex round or an election is never held back by more than the tick's own
   work.

10. **What one drain sends to a member travels as one message** (a follower forwards its
    proposals, a leader answers forwarded ones). pysyncobj sends one ``apply_command`` per
    forwarded proposal and one ``apply_command_response`` back: two messages per write that
    did not arrive at the leader. While a tick drains its command queue,
    :class:`DurableTransport` holds the messages for a member that runs this build (it stamps
    :data:`BATCH_KEY` on every append_entries and next_node_idx it sends) and sends them, with
    the drain's append_entries, as one ``gantry_batch`` message; the receiver hands them to the
    engine one by one, in order, as if they had come separately. A member not known to read
    batches (an older build, or one not heard from since its connection last dropped) gets
    every message separately, as before.

11. **A large entry is decoded once, when all of it is in.** An entry of
    ``appendEntriesBatchSizeBytes`` or more travels as ``transmission`` chunks; pysyncobj's
    leader marks every chunk from the *command's* length on ``finish``, though the pickled entry
    is longer, so several chunks before the last say ``finish`` and the stock follower decodes a
    truncated pickle for each (an exception out of the message handler, logged as ``failed
    _onTick``, after a pure-Python retry). Here a ``finish`` whose buffer is not a complete
    pickle is taken as ``process``, and the complete one is handed to the engine as a plain
    append_entries with the decoded entry. Only the receiver changes, so it also reads what
    stock and older Gantry leaders send.

12. **PreVote** (Raft thesis §9.6, etcd's ``PreVote``): a follower whose election timeout passed
    first asks the members whether they *would* vote for it, without raising its term, and
    campaigns only when a majority says yes. A member says yes only if the candidate's log is at
    least as up to date as its own and it has not heard from a leader within the minimum
    election timeout (§4.2.3); the leader always says no. pysyncobj campaigns at once, so a
    member cut off by a partition raised its term at every timeout and, once the partition
    healed, deposed a healthy leader with its next ``request_vote``.

    - A member that never said it reads pre-votes (a ``gantry_hello`` goes out on every new
      connection; an older build sends none and ignores pre-votes) counts as a yes while it is
      connected and has sent a message on that connection within the longest election timeout,
      so a cluster in the middle of an upgrade still elects as before.
    - A leader's ``timeout_now`` (leadership transfer) campaigns at once, as in etcd.
    - A no that carries a higher term makes the candidate adopt it (§5.1): a candidate with the
      longer log and the lower term is not locked out by a member with the higher term and the
      shorter log.
    - pysyncobj's acknowledgements carry no term, so a leader never learnt that a member's term
      had passed its own, and that member ignored the leader for good (before PreVote, its next
      campaign freed it). An append_entries of a lower term is now answered with
      ``gantry_term``, and the stale leader steps down (etcd answers the same way).
    - A leader that steps down starts a fresh election timeout (etcd's ``becomeFollower``);
      pysyncobj kept the long-expired one, so a leader deposed during a transfer under load
      campaigned at once and took leadership back, several terms in a row.
    - A stopping (draining) member never campaigns.
    - A leader that sent ``timeout_now`` appends no new command for an election timeout (etcd
      drops proposals during a transfer): under load, the entries it kept appending put the
      target behind, the old leader refused it its vote, and transfers took several terms.

13. **A connection attempt that goes unanswered is retried.** pysyncobj checks a connection's
    timeout only on socket events; a connect whose SYNs a partition dropped waited for the
    kernel's SYN retries, and a member came back 5–15 s after the partition healed. An attempt
    unanswered for :data:`CONNECT_TIMEOUT_S` is dropped and made again (with pysyncobj's 5 s
    ``connectionRetryTime`` cut to 100 ms by the Raft actor).

14. **The Raft port keeps only live, known connections.** pysyncobj drops a connection, and
    the message, when it sends on one that read nothing for ``connectionTimeout`` (3.5 s), and
    checks that only on a send or a socket event. Followers never write to each other, so
    when the leader failed, the first pre-vote between them tore their idle link down and was
    lost: every failover took a second election round (1.2–2.0 s after freezing the leader of
    an idle 3-node cluster, against one round when the link is fresh). A peer gone without a
    FIN stayed "connected" for good, a reconnect left the old socket open beside the new one,
    and a socket that never said who it was stayed open forever (one fd each). Here:

    - every :data:`KEEPALIVE_S` each connected member that says it sends keep-alives
      (:data:`FEATURE_KEEPALIVE` in its hello) gets a ``gantry_hello``, so a link between live
      members of this build always reads;
    - a connection that read nothing for ``connectionTimeout`` is dropped: a member's (when it
      said it sends keep-alives; an older build's link is left to pysyncobj, as before) and an
      incoming one that has not said which member it is;
    - a member that connects again replaces its old connection, which is closed; a
      connection naming a member this node connects to itself (the higher address connects)
      is refused: taking it replaced the real link, and that member stayed cut off;
    - an unidentified connection must name its member within ``connectionTimeout`` of its
      accept (a byte trickled now and then kept it open), and may announce no frame longer
      than :data:`UNIDENTIFIED_MAX_FRAME_BYTES`; one poll event reads at most
      :data:`READ_BUDGET_BYTES` from a connection (a client streaming a 1.5 GB frame froze the
      tick thread and deposed a leader, password or not);
    - pysyncobj's utility commands (``add``, ``remove``, ``transfer``, ``set_version``,
      ``status``: unauthenticated membership changes without the strict reconfig check) and
      its read-only nodes (a non-member streamed the whole log) are refused on the Raft port:
      Gantry changes membership through ``ClusterService`` only.

15. **A snapshot is installed whole, from one leader in one term.** pysyncobj's follower appends
    every snapshot chunk after the first to the file it has open, whoever sent it, and its
    leader never cancels a transfer when it steps down: a leader deposed mid-transfer and
    elected again resumed at its old offset, after another leader's first chunks had gone
    into the file, and the follower installed the two snapshots spliced into one SQLite file
    (found by a code audit; no integrity check runs on install). Here a chunk counts only from
    the sender and term of the first chunk (:meth:`SafeSyncObj._snapshot_chunk_fits`; the
    sender starts over once it finds the follower still behind), and a leader that steps down
    cancels its transfers.

16. **The leader's snapshot is never overwritten by this node's own.** pysyncobj renames a
    snapshot received from the leader over the dump file while this node's own snapshot may
    still be in progress (Gantry copies it on a background thread and renames it over the dump
    when done); the older copy then replaced the leader's file, and pysyncobj compacted its log
    to the older index. When the last chunk is in, :attr:`SafeSyncObj.snapshot_arriving` (the
    Raft actor) makes the attempt in progress fail and never rename. The Raft actor also reads
    a snapshot's metadata and database from one hard link
    (:func:`check_snapshot_position` refuses a file whose database is older than the Gantry
    entries its metadata ends with): a follower installed the leader's Raft position and
    restored its own older database, so the entries between were never applied, and its reads
    missed acknowledged writes for good (found by the CI fault campaign, 2026-12-03).

17. **A snapshot that fails to load changes nothing and is not acknowledged.** pysyncobj swallows
    a failed load of the leader's snapshot ("failed to load full dump") and answers success
    anyway with this node's own last log index, an unverified tail the leader would count
    toward commits; the refused file stayed as the dump beside this node's own log. Here the
    dump from before is put back (a hard link taken when the last chunk arrived) and the reply
    carries no success, so the leader sends the snapshot again; a crash in between is settled
    at the next start (:func:`gantry.preflight.settle_interrupted_install`) (found by a code audit,
    2026-12-03, with three neighbours in ``actors/raft.py`` and the journal: a serializer error
    no longer leaves pysyncobj's serializer busy for good, a snapshot the log no longer holds
    is not compacted to, a successful snapshot restarts transfers of the previous one, and the
    journal never compacts to an empty log).

18. **A snapshot transfer never spans two connections**: when a member's connection goes, the
    leader restarts its transfer from the first chunk and the follower drops later chunks until
    a first one (chunks lost with the old connection left a hole in the file).

20. **Membership changes of a kept log tail stay in force.** The durable log keeps matching
    entries past a re-sent batch (Raft §5.3) instead of truncating after ``prevLogIdx`` as
    pysyncobj does; pysyncobj has rolled back the membership changes of that tail in memory, so
    the log used to truncate a tail holding one (matching, acknowledged entries gone until the
    leader re-sent them; found by a code audit, 2026-12-03). Now the tail stays and its changes
    are applied again after the batch's (:meth:`SafeSyncObj._reapply_kept_membership`).

21. **A removed member leaves nothing behind**: pysyncobj's removal (``dropNode``) closes the
    member's connection without the disconnection callback, so its snapshot transfer stayed and
    resumed mid-file when the member was added back (a wasted transfer the follower dropped
    chunk by chunk); the removal now ends the transfer, the snapshot being received from it,
    and what the engine and this module kept per member (last contact, last response).

22. **A refused Raft message is logged** (``raft_message_refused``, once per peer per 10 s):
    pysyncobj closed a connection whose frame did not decrypt or decode without a word, so
    nodes with different ``--raft-password`` sat NOT_SERVING with empty logs.

23. **A node says who it is before it is added** (etcd checks a new member's peer URL the
    same way before ``member add``): an incoming connection whose first message is a
    :data:`PROBE_TYPE` request is answered with this node's Raft address, its members,
    leader, term and last log entry — and, for a log ending at no-ops, the last entry before
    them and the no-ops' indexes and terms, so a member stopped right after an election can be
    added back with its data (:mod:`gantry.consensus.probe` asks), then left to the prober to
    close; the engine never sees it. ``add-node`` used to accept anything that answered TCP (a
    gRPC port, a cradle, a ``localhost:`` alias of a member, a node started without
    ``--peers``), and each such member counted toward quorum.

24. **A follower keeps following a leader its log removes**: a member catching up from the
    start of the log applies every membership change as it appends it (Raft §4.1), so when its
    leader had once been removed and added back, the replayed removal dropped the leader's
    connection; when the batch ended before the entry adding it back, the follower refused or
    never opened a connection to its leader again and stayed behind for good (the fault
    campaign, 2026-12-04). The same through a snapshot whose configuration lacks the leader
    (taken while it was removed, then sent by it). Raft has a follower accept AppendEntries
    from any current leader; the link now stays until the leader is added back or stops leading
    (:meth:`SafeSyncObj._release_kept_leaders`).

25. **Leadership goes only to a member that answers.** pysyncobj picks the transfer target
    with the highest match index among *connected* followers (ties: the highest id); a frozen
    follower (SIGSTOP, a paused VM) keeps its TCP connection and, on an idle cluster, its match
    index, so it was picked, never campaigned, and the leader held new commands for an election
    timeout after each attempt (``transfer-leader`` without a target, and every stopping leader's
    hand-over, failed while writes stalled). A target, named or picked, must also have answered
    within the minimum election timeout (``raftMinTimeout``, 400 ms by default; followers answer
    every heartbeat, 50 ms) (hashicorp/raft's ``pickServer`` takes the most
    caught-up follower too; etcd's leader refuses a transfer to a member it has not heard from
    recently, ``RecentActive``); the freshest such follower wins a tie.

26. **One wake-up write per tick.** With append batching off, pysyncobj writes a byte to its
    wake-up pipe for every proposal (and Gantry for every ask): a syscall on the proposing
    thread that releases the GIL, and a wake of the tick thread, per call. A byte is now written
    only when none was since the current tick began (:meth:`SafeSyncObj._wake_once`); every
    tick drains what was queued before it cleared the flag, so nothing waits longer than before.

19. **A follower keeps its log when it holds the snapshot's last entry** (Raft Figure 13,
    InstallSnapshot step 6): pysyncobj discarded the whole log on every install, entries after
    the snapshot this node had acknowledged included; here such a snapshot is not installed
    (:meth:`SafeSyncObj._log_holds_received_snapshot`) and the reply says the log matches up
    to its entry.

**One clock.** pysyncobj stamps its deadlines on its own clock (CLOCK_MONOTONIC_RAW), which
drifts from ``time.monotonic`` by up to 500 ppm; every time this module keeps or compares comes
from :func:`engine_clock` (mixing the two made every follower of a long-running node lose its
leader every few seconds, found by an idle 3-node cluster on a VM up for 10 minutes).

Everything else in pysyncobj is used as is. Accessors (``is_leader``, ``leader_node``,
``leader_commit_index``, ``transport``, …) give the Raft actor what it reads of pysyncobj's state
without reaching into its private names itself, and the hooks at the bottom plug the durable log
in: :func:`installed` (pysyncobj's ``createJournal`` returns a
:class:`~gantry.consensus.journal.DurableJournal` while ``SyncObj.__init__`` runs),
:class:`DurableTransport` / :func:`transport_for` (group-commit acknowledgements and draining, on
pysyncobj's message dicts and ``_onMessageReceived``), :func:`is_membership_entry` (the command
type prefix byte) and :func:`gantry_payload` (a journal entry's Gantry bytes, read without the
engine). No other module may use a pysyncobj private name (``_SyncObj__*``,
``_isLeader``, ``_getLeader``, transport internals): upgrading the engine is an audit of this file
and of the tests beside it (``tests/unit/test_pysyncobj_compat.py``, the version pin in
``tests/actors/test_raft_index.py``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import pickle
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pysyncobj.pickle as _sync_pickle
import pysyncobj.syncobj as _syncobj_module
import structlog
from pysyncobj import FAIL_REASON, SyncObj
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.transport import TCPTransport

from gantry.consensus.errors import FAIL_DISK_FULL
from gantry.consensus.readindex import REQUEST, RESPONSE, ReadRounds
from gantry.db import fsync_dir as _fsync_dir
from gantry.diskspace import DiskFull
from gantry.state.snapshot import SnapshotError, decode_meta

if TYPE_CHECKING:
    from gantry.consensus.journal import DurableJournal

_log = structlog.get_logger("gantry.raft")


def engine_clock() -> float:
    """Now (s) on the Raft engine's clock: pysyncobj's own ``monotonic``, CLOCK_MONOTONIC_RAW on
    Linux, which it stamps its election deadline, response and connection times with. Every
    time this module compares with one of those, or keeps beside them, comes from here.

    ``time.monotonic`` (CLOCK_MONOTONIC) is slewed by NTP and drifts from the raw clock by up
    to 500 ppm: 0.3 s after 10 minutes of uptime on a VM here, seconds after a day. Read
    against pysyncobj's election deadline it made a follower that had heard its leader 50 ms
    before take the election timeout as passed and lose its leader every few seconds, then on
    every tick once the drift passed the shortest election timeout."""
    now: float = _syncobj_module.monotonicTime()
    return now

#: A member counts as caught up for a membership change when its match index is at most this
#: many log entries behind the leader's commit index (entries; a healthy follower under load is a
#: few batches behind, a stuck one thousands).
RECONFIG_MAX_LAG = 1000

_TRANSMISSION_PARTIAL = ("start", "process")
_CONNECTED = CONNECTION_STATE.CONNECTED
#: Least time (seconds) between two keep-alives of a follower receiving a snapshot (override 5).
SNAPSHOT_KEEPALIVE_S = 0.1
_REGULAR = b"\x00"  # pysyncobj's _COMMAND_TYPE.REGULAR prefix byte: a @replicated call
_MEMBERSHIP = b"\x02"  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP prefix byte
_NO_OP = b"\x01"  # pysyncobj's _COMMAND_TYPE.NO_OP prefix byte


#: Pickle protocol of proposals and Raft messages (override 8): 5 frames bytes as they are;
#: every build that can join a cluster (Python >= 3.11) reads it.
PICKLE_PROTOCOL = 5
#: Override 10: the message type of several messages for one member sent as one, and the key
#: that says its sender reads them (stamped on every append_entries and next_node_idx).
BATCH_TYPE = "gantry_batch"
BATCH_KEY = "gantry_batches"

#: Override 12: what a member sends on every new connection (its features), the pre-vote
#: request ``{term, last_log_index, last_log_term}`` (``term`` = the candidate's term + 1), and
#: its answer ``{term, granted, current_term}``.
HELLO_TYPE = "gantry_hello"
PRE_VOTE = "gantry_pre_vote"
PRE_VOTE_RESPONSE = "gantry_pre_vote_response"
#: Override 12: the answer to an append_entries of a lower term than this member's ``{term}``.
TERM_NOTICE = "gantry_term"
#: How early (s) a follower takes its election timeout as passed (override 12).
PRE_VOTE_EARLY_S = 0.05
#: Longest a connection attempt may stay unanswered (s) before it is dropped and retried
#: (override 13). On a LAN a connect is answered in milliseconds, refused at once when nothing
#: listens.
CONNECT_TIMEOUT_S = 1.0
FEATURE_PRE_VOTE = "pre_vote"
#: Override 14: the hello feature of a member that sends a hello on every connection at least
#: every :data:`KEEPALIVE_S` seconds, and so may be dropped once it went ``connectionTimeout``
#: without a read.
FEATURE_KEEPALIVE = "keepalive"
KEEPALIVE_S = 1.0
_HELLO = {"type": HELLO_TYPE, "features": [FEATURE_PRE_VOTE, FEATURE_KEEPALIVE]}
#: Override 23: the first message of a connection that asks who this node is ``{type, from}``, and
#: the answer ``{type, raft_addr, members, leader, term, last, last_command, noop_tail,
#: noop_tail_truncated}`` (``members`` includes ``raft_addr``; ``leader`` is a Raft address or
#: None; ``term`` the current term; ``last`` the last log entry as ``[log index, term,
#: entry_digest(command)]``; when the log ends at no-ops, ``last_command`` is the last entry before
#: them that is not one, in the same form, and ``noop_tail`` the ``[log index, term]`` of each
#: no-op after it, in log order — both empty when the log does not end at a no-op, or when the
#: no-ops run back past :data:`PROBE_MAX_NOOP_TAIL` entries (then ``noop_tail_truncated`` is True)
#: or to the log's first entry).
PROBE_TYPE = "gantry_probe"
PROBE_REPLY_TYPE = "gantry_probe_reply"
#: The most trailing no-ops a probe answer lists (one per election won since the last command).
PROBE_MAX_NOOP_TAIL = 1000


def _command_before_noops(log: Any) -> tuple[list[Any], list[list[int]], bool]:
    """Override 23: ``(last_command, noop_tail, noop_tail_truncated)`` of a probe answer for
    ``log`` (pysyncobj's ``(command, log index, term)`` entries, at least one): see
    :data:`PROBE_REPLY_TYPE`; ``noop_tail_truncated`` when more than
    :data:`PROBE_MAX_NOOP_TAIL` no-ops end it."""
    tail: list[list[int]] = []
    n = len(log)
    for back in range(1, min(n, PROBE_MAX_NOOP_TAIL + 1) + 1):
        command, index, term = log[n - back]
        if bytes(command) != _NO_OP:
            if not tail:
                break  # the log does not end at a no-op
            return [int(index), int(term), entry_digest(command)], tail[::-1], False
        tail.append([int(index), int(term)])
    return [], [], len(tail) > PROBE_MAX_NOOP_TAIL


def entry_digest(command: bytes) -> str:
    """SHA-256 (hex) of a log entry's command bytes: two logs hold the same entry at an index
    only if index, term and digest match (the same ``(index, term)`` in two clusters' logs says
    nothing: the Log Matching Property holds within one cluster's history)."""
    return hashlib.sha256(command).hexdigest()
#: Override 14: the longest frame (bytes) a connection that has not said which member it is may
#: announce (its first messages are a 32-byte key and an address), and how many bytes one poll
#: event may read from one connection before the tick goes on (pysyncobj read for as long as
#: data kept coming: one client streaming a huge frame froze the tick thread for seconds and
#: deposed a leader, password or not).
UNIDENTIFIED_MAX_FRAME_BYTES = 64 * 1024
READ_BUDGET_BYTES = 1024 * 1024
#: Raft messages whose pickle is at least this long (bytes) are deflated at level 3 as pysyncobj
#: does; shorter ones travel as a stored (level 0) zlib stream (override 8).
DEFLATE_MIN_BYTES = 64 * 1024


def encode_message(message: Any) -> bytes:
    """One Raft message as its wire body (before pysyncobj's 4-byte length prefix and optional
    encryption): ``pickle.dumps(message, 5)`` in a zlib stream that pysyncobj's receiver,
    ``pickle.loads(zlib.decompress(body))``, reads unchanged. Deflated at level 3 from
    :data:`DEFLATE_MIN_BYTES` of pickle on, stored (level 0, 512-byte window, ~3 µs) below."""
    raw = pickle.dumps(message, PICKLE_PROTOCOL)
    if len(raw) >= DEFLATE_MIN_BYTES:
        return zlib.compress(raw, 3)
    stored = zlib.compressobj(0, zlib.DEFLATED, 9, 1)
    return stored.compress(raw) + stored.flush()


def _send_encoded(conn: TcpConnection, message: Any) -> None:
    """``TcpConnection.send`` with :func:`encode_message` for pysyncobj's
    ``zlib.compress(pickle.dumps(message, 2), 3)``; framing, encryption and buffering as in
    pysyncobj 0.3.17."""
    if conn.sendRandKey:
        message = (conn.sendRandKey, message)
    data = encode_message(message)
    if conn.encryptor:
        data = conn.encryptor.encrypt_at_time(data, int(engine_clock()))
    conn._TcpConnection__writeBuffer += struct.pack("i", len(data)) + data
    conn._TcpConnection__trySendBuffer()


def use_encoded_send(conn: TcpConnection) -> None:
    """Make ``conn`` send with :func:`encode_message` (override 8); receiving is unchanged."""
    conn.send = functools.partial(_send_encoded, conn)


def _bounded_read(conn: TcpConnection, unidentified: Callable[[], bool]) -> bool:
    """pysyncobj's ``TcpConnection.__processRead`` (one ``recv`` into the read buffer; True when
    it read something), except that it returns False once :data:`READ_BUDGET_BYTES` were read
    in this poll event (the poller calls again while data waits), and that a connection
    ``unidentified()`` says has not named its member is closed when the frame it announces is
    longer than :data:`UNIDENTIFIED_MAX_FRAME_BYTES` (override 14)."""
    sock = conn._TcpConnection__socket
    try:
        incoming = sock.recv(conn._TcpConnection__recvBufferSize)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            conn.disconnect()
        return False
    if not incoming or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        conn.disconnect()
        return False
    buf = conn._TcpConnection__readBuffer + incoming
    conn._TcpConnection__readBuffer = buf
    if len(buf) >= 4 and unidentified():
        declared = struct.unpack("i", buf[:4])[0]
        if not 0 <= declared <= UNIDENTIFIED_MAX_FRAME_BYTES:
            _log.warning("raft_connection_refused", reason="oversized first message",
                         declared_bytes=declared)
            conn.disconnect()
            return False
    burst = getattr(conn, "_gantry_burst", 0) + len(incoming)
    if burst >= READ_BUDGET_BYTES:
        conn._gantry_burst = 0
        return False
    conn._gantry_burst = burst
    return True


#: Override 22: at most one ``raft_message_refused`` line per peer in this many seconds (a
#: member with another password is redialled every 100 ms).
REFUSED_LOG_EVERY_S = 10.0
_refused_logged: dict[str, float] = {}


def _peer_host(conn: TcpConnection) -> str:
    """The remote address ``host:port`` of ``conn``'s socket, "" when it has none any more."""
    try:
        host, port = conn._TcpConnection__socket.getpeername()[:2]
    except (OSError, AttributeError, ValueError):
        return ""
    return f"{host}:{port}"


def _logged_parse(conn: TcpConnection, parse: Callable[[], Any], peer: str) -> Any:
    """pysyncobj's ``TcpConnection.__processParseMessage``, which closes the connection without
    a word when a whole frame does not decrypt or unpickle; here that is logged (override 22:
    two nodes with different ``--raft-password`` both sat NOT_SERVING with nothing in either
    log, found by a new-user trial), at most once per peer every :data:`REFUSED_LOG_EVERY_S`."""
    buf = conn._TcpConnection__readBuffer
    whole = len(buf) >= 4 and len(buf) - 4 >= struct.unpack("i", buf[:4])[0]
    message = parse()
    if message is None and whole and conn.state == CONNECTION_STATE.DISCONNECTED:
        now = engine_clock()
        if now - _refused_logged.get(peer, float("-inf")) >= REFUSED_LOG_EVERY_S:
            _refused_logged[peer] = now
            _log.warning("raft_message_refused", peer=peer, encrypted=bool(conn.encryptor),
                         hint="a Raft message that does not decrypt or decode: the nodes' "
                              "--raft-password (GANTRY_RAFT_PASSWORD) differ, or this is not a "
                              "Gantry node")
    return message


def use_logged_parse(conn: TcpConnection, peer: str) -> None:
    """Make ``conn`` log the frames it refuses (:func:`_logged_parse`, override 22); ``peer``
    names the other side in the line (a member's Raft address, or ``incoming HOST``)."""
    conn._TcpConnection__processParseMessage = functools.partial(
        _logged_parse, conn, conn._TcpConnection__processParseMessage, peer)


def use_bounded_read(conn: TcpConnection, unidentified: Callable[[], bool]) -> None:
    """Make ``conn`` read with :func:`_bounded_read` (override 14)."""
    conn._TcpConnection__processRead = functools.partial(_bounded_read, conn, unidentified)


def no_op_entry(index: int, term: int) -> tuple[bytes, int, int]:
    """A pysyncobj no-op log entry ``(command bytes, log index, term)``: what ``gantry restore``
    puts in the Raft log and snapshot metadata of a data directory seeded from a backup (the
    entries at and before the snapshot's index are never applied, only compared)."""
    return (_NO_OP, index, term)


class _MembershipUnpickler(pickle.Unpickler):
    """Unpickles only what pysyncobj writes for a membership change: lists, strings and its
    node classes (``pysyncobj.node``)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "pysyncobj.node" and name in ("Node", "TCPNode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a membership entry")


def membership_change(command: bytes) -> tuple[str, str]:
    """``("add" | "rem", Raft address)`` of a pysyncobj membership entry's command bytes
    (``MEMBERSHIP`` prefix byte, then ``pickle([kind, node id, node])``). Raises ``ValueError``
    for anything else."""
    if not is_membership_entry(command):
        raise ValueError("not a membership entry")
    try:
        request = _MembershipUnpickler(io.BytesIO(command[1:])).load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure: not one of pysyncobj's
        raise ValueError(f"undecodable membership entry: {e!r}") from None
    if (not isinstance(request, list) or len(request) < 2 or request[0] not in ("add", "rem")
            or not isinstance(request[1], str)):
        raise ValueError(f"a membership entry of an unknown shape: {request!r}"[:200])
    return str(request[0]), request[1]


def is_membership_entry(command: bytes) -> bool:
    """Whether a journal entry's command bytes are a pysyncobj membership change (as opposed to a
    Gantry entry or pysyncobj's no-op): pysyncobj prefixes each command with its type byte."""
    return command[:1] == _MEMBERSHIP


#: Beside the dump: a hard link of it as it was before a leader's snapshot was renamed over it,
#: while that snapshot is checked and loaded (override 17; a crash meanwhile is settled by
#: :func:`gantry.preflight.settle_interrupted_install`).
BEFORE_INSTALL_SUFFIX = ".before-install"


def _snapshot_positions(meta_json: str) -> list[tuple[int, int]] | None:
    """``[(last index, term), (previous index, term)]`` of snapshot metadata JSON
    (:func:`gantry.state.snapshot.decode_meta`), or None when it does not decode."""
    try:
        last, prev, _ = decode_meta(meta_json, str)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return [(int(last[1]), int(last[2])), (int(prev[1]), int(prev[2]))]


def check_snapshot_position(meta: tuple[Any, Any, Any], applied_index: int) -> None:
    """Refuse a snapshot whose database is older than its own Raft metadata says.

    ``meta``: pysyncobj's ``(last entry, previous entry, cluster)``, entries ``(command bytes,
    log index, term)``; ``applied_index``: the database's applied index inside the same file.
    The database may be *behind* the metadata only across entries that never reach the state
    machine (pysyncobj no-ops and membership changes), and ahead of it after a restart (entries
    being replayed). When the last or previous entry is a Gantry entry (a ``@replicated`` call)
    above the applied index, installing the file would skip committed entries for good: raises
    :class:`~gantry.state.snapshot.SnapshotError` (pysyncobj keeps its log and the leader sends
    the snapshot again)."""
    last, prev, _ = meta
    needed = max((int(e[1]) for e in (last, prev) if bytes(e[0])[:1] == _REGULAR), default=0)
    if applied_index < needed:
        raise SnapshotError(
            f"snapshot's database is at log index {applied_index} but its Raft metadata ends at "
            f"{int(last[1])} with a Gantry entry at {needed}: the file mixes two snapshots")


class _CallUnpickler(pickle.Unpickler):
    """Unpickles only what pysyncobj writes for a @replicated call with bytes arguments: tuples,
    ints and bytes (protocol 2 spells bytes as ``_codecs.encode(text, "latin1")``). Any other
    global is refused, so reading a journal offline never runs code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a journal entry")


def is_engine_entry(command: bytes) -> bool:
    """Whether a log entry's command bytes are one of pysyncobj's own entries (no-op,
    membership change, version) rather than a call of a @replicated method (a Gantry entry)."""
    return bytes(command[:1]) != _REGULAR


def gantry_payload(command: bytes) -> bytes | None:
    """The Gantry entry (an encoded ``gantry.command.v1.Command``) inside a journal entry's
    command bytes, or None for pysyncobj's own entries (no-op, membership change, version).

    pysyncobj 0.3.17 stores a call of a @replicated method as its REGULAR type byte, then
    ``pickle.dumps((method id, args), protocol=2)`` (protocol 5 for proposals of this build,
    :meth:`SafeSyncObj.propose_call`); Gantry's one replicated method
    (``GantrySyncObj.apply_entry``) takes the entry bytes as its only argument. Used where the
    engine does not run: ``--force-new-cluster`` applies committed entries before it starts, and
    the Raft actor names the proposal a full disk refused. Raises ``ValueError`` for a REGULAR
    entry of another shape."""
    if is_engine_entry(command):
        return None
    try:
        call = _CallUnpickler(io.BytesIO(command[1:])).load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise ValueError(f"undecodable pysyncobj call entry: {e!r}") from None
    if (isinstance(call, tuple) and len(call) == 2 and isinstance(call[1], tuple)
            and len(call[1]) == 1 and isinstance(call[1][0], bytes)):
        return call[1][0]
    raise ValueError("a pysyncobj call entry that is not GantrySyncObj.apply_entry(bytes)")


class SafeSyncObj(SyncObj):  # type: ignore[misc]
    """pysyncobj's ``SyncObj`` with Raft's follower commit rule, a converging log walk-back and a
    strict membership-change check (see the module docstring). Same constructor as ``SyncObj``.
    """

    _SyncObj__raftCommitIndex: int  # pysyncobj's commit index (written by override 1)
    _SyncObj__recvTransmission: bytes | str  # a large entry's chunks so far (override 11)
    _SyncObj__raftElectionDeadline: float  # monotonic time of the next election (override 12)
    _SyncObj__raftLeader: Any  # the leader's Node, or None
    #: Override 16: called on the tick thread when a snapshot from the leader is complete, just
    #: before the engine renames it over the dump file (set before ``__init__``).
    snapshot_arriving: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before SyncObj.__init__: it starts the tick thread, which may call the overrides.
        self._conflict_hint: int | None = None
        self._reject_floor: tuple[Any, int, int] | None = None  # (leader node, term, next index)
        #: True while a snapshot received from the leader is being loaded (see module docstring).
        self.loading_from_leader = False
        #: Why the last membership change was refused (empty when it was not).
        self.change_refusal = ""
        #: Raft address → monotonic time (s) of the last message received from that member.
        self.last_contact: dict[str, float] = {}
        self._snapshot_keepalive_at = 0.0  # monotonic time of the last keep-alive (override 5)
        #: Override 15: (leader's Raft address, term) of the snapshot being received.
        self._incoming_snapshot: tuple[str | None, int] | None = None
        #: Command bytes of proposals whose append did not fit (override 6); the Raft actor
        #: takes them (:meth:`take_refused`) to fail their proposals.
        self._refused: list[bytes] = []
        #: ReadIndex (override 7): rounds, echoes and read-index requests; tick thread only.
        self.reads = ReadRounds()
        #: Override 9: True from the start of a tick to the end of its command drain, while
        #: append_entries rounds are deferred; whether one was.
        self._defer_appends = False
        self._appends_deferred = False
        #: Override 12: the term of the pre-vote round in progress (None: none) and the members
        #: that said yes to it; the term of a round that won, until the engine campaigns for it.
        self._pre_vote_term: int | None = None
        self._pre_vote_grants: set[str] = set()
        self._pre_vote_won: tuple[int, float] | None = None  # (term, monotonic time)
        #: Override 12: until when (monotonic s) a leader that sent ``timeout_now`` appends no
        #: new command (etcd drops proposals while it transfers leadership).
        self.transfer_hold_until = 0.0
        #: Override 17: whether the last dump load got past the deserializer, a hard link of the
        #: dump as it was before the leader's snapshot was renamed over it, and whether the
        #: install just failed (its success reply is then withheld).
        self._dump_loaded = False
        self._dump_before_install: str | None = None
        self._install_failed = False
        #: Override 19: the log index of a leader's snapshot this node's log already holds
        #: (Raft Figure 13 step 6: its log is kept), for the reply and for the commit index.
        self._retain_reply: int | None = None
        self._retain_commit: int | None = None
        conf: Any = kwargs.get("conf", args[2] if len(args) > 2 else None)
        inner = getattr(conf, "deserializer", None)
        if inner is not None:
            def deserializer(path: str) -> Any:
                result = inner(path)
                self._dump_loaded = True
                return result

            conf.deserializer = deserializer
        #: Override 25: why the last leadership transfer was refused ("" when it was not, or
        #: when pysyncobj refused it itself: a target not caught up).
        self.transfer_refusal = ""
        #: Override 26: a wake-up byte was written since the last tick began.
        self._wake_pending = False
        super().__init__(*args, **kwargs)
        # A round not confirmed within an election timeout is failed (the leader may be deposed).
        self.reads.round_timeout_s = float(self._SyncObj__conf.raftMaxTimeout)
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:  # override 26
            notifier.notify = functools.partial(self._wake_once, notifier.notify)

    # -- override 26: one wake-up a tick, not one a proposal --
    def _wake_once(self, write: Callable[[], None]) -> None:
        """pysyncobj's pipe notifier (any thread: every proposal, every ask), writing its byte
        only when none was written since the current tick began (:meth:`_onTick` clears the
        flag first). Whatever was queued before the flag was cleared is drained later in that
        tick (commands, then asks); whatever is queued after it finds the flag clear and writes,
        or finds it set by a write made after the clear, whose byte ends the next poll. Each
        write is a syscall that releases the GIL (a thread switch, often) and wakes the tick
        thread: 64 concurrent proposals made up to 64 of each per tick."""
        if not self._wake_pending:
            self._wake_pending = True
            write()

    # -- helpers over pysyncobj's state (tick thread) --
    def _entry_at(self, index: int) -> tuple[bytes, int, int] | None:
        raft_log = self._SyncObj__raftLog
        if not len(raft_log):
            return None
        pos = index - raft_log[0][1]
        if pos < 0 or pos >= len(raft_log):
            return None
        entry: tuple[bytes, int, int] = raft_log[pos]
        return entry

    def _first_index_of_term(self, index: int, term: int, commit_index: int) -> int:
        """The first log index at or before ``index`` whose entries all have ``term``, never
        below ``commit_index + 1`` (committed entries match every leader's log)."""
        raft_log = self._SyncObj__raftLog
        first = raft_log[0][1]
        floor = max(commit_index + 1, first + 1)
        i = index
        while i - 1 >= floor and raft_log[i - 1 - first][2] == term:
            i -= 1
        return max(i, floor)

    # -- override 1 and 2: follower side of AppendEntries --
    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        node_id = getattr(node, "id", None)
        if node_id is not None:
            self.last_contact[node_id] = engine_clock()
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == PRE_VOTE:  # override 12
            self._on_pre_vote(node, message)
            return
        if kind == PRE_VOTE_RESPONSE:
            self._on_pre_vote_response(node, message)
            return
        if kind == TERM_NOTICE:
            self._on_term_notice(node, message)
            return
        if kind in (REQUEST, RESPONSE):  # override 7: Gantry's own messages
            if node_id is not None:
                if kind == REQUEST:
                    self.reads.on_request(self, node_id, message)
                else:
                    self.reads.on_response(self, node_id, message)
            return
        if kind != "append_entries" or message.get("term", -1) < self._SyncObj__raftCurrentTerm:
            if kind == "append_entries":  # override 12: tell a stale leader the newer term
                self._SyncObj__transport.send(
                    node, {"type": TERM_NOTICE, "term": self._SyncObj__raftCurrentTerm})
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            if kind == "next_node_idx" and node_id is not None and self._isLeader():
                self.reads.on_ack(self, node_id, message)
            return
        if node_id is not None:  # accepted: remember the round to echo, before the reply is sent
            self.reads.on_append_entries(node_id, message)
        if message.get("transmission") == "finish":
            message = self._finish_transmission(message)
            if message is None:
                return
        old_commit: int = self._SyncObj__raftCommitIndex
        verified: int | None = None
        snapshot_message = False
        self._conflict_hint = None
        if "prevLogIdx" in message:
            transmission = message.get("transmission")
            if transmission not in _TRANSMISSION_PARTIAL:
                prev_idx, prev_term = message["prevLogIdx"], message["prevLogTerm"]
                prev = self._entry_at(prev_idx) if prev_idx is not None else None
                if prev is not None and prev[2] == prev_term:
                    count = 1 if transmission == "finish" else len(message.get("entries") or ())
                    verified = prev_idx + count
                elif prev is not None:
                    self._conflict_hint = self._first_index_of_term(prev_idx, prev[2], old_commit)
        elif message.get("serialized") is not None:
            snapshot_message = True
            serialized = message["serialized"]
            if not self._snapshot_chunk_fits(node_id, int(message["term"]), serialized):
                self._snapshot_chunk_received(node)  # override 5 still: this follower is alive
                return
            if isinstance(serialized, tuple) and len(serialized) == 3 and serialized[2]:
                self._snapshot_complete()
        applied_before: int = self._SyncObj__raftLastApplied
        raft_log = self._SyncObj__raftLog
        batching = hasattr(raft_log, "begin_batch")
        if batching:
            raft_log.begin_batch()
        try:
            SyncObj._SyncObj__onMessageReceived(self, node, message)
        except DiskFull:
            # Override 6, follower side: an entry of the batch did not fit. pysyncobj stopped
            # before acknowledging and before applying the batch's membership changes; take
            # back the entries it did append so the log and the configuration agree. The
            # leader sends them again; nothing was acknowledged, the commit index stays.
            if batching:
                raft_log.rollback_batch()
            return
        finally:
            self._conflict_hint = None
        current_last: int = self._SyncObj__raftLog[-1][1]
        leader_commit = int(message.get("commit_index") or 0)
        retained, self._retain_commit = self._retain_commit, None
        if batching:
            self._reapply_kept_membership(raft_log)
        if verified is not None:
            target = max(old_commit, min(leader_commit, verified))
        elif snapshot_message and retained is not None:
            target = max(old_commit, retained)  # override 19: a snapshot holds committed entries
        elif snapshot_message and self._SyncObj__raftLastApplied != applied_before:
            target = current_last  # a snapshot was installed: the log is exactly its two entries
        else:
            target = old_commit
        target = min(target, current_last)
        if self._SyncObj__raftCommitIndex != target:
            self._SyncObj__raftCommitIndex = target
            self._SyncObj__raftLog.setRaftCommitIndex(target)
        if snapshot_message and self._SyncObj__raftLastApplied == applied_before and retained is None:
            self._snapshot_chunk_received(node)

    # -- override 20: membership changes of a kept log tail stay in force --
    def _reapply_kept_membership(self, raft_log: Any) -> None:
        """pysyncobj rolls back the cluster changes of every entry after ``prevLogIdx`` before it
        appends a batch, and applies only the batch's again; the durable log keeps the matching
        entries past the batch (Raft §5.3), so their membership changes are applied again here,
        in log order, after the batch's (Raft §4.1: a server uses the latest configuration in
        its log)."""
        for command in raft_log.take_kept_membership():
            request = self._SyncObj__parseChangeClusterRequest(command)
            if request is not None:
                self._SyncObj__doChangeCluster(request)

    # -- override 11: a large entry is decoded once, when all of it is in --
    def _finish_transmission(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """A chunk marked ``finish`` of a large entry (``transmission``), as pysyncobj 0.3.17
        sends it: its leader marks *every* chunk from ``len(command)`` bytes on ``finish``, but
        the pickled entry is longer than the command (protocol 2 spells bytes 0x80-0xFF in two
        bytes), so one to several chunks before the last say ``finish`` too. The stock follower
        decodes each of them, the truncated pickle raises out of the message handler (``failed
        _onTick``), and pysyncobj's loader retries it in pure Python first: milliseconds of tick
        thread per chunk, on a follower that is already behind.

        Returns the message to hand to the engine: a ``process`` chunk while the pickle is not
        complete (its last opcode is STOP, ``b"."``, so a buffer not ending in it cannot be
        complete), else a plain append_entries carrying the decoded entry, exactly what the stock
        ``finish`` branch makes of it; ``None`` (drop it, the leader resends on rejection) for a
        ``finish`` with no ``start`` before it.
        """
        received = self._SyncObj__recvTransmission
        data = message.get("data")
        if not isinstance(received, bytes) or not isinstance(data, bytes):
            return None
        whole = received + data
        try:
            if not whole.endswith(b"."):
                raise EOFError
            entry = _sync_pickle.loads(whole)
        except Exception:  # noqa: BLE001 - not complete yet (a '.' inside the data, at most)
            # Keep what is in (one copy), and let the engine answer it as a middle chunk.
            self._SyncObj__recvTransmission = whole
            return {**message, "transmission": "process", "data": b""}
        self._SyncObj__recvTransmission = ""
        plain = {k: v for k, v in message.items() if k not in ("transmission", "data")}
        plain["entries"] = [entry]
        return plain

    # -- override 15: a snapshot is received whole, from one leader in one term --
    def _snapshot_chunk_fits(self, node_id: str | None, term: int, serialized: Any) -> bool:
        """Whether a snapshot chunk ``(data, is_first, is_last)`` continues the snapshot being
        received: the first chunk starts one from its sender in its term; a later chunk counts
        only from that sender in that term. pysyncobj appends every later chunk to the file
        open, whoever sent it: a leader deposed mid-transfer and elected again resumes where it
        stopped (it never cancels a transfer on stepping down), after another leader's first
        chunks went into the file, and the follower installed the two snapshots spliced. A
        dropped chunk is never answered; the sender reaches the end, finds the follower still
        behind and starts over from the first chunk."""
        if not isinstance(serialized, tuple) or len(serialized) != 3:
            return True  # the engine decides (a malformed chunk is its business)
        if serialized[1]:
            self._incoming_snapshot = (node_id, term)
            return True
        if self._incoming_snapshot == (node_id, term):
            return True
        _log.info("snapshot_chunk_dropped", leader=node_id, term=term,
                  receiving_from=None if self._incoming_snapshot is None else list(self._incoming_snapshot))
        return False

    # -- override 16: the leader's snapshot is never overwritten by this node's own --
    def _snapshot_complete(self) -> None:
        """The last chunk of the leader's snapshot is in: pysyncobj renames the received file
        over the dump and installs it, whatever this node's own serializer is doing. A snapshot
        this node started earlier and is still copying would then rename *its* file over the
        leader's; pysyncobj would keep the leader's log position (and, on SUCCESS, compact to
        its own older index). :attr:`snapshot_arriving` (the Raft actor) stops that attempt
        first."""
        if self.snapshot_arriving is not None:
            self.snapshot_arriving()
        self._keep_dump_before_install()

    # -- override 17: a snapshot that fails to install changes nothing and is not acknowledged --
    def _keep_dump_before_install(self) -> None:
        """Hard-link the dump as it is now (``<dump>.before-install``), so that a leader's
        snapshot that then fails to load can be taken back off the dump (see
        :meth:`_after_install`)."""
        dump = self._SyncObj__conf.fullDumpFile
        if not dump:
            return
        keep = dump + BEFORE_INSTALL_SUFFIX
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(keep)
            if os.path.exists(dump):
                os.link(dump, keep)
                self._dump_before_install = keep
            else:
                self._dump_before_install = ""  # no dump before: remove a refused one
        except OSError as e:
            self._dump_before_install = None
            _log.warning("snapshot_dump_not_kept", path=dump, error=repr(e))

    # -- override 19: a snapshot whose last entry this node's log holds is not installed --
    def received_snapshot_meta(self, path: str) -> str | None:
        """The Raft metadata JSON (:func:`gantry.state.snapshot.encode_meta`) of the snapshot
        file at ``path``, or None when it cannot be read (the install then goes ahead and fails
        on its own). Gantry's engine (actors/raft.py) reads its snapshot format; this base class
        knows none."""
        return None

    def received_snapshot_last_entry(self, path: str) -> tuple[int, int] | None:
        """``(log index, term)`` of the received snapshot's last entry, or None."""
        meta_json = self.received_snapshot_meta(path)
        positions = None if meta_json is None else _snapshot_positions(meta_json)
        return None if positions is None else positions[0]

    def _log_holds_received_snapshot(self) -> bool:
        """Raft Figure 13 (InstallSnapshot), step 6: "if an existing log entry has the same index
        and term as the snapshot's last included entry, retain log entries following it and
        reply". pysyncobj always discarded the whole log, entries after the snapshot this node
        had acknowledged included (a leader walking back a long run of one term can land below
        its own snapshot while the follower matches it further on). Such a follower's log holds
        every entry from its own applied index on, so nothing needs installing: the received
        file is taken back off the dump, the reply says the log matches up to the snapshot's
        entry, and the commit index covers it (a snapshot holds only committed entries)."""
        dump = self._SyncObj__conf.fullDumpFile
        last = self.received_snapshot_last_entry(dump) if dump else None
        if last is None:
            return False
        entry = self._entry_at(last[0])
        if entry is None or int(entry[2]) != last[1] or self._entry_at(last[0] - 1) is None:
            # (the entry before it too: a crash before the dump is put back must leave a dump
            # whose two entries the log holds, which the start-up aligns; Log Matching makes it
            # the snapshot's previous entry)
            return False
        self._after_install(False, retained=True)
        self._retain_reply = self._retain_commit = last[0]
        _log.info("snapshot_install_skipped", index=last[0], term=last[1],
                  last_log_index=self._SyncObj__raftLog[-1][1],
                  reason="this node's log holds the snapshot's last entry")
        return True

    def _after_install(self, loaded: bool, retained: bool = False) -> None:
        """A leader's snapshot was renamed over the dump and loaded (``loaded``) or not.

        pysyncobj swallows a failed load ("failed to load full dump": an unreadable or
        inconsistent file, an I/O error) and then acknowledges success anyway, with this node's
        own last log index — an unverified tail, which the leader would count toward commits
        this node does not hold (found by a code audit, 2026-12-03). The file also stays as the
        dump while the log is this node's own, so a restart would clear the log or refuse to
        start. Here a failed load puts the previous dump back (or removes the refused one when
        there was none) and the reply carries no success: the leader's view of this follower
        does not move, and it sends the snapshot again from the start."""
        dump = self._SyncObj__conf.fullDumpFile
        keep, self._dump_before_install = self._dump_before_install, None
        if loaded:
            if keep:
                with contextlib.suppress(OSError):
                    os.unlink(keep)
            return
        self._install_failed = not retained
        try:
            if keep:
                os.replace(keep, dump)
            elif keep == "" and dump:
                os.unlink(dump)
            if dump:
                _fsync_dir(dump)
        except OSError as e:
            _log.error("snapshot_dump_not_restored", path=dump, error=repr(e))
        if retained:
            return
        _log.error("snapshot_install_failed", leader=getattr(self._SyncObj__raftLeader, "id", None),
                   hint="the leader's snapshot could not be loaded (see 'failed to load full "
                        "dump'); this node keeps its log and the leader sends it again")

    # -- override 18: a snapshot transfer never spans two connections --
    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        """A member's connection is gone (closed, reset, timed out, or replaced by a new one).
        What it had in flight is lost, and pysyncobj reconnects within one tick: a snapshot
        transfer resumed on the new connection after the chunks lost on the old one, and the
        follower assembled a file with a hole in it (found by a code audit, 2026-12-03). Here
        the leader starts that member's transfer again from the first chunk, and a follower
        receiving from that member drops every chunk until a first one."""
        self._SyncObj__connectedNodes.discard(node)  # what pysyncobj does
        serializer = getattr(self, "_SyncObj__serializer", None)
        if serializer is not None:
            serializer.cancelTransmisstion(node)
        incoming = self._incoming_snapshot
        if incoming is not None and incoming[0] == getattr(node, "id", None):
            self._incoming_snapshot = None

    # -- override 21: a removed member leaves nothing behind --
    def _SyncObj__doChangeCluster(self, request: Any, reverse: bool = False) -> bool:  # noqa: N802
        """pysyncobj's membership change (``request`` = ``[kind, node id, node?]``, undone with
        ``reverse``); when it removed a member, that member's snapshot transfer (either way) and
        per-member state are forgotten too (its connection went without the callback of
        :meth:`_SyncObj__onNodeDisconnected`). Returns what pysyncobj returns: whether the
        configuration changed."""
        before = set(self._SyncObj__otherNodes)
        kept: set[Any] = getattr(self._SyncObj__transport, "kept_leaders", set())
        with self._leader_link_kept():
            changed = bool(SyncObj._SyncObj__doChangeCluster(self, request, reverse))
        for node in before - set(self._SyncObj__otherNodes) if changed else ():
            self._SyncObj__lastResponseTime.pop(node, None)
            if node not in kept:
                self._forget_member(node)
        return changed

    def _forget_member(self, node: Any) -> None:
        """Override 21: what the engine and this module kept of a removed member's link (its
        connection went without the callback of :meth:`_SyncObj__onNodeDisconnected`)."""
        self._SyncObj__onNodeDisconnected(node)
        self.last_contact.pop(str(getattr(node, "id", "")), None)

    # -- override 24: a follower keeps following a leader its log removed --
    def _SyncObj__updateClusterConfiguration(self, newNodes: Any) -> None:  # noqa: N802, N803
        """pysyncobj's configuration from an installed snapshot (``newNodes``: the members
        but this node); a leader left out of it (the snapshot was taken while it was removed)
        keeps its link (override 24)."""
        with self._leader_link_kept():
            SyncObj._SyncObj__updateClusterConfiguration(self, newNodes)

    @contextlib.contextmanager
    def _leader_link_kept(self) -> Iterator[None]:
        """Within it, a follower's transport keeps (does not drop) the link to its leader."""
        transport = self._SyncObj__transport
        leader = self._SyncObj__raftLeader
        if not hasattr(transport, "keep_on_drop") or leader is None or self._isLeader():
            yield
            return
        kept_before = set(transport.kept_leaders)
        transport.keep_on_drop = leader
        try:
            yield
        finally:
            transport.keep_on_drop = None
        if leader in transport.kept_leaders - kept_before:
            _log.info("raft_leader_link_kept", member=str(getattr(leader, "id", "")),
                      reason="its removal, replayed: kept until it is added back or stops "
                             "leading")

    def _release_kept_leaders(self) -> None:
        """Drop the link of each member kept by override 24 that is neither back in the
        configuration nor this node's leader any more (as its removal would have). Tick thread.

        A member catching up from the start of the log applies every membership change as it
        appends it (Raft §4.1), including the removal of its current leader when that leader was
        once removed and added back. pysyncobj dropped the leader's connection there, and when
        the batch ended before the entry adding it back, the follower refused every
        reconnection from it ("unknown member") and never caught up. Raft has a follower accept
        AppendEntries from any current leader; its configuration is not a list of whom it may
        hear from."""
        transport = self._SyncObj__transport
        kept: set[Any] = getattr(transport, "kept_leaders", set())
        if not kept:
            return
        leader = None if self._isLeader() else self._SyncObj__raftLeader
        for node in list(kept):
            if node in self._SyncObj__otherNodes:
                kept.discard(node)
            elif node != leader:
                kept.discard(node)
                transport.dropNode(node)
                self._forget_member(node)
                _log.info("raft_leader_link_dropped", member=str(getattr(node, "id", "")))

    # -- override 5: a follower receiving a snapshot still answers its leader --
    def _snapshot_chunk_received(self, node: Any) -> None:
        """A chunk of the leader's snapshot arrived (not the last one). pysyncobj answers only
        once the whole file is in, so a leader whose quorum needs this follower (a one-member
        cluster growing to two: a restored backup) hears nothing while a large snapshot streams,
        steps down after ``leaderFallbackTimeout`` (CheckQuorum), and the transfer restarts in
        the next term, for ever. A keep-alive answer (``next_node_idx`` with neither success nor
        reset: the leader only refreshes the follower's last response time), at most every
        :data:`SNAPSHOT_KEEPALIVE_S`, tells it this follower is alive and follows it in this term.
        """
        now = engine_clock()
        if now - self._snapshot_keepalive_at < SNAPSHOT_KEEPALIVE_S:
            return
        self._snapshot_keepalive_at = now
        self._SyncObj__transport.send(node, {
            "type": "next_node_idx", "next_node_idx": self._SyncObj__raftLog[-1][1] + 1,
            "reset": False, "success": False})

    def _SyncObj__sendNextNodeIdx(  # noqa: N802 - pysyncobj's name
        self, node: Any, reset: bool = False, nextNodeIdx: int | None = None,  # noqa: N803
        success: bool = False,
    ) -> None:
        if self._install_failed:  # override 17: the install just failed; no success for it
            self._install_failed = False
            if success:
                self._SyncObj__transport.send(node, {
                    "type": "next_node_idx", "next_node_idx": self._SyncObj__raftLog[-1][1] + 1,
                    "reset": False, "success": False})
                return
        if self._retain_reply is not None:  # override 19: verified up to the snapshot's entry
            retained, self._retain_reply = self._retain_reply, None
            if success:
                nextNodeIdx = retained + 1
        if success:
            self._reject_floor = None
        elif reset:
            hint = nextNodeIdx if nextNodeIdx is not None else self._SyncObj__raftLog[-1][1] + 1
            if self._conflict_hint is not None:
                hint = min(hint, self._conflict_hint)
            term = self._SyncObj__raftCurrentTerm
            floor = self._reject_floor
            if floor is not None and floor[0] == node and floor[1] == term:
                hint = min(hint, floor[2])
            self._reject_floor = (node, term, hint)
            nextNodeIdx = hint
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset, nextNodeIdx, success)

    # -- override 3: snapshot provenance --
    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802, N803
        if clearJournal and self._log_holds_received_snapshot():
            return
        self.loading_from_leader = bool(clearJournal)
        commit_before = self._SyncObj__raftCommitIndex
        applied_before = self._SyncObj__raftLastApplied
        if clearJournal:
            # A leader's snapshot may be older than what this node had committed (snapshots lag
            # the commit index); the entries after it come from the leader's log next. pysyncobj
            # would "clamp" the commit index with a warning about entries lost on a crash —
            # nothing is lost: after the install the commit index is the snapshot's index.
            self._SyncObj__raftCommitIndex = 0
        self._dump_loaded = False
        try:
            SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        finally:
            self.loading_from_leader = False
            if clearJournal:
                self._after_install(self._dump_loaded)
            if clearJournal and self._dump_loaded and len(self._SyncObj__raftLog) < 2:
                # The log was cleared but the snapshot's two entries did not fit (pysyncobj logs
                # "failed to load full dump"): this node has no usable log. Silence it and stop;
                # at the next start it loads the (complete) snapshot file again.
                journal = self._SyncObj__raftLog
                if getattr(journal, "failed", "absent") is None:
                    journal.failed = OSError("the Raft log could not be rebuilt from a snapshot")
                _log.critical("snapshot_install_left_no_log")
            elif clearJournal:
                installed = self._SyncObj__raftLastApplied != applied_before
                target = self._SyncObj__raftLog[-1][1] if installed else commit_before
                self._SyncObj__raftCommitIndex = target
                self._SyncObj__raftLog.setRaftCommitIndex(target)
                if installed:
                    _log.info("snapshot_installed_from_leader", index=target,
                              previous_commit_index=commit_before)

    # -- override 4: strict membership changes (leader, tick thread) --
    def _SyncObj__changeCluster(self, request: Any) -> bool:  # noqa: N802
        refusal = self._reconfig_refusal(request)
        self.change_refusal = refusal
        if refusal:
            return False
        return bool(SyncObj._SyncObj__changeCluster(self, request))

    # -- override 9: append_entries deferred to the end of the tick's command drain --
    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 - pysyncobj's names
        self._wake_pending = False  # override 26: before this tick drains anything
        self._pre_vote_gate()  # override 12: before the engine's election check
        self._defer_appends = True
        try:
            SyncObj._onTick(self, timeToWait)
        finally:
            self._send_deferred_appends()
        self._release_kept_leaders()  # override 24

    def _SyncObj__sendAppendEntries(self) -> None:  # noqa: N802 - pysyncobj's name
        if self._defer_appends:
            self._appends_deferred = True
            return
        SyncObj._SyncObj__sendAppendEntries(self)

    def _send_deferred_appends(self) -> None:
        """Stop deferring; send the append_entries round deferred since the tick began, once
        (only a leader sends them: a node that stepped down meanwhile sends nothing)."""
        self._defer_appends = False
        if self._appends_deferred:
            self._appends_deferred = False
            if self._isLeader():
                SyncObj._SyncObj__sendAppendEntries(self)

    # -- override 12: PreVote (Raft thesis §9.6) --
    def _pre_vote_gate(self) -> None:
        """Tick thread, before the engine's tick: when the election timeout has passed, run a
        pre-vote round instead of letting the engine campaign, unless a round just won (then
        the engine campaigns this tick) or a leadership transfer asked for the election."""
        others = self._SyncObj__otherNodes
        if (self._SyncObj__selfNode is None or not others or self._isLeader()
                or self._SyncObj__transferInProgress):
            return
        now = engine_clock()
        if getattr(self._SyncObj__transport, "draining", False):  # stopping: never campaigns
            self._SyncObj__raftElectionDeadline = max(
                self._SyncObj__raftElectionDeadline, now + self._SyncObj__conf.raftMinTimeout)
            return
        # Due a little early: the engine reads the clock again before its own check, and a
        # deadline passing in between would let it campaign without a pre-vote.
        if (self._SyncObj__raftElectionDeadline >= now + PRE_VOTE_EARLY_S
                or not self._SyncObj__connectedToAnyone()):
            return  # not due, or the engine would not campaign anyway
        term = self._SyncObj__raftCurrentTerm + 1
        won, self._pre_vote_won = self._pre_vote_won, None
        if (won is not None and won[0] == term
                and now - won[1] < self._SyncObj__conf.raftMinTimeout):
            return  # a majority said yes just now: the engine campaigns for this term
        if self._SyncObj__raftLeader is not None:  # no word from it for an election timeout
            self._SyncObj__raftLeader = None
            self._SyncObj__onLeaderChanged()  # (what the engine does when it campaigns)
        self._pre_vote_term, self._pre_vote_grants = term, set()
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        if self._pre_vote_majority():  # no member known to read pre-votes: campaign as before
            self._SyncObj__raftElectionDeadline = 0
            return
        request = {"type": PRE_VOTE, "term": term,
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        transport = self._SyncObj__transport
        speakers: set[str] = getattr(transport, "pre_vote_peers", set())
        for node in others:
            if node.id in speakers:
                transport.send(node, request)
        _log.info("pre_vote_started", term=term)  # etcd logs each pre-vote it sends, too

    def _pre_vote_majority(self) -> bool:
        """Whether the round in progress has a majority: this member, the members that said
        yes, and the connected members not known to read pre-votes (an older build campaigns
        without asking, so it cannot be asked)."""
        others = self._SyncObj__otherNodes
        transport = self._SyncObj__transport
        speakers: set[str] = getattr(transport, "pre_vote_peers", set())
        heard: set[str] | None = getattr(transport, "heard_peers", None)
        connected = self._SyncObj__connectedNodes
        since = engine_clock() - self._SyncObj__conf.raftMaxTimeout
        votes = 1 + sum(1 for n in others if n.id in self._pre_vote_grants
                        or (n in connected and n.id not in speakers
                            and (heard is None or n.id in heard)
                            and self.last_contact.get(n.id, since) > since))
        return votes > (len(others) + 1) / 2

    def _on_pre_vote(self, node: Any, message: dict[str, Any]) -> None:
        """Answer a pre-vote request; nothing of this member's state changes (§9.6)."""
        current = self._SyncObj__raftCurrentTerm
        term = message.get("term")
        leader = self._SyncObj__raftLeader
        heard = self.last_contact.get(leader.id, float("-inf")) if leader is not None else None
        in_lease = self._isLeader() or (
            heard is not None and engine_clock() - heard < self._SyncObj__conf.raftMinTimeout)
        theirs = (message.get("last_log_term", -1), message.get("last_log_index", -1))
        ours = (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())
        granted = (isinstance(term, int) and term > current and not in_lease
                   and self._SyncObj__selfNode is not None and theirs >= ours)
        self._SyncObj__transport.send(node, {"type": PRE_VOTE_RESPONSE, "term": term,
                                             "granted": bool(granted), "current_term": current})

    def _on_term_notice(self, node: Any, message: dict[str, Any]) -> None:
        """A member of a higher term received this leader's append_entries: step down (Raft
        §5.1; pysyncobj's acknowledgements carry no term, so a stale leader never learnt it and
        a member whose term rose alone could neither follow it nor, under PreVote, campaign)."""
        term = message.get("term")
        if not isinstance(term, int) or term <= self._SyncObj__raftCurrentTerm:
            return
        was_leader = self._isLeader()
        self._adopt_term(term)
        if was_leader:
            _log.info("raft_stepped_down", term=term, member=getattr(node, "id", None),
                      reason="a member has a higher term")

    def transferLeadership(self, node: Any = None, callback: Any = None) -> None:  # noqa: N802
        """pysyncobj's (tick thread), with the target (``node``: a ``Node``, ``"host:port"`` or
        None for "pick one") limited to followers heard from within the minimum election
        timeout (override 25): a picked target is the most caught-up
        such follower, the freshest on a tie; a named one not heard from is refused
        (``FAIL_REASON.REQUEST_DENIED``, as pysyncobj refuses one that is behind). Once it sent
        ``timeout_now`` (it then reports SUCCESS at once), this leader appends no new command for
        an election timeout: see :attr:`transfer_hold_until`."""
        def done(result: Any, err: int) -> None:
            if err == FAIL_REASON.SUCCESS:
                self.transfer_hold_until = (
                    engine_clock() + self._SyncObj__conf.raftMaxTimeout)
            if callback is not None:
                callback(result, err)

        self.transfer_refusal = ""
        if self._isLeader():
            heard = self._answering_followers()
            window_ms = self._SyncObj__conf.raftMinTimeout * 1000
            if node is None:
                if not heard:
                    self.transfer_refusal = (f"no follower answered in the last {window_ms:.0f} "
                                             "ms: they are stopped, frozen or cut off")
                    done(None, FAIL_REASON.REQUEST_DENIED)
                    return
                match = self._SyncObj__raftMatchIndex
                node = max(heard, key=lambda n: (match.get(n, 0),
                                                 self.last_contact.get(n.id, 0.0)))
            else:
                target = str(getattr(node, "id", node))
                if (target in {n.id for n in self._SyncObj__otherNodes}
                        and target not in {n.id for n in heard}):
                    last = self.last_contact.get(target)
                    since = (f"for {(engine_clock() - last) * 1000:.0f} ms" if last is not None
                             else "since this node leads")
                    self.transfer_refusal = (f"{target} has not answered {since}: it is "
                                             "stopped, frozen or cut off")
                    done(None, FAIL_REASON.REQUEST_DENIED)
                    return
        SyncObj.transferLeadership(self, node, done)

    def _answered_recently(self, node: Any) -> bool:
        """Whether this node heard from ``node`` within the minimum election timeout
        (``raftMinTimeout``, s; followers answer every append_entries, heartbeats included):
        what overrides 3 and 25 call reachable. pysyncobj's ``lastResponseTime`` is reset to
        "now" for every member when a node becomes leader, so :attr:`last_contact` is used."""
        since = engine_clock() - self._SyncObj__conf.raftMinTimeout
        return self.last_contact.get(node.id, 0.0) > since

    def _answering_followers(self) -> list[Any]:
        """The connected followers that :meth:`_answered_recently`."""
        connected = self._SyncObj__connectedNodes
        return [n for n in self._SyncObj__otherNodes
                if n in connected and self._answered_recently(n)]

    def _adopt_term(self, term: int) -> None:
        """Raft §5.1: a member answered with a higher term; take it (no vote) and follow."""
        self._SyncObj__setCurrentTerm(term, None)
        self._SyncObj__setState(_syncobj_module._RAFT_STATE.FOLLOWER)
        self._SyncObj__raftLeader = None
        self._pre_vote_term = self._pre_vote_won = None

    def _SyncObj__setState(self, newState: int) -> None:  # noqa: N802, N803 - pysyncobj's
        """A leader that steps down starts a fresh election timeout, as every follower does
        (etcd's ``becomeFollower``). pysyncobj leaves the one from before its term as leader,
        long past, so a leader deposed by a transfer target it would not vote for (its log had
        moved on under load) asked for votes at once and took leadership back, several terms in
        a row (found by a new-user trial)."""
        leader = _syncobj_module._RAFT_STATE.LEADER
        if self._SyncObj__raftState == leader and newState != leader:
            self._SyncObj__raftElectionDeadline = (
                engine_clock() + self._SyncObj__generateRaftTimeout())
            # Override 15: a transfer in progress ends with this term (its file is closed); as
            # leader again this node starts every snapshot from its first chunk.
            for node in (*self._SyncObj__otherNodes, *self._SyncObj__readonlyNodes):
                self._SyncObj__serializer.cancelTransmisstion(node)
        SyncObj._SyncObj__setState(self, newState)

    def _on_pre_vote_response(self, node: Any, message: dict[str, Any]) -> None:
        current = self._SyncObj__raftCurrentTerm
        theirs = message.get("current_term")
        if self._isLeader():
            return
        if isinstance(theirs, int) and theirs > current:  # §5.1: a higher term, adopted
            self._adopt_term(theirs)
            return
        term = self._pre_vote_term
        if term is None or message.get("term") != term or term != current + 1:
            return  # an answer to an older round
        if message.get("granted"):
            self._pre_vote_grants.add(node.id)
            if self._pre_vote_majority():
                self._pre_vote_term = None
                self._pre_vote_won = (term, engine_clock())
                self._SyncObj__raftElectionDeadline = 0
                _log.info("pre_vote_won", term=term, granted_by=sorted(self._pre_vote_grants))

    # -- override 6: a leader whose Raft log is out of space (gantry.diskspace) --
    def _checkCommandsToApply(self) -> None:  # noqa: N802 - pysyncobj's name
        """pysyncobj pops each queued command and appends it; when the append raises, the
        command (and its callback) would be lost, a membership change would stay applied in
        memory without its entry, and the rest of the tick would be skipped. Here a leader whose
        journal is out of space refuses every queued command with :data:`FAIL_DISK_FULL`
        (forwarded ones answered to their follower) until a probe finds room again; the command
        whose append failed is undone (membership) and kept for :meth:`take_refused`."""
        journal = self._SyncObj__raftLog
        self._defer_appends = True  # override 9 (already set when called from _onTick)
        transport = self._SyncObj__transport
        batching = isinstance(transport, DurableTransport)
        if batching:
            transport.begin_batch()  # override 10
        try:
            if self._isLeader() and getattr(journal, "full", False) and not journal.probe_space():
                self._refuse_queued()
                return
            if self._isLeader() and engine_clock() < self.transfer_hold_until:
                # Override 12: a leadership transfer is under way. A command appended now would
                # put the target behind this log, this leader would refuse it its vote, and the
                # election would fail (under load: several terms in a row, leadership moving
                # back and forth). The queue waits; once this node is a follower its queued
                # commands go to the new leader, as pysyncobj forwards a follower's.
                return
            SyncObj._checkCommandsToApply(self)
        except DiskFull as e:
            if is_membership_entry(e.command):
                request = self._SyncObj__parseChangeClusterRequest(e.command)
                self._SyncObj__doChangeCluster(request, reverse=True)
            self._refused.append(e.command)
            self._refuse_queued()
        finally:
            self._send_deferred_appends()  # override 9: every command drained, one round
            if batching:
                transport.end_batch()  # override 10: one message a member

    def _refuse_queued(self) -> None:
        queue = self._SyncObj__commandsQueue
        while True:
            try:
                _command, callback = queue.get_nowait()
            except Exception:  # noqa: BLE001 - pysyncobj's queue.Empty
                return
            self._SyncObj__callErrCallback(FAIL_DISK_FULL, callback)

    def _SyncObj__onBecomeLeader(self) -> None:  # noqa: N802
        """A new leader appends its no-op; when that does not fit, pysyncobj would be left a
        leader without one (Raft §8: it must not serve, and pysyncobj's membership check then
        compares with None). Step down instead; the election is retried later."""
        try:
            SyncObj._SyncObj__onBecomeLeader(self)
        except DiskFull:
            self._SyncObj__setState(_syncobj_module._RAFT_STATE.FOLLOWER)
            self._SyncObj__raftLeader = None
            _log.warning("raft_leadership_declined", reason="no space for the new term's no-op")

    def take_refused(self) -> list[bytes]:
        """The command bytes of proposals refused since the last call because their append did
        not fit (tick thread)."""
        out, self._refused = self._refused, []
        return out

    def _reconfig_refusal(self, request: Any) -> str:
        """"" when the membership change ``request`` (pysyncobj's ``('add'|'rem', node id, …)``)
        keeps an up-to-date quorum, otherwise why not."""
        kind, node_id = request[0], request[1]
        others = {n.id: n for n in self._SyncObj__otherNodes}
        self_id = self._SyncObj__selfNode.id
        match = self._SyncObj__raftMatchIndex
        commit: int = self._SyncObj__raftCommitIndex

        def caught_up(node: Any) -> bool:
            # Answered within the minimum election timeout (with the maximum, 1.4 s, a member
            # frozen a second earlier still counted, a removal that needed it was accepted, and
            # the new configuration lost its leader until the frozen member resumed: a new-user
            # trial, 2026-12-08), and has confirmed entries to this leader.
            return bool(match.get(node, 0) >= max(1, commit - RECONFIG_MAX_LAG)
                        and self._answered_recently(node))

        if kind == "add":
            if node_id in others or node_id == self_id:
                return ""  # pysyncobj refuses it itself ("already a member")
            new_size = len(others) + 2
            if new_size == 2:
                return ""  # a one-member cluster grows (etcd allows this case too)
            up = 1 + sum(1 for n in others.values() if caught_up(n))
        elif kind == "rem":
            if node_id not in others:
                return ""
            new_size = len(others)
            up = 1 + sum(1 for i, n in others.items() if i != node_id and caught_up(n))
        else:
            return ""
        quorum = new_size // 2 + 1
        if up < quorum:
            return (f"the new configuration of {new_size} members needs {quorum} caught-up members "
                    f"but only {up} {'is' if up == 1 else 'are'} reachable (answered in the last "
                    f"{self._SyncObj__conf.raftMinTimeout * 1000:.0f} ms) and caught up")
        return ""

    # -- read-only accessors for the Raft actor (tick thread) --
    def is_leader(self) -> bool:
        """Whether this node is the leader (pysyncobj's ``_isLeader``)."""
        return bool(self._isLeader())

    def leader_node(self) -> Any:
        """The node this node takes for the leader (pysyncobj's ``_getLeader``), or None."""
        return self._getLeader()

    def reachable_members(self, within_s: float) -> list[str]:
        """Raft addresses of the other members this node can reach: TCP-connected, and — for the
        leader's view of every member and a follower's view of its leader — heard from within
        ``within_s`` seconds (a partition that drops packets keeps the TCP connection "up" for a
        long time). Followers do not talk to each other, so between followers TCP is all there is.
        """
        now = engine_clock()
        leader = self._getLeader()
        leading = self._isLeader()
        out = []
        for n in list(self._SyncObj__otherNodes):
            if not self.isNodeConnected(n):
                continue
            if (leading or n == leader) and now - self.last_contact.get(n.id, 0.0) > within_s:
                continue
            out.append(n.id)
        return sorted(out)

    def leader_commit_index(self) -> int:
        """The commit index the leader last announced to this node (0 before any message), or
        this node's own commit index when it leads."""
        if self._isLeader():
            return int(self._SyncObj__raftCommitIndex)
        value = self._SyncObj__leaderCommitIndex
        return int(value) if value is not None else 0

    def last_log_index(self) -> int:
        """The index of the last entry in this node's Raft log (committed or not)."""
        return int(self._SyncObj__raftLog[-1][1])

    def term_at(self, index: int) -> int:
        """The term of the entry at log ``index`` (0 when it is no longer in the log)."""
        entry = self._entry_at(index)
        return int(entry[2]) if entry is not None else 0

    def log_holds_snapshot(self, meta_json: str) -> bool:
        """Whether this node's Raft log still holds the last two entries of the snapshot whose
        metadata is ``meta_json`` (:func:`gantry.state.snapshot.encode_meta`), index and term:
        pysyncobj compacts its log to the earlier of them when the snapshot succeeds."""
        positions = _snapshot_positions(meta_json)
        return positions is not None and all(
            (e := self._entry_at(idx)) is not None and int(e[2]) == term for idx, term in positions)

    def cancel_snapshot_transfers(self) -> None:
        """Forget every snapshot transfer in progress (a leader whose snapshot just succeeded):
        each follower still behind gets the new file, from its first chunk."""
        for node in (*self._SyncObj__otherNodes, *self._SyncObj__readonlyNodes):
            self._SyncObj__serializer.cancelTransmisstion(node)

    def _held_entry(self, index: int) -> tuple[bytes, int, int] | None:
        """The log entry ``(command, log index, term)`` at ``index``, or None when this log does
        not hold it (compacted into the snapshot, or past the end). Tick thread."""
        entries = self._SyncObj__getEntries(index, 1)
        if not entries or entries[0][1] != index:
            return None
        return bytes(entries[0][0]), int(entries[0][1]), int(entries[0][2])

    def entry_at(self, index: int) -> tuple[int, str] | None:
        """``(term, entry_digest)`` of the log entry at ``index``, or None when this log does not
        hold it (compacted into the snapshot, or past the end) or it is a no-op: every no-op's
        bytes are the same, so its digest cannot tell two histories apart. Tick thread."""
        entry = self._held_entry(index)
        if entry is None or entry[0] == _NO_OP:
            return None
        return entry[2], entry_digest(entry[0])

    def noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        """Whether this log holds a no-op at each ``(log index, term)`` of ``pairs`` (False when
        it does not hold an index: compacted, or past the end). Tick thread."""
        return all(self._held_entry(i) == (_NO_OP, i, t) for i, t in pairs)

    def noop_index(self) -> int:
        """The log index of the no-op this node appended when it last became leader (0: none)."""
        return int(self._SyncObj__noopIDx or 0)

    def transport(self) -> Any:
        """pysyncobj's transport instance (a :class:`DurableTransport`)."""
        return self._SyncObj__transport

    # -- override 7: what ReadRounds reads of the engine (gantry.consensus.readindex.Engine) --
    def current_term(self) -> int:
        """This node's current term."""
        return int(self._SyncObj__raftCurrentTerm)

    def commit_index(self) -> int:
        """This node's commit index (a log index)."""
        return int(self._SyncObj__raftCommitIndex)

    def noop_committed(self) -> bool:
        """Whether this node leads and has committed the no-op it appended for its term."""
        noop = self._SyncObj__noopIDx
        return bool(self._isLeader() and noop and self._SyncObj__raftCommitIndex >= noop)

    def voter_ids(self) -> frozenset[str]:
        """The Raft addresses of the other voting members (pysyncobj's read-only nodes, which do
        not vote, excluded)."""
        return frozenset(n.id for n in self._SyncObj__otherNodes)

    def leader_id(self) -> str | None:
        """The Raft address of the leader this node knows of (pysyncobj's, may be stale)."""
        leader = self._getLeader()
        return None if leader is None else str(leader.id)

    def send_to(self, node_id: str, message: dict[str, Any]) -> bool:
        """Send ``message`` to the member (voting or not) at ``node_id``; False when it is not a
        member or not connected."""
        for n in (*self._SyncObj__otherNodes, *self._SyncObj__readonlyNodes):
            if n.id == node_id:
                return bool(self._SyncObj__transport.send(n, message))
        return False

    def heartbeat_now(self) -> None:
        """Send append_entries to every member now (a ReadIndex round), not at the next period."""
        self._SyncObj__sendAppendEntries()

    def pipe_notifier(self) -> Any:
        """pysyncobj's poller wake-up pipe (present when append batching is off), or None."""
        return getattr(self, "_SyncObj__pipeNotifier", None)

    # -- override 8: proposals pickled once, with protocol 5 (any thread) --
    def propose_call(self, method: str, data: bytes, callback: Any) -> None:
        """Propose a call of the ``@replicated`` method ``method`` with ``data`` (bytes) as its
        one argument, as ``self.method(data, callback=callback)`` would, but pickled with
        protocol 5 (override 8). Thread-safe: it only puts the command in pysyncobj's locked
        command queue. ``callback(result, err)`` as pysyncobj's (``FAIL_REASON``)."""
        func_id = self._methodToID[self._getFuncName(method)]
        self._applyCommand(pickle.dumps((func_id, (data,)), PICKLE_PROTOCOL), callback,
                           _REGULAR[0])


def align_journal_to_dump(journal: Any, prev: tuple[bytes, int, int],
                          last: tuple[bytes, int, int]) -> int:
    """Before pysyncobj starts: drop the journal entries a snapshot already covers, so the
    journal begins with the snapshot's ``(prev, last)`` entries. Returns how many were dropped.

    Why: on start-up pysyncobj *clears the whole journal* unless its first two entries are the
    snapshot's last two. A crash between writing a snapshot and compacting the log (or a snapshot
    taken while entries kept arriving) leaves a journal that starts earlier and holds entries
    after the snapshot — entries this node may have acknowledged, which Raft requires it to keep
    (§5.3: a follower's acknowledged entries count toward the commit majority). Entries are
    ``(command bytes, log index, term)``; nothing changes when the journal does not hold ``prev``
    followed by ``last`` (then it is older than the snapshot and pysyncobj's reset is right).
    """
    if len(journal) < 2:
        return 0
    first = journal[0][1]
    pos = prev[1] - first
    if pos <= 0 or pos + 1 >= len(journal):
        return 0
    if tuple(journal[pos]) != tuple(prev) or tuple(journal[pos + 1]) != tuple(last):
        return 0
    journal.deleteEntriesTo(pos)
    return pos


# -- the durable journal and transport hooks (see gantry.consensus.journal) --

def transport_for(journal: DurableJournal) -> type[DurableTransport]:
    """A :class:`DurableTransport` subclass bound to ``journal`` (pysyncobj instantiates the
    transport class itself)."""
    return type("BoundDurableTransport", (DurableTransport,), {"journal": journal})


_install_lock = threading.Lock()


@contextlib.contextmanager
def installed(journal: DurableJournal) -> Iterator[None]:
    """Make pysyncobj's ``createJournal`` return ``journal`` while the block runs (wrap only
    ``SyncObj.__init__``, which calls it exactly once)."""
    with _install_lock:
        original = _syncobj_module.createJournal
        _syncobj_module.createJournal = lambda _path=None: journal
        try:
            yield
        finally:
            _syncobj_module.createJournal = original


class DurableTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport, except that an append acknowledgement (``next_node_idx``)
    leaves only after the journal is fsync'd: a follower never acknowledges an entry it could
    lose. It also carries ReadIndex's fields (override 7): the round id on every append_entries
    sent, the echo on every next_node_idx."""

    journal: DurableJournal | None = None
    #: Set while a stopping node hands leadership over: it neither campaigns (outgoing
    #: ``request_vote`` dropped) nor accepts commands forwarded by followers (answered
    #: NOT_LEADER), so a caught-up follower can take over and stay leader.
    draining = False
    _batching = False  # override 10: True while a drain's messages are held

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Override 24: the member whose :meth:`dropNode` is to keep its connection (set by the
        #: engine around one membership change: its leader), and the members so kept. Set
        #: before pysyncobj's ``__init__``, which calls :meth:`addNode` for every peer.
        self.keep_on_drop: Any = None
        self.kept_leaders: set[Any] = set()
        super().__init__(*args, **kwargs)
        self._pending_acks: list[tuple[Any, Any]] = []
        #: Override 10: what is held, by member; the Raft addresses of the members known to read
        #: batches (tick thread only).
        self._outbox: dict[Any, list[Any]] = {}
        self._holds_append: set[Any] = set()  # members whose outbox holds an append_entries
        self.batch_peers: set[str] = set()
        #: Override 12: the Raft addresses of the connected members that read pre-votes, and of
        #: those that sent a Raft message on their current connection.
        self.pre_vote_peers: set[str] = set()
        self.heard_peers: set[str] = set()
        #: Override 14: the Raft addresses of the connected members that send keep-alives;
        #: when the last round of keep-alives went out (engine clock, s).
        self.keepalive_peers: set[str] = set()
        self._last_keepalive = 0.0

    def _onTick(self) -> None:  # noqa: N802 - pysyncobj's name
        """Override 13: a connection attempt unanswered for :data:`CONNECT_TIMEOUT_S` is dropped,
        so the next one (``connectionRetryTime`` later) sends a fresh SYN. pysyncobj checks
        its connection timeout only when the socket has an event, and a connect whose SYNs a
        partition dropped has none: it waited for the kernel's SYN retries (1, 3, 7, 15, 31 s),
        and a member cut off for 30 s came back 5 to 15 s after the partition healed.

        Override 14: keep-alives out every :data:`KEEPALIVE_S`; a member's connection (one that
        says it sends keep-alives) or an unidentified incoming one that read nothing for
        ``connectionTimeout`` is dropped."""
        super()._onTick()
        now = engine_clock()
        idle_s = self._idle_timeout_s()
        for node, conn in list(self._connections.items()):
            quiet = now - conn._TcpConnection__lastReadTime
            if conn.state == CONNECTION_STATE.CONNECTING and quiet > CONNECT_TIMEOUT_S:
                conn.disconnect()
            elif conn.state == _CONNECTED and node.id in self.keepalive_peers and quiet > idle_s:
                _log.info("raft_connection_dropped", member=node.id, reason="silent",
                          silent_s=round(quiet, 1))
                conn.disconnect()
        for conn in list(self._unknownConnections):
            # From its accept, not its last read: a socket trickling a byte at a time must not
            # stay unidentified for ever.
            if now - conn._gantry_accepted > idle_s:
                _log.info("raft_connection_dropped", member=None, reason="unidentified")
                conn.disconnect()
                self._unknownConnections.discard(conn)
        if now - self._last_keepalive >= KEEPALIVE_S:
            self._last_keepalive = now
            if self.journal is None or self.journal.failed is None:
                for node, conn in list(self._connections.items()):
                    # Only to members that send them too: a link to an older build, which
                    # sends none, would read nothing on this side and pysyncobj would drop it
                    # at the next send.
                    if conn.state == _CONNECTED and node.id in self.keepalive_peers:
                        conn.send(_HELLO)

    def _idle_timeout_s(self) -> float:
        """pysyncobj's ``connectionTimeout`` (s): how long a connection may read nothing."""
        conf = getattr(getattr(self, "_syncObj", None), "conf", None)
        return float(getattr(conf, "connectionTimeout", 3.5))

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802, pysyncobj's
        """Override 14: the first message on an incoming connection names the member. Utility
        commands (a list) and read-only nodes (``"readonly"``) are refused and the connection
        closed; a member's new connection replaces (closes) the one it had."""
        encryptor = getattr(getattr(self, "_syncObj", None), "encryptor", None)
        if encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)  # the key exchange comes first
            return
        if isinstance(message, dict) and message.get("type") == PROBE_TYPE:
            self._answer_probe(conn, message)  # override 23
            return
        node = self._nodeAddrToNode.get(message) if isinstance(message, str) else None
        if node is None:
            what = "utility command" if isinstance(message, list) else (
                "read-only node" if message == "readonly" else "unknown member")
            claimed = message if isinstance(message, str) and message != "readonly" else None
            key = f"{what} {claimed}"
            now = engine_clock()
            # At most one line per unknown member's address every REFUSED_LOG_EVERY_S: a
            # removed member left running redials every 100 ms (a new-user trial saw 1,782 lines in
            # 3 minutes, none saying who).
            if claimed is None or (
                    now - _refused_logged.get(key, float("-inf")) >= REFUSED_LOG_EVERY_S):
                if claimed is not None:
                    _refused_logged[key] = now
                fields: dict[str, Any] = {"reason": what, "peer": _peer_host(conn)}
                if isinstance(message, list) and message:
                    fields["command"] = str(message[0])[:32]
                if claimed is not None:
                    fields["member"] = claimed[:64]
                    fields["hint"] = ("a node not in this cluster's configuration: one removed "
                                      "and left running (stop it), or started with the wrong "
                                      "--peers")
                _log.warning("raft_connection_refused", **fields)
            self._unknownConnections.discard(conn)
            conn.disconnect()
            return
        if self._shouldConnect(node):
            # This node connects to that member itself; a connection from it is an impostor's
            # (or a misconfigured peer's). Taking it replaced the real, outgoing connection,
            # and that member stayed cut off until a restart: the outgoing side's object was
            # gone, so no reconnect ever said who it was.
            _log.warning("raft_connection_refused", reason="member connects the other way",
                         member=node.id)
            self._unknownConnections.discard(conn)
            conn.disconnect()
            return
        old = self._connections.get(node)
        if old is not None and old is not conn and old.state != CONNECTION_STATE.DISCONNECTED:
            _log.info("raft_connection_dropped", member=node.id, reason="replaced")
            old.disconnect()
        super()._onIncomingMessageReceived(conn, message)

    def _answer_probe(self, conn: Any, message: dict[str, Any]) -> None:
        """Override 23: say who this node is on ``conn`` (still unidentified: the idle timeout of
        override 14 closes it if the prober does not)."""
        sync = getattr(self, "_syncObj", None)
        me = self._selfNode.address
        members = [me]
        leader = None
        term, last = 0, [0, 0, ""]
        last_command: list[Any] = []
        noop_tail: list[list[int]] = []
        truncated = False
        if sync is not None:
            members += [n.address for n in sync._SyncObj__otherNodes]
            lead = sync._getLeader()
            leader = getattr(lead, "address", None)
            term = int(sync._SyncObj__raftCurrentTerm)
            log = sync._SyncObj__raftLog
            if len(log):
                command, index, entry_term = log[-1]
                last = [int(index), int(entry_term), entry_digest(command)]
                last_command, noop_tail, truncated = _command_before_noops(log)
        _log.info("raft_probe_answered", prober=str(message.get("from"))[:64], leader=leader,
                  term=term, last_log_index=last[0])
        conn.send({"type": PROBE_REPLY_TYPE, "raft_addr": me, "members": sorted(members),
                   "leader": leader, "term": term, "last": last,
                   "last_command": last_command, "noop_tail": noop_tail,
                   "noop_tail_truncated": truncated})

    def _onNodeConnected(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        super()._onNodeConnected(node)
        # Override 12: say what this build reads (an older one ignores a message type it does
        # not know). On the connecting side the connection is still CONNECTING here, which
        # ``send`` refuses; pysyncobj sends its own address the same way, on the connection.
        conn = self._connections.get(node)
        if conn is not None:
            conn.send(_HELLO)

    def begin_batch(self) -> None:
        """Hold messages for members that read batches until :meth:`end_batch` (override 10)."""
        self._batching = True

    def end_batch(self) -> None:
        """Send what was held: one message a member (the message itself when it is alone)."""
        self._batching = False
        for node in list(self._outbox):
            self._flush(node)

    def _flush(self, node: Any) -> None:
        messages = self._outbox.pop(node, [])
        self._holds_append.discard(node)
        if not messages or (self.journal is not None and self.journal.failed is not None):
            return  # an fsync or a term/vote write failed meanwhile: stay silent (as send)
        if len(messages) == 1:
            super().send(node, messages[0])
        else:
            super().send(node, {"type": BATCH_TYPE, "messages": messages})

    def _hold(self, node: Any, kind: Any, message: Any) -> bool:
        """Hold ``message`` for ``node`` until the drain ends; False when it must travel alone
        (then what is held is sent first, to keep the order). A chunk of a large entry or of a
        snapshot (``transmission`` / ``serialized``) travels alone: each is up to 64 KiB, and
        pysyncobj 0.3.17 marks some chunks of a large entry "finish" too early, so a follower
        without override 11 (an older build) raises on them, which must not take a batch's
        later messages with it. At most one append_entries is held per
        member: a second one (a catch-up loop, up to 64 KiB each) first sends what is held, so
        a batch never grows past one append_entries and the small messages before it."""
        if kind == "append_entries":
            if "transmission" in message or "serialized" in message:
                self._flush(node)
                return False
            if node in self._holds_append:
                self._flush(node)
            self._holds_append.add(node)
        self._outbox.setdefault(node, []).append(message)
        return True

    # override 8: every connection, outgoing or accepted, sends with encode_message
    def addNode(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        """A member added to the cluster (also each peer, from pysyncobj's ``__init__``); one
        this transport kept (override 24) keeps the connection it has (pysyncobj would open a
        second one and orphan the first)."""
        if node in self.kept_leaders:
            self.kept_leaders.discard(node)
            return
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None:
            use_encoded_send(conn)
            use_bounded_read(conn, lambda: False)  # override 14: a member, once connected
            use_logged_parse(conn, str(node.id))  # override 22

    def _onNewIncomingConnection(self, conn: Any) -> None:  # noqa: N802 - pysyncobj's name
        use_encoded_send(conn)
        conn._gantry_accepted = engine_clock()  # override 14
        use_bounded_read(conn, lambda: conn in self._unknownConnections)
        host = _peer_host(conn).rpartition(":")[0]
        # Not the port: a member redials from a new one each time.
        peer = f"incoming {host}" if host else "incoming"
        use_logged_parse(conn, peer)  # override 22
        super()._onNewIncomingConnection(conn)

    def send(self, node: Any, message: Any) -> bool:
        if self.journal is not None and self.journal.failed is not None:
            return False  # an fsync or a term/vote write failed: this node must stay silent
        kind = message.get("type") if isinstance(message, dict) else None
        if kind is not None:
            reads = getattr(getattr(self, "_syncObj", None), "reads", None)
            if reads is not None:  # override 7: stamp the round / echo the last one seen
                if kind == "append_entries":
                    message = reads.stamp(message)
                elif kind == "next_node_idx":
                    message = reads.echo(node.id, message)
            if kind in ("append_entries", "next_node_idx"):
                message = {**message, BATCH_KEY: 1}  # override 10: this build reads batches
            if kind == "next_node_idx" and self.journal is not None:
                # Group commit on followers: acknowledgements wait for the end of this tick,
                # when one fsync covers every append that arrived in the same poll.
                self._pending_acks.append((node, message))
                return True
            if kind == "request_vote" and self.draining:
                return True
        if (self._batching and node.id in self.batch_peers and self._connected(node)
                and self._hold(node, kind, message)):  # override 10
            return True
        return bool(super().send(node, message))

    def _connected(self, node: Any) -> bool:
        """Whether the connection to ``node`` is up (what ``TCPTransport.send`` checks)."""
        conn = self._connections.get(node)
        return conn is not None and conn.state == _CONNECTED

    def _onDisconnected(self, conn: Any) -> None:  # noqa: N802 - pysyncobj's name
        node = self._connToNode(conn)
        if node is not None:  # it may come back as another build: not known to read batches
            self._forget(node)
        super()._onDisconnected(conn)

    def dropNode(self, node: Any) -> None:  # noqa: N802 - pysyncobj's name
        """A member removed from the cluster (override 21): pysyncobj pops its connection
        before closing it, so :meth:`_onDisconnected` does not see whose it was. Override 24:
        :attr:`keep_on_drop` is kept instead (in :attr:`kept_leaders`), connection and all."""
        if node is not None and node == self.keep_on_drop:
            self.kept_leaders.add(node)
            return
        self.kept_leaders.discard(node)
        self._forget(node)
        self._outbox.pop(node, None)
        self._holds_append.discard(node)
        super().dropNode(node)

    def _forget(self, node: Any) -> None:
        """What this transport learnt of ``node`` on its connection: its build's features."""
        self.batch_peers.discard(node.id)
        self.pre_vote_peers.discard(node.id)
        self.heard_peers.discard(node.id)
        self.keepalive_peers.discard(node.id)

    def flush_acks(self) -> None:
        """fsync the journal, then send the acknowledgements held back since the last flush.
        Called once per tick (from the Raft tick thread, which also calls ``send``)."""
        if not self._pending_acks:
            return
        if self.journal is not None:
            self.journal.sync()
        acks, self._pending_acks = self._pending_acks, []
        for node, message in acks:
            super().send(node, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 - pysyncobj's
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == HELLO_TYPE:  # override 12: not for the engine
                features = message.get("features") or ()
                if FEATURE_PRE_VOTE in features:
                    self.pre_vote_peers.add(node.id)
                if FEATURE_KEEPALIVE in features:  # override 14
                    self.keepalive_peers.add(node.id)
                return
            self.heard_peers.add(node.id)
            if kind == BATCH_TYPE:  # override 10: each message in order, as if sent alone
                self.batch_peers.add(node.id)
                for inner in message.get("messages", ()):
                    self._onMessageReceived(node, inner)
                return
            if kind in ("append_entries", "next_node_idx"):
                if BATCH_KEY in message:
                    self.batch_peers.add(node.id)
                else:
                    self.batch_peers.discard(node.id)
        if self.draining and isinstance(message, dict) and message.get("type") == "apply_command":
            if "request_id" in message:
                super().send(node, {"type": "apply_command_response",
                                    "request_id": message["request_id"],
                                    "error": FAIL_REASON.NOT_LEADER})
            return
        super()._onMessageReceived(node, message)
