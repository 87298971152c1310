"""``ops/cluster.py``, the development launcher, as a user runs it: it exits (status 1) once
every node it started has exited, instead of idling until signalled."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

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
        out = proc.stdout
        assert out is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")),
                                  daemon=True)  # to EOF, when the launcher exits
        reader.start()
        wait_until(lambda: any(ln.startswith("cluster ready") for ln in lines)
                   or proc.poll() is not None, 60, what="the launcher's ready line")
        assert any(ln.startswith("cluster ready") for ln in lines), lines
        os.kill(node["pid"], signal.SIGKILL)
        proc.wait(30)
        reader.join(10)
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert proc.returncode == 1, (lines, err)
        assert "every node exited" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
