"""Request validation with upstream BlockCloset's rules and stable error strings.

Bucket names follow the S3 general-purpose bucket naming rules
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html); object keys follow
S3's "1 to 1024 bytes of UTF-8" rule plus upstream's ban on control bytes below 0x20 other than tab
and newline. Every function returns ``None`` when the input is valid, else the stable message that
the caller sends as the gRPC status message (``INVALID_ARGUMENT``).
"""

from __future__ import annotations

import ipaddress
import re

INVALID_BUCKET_NAME = "InvalidBucketName"
INVALID_KEY_NAME = "InvalidKeyName"
INVALID_SIZE = "InvalidSize"
ENTITY_TOO_LARGE = "EntityTooLarge"
INVALID_OBJECT_ID = "InvalidObjectID"
INVALID_LAST_MODIFIED_MS = "InvalidLastModifiedMs"

#: S3's single-PUT limit: 5 GiB, in bytes.
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * 1024

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_error(name: str) -> str | None:
    """``"InvalidBucketName"`` unless ``name`` is a valid S3 bucket name (3–63 chars of
    ``[a-z0-9.-]``, alphanumeric at both ends, no ``..``, not an IPv4 address, no reserved
    prefix/suffix)."""
    if not _BUCKET_RE.fullmatch(name):  # fullmatch: '$' would accept a trailing newline
        return INVALID_BUCKET_NAME
    if ".." in name:
        return INVALID_BUCKET_NAME
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return INVALID_BUCKET_NAME
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return INVALID_BUCKET_NAME


def key_error(key: str) -> str | None:
    """``"InvalidKeyName"`` unless ``key`` is 1–1024 bytes of UTF-8 without control bytes
    below 0x20 (tab and newline allowed)."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be UTF-8
        return INVALID_KEY_NAME
    if not 1 <= len(raw) <= 1024:
        return INVALID_KEY_NAME
    for b in raw:
        if b < 0x20 and b not in (0x09, 0x0A):
            return INVALID_KEY_NAME
    return None


#: Largest accepted ``last_modified_ms``: 9999-12-31T23:59:59.999Z (stored as Unix µs, which
#: must fit SQLite's signed 64-bit INTEGER).
MAX_LAST_MODIFIED_MS = 253_402_300_799_999


def last_modified_error(last_modified_ms: int) -> str | None:
    """``"InvalidLastModifiedMs"`` unless 0 < ``last_modified_ms`` (Unix ms) ≤ year 9999."""
    if not 0 < last_modified_ms <= MAX_LAST_MODIFIED_MS:
        return INVALID_LAST_MODIFIED_MS
    return None


def size_error(size: int) -> str | None:
    """``"InvalidSize"`` for size ≤ 0 bytes; ``"EntityTooLarge"`` above 5 GiB (5368709120 bytes)."""
    if size <= 0:
        return INVALID_SIZE
    if size > MAX_OBJECT_SIZE:
        return ENTITY_TOO_LARGE
    return None


INVALID_ADDRESS = "InvalidAddress"
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_address(addr: str) -> str:
    """Canonical ``host:port`` for a storage server address, or raise ValueError.

    Host: an IPv4 address, a bracketed IPv6 address (``[::1]:9100``) or an RFC 1123 host name
    (lower-cased; labels of 1–63 ``[a-z0-9-]``, 253 characters at most). Port: 1–65535, written
    without leading zeros. So ``127.0.0.1:019100`` and ``127.0.0.1:19100`` are one server.
    """
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or len(addr) > 300:
        raise ValueError(INVALID_ADDRESS)
    if host.startswith("[") and host.endswith("]"):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(INVALID_ADDRESS) from None
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            host = host.lower()
            if host.replace(".", "").isdigit() or len(host) > 253 or not all(
                    _LABEL_RE.match(label) for label in host.split(".")):
                raise ValueError(INVALID_ADDRESS) from None
    return f"{host}:{int(port)}"
