"""Import a real directory tree's metadata into Gantry through the public gRPC API only.

Usage::

    python ops/import_tree.py [PATH] [--target HOST:PORT[,HOST:PORT...]]... [--bucket NAME] \\
        [--batch-size 1000 | --per-file] [--concurrency N] [--timeout 10] [--retry-for 30] \\
        [--progress-every 1000] [--progress-interval 5] [--limit N] [--json] \\
        [--tls-ca CA.pem [--tls-cert C --tls-key K]]

PATH defaults to this interpreter's standard library (``sysconfig.get_paths()["stdlib"]``), a
real tree of tens of thousands of files. The bucket defaults to ``import-<basename of PATH>``
made S3-valid; an existing bucket (``ALREADY_EXISTS``) is reused, and re-imported keys replace
their earlier objects (S3 semantics: the later commit wins).

For every regular file under PATH (symlinks are not followed) the importer records an object
with the key the path relative to PATH with ``/`` separators, the file's real size and
``last_modified_ms`` its mtime in ms. By default files go in batches: one ``PutObjects`` call
(one Raft log entry: PlanWrite + CommitObject for each file) per ``--batch-size`` files (at
most 5000, and at most 1 MiB of keys), ``--concurrency`` batches in flight (default 4); each
file's own result counts it imported or failed. ``--per-file`` sends the single RPCs instead,
``PlanWrite(bucket, key, size)`` then ``CommitObject(object_id, size, last_modified_ms)``,
``--concurrency`` files in flight (default 32). It does not read or upload file contents:
Gantry only keeps metadata.

Skipped and counted by reason (never sent): symlinks, sockets/FIFOs/devices, unreadable files
and directories, empty files (PlanWrite rejects size ≤ 0 with ``InvalidSize``), files over
5 GiB (``EntityTooLarge``), keys Gantry would refuse (over 1024 bytes of UTF-8, control bytes,
undecodable names), and mtimes at or before the Unix epoch (``InvalidLastModifiedMs``).

``--target`` names the nodes to talk to (default 127.0.0.1:8081): repeat it or give a comma
list, e.g. the ``targets=`` line ``ops/cluster.py`` prints. Calls go to one node at a time; on
UNAVAILABLE (the node died, stopped, or knows no leader) or DEADLINE_EXCEEDED the importer fails
over to the next target, in order, and stays there. Start-up needs any one target reachable.

Every call (a batch, or one file's PlanWrite or CommitObject) carries a fresh ``x-request-id``
(kept across its retries, on whichever node), so a cluster that already applied an attempt
answers the retry with the original outcome (a batch: the original per-file results) instead of
applying it twice (the request ids are remembered in the replicated state, so on every node: no
duplicate PENDING objects, no failed re-commit). Transient errors (UNAVAILABLE — e.g. "no leader"
during an election —, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with jittered back-off
for up to ``--retry-for`` seconds per call. Should a retried CommitObject still answer
FAILED_PRECONDITION (a server without request-id dedupe), an earlier attempt committed the
object and the file counts as imported. Every other error counts as failed (a batch's error:
each of its files, as ``PutObjects:<code>``).

Progress lines go to stderr every ``--progress-every`` files or ``--progress-interval`` seconds;
the final summary goes to stdout. Exit status: 0 when nothing failed, 1 when any file failed,
2 on bad arguments or when the bucket cannot be created.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import pathlib
import random
import re
import stat
import sys
import sysconfig
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from gantry import tlsconfig, validation  # noqa: E402
from gantry.api.batch import MAX_PUT_KEY_BYTES, MAX_PUT_OBJECTS  # noqa: E402
from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402
from gantry.pb.service.v1 import service_pb2_grpc  # noqa: E402

TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED})
#: Seconds the other targets get to connect once one has, so the first in order is preferred.
READY_GRACE_S = 0.5
#: Codes after which the next call goes to the next target (this one may be gone or cut off).
FAIL_OVER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class FileItem:
    """One regular file to import."""

    key: str
    size: int
    last_modified_ms: int


@dataclass
class Tally:
    """Counters shared by the walker and the workers (one event loop, so no locks)."""

    imported: int = 0
    failed: int = 0
    retries: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    first_failures: list[str] = field(default_factory=list)
    bytes_imported: int = 0
    failovers: int = 0
    batches: int = 0

    @property
    def skipped_total(self) -> int:
        """Files skipped, all reasons together."""
        return sum(self.skipped.values())

    @property
    def seen(self) -> int:
        """Files with an outcome so far (imported, failed or skipped)."""
        return self.imported + self.failed + self.skipped_total


def parse_targets(values: list[str] | None) -> list[str]:
    """``--target`` values (each one address or a comma list) as one list, in order, without
    repeats; ``["127.0.0.1:8081"]`` when none was given."""
    out: list[str] = []
    for v in values or ["127.0.0.1:8081"]:
        for addr in (a.strip() for a in v.split(",")):
            if addr and addr not in out:
                out.append(addr)
    return out


class Targets:
    """The nodes to talk to and which one is current. All workers share it (one event loop):
    a worker whose call failed on target ``i`` moves everyone to the next one, unless another
    worker already moved on."""

    def __init__(self, addrs: list[str], tally: Tally,
                 client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT) -> None:
        self.addrs = addrs
        self.channels = [client.aio_channel(a) for a in addrs]
        self.stubs = [service_pb2_grpc.GantryServiceStub(ch) for ch in self.channels]
        self.current = 0
        self._tally = tally

    async def first_ready(self, timeout_s: float) -> bool:
        """Make the first target in order that connects current: once one connects within
        ``timeout_s``, the others get ``READY_GRACE_S`` more to connect too."""
        waits = {asyncio.ensure_future(ch.channel_ready()): i for i, ch in enumerate(self.channels)}
        done, pending = await asyncio.wait(waits, timeout=timeout_s,
                                           return_when=asyncio.FIRST_COMPLETED)
        if done and pending:
            more, pending = await asyncio.wait(pending, timeout=READY_GRACE_S)
            done |= more
        for t in pending:
            t.cancel()
        if not done:
            return False
        self.current = min(waits[t] for t in done)
        return True

    def fail_over(self, failed: int, err: grpc.aio.AioRpcError) -> None:
        """Target ``failed`` answered ``err``: move on to the next one (once per failure)."""
        if len(self.addrs) < 2 or self.current != failed:
            return
        self.current = (failed + 1) % len(self.addrs)
        self._tally.failovers += 1
        print(f"import_tree: {self.addrs[failed]} answered {err.code().name}; failing over to "
              f"{self.addrs[self.current]}", file=sys.stderr, flush=True)

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


def derive_bucket_name(root: pathlib.Path) -> str:
    """``import-<basename>`` lower-cased and squeezed into S3 bucket-name rules."""
    base = root.resolve().name.lower() or "root"
    name = re.sub(r"[^a-z0-9.-]+", "-", f"import-{base}")
    name = re.sub(r"[.-]{2,}", "-", name)[:63].strip(".-")
    if len(name) < 3 or validation.bucket_name_error(name):
        name = "import-tree"
    return name


def walk_files(root: pathlib.Path, tally: Tally) -> Iterator[FileItem]:
    """Yield each importable regular file under ``root`` (sorted, depth first); count the rest
    in ``tally.skipped`` by reason. Symlinks, to files or directories, are never followed.
    A key is the path relative to ``root`` with ``/`` separators, built by joining names (no
    ``relpath`` per file: that was half of the walk's CPU)."""
    stack: list[tuple[str | pathlib.Path, str]] = [(root, "")]  # (directory, its key prefix)
    while stack:
        d, prefix = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            tally.skipped["unreadable_dir"] += 1
            continue
        subdirs = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                tally.skipped["unreadable"] += 1
                continue
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                tally.skipped["symlink"] += 1
                continue
            if stat.S_ISDIR(mode):
                subdirs.append((e.path, f"{prefix}{e.name}/"))
                continue
            if not stat.S_ISREG(mode):
                tally.skipped["special"] += 1
                continue
            if not os.access(e.path, os.R_OK):
                tally.skipped["unreadable"] += 1
                continue
            if st.st_size <= 0:
                tally.skipped["empty"] += 1
                continue
            if st.st_size > validation.MAX_OBJECT_SIZE:
                tally.skipped["too_large"] += 1
                continue
            key = prefix + e.name
            if validation.key_error(key):
                tally.skipped["invalid_key"] += 1
                continue
            mtime_ms = int(st.st_mtime * 1000)
            if mtime_ms <= 0:
                tally.skipped["invalid_mtime"] += 1
                continue
            yield FileItem(key, st.st_size, mtime_ms)
        stack.extend(reversed(subdirs))


async def call_with_retries(targets: Targets, method: str, request: object, timeout_s: float,
                            retry_for_s: float, tally: Tally
                            ) -> tuple[object | None, grpc.aio.AioRpcError | None, int]:
    """Call ``method`` (a GantryService RPC name) on the current target with one
    ``x-request-id`` for every attempt; after UNAVAILABLE or DEADLINE_EXCEEDED fail over to the
    next target; retry transient codes with jittered exponential back-off (0.1 s doubling to
    2 s) until ``retry_for_s`` seconds have passed. Returns (response or None, last error or
    None, attempts made)."""
    metadata = (("x-request-id", uuid.uuid4().hex),)
    give_up = time.monotonic() + retry_for_s
    attempt = 0
    while True:
        attempt += 1
        at = targets.current
        fn: Callable[..., Awaitable[object]] = getattr(targets.stubs[at], method)
        try:
            return await fn(request, timeout=timeout_s, metadata=metadata), None, attempt
        except grpc.aio.AioRpcError as e:
            if e.code() in FAIL_OVER:
                targets.fail_over(at, e)
            pause = min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if e.code() not in TRANSIENT or time.monotonic() + pause > give_up:
                return None, e, attempt
            tally.retries += 1
            await asyncio.sleep(pause)


async def import_one(targets: Targets, bucket: str, item: FileItem,
                     timeout_s: float, retry_for_s: float, tally: Tally) -> None:
    """PlanWrite + CommitObject for one file, recording the outcome in ``tally``."""
    plan, err, _ = await call_with_retries(
        targets, "PlanWrite", svc.PlanWriteRequest(bucket=bucket, key=item.key, size=item.size),
        timeout_s, retry_for_s, tally)
    if err is not None:
        _fail(tally, "PlanWrite", err, item.key)
        return
    assert isinstance(plan, svc.PlanWriteResponse)
    commit = svc.CommitObjectRequest(object_id=plan.write_plan.object_id, size=item.size,
                                     last_modified_ms=item.last_modified_ms)
    _, err, attempts = await call_with_retries(targets, "CommitObject", commit, timeout_s,
                                               retry_for_s, tally)
    if err is not None and not (attempts > 1 and err.code() == grpc.StatusCode.FAILED_PRECONDITION):
        _fail(tally, "CommitObject", err, item.key)
        return
    tally.imported += 1
    tally.bytes_imported += item.size


def _fail(tally: Tally, method: str, err: grpc.aio.AioRpcError, key: str) -> None:
    _failed(tally, method, err.code().name, str(err.details()), key)


def _failed(tally: Tally, method: str, code: str, message: str, key: str) -> None:
    tally.failed += 1
    tally.failures[f"{method}:{code}"] += 1
    if len(tally.first_failures) < 10:
        tally.first_failures.append(f"{method} {key!r}: {code} {message}")


_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


async def import_batch(targets: Targets, bucket: str, items: list[FileItem],
                       timeout_s: float, retry_for_s: float, tally: Tally) -> None:
    """One ``PutObjects`` call for ``items`` (retried and failed over with one x-request-id, so a
    retry answers the original per-file results); each file's result goes to ``tally``."""
    req = svc.PutObjectsRequest(bucket=bucket, objects=[
        svc.PutObjectsEntry(key=i.key, size=i.size, last_modified_ms=i.last_modified_ms)
        for i in items])
    resp, err, _ = await call_with_retries(targets, "PutObjects", req, timeout_s, retry_for_s,
                                           tally)
    tally.batches += 1
    if err is not None:
        for item in items:
            _fail(tally, "PutObjects", err, item.key)
        return
    assert isinstance(resp, svc.PutObjectsResponse) and len(resp.results) == len(items)
    for item, r in zip(items, resp.results, strict=True):
        if r.code == 0:
            tally.imported += 1
            tally.bytes_imported += item.size
        else:
            _failed(tally, "PutObjects", _CODE_NAMES.get(r.code, str(r.code)), r.message, item.key)


def batches(items: Iterator[FileItem], size: int, max_key_bytes: int = MAX_PUT_KEY_BYTES
            ) -> Iterator[list[FileItem]]:
    """``items`` in lists of at most ``size`` files and ``max_key_bytes`` bytes of keys (UTF-8),
    in order: what one PutObjects call accepts."""
    out: list[FileItem] = []
    key_bytes = 0
    for item in items:
        n = len(item.key.encode("utf-8", "surrogateescape"))
        if out and (len(out) >= size or key_bytes + n > max_key_bytes):
            yield out
            out, key_bytes = [], 0
        out.append(item)
        key_bytes += n
    if out:
        yield out


async def ensure_bucket(targets: Targets, bucket: str, timeout_s: float, retry_for_s: float,
                        tally: Tally) -> str:
    """Create ``bucket`` (retried and failed over like every call); return ``"created"`` or
    ``"reused"`` (ALREADY_EXISTS). Raises the last ``grpc.aio.AioRpcError`` otherwise."""
    _, err, _ = await call_with_retries(targets, "CreateBucket", svc.CreateBucketRequest(name=bucket),
                                        timeout_s, retry_for_s, tally)
    if err is None:
        return "created"
    if err.code() == grpc.StatusCode.ALREADY_EXISTS:
        return "reused"
    raise err


def _progress(tally: Tally, t0: float, final: bool = False) -> str:
    el = time.monotonic() - t0
    rate = tally.imported / el if el > 0 else 0.0
    word = "done" if final else "progress"
    return (f"{word}: imported={tally.imported} skipped={tally.skipped_total} failed={tally.failed} "
            f"elapsed_s={el:.1f} files_per_s={rate:.1f}")


async def run(ns: argparse.Namespace) -> int:
    """Import ``ns.path`` into ``ns.bucket`` through ``ns.target``; print progress and the summary."""
    root = pathlib.Path(ns.path)
    if not root.is_dir():
        print(f"import_tree: {root} is not a directory", file=sys.stderr)
        return 2
    bucket = ns.bucket or derive_bucket_name(root)
    if validation.bucket_name_error(bucket):
        print(f"import_tree: bucket name {bucket!r} is not a valid S3 bucket name", file=sys.stderr)
        return 2
    try:
        client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"import_tree: {e}", file=sys.stderr)
        return 2
    tally = Tally()
    addrs = parse_targets(ns.target)
    targets = Targets(addrs, tally, client)
    try:
        if not await targets.first_ready(ns.timeout):
            print(f"import_tree: cannot connect to {', '.join(addrs)} within {ns.timeout}s",
                  file=sys.stderr)
            return 2
        try:
            how = await ensure_bucket(targets, bucket, ns.timeout, ns.retry_for, tally)
        except grpc.aio.AioRpcError as e:
            print(f"import_tree: CreateBucket {bucket!r}: {e.code().name} {e.details()}", file=sys.stderr)
            return 2
        mode = "per-file" if ns.per_file else f"batches of {ns.batch_size}"
        print(f"importing {root} into bucket {bucket!r} ({how}) via {addrs[targets.current]} "
              f"(targets: {', '.join(addrs)}), {mode}, concurrency {ns.concurrency}",
              file=sys.stderr)
        t0 = time.monotonic()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=ns.concurrency * 4)
        last_print = [t0, 0]

        def maybe_progress() -> None:
            now = time.monotonic()
            if (tally.seen - last_print[1] >= ns.progress_every
                    or now - last_print[0] >= ns.progress_interval):
                last_print[0], last_print[1] = now, tally.seen
                print(_progress(tally, t0), file=sys.stderr, flush=True)

        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if ns.per_file:
                    await import_one(targets, bucket, item, ns.timeout, ns.retry_for, tally)
                else:
                    await import_batch(targets, bucket, item, ns.timeout, ns.retry_for, tally)
                maybe_progress()

        workers = [asyncio.create_task(worker()) for _ in range(ns.concurrency)]
        files = walk_files(root, tally)
        if ns.limit:
            files = itertools.islice(files, ns.limit)
        work: Iterator[Any] = files if ns.per_file else batches(files, ns.batch_size)
        for i, item in enumerate(work):
            await queue.put(item)
            if ns.per_file and i % 256 == 0:
                await asyncio.sleep(0)  # let workers and progress run while the walk is fast
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - t0
    finally:
        await targets.close()
    summary: dict[str, Any] = {
        "root": str(root), "bucket": bucket, "bucket_was": how, "targets": addrs,
        "mode": "per-file" if ns.per_file else "bulk", "batches": tally.batches,
        "failovers": tally.failovers,
        "imported": tally.imported, "skipped": tally.skipped_total, "failed": tally.failed,
        "skipped_by_reason": dict(sorted(tally.skipped.items())),
        "failed_by_code": dict(sorted(tally.failures.items())),
        "retries": tally.retries, "bytes": tally.bytes_imported,
        "elapsed_s": round(elapsed, 2),
        "files_per_s": round(tally.imported / elapsed, 1) if elapsed > 0 else 0.0,
    }
    for line in tally.first_failures:
        print(f"failed: {line}", file=sys.stderr)
    if ns.json:
        print(json.dumps(summary))
    else:
        reasons = ", ".join(f"{k}={v}" for k, v in summary["skipped_by_reason"].items()) or "-"
        codes = ", ".join(f"{k}={v}" for k, v in summary["failed_by_code"].items()) or "-"
        print(f"skipped by reason: {reasons}; failed by code: {codes}; retries: {tally.retries}; "
              f"failovers: {tally.failovers}")
        print(f"imported={tally.imported} skipped={tally.skipped_total} failed={tally.failed} "
              f"elapsed_s={summary['elapsed_s']} files_per_s={summary['files_per_s']}")
    return 1 if tally.failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description="Import a directory tree's file metadata into Gantry.")
    p.add_argument("path", nargs="?", default=sysconfig.get_paths()["stdlib"],
                   help="directory to import (default: the Python standard library)")
    p.add_argument("--target", action="append", metavar="HOST:PORT[,HOST:PORT...]",
                   help="a node to talk to; repeat it or give a comma list to fail over to the "
                        "next one when a node is unavailable (default 127.0.0.1:8081)")
    p.add_argument("--bucket", default="", help="bucket name (default import-<basename of PATH>)")
    p.add_argument("--per-file", action="store_true",
                   help="one PlanWrite + CommitObject per file instead of PutObjects batches")
    p.add_argument("--batch-size", type=int, default=1000,
                   help=f"files per PutObjects call, 1..{MAX_PUT_OBJECTS} (default 1000)")
    p.add_argument("--concurrency", type=int, default=0,
                   help="calls in flight: batches (default 4), or files with --per-file "
                        "(default 32)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, seconds (default 10)")
    p.add_argument("--retry-for", type=float, default=30.0,
                   help="seconds to keep retrying a call that failed transiently (default 30)")
    p.add_argument("--progress-every", type=int, default=1000,
                   help="print progress after this many files (default 1000)")
    p.add_argument("--progress-interval", type=float, default=5.0,
                   help="…or after this many seconds (default 5)")
    p.add_argument("--limit", type=int, default=0, help="import at most N files (default: all)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    tlsconfig.add_client_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring for the exit status."""
    ns = build_parser().parse_args(argv)
    ns.concurrency = ns.concurrency or (32 if ns.per_file else 4)
    if (ns.concurrency < 1 or ns.timeout <= 0 or ns.retry_for < 0 or ns.progress_every < 1
            or not 1 <= ns.batch_size <= MAX_PUT_OBJECTS):
        print("import_tree: need --concurrency ≥ 1, --timeout > 0, --retry-for ≥ 0, "
              f"--progress-every ≥ 1, 1 ≤ --batch-size ≤ {MAX_PUT_OBJECTS}", file=sys.stderr)
        return 2
    return asyncio.run(run(ns))


if __name__ == "__main__":
    sys.exit(main())
