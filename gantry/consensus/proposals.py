"""Futures of in-flight proposals on this node, keyed by the Command's ``proposal_id``.

The front door registers a future before proposing; the writer resolves it with
``(ApplyResult, log index)`` once the entry is applied here; the Raft node fails it with a typed
:class:`~gantry.consensus.errors.ConsensusError` when pysyncobj reports the proposal lost (not
leader, discarded, queue full), when leadership changes, or when the node stops. Only the
proposing node has a future for an entry; every other node applies it without anyone waiting.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any


class Proposals:
    """Thread-safe registry: ``register`` → Future[(ApplyResult, int)]; ``resolve``; ``fail``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}

    def register(self, proposal_id: str) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._lock:
            self._futures[proposal_id] = fut
        return fut

    def discard(self, proposal_id: str) -> None:
        with self._lock:
            self._futures.pop(proposal_id, None)

    def resolve(self, proposal_id: str, value: Any) -> None:
        with self._lock:
            fut = self._futures.pop(proposal_id, None)
        if fut is not None and not fut.done():
            fut.set_result(value)

    def fail(self, proposal_id: str, exc: BaseException) -> None:
        with self._lock:
            fut = self._futures.pop(proposal_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def fail_all(self, exc: BaseException) -> None:
        with self._lock:
            futs = list(self._futures.values())
            self._futures.clear()
        for fut in futs:
            if not fut.done():
                fut.set_exception(exc)

    def __len__(self) -> int:
        """Proposals waiting for their outcome (for metrics; a dict's size reads atomically)."""
        return len(self._futures)
