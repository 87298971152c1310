"""The README's "Look inside with sqlite3" queries, taken from the README itself, run read-only
against a running node's file: they work, and the live views leave deleted buckets out."""

from __future__ import annotations

import pathlib
import shlex
import shutil
import sqlite3
import subprocess

from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import CRADLE
from tests.support import REPO, single_node

T = 10


def readme_queries() -> list[list[str]]:
    """Each ``sqlite3 -readonly … data/gantry.db 'SQL'`` line of the README, split as a shell
    would."""
    lines = (REPO / "README.md").read_text().splitlines()
    return [shlex.split(line) for line in lines if line.startswith("sqlite3 -readonly")]


def test_readme_queries_run_against_a_live_node(tmp_path: pathlib.Path) -> None:
    queries = readme_queries()
    assert len(queries) >= 5 and any("live_objects" in q[-1] for q in queries)
    with single_node(tmp_path, CRADLE) as nd:
        stub = nd.stub()
        for name in ("keep", "gone"):
            stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
        stub.DeleteBucket(svc.DeleteBucketRequest(name="gone"), timeout=T)
        plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="keep", key="a/b.txt", size=42),
                              timeout=T)
        stub.CommitObject(svc.CommitObjectRequest(object_id=plan.write_plan.object_id, size=42,
                                                  last_modified_ms=1_700_000_000_000), timeout=T)
        db = nd.data_dir / "gantry.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # what `sqlite3 -readonly` does
        try:
            results = {}
            for argv in queries:
                assert argv[-2] == "data/gantry.db", argv
                results[argv[-1]] = conn.execute(argv[-1]).fetchall()
        finally:
            conn.close()
        first = next(sql for sql in results if sql.startswith("SELECT name, created_at FROM live_buckets"))
        assert [r[0] for r in results[first]] == ["keep"]  # "gone" was deleted
        assert str(results[first][0][1]).endswith("Z")  # readable UTC
        listing = next(sql for sql in results if "FROM live_objects ORDER BY" in sql)
        assert results[listing] == [("keep", "a/b.txt", "COMMITTED", 42, "127.0.0.1:9",
                                     "2023-11-14T22:13:20.000Z")]
        if shutil.which("sqlite3"):  # the stock CLI too, on the live file
            for argv in queries:
                r = subprocess.run([*argv[:-2], str(db), argv[-1]], capture_output=True,
                                   text=True, timeout=30)
                assert r.returncode == 0 and not r.stderr, (argv, r.stderr)
