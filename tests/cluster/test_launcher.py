"""``ops/cluster.py``, the development launcher, as a user runs it: it exits (status 1) once
every node it started has exited, instead of idling until signalled."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

from tests.support import REPO, wait_until


def test_the_launcher_exits_once_every_node_has_exited(tmp_path: pathlib.Path) -> None:
    base = tmp_path / "cl"
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}
    proc = subprocess.Popen([sys.executable, str(REPO / "ops" / "cluster.py"), "--nodes", "1",
                             "--base-dir", str(base), "--ports-free", "--metrics-base", "0"],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        manifest = base / "cluster.json"
        wait_until(manifest.exists, 60, what="the manifest")
        [node] = json.loads(manifest.read_text())["nodes"]
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # ends at EOF, when the launcher exits
            lines.append(line)
            if line.startswith("cluster ready"):
                break
        assert lines and lines[-1].startswith("cluster ready"), lines
        os.kill(node["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, (out, err)
        assert "every node exited" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
