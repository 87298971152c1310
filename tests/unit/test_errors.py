"""The error vocabulary: every pysyncobj FAIL_REASON has a typed consensus error."""

from __future__ import annotations

import pytest
from pysyncobj import FAIL_REASON

from gantry.consensus import errors as ce

LEADER_RAFT = "127.0.0.1:7002"


def fail_reason_names() -> dict[int, str]:
    return {v: k for k, v in vars(FAIL_REASON).items() if k.isupper() and isinstance(v, int)}


# -- consensus errors --

def test_every_fail_reason_maps_to_a_typed_error_with_its_name_as_reason() -> None:
    names = fail_reason_names()
    assert set(names.values()) >= {"SUCCESS", "QUEUE_FULL", "MISSING_LEADER", "DISCARDED",
                                   "NOT_LEADER", "LEADER_CHANGED", "REQUEST_DENIED",
                                   "UNKNOWN_OUTCOME"}
    for code, name in names.items():
        if code == FAIL_REASON.SUCCESS:
            with pytest.raises(ValueError):
                ce.from_fail_reason(code)
            continue
        err = ce.from_fail_reason(code, LEADER_RAFT)
        assert type(err) is ce.FAIL_REASONS[code], name
        assert type(err) is not ce.ConsensusError, name
        assert (err.reason, str(err), err.leader_hint) == (name, name, LEADER_RAFT)
    assert set(ce.FAIL_REASONS) == set(names) - {FAIL_REASON.SUCCESS}


def test_fail_reason_classes() -> None:
    expected = {
        FAIL_REASON.QUEUE_FULL: ce.Overloaded, FAIL_REASON.MISSING_LEADER: ce.NoLeader,
        FAIL_REASON.DISCARDED: ce.Discarded, FAIL_REASON.NOT_LEADER: ce.NotLeader,
        FAIL_REASON.LEADER_CHANGED: ce.LeaderChanged,
        FAIL_REASON.REQUEST_DENIED: ce.RequestDenied,
        FAIL_REASON.UNKNOWN_OUTCOME: ce.OutcomeUnknown,
    }
    assert {c: type(ce.from_fail_reason(c)) for c in expected} == expected
    for cls in (ce.NotLeader, ce.Discarded, ce.Overloaded, ce.RequestDenied):
        assert issubclass(cls, ce.NotCommitted)
    assert issubclass(ce.LeaderChanged, ce.OutcomeUnknown)


def test_an_unknown_engine_code_is_outcome_unknown_with_the_number() -> None:
    err = ce.from_fail_reason(99)
    assert type(err) is ce.OutcomeUnknown and err.reason == "99" and err.leader_hint is None
    assert ce.OutcomeUnknown().reason == "UNKNOWN_OUTCOME"  # the override is per instance



def test_membership_failure() -> None:
    def refusal() -> str:
        raise AssertionError("asked only for a refused change")

    assert ce.membership_failure(FAIL_REASON.SUCCESS, refusal) is None
    refused = ce.membership_failure(FAIL_REASON.REQUEST_DENIED, lambda: "new members lag")
    assert isinstance(refused, ce.RequestDenied) and refused.why == "new members lag"
    busy = ce.membership_failure(FAIL_REASON.REQUEST_DENIED, lambda: "")
    assert isinstance(busy, ce.RequestDenied) and busy.why == ce.CHANGE_IN_PROGRESS
    assert type(ce.membership_failure(FAIL_REASON.NOT_LEADER, refusal)) is ce.NotLeader
