"""TLS for Gantry's gRPC: the node's server credentials and every client's channel.

One module so the node, the CLI, the importer, the benchmarks and the cluster launcher reach a
node the same way. The cryptography is grpcio's own (``grpc.ssl_server_credentials``,
``grpc.ssl_channel_credentials``); this module only reads PEM files, checks them up front with
the standard library's ``ssl`` (so a bad file is a clear start-up error rather than every
handshake failing later) and hands them over.

One vocabulary for a node and for a client:

- ``tls_ca`` / ``--tls-ca`` / ``GANTRY_TLS_CA``: the CA bundle this side verifies the *server's*
  certificate against when it calls a node (unset: grpcio's bundled public roots);
- ``tls_cert`` + ``tls_key`` / ``--tls-cert`` + ``--tls-key``: this side's own certificate. On a
  node it is the server certificate, and also the client certificate the node presents when it
  calls another node (a follower passing TransferLeadership to the leader), so under mTLS a node
  certificate needs both the ``serverAuth`` and ``clientAuth`` extended key usages. On a client
  it is the certificate for mTLS;
- ``tls_client_ca`` / ``--tls-client-ca`` (node only): require every client to present a
  certificate signed by this bundle (mTLS).

A node's own client identity (:func:`node_client`): its certificate and key, the CA from
``--tls-ca`` or else ``--tls-client-ca`` (one cluster CA is the usual set-up), and its
``GANTRY_ADMIN_TOKEN`` as a bearer token; give every node the same token.

Certificates are read when the node starts: replacing the files needs a restart. grpc is
imported only where a channel or credentials are made (the CLI parses its flags without it).
"""

from __future__ import annotations

import argparse
import pathlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gantry.config import env

if TYPE_CHECKING:
    import grpc

    from gantry.config import Config

#: Metadata key of the admin token (``authorization: Bearer <token>``), as HTTP.
AUTHORIZATION_KEY = "authorization"
BEARER = "Bearer "

ChannelOptions = Sequence[tuple[str, Any]]


def _read(path: pathlib.Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot read it ({e.strerror or e})") from None


def _no_password() -> bytes:
    raise ValueError("the private key is encrypted")


def check_key_pair(cert: pathlib.Path, key: pathlib.Path, cert_flag: str = "--tls-cert",
                   key_flag: str = "--tls-key") -> None:
    """Raise ValueError with a fix-it message unless ``cert`` and ``key`` are readable PEM files
    holding a certificate (chain) and its unencrypted private key."""
    _read(cert, cert_flag)
    _read(key, key_flag)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key), password=_no_password)
    except (ssl.SSLError, ValueError) as e:
        raise ValueError(
            f"{cert_flag} {cert} / {key_flag} {key}: not a PEM certificate and its matching, "
            f"unencrypted private key ({e})") from None


def check_ca(path: pathlib.Path, flag: str) -> None:
    """Raise ValueError unless ``path`` is a readable PEM bundle of at least one certificate."""
    _read(path, flag)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError) as e:
        raise ValueError(f"{flag} {path}: not a PEM CA certificate bundle ({e})") from None


def check_server(cert: pathlib.Path | None, key: pathlib.Path | None,
                 client_ca: pathlib.Path | None, ca: pathlib.Path | None) -> None:
    """A node's TLS settings, as :meth:`gantry.config.Config.validate` needs them checked.
    Raises ValueError with a fix-it message."""
    if bool(cert) != bool(key):
        raise ValueError("--tls-cert and --tls-key go together (GANTRY_TLS_CERT, GANTRY_TLS_KEY): "
                         "set both to serve TLS, or neither")
    if client_ca and not cert:
        raise ValueError("--tls-client-ca requires client certificates over TLS: set --tls-cert "
                         "and --tls-key too")
    if cert and key:
        check_key_pair(cert, key)
    if client_ca:
        check_ca(client_ca, "--tls-client-ca")
    if ca:
        check_ca(ca, "--tls-ca")


def server_credentials(cert: pathlib.Path, key: pathlib.Path,
                       client_ca: pathlib.Path | None) -> grpc.ServerCredentials:
    """TLS with ``cert``/``key``; with ``client_ca``, every client must present a certificate
    it signed (grpcio verifies it during the handshake)."""
    import grpc

    return grpc.ssl_server_credentials(
        [(_read(key, "--tls-key"), _read(cert, "--tls-cert"))],
        root_certificates=_read(client_ca, "--tls-client-ca") if client_ca else None,
        require_client_auth=client_ca is not None)


def node_server_credentials(cfg: Config) -> grpc.ServerCredentials | None:
    """The node's server credentials, or None for plaintext."""
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    return server_credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)


def mode(cfg: Config) -> str:
    """For the log: ``"mutual"`` (client certificates required), ``"server"`` or ``"off"``."""
    if cfg.tls_cert is None:
        return "off"
    return "mutual" if cfg.tls_client_ca else "server"


