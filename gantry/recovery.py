"""Disaster recovery: ``gantry serve --force-new-cluster`` (etcd's flag of the same name).

Purpose: a cluster that lost its majority for good (two of three data directories gone) cannot
elect a leader, so nothing can be written, ever. ``--force-new-cluster``, on a surviving node's
data directory, rewrites that node's Raft state before the engine starts so that it comes up as a
**one-member cluster** that keeps its data; new members are then added with ``gantry add-node``.

What it does (node stopped, the data directory's lock held):

1. Finds the highest log index this node *knows* is committed: the commit index in
   ``raft.log.meta``, the database's applied index, the snapshot's index — whichever is highest.
   Entries after it in ``raft.log`` (this node held them, but no majority was known to) are
   **dropped**, as etcd drops them: they were never acknowledged by this node, and a client that
   was told such a write failed must not see it applied. Their count and indexes are logged.
2. Copies the old files into ``DATA_DIR/force-new-cluster-<unix time>/`` (hard links for the
   Raft files, which are only ever replaced by rename from here on; an SQLite backup of the
   database) before changing anything.
3. Applies the committed entries the database had not applied yet (restoring from the node's
   own snapshot first if that is ahead), through the same state machine as the writer.
4. Writes a **new snapshot** (``raft.snapshot``) at that index whose membership is this node
   alone, and a Raft log holding just the snapshot's two entries, and a term above every term the
   node has seen. pysyncobj takes membership from the snapshot (it overrides ``--peers``), so the
   old members are dropped through a snapshot, never by editing files by hand; the node never
   connects to them again and refuses their connections (they are not members).

Invariant: every step replaces a file by rename after an fsync, in an order where a crash at any
point leaves a data directory that starts either as before (old membership, uncommitted tail
possibly already dropped) or as the new one-member cluster; running ``--force-new-cluster`` again
finishes the job. Nothing acknowledged by this node is lost: applied entries are in the database,
committed ones are applied in step 3.

Trade-off (as etcd's): writes acknowledged by the lost majority that never reached this node are
lost; entries this node held but did not know to be committed are dropped. Pick the survivor with
the highest applied index (``gantry status``). Old members must never be restarted with their old
data (two of them would still form a majority of the *old* configuration: a second, diverging
cluster); wipe them and add them back as new members. See docs/OPERATIONS.md.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from pysyncobj.node import TCPNode

from gantry import db, preflight
from gantry.config import Config
from gantry.consensus import journal
from gantry.consensus.pysyncobj_compat import gantry_payload, is_membership_entry, membership_change
from gantry.state import snapshot, statemachine

log = structlog.get_logger("gantry.recovery")

#: Entries applied per transaction while catching the database up.
_BATCH = 512


class RecoveryError(RuntimeError):
    """``--force-new-cluster`` refused; the message says why and what to do. Nothing was
    changed."""


@dataclass
class Recovered:
    """What :func:`force_new_cluster` did (log indexes; terms are Raft terms)."""

    backup: pathlib.Path
    index: int  # the new snapshot's log index: the last entry known committed
    term: int  # the term the node starts in (above every term it had seen)
    previous_term: int
    applied_index: int  # the database's applied index afterwards
    caught_up: int  # committed entries applied to the database here (step 3)
    restored_from_snapshot: bool
    dropped: list[int] = field(default_factory=list)  # log indexes of the dropped entries
    previous_members: list[str] = field(default_factory=list)


@dataclass
class _State:
    entries: list[tuple[bytes, int, int]]
    meta: dict[str, Any]
    snap_meta: tuple[Any, Any, set[str]] | None  # (last, prev, cluster) of raft.snapshot


def _paths(cfg: Config) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    data = pathlib.Path(cfg.data_dir)
    return data / "raft.log", data / "raft.log.meta", data / "raft.snapshot"


def _read(cfg: Config) -> _State:
    log_path, meta_path, snap_path = _paths(cfg)
    scan = journal.scan_log(str(log_path))
    if scan.damage == "corrupt":
        raise RecoveryError(scan.describe())
    try:
        meta = journal.read_meta(str(meta_path))
    except journal.MetaCorrupt as e:
        raise RecoveryError(str(e)) from None
    snap_meta = None
    if snap_path.exists() and snap_path.stat().st_size > 0:
        try:
            meta_json, _ = snapshot.read_meta(snap_path)
            last, prev, cluster = snapshot.decode_meta(meta_json, str)
        except (snapshot.SnapshotError, ValueError, KeyError, TypeError) as e:
            raise RecoveryError(f"snapshot {snap_path} is unreadable ({e}); cannot recover from "
                                "this data directory") from None
        snap_meta = (last, prev, cluster)
    return _State(scan.entries, meta, snap_meta)


def check(cfg: Config) -> None:
    """Refuse ``--force-new-cluster`` before anything is touched (before migrations): with
    ``--peers`` (the new cluster has one member), or on a data directory with nothing to recover
    (a new node). Raises :class:`RecoveryError`."""
    if cfg.peers:
        raise RecoveryError(
            "--force-new-cluster starts a one-member cluster from this node's data: run it "
            f"without --peers / GANTRY_PEERS (given: {','.join(cfg.peers)}); add the new members "
            "afterwards with `gantry add-node`")
    state = _read(cfg)
    known = _known_committed(state, preflight_applied(cfg))
    if known < 2:
        raise RecoveryError(
            f"nothing to recover in {cfg.data_dir}: no committed Raft log entry or snapshot (a "
            "new or empty data directory). --force-new-cluster restarts a surviving member from "
            "its data; to start a new cluster, run `gantry serve` without it")


def preflight_applied(cfg: Config) -> int:
    """The database's applied index (0 when missing or fresh), read-only."""
    return preflight.applied_index(pathlib.Path(cfg.database))


