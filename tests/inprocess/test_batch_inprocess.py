"""tests/contract/test_batch.py in-process (see test_contract_inprocess.py)."""

from __future__ import annotations

from tests.contract import test_batch as _batch

for _name, _obj in vars(_batch).items():
    if _name.startswith("test_"):
        globals()[_name] = _obj
globals()["stub"] = _batch.stub
