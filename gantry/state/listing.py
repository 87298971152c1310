"""S3 ListObjectsV2 over the ``objects`` table (COMMITTED rows only), keys in UTF-8 binary order.

Semantics (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html): ``prefix``
filters keys; with a ``delimiter``, keys whose remainder after the prefix contains it roll up into
one common prefix (prefix + remainder up to and including the first delimiter); ``max_keys``
(1..1000, default 1000) bounds contents + common prefixes; listing starts after ``start_after``
or after the position a ``continuation_token`` names, whichever is later.

Continuation tokens name a *position in key space* (the last key or common prefix returned), not
an offset, so a page boundary is stable under concurrent writes: every key that exists for the
whole listing is returned exactly once, in order. Tokens are opaque base64url text.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass, field

MAX_KEYS = 1000
_BATCH = 256
#: Largest Unicode code point; a string of it sorts after every key that could share a prefix.
_MAX_CP = 0x10FFFF


class InvalidToken(ValueError):
    """The continuation token is not one this node issued."""


@dataclass
class Entry:
    key: str
    object_id: str
    size: int
    last_modified_us: int


@dataclass
class Page:
    contents: list[Entry] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_token: str = ""


def encode_token(after: str, skip_prefix: bool) -> str:
    raw = json.dumps({"a": after, "p": skip_prefix}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, bool]:
    """``(position, skip_prefix)``; raises :class:`InvalidToken`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as e:
        raise InvalidToken(str(e)) from None
    if not isinstance(d, dict) or not isinstance(d.get("a"), str) or not isinstance(d.get("p"), bool):
        raise InvalidToken("not a continuation token")
    try:
        d["a"].encode("utf-8")  # lone surrogates cannot be keys
    except UnicodeEncodeError:
        raise InvalidToken("not a continuation token") from None
    return d["a"], d["p"]


def prefix_successor(p: str) -> str | None:
    """The smallest string greater than every string that starts with ``p`` (code point order =
    UTF-8 byte order), or None if there is none (``p`` is all U+10FFFF)."""
    chars = list(p)
    while chars:
        last = ord(chars.pop())
        if last < _MAX_CP:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not valid in UTF-8 keys
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


def list_objects(conn: sqlite3.Connection, bucket_id: str, prefix: str = "", delimiter: str = "",
                 start_after: str = "", max_keys: int = MAX_KEYS, token: str = "") -> Page:
    """One page of the bucket's COMMITTED objects (see module docstring).

    Raises :class:`InvalidToken` for a token that does not decode."""
    if max_keys <= 0 or max_keys > MAX_KEYS:
        max_keys = MAX_KEYS
    # The cursor: list keys strictly after ``after``; or, after a common prefix, at/after its
    # successor (skipping every key under it).
    after, inclusive = start_after, False
    if token:
        t_after, skip = decode_token(token)
        if skip:
            succ = prefix_successor(t_after)
            if succ is None:
                return Page()
            cand, cand_inclusive = succ, True
        else:
            cand, cand_inclusive = t_after, False
        if cand > after or (cand == after and not cand_inclusive):
            after, inclusive = cand, cand_inclusive
    if prefix and (after < prefix or (after == prefix and inclusive)):
        after, inclusive = prefix, True

    page = Page()
    count = 0
    last: tuple[str, bool] | None = None
    # Without a delimiter one query fetches the page and one more row (is there more?). With one,
    # every common prefix re-seeks past its keys: after a re-seek fetch a couple of rows, and
    # grow the batch while rows keep being plain keys.
    batch = max_keys + 1 if not delimiter else _BATCH
    while True:
        op = ">=" if inclusive else ">"
        rows = conn.execute(
            f"SELECT key, object_id, size_actual, last_modified FROM objects"
            f" WHERE bucket_id = ? AND state = 'COMMITTED' AND key {op} ?"
            f" ORDER BY key LIMIT ?", (bucket_id, after, batch)).fetchall()
        if not rows:
            return page
        reseek = False
        for key, object_id, size, lm in rows:
            if prefix and not key.startswith(prefix):
                return page  # sorted: nothing further can match
            if count == max_keys:
                page.is_truncated = True
                assert last is not None
                page.next_token = encode_token(*last)
                return page
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
                    page.common_prefixes.append(cp)
                    count += 1
                    last = (cp, True)
                    succ = prefix_successor(cp)
                    if succ is None:
                        return page
                    after, inclusive = succ, True
                    reseek = True
                    break
            page.contents.append(Entry(key, object_id, int(size or 0), int(lm or 0)))
            count += 1
            last = (key, False)
            after, inclusive = key, False
        if not reseek and len(rows) < batch:
            return page
        if delimiter:
            batch = 2 if reseek else min(batch * 4, _BATCH)
