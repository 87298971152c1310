"""Configuration: defaults, environment, and refusal of unsafe or malformed settings."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from gantry import config


def parse(argv: list[str]) -> config.Config:
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    return config.from_args(p.parse_args(argv))


def test_defaults_are_a_single_node_cluster_under_data(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("GANTRY_PORT", "GANTRY_PEERS", "GANTRY_DATA_DIR", "GANTRY_DB_DIR", "GANTRY_DB_PATH",
              "GANTRY_RAFT_ADDR"):
        monkeypatch.delenv(k, raising=False)
    cfg = parse([])
    assert (cfg.host, cfg.port, cfg.peers) == ("127.0.0.1", 8081, [])
    assert str(cfg.database) == "data/gantry.db"


def test_env_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_PORT", "9000")
    monkeypatch.setenv("GANTRY_PEERS", "127.0.0.1:2,127.0.0.1:3")
    cfg = parse(["--port", "9100"])
    assert cfg.port == 9100  # the flag beats the environment
    assert cfg.peers == ["127.0.0.1:2", "127.0.0.1:3"]


def test_off_loopback_raft_needs_a_password() -> None:
    with pytest.raises(config.ConfigError, match="raft-password"):
        parse(["--raft-addr", "10.1.2.3:7081"])
    assert parse(["--raft-addr", "10.1.2.3:7081", "--raft-password", "s3cret"]).raft_password
    assert parse(["--raft-addr", "localhost:7081"]).raft_addr == "localhost:7081"
    with pytest.raises(config.ConfigError, match="not IPv6"):  # pysyncobj resolves IPv4 only
        parse(["--raft-addr", "[::1]:7081"])


@pytest.mark.parametrize("argv", [["--raft-addr", "nohost"], ["--peers", "a:b"], ["--port", "70000"],
                                  ["--cradle-addr", "x"]])
def test_malformed_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(config.ConfigError):
        parse(argv)


@pytest.mark.parametrize("name,value", [("GANTRY_PORT", "abc"), ("GANTRY_GRACE", "abc"),
                                         ("GANTRY_SNAPSHOT_ENTRIES", "x")])
def test_bad_numbers_in_env_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                              value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        parse([])


@pytest.mark.parametrize("name,value", [("GANTRY_SNAPSHOT_ENTRIES", "0"), ("GANTRY_RAFT_TICK", "0"),
                                         ("LOG_LEVEL", "loud"), ("GANTRY_RAFT_FSYNC", "maybe"),
                                         ("GANTRY_HEARTBEAT_INTERVAL", "soon"),
                                         ("GANTRY_GRACE", "nan")])
def test_unusable_values_are_refused_with_a_message(monkeypatch: pytest.MonkeyPatch, name: str,
                                                    value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError):
        parse([])


def _clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for s in config.SETTINGS:
        for name in s.env:
            monkeypatch.delenv(name, raising=False)


def test_every_default_is_the_config_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Defaults are stated once, on the dataclass: nothing set parses to exactly Config().
    _clear_settings_env(monkeypatch)
    parsed, plain = parse([]), config.Config()
    for f in dataclasses.fields(config.Config):
        assert getattr(parsed, f.name) == getattr(plain, f.name), f.name


def test_settings_name_real_fields_once() -> None:
    names = [s.field for s in config.SETTINGS]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(config.Config)}
    assert set(names) <= fields
    # Not settable from outside, on purpose: the election timeouts; and --force-new-cluster,
    # a one-shot serve flag (gantry/cli.py) that no environment variable may repeat.
    assert fields - set(names) == {"raft_min_timeout_s", "raft_max_timeout_s",
                                   "force_new_cluster"}


def test_help_shows_the_dataclass_defaults() -> None:
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    text = " ".join(p.format_help().split())
    assert "GANTRY_PORT; default 8081" in text
    assert "GANTRY_RAFT_ADDR; default 127.0.0.1:7081" in text
    assert ("--heartbeat-interval HEARTBEAT_INTERVAL cradle server heartbeat period (30s, 500ms, "
            "2m), 0 = off (env GANTRY_HEARTBEAT_INTERVAL; default 30s)") in text
    for flag, words in (("--grace", "GANTRY_GRACE; default 10"),
                        ("--snapshot-entries", "GANTRY_SNAPSHOT_ENTRIES; default 20000"),
                        ("--snapshot-interval", "GANTRY_SNAPSHOT_INTERVAL; default 3600"),
                        ("--raft-tick", "GANTRY_RAFT_TICK; default 0.005")):
        assert flag in text and words in text
    assert config.DEFAULT_ADDR == "127.0.0.1:8081"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_settings_env(monkeypatch)
    for name in ("GANTRY_PORT", "GANTRY_HOST", "GANTRY_DATA_DIR", "LOG_LEVEL", "ENABLE_REFLECTION",
                 "GANTRY_RAFT_FSYNC"):
        monkeypatch.setenv(name, "")
    cfg = parse([])
    assert (cfg.port, cfg.host, str(cfg.database), cfg.log_level) == (8081, "127.0.0.1",
                                                                      "data/gantry.db", "info")
    assert cfg.enable_reflection is None and cfg.raft_fsync


def test_environment_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_settings_env(monkeypatch)
    monkeypatch.setenv("GANTRY_DB_DIR", "legacy")
    monkeypatch.setenv("ENABLE_REFLECTION", "yes")
    monkeypatch.setenv("GANTRY_HEARTBEAT_INTERVAL", "500ms")
    monkeypatch.setenv("GANTRY_RAFT_FSYNC", "true")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    cfg = parse(["--no-raft-fsync"])
    assert str(cfg.database) == "legacy/gantry.db"
    assert cfg.enable_reflection is True and cfg.reflection
    assert cfg.heartbeat_interval_s == 0.5
    assert cfg.raft_fsync is False  # the flag beats GANTRY_RAFT_FSYNC=true
    assert cfg.log_format == "json"
    monkeypatch.setenv("GANTRY_DATA_DIR", "new")  # GANTRY_DATA_DIR beats upstream's GANTRY_DB_DIR
    assert str(parse([]).database) == "new/gantry.db"
    monkeypatch.setenv("ENABLE_REFLECTION", "maybe")
    with pytest.raises(config.ConfigError, match="ENABLE_REFLECTION='maybe': expected true or false"):
        parse([])


def test_from_args_reads_the_given_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_PORT", "9000")
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    assert config.from_args(p.parse_args([]), environ={"GANTRY_PORT": "9100"}).port == 9100
    assert config.from_args(p.parse_args([]), environ={}).port == 8081


def test_validate_only_checks() -> None:
    cfg = config.Config(cradle_addr="Cradle.example:019100", log_level="DEBUG")
    # Construction normalises...
    assert (cfg.cradle_addr, cfg.log_level, cfg.node_id) == ("cradle.example:19100", "debug",
                                                             "127.0.0.1:7081")
    before = dataclasses.asdict(cfg)
    cfg.validate()
    assert dataclasses.asdict(cfg) == before  # ...validate() changes nothing
    bad = config.Config(cradle_addr="x")
    with pytest.raises(config.ConfigError, match="--cradle-addr 'x': expected HOST:PORT"):
        bad.validate()
    assert bad.cradle_addr == "x"


def test_heartbeat_interval_has_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_settings_env(monkeypatch)
    assert parse(["--heartbeat-interval", "250ms"]).heartbeat_interval_s == 0.25
    assert parse(["--heartbeat-interval", "0"]).heartbeat_interval_s == 0
    monkeypatch.setenv("GANTRY_HEARTBEAT_INTERVAL", "2m")
    assert parse([]).heartbeat_interval_s == 120
    assert parse(["--heartbeat-interval", "5s"]).heartbeat_interval_s == 5  # the flag wins
    with pytest.raises(SystemExit):  # argparse's usage error
        parse(["--heartbeat-interval", "soon"])
    with pytest.raises(config.ConfigError, match="^--heartbeat-interval inf: must be a duration"):
        parse(["--heartbeat-interval", "inf"])


@pytest.mark.parametrize("name,value,message", [
    ("GANTRY_PORT", "99999", "GANTRY_PORT=99999: must be 0–65535"),
    ("GANTRY_GRACE", "-1", "GANTRY_GRACE=-1: must be a number of seconds ≥ 0"),
    ("GANTRY_SNAPSHOT_ENTRIES", "1", "GANTRY_SNAPSHOT_ENTRIES=1: must be ≥ 2"),
    ("GANTRY_SNAPSHOT_INTERVAL", "0", "GANTRY_SNAPSHOT_INTERVAL=0: must be > 0 seconds"),
    ("GANTRY_RAFT_TICK", "1", "GANTRY_RAFT_TICK=1: must be > 0 and ≤ 0.1 seconds"),
    ("GANTRY_RAFT_APPEND_PERIOD", "0", "GANTRY_RAFT_APPEND_PERIOD=0: must be > 0 and ≤ 1 second"),
    ("GANTRY_RAFT_APPEND_PERIOD", "nan", "GANTRY_RAFT_APPEND_PERIOD=nan: must be > 0 and ≤ 1"),
    ("GANTRY_HEARTBEAT_INTERVAL", "nan", "GANTRY_HEARTBEAT_INTERVAL=nan: must be a duration ≥ 0"),
    ("GANTRY_RAFT_ADDR", "nohost", "GANTRY_RAFT_ADDR=nohost: expected HOST:PORT"),
    ("GANTRY_RAFT_ADDR", "10.1.2.3:7081", "GANTRY_RAFT_ADDR=10.1.2.3:7081 is not a loopback"),
    ("GANTRY_CRADLE_ADDR", "x", "GANTRY_CRADLE_ADDR=x: expected HOST:PORT"),
    ("GANTRY_READ_WORKERS", "-1", "GANTRY_READ_WORKERS=-1: must be 0–64"),
    ("GANTRY_PEERS", "127.0.0.1:2,a:b", "GANTRY_PEERS entry 'a:b': expected HOST:PORT"),
    ("GANTRY_PEERS", "127.0.0.1:7081", "GANTRY_PEERS must not include this node's own "
                                       "--raft-addr 127.0.0.1:7081"),
])
def test_a_refused_variable_is_named_as_written(monkeypatch: pytest.MonkeyPatch, name: str,
                                                value: str, message: str) -> None:
    _clear_settings_env(monkeypatch)
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError) as e:
        parse([])
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("argv,message", [
    (["--port", "99999"], "--port 99999: must be 0–65535"),
    (["--grace", "-1"], "--grace -1: must be a number of seconds ≥ 0"),
    (["--raft-addr", "nohost"], "--raft-addr nohost: expected HOST:PORT"),
    (["--read-workers", "65"], "--read-workers 65: must be 0–64"),
])
def test_a_refused_flag_is_named_as_a_flag(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                           message: str) -> None:
    _clear_settings_env(monkeypatch)
    for name, value in (("GANTRY_PORT", "8082"), ("GANTRY_GRACE", "1"),
                        ("GANTRY_RAFT_ADDR", "127.0.0.1:7090")):
        monkeypatch.setenv(name, value)  # usable, and beaten by the flag
    with pytest.raises(config.ConfigError) as e:
        parse(argv)
    assert str(e.value) == message


@pytest.mark.parametrize("peers", ["127.0.0.1:2,127.0.0.1:2", "127.0.0.1:2, 127.0.0.1:3,127.0.0.1:2"])
def test_duplicate_peers_are_refused(monkeypatch: pytest.MonkeyPatch, peers: str) -> None:
    _clear_settings_env(monkeypatch)
    with pytest.raises(config.ConfigError, match="^--peers lists 127.0.0.1:2 twice"):
        parse(["--peers", peers])
    monkeypatch.setenv("GANTRY_PEERS", peers)
    with pytest.raises(config.ConfigError, match="^GANTRY_PEERS lists 127.0.0.1:2 twice"):
        parse([])


def test_read_workers_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_settings_env(monkeypatch)
    assert parse([]).read_workers == 0
    monkeypatch.setenv("GANTRY_READ_WORKERS", "2")
    assert parse([]).read_workers == 2
    assert parse(["--read-workers", "3"]).read_workers == 3


def test_the_readme_names_every_environment_variable() -> None:
    # Operator trial: GANTRY_MIN_FREE_BYTES was in `serve --help` but not in the README's list.
    from tests.support import REPO

    readme = (REPO / "README.md").read_text()
    missing = [env for s in config.SETTINGS for env in s.env if f"`{env}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("command", [["status"], ["backup", "out.db"], ["add-node", "127.0.0.1:7999"]])
@pytest.mark.parametrize("flag,value,message", [
    ("--addr", "127.0.0.1:99999", "expected HOST:PORT, port 1–65535"),  # gRPC dialled :34463
    ("--addr", "127.0.0.1", "expected HOST:PORT, port 1–65535"),  # gRPC dialled :443
    ("--timeout", "-5", "expected a number of seconds > 0"),
    ("--timeout", "nan", "expected a number of seconds > 0"),
])
def test_admin_commands_refuse_a_bad_addr_or_timeout(command: list[str], flag: str, value: str,
                                                     message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from gantry import cli

    with pytest.raises(SystemExit) as e:
        cli.main([*command, flag, value])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
