"""Node configuration: command-line flags with ``GANTRY_*`` environment equivalents.

Upstream BlockCloset names are kept where they exist (``GANTRY_PORT`` default 8081,
``GANTRY_DB_PATH``, ``GANTRY_DB_DIR``, ``GANTRY_CRADLE_ADDR``, ``GANTRY_HEARTBEAT_INTERVAL``,
``APP_ENV``, ``LOG_FORMAT``, ``LOG_LEVEL``, ``ENABLE_REFLECTION``). A flag beats its environment
variable, which beats the default; an empty variable counts as unset. With nothing set the node
is a single-node cluster on 127.0.0.1 with its data under ``./data/``.

Each default is stated once, as a :class:`Config` field default. :data:`SETTINGS` is the one
table of what can be set from outside — field, environment variable(s), kind, flag — and
:func:`from_args` is the one place that reads the environment (through :func:`env`). Construction
normalises (derived defaults, lower-cased log settings, the canonical cradle address);
:meth:`Config.validate` only checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import pathlib
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gantry.validation import normalize_address

#: The database's file name inside the data directory, unless ``--db-path`` says otherwise.
DB_FILE = "gantry.db"


class ConfigError(ValueError):
    """A flag or environment variable has a value the node cannot run with."""


@dataclass
class Config:
    """Everything a node needs to start. Durations are seconds (``_s``) unless named otherwise."""

    data_dir: pathlib.Path = pathlib.Path("data")
    db_path: pathlib.Path | None = None  # None: data_dir / DB_FILE
    host: str = "127.0.0.1"
    port: int = 8081
    node_id: str = ""  # "": the Raft address
    raft_addr: str = "127.0.0.1:7081"
    peers: list[str] = field(default_factory=list)
    cradle_addr: str = ""
    raft_password: str = ""
    # gRPC TLS (gantry/tlsconfig.py) and ClusterService authorization (gantry/api/auth.py).
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    tls_client_ca: pathlib.Path | None = None  # set: clients must present a certificate (mTLS)
    tls_ca: pathlib.Path | None = None  # None: tls_client_ca, else the public roots
    insecure: bool = False  # plaintext gRPC beyond loopback, explicitly
    admin_token: str = ""
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
    # Prometheus /metrics and the /livez, /readyz probes (gantry/metrics.py); "" (or "off"): none.
    metrics_addr: str = "127.0.0.1:9081"
    # Writes are refused up front while a data file system has less than this free (bytes);
    # 0: only when a write actually fails for lack of space (gantry/diskspace.py).
    min_free_bytes: int = 1024 * 1024
    # Read-only worker processes answering reads beside the main process (gantry/readworker.py).
    read_workers: int = 0
    # `serve --force-new-cluster` only (never from the environment: a one-shot recovery that a
    # unit file must not repeat at every restart); see gantry/recovery.py.
    force_new_cluster: bool = False

    def __post_init__(self) -> None:
        if not self.node_id:
            self.node_id = self.raft_addr
        if self.db_path is None:
            self.db_path = self.data_dir / DB_FILE
        self.log_format = self.log_format.lower()
        self.log_level = self.log_level.lower()
        if self.metrics_addr.strip().lower() == "off":
            self.metrics_addr = ""
        if self.cradle_addr:
            try:
                self.cradle_addr = normalize_address(self.cradle_addr)
            except ValueError:
                pass  # left as given: validate() refuses it

    @property
    def database(self) -> pathlib.Path:
        assert self.db_path is not None
        return self.db_path

    @property
    def reflection(self) -> bool:
        if self.enable_reflection is None:
            return self.app_env == "development"
        return self.enable_reflection

    @property
    def grpc_beyond_loopback(self) -> bool:
        """The gRPC server listens on more than loopback (``--host`` 0.0.0.0, a LAN address, …)."""
        return not _is_loopback(self.host.strip("[]"))

    def _refuse_shared_ports(self, said: Callable[[str], str]) -> None:
        """Raise :class:`ConfigError` when two of the node's listeners (gRPC, Raft, metrics)
        would take one port: the same port on hosts that are the same, a wildcard, or resolve to
        a common address (``localhost`` and ``127.0.0.1``). The second bind used to fail after
        the data directory was made, saying only "in use?". Resolves host names only for two
        listeners on one port."""
        listens = [("port", self.host, self.port)]
        for name in ("raft_addr", "metrics_addr"):
            addr = getattr(self, name)
            if addr:
                h, _, p = addr.rpartition(":")
                listens.append((name, h, int(p) if p.isdigit() else 0))
        for i, (n1, h1, p1) in enumerate(listens):
            for n2, h2, p2 in listens[i + 1:]:
                if p1 and p1 == p2 and _hosts_overlap(h1, h2):
                    raise ConfigError(f"{said(n1)} and {said(n2)} both name port {p1}: the "
                                      "gRPC, Raft and metrics listeners need a port each")

    def validate(self, given: Mapping[str, str] | None = None) -> None:
        """Raise :class:`ConfigError` with a fix-it message for unusable values. Changes nothing.

        ``given`` maps a field set from the environment to the variable's name and text as
        written (``{"port": "GANTRY_PORT=99999"}``, as :func:`from_args` passes it), so the
        message names what the operator wrote; any other field is named by its flag."""
        def said(name: str) -> str:  # the setting as written: GANTRY_PORT=99999 / --port 99999
            return (given or {}).get(name) or f"{_flag(name)} {_show(getattr(self, name))}"

        def called(name: str) -> str:  # the setting's name: GANTRY_PEERS / --peers
            return (given or {}).get(name, "").partition("=")[0] or _flag(name)

        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{said('port')}: must be 0–65535")
        try:
            check_addr(self.raft_addr)
        except ConfigError:
            raise ConfigError(f"{said('raft_addr')}: expected HOST:PORT") from None
        seen: set[str] = set()
        for addr in self.peers:
            try:
                check_addr(addr)
            except ConfigError:
                raise ConfigError(f"{called('peers')} entry {addr!r}: expected HOST:PORT") from None
            if addr in seen:
                raise ConfigError(f"{called('peers')} lists {addr} twice: give each other node "
                                  "once")
            seen.add(addr)
        if self.raft_addr in self.peers:
            raise ConfigError(f"{called('peers')} must not include this node's own "
                              f"{called('raft_addr')} {self.raft_addr}")
        for name, addr in (("raft_addr", self.raft_addr), *(("peers", a) for a in self.peers)):
            if addr.rpartition(":")[0].count(":") or addr.startswith("["):  # IPv4 only
                shown = said(name) if name == "raft_addr" else f"{called('peers')} entry {addr}"
                raise ConfigError(f"{shown}: the Raft transport takes IPv4 addresses and host "
                                  "names only, not IPv6")
        if self.cradle_addr:
            try:
                normalize_address(self.cradle_addr)
            except ValueError:
                where = (given or {}).get("cradle_addr") or f"--cradle-addr {self.cradle_addr!r}"
                raise ConfigError(f"{where}: expected HOST:PORT") from None
        if self.metrics_addr:
            try:
                check_addr(self.metrics_addr)
            except ConfigError:
                raise ConfigError(f"{said('metrics_addr')}: expected HOST:PORT, or off") from None
        self._refuse_shared_ports(said)
        host = self.raft_addr.rpartition(":")[0].strip("[]")
        if not self.raft_password and not _is_loopback(host):
            raise ConfigError(
                f"{said('raft_addr')} is not a loopback address and no --raft-password "
                "(GANTRY_RAFT_PASSWORD) is set: Raft traffic would be unauthenticated pickles "
                "anyone on the network could use to run code on this node. Set the same password "
                "on every node.")
        self._validate_tls()
        if self.log_format not in ("", "json", "pretty"):
            raise ConfigError(f"LOG_FORMAT={self.log_format!r}: use json or pretty")
        if not math.isfinite(self.grace_s) or self.grace_s < 0:
            raise ConfigError(f"{said('grace_s')}: must be a number of seconds ≥ 0")
        if not 0 <= self.read_workers <= MAX_READ_WORKERS:
            raise ConfigError(f"{said('read_workers')}: must be 0–{MAX_READ_WORKERS}")
        if self.min_free_bytes < 0:
            raise ConfigError(f"{said('min_free_bytes')}: must be ≥ 0")
        if not math.isfinite(self.heartbeat_interval_s) or self.heartbeat_interval_s < 0:
            raise ConfigError(f"{said('heartbeat_interval_s')}: must be a duration ≥ 0")
        if self.snapshot_entries < 2:
            raise ConfigError(f"{said('snapshot_entries')}: must be ≥ 2")
        if not math.isfinite(self.snapshot_interval_s) or self.snapshot_interval_s <= 0:
            raise ConfigError(f"{said('snapshot_interval_s')}: must be > 0 seconds")
        if not 0 < self.raft_tick_s <= 0.1:
            raise ConfigError(f"{said('raft_tick_s')}: must be > 0 and ≤ 0.1 seconds")
        if not 0 < self.raft_append_period_s <= 1.0:  # pysyncobj asserts > 0 (a crash)
            raise ConfigError(f"{said('raft_append_period_s')}: must be > 0 and ≤ 1 second")
        if self.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"LOG_LEVEL={self.log_level!r}: use debug, info, warning, error "
                              "or critical")

    def _validate_tls(self) -> None:
        """TLS files usable, and no plaintext gRPC beyond loopback unless ``--insecure``."""
        if self.tls_cert or self.tls_key or self.tls_client_ca or self.tls_ca:
            from gantry import tlsconfig

            try:
                tlsconfig.check_server(self.tls_cert, self.tls_key, self.tls_client_ca, self.tls_ca)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.grpc_beyond_loopback and not self.tls_cert and not self.insecure:
            raise ConfigError(
                f"--host {self.host or '(every interface)'} is not a loopback address and no "
                "--tls-cert/--tls-key (GANTRY_TLS_CERT, GANTRY_TLS_KEY) is set: metadata, admin "
                "calls and tokens would cross the network in plaintext. Serve TLS, or pass "
                "--insecure (GANTRY_INSECURE=true) on a network you trust.")
        if self.admin_token and (len(self.admin_token) < MIN_ADMIN_TOKEN
                                 or not _printable_ascii(self.admin_token)):
            raise ConfigError(
                f"GANTRY_ADMIN_TOKEN: use at least {MIN_ADMIN_TOKEN} printable ASCII characters "
                "without spaces (e.g. `openssl rand -hex 32`)")


#: Most read workers a node runs (--read-workers).
MAX_READ_WORKERS = 64
#: Shortest admin token accepted (characters).
MIN_ADMIN_TOKEN = 16


def _printable_ascii(text: str) -> bool:
    return all(33 <= ord(c) <= 126 for c in text)


def default(name: str) -> Any:
    """The default of :class:`Config` field ``name`` (the one place defaults are stated)."""
    f = next(f for f in dataclasses.fields(Config) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


#: What ``gantry status`` and the other admin commands talk to by default: a default node.
DEFAULT_ADDR = f"{default('host')}:{default('port')}"


_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether listeners on hosts ``a`` and ``b`` (names or addresses, IPv6 in brackets or
    not) would share a port: the same text, a wildcard, or a common resolved address."""
    a, b = a.strip("[]"), b.strip("[]")
    if a == b or a in _WILDCARDS or b in _WILDCARDS:
        return True

    def resolved(h: str) -> set[str]:
        try:
            return {str(i[4][0]) for i in socket.getaddrinfo(h, None, type=socket.SOCK_STREAM)}
        except OSError:
            return {h}

    ra, rb = resolved(a), resolved(b)
    return bool(ra & rb) or bool((ra | rb) & _WILDCARDS)


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


