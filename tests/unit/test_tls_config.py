"""TLS settings and the loopback rule: parsing, and refusal (with a fix-it message) of settings a
node cannot serve safely. Certificates are generated per test (tests/certs.py)."""

from __future__ import annotations

import argparse
import pathlib

import pytest

from gantry import config, tlsconfig
from tests.certs import Pki, make_pki

TOKEN = "0123456789abcdef0123"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for s in config.SETTINGS:
        for name in s.env:
            monkeypatch.delenv(name, raising=False)


def parse(argv: list[str]) -> config.Config:
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    return config.from_args(p.parse_args(argv))


def tls_args(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]


def test_plaintext_beyond_loopback_needs_tls_or_insecure(pki: Pki) -> None:
    for host in ("0.0.0.0", "10.1.2.3", "::", "", "gantry.example"):
        with pytest.raises(config.ConfigError, match=r"not a loopback address.*--insecure"):
            parse(["--host", host])
    assert parse(["--host", "0.0.0.0", "--insecure"]).insecure
    assert parse(["--host", "0.0.0.0", *tls_args(pki)]).grpc_beyond_loopback
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert not parse(["--host", host]).grpc_beyond_loopback


def test_settings_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_HOST", "0.0.0.0")
    monkeypatch.setenv("GANTRY_TLS_CERT", str(pki.server_cert))
    monkeypatch.setenv("GANTRY_TLS_KEY", str(pki.server_key))
    monkeypatch.setenv("GANTRY_TLS_CLIENT_CA", str(pki.ca))
    monkeypatch.setenv("GANTRY_ADMIN_TOKEN", TOKEN)
    cfg = parse([])
    assert (cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) == (pki.server_cert, pki.server_key,
                                                              pki.ca)
    assert cfg.admin_token == TOKEN and tlsconfig.mode(cfg) == "mutual"
    # The node calls its peers with its own certificate, the cluster CA and its token.
    assert tlsconfig.node_client(cfg) == tlsconfig.ClientConfig(
        ca=pki.ca, cert=pki.server_cert, key=pki.server_key, admin_token=TOKEN)
    monkeypatch.delenv("GANTRY_TLS_CERT")
    monkeypatch.delenv("GANTRY_TLS_KEY")
    monkeypatch.delenv("GANTRY_TLS_CLIENT_CA")
    monkeypatch.setenv("GANTRY_INSECURE", "true")
    assert parse([]).insecure and tlsconfig.mode(parse([])) == "off"


def test_refusals_name_the_setting_and_the_fix(pki: Pki, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.pem"
    cases = [
        (["--tls-cert", str(pki.server_cert)], "go together"),
        (["--tls-key", str(pki.server_key)], "go together"),
        (["--tls-client-ca", str(pki.ca)], "set --tls-cert and --tls-key too"),
        (["--tls-cert", str(missing), "--tls-key", str(pki.server_key)],
         f"--tls-cert {missing}: cannot read it"),
        (["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)],
         "not a PEM certificate and its matching"),
        (["--tls-cert", str(pki.server_key), "--tls-key", str(pki.server_key)],
         "not a PEM certificate"),
        ([*tls_args(pki), "--tls-client-ca", str(pki.server_key)],
         "--tls-client-ca .*: not a PEM CA certificate bundle"),
        ([*tls_args(pki), "--tls-ca", str(missing)], "--tls-ca .*: cannot read it"),
    ]
    for argv, message in cases:
        with pytest.raises(config.ConfigError, match=message):
            parse(argv)


def test_admin_token_must_be_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("short", "with spaces in the token", "ünïcödé-0123456789"):
        monkeypatch.setenv("GANTRY_ADMIN_TOKEN", bad)
        with pytest.raises(config.ConfigError, match="GANTRY_ADMIN_TOKEN"):
            parse([])
    monkeypatch.setenv("GANTRY_ADMIN_TOKEN", TOKEN)
    assert parse([]).admin_token == TOKEN


def test_help_lists_the_tls_flags() -> None:
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    text = " ".join(p.format_help().split())
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca", "--tls-ca", "--insecure"):
        assert flag in text
    assert "GANTRY_INSECURE=true" in text
    assert "GANTRY_ADMIN_TOKEN (bearer token" in text  # environment only: arguments are public


def test_client_flags_and_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    def client(argv: list[str]) -> tlsconfig.ClientConfig:
        p = argparse.ArgumentParser()
        tlsconfig.add_client_arguments(p, admin_token=True)
        return tlsconfig.client_from_args(p.parse_args(argv))

    assert client([]) == tlsconfig.PLAINTEXT and not client([]).tls
    c = client(["--tls-ca", str(pki.ca)])
    assert c.tls and c.metadata() == ()
    monkeypatch.setenv("GANTRY_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("GANTRY_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("GANTRY_TLS_KEY", str(pki.client_key))
    c = client(["--tls-ca", str(pki.ca)])
    assert (c.cert, c.key) == (pki.client_cert, pki.client_key)
    assert c.metadata() == (("authorization", f"Bearer {TOKEN}"),)
    with pytest.raises(ValueError, match="go together"):
        client(["--tls-key", ""])
    monkeypatch.delenv("GANTRY_TLS_KEY")
    with pytest.raises(ValueError, match="go together"):
        client([])
