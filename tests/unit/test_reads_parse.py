"""gantry/api/reads.py: the consistency metadata a call may carry, and how long a waiting call
may wait before it answers on its own (before the client's deadline)."""

from __future__ import annotations

from typing import Any

import pytest

from gantry.api import reads
from gantry.api.errors import RpcError


class _Ctx:
    def __init__(self, md: tuple[tuple[str, str], ...] = (), remaining: float | None = None) -> None:
        self._md, self._remaining = md, remaining

    def invocation_metadata(self) -> Any:
        return self._md

    def time_remaining(self) -> float | None:
        return self._remaining


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", str(2**63), "99999999999999999999999"])
def test_a_min_log_index_that_is_not_a_log_index_is_refused(value: str) -> None:
    with pytest.raises(RpcError) as e:
        reads.parse(_Ctx(((reads.MIN_INDEX_KEY, value),)))  # type: ignore[arg-type]
    assert e.value.message == "InvalidMinLogIndex"


def test_min_log_index_zero_and_positive() -> None:
    assert reads.parse(_Ctx(((reads.MIN_INDEX_KEY, "0"),))) == (  # type: ignore[arg-type]
        reads.Consistency.LINEARIZABLE, 0)
    assert reads.parse(_Ctx(((reads.MIN_INDEX_KEY, "42"),))) == (  # type: ignore[arg-type]
        reads.Consistency.MIN_INDEX, 42)


@pytest.mark.parametrize(("remaining", "expected"), [
    (None, 10.0),          # no client deadline: the default
    (1e9, 10.0),           # "no deadline" as an enormous number
    (3.0, 3.0 - 0.06),     # 2 % of what is left
    (0.2, 0.2 - 0.01),     # at least 10 ms early
    (8.0, 8.0 - 0.1),      # at most 100 ms early
    (0.005, 0.0),          # nothing left to wait
])
def test_a_waiting_call_answers_before_the_clients_deadline(remaining: float | None,
                                                             expected: float) -> None:
    got = reads.timeout_of(_Ctx(remaining=remaining))  # type: ignore[arg-type]
    assert got == pytest.approx(expected)
