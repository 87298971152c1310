"""The error vocabulary: every pysyncobj FAIL_REASON has a typed consensus error, every domain
outcome and consensus error has exactly the status the README's table promises (code, message,
details), and a stored result reads back as the outcome it was."""

from __future__ import annotations

import ast
import pathlib

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from pysyncobj import FAIL_REASON

from gantry.api.errors import (
    DOMAIN,
    STATUSES,
    Call,
    IndexNotApplied,
    Kind,
    error_status,
    outcome_error,
    outcome_status,
)
from gantry.consensus import errors as ce
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state import statemachine
from gantry.state.statemachine import ApplyResult, Code, Outcome

U, D, P = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
           grpc.StatusCode.FAILED_PRECONDITION)
LEADER_RAFT, LEADER_GRPC = "127.0.0.1:7002", "127.0.0.1:8002"


def info(reason: str, **meta: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=meta)


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
    # ...plus Gantry's own code for a leader whose Raft log is out of space.
    assert set(ce.FAIL_REASONS) == set(names) - {FAIL_REASON.SUCCESS} | {ce.FAIL_DISK_FULL}


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


def test_the_api_never_reads_engine_codes() -> None:
    api = pathlib.Path(ce.__file__).parents[1] / "api"
    for path in api.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "pysyncobj" for m in imported), path
        assert not any(isinstance(n, ast.Name) and n.id == "FAIL_REASON" for n in ast.walk(tree)), path


def test_engine_codes_are_decoded_only_in_the_consensus_layer() -> None:
    # FAIL_REASON ints become typed errors in gantry/consensus/errors.py; the Raft actor and the
    # node see only those (the new-maintainer trial found raw codes in both).
    repo = pathlib.Path(ce.__file__).parents[2]
    allowed = {repo / "gantry" / "consensus" / "errors.py",  # decodes them
               repo / "gantry" / "consensus" / "pysyncobj_compat.py"}  # speaks the engine's
    for path in [*(repo / "gantry").rglob("*.py"), *(repo / "actors").glob("*.py")]:
        if path in allowed or "pb" in path.relative_to(repo).parts or path.is_symlink():
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert "FAIL_REASON" not in names, path


def test_membership_failure() -> None:
    def refusal() -> str:
        raise AssertionError("asked only for a refused change")

    assert ce.membership_failure(FAIL_REASON.SUCCESS, refusal) is None
    refused = ce.membership_failure(FAIL_REASON.REQUEST_DENIED, lambda: "new members lag")
    assert isinstance(refused, ce.RequestDenied) and refused.why == "new members lag"
    busy = ce.membership_failure(FAIL_REASON.REQUEST_DENIED, lambda: "")
    assert isinstance(busy, ce.RequestDenied) and busy.why == ce.CHANGE_IN_PROGRESS
    assert type(ce.membership_failure(FAIL_REASON.NOT_LEADER, refusal)) is ce.NotLeader


# -- the table: every row, as the wire shows it --

def addr_of(raft_addr: str) -> str:
    return LEADER_GRPC if raft_addr == LEADER_RAFT else ""


WRITE = Call(Kind.WRITE, "CreateBucket", addr_of)
READ = Call(Kind.READ, "", addr_of)
MEMBER = Call(Kind.MEMBERSHIP, "AddNode", addr_of)
LEADER_META = {"leader_raft_addr": LEADER_RAFT, "leader": LEADER_GRPC}

