"""The committed protobuf modules match what ``ops/genproto.py`` generates from proto/."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

from tests.support import REPO


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(REPO / "ops" / "genproto.py"), "--out", str(tmp_path)],
                   check=True)
    def modules(root: pathlib.Path) -> list[pathlib.Path]:
        return sorted(p.relative_to(root) for p in (root / "gantry" / "pb").rglob("*")
                      if p.suffix in (".py", ".pyi") and "__pycache__" not in p.parts)

    fresh, committed = modules(tmp_path), modules(REPO)
    assert fresh == committed, "run `python ops/genproto.py` and commit the result"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, REPO / p, shallow=False)]
    assert not stale, f"stale generated modules {stale}: run `python ops/genproto.py`"


def test_wire_names_match_upstream() -> None:
    from gantry.pb.service.v1 import service_pb2

    svc = service_pb2.DESCRIPTOR.services_by_name["GantryService"]
    assert svc.full_name == "gantry.service.v1.GantryService"
    assert [m.name for m in svc.methods][:4] == ["CreateBucket", "ListBuckets", "PlanWrite",
                                                  "CommitObject"]
    req = service_pb2.PlanWriteRequest.DESCRIPTOR
    assert [(f.name, f.number) for f in req.fields] == [("bucket", 1), ("key", 2), ("size", 3)]
    com = service_pb2.CommitObjectRequest.DESCRIPTOR
    assert [(f.name, f.number) for f in com.fields] == [("object_id", 1), ("size", 2),
                                                        ("last_modified_ms", 3)]
