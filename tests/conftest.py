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
        if nd.read_workers:  # GANTRY_TEST_READ_WORKERS: the module's calls ran on a worker
            on_worker, on_main = nd.calls_on_worker_channels()
            assert on_main == 0 and on_worker > 0, (on_worker, on_main)
