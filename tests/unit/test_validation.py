"""Table-driven tests of gantry/validation.py against DESIGN.md §1 (upstream BlockCloset rules)."""

from __future__ import annotations

import pytest

from gantry import validation
from gantry.validation import (
    ENTITY_TOO_LARGE,
    INVALID_BUCKET_NAME,
    INVALID_KEY_NAME,
    INVALID_SIZE,
    bucket_name_error,
    key_error,
    size_error,
)

# ---------------------------------------------------------------------------------------------
# Stable messages (they are API: clients match on them)
# ---------------------------------------------------------------------------------------------


def test_stable_message_strings() -> None:
    assert validation.INVALID_BUCKET_NAME == "InvalidBucketName"
    assert validation.INVALID_KEY_NAME == "InvalidKeyName"
    assert validation.INVALID_SIZE == "InvalidSize"
    assert validation.ENTITY_TOO_LARGE == "EntityTooLarge"
    assert validation.INVALID_OBJECT_ID == "InvalidObjectID"
    assert validation.INVALID_LAST_MODIFIED_MS == "InvalidLastModifiedMs"
    assert validation.MAX_OBJECT_SIZE == 5368709120


# ---------------------------------------------------------------------------------------------
# Bucket names
# ---------------------------------------------------------------------------------------------

VALID_BUCKETS = [
    pytest.param("abc", id="3-chars-min"),
    pytest.param("a" * 63, id="63-chars-max"),
    pytest.param("a" + "b" * 61 + "c", id="63-chars-mixed"),
    pytest.param("my.bucket.name", id="dots"),
    pytest.param("my-bucket-name", id="hyphens"),
    pytest.param("a-b.c-d", id="dots-and-hyphens"),
    pytest.param("123", id="all-digits"),
    pytest.param("0bucket9", id="digit-ends"),
    pytest.param("bucket2024", id="letters-and-digits"),
    pytest.param("a.b", id="single-dot"),
    pytest.param("a-b", id="single-hyphen"),
    pytest.param("a--b", id="double-hyphen-inside"),
    pytest.param("192.168.1", id="three-octets-not-ip"),
    pytest.param("192.168.1.1.5", id="five-octets-not-ip"),
    pytest.param("xn-abc", id="near-reserved-prefix-xn-"),
    pytest.param("axn--abc", id="reserved-prefix-not-at-start"),
    pytest.param("sthree", id="sthree-without-hyphen"),
    pytest.param("my-s3alias-bucket", id="reserved-suffix-in-middle"),
    pytest.param("bucket-s3alia", id="near-reserved-suffix"),
    pytest.param("my.mrapx", id="mrap-not-at-end"),
]


@pytest.mark.parametrize("name", VALID_BUCKETS)
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_error(name) is None


