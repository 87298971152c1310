"""``gantry.logs`` in a fresh interpreter each (configure() sets process-wide state): the hot
per-RPC line is the line structlog writes, key for key, and follows the configured format and
level."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO

_SCRIPT = """
import sys, structlog
from gantry import logs
logs.configure("127.0.0.1:7001", sys.argv[1], sys.argv[2], extra={"worker": 2})
fields = {"grpc.service": "S", "grpc.method": "M", "grpc.code": "OK", "duration_ms": 0.5,
          "peer": "ipv4:127.0.0.1:5", "request_id": "r-1"}
structlog.get_logger("gantry.rpc").info("rpc_finished", **fields)
logs.hot_info("gantry.rpc")("rpc_finished", dict(fields))
"""


def _lines(fmt: str, level: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, fmt, level], cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_the_hot_line_is_structlogs_line() -> None:
    slow, hot = (json.loads(line) for line in _lines("json", "info"))
    assert list(hot) == list(slow), "same keys in the same order"
    assert {k: v for k, v in hot.items() if k != "timestamp"} == \
        {k: v for k, v in slow.items() if k != "timestamp"}
    assert hot["worker"] == 2 and hot["node_id"] == "127.0.0.1:7001"
    for line in (slow, hot):  # RFC 3339, UTC, microseconds
        ts = line["timestamp"]
        assert len(ts) == 27 and ts[10] == "T" and ts[19] == "." and ts.endswith("Z"), ts


@pytest.mark.parametrize(("fmt", "level", "count"), [("pretty", "info", 2), ("json", "warning", 0)])
def test_the_hot_line_follows_format_and_level(fmt: str, level: str, count: int) -> None:
    lines = _lines(fmt, level)
    assert len(lines) == count, lines
    assert all("rpc_finished" in line and not line.startswith("{") for line in lines)