def _known_committed(state: _State, applied: int) -> int:
    snap_index = int(state.snap_meta[0][1]) if state.snap_meta else 0
    return max(int(state.meta.get("raftCommitIndex", 0)), applied, snap_index)


def _entry_at(state: _State, index: int) -> tuple[bytes, int, int] | None:
    for e in state.entries:
        if e[1] == index:
            return e
    if state.snap_meta is not None:
        for e in state.snap_meta[:2]:
            if int(e[1]) == index:
                return (e[0], int(e[1]), int(e[2]))
    return None


def _backup(cfg: Config, conn: sqlite3.Connection) -> pathlib.Path:
    data = pathlib.Path(cfg.data_dir)
    base = data / f"force-new-cluster-{int(time.time())}"
    dest, n = base, 0
    while dest.exists():
        n += 1
        dest = base.with_name(f"{base.name}.{n}")
    dest.mkdir()
    for p in _paths(cfg):
        if not p.exists():
            continue
        try:  # these files are only replaced by rename from here on: a link keeps the old bytes
            os.link(p, dest / p.name)
        except OSError:
            shutil.copy2(p, dest / p.name)
    out = sqlite3.connect(str(dest / pathlib.Path(cfg.database).name))
    try:
        conn.backup(out)
    finally:
        out.close()
    for f in dest.iterdir():
        db.fsync_file(f)
    db.fsync_dir(dest)
    return dest


