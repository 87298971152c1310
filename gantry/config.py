"""Node configuration: command-line flags with ``GANTRY_*`` environment equivalents.

Upstream BlockCloset names are kept where they exist (``GANTRY_PORT`` default 8081,
``GANTRY_DB_PATH``, ``GANTRY_DB_DIR``, ``GANTRY_CRADLE_ADDR``, ``GANTRY_HEARTBEAT_INTERVAL``,
``APP_ENV``, ``LOG_FORMAT``, ``LOG_LEVEL``, ``ENABLE_REFLECTION``). A flag beats its environment
variable, which beats the default. With nothing set the node is a single-node cluster on
127.0.0.1 with its data under ``./data/``.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A flag or environment variable has a value the node cannot run with."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _flag_or_env(flag: Any, name: str, default: Any, kind: type) -> Any:
    """The flag's value if given, else the environment variable ``name`` parsed as ``kind``,
    else ``default``. A malformed variable is a :class:`ConfigError` naming the variable."""
    if flag is not None:
        return flag
    v = os.environ.get(name, "")
    if not v:
        return default
    try:
        return kind(v)
    except ValueError:
        raise ConfigError(f"{name}={v!r}: expected {'an integer' if kind is int else 'a number'}"
                          ) from None


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    t = v.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={v!r}: expected true or false")


@dataclass
class Config:
    """Everything a node needs to start. Durations are seconds (``_s``) unless named otherwise."""

    data_dir: pathlib.Path = pathlib.Path("data")
    db_path: pathlib.Path | None = None
    host: str = "127.0.0.1"
    port: int = 8081
    node_id: str = ""
    raft_addr: str = "127.0.0.1:7081"
    peers: list[str] = field(default_factory=list)
    cradle_addr: str = ""
    raft_password: str = ""
    app_env: str = "production"
    log_format: str = ""  # "json" | "pretty" | "" (auto: pretty on a terminal, else json)
    log_level: str = "info"
    enable_reflection: bool | None = None  # None: on in development only
    grace_s: float = 10.0
    heartbeat_interval_s: float = 30.0
    # Raft timers, chosen by measurement (docs/BENCHMARKS.md).
    raft_tick_s: float = 0.005
    raft_append_period_s: float = 0.05
    raft_batch: bool = False
    raft_min_timeout_s: float = 0.4
    raft_max_timeout_s: float = 1.4
    raft_fsync: bool = True
    # Log compaction: a snapshot after this many entries or seconds, whichever first.
    snapshot_entries: int = 20000
    snapshot_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.node_id:
            self.node_id = self.raft_addr
        if self.db_path is None:
            self.db_path = self.data_dir / "gantry.db"

    @property
    def database(self) -> pathlib.Path:
        assert self.db_path is not None
        return self.db_path

    @property
    def reflection(self) -> bool:
        if self.enable_reflection is None:
            return self.app_env == "development"
        return self.enable_reflection

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a fix-it message for unusable values."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: must be 0–65535")
        for addr in [self.raft_addr, *self.peers]:
            check_addr(addr)
        if self.raft_addr in self.peers:
            raise ConfigError(f"--peers must not include this node's own --raft-addr {self.raft_addr}")
        if self.cradle_addr:
            from gantry.validation import normalize_address

            try:
                self.cradle_addr = normalize_address(self.cradle_addr)
            except ValueError:
                raise ConfigError(f"--cradle-addr {self.cradle_addr!r}: expected HOST:PORT") from None
        host = self.raft_addr.rpartition(":")[0].strip("[]")
        if not self.raft_password and not _is_loopback(host):
            raise ConfigError(
                f"--raft-addr {self.raft_addr} is not a loopback address and no --raft-password "
                "(GANTRY_RAFT_PASSWORD) is set: Raft traffic would be unauthenticated pickles "
                "anyone on the network could use to run code on this node. Set the same password "
                "on every node.")
        if self.log_format not in ("", "json", "pretty"):
            raise ConfigError(f"LOG_FORMAT={self.log_format!r}: use json or pretty")
        if not math.isfinite(self.grace_s) or self.grace_s < 0:
            raise ConfigError("--grace must be a number of seconds ≥ 0")
        if self.snapshot_entries < 2:
            raise ConfigError("--snapshot-entries must be ≥ 2")
        if not math.isfinite(self.snapshot_interval_s) or self.snapshot_interval_s <= 0:
            raise ConfigError("--snapshot-interval must be > 0 seconds")
        if not 0 < self.raft_tick_s <= 0.1:
            raise ConfigError("--raft-tick must be > 0 and ≤ 0.1 seconds")
        if self.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"LOG_LEVEL={self.log_level!r}: use debug, info, warning, error "
                              "or critical")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_addr(addr: str, what: str = "address") -> None:
    """Raise :class:`ConfigError` unless ``addr`` is ``HOST:PORT`` with a port in 1–65535."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} {addr!r}: expected HOST:PORT")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``gantry serve`` flags; defaults come from the environment."""
    p.add_argument("--data-dir", default=_env("GANTRY_DATA_DIR", _env("GANTRY_DB_DIR", "data")),
                   help="directory for the database, Raft journal and snapshots "
                        "(env GANTRY_DATA_DIR or GANTRY_DB_DIR; default ./data)")
    p.add_argument("--db-path", default=_env("GANTRY_DB_PATH", ""),
                   help="SQLite file (env GANTRY_DB_PATH; default DATA_DIR/gantry.db)")
    p.add_argument("--host", default=_env("GANTRY_HOST", "127.0.0.1"),
                   help="gRPC listen host (env GANTRY_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="gRPC listen port, 0 = any free port (env GANTRY_PORT; default 8081)")
    p.add_argument("--node-id", default=_env("GANTRY_NODE_ID", ""),
                   help="name in logs and status (env GANTRY_NODE_ID; default the Raft address)")
    p.add_argument("--raft-addr", default=_env("GANTRY_RAFT_ADDR", "127.0.0.1:7081"),
                   help="this node's Raft HOST:PORT (env GANTRY_RAFT_ADDR; default 127.0.0.1:7081)")
    p.add_argument("--peers", default=_env("GANTRY_PEERS", ""),
                   help="the other nodes' Raft addresses, comma-separated; empty = single-node "
                        "cluster (env GANTRY_PEERS)")
    p.add_argument("--cradle-addr", default=_env("GANTRY_CRADLE_ADDR", ""),
                   help="register this storage server HOST:PORT at start-up (env GANTRY_CRADLE_ADDR)")
    p.add_argument("--raft-password", default=_env("GANTRY_RAFT_PASSWORD", ""),
                   help="encrypts and authenticates Raft traffic (env GANTRY_RAFT_PASSWORD)")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds in-flight RPCs get to finish on SIGTERM (env GANTRY_GRACE)")
    p.add_argument("--snapshot-entries", type=int, default=None,
                   help="compact the Raft log after this many entries (env GANTRY_SNAPSHOT_ENTRIES)")
    p.add_argument("--snapshot-interval", type=float, default=None,
                   help="…or after this many seconds (env GANTRY_SNAPSHOT_INTERVAL)")
    p.add_argument("--no-raft-fsync", dest="raft_fsync", action="store_false",
                   default=None,
                   help="do not fsync the Raft log (benchmarks only: a power cut can lose "
                        "acknowledged writes; env GANTRY_RAFT_FSYNC=false)")
    p.add_argument("--raft-tick", type=float, default=None,
                   help="Raft tick period in seconds (env GANTRY_RAFT_TICK)")


def parse_duration(text: str, what: str) -> float:
    """Seconds from ``"30"``, ``"30s"``, ``"500ms"``, ``"2m"`` (Go-style units, as upstream's
    env values); ``0`` disables. Raises :class:`ConfigError`."""
    t = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], factor
            break
    else:
        mult = 1.0
    try:
        v = float(t) * mult
    except ValueError:
        raise ConfigError(f"{what}={text!r}: expected a duration like 30s or 500ms") from None
    if v < 0:
        raise ConfigError(f"{what}={text!r}: must not be negative")
    return v


def from_args(ns: argparse.Namespace) -> Config:
    """Build and validate a Config from parsed ``serve`` flags plus the plain environment."""
    refl = os.environ.get("ENABLE_REFLECTION")
    cfg = Config(
        data_dir=pathlib.Path(ns.data_dir),
        db_path=pathlib.Path(ns.db_path) if ns.db_path else None,
        host=ns.host,
        port=_flag_or_env(ns.port, "GANTRY_PORT", 8081, int),
        node_id=ns.node_id,
        raft_addr=ns.raft_addr,
        peers=[p.strip() for p in ns.peers.split(",") if p.strip()],
        cradle_addr=ns.cradle_addr,
        raft_password=ns.raft_password,
        app_env=_env("APP_ENV", "production"),
        log_format=_env("LOG_FORMAT", "").lower(),
        log_level=_env("LOG_LEVEL", "info").lower(),
        enable_reflection=None if refl in (None, "") else _env_bool("ENABLE_REFLECTION", False),
        grace_s=_flag_or_env(ns.grace, "GANTRY_GRACE", 10.0, float),
        heartbeat_interval_s=parse_duration(_env("GANTRY_HEARTBEAT_INTERVAL", "30s"),
                                            "GANTRY_HEARTBEAT_INTERVAL"),
        raft_tick_s=_flag_or_env(ns.raft_tick, "GANTRY_RAFT_TICK", 0.005, float),
        raft_fsync=_env_bool("GANTRY_RAFT_FSYNC", True) if ns.raft_fsync is None else False,
        # Timer experiments (docs/BENCHMARKS.md); the defaults are the measured choice.
        raft_batch=_env_bool("GANTRY_RAFT_BATCH", False),
        raft_append_period_s=_flag_or_env(None, "GANTRY_RAFT_APPEND_PERIOD", 0.05, float),
        snapshot_entries=_flag_or_env(ns.snapshot_entries, "GANTRY_SNAPSHOT_ENTRIES", 20000, int),
        snapshot_interval_s=_flag_or_env(ns.snapshot_interval, "GANTRY_SNAPSHOT_INTERVAL", 3600.0,
                                         float),
    )
    cfg.validate()
    return cfg
