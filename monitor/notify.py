"""Webhook delivery: one JSON POST per alert and URL, on the monitor's event loop, in nobody's way.

Each URL has its own queue and sender task (alerts reach a receiver in order; a dead receiver delays only
its own alerts). A try that fails on the network, times out, or gets 429/5xx is retried after
`backoff_s`, 2x, 4x, ... (defaults: 6 tries over about two minutes); another answer (a 3xx: redirects
are never followed, a 4xx) ends it at once. Giving up is one log line. Webhook URLs are often the
credential itself, so only their host is ever shown: in errors, log lines and the start-up line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx2

from .alerts import BACKOFF_S, TRIES, Alert, check_url, host_of

log = logging.getLogger("monitor")
for _name in ("httpx2", "httpcore2"):  # their INFO/DEBUG lines carry whole URLs
    logging.getLogger(_name).setLevel(logging.WARNING)

TIMEOUT_S = 10.0
QUEUE_SIZE = 256  # alerts waiting per URL; beyond that new ones are dropped with a log line

Result = Callable[[Alert, str, int], None]  # (alert, "delivered" | "failed", tries)


@dataclass
class _Pending:
    left: int
    tries: int = 0
    failed: bool = False


class Notifier:
    def __init__(self, urls: Iterable[str], *, public_url: str | None = None, tries: int = TRIES,
                 backoff_s: float = BACKOFF_S, timeout_s: float = TIMEOUT_S, on_result: Result | None = None) -> None:
        self.urls = [check_url(u) for u in urls]
        self.public_url = public_url
        self.tries, self.backoff_s, self.timeout_s = max(1, tries), backoff_s, timeout_s
        self.on_result = on_result
        self._queues: list[asyncio.Queue[tuple[Alert, bytes]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, _Pending] = {}
        self._client: httpx2.AsyncClient | None = None

    async def start(self) -> None:
        if not self.urls:
            return
        self._client = httpx2.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        for url in self.urls:
            queue: asyncio.Queue[tuple[Alert, bytes]] = asyncio.Queue(QUEUE_SIZE)
            self._queues.append(queue)
            self._tasks.append(asyncio.get_running_loop().create_task(self._sender(url, queue)))

    async def stop(self, grace_s: float = 3.0) -> None:
        """Give what is queued or under way `grace_s` to go out (a monitor stopped right after a run's
        last alert, as the trainer's own monitor is), then stop sending."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def send(self, alert: Alert) -> bool:
        """Queue the alert for every URL (never waits); False when there is nowhere to send it."""
        if not self._queues:
            return False
        body = json.dumps(alert.body(self.public_url), allow_nan=False).encode()
        self._pending[alert.id] = _Pending(left=len(self._queues))
        for url, queue in zip(self.urls, self._queues, strict=True):
            try:
                queue.put_nowait((alert, body))
            except asyncio.QueueFull:
                self._finish(alert, url, 0, "the queue of alerts for it is full")
        return True

    async def _sender(self, url: str, queue: asyncio.Queue[tuple[Alert, bytes]]) -> None:
        while True:
            alert, body = await queue.get()
            try:
                tries, why = await self._deliver(url, body)
                self._finish(alert, url, tries, why)
            finally:
                queue.task_done()

    async def _deliver(self, url: str, body: bytes) -> tuple[int, str]:
        """(tries, why it failed: '' when delivered)."""
        assert self._client is not None
        why = ""
        for attempt in range(1, self.tries + 1):
            try:
                async with self._client.stream("POST", url, content=body,
                                               headers={"content-type": "application/json"}) as reply:
                    status = reply.status_code  # the body is never read: a receiver cannot flood us
                if 200 <= status < 300:
                    return attempt, ""
                why = f"answered {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
                if status != 429 and status < 500:
                    return attempt, why
            except Exception as exc:  # any failure is a failed try; only its class is shown (its text may hold the URL)
                why = type(exc).__name__
            if attempt < self.tries:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        return self.tries, why

    def _finish(self, alert: Alert, url: str, tries: int, why: str) -> None:
        pending = self._pending.get(alert.id)
        if pending is None:
            return
        pending.left -= 1
        pending.tries = max(pending.tries, tries)
        if why:
            pending.failed = True
            log.warning("alert %s for %s not delivered to %s after %d %s: %s", alert.kind, alert.name,
                        host_of(url), tries, "try" if tries == 1 else "tries", why)
        if pending.left == 0:
            del self._pending[alert.id]
            if self.on_result is not None:
                self.on_result(alert, "failed" if pending.failed else "delivered", pending.tries)
