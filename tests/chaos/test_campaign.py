"""The fault campaign in the suite: a short one (kill, pause and partition faults, both snapshot
settings, and one run of the leader-isolated-during-snapshot-install schedule) in every run, the
long one under ``-m slow``. The campaign runs as its own process (``ops/nemesis.py``) so that gRPC
fork support is off before grpc is imported; a test fails on any violation it reports.

``NEMESIS_SEED`` fixes the seed (the campaign prints the one it used); ``NEMESIS_RUNS`` and
``NEMESIS_DURATION`` size the slow campaign."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SHORT_FAULTS = "kill,kill_leader,kill_all,pause,partition_node,partition_leader,partition_pair"


def _reap_leftovers(marker: str) -> None:
    """Kill (by pid) any process whose command line mentions ``marker`` (this test's directory):
    a safety net in case the campaign itself was killed before it could clean up."""
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                os.kill(int(p.name), signal.SIGKILL)


def run_nemesis(tmp: pathlib.Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run ``ops/nemesis.py`` with ``args``; fail the test on a violation or a timeout. Returns
    its JSON results."""
    out = tmp / "results.json"
    seed = os.environ.get("NEMESIS_SEED")
    cmd = [sys.executable, str(REPO / "ops" / "nemesis.py"), *args, "--base-dir", str(tmp / "runs"),
           "--json", str(out), *(["--seed", seed] if seed else [])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the campaign stops its nodes and removes its chain
        try:
            text, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        pytest.fail(f"campaign exceeded {timeout_s:.0f}s:\n{text[-6000:]}")
    finally:
        _reap_leftovers(str(tmp / "runs"))
        with contextlib.suppress(OSError):
            chain = f"GNEM{proc.pid}"
            if subprocess.run(["iptables", "-w", "5", "-S", chain], capture_output=True).returncode == 0:
                subprocess.run(["iptables", "-w", "5", "-D", "OUTPUT", "-o", "lo", "-p", "tcp", "-j", chain],
                               capture_output=True)
                subprocess.run(["iptables", "-w", "5", "-F", chain], capture_output=True)
                subprocess.run(["iptables", "-w", "5", "-X", chain], capture_output=True)
    print(text)
    assert proc.returncode == 0, f"campaign reported violations (exit {proc.returncode}):\n{text[-12000:]}"
    results: dict[str, Any] = json.loads(out.read_text())
    runs = results["runs"]
    assert runs and all(sum(r["acked"].values()) > 0 for r in runs), text[-4000:]
    return results


def test_short_random_campaign(tmp_path: pathlib.Path) -> None:
    """Two 15 s runs (one with --snapshot-entries 300, one with the default) of random kill,
    pause and partition faults: no violation."""
    res = run_nemesis(tmp_path, ["--runs", "2", "--duration", "15", "--snapshot-entries", "mixed",
                                 "--faults", SHORT_FAULTS, "-q"], timeout_s=200)
    assert sum(sum(r["faults"].values()) for r in res["runs"]) > 0


def test_short_leader_isolated_during_snapshot_install(tmp_path: pathlib.Path) -> None:
    """One run of the schedule that lost writes in issue 7: the leader's Raft traffic is cut while
    a follower installs its snapshot and it holds an uncommitted tail."""
    res = run_nemesis(tmp_path, ["--runs", "1", "--schedule", "isolate-leader-during-snapshot",
                                 "--snapshot-entries", "300", "-q"], timeout_s=200)
    if res["partitions"] != "on":
        pytest.skip(f"partitions unavailable: {res['partitions']}")


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
def test_long_random_campaign(tmp_path: pathlib.Path) -> None:
    """The long campaign: every fault kind, half the runs with --snapshot-entries 300."""
    runs = os.environ.get("NEMESIS_RUNS", "50")
    duration = os.environ.get("NEMESIS_DURATION", "60")
    run_nemesis(tmp_path, ["--runs", runs, "--duration", duration, "--snapshot-entries", "mixed",
                           "-q"], timeout_s=int(runs) * (float(duration) + 240))


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_long_leader_isolated_during_snapshot_install(tmp_path: pathlib.Path) -> None:
    """The dedicated schedule, 20 times."""
    runs = os.environ.get("NEMESIS_SNAPSHOT_RUNS", "20")
    run_nemesis(tmp_path, ["--runs", runs, "--schedule", "isolate-leader-during-snapshot",
                           "--snapshot-entries", "300", "-q"], timeout_s=int(runs) * 300)


def test_checker_reports_lost_doubled_and_diverging_writes() -> None:
    """The checker itself (no processes): a lost acknowledged bucket, a key planned twice, a
    changed acknowledged result and two acknowledged writes at one log index are violations."""
    from tests.chaos.checker import TABLES, check_history
    from tests.chaos.workload import History, Op

    h = History()
    for name, created, idx in (("kept", 10, 5), ("lost", 11, 6), ("changed", 12, 7), ("same-index", 13, 7)):
        op = Op("create_bucket", f"rid-{name}", {"name": name}, 0.0, 1.0, "ok", "OK", log_index=idx)
        op.result["created_at_us"] = created
        h.add(op)
    plan = Op("plan_write", "rid-plan", {"bucket": "kept", "key": "k1", "size": 1}, 0.0, 1.0, "ok", "OK",
              log_index=8)
    plan.result["object_id"] = "O1"
    h.add(plan)
    dedupe = [(f"rid-{n}", "create_bucket", i, f'{{"created_at_us":{c}}}', "")
              for n, c, i in (("kept", 10, 5), ("changed", 12, 7), ("same-index", 13, 7))]
    dedupe.append(("rid-plan", "plan_write", 8, '{"object_id":"O1"}', ""))
    d: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
    d["buckets"] = [("B1", "kept", 10, 10, None), ("B3", "changed", 99, 99, None),
                    ("B4", "same-index", 13, 13, None)]
    d["objects"] = [("O1", "B1", "k1", "PENDING", 1, None, None, "C", 1, 1),
                    ("O2", "B1", "k1", "PENDING", 1, None, None, "C", 1, 1)]
    d["request_dedupe"] = dedupe
    v = " | ".join(check_history(h, {"n1": d}))
    assert "same log index 7" in v
    assert "CreateBucket lost" in v
    assert "bucket changed created_at 99" in v
    assert "planned ×2" in v
    assert "CreateBucket kept" not in v and "bucket kept" not in v
