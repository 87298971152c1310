"""Typed consensus errors: why the log could not take (or could not confirm) an entry.

Purpose: the consensus layer reports a failed proposal, read index or membership change with one
of the classes below, never with an engine code or a string; the API turns each class into a
status through one table (:data:`gantry.api.errors.STATUSES`). Like hashicorp/raft's
``ErrNotLeader`` / ``ErrLeadershipLost`` and rqlite's sentinel errors, the class says what a client
may do next:

- :class:`NoLeader`: no reachable leader; nothing was proposed.
- :class:`NotCommitted` (:class:`NotLeader`, :class:`Discarded`, :class:`Overloaded`,
  :class:`RequestDenied`, :class:`NoSpace`): the entry was never applied; a retry is always safe.
- :class:`OutcomeUnknown` (:class:`LeaderChanged`): the entry may or may not commit; retry with the
  same request id (the state machine deduplicates).
- :class:`Stopping`: this node is shutting down; a write in flight may still commit elsewhere.

Invariants: pysyncobj's ``FAIL_REASON`` codes are read here and nowhere else
(:func:`from_fail_reason`, :func:`membership_failure`; every code has a class, an unknown one is
:class:`OutcomeUnknown`). ``reason`` is the ``google.rpc.ErrorInfo`` reason clients see: stable API
(the engine's names, kept from before these classes existed). ``leader_hint`` is the leader's Raft
address as this node knew it when the error was raised, or None.

Raised by the Raft actor (``actors/raft.py``: engine callbacks, a leader change, stop) and by the
node (``gantry/node.py``: stopping, no leader); the API only catches them.
"""

from __future__ import annotations

from collections.abc import Callable

from pysyncobj import FAIL_REASON


class ConsensusError(Exception):
    """Consensus failed for a proposal, a read index or a membership change.

    ``reason``: the stable ErrorInfo reason (a class attribute; ``reason=`` overrides it for an
    engine code this build does not know). ``leader_hint``: the leader's Raft address, or None.
    ``str(e)`` is the reason.
    """

    reason: str = "UNKNOWN_OUTCOME"

    def __init__(self, leader_hint: str | None = None, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)
        self.leader_hint = leader_hint


class NoLeader(ConsensusError):
    """This node knows no reachable leader (election, partition, still catching up)."""

    reason = "MISSING_LEADER"


class NotCommitted(ConsensusError):
    """The entry was never appended to a committed log: retrying cannot apply it twice."""

    reason = "NOT_COMMITTED"


class NotLeader(NotCommitted):
    """The node the entry was sent to was not the leader; ``leader_hint`` names the one this node
    knows of."""

    reason = "NOT_LEADER"


class Discarded(NotCommitted):
    """A new leader's log replaced the entry before it committed."""

    reason = "DISCARDED"


class Overloaded(NotCommitted):
    """The engine's proposal queue is full."""

    reason = "QUEUE_FULL"


class RequestDenied(NotCommitted):
    """The engine refused the request. For a membership change ``why`` says why (Gantry's strict
    reconfig check, or another change still in progress); empty for a proposal."""

    reason = "REQUEST_DENIED"

    def __init__(self, leader_hint: str | None = None, *, reason: str | None = None,
                 why: str = "") -> None:
        super().__init__(leader_hint, reason=reason)
        self.why = why


class NoSpace(NotCommitted):
    """This node's disk, or its leader's, has no room for the entry (gantry/diskspace.py): it
    was refused before any append, or its append did not fit and left nothing behind."""

    reason = "DISK_FULL"


class OutcomeUnknown(ConsensusError):
    """The entry was in flight when consensus failed: it may still commit (and then applies
    once, deduplicated by request id)."""

    reason = "UNKNOWN_OUTCOME"


class LeaderChanged(OutcomeUnknown):
    """Leadership changed while the entry was in flight; ``leader_hint`` is the new leader."""

    reason = "LEADER_CHANGED"


class Stopping(ConsensusError):
    """This node is shutting down: it takes no proposals and ends the waits in progress."""

    reason = "NODE_STOPPING"


#: The callback error of a command a leader refused because its Raft log is out of space: a
#: FAIL_REASON value of Gantry's own (pysyncobj's are 0–7), passed to pysyncobj callbacks by
#: SafeSyncObj (gantry/consensus/pysyncobj_compat.py, override 6) and sent on to a follower
#: that forwarded the command.
FAIL_DISK_FULL = 100

#: pysyncobj 0.3.17's FAIL_REASON codes (SUCCESS excepted) → the class that reports them.
FAIL_REASONS: dict[int, type[ConsensusError]] = {
    FAIL_REASON.QUEUE_FULL: Overloaded,
    FAIL_REASON.MISSING_LEADER: NoLeader,
    FAIL_REASON.DISCARDED: Discarded,
    FAIL_REASON.NOT_LEADER: NotLeader,
    FAIL_REASON.LEADER_CHANGED: LeaderChanged,
    FAIL_REASON.REQUEST_DENIED: RequestDenied,
    FAIL_REASON.UNKNOWN_OUTCOME: OutcomeUnknown,
    FAIL_DISK_FULL: NoSpace,
}

#: RequestDenied for a membership change with no refusal of Gantry's own: pysyncobj allows one
#: change at a time.
CHANGE_IN_PROGRESS = "another change is in progress"


def from_fail_reason(code: int, leader_hint: str | None = None) -> ConsensusError:
    """The typed error for a pysyncobj FAIL_REASON code other than SUCCESS (an engine callback's
    ``err``). A code this build does not know is :class:`OutcomeUnknown` with the number as its
    reason. Raises ValueError for SUCCESS, which is not an error."""
    if code == FAIL_REASON.SUCCESS:
        raise ValueError("FAIL_REASON.SUCCESS is not an error")
    cls = FAIL_REASONS.get(code)
    if cls is None:
        return OutcomeUnknown(leader_hint, reason=str(code))
    return cls(leader_hint)


def failure(code: int, leader_hint: str | None = None) -> ConsensusError | None:
    """None for FAIL_REASON.SUCCESS, otherwise :func:`from_fail_reason` (an engine callback's
    ``err``, whatever it is)."""
    if code == FAIL_REASON.SUCCESS:
        return None
    return from_fail_reason(code, leader_hint)


def membership_failure(code: int, refusal: Callable[[], str]) -> ConsensusError | None:
    """None when a membership change succeeded (``code`` is pysyncobj's FAIL_REASON), otherwise
    its typed error; a refused change is :class:`RequestDenied` whose ``why`` is ``refusal()``
    (Gantry's strict reconfig check) or :data:`CHANGE_IN_PROGRESS`."""
    if code == FAIL_REASON.SUCCESS:
        return None
    if code == FAIL_REASON.REQUEST_DENIED:
        return RequestDenied(why=refusal() or CHANGE_IN_PROGRESS)
    return from_fail_reason(code)


def transfer_failure(code: int, refusal: Callable[[], str]) -> ConsensusError | None:
    """None when a leadership transfer request was sent (``code`` is pysyncobj's FAIL_REASON),
    otherwise its typed error; a refused one is :class:`RequestDenied` whose ``why`` is
    ``refusal()``: the target (or every follower) does not answer, or "" when pysyncobj refused
    a target that is not caught up (then the request is worth repeating)."""
    if code == FAIL_REASON.REQUEST_DENIED:
        return RequestDenied(why=refusal())
    return failure(code)
