"""Commands over REQ/REP: a `CommandServer` on its own thread and a `CommandClient` that never hangs.

Query commands (ping, status, checkpoints, history) are answered on the server
thread from callables the trainer supplies; action commands (validate, pause, ...)
are only queued and answered `{"ok": true, "queued": true, "id": n}` at once, so a
reply never waits for a training step. The loop picks actions up with `drain()`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import zmq

from protocol.codec import ProtocolError, decode_reply, decode_request, encode_reply, encode_request
from protocol.schemas import ACTION_COMMANDS
from protocol.security import SecurityConfig
from protocol.sockets import bound_endpoint, close_socket, open_socket

Query = Callable[[dict[str, Any]], dict[str, Any]]
Validator = Callable[[dict[str, Any]], None]


class CommandTimeout(TimeoutError):
    """No reply from the command server within the client's timeout and retries."""


@dataclass(frozen=True)
class Command:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: int = 0


def _ping(args: dict[str, Any]) -> dict[str, Any]:
    return {"ts": time.time()}


def _error(message: str) -> bytes:
    return encode_reply(False, error=message)


class CommandServer:
    """Binds a REP socket and answers every request, whatever it holds, within one poll tick."""

    def __init__(
        self,
        endpoint: str,
        *,
        queries: dict[str, Query],
        actions: Iterable[str] = ACTION_COMMANDS,
        validators: dict[str, Validator] | None = None,
        security: SecurityConfig | None = None,
        context: zmq.Context | None = None,
        poll_ms: int = 20,
    ) -> None:
        self._queries = {"ping": _ping, **queries}
        self._actions = frozenset(actions)
        both = self._actions & self._queries.keys()
        if both:
            raise ValueError(f"commands {sorted(both)} are both queries and actions")
        self._validators = dict(validators or {})
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._ids = itertools.count(1)
        self._poll_ms = poll_ms
        self._security = security
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="command-server", daemon=True)
        self._sock = open_socket(zmq.REP, endpoint, bind=True, security=security, context=context)
        self.endpoint = bound_endpoint(self._sock)

    def start(self) -> CommandServer:
        self._thread.start()
        return self

    def drain(self) -> list[Command]:
        """Every action queued since the last call, oldest first. Never blocks."""
        commands = []
        while True:
            try:
                commands.append(self._queue.get_nowait())
            except queue.Empty:
                return commands

    def handle(self, frames: list[bytes]) -> bytes:
        """The reply to one request's frames; never raises."""
        try:
            if len(frames) != 1:
                return _error(f"a request is one msgpack frame, got {len(frames)} frames")
            command, args = decode_request(frames[0])
            return self._dispatch(command, args)
        except ProtocolError as exc:
            return _error(str(exc))
        except Exception as exc:  # a failing query must not kill the server thread
            return _error(f"internal error: {type(exc).__name__}: {exc}")

    def _dispatch(self, command: str, args: dict[str, Any]) -> bytes:
        if command in self._queries:
            return encode_reply(True, **self._queries[command](args))
        if command not in self._actions:
            known = ", ".join(sorted(self._actions | self._queries.keys()))
            return _error(f"unknown command '{command}'; known commands: {known}")
        validator = self._validators.get(command)
        if validator is not None:
            try:
                validator(args)
            except ValueError as exc:
                return _error(f"'{command}' rejected: {exc}")
        queued = Command(command, args, next(self._ids))
        self._queue.put(queued)
        return encode_reply(True, queued=True, id=queued.id)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self._sock.poll(self._poll_ms):
                    frames = self._sock.recv_multipart(zmq.NOBLOCK)
                    self._sock.send(self.handle(frames))
            except zmq.ZMQError:
                if self._stop.is_set() or self._sock.closed:
                    return
                time.sleep(self._poll_ms / 1000)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if not self._sock.closed:
            close_socket(self._sock, self._security)

    def __enter__(self) -> CommandServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommandClient:
    """REQ client, Lazy Pirate style: on a timeout the socket is closed (LINGER 0) and a
    fresh one tries again, up to `retries` more times, then `CommandTimeout`. Thread-safe.

    A retried action may reach the server twice (the first try may have been queued).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_ms: int = 2000,
        retries: int = 1,
        security: SecurityConfig | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        if timeout_ms <= 0 or retries < 0:
            raise ValueError("timeout_ms must be > 0 and retries >= 0")
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._security = security
        self._context = context
        self._lock = threading.Lock()
        self._sock: zmq.Socket | None = None

    def request(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return the decoded reply (check its "ok")."""
        data = encode_request(command, args)
        with self._lock:
            for _ in range(self.retries + 1):
                sock = self._socket()
                try:
                    sock.send(data, flags=zmq.NOBLOCK)
                    if sock.poll(self.timeout_ms):
                        return decode_reply(sock.recv(zmq.NOBLOCK))
                except zmq.ZMQError:
                    pass
                self._reset()
        tries = self.retries + 1
        raise CommandTimeout(f"no reply from {self.endpoint} to '{command}' "
                             f"after {tries} {'try' if tries == 1 else 'tries'} of {self.timeout_ms} ms")

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = open_socket(zmq.REQ, self.endpoint, bind=False,
                                     security=self._security, context=self._context)
        return self._sock

    def _reset(self) -> None:
        if self._sock is not None:
            close_socket(self._sock, self._security)
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._reset()

    def __enter__(self) -> CommandClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
