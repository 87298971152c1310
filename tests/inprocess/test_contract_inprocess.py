"""The contract suites (tests/contract/) again, in-process: the same handlers and writer with
:class:`gantry.testing.InlineConsensus` instead of Raft, in a fraction of the time. Tests that
start their own node process stay in the process tier only."""

from __future__ import annotations

from tests.contract import test_contract as _contract

_PROCESS_ONLY = {
    "test_plan_write_without_cradle_servers",  # a second node without a storage server
    "test_huge_last_modified_ms_does_not_kill_the_node",  # restarts a node process
}


for _name, _obj in vars(_contract).items():
    if _name.startswith("test_") and _name not in _PROCESS_ONLY:
        globals()[_name] = _obj
globals()["stub"] = _contract.stub