def node_addr_arg(text: str) -> str:
    """argparse ``type`` of an admin command's ``--addr``: ``HOST:PORT`` with a port in
    1–65535 (gRPC read ``:99999`` as port 34463 and a missing port as 443); raises
    ``argparse.ArgumentTypeError``."""
    try:
        check_addr(text, "")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, port 1–65535") from None
    return text


def seconds_arg(text: str) -> float:
    """argparse ``type`` of a ``--timeout``: a finite number of seconds > 0; raises
    ``argparse.ArgumentTypeError``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds > 0")
    return value


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


def parse_bool(text: str, what: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``). Raises
    :class:`ConfigError`."""
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what}={text!r}: expected true or false")


@dataclass(frozen=True)
class Kind:
    """How a setting's text becomes a value. ``convert`` serves the flag (as argparse's ``type``:
    a ``ValueError`` is argparse's usual usage error); ``parse`` serves the environment and
    raises :class:`ConfigError` naming the variable."""

    convert: Callable[[str], Any]
    parse: Callable[[str, str], Any]


def _number(kind: Callable[[str], Any], expected: str) -> Kind:
    def parse(text: str, name: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r}: expected {expected}") from None

    return Kind(kind, parse)


def _total(convert: Callable[[str], Any]) -> Kind:
    """A kind every text converts to (strings, paths, lists)."""
    return Kind(convert, lambda text, _name: convert(text))


