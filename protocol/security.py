"""Optional CURVE encryption and client authentication for the PUB and REP sockets.

Key folder made by `generate_keys(DIR)` (`python -m protocol keys DIR`):

    DIR/server.key            server public key   (servers and clients)
    DIR/server.key_secret     server key pair     (servers only)
    DIR/client.key            client public key
    DIR/client.key_secret     client key pair     (clients only)
    DIR/authorized/*.key      client public keys a server lets in

Servers allow only the public keys in DIR/authorized; a ZAP handler
(`zmq.auth.ThreadAuthenticator`, one per context, shared by all secured sockets
of that context) checks them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

ROLES = ("server", "client")
_KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret")


class SecurityError(ValueError):
    """Missing or unusable keys, or an endpoint that must not be bound without them."""


@dataclass(frozen=True)
class SecurityConfig:
    role: str
    public_key: bytes
    secret_key: bytes
    server_key: bytes | None = None  # clients: the server's public key
    authorized_dir: Path | None = None  # servers: folder of allowed client public keys

    @classmethod
    def from_keys_dir(cls, path: str | Path, role: str = "server") -> SecurityConfig:
        if role not in ROLES:
            raise SecurityError(f"role must be 'server' or 'client', got {role!r}")
        folder = Path(path)
        if not folder.is_dir():
            raise SecurityError(f"key folder {folder} does not exist; make one with "
                                f"`python -m protocol keys {folder}`")
        public, secret = _load_pair(folder / f"{role}.key_secret")
        if role == "client":
            server_key, _ = _load_key(folder / "server.key")
            return cls(role, public, secret, server_key=server_key)
        authorized = folder / "authorized"
        if not any(authorized.glob("*.key")):
            raise SecurityError(f"no client public keys in {authorized}; nobody could connect")
        return cls(role, public, secret, authorized_dir=authorized)


def generate_keys(path: str | Path) -> list[Path]:
    """Make a server and a client key pair in `path`; refuses to overwrite existing keys."""
    folder = Path(path)
    existing = [name for name in _KEY_FILES if (folder / name).exists()]
    if existing:
        raise SecurityError(f"{folder} already holds {', '.join(existing)}; "
                            "remove them first or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ROLES:
        zmq.auth.create_certificates(folder, name)
        (folder / f"{name}.key_secret").chmod(0o600)
    authorized = folder / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(folder / "client.key", authorized / "client.key")
    return [folder / name for name in _KEY_FILES] + [authorized / "client.key"]


def requires_security(endpoint: str) -> bool:
    """True when binding `endpoint` would accept connections from other machines."""
    transport, _, address = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return False
    if transport != "tcp":
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', an interface name or a host name
        return True


def check_bind_allowed(endpoint: str, security: SecurityConfig | None, insecure: bool) -> None:
    """Refuse to bind beyond loopback without CURVE keys unless the user said --insecure."""
    if security is None and not insecure and requires_security(endpoint):
        raise SecurityError(
            f"binding {endpoint} beyond loopback without CURVE keys; pass --keys DIR "
            "(make them with `python -m protocol keys DIR`) or --insecure"
        )


def apply_security(socket: zmq.Socket, security: SecurityConfig) -> None:
    """Set CURVE options on a socket before it binds (server) or connects (client)."""
    socket.curve_publickey = security.public_key
    socket.curve_secretkey = security.secret_key
    if security.role == "client":
        if security.server_key is None:
            raise SecurityError("a client SecurityConfig needs the server's public key")
        socket.curve_serverkey = security.server_key
        return
    if security.authorized_dir is None:
        raise SecurityError("a server SecurityConfig needs a folder of authorized client keys")
    socket.curve_server = True
    socket.zap_domain = _Authenticators.acquire(socket.context, security.authorized_dir).encode()


def release_security(context: zmq.Context, security: SecurityConfig | None) -> None:
    """Undo one server `apply_security`: the context's authenticator stops with its last user."""
    if security is not None and security.role == "server":
        _Authenticators.release(context)


class _Authenticators:
    """One running ThreadAuthenticator per context, counted by the secured sockets using it."""

    _lock = threading.Lock()
    _running: dict[int, tuple[Any, int]] = {}  # id(context) -> (ThreadAuthenticator, users)

    @classmethod
    def acquire(cls, context: zmq.Context, authorized_dir: Path) -> str:
        domain = "vsrpp-" + hashlib.sha256(str(authorized_dir.resolve()).encode()).hexdigest()[:16]
        with cls._lock:
            auth, users = cls._running.get(id(context), (None, 0))
            if auth is None:
                from zmq.auth.thread import ThreadAuthenticator  # imports asyncio: only when used

                auth = ThreadAuthenticator(context)
                auth.start()
            auth.configure_curve(domain=domain, location=str(authorized_dir))
            cls._running[id(context)] = (auth, users + 1)
        return domain

    @classmethod
    def release(cls, context: zmq.Context) -> None:
        with cls._lock:
            auth, users = cls._running.get(id(context), (None, 0))
            if auth is None:
                return
            if users > 1:
                cls._running[id(context)] = (auth, users - 1)
                return
            del cls._running[id(context)]
        auth.stop()


def _load_pair(path: Path) -> tuple[bytes, bytes]:
    public, secret = _load_key(path)
    if secret is None:
        raise SecurityError(f"{path} holds no secret key")
    return public, secret


def _load_key(path: Path) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise SecurityError(f"missing key file {path}; make keys with "
                            f"`python -m protocol keys {path.parent}`")
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"unreadable key file {path}: {exc}") from None
