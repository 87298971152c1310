"""ListObjects against a reference model (hypothesis): random keys with '/', unicode and shared
prefixes; random prefix, delimiter, start_after and page sizes. Concatenated pages equal the
model's answer, and continuation tokens survive writes between pages."""

from __future__ import annotations

import pathlib
import sqlite3
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gantry.db import open_rw
from gantry.state import listing, migrate

ALPHABET = st.sampled_from(["a", "b", "/", "é", "z", "-", "😀", "A", "\u00ff", "\U0010fffd"])
KEYS = st.text(alphabet=ALPHABET, min_size=1, max_size=6)


def utf8_order(keys: set[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def model(keys: set[str], prefix: str, delimiter: str, start_after: str) -> list[tuple[str, bool]]:
    """The full ListObjectsV2 answer as (key or common prefix, is_prefix), in order."""
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for k in utf8_order(keys):
        if not k.startswith(prefix) or k.encode() <= start_after.encode():
            continue
        if delimiter:
            i = k.find(delimiter, len(prefix))
            if i >= 0:
                cp = k[: i + len(delimiter)]
                if cp not in seen:
                    seen.add(cp)
                    out.append((cp, True))
                continue
        out.append((k, False))
    return out


@pytest.fixture(scope="module")
def dbdir() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "list.db"
        migrate.upgrade(path)
        yield path


_counter = [0]


def _fresh_bucket(conn: sqlite3.Connection) -> str:
    _counter[0] += 1
    bid = f"B{_counter[0]:06d}"
    conn.execute("INSERT INTO buckets (id, name, created_at, updated_at) VALUES (?, ?, 0, 0)",
                 (bid, f"bucket-{_counter[0]}"))
    conn.execute("INSERT OR IGNORE INTO cradle_servers (id, address, status, available_bytes,"
                 " consecutive_misses, last_heartbeat_at, created_at, updated_at)"
                 " VALUES ('C', 'x:1', 'HEALTHY', -1, 0, 0, 0, 0)")
    return bid


def _put(conn: sqlite3.Connection, bid: str, key: str, state: str = "COMMITTED") -> None:
    _counter[0] += 1
    conn.execute(
        "INSERT INTO objects (object_id, bucket_id, key, state, size_expected, size_actual,"
        " last_modified, cradle_server_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 1, 1, 1000, 'C', 0, 0)", (f"O{_counter[0]:08d}", bid, key, state))


def _all_pages(conn: sqlite3.Connection, bid: str, prefix: str, delimiter: str, start_after: str,
               page: int, between: object = None) -> list[tuple[str, bool]]:
    got: list[tuple[str, bool]] = []
    token = ""
    for _ in range(1000):
        p = listing.list_objects(conn, bid, prefix, delimiter, start_after, page, token)
        assert len(p.contents) + len(p.common_prefixes) <= page
        items = [(e.key, False) for e in p.contents] + [(c, True) for c in p.common_prefixes]
        got += sorted(items, key=lambda x: x[0].encode())
        if not p.is_truncated:
            assert not p.next_token
            return got
        assert p.next_token
        token = p.next_token
        if callable(between):
            between()
    raise AssertionError("listing did not terminate")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.sets(KEYS, max_size=40), noise=st.sets(KEYS, max_size=10),
       prefix=st.sampled_from(["", "a", "a/", "é", "😀", "b/a"]),
       delimiter=st.sampled_from(["", "/", "a", "é/"]),
       start_after=st.sampled_from(["", "a", "a/b", "z"]),
       page=st.integers(min_value=1, max_value=7))
def test_pages_concatenate_to_the_model(dbdir: pathlib.Path, keys: set[str], noise: set[str],
                                        prefix: str, delimiter: str, start_after: str,
                                        page: int) -> None:
    conn = open_rw(dbdir)
    try:
        bid = _fresh_bucket(conn)
        for k in keys:
            _put(conn, bid, k)
        for k in noise - keys:  # non-COMMITTED rows never show
            _put(conn, bid, k, "REPLACED")
        got = _all_pages(conn, bid, prefix, delimiter, start_after, page)
        assert got == model(keys, prefix, delimiter, start_after)
    finally:
        conn.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stable=st.sets(KEYS, min_size=1, max_size=30), churn=st.lists(KEYS, max_size=30),
       delimiter=st.sampled_from(["", "/"]), page=st.integers(min_value=1, max_value=5))
def test_tokens_survive_writes_between_pages(dbdir: pathlib.Path, stable: set[str],
                                             churn: list[str], delimiter: str, page: int) -> None:
    conn = open_rw(dbdir)
    try:
        bid = _fresh_bucket(conn)
        for k in stable:
            _put(conn, bid, k)
        pending = [k for k in dict.fromkeys(churn) if k not in stable]

        def write_between() -> None:  # insert and delete other keys while paging
            if pending:
                k = pending.pop()
                _put(conn, bid, k)
                if len(pending) % 2:
                    conn.execute("UPDATE objects SET state = 'DELETED' WHERE bucket_id = ?"
                                 " AND key = ? AND state = 'COMMITTED'", (bid, k))

        got = _all_pages(conn, bid, "", delimiter, "", page, write_between)
        keys_out = [k for k, _ in got]
        assert keys_out == sorted(keys_out, key=str.encode), "order broken across pages"
        assert len(keys_out) == len(set(keys_out)), "an entry was returned twice"
        want = {k for k, _ in model(stable, "", delimiter, "")}
        assert want <= set(keys_out), f"stable keys missing: {want - set(keys_out)}"
    finally:
        conn.close()


def test_invalid_token_is_refused(dbdir: pathlib.Path) -> None:
    conn = open_rw(dbdir)
    try:
        with pytest.raises(listing.InvalidToken):
            listing.list_objects(conn, "nope", token="not-a-token!!")
    finally:
        conn.close()


def test_prefix_successor() -> None:
    assert listing.prefix_successor("a/") == "a0"
    assert listing.prefix_successor("a\U0010ffff") == "b"
    assert listing.prefix_successor("\U0010ffff") is None
    assert listing.prefix_successor("\ud7ff") == "\ue000"


@pytest.mark.parametrize("payload", ["[" * 1000, '{"a":1,"p":false}', '{"a":null,"p":false}',
                                     '{"a":"x","p":"x"}', '{"a":"\\ud800","p":false}', '[true,"a"]',
                                     '"a"', '{}'])
def test_crafted_tokens_are_refused(dbdir: pathlib.Path, payload: str) -> None:
    import base64

    token = base64.urlsafe_b64encode(payload.encode()).decode()
    conn = open_rw(dbdir)
    try:
        with pytest.raises(listing.InvalidToken):
            listing.list_objects(conn, "nope", token=token)
    finally:
        conn.close()