#: (error, call) → (code, message, details): the README's "Every status a client can see".
CONSENSUS_CASES: list[tuple[BaseException, Call, tuple[grpc.StatusCode, str, tuple[Message, ...]]]] = [
    (ce.NoLeader(), WRITE, (U, "no leader", (info("MISSING_LEADER"),))),
    (ce.NotLeader(LEADER_RAFT), WRITE,
     (U, "write not committed: leader changed", (info("NOT_LEADER", **LEADER_META),))),
    (ce.Discarded("127.0.0.1:7009"), WRITE,  # a leader whose gRPC address is not known
     (U, "write not committed: leader changed",
      (info("DISCARDED", leader_raft_addr="127.0.0.1:7009"),))),
    (ce.Overloaded(), WRITE, (U, "write not committed: node overloaded", (info("QUEUE_FULL"),))),
    (ce.RequestDenied(), WRITE,
     (U, "write not committed: request denied", (info("REQUEST_DENIED"),))),
    (ce.LeaderChanged(LEADER_RAFT), WRITE,
     (U, "write outcome unknown: retry with the same x-request-id",
      (info("LEADER_CHANGED", **LEADER_META),))),
    (ce.OutcomeUnknown(), WRITE,
     (U, "write outcome unknown: retry with the same x-request-id", (info("UNKNOWN_OUTCOME"),))),
    (ce.from_fail_reason(42), WRITE,
     (U, "write outcome unknown: retry with the same x-request-id", (info("42"),))),
    (ce.Stopping(), WRITE, (U, "node stopping", (info("NODE_STOPPING"),))),
    (ce.NotCommitted(), WRITE,  # a new "not committed" kind without its own row stays retryable
     (U, "write not committed: retry", (info("NOT_COMMITTED"),))),
    (TimeoutError(), WRITE, (D, "write not applied before the deadline; outcome unknown", ())),
    (ce.NoLeader(), READ, (U, "no leader", (info("MISSING_LEADER"),))),
    (ce.Stopping(), READ, (U, "node stopping", (info("NODE_STOPPING"),))),
    (ce.NotLeader(LEADER_RAFT), READ,
     (U, "read not confirmed by a leader (leader changed): retry",
      (info("NOT_LEADER", **LEADER_META),))),
    (ce.LeaderChanged(), READ,
     (U, "read not confirmed by a leader (leader changed): retry", (info("LEADER_CHANGED"),))),
    (ce.Overloaded(), READ,
     (U, "read not confirmed by a leader (leader changed): retry", (info("QUEUE_FULL"),))),
    (RuntimeError("actor gone"), READ,
     (U, "read not confirmed by a leader (leader changed): retry", ())),
    (TimeoutError(), READ, (D, "read index not reached before the deadline", ())),
    (IndexNotApplied(17), READ,
     (D, "log index 17 not applied on this node before the deadline", ())),
    (TimeoutError(), MEMBER, (D, "membership change not applied before the deadline", ())),
    (ce.RequestDenied(why="the new configuration lacks a majority"), MEMBER,
     (P, "membership change refused: the new configuration lacks a majority", ())),
    (ce.RequestDenied(why=ce.CHANGE_IN_PROGRESS), MEMBER,
     (P, "membership change refused: another change is in progress", ())),
    (ce.NotLeader(LEADER_RAFT), MEMBER, (U, "membership change not committed", ())),
    (ce.LeaderChanged(), MEMBER, (U, "membership change not committed", ())),
]


@pytest.mark.parametrize(("error", "call", "expected"), CONSENSUS_CASES)
def test_consensus_error_statuses(error: BaseException, call: Call,
                                  expected: tuple[grpc.StatusCode, str, tuple[Message, ...]]) -> None:
    err = error_status(error, call)
    assert (err.code, err.message, tuple(err.details)) == expected


def test_every_consensus_error_has_a_status_in_every_kind() -> None:
    def family(cls: type[ce.ConsensusError]) -> list[type[ce.ConsensusError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in family(sub))]

    classes = family(ce.ConsensusError)  # a new class is covered without editing this test
    assert {type(ce.from_fail_reason(c)) for c in ce.FAIL_REASONS} <= set(classes)
    for cls in classes:
        for kind in Kind:
            err = error_status(cls(), Call(kind))
            # RESOURCE_EXHAUSTED: a write refused while the disk is full (NoSpace).
            assert err.code in (U, P, grpc.StatusCode.RESOURCE_EXHAUSTED), (cls, kind)


def test_what_the_table_does_not_know_is_not_turned_into_a_status() -> None:
    with pytest.raises(LookupError):
        error_status(RuntimeError("a bug"), WRITE)
    with pytest.raises(LookupError):
        error_status(RuntimeError("a bug"), MEMBER)