def _restore_if_ahead(snap_path: pathlib.Path, conn: sqlite3.Connection) -> bool:
    """The writer's rule for this node's own dump at start-up
    (:meth:`~gantry.actors.writer.WriterActor.restore_if_needed`): restore it when it is ahead of
    the database. Returns whether it restored."""
    snap_pos = snapshot.applied_position(snap_path)
    current = statemachine.applied_position(conn)
    keep = snap_pos[0] < current[0] or (
        snap_pos[0] == current[0] and (snap_pos[1] == current[1] or not snap_pos[1]
                                       or not current[1]))
    if keep:
        return False
    snapshot.restore(snap_path, conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return True


def _catch_up(conn: sqlite3.Connection, entries: list[tuple[bytes, int, int]], upto: int) -> int:
    """Apply the Gantry entries at or below ``upto`` the database has not applied yet; returns
    how many were applied."""
    applied = statemachine.applied_index(conn)
    todo = []
    for command, idx, term in entries:
        if applied < idx <= upto:
            try:
                payload = gantry_payload(command)
            except ValueError as e:
                raise RecoveryError(f"Raft log entry {idx} is not a Gantry entry ({e})") from None
            if payload is not None:
                todo.append((idx, payload, term))
    for i in range(0, len(todo), _BATCH):
        try:
            statemachine.apply_batch(conn, todo[i:i + _BATCH])
        except (statemachine.DivergenceError, ValueError) as e:
            raise RecoveryError(f"cannot apply the committed entries: {e}") from None
    return len(todo)


def _members_at(cfg: Config, state: _State, conn: sqlite3.Connection, index: int) -> list[str]:
    """The voting members (Raft addresses, sorted) as of log ``index``, for the audit line: the
    snapshot's configuration, or without one the members that announced themselves
    (``cluster_nodes``) less those a membership entry added (the log holds the whole history
    then, so those were not founders), with this node; then the log's membership changes after
    that, up to ``index``, in order. An undecodable change is skipped (the line informs only)."""
    snap_index = int(state.snap_meta[0][1]) if state.snap_meta is not None else 0
    changes: list[tuple[str, str]] = []
    for command, idx, _term in state.entries:
        if snap_index < idx <= index and is_membership_entry(command):
            try:
                changes.append(membership_change(command))
            except ValueError:
                continue
    if state.snap_meta is not None:
        members = {str(m) for m in state.snap_meta[2]}
    else:
        first: dict[str, str] = {}
        for kind, addr in changes:
            first.setdefault(addr, kind)
        announced = {r[0] for r in conn.execute("SELECT raft_addr FROM cluster_nodes")}
        members = {a for a in announced if first.get(a) != "add"} | {cfg.raft_addr}
    for kind, addr in changes:
        if kind == "add":
            members.add(addr)
        else:
            members.discard(addr)
    return sorted(members)


def force_new_cluster(cfg: Config) -> Recovered:
    """Turn this (stopped) node's data directory into a one-member cluster keeping its data (see
    the module docstring). Call with the data directory's lock held, after :func:`check` and the
    schema migrations, before the writer and Raft start. Raises :class:`RecoveryError`."""
    check(cfg)
    log_path, meta_path, snap_path = _paths(cfg)
    state = _read(cfg)
    conn = db.open_rw(pathlib.Path(cfg.database))
    try:
        backup = _backup(cfg, conn)
        restored = snap_path.exists() and snap_path.stat().st_size > 0 and \
            _restore_if_ahead(snap_path, conn)
        applied = statemachine.applied_index(conn)
        snap_index = int(state.snap_meta[0][1]) if state.snap_meta else 0
        log_last = state.entries[-1][1] if state.entries else 0
        available = max(log_last, snap_index)
        if applied > available:
            raise RecoveryError(
                f"database {cfg.database} is at log index {applied} but this node's Raft log and "
                f"snapshot end at {available}: the data directory mixes files of different "
                "histories; restore both from one node before recovering")
        index = min(_known_committed(state, applied), available)
        prev, last = _entry_at(state, index - 1), _entry_at(state, index)
        if prev is None or last is None:
            raise RecoveryError(
                f"the last committed entry (log index {index}) and the one before it are in "
                "neither raft.log nor raft.snapshot; cannot build a snapshot there")
        first = state.entries[0][1] if state.entries else index + 1
        if index > max(applied, snap_index) and first > max(applied, snap_index) + 1:
            raise RecoveryError(
                f"committed entries {max(applied, snap_index) + 1}..{first - 1} are in neither "
                "the database, the snapshot nor the Raft log; cannot recover from this directory")
        caught_up = _catch_up(conn, state.entries, index)
        applied = statemachine.applied_index(conn)
        kept = [e for e in state.entries if e[1] <= index]
        dropped = [e[1] for e in state.entries if e[1] > index]
        terms = [int(state.meta.get("currentTerm", 0)), *(e[2] for e in state.entries)]
        if state.snap_meta is not None:
            terms.append(int(state.snap_meta[0][2]))
        previous_term = max(terms)
        term = previous_term + 1
        previous_members = _members_at(cfg, state, conn, index)
        # Crash-safe order (module docstring): the uncommitted tail goes first, then the new
        # snapshot (its membership is this node alone), then term and commit index, then the log
        # is cut down to the snapshot's two entries (the Raft actor would do that at start too).
        journal.write_log(str(log_path), kept)
        meta_json = snapshot.encode_meta((last, prev, {TCPNode(cfg.raft_addr)}))
        snapshot.write(conn, snap_path, meta_json)
        journal.store_meta(str(meta_path), {"currentTerm": term, "votedForNodeId": None,
                                            "raftCommitIndex": index})
        journal.write_log(str(log_path), [prev, last])
    finally:
        conn.close()
    done = Recovered(backup=backup, index=index, term=term, previous_term=previous_term,
                     applied_index=applied, caught_up=caught_up,
                     restored_from_snapshot=bool(restored), dropped=dropped,
                     previous_members=previous_members)
    log.warning(
        "force_new_cluster", raft_addr=cfg.raft_addr, members=[cfg.raft_addr],
        previous_members=previous_members, snapshot_index=index, applied_index=applied,
        term=term, previous_term=previous_term, caught_up_entries=caught_up,
        restored_from_snapshot=bool(restored), dropped_uncommitted_entries=len(dropped),
        dropped_first_index=dropped[0] if dropped else None,
        dropped_last_index=dropped[-1] if dropped else None, backup=str(backup),
        hint="this node is now a one-member cluster: add new members with `gantry add-node`; "
             "never restart the old members with their old data (wipe them first)")
    if dropped:
        log.warning("force_new_cluster_dropped_entries", count=len(dropped),
                    first_index=dropped[0], last_index=dropped[-1],
                    why="held by this node but not known to be committed: etcd drops them too; "
                        "a write among them was never acknowledged by this node")
    return done
