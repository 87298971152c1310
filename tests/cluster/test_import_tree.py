"""``ops/import_tree.py`` against a real 3-node cluster: given every node as a target, it survives
the death (SIGKILL) of the node it is talking to mid-import, fails over, and every file ends up
as exactly one COMMITTED object (request ids make the retries on another node idempotent), in
both modes: PutObjects batches (the default) and ``--per-file``."""

from __future__ import annotations

import json
import pathlib
import signal
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from tests.cluster.helpers import CRADLE, dump
from tests.support import REPO, cluster, single_node, wait_until

FILES = 800


def _tree(root: pathlib.Path) -> None:
    for i in range(FILES):
        d = root / f"d{i % 30:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(b"x" * (1 + i % 7))


def _objects(db: pathlib.Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT key, state FROM objects ORDER BY key").fetchall()
    finally:
        conn.close()


#: Importer arguments per mode: small batches, one in flight, so the import is still under way
#: (as many calls as the per-file mode makes rounds) when the test kills its node.
MODES = {"per-file": ["--per-file", "--concurrency", "8"],
         "bulk": ["--batch-size", "2", "--concurrency", "1"]}


def _load_importer(monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_tree", REPO / "ops" / "import_tree.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "import_tree", mod)  # its dataclasses look themselves up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("mode", sorted(MODES))
def test_import_fails_over_when_its_node_dies(tmp_path: pathlib.Path, mode: str) -> None:
    tree = tmp_path / "tree"
    _tree(tree)
    with cluster(tmp_path, 3, CRADLE) as nodes:
        first, *rest = nodes
        targets = ",".join(nd.addr for nd in nodes)
        proc = subprocess.Popen(
            [sys.executable, "ops/import_tree.py", str(tree), "--bucket", "imported",
             "--target", targets, *MODES[mode], "--json"],
            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: len(_objects(rest[0].data_dir / "gantry.db")) >= 20, 60,
                       interval_s=0.01, what="the import under way")
            # Freeze the importer while its node dies, so that the kill lands mid-import however
            # fast this machine imports (on a fast one the import once finished first).
            proc.send_signal(signal.SIGSTOP)
            try:
                assert proc.poll() is None, "the import finished before the node could be killed"
                first.kill()
            finally:
                proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert (summary["imported"], summary["failed"]) == (FILES, 0), summary
        assert summary["failovers"] >= 1 and summary["targets"] == targets.split(",")
        assert summary["mode"] == mode
        assert f"{first.addr} answered UNAVAILABLE; failing over to {rest[0].addr}" in err
        # The survivors agree, and every file is there exactly once, COMMITTED.
        wait_until(lambda: dump(rest[0].data_dir / "gantry.db") == dump(rest[1].data_dir / "gantry.db"),
                   30, what="survivors identical")
        rows = _objects(rest[0].data_dir / "gantry.db")
        keys = [k for k, _ in rows]
        assert len(keys) == len(set(keys)) == FILES
        assert {s for _, s in rows} == {"COMMITTED"}


def test_targets_repeat_or_comma_list_and_none_reachable_is_refused(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load_importer(monkeypatch)
    assert mod.parse_targets(None) == ["127.0.0.1:8081"]
    assert mod.parse_targets(["a:1,b:2", " c:3 ", "a:1"]) == ["a:1", "b:2", "c:3"]
    tree = tmp_path / "tree"
    _tree(tree)
    r = subprocess.run([sys.executable, "ops/import_tree.py", str(tree), "--target", "127.0.0.1:1",
                        "--target", "127.0.0.1:2", "--timeout", "1"], cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "cannot connect to 127.0.0.1:1, 127.0.0.1:2 within 1.0s" in r.stderr


def test_batches_respect_the_count_and_the_key_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load_importer(monkeypatch)
    items = [mod.FileItem(f"k{i:03d}", 1, 1) for i in range(10)]  # 4-byte keys
    assert [len(b) for b in mod.batches(iter(items), 4)] == [4, 4, 2]
    assert [len(b) for b in mod.batches(iter(items), 100, max_key_bytes=12)] == [3, 3, 3, 1]
    assert [b for b in mod.batches(iter(items), 4) for b in b] == items
    assert list(mod.batches(iter([]), 4)) == []


def test_bulk_import_on_one_node_reports_per_file_results(tmp_path: pathlib.Path) -> None:
    """The default (bulk) mode: every file in PutObjects batches, counted per file; a second
    import into the same bucket reuses it and replaces the objects of the files it sends."""
    tree = tmp_path / "tree"
    _tree(tree)
    with single_node(tmp_path, CRADLE) as nd:
        def run(*extra: str) -> tuple[int, dict[str, Any], str]:
            r = subprocess.run([sys.executable, "ops/import_tree.py", str(tree), "--bucket", "one",
                                "--target", nd.addr, "--batch-size", "300", "--json", *extra],
                               cwd=str(REPO), capture_output=True, text=True, timeout=120)
            return r.returncode, json.loads(r.stdout.strip().splitlines()[-1]), r.stderr

        rc, summary, err = run()
        assert rc == 0, err[-3000:]
        assert (summary["mode"], summary["batches"], summary["imported"], summary["failed"]) == (
            "bulk", 3, FILES, 0), summary
        rc, summary, err = run("--limit", "500")
        assert (rc, summary["bucket_was"], summary["imported"], summary["batches"]) == (
            0, "reused", 500, 2), summary
        rows = _objects(nd.data_dir / "gantry.db")
        assert len(rows) == FILES + 500
        assert sum(1 for _, s in rows if s == "COMMITTED") == FILES


@pytest.mark.parametrize("flags", [["--limit", "-1"], ["--limit", "0"], ["--concurrency", "0"],
                                   ["--per-file", "--concurrency", "0"]])
def test_bad_limit_and_concurrency_are_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    mod = _load_importer(monkeypatch)
    assert mod.main([str(REPO / "ops"), "--target", "127.0.0.1:1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("import_tree: need --concurrency ≥ 1") and "--limit ≥ 1" in err