@dataclass(frozen=True)
class ClientConfig:
    """How a client reaches a node: TLS when any of ``ca``/``cert``/``key`` is set (else
    plaintext), and the admin token sent as ``authorization: Bearer`` metadata on admin calls.
    Picklable (the benchmark hands it to its worker processes)."""

    ca: pathlib.Path | None = None
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None
    admin_token: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.ca or self.cert or self.key)

    def check(self) -> None:
        """Raise ValueError with a fix-it message for unusable settings."""
        if bool(self.cert) != bool(self.key):
            raise ValueError("--tls-cert and --tls-key go together: set both to present a client "
                             "certificate, or neither")
        if self.cert and self.key:
            check_key_pair(self.cert, self.key)
        if self.ca:
            check_ca(self.ca, "--tls-ca")
        if any(not 33 <= ord(c) <= 126 for c in self.admin_token):
            raise ValueError("--admin-token (GANTRY_ADMIN_TOKEN): printable ASCII without spaces")

    def credentials(self) -> grpc.ChannelCredentials | None:
        """grpcio channel credentials, or None for plaintext. Raises ValueError when a file
        cannot be read."""
        import grpc

        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "--tls-ca") if self.ca else None,
            private_key=_read(self.key, "--tls-key") if self.key else None,
            certificate_chain=_read(self.cert, "--tls-cert") if self.cert else None)

    def channel(self, addr: str, options: ChannelOptions = ()) -> grpc.Channel:
        """A channel to ``addr`` (``HOST:PORT``; the certificate must name ``HOST``)."""
        import grpc

        creds = self.credentials()
        if creds is None:
            return grpc.insecure_channel(addr, options=options)
        return grpc.secure_channel(addr, creds, options=options)

    def aio_channel(self, addr: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        """The asyncio equivalent of :meth:`channel`."""
        import grpc

        creds = self.credentials()
        if creds is None:
            return grpc.aio.insecure_channel(addr, options=options)
        return grpc.aio.secure_channel(addr, creds, options=options)

    def args(self) -> list[str]:
        """The TLS flags of :func:`add_client_arguments` for a child process (never the token:
        a command line is visible to other users)."""
        return [a for flag, v in (("--tls-ca", self.ca), ("--tls-cert", self.cert),
                                  ("--tls-key", self.key)) if v for a in (flag, str(v))]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The admin token as call metadata (empty without one)."""
        if not self.admin_token:
            return ()
        return ((AUTHORIZATION_KEY, BEARER + self.admin_token),)


#: Plaintext, no token: what every client used before TLS.
PLAINTEXT = ClientConfig()


def node_client(cfg: Config) -> ClientConfig:
    """The identity a node uses when it calls another node (see the module docstring)."""
    if cfg.tls_cert is None:
        return ClientConfig(admin_token=cfg.admin_token)
    return ClientConfig(ca=cfg.tls_ca or cfg.tls_client_ca, cert=cfg.tls_cert, key=cfg.tls_key,
                        admin_token=cfg.admin_token)


def add_client_arguments(p: argparse.ArgumentParser, admin_token: bool = False) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key`` (env ``GANTRY_TLS_CA``, ``GANTRY_TLS_CERT``,
    ``GANTRY_TLS_KEY``) and, with ``admin_token``, ``--admin-token`` (env
    ``GANTRY_ADMIN_TOKEN``). Read them back with :func:`client_from_args`."""
    g = p.add_argument_group("TLS and authentication")
    g.add_argument("--tls-ca", type=_path, metavar="PEM", default=_env_path("GANTRY_TLS_CA"),
                   help="PEM CA bundle to verify the node's certificate against; turns TLS on "
                        "(env GANTRY_TLS_CA)")
    g.add_argument("--tls-cert", type=_path, metavar="PEM", default=_env_path("GANTRY_TLS_CERT"),
                   help="PEM client certificate, for a node that requires one (mTLS; env "
                        "GANTRY_TLS_CERT)")
    g.add_argument("--tls-key", type=_path, metavar="PEM", default=_env_path("GANTRY_TLS_KEY"),
                   help="PEM private key of --tls-cert (env GANTRY_TLS_KEY)")
    if admin_token:
        g.add_argument("--admin-token", metavar="TOKEN", default=env("GANTRY_ADMIN_TOKEN") or "",
                       help="bearer token for cluster changes on a node listening beyond "
                            "loopback (env GANTRY_ADMIN_TOKEN; prefer the variable: arguments "
                            "are visible to other users)")


def _path(text: str) -> pathlib.Path | None:
    return pathlib.Path(text) if text else None  # an empty flag unsets its variable


def _env_path(name: str) -> pathlib.Path | None:
    return _path(env(name) or "")


def client_from_args(ns: argparse.Namespace) -> ClientConfig:
    """The :class:`ClientConfig` of flags registered by :func:`add_client_arguments`, checked
    (raises ValueError with a fix-it message)."""
    c = ClientConfig(ca=ns.tls_ca, cert=ns.tls_cert, key=ns.tls_key,
                     admin_token=getattr(ns, "admin_token", "") or "")
    c.check()
    return c
