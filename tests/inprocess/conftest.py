"""The in-process tier's fixture: the contract's ``node``, served by :class:`gantry.testing.InProcessNode`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gantry.testing import InProcessNode


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    with InProcessNode(tmp_path_factory.mktemp("inproc"), cradle_addr="127.0.0.1:9") as nd:
        yield nd
        assert nd.fatal_reason == ""
