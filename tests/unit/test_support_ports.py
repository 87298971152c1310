"""The test harness's port picker: a port it handed out is never handed out again.

CI failed once because a node's metrics port, picked when the node started, was the Raft port
already picked (but not yet bound) for a node of the same cluster that had not started yet.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import support


@pytest.fixture()
def own_registry() -> Iterator[None]:
    """Draws from a fresh record of handed-out ports, then puts the suite's record back (with the
    ports drawn here added, so nothing else in this process gets them)."""
    saved = set(support._HANDED_OUT)
    support._HANDED_OUT.clear()
    try:
        yield
    finally:
        support._HANDED_OUT.update(saved)


def test_ports_drawn_one_by_one_never_repeat(own_registry: None) -> None:
    # 3,000 draws from ~22,000 ports: without the record, a repeat is all but certain (birthday
    # bound: about 200 expected), which is what a cluster's lazily picked metrics ports hit.
    drawn = [p for _ in range(3000) for p in support.free_ports(1)]
    assert len(set(drawn)) == len(drawn)


def test_one_call_returns_distinct_ports(own_registry: None) -> None:
    ports = support.free_ports(10)
    assert len(set(ports)) == 10
    assert not set(ports) & set(support.free_ports(10))
