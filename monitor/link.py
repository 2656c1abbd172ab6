"""The monitor's two sockets to one trainer: SUB (own thread) and REQ (own executor thread)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from protocol import CommandClient, CommandTimeout, ProtocolError, SecurityConfig, Subscriber

from .config import TrainerEndpoints

log = logging.getLogger("monitor")

Deliver = Callable[[str, str, Any], None]
Reject = Callable[[str], None]


class TrainerUnavailable(Exception):
    """The trainer did not answer a command in time (HTTP 503)."""


class BadReply(Exception):
    """The trainer answered with something that is not a valid reply (HTTP 502)."""


class TrainerLink:
    def __init__(
        self,
        endpoints: TrainerEndpoints,
        *,
        security: SecurityConfig | None = None,
        timeout_ms: int = 2500,
        poll_ms: int = 100,
    ) -> None:
        self.endpoints = endpoints
        self.key = endpoints.pub
        self.security = security
        self.timeout_ms = timeout_ms
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # one worker: the REQ socket is only ever used from that thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-req")
        self._client: CommandClient | None = None

    def start(self, deliver: Deliver, reject: Reject) -> None:
        self._thread = threading.Thread(
            target=self._listen, args=(deliver, reject), name=f"monitor-sub {self.key}", daemon=True
        )
        self._thread.start()

    def _listen(self, deliver: Deliver, reject: Reject) -> None:
        sub = Subscriber(self.endpoints.pub, security=self.security)
        try:
            while not self._stop.is_set():
                try:
                    frame = sub.recv(timeout_ms=self.poll_ms)
                except ProtocolError as exc:
                    reject(str(exc))
                    continue
                if frame is not None:
                    deliver(self.key, frame[0], frame[1])
        except Exception:  # never let the listener die silently
            log.exception("subscriber for %s stopped", self.key)
        finally:
            sub.close()

    async def request(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._request, command, args)

    def _request(self, command: str, args: dict[str, Any] | None) -> dict[str, Any]:
        if self._client is None:
            self._client = CommandClient(
                self.endpoints.rep, timeout_ms=self.timeout_ms, retries=0, security=self.security
            )
        try:
            return self._client.request(command, args)
        except CommandTimeout as exc:
            raise TrainerUnavailable(
                f"trainer at {self.endpoints.rep} did not answer {command!r} "
                f"within {self.timeout_ms / 1000:.1f} s"
            ) from exc
        except ProtocolError as exc:
            raise BadReply(f"trainer sent a malformed reply to {command!r}: {exc}") from exc

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._executor.submit(self._close_client)
        self._executor.shutdown(wait=False, cancel_futures=False)
