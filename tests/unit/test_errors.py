"""The error vocabulary: every pysyncobj FAIL_REASON has a typed consensus error, and a stored
result reads back as the outcome it was."""

from __future__ import annotations

import pytest
from pysyncobj import FAIL_REASON

from gantry.consensus import errors as ce
from gantry.state import statemachine
from gantry.state.statemachine import ApplyResult, Code, Outcome

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


# -- the stored form of a result --

@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_stored_result_reads_back_as_its_outcome(outcome: Outcome) -> None:
    detail = "NOT NULL constraint failed: t.c" if outcome is Outcome.CONSTRAINT_VIOLATED else ""
    r = ApplyResult(outcome, detail, reason=1, bucket="b", name="n", created_at_us=5,
                    object_id="o", cradle_address="a:1", cradle_server_id="c")
    text = statemachine._result_to_json(r)
    assert statemachine._result_from_json(text) == r
    assert text.startswith(f'{{"code":{int(outcome.code)},"message":')


def test_results_stored_by_earlier_builds_read_back() -> None:
    # The JSON every build before typed outcomes wrote (dataclasses.asdict of the old fields).
    old = ('{"code":9,"message":"constraint violated: UNIQUE constraint failed: buckets.name",'
           '"reason":0,"bucket":"","name":"","created_at_us":0,"object_id":"",'
           '"cradle_address":"","cradle_server_id":""}')
    r = statemachine._result_from_json(old)
    assert (r.outcome, r.detail, r.code, r.message) == (
        Outcome.CONSTRAINT_VIOLATED, "UNIQUE constraint failed: buckets.name",
        Code.FAILED_PRECONDITION, "constraint violated: UNIQUE constraint failed: buckets.name")
    assert statemachine._result_to_json(r) == old
    exists = ('{"code":6,"message":"bucket already exists","reason":1,"bucket":"photos",'
              '"name":"","created_at_us":0,"object_id":"","cradle_address":"",'
              '"cradle_server_id":""}')
    r = statemachine._result_from_json(exists)
    assert (r.outcome, r.reason, r.bucket) == (Outcome.BUCKET_EXISTS, 1, "photos")
    assert statemachine._result_to_json(r) == exists


@pytest.mark.parametrize("bad", [
    '{"code":9,"message":"something else"}',
    '{"code":5,"message":"bucket already exists"}',  # text and code disagree
    '{"code":9,"message":"object is not pending: why"}',  # only a constraint carries a detail
])
def test_a_stored_result_no_build_wrote_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        statemachine._result_from_json(bad)
