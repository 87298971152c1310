"""Post-heal checks on every node's SQLite file (opened read-only) against the client history:
replicas identical at one applied index, every acknowledged mutation present exactly once with
the acknowledged result, no request id applied twice, no two acknowledged mutations at one log
index; plus log statistics (elections, snapshots, alarming lines)."""

from __future__ import annotations

import collections
import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.cluster import ChaosCluster, ChaosNode, read_db
from tests.chaos.workload import History

#: Replicated tables compared between nodes, with their ordering.
TABLES = {
    "buckets": "id",
    "objects": "object_id",
    "cradle_servers": "id",
    "cluster_nodes": "raft_addr",
    "request_dedupe": "request_id, op",
    "raft_applied": "id",
}
#: Log lines worth counting (substring of the event text → label).
ALERTS = {
    "exceeds journal end": "commit_index_clamped",
    "failed to load full dump": "dump_load_failed",
    "raft_log_conflict_truncated": "log_conflict_truncated",
    "snapshot_restore_failed": "snapshot_restore_failed",
    "apply_failed": "apply_failed",
    "node_failed": "node_failed",
    "rpc_failed": "rpc_failed",
    "raft_log_behind_database": "raft_log_behind_database",
    "log_index_not_increasing": "log_index_not_increasing",
    # Not a fault: a follower's own snapshot gave way to the leader's (override 16). Counted to
    # show the campaign reaches that race.
    "snapshot_superseded": "snapshot_superseded",
}

Dump = dict[str, list[tuple[Any, ...]]]


def dump(nd: ChaosNode) -> Dump:
    """Every replicated table of ``nd``'s database, ordered by primary key."""
    return {t: read_db(nd.db, f"SELECT * FROM {t} ORDER BY {order}") for t, order in TABLES.items()}


@dataclass
class Convergence:
    """Outcome of waiting for identical replicas."""

    ok: bool
    applied_index: int = 0
    seconds: float = 0.0
    dumps: dict[str, Dump] = field(default_factory=dict)
    detail: list[str] = field(default_factory=list)


def _diff(ref_name: str, ref: Dump, name: str, other: Dump) -> list[str]:
    out = []
    for t in TABLES:
        a, b = set(ref[t]), set(other[t])
        if a != b:
            only_ref, only_other = sorted(a - b)[:3], sorted(b - a)[:3]
            out.append(f"table {t}: {len(a - b)} row(s) only on {ref_name} (e.g. {only_ref}), "
                       f"{len(b - a)} only on {name} (e.g. {only_other})")
    return out