def _peers(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _parse_nonempty_path(text: str, name: str) -> pathlib.Path:
    try:
        return _path(text)
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"{name}: {e}") from None


def _optional_path(text: str) -> pathlib.Path | None:
    return pathlib.Path(text) if text else None


def _no_flag(text: str) -> Any:
    raise ValueError(text)  # booleans have no valued flag


def _duration_flag(text: str) -> float:
    """A duration flag's value (argparse ``type``): its usage error says what is expected."""
    try:
        return parse_duration(text, "value")
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration ≥ 0 like 30s, 500ms or 2m (0 = off)") from None


STR = _total(str)
def _path(text: str) -> pathlib.Path:
    """A path that must not be empty (``pathlib.Path("")`` is the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (the default is ./data)")
    return pathlib.Path(text)


PATH = Kind(_path, lambda text, name: _parse_nonempty_path(text, name))
OPTIONAL_PATH = _total(_optional_path)
LIST = _total(_peers)
INT = _number(int, "an integer")
FLOAT = _number(float, "a number")
BOOL = Kind(_no_flag, parse_bool)
DURATION = Kind(_duration_flag, parse_duration)


@dataclass(frozen=True)
class Setting:
    """One :class:`Config` field settable from outside. ``env``: its variables, the first one
    set wins. ``flag``: its ``serve`` flag (``""``: environment only); with ``flag_const`` the
    flag takes no value and sets that one. ``default_text``: the help's words for a derived
    default (else the field default is shown)."""

    field: str
    env: tuple[str, ...]
    kind: Kind
    help: str
    flag: str = ""
    flag_const: Any = None
    default_text: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", ("GANTRY_DATA_DIR", "GANTRY_DB_DIR"), PATH,
            "directory for the database, Raft journal and snapshots", "--data-dir"),
    Setting("db_path", ("GANTRY_DB_PATH",), OPTIONAL_PATH, "SQLite file", "--db-path",
            default_text=f"DATA_DIR/{DB_FILE}"),
    Setting("host", ("GANTRY_HOST",), STR, "gRPC listen host", "--host"),
    Setting("port", ("GANTRY_PORT",), INT, "gRPC listen port, 0 = any free port", "--port"),
    Setting("node_id", ("GANTRY_NODE_ID",), STR, "name in logs and status", "--node-id",
            default_text="the Raft address"),
    Setting("raft_addr", ("GANTRY_RAFT_ADDR",), STR, "this node's Raft HOST:PORT", "--raft-addr"),
    Setting("peers", ("GANTRY_PEERS",), LIST,
            "the other nodes' Raft addresses, comma-separated; empty = single-node cluster",
            "--peers"),
    Setting("cradle_addr", ("GANTRY_CRADLE_ADDR",), STR,
            "register this storage server HOST:PORT at start-up", "--cradle-addr"),
    Setting("raft_password", ("GANTRY_RAFT_PASSWORD",), STR,
            "encrypts and authenticates Raft traffic", "--raft-password"),
    Setting("tls_cert", ("GANTRY_TLS_CERT",), OPTIONAL_PATH,
            "PEM certificate (chain) the gRPC server presents; with --tls-key, serve TLS",
            "--tls-cert"),
    Setting("tls_key", ("GANTRY_TLS_KEY",), OPTIONAL_PATH, "PEM private key of --tls-cert",
            "--tls-key"),
    Setting("tls_client_ca", ("GANTRY_TLS_CLIENT_CA",), OPTIONAL_PATH,
            "require client certificates signed by this PEM CA bundle (mTLS)", "--tls-client-ca"),
    Setting("tls_ca", ("GANTRY_TLS_CA",), OPTIONAL_PATH,
            "PEM CA bundle for other nodes' certificates when this node calls them", "--tls-ca",
            default_text="--tls-client-ca, else the public roots"),
    Setting("insecure", ("GANTRY_INSECURE",), BOOL,
            "allow plaintext gRPC on a --host beyond loopback", "--insecure", flag_const=True),
    Setting("grace_s", ("GANTRY_GRACE",), FLOAT, "seconds in-flight RPCs get to finish on SIGTERM",
            "--grace"),
    Setting("snapshot_entries", ("GANTRY_SNAPSHOT_ENTRIES",), INT,
            "compact the Raft log after this many entries", "--snapshot-entries"),
    Setting("snapshot_interval_s", ("GANTRY_SNAPSHOT_INTERVAL",), FLOAT,
            "…or after this many seconds", "--snapshot-interval"),
    Setting("raft_fsync", ("GANTRY_RAFT_FSYNC",), BOOL,
            "do not fsync the Raft log: benchmarks only, a power cut can lose acknowledged writes",
            "--no-raft-fsync", flag_const=False),
    Setting("raft_tick_s", ("GANTRY_RAFT_TICK",), FLOAT, "Raft tick period in seconds",
            "--raft-tick"),
    Setting("heartbeat_interval_s", ("GANTRY_HEARTBEAT_INTERVAL",), DURATION,
            "cradle server heartbeat period (30s, 500ms, 2m), 0 = off", "--heartbeat-interval"),
    Setting("metrics_addr", ("GANTRY_METRICS_ADDR",), STR,
            "serve Prometheus /metrics and the /livez, /readyz probes on HOST:PORT; '' or off: "
            "disabled", "--metrics-addr"),
    Setting("min_free_bytes", ("GANTRY_MIN_FREE_BYTES",), INT,
            "refuse writes (RESOURCE_EXHAUSTED, disk full) while a data file system has less "
            "free than this, in bytes; 0 = only once a write fails", "--min-free-bytes"),
    Setting("read_workers", ("GANTRY_READ_WORKERS",), INT,
            "read-only worker processes that answer reads on other cores, sharing the gRPC port "
            "(SO_REUSEPORT); 0 = the main process answers everything", "--read-workers"),
    # Environment only.
    Setting("app_env", ("APP_ENV",), STR, "development turns on reflection and canned errors"),
    Setting("log_format", ("LOG_FORMAT",), STR, "json or pretty",
            default_text="pretty on a terminal, else json"),
    Setting("log_level", ("LOG_LEVEL",), STR, "debug, info, warning, error or critical"),
    Setting("enable_reflection", ("ENABLE_REFLECTION",), BOOL, "gRPC server reflection",
            default_text="on with APP_ENV=development"),
    Setting("admin_token", ("GANTRY_ADMIN_TOKEN",), STR,
            "bearer token for ClusterService changes when --host is beyond loopback",
            default_text="none"),
    # Timer experiments (docs/BENCHMARKS.md); the defaults are the measured choice.
    Setting("raft_batch", ("GANTRY_RAFT_BATCH",), BOOL, "batch Raft appends"),
    Setting("raft_append_period_s", ("GANTRY_RAFT_APPEND_PERIOD",), FLOAT,
            "Raft append period in seconds"),
)


def _flag(name: str) -> str:
    """The ``serve`` flag of :class:`Config` field ``name`` (its variable when it has none)."""
    s = next(s for s in SETTINGS if s.field == name)
    return s.flag or s.env[0]


def env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The environment variable ``name``, or None when it is unset or empty: the one way
    Gantry reads its environment."""
    v = (os.environ if environ is None else environ).get(name, "")
    return v or None