INVALID_BUCKETS = [
    pytest.param("", id="empty"),
    pytest.param("a", id="1-char"),
    pytest.param("ab", id="2-chars"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("a" * 1000, id="1000-chars"),
    pytest.param("MyBucket", id="uppercase"),
    pytest.param("mybucketA", id="uppercase-last"),
    pytest.param("my_bucket", id="underscore"),
    pytest.param("my bucket", id="space"),
    pytest.param("my/bucket", id="slash"),
    pytest.param("my:bucket", id="colon"),
    pytest.param("-bucket", id="leading-hyphen"),
    pytest.param("bucket-", id="trailing-hyphen"),
    pytest.param(".bucket", id="leading-dot"),
    pytest.param("bucket.", id="trailing-dot"),
    pytest.param("my..bucket", id="double-dot"),
    pytest.param("a..b", id="double-dot-short"),
    pytest.param("192.168.1.1", id="ipv4"),
    pytest.param("10.0.0.1", id="ipv4-10"),
    pytest.param("0.0.0.0", id="ipv4-zero"),
    pytest.param("255.255.255.255", id="ipv4-broadcast"),
    pytest.param("xn--bucket", id="prefix-xn--"),
    pytest.param("sthree-bucket", id="prefix-sthree-"),
    pytest.param("amzn-s3-demo-bucket", id="prefix-amzn-s3-demo-"),
    pytest.param("bucket-s3alias", id="suffix--s3alias"),
    pytest.param("bucket--ol-s3", id="suffix---ol-s3"),
    pytest.param("bucket.mrap", id="suffix-.mrap"),
    pytest.param("bucket--x-s3", id="suffix---x-s3"),
    pytest.param("bucket--table-s3", id="suffix---table-s3"),
    pytest.param("bücket", id="unicode-latin"),
    pytest.param("bucket\u00e9", id="unicode-last"),
    pytest.param("\uff41\uff42\uff43", id="unicode-fullwidth-abc"),
    pytest.param("\u0661\u0662\u0663", id="unicode-arabic-digits"),
    pytest.param("buck\u0131t", id="unicode-dotless-i"),
    pytest.param("bucket\x00", id="nul"),
    pytest.param("buc\tket", id="tab-inside"),
    pytest.param(" bucket", id="leading-space"),
    pytest.param(
        "abc\n",
        id="trailing-newline",
    ),
    pytest.param(
        "a" * 63 + "\n",
        id="63-chars-plus-newline",
    ),
]


@pytest.mark.parametrize("name", INVALID_BUCKETS)
def test_invalid_bucket_names(name: str) -> None:
    assert bucket_name_error(name) == INVALID_BUCKET_NAME


# ---------------------------------------------------------------------------------------------
# Object keys
# ---------------------------------------------------------------------------------------------

VALID_KEYS = [
    pytest.param("a", id="1-byte"),
    pytest.param("/", id="slash"),
    pytest.param("k" * 1024, id="1024-bytes"),
    pytest.param("\u00e9" * 512, id="512-e-acute-is-1024-bytes"),
    pytest.param("\u20ac" * 341 + "a", id="3-byte-chars-1024-bytes"),
    pytest.param("\U0001f600" * 256, id="256-emoji-is-1024-bytes"),
    pytest.param("dir/sub dir/file.txt", id="path-with-space"),
    pytest.param("tab\there", id="tab"),
    pytest.param("new\nline", id="newline"),
    pytest.param("\t", id="only-tab"),
    pytest.param("\n", id="only-newline"),
    pytest.param("del\x7f", id="0x7f-allowed"),
    pytest.param(" ", id="space-0x20"),
    pytest.param("nel\u0085", id="c1-control-u0085-bytes-not-below-0x20"),
    pytest.param("\u65e5\u672c\u8a9e", id="cjk"),
    pytest.param("\ufeffbom", id="bom"),
]


@pytest.mark.parametrize("key", VALID_KEYS)
def test_valid_keys(key: str) -> None:
    assert key_error(key) is None


INVALID_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("k" * 1025, id="1025-bytes"),
    pytest.param("k" * 5000, id="5000-bytes"),
    pytest.param("\u00e9" * 513, id="513-e-acute-is-1026-bytes"),
    pytest.param("\u00e9" * 512 + "a", id="1025-bytes-mixed"),
    pytest.param("\U0001f600" * 257, id="257-emoji-is-1028-bytes"),
    pytest.param("\u20ac" * 342, id="342-euro-is-1026-bytes"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("\x01", id="0x01"),
    pytest.param("a\x1f", id="0x1f"),
    pytest.param("line\r\nbreak", id="crlf"),
    pytest.param("a\rb", id="cr"),
    pytest.param("a\x0bb", id="vertical-tab"),
    pytest.param("a\x0cb", id="form-feed"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("\ud800", id="lone-high-surrogate"),
    pytest.param("abc\udfff", id="lone-low-surrogate"),
]


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys(key: str) -> None:
    assert key_error(key) == INVALID_KEY_NAME


@pytest.mark.parametrize("byte", [b for b in range(0x20) if b not in (0x09, 0x0A)],
                         ids=lambda b: f"0x{b:02x}")
def test_every_control_byte_below_0x20_is_rejected(byte: int) -> None:
    assert key_error(f"key{chr(byte)}suffix") == INVALID_KEY_NAME


@pytest.mark.parametrize("byte", [0x09, 0x0A, 0x20, 0x7E, 0x7F], ids=lambda b: f"0x{b:02x}")
def test_allowed_low_bytes(byte: int) -> None:
    assert key_error(f"key{chr(byte)}suffix") is None


def test_key_limit_is_bytes_not_characters() -> None:
    # 513 characters but 1026 bytes: too long even though len() < 1024.
    k = "\u00e9" * 513
    assert len(k) < 1024 < len(k.encode())
    assert key_error(k) == INVALID_KEY_NAME


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------

SIZES = [
    pytest.param(0, INVALID_SIZE, id="zero"),
    pytest.param(-1, INVALID_SIZE, id="minus-one"),
    pytest.param(-(2**63), INVALID_SIZE, id="int64-min"),
    pytest.param(1, None, id="one"),
    pytest.param(1024, None, id="1KiB"),
    pytest.param(5368709119, None, id="5GiB-minus-1"),
    pytest.param(5368709120, None, id="5GiB-exact"),
    pytest.param(5368709121, ENTITY_TOO_LARGE, id="5GiB-plus-1"),
    pytest.param(2**63 - 1, ENTITY_TOO_LARGE, id="int64-max"),
]


@pytest.mark.parametrize(("size", "expected"), SIZES)
def test_sizes(size: int, expected: str | None) -> None:
    assert size_error(size) == expected


@pytest.mark.parametrize("addr,want", [
    ("127.0.0.1:19100", "127.0.0.1:19100"), ("127.0.0.1:019100", "127.0.0.1:19100"),
    ("Cradle-1.Example.com:80", "cradle-1.example.com:80"), ("[::1]:9", "[::1]:9"),
    (" localhost:9100 ", "localhost:9100"),
])
def test_addresses_normalize(addr: str, want: str) -> None:
    assert validation.normalize_address(addr) == want


@pytest.mark.parametrize("addr", ["http://127.0.0.1:1", "host name:1", "::1:19100", "1.2.3.4.5:1",
                                  "a" * 300 + ":1", "exa_mple.com:80", "127.0.0.1:0", "x:", ":9",
                                  "127.0.0.1:65536", "-bad.com:1"])
def test_bad_addresses_are_refused(addr: str) -> None:
    with pytest.raises(ValueError):
        validation.normalize_address(addr)
