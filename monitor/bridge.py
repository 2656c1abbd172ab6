"""Glue between the trainers' sockets, the state and the browsers.

Frames arrive on subscriber threads and are handed to the event loop with
`call_soon_threadsafe`; everything else runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from protocol import json_safe

from .hub import Hub
from .link import BadReply, TrainerLink, TrainerUnavailable
from .state import MonitorState

log = logging.getLogger("monitor")
SYNC_COMMANDS = ("status", "history", "checkpoints")


class Bridge:
    def __init__(self, state: MonitorState, hub: Hub, links: list[TrainerLink], tick_s: float = 0.5):
        self.state = state
        self.hub = hub
        self.links = {link.key: link for link in links}
        self.tick_s = tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._syncing: set[str] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for link in self.links.values():
            link.start(self._deliver, self._reject)
        self._spawn(self._watch_online())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._close_links)
        self.hub.close()

    def _close_links(self) -> None:
        for link in self.links.values():
            link.close()

    # ---- subscriber threads -> loop ----------------------------------------
    def _deliver(self, source: str, topic: str, payload: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_frame, source, topic, payload)

    def _reject(self, reason: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.state.count_malformed, reason)

    def on_frame(self, source: str, topic: str, payload: Any) -> None:
        update = self.state.ingest(topic, payload, source)
        if update is None:
            return
        self.hub.publish({"type": "frame", "topic": topic, "run": update.run, "data": update.data})
        if update.needs_sync:
            self._spawn(self.sync(update.run))
        elif update.checkpoints_changed:
            self._spawn(self.refresh_checkpoints(update.run))

    # ---- commands ----------------------------------------------------------
    def link_for(self, run: str | None) -> TrainerLink:
        known = self.state.run(run)
        if known is not None and known.source in self.links:
            return self.links[known.source]
        return next(iter(self.links.values()))

    async def command(self, run: str | None, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Forward one command; TrainerUnavailable / BadReply when that fails."""
        if not self.links:
            raise TrainerUnavailable("the monitor follows no trainer")
        return await self.link_for(run).request(command, args)

    async def sync(self, run: str) -> None:
        """Ask a (re)appeared trainer for the truth: status, history, checkpoints."""
        if run in self._syncing:
            return
        self._syncing.add(run)
        try:
            for command in SYNC_COMMANDS:
                reply = await self._quiet(run, command)
                if reply is None:
                    break  # unreachable: don't queue more timeouts ahead of user actions
                if reply.get("ok"):
                    self.adopt(run, command, reply)
        finally:
            self._syncing.discard(run)
        known = self.state.run(run)
        if known is not None:
            snap = known.snapshot(self.state.is_online(run))
            self.hub.publish({"type": "run", "run": run, "snapshot": snap})

    async def refresh_checkpoints(self, run: str) -> list[Any] | None:
        reply = await self._quiet(run, "checkpoints")
        if reply is None or not reply.get("ok"):
            return None
        self.adopt(run, "checkpoints", reply)
        known = self.state.run(run)
        checkpoints = known.checkpoints if known else None
        self.hub.publish({"type": "checkpoints", "run": run, "checkpoints": checkpoints})
        return checkpoints

    async def _quiet(self, run: str, command: str) -> dict[str, Any] | None:
        """The reply, or None (logged) when the trainer cannot be reached."""
        try:
            return await self.command(run, command)
        except (TrainerUnavailable, BadReply) as exc:
            log.info("sync %s: %s", run, exc)
            return None

    def adopt(self, run: str, command: str, reply: dict[str, Any]) -> None:
        known = self.state.run(run)
        if known is None:
            return
        try:
            if command == "status" and isinstance(reply.get("status"), dict):
                known.apply("status", reply["status"])
            elif command == "history" and isinstance(reply.get("history"), list):
                validations = reply.get("validations")
                known.replace_history(reply["history"], validations if isinstance(validations, list) else None)
            elif command == "checkpoints" and isinstance(reply.get("checkpoints"), list):
                known.checkpoints = json_safe(reply["checkpoints"])
        except (ValueError, TypeError) as exc:
            self.state.count_malformed(f"{command} reply: {exc}")

    # ---- housekeeping ------------------------------------------------------
    async def _watch_online(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            for run, online in self.state.online_changes():
                self.hub.publish({"type": "online", "run": run, "online": online})

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
