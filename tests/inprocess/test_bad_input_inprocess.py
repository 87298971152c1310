"""tests/contract/test_bad_input.py in-process (see test_contract_inprocess.py)."""

from __future__ import annotations

from tests.contract import test_bad_input as _bad_input
from tests.inprocess.test_contract_inprocess import _PROCESS_ONLY

for _name, _obj in vars(_bad_input).items():
    if _name.startswith("test_") and _name not in _PROCESS_ONLY:
        globals()[_name] = _obj
for _name in ("stub", "live"):
    globals()[_name] = getattr(_bad_input, _name)