def wait_converged(cluster: ChaosCluster, timeout_s: float = 60.0) -> Convergence:
    """Poll until every node reports one applied index (admin Status and its database agree)
    and the replicated tables are identical; on timeout, say what differs."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    last: list[str] = ["no status from the nodes"]
    while True:
        sts = cluster.statuses()
        if len(sts) == len(cluster.nodes):
            idx = {n: st.applied_index for n, st in sts.items()}
            if len(set(idx.values())) == 1:
                try:
                    db_idx = {nd.name: nd.db_applied_index() for nd in cluster.nodes}
                    if set(db_idx.values()) == set(idx.values()):
                        dumps = {nd.name: dump(nd) for nd in cluster.nodes}
                        ref_name = cluster.nodes[0].name
                        diffs = [d for nd in cluster.nodes[1:]
                                 for d in _diff(ref_name, dumps[ref_name], nd.name, dumps[nd.name])]
                        again = {nd.name: nd.db_applied_index() for nd in cluster.nodes}
                        if again == db_idx:
                            if not diffs:
                                return Convergence(True, next(iter(idx.values())),
                                                   time.monotonic() - t0, dumps)
                            last = diffs
                    else:
                        last = [f"status applied {idx}, databases {db_idx}"]
                except Exception as e:  # noqa: BLE001 - a file being restored
                    last = [f"reading databases: {e!r}"]
            else:
                last = [f"applied index differs: {idx} (commit "
                        f"{ {n: st.commit_index for n, st in sts.items()} })"]
        else:
            last = [f"only {sorted(sts)} answer Status"]
        if time.monotonic() >= deadline:
            return Convergence(False, 0, time.monotonic() - t0, {}, last)
        time.sleep(0.2)


def check_history(history: History, dumps: dict[str, Dump]) -> list[str]:
    """Every acknowledged mutation present exactly once with its acknowledged result on every
    node; unacknowledged ones at most once; request ids applied once; distinct log indexes."""
    v: list[str] = []
    ops = list(history.ops)
    by_index: dict[int, list[str]] = collections.defaultdict(list)
    for op in ops:
        if op.outcome == "ok" and op.log_index > 0 and op.kind in ("create_bucket", "plan_write",
                                                                    "commit_object"):
            by_index[op.log_index].append(f"{op.kind}:{op.rid}")
    for idx, rids in by_index.items():
        if len(rids) > 1:
            v.append(f"{len(rids)} acknowledged mutations at the same log index {idx}: {rids[:4]}")
    for name, d in dumps.items():
        lost: list[str] = []
        wrong: list[str] = []
        twice: list[str] = []
        buckets: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
        for row in d["buckets"]:  # id, name, created_at, updated_at, deleted_at
            buckets[row[1]].append(row)
        objects = {row[0]: row for row in d["objects"]}
        bucket_name = {row[0]: row[1] for row in d["buckets"]}
        per_key: collections.Counter[tuple[str, str]] = collections.Counter(
            (bucket_name.get(row[1], "?"), row[2]) for row in d["objects"])
        dedupe = {row[0]: row for row in d["request_dedupe"]}  # rid, op, log_index, result, fp
        for op in ops:
            if op.kind == "create_bucket":
                rows = buckets.get(op.args["name"], [])
                if len(rows) > 1:
                    twice.append(f"bucket {op.args['name']} ×{len(rows)} (rid {op.rid}): {rows}")
                if op.outcome == "ok":
                    if not rows:
                        lost.append(f"CreateBucket {op.args['name']} (index {op.log_index})")
                    elif rows[0][2] != op.result["created_at_us"]:
                        wrong.append(f"bucket {op.args['name']} created_at {rows[0][2]} != "
                                     f"acknowledged {op.result['created_at_us']} (rid {op.rid})")
            elif op.kind == "plan_write":
                n = per_key[(op.args["bucket"], op.args["key"])]
                if n > 1:
                    twice.append(f"key {op.args['key'][:40]} planned ×{n} (rid {op.rid})")
                if op.outcome == "ok":
                    prow = objects.get(op.result["object_id"])
                    if prow is None:
                        lost.append(f"PlanWrite {op.args['key'][:40]} → {op.result['object_id']} "
                                    f"(index {op.log_index})")
                    elif prow[2] != op.args["key"] or bucket_name.get(prow[1]) != op.args["bucket"]:
                        wrong.append(f"object {prow[0]} has key {prow[2][:40]} in "
                                     f"{bucket_name.get(prow[1])}")
            elif op.kind == "commit_object" and op.outcome == "ok":
                crow = objects.get(op.args["object_id"])
                if crow is None or crow[3] != "COMMITTED":
                    lost.append(f"CommitObject {op.args['object_id']} (index {op.log_index}): "
                                f"state {crow[3] if crow else 'missing'}")
                elif crow[5] != op.args["size"] or crow[6] != op.args["last_modified_ms"] * 1000:
                    wrong.append(f"object {crow[0]} size/last_modified {crow[5]}/{crow[6]}")
            if op.outcome == "ok" and op.rid and op.kind in ("create_bucket", "plan_write",
                                                             "commit_object"):
                drow = dedupe.get(op.rid)
                if drow is None:
                    lost.append(f"request id {op.rid} ({op.kind}) has no dedupe row")
                elif op.log_index > 0 and drow[2] > op.log_index:
                    wrong.append(f"request id {op.rid} applied at {drow[2]} after its reply's "
                                 f"index {op.log_index}")
                elif op.kind == "create_bucket" and f'"created_at_us":{op.result["created_at_us"]}' \
                        not in drow[3]:
                    wrong.append(f"request id {op.rid} remembered result {drow[3]} differs from "
                                 f"the acknowledged one")
                elif op.kind == "plan_write" and op.result["object_id"] not in drow[3]:
                    wrong.append(f"request id {op.rid} remembered result {drow[3]} differs from "
                                 f"the acknowledged object {op.result['object_id']}")
        for label, items in (("acknowledged mutation(s) missing", lost),
                             ("acknowledged result(s) differ", wrong),
                             ("applied more than once", twice)):
            if items:
                v.append(f"{name}: {len(items)} {label}: " + "; ".join(items[:5]))
    return v


def log_stats(cluster: ChaosCluster) -> dict[str, Any]:
    """Elections, snapshots and alarming lines from every node's log."""
    stats: dict[str, Any] = {"leader_changed": 0, "leaders_elected": 0, "snapshots": 0,
                             "restores": 0, "alerts": collections.Counter(), "samples": []}
    for nd in cluster.nodes:
        for e in nd.log_events():
            ev = str(e.get("event", ""))
            if ev == "leader_changed" and e.get("leader"):
                stats["leader_changed"] += 1
            elif ev == "raft_role_changed" and e.get("role") == "leader":
                stats["leaders_elected"] += 1
            elif ev == "snapshot_persisted":
                stats["snapshots"] += 1
            elif ev == "snapshot_restored":
                stats["restores"] += 1
            for needle, label in ALERTS.items():
                if needle in ev:
                    stats["alerts"][label] += 1
                    if len(stats["samples"]) < 8:
                        stats["samples"].append(f"{nd.name}: {_short(e)}")
            if e.get("level") == "critical" and not any(n in ev for n in ALERTS):
                stats["alerts"]["critical"] += 1
                if len(stats["samples"]) < 8:
                    stats["samples"].append(f"{nd.name}: {_short(e)}")
        try:
            text = nd.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        n_tb = len(re.findall(r"^Traceback", text, re.M))
        if n_tb:
            stats["alerts"]["raw_traceback"] += n_tb
    return stats


def _short(e: dict[str, Any]) -> str:
    keep = {k: v for k, v in e.items() if k not in ("logger", "node_id", "level", "exception")}
    s = " ".join(f"{k}={v}" for k, v in keep.items())
    return s[:300]
