"""Optional ZeroMQ CURVE encryption and authentication between broker and workers.

Keys are ZeroMQ certificate files (`zmq.auth.create_certificates`): the broker holds
its secret certificate and, optionally, a directory of the workers' public certificates
it accepts; a worker holds the broker's public certificate and its own secret one (or
an ephemeral pair when the broker accepts any worker that knows its key).
`whisperfarm curve-keys DIR` writes a broker and a worker pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from whisperfarm.errors import WhisperfarmError


class CurveKeyError(WhisperfarmError):
    """A CURVE key file that is missing or not a ZeroMQ certificate."""


def _load(path: Path, secret: bool) -> tuple[bytes, bytes]:
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read CURVE certificate {path}: {exc}") from None
    if secret and not secret_key:
        raise CurveKeyError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret_key or b""


@dataclass(frozen=True)
class CurveServer:
    """The broker's side: its key pair and who may connect."""

    public: bytes
    secret: bytes
    clients_dir: Path | None

    @classmethod
    def load(cls, secret_file: Path, clients_dir: Path | None) -> CurveServer:
        public, secret = _load(secret_file, secret=True)
        if clients_dir is not None and not clients_dir.is_dir():
            raise CurveKeyError(f"CURVE clients dir {clients_dir} is not a directory")
        return cls(public, secret, clients_dir)

    def apply(self, ctx: zmq.asyncio.Context, socket: zmq.Socket[Any]) -> AsyncioAuthenticator:
        """Start the ZAP handler and make `socket` a CURVE server (call before bind)."""
        auth = AsyncioAuthenticator(ctx)
        auth.start()
        location = str(self.clients_dir) if self.clients_dir else zmq.auth.CURVE_ALLOW_ANY
        auth.configure_curve(domain="*", location=location)
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True
        return auth


@dataclass(frozen=True)
class CurveClient:
    """A worker's side: the broker's public key and the worker's own pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_file: Path, secret_file: Path | None) -> CurveClient:
        server_public, _ = _load(server_file, secret=False)
        if secret_file is None:
            public, secret = zmq.curve_keypair()
        else:
            public, secret = _load(secret_file, secret=True)
        return cls(server_public, public, secret)

    def apply(self, socket: zmq.Socket[Any]) -> None:
        """Make `socket` a CURVE client (call before connect)."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


def create_keys(directory: Path) -> list[Path]:
    """Write broker.key(_secret) and worker.key(_secret) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("broker", "worker"):
        public, secret = zmq.auth.create_certificates(str(directory), name)
        written += [Path(public), Path(secret)]
    return written
