"""Telemetry over PUB/SUB: a `Publisher` that never blocks the training loop, and a `Subscriber`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import zmq

from protocol.codec import ProtocolError, check_topic, decode_message, encode_message
from protocol.schemas import PROTOCOL_VERSION
from protocol.security import SecurityConfig
from protocol.sockets import bound_endpoint, close_socket, open_socket

_ENVELOPE_KEYS = ("v", "run", "seq", "ts", "run_id")


class Publisher:
    """Binds a PUB socket. `publish` adds the envelope (v, run, seq, ts, and run_id once set), never
    blocks and never raises for want of listeners: a frame zmq refuses is counted in `dropped`.

    A subscriber that reads too slowly loses frames inside libzmq once its SNDHWM queue
    (`hwm` frames) is full; those losses are invisible here and show as gaps in `seq`
    on the subscriber's side (`Subscriber.missed`). Thread-safe.
    """

    def __init__(
        self,
        endpoint: str,
        run: str,
        *,
        security: SecurityConfig | None = None,
        hwm: int = 1000,
        context: zmq.Context | None = None,
        bind: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.run = run
        self.run_id = run_id  # the run's identity; may be set later (it is known once the run folder is chosen)
        self.sent = 0
        self.dropped = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._security = security
        self._sock: zmq.Socket | None = open_socket(
            zmq.PUB, endpoint, bind=bind, security=security, context=context,
            options={zmq.SNDHWM: hwm},
        )
        self.endpoint = bound_endpoint(self._sock) if bind else endpoint

    def publish(self, topic: str, **fields: Any) -> bool:
        """Send one message; False when it was dropped. ProtocolError for a bad payload."""
        clash = [k for k in _ENVELOPE_KEYS if k in fields]
        if clash:
            raise ProtocolError(f"fields {', '.join(clash)} are set by the publisher")
        with self._lock:
            payload = {"v": PROTOCOL_VERSION, "run": self.run, "seq": self._seq + 1,
                       "ts": time.time(), **fields}
            if self.run_id is not None:
                payload["run_id"] = self.run_id
            frames = encode_message(topic, payload)
            self._seq += 1
            if self._sock is None:
                self.dropped += 1
                return False
            try:  # PUB sends a multipart message atomically
                self._sock.send(frames[0], zmq.SNDMORE | zmq.NOBLOCK)
                self._sock.send(frames[1], zmq.NOBLOCK)
            except zmq.ZMQError:  # EAGAIN, or the context is terminating
                self.dropped += 1
                return False
            self.sent += 1
            return True

    @property
    def seq(self) -> int:
        """The last sequence number used."""
        return self._seq

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                close_socket(self._sock, self._security)
                self._sock = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Subscriber:
    """Connects a SUB socket to a publisher and yields decoded messages.

    `topics` filters by exact topic name (empty: every topic). When subscribed to every
    topic, `missed` counts frames lost on the way, from gaps in each run's `seq`.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        topics: Iterable[str] = (),
        security: SecurityConfig | None = None,
        hwm: int = 1000,
        context: zmq.Context | None = None,
        bind: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.missed = 0
        self._topics = frozenset(check_topic(topic) for topic in topics)
        self._last_seq: dict[str, int] = {}
        self._security = security
        self._sock = open_socket(zmq.SUB, endpoint, bind=bind, security=security, context=context,
                                 options={zmq.RCVHWM: hwm})
        for topic in self._topics or {""}:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))

    def recv(self, timeout_ms: int) -> tuple[str, dict[str, Any]] | None:
        """The next message, or None after `timeout_ms`. ProtocolError for a bad frame
        (it is consumed; the caller may count it and call again)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(remaining):
                return None
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
            if self._topics and frames[0].decode("ascii", "replace") not in self._topics:
                continue  # zmq filters by prefix; we want exact topic names
            topic, payload = decode_message(frames)
            self._count_gap(payload)
            return topic, payload

    def _count_gap(self, payload: dict[str, Any]) -> None:
        if self._topics:
            return
        last = self._last_seq.get(payload["run"])
        if last is not None and payload["seq"] > last + 1:
            self.missed += payload["seq"] - last - 1
        self._last_seq[payload["run"]] = payload["seq"]

    def close(self) -> None:
        if not self._sock.closed:
            close_socket(self._sock, self._security)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
