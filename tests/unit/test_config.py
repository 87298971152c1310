"""Configuration: defaults, environment, and refusal of unsafe or malformed settings."""

from __future__ import annotations

import argparse

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
    assert parse(["--raft-addr", "[::1]:7081"]).raft_addr == "[::1]:7081"


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