OUTCOME_CASES: list[tuple[ApplyResult, str, tuple[grpc.StatusCode, str, tuple[Message, ...]]]] = [
    (ApplyResult(Outcome.BUCKET_EXISTS, reason=1, bucket="b"), "CreateBucket",
     (grpc.StatusCode.ALREADY_EXISTS, "bucket already exists",
      (svc.BucketOwnershipConflict(
          reason=svc.BucketOwnershipConflict.REASON_BUCKET_ALREADY_OWNED_BY_YOU, bucket="b"),))),
    (ApplyResult(Outcome.BUCKET_NOT_FOUND, reason=1, bucket="b"), "PlanWrite",
     (grpc.StatusCode.NOT_FOUND, "bucket not found",
      (svc.PlanWriteError(reason=svc.PlanWriteError.REASON_BUCKET_NOT_FOUND, bucket="b"),))),
    (ApplyResult(Outcome.BUCKET_NOT_FOUND, reason=1, bucket="b"), "DeleteObject",
     (grpc.StatusCode.NOT_FOUND, "bucket not found", (info("BUCKET_NOT_FOUND", bucket="b"),))),
    (ApplyResult(Outcome.BUCKET_NOT_FOUND, reason=1, bucket="b"), "PutObjects",
     (grpc.StatusCode.NOT_FOUND, "bucket not found", (info("BUCKET_NOT_FOUND", bucket="b"),))),
    (ApplyResult(Outcome.BUCKET_NOT_FOUND, reason=1, bucket="b"), "DeleteObjects",
     (grpc.StatusCode.NOT_FOUND, "bucket not found", (info("BUCKET_NOT_FOUND", bucket="b"),))),
    (ApplyResult(Outcome.NO_CRADLES, reason=3, bucket="b"), "PlanWrite",
     (P, "no cradle servers available",
      (svc.PlanWriteError(reason=svc.PlanWriteError.REASON_NO_CRADLE_SERVERS, bucket="b"),))),
    (ApplyResult(Outcome.OBJECT_NOT_FOUND), "CommitObject",
     (grpc.StatusCode.NOT_FOUND, "object not found", ())),
    (ApplyResult(Outcome.OBJECT_NOT_PENDING), "AbortObject", (P, "object is not pending", ())),
    (ApplyResult(Outcome.BUCKET_NOT_EMPTY, bucket="b"), "DeleteBucket",
     (P, "BucketNotEmpty", (info("BucketNotEmpty", bucket="b"),))),
    (ApplyResult(Outcome.CONSTRAINT_VIOLATED, "UNIQUE constraint failed: objects.object_id"),
     "PlanWrite", (P, "constraint violated: UNIQUE constraint failed: objects.object_id", ())),
    (ApplyResult(Outcome.VALUE_OUT_OF_RANGE), "CommitObject",
     (grpc.StatusCode.INVALID_ARGUMENT, "value out of range", ())),
    (ApplyResult(Outcome.REQUEST_ID_REUSED), "DeleteBucket",
     (grpc.StatusCode.INVALID_ARGUMENT, "x-request-id reused for a different request", ())),
    (ApplyResult(Outcome.CRADLE_NOT_FOUND, cradle_address="h:1"), "UnregisterCradleServer",
     (grpc.StatusCode.NOT_FOUND, "cradle server not found",
      (info("CRADLE_SERVER_NOT_FOUND", address="h:1"),))),
    (ApplyResult(Outcome.CRADLE_HAS_LIVE_OBJECTS, cradle_address="h:1"), "UnregisterCradleServer",
     (P, "cradle server has live objects",
      (info("CRADLE_SERVER_HAS_LIVE_OBJECTS", address="h:1"),))),
]


@pytest.mark.parametrize(("result", "method", "expected"), OUTCOME_CASES)
def test_outcome_statuses(result: ApplyResult, method: str,
                          expected: tuple[grpc.StatusCode, str, tuple[Message, ...]]) -> None:
    err = outcome_error(result, Call(Kind.WRITE, method))
    assert (err.code, err.message, tuple(err.details)) == expected


def test_every_outcome_has_one_row_that_agrees_with_its_stored_form() -> None:
    failures = [o for o in Outcome if o is not Outcome.OK]
    assert {o for o in STATUSES if isinstance(o, Outcome)} == set(failures)
    assert {r.outcome for r, _, _ in OUTCOME_CASES} == set(failures)
    for o in failures:
        result = ApplyResult(o, "x" if o is Outcome.CONSTRAINT_VIOLATED else "")
        err = outcome_error(result, Call())
        # The status code number is the stored Code; the wire message is the stored message.
        assert err.code.value[0] == int(result.code) == int(o.code), o
        assert err.message == result.message, o
    with pytest.raises(KeyError):
        outcome_error(ApplyResult(), Call())


def test_a_query_outcome_has_the_same_status_as_an_applied_one() -> None:
    err = outcome_status(Outcome.BUCKET_NOT_FOUND, bucket="b")
    assert (err.code, err.message, tuple(err.details)) == (
        grpc.StatusCode.NOT_FOUND, "bucket not found", (info("BUCKET_NOT_FOUND", bucket="b"),))
    err = outcome_status(Outcome.OBJECT_NOT_FOUND)
    assert (err.code, err.message, err.details) == (grpc.StatusCode.NOT_FOUND, "object not found", ())


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


def test_transfer_failure() -> None:
    assert ce.transfer_failure(FAIL_REASON.SUCCESS, lambda: "unused") is None
    refused = ce.transfer_failure(FAIL_REASON.REQUEST_DENIED, lambda: "n3 has not answered")
    assert isinstance(refused, ce.RequestDenied) and refused.why == "n3 has not answered"
    behind = ce.transfer_failure(FAIL_REASON.REQUEST_DENIED, lambda: "")
    assert isinstance(behind, ce.RequestDenied) and behind.why == ""  # repeated by the node
    assert isinstance(ce.transfer_failure(FAIL_REASON.NOT_LEADER, lambda: ""), ce.NotLeader)