def _show_default(s: Setting) -> str:
    """The help's words for ``s``'s default (``""`` when there is nothing to say)."""
    if s.default_text:
        return s.default_text
    value = default(s.field)
    if value in ("", None, []):
        return ""
    return f"{_show(value)}s" if s.kind is DURATION else _show(value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, pathlib.Path) and not value.is_absolute():
        return f"./{value}"
    return str(value)


def _help(s: Setting) -> str:
    envs = " or ".join(s.env)
    if s.flag_const is not None:
        return f"{s.help} (env {envs}={_show(s.flag_const)})"
    d = _show_default(s)
    return f"{s.help} (env {envs}; default {d})" if d else f"{s.help} (env {envs})"


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``gantry serve`` flags (one per :data:`SETTINGS` row that has one). A flag not
    given leaves no attribute (``argparse.SUPPRESS``): :func:`from_args` then reads the
    environment."""
    for s in SETTINGS:
        if not s.flag:
            continue
        if s.flag_const is not None:
            p.add_argument(s.flag, dest=s.field, action="store_const", const=s.flag_const,
                           default=argparse.SUPPRESS, help=_help(s))
        else:
            p.add_argument(s.flag, dest=s.field, type=s.kind.convert, default=argparse.SUPPRESS,
                           metavar=s.flag[2:].upper().replace("-", "_"), help=_help(s))
    rows = [f"{s.env[0]} ({s.help}; default {_show_default(s)})" for s in SETTINGS if not s.flag]
    p.epilog = "Environment only: " + "; ".join(rows) + "."


def from_args(ns: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate a Config from parsed ``serve`` flags plus the environment
    (``os.environ`` unless ``environ`` is given). A setting neither flagged nor in the
    environment is left to the :class:`Config` default."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # field → "VARIABLE=text", for validate()'s messages
    for s in SETTINGS:
        if s.flag and hasattr(ns, s.field):
            values[s.field] = getattr(ns, s.field)
            continue
        for name in s.env:
            text = env(name, environ)
            if text is not None:
                values[s.field] = s.kind.parse(text, name)
                given[s.field] = f"{name}={text}"
                break
    cfg = Config(**values)
    cfg.validate(given)
    return cfg
