"""Fan-out of live messages to every connected WebSocket client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

Message = dict[str, Any]


def dumps(message: Message) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


class Hub:
    """Each client gets a bounded queue of JSON texts (each message serialized once);
    a client too slow to keep up is dropped (its browser reconnects and starts again
    from a fresh snapshot)."""

    def __init__(self, queue_size: int = 2000) -> None:
        self.queue_size = queue_size
        self._clients: set[asyncio.Queue[str | None]] = set()

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(self.queue_size)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._clients.discard(queue)

    def publish(self, message: Message) -> None:
        if not self._clients:
            return
        text = dumps(message)
        for queue in list(self._clients):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                self._clients.discard(queue)
                _close(queue)

    def close(self) -> None:
        for queue in list(self._clients):
            _close(queue)
        self._clients.clear()

    def __len__(self) -> int:
        return len(self._clients)


def _close(queue: asyncio.Queue[str | None]) -> None:
    """Wake the client's sender with None (its end-of-stream), making room if needed."""
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
