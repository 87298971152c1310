"""Build a Gantry node data directory offline, with one large bucket, for benchmarks.

Usage::

    python ops/seed_objects.py --data-dir DIR --objects 1000000 --bucket big \\
        [--keys-per-prefix 1000] [--cradle-addr 127.0.0.1:9] [--batch 100000]

Creates ``DIR/gantry.db`` with the current schema (``gantry.state.migrate.upgrade``, exactly what a node
runs at start-up), then inserts directly with SQL, in large transactions:

- one storage server (``cradle_servers``: ``--cradle-addr``, status HEALTHY, ``available_bytes``
  -1 = never reported, no heartbeat yet), unless one with that address already exists;
- one bucket named ``--bucket`` (refused if a live bucket of that name exists);
- ``--objects`` COMMITTED objects in it, keys ``dir-00042/file-000123.dat`` (``--keys-per-prefix``
  keys under each ``dir-NNNNN/``, so ``ListObjects(delimiter="/")`` has common prefixes to roll
  up), unique 26-character ULID-style object ids (time part = the row's creation millisecond,
  ordered like the rows), sizes between 1 B and 1 MiB, every timestamp in Unix microseconds
  (``last_modified`` at millisecond precision, as CommitObject stores it).

``raft_applied.applied_index`` is left as it was (0 on a new file) and no Raft journal is
written. Prints rows/s and the file size.

THIS IS A BENCHMARK FIXTURE. It bypasses the Raft log: the rows exist in this one file only and
no log entry describes them. Use it only for (a) a fresh single-node cluster started on ``DIR``
(``gantry serve --data-dir DIR ...``), which then serves the objects like any others, or (b) a new
multi-node cluster whose every node directory was seeded identically (copy the seeded
``gantry.db``, with the same ids, to every node) before any node's first start. Seeding a node
that already joined a cluster makes its state diverge from its peers' — a snapshot restore or
later entries would not reconcile it.

Speed: ``PRAGMA synchronous=OFF`` and a large page cache while seeding (a crash mid-seed leaves
a file to delete, not to trust), rows generated lazily and fed to ``executemany`` per
``--batch``-row transaction, WAL mode, then ``wal_checkpoint(TRUNCATE)`` so the result is one
self-contained file. One million rows took 13–23 s on a 2-vCPU VM shared with other work
(about 70k rows/s unloaded; most of it is Python building the rows), giving a 344 MB file.

Run it with the project's interpreter (``.venv/bin/python``); the ``gantry`` package is found
through the repository root.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from gantry import logs  # noqa: E402
from gantry.ids import new_ulid, now_us  # noqa: E402
from gantry.state import migrate  # noqa: E402

#: Crockford base32, the ULID alphabet.
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every 10-bit value as two base32 characters (a table lookup per 10 bits of id).
_PAIRS = [_B32[i >> 5] + _B32[i & 31] for i in range(1024)]
MAX_SIZE = 1 << 20


@dataclass
class SeedResult:
    """What :func:`seed` did: rows inserted, seconds spent inserting, file size afterwards."""

    db_path: pathlib.Path
    bucket: str
    bucket_id: str
    cradle_server_id: str
    objects: int
    insert_s: float
    total_s: float
    size_bytes: int

    @property
    def rows_per_s(self) -> float:
        """Objects inserted per second of the insert phase."""
        return self.objects / self.insert_s if self.insert_s > 0 else 0.0


def _b32(value: int, chars: int) -> str:
    """``value`` as exactly ``chars`` Crockford base32 characters (most significant first)."""
    out = []
    for _ in range(chars):
        out.append(_B32[value & 31])
        value >>= 5
    return "".join(reversed(out))


def key_of(i: int, keys_per_prefix: int) -> str:
    """The key of object number ``i``: ``dir-NNNNN/file-NNNNNN.dat``."""
    d, f = divmod(i, keys_per_prefix)
    return f"dir-{d:05d}/file-{f:06d}.dat"


def rows(n: int, bucket_id: str, cradle_id: str, keys_per_prefix: int, base_us: int,
         node: str) -> Iterator[tuple[str, str, str, str, int, int, int, str, int]]:
    """The ``n`` object rows for ``executemany``, lazily, in key order: row ``i`` has key
    :func:`key_of` ``(i)``, rows are created one microsecond apart (the last at ``base_us``), each
    ``(object_id, bucket_id, key, 'COMMITTED', size_expected, size_actual, last_modified,
    cradle_server_id, created_at)`` (``updated_at`` repeats ``created_at`` in the SQL).

    Object ids have the ULID shape: 10 characters of the row's millisecond, the 8-character
    per-run ``node`` part, then ``i`` as 8 characters (40 bits) — unique per run, and ordered
    like the keys, so every index of ``objects`` is filled by appending."""
    files = [f"/file-{f:06d}.dat" for f in range(min(keys_per_prefix, n))]
    first_us = base_us - (n - 1)
    pairs = _PAIRS
    cached_ms = cached_hi = -1
    head = ""
    i = 0
    for d in range((n + keys_per_prefix - 1) // keys_per_prefix):
        dirname = f"dir-{d:05d}"
        for f in files if n - i >= len(files) else files[: n - i]:
            ts = first_us + i
            ms = ts // 1000
            hi = i >> 10
            if ms != cached_ms or hi != cached_hi:
                cached_ms, cached_hi = ms, hi
                head = (_b32(ms, 10) + node + pairs[(i >> 30) & 1023] + pairs[(i >> 20) & 1023]
                        + pairs[hi & 1023])
            size = (i * 2654435761) % MAX_SIZE + 1  # spread deterministically over 1 B .. 1 MiB
            yield (head + pairs[i & 1023], bucket_id, dirname + f, "COMMITTED", size, size,
                   ms * 1000, cradle_id, ts)
            i += 1


def seed(data_dir: pathlib.Path, objects: int, bucket: str, keys_per_prefix: int = 1000,
         cradle_addr: str = "127.0.0.1:9", batch: int = 100_000, db_path: pathlib.Path | None = None,
         progress: bool = False) -> SeedResult:
    """Migrate ``DIR/gantry.db`` (or ``db_path``) and insert the rows (see the module docstring).

    Raises ``ValueError`` when a live bucket named ``bucket`` already exists."""
    t_start = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    db = db_path or data_dir / "gantry.db"
    migrate.upgrade(db)
    conn = sqlite3.connect(str(db), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-524288")  # 512 MiB: the indexes stay in memory
        conn.execute("PRAGMA temp_store=MEMORY")
        now = now_us()
        conn.execute("BEGIN")
        if conn.execute("SELECT 1 FROM buckets WHERE name = ? AND deleted_at IS NULL",
                        (bucket,)).fetchone():
            conn.execute("ROLLBACK")
            raise ValueError(f"bucket {bucket!r} already exists in {db}")
        row = conn.execute("SELECT id FROM cradle_servers WHERE address = ?", (cradle_addr,)).fetchone()
        if row:
            cradle_id = str(row[0])
        else:
            cradle_id = new_ulid()
            conn.execute(
                "INSERT INTO cradle_servers (id, address, status, available_bytes, consecutive_misses,"
                " last_heartbeat_at, created_at, updated_at) VALUES (?, ?, 'HEALTHY', -1, 0, 0, ?, ?)",
                (cradle_id, cradle_addr, now - objects - 2, now - objects - 2))
        bucket_id = new_ulid()
        conn.execute("INSERT INTO buckets (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                     (bucket_id, bucket, now - objects - 1, now - objects - 1))
        conn.execute("COMMIT")
        node = _b32(secrets.randbits(40), 8)
        sql = ("INSERT INTO objects (object_id, bucket_id, key, state, size_expected, size_actual,"
               " last_modified, cradle_server_id, created_at, updated_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)")
        t0 = time.perf_counter()
        gen = rows(objects, bucket_id, cradle_id, keys_per_prefix, now, node)
        for start in range(0, objects, batch):
            stop = min(objects, start + batch)
            conn.execute("BEGIN")
            conn.executemany(sql, itertools.islice(gen, stop - start))
            conn.execute("COMMIT")
            if progress:
                el = time.perf_counter() - t0
                print(f"  {stop:>10,} rows  {el:6.1f}s  {stop / el:,.0f} rows/s", flush=True)
        insert_s = time.perf_counter() - t0
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    size = db.stat().st_size
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        size += wal.stat().st_size
    return SeedResult(db, bucket, bucket_id, cradle_id, objects, insert_s,
                      time.perf_counter() - t_start, size)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description="Seed a Gantry data directory offline with COMMITTED objects (benchmark "
                    "fixture: bypasses the Raft log; fresh nodes only).")
    p.add_argument("--data-dir", required=True, help="node data directory (gantry.db goes here)")
    p.add_argument("--db-path", default="", help="database file (default DATA_DIR/gantry.db)")
    p.add_argument("--objects", type=int, default=1_000_000, help="objects to insert (default 1000000)")
    p.add_argument("--bucket", default="big", help="bucket name (default big)")
    p.add_argument("--keys-per-prefix", type=int, default=1000,
                   help="keys under each dir-NNNNN/ prefix (default 1000)")
    p.add_argument("--cradle-addr", default="127.0.0.1:9",
                   help="address of the storage server the objects live on (default 127.0.0.1:9)")
    p.add_argument("--batch", type=int, default=100_000, help="rows per transaction (default 100000)")
    p.add_argument("--quiet", action="store_true", help="no per-transaction progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    """Seed, print the figures. Exit 0, or 2 on bad flags / an existing bucket."""
    ns = build_parser().parse_args(argv)
    logs.configure("seed_objects", level="warning")
    if ns.objects < 0 or ns.keys_per_prefix < 1 or ns.batch < 1:
        print("seed_objects: need --objects ≥ 0, --keys-per-prefix ≥ 1, --batch ≥ 1", file=sys.stderr)
        return 2
    data_dir = pathlib.Path(ns.data_dir)
    try:
        r = seed(data_dir, ns.objects, ns.bucket, ns.keys_per_prefix, ns.cradle_addr, ns.batch,
                 pathlib.Path(ns.db_path) if ns.db_path else None, progress=not ns.quiet)
    except ValueError as e:
        print(f"seed_objects: {e}", file=sys.stderr)
        return 2
    print(f"seeded {r.objects:,} objects into bucket {r.bucket!r} (id {r.bucket_id}) in {r.db_path}")
    print(f"insert {r.insert_s:.2f}s = {r.rows_per_s:,.0f} rows/s; total {r.total_s:.2f}s "
          f"(migrations, checkpoint included)")
    print(f"file   {r.size_bytes / 1e6:.1f} MB ({r.size_bytes:,} bytes); cradle server "
          f"{r.cradle_server_id}; raft applied_index left unchanged")
    print(f"serve  gantry serve --data-dir {os.fspath(data_dir)}  (fresh single node, or every node "
          "seeded identically before first start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
