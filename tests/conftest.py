"""Shared fixtures: a real single-node Gantry process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import NodeProcess, single_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A running single-node cluster (real process, real gRPC, real SQLite), one per module."""
    with single_node(tmp_path_factory.mktemp("node"), ["--cradle-addr", "127.0.0.1:9"]) as nd:
        yield nd
