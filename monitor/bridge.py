"""Glue between the trainers' sockets, the state and the browsers.

Frames arrive on subscriber threads and are handed to the event loop with
`call_soon_threadsafe`; everything else runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any

from protocol import CommandName, json_safe

from .alerting import Alerts
from .hub import Hub
from .importer import images_from_folder
from .link import BadReply, TrainerLink, TrainerUnavailable
from .recorder import Recorder, backfill
from .state import MonitorState

log = logging.getLogger("monitor")
SYNC_COMMANDS = (CommandName.STATUS, CommandName.HISTORY, CommandName.CHECKPOINTS)
RECORD_EVERY_S = 10.0  # a live run's new stretch of the trainer's record is fetched this often


class Bridge:
    def __init__(self, state: MonitorState, hub: Hub, links: list[TrainerLink], recorder: Recorder,
                 tick_s: float = 0.5, alerts: Alerts | None = None):
        self.state = state
        self.hub = hub
        self.alerts = alerts
        if alerts is not None:
            alerts.attach(state, hub)
        self.links = {link.key: link for link in links}
        self.recorder = recorder
        self.tick_s = tick_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._syncing: set[str] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for link in self.links.values():
            link.start(self._deliver, self._reject)
        self._spawn(self._watch_online())
        if self.alerts is not None:
            await self.alerts.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.alerts is not None:
            await self.alerts.stop()
        await asyncio.to_thread(self._close_links)
        for run in self.state.runs.values():
            self.recorder.quiet(run)
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
        run = self.state.runs.get(update.run)
        if run is not None:
            self.recorder.frame(run, topic, payload)
            folder = self.recorder.folders.get(run.name)
            if folder and run.synced_to >= 0 and not run.images_read:
                run.images_read = True
                self._spawn(self.read_images(run.name, folder))
        self.hub.publish({"type": "frame", "topic": topic, "run": update.run, "data": update.data})
        if self.alerts is not None:
            self.alerts.on_frame(update.run, topic, payload)
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
                if command == CommandName.HISTORY:
                    if await self.fetch_record(run, whole=True) is None:
                        break
                    continue
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

    async def fetch_record(self, run: str, *, whole: bool = False) -> int | None:
        """The trainer's record of `run` into the store: all of it (`whole`: when the monitor meets the run,
        or its trainer restarted), else what came since the last fetch. The last iteration, or None."""
        known = self.state.run(run)
        if known is None:
            return None
        first = 0 if whole else known.synced_to + 1
        last = await backfill(lambda args: self._quiet(run, CommandName.HISTORY, args), self.recorder.store, run, first,
                              whole=whole)
        if last is not None:
            known.synced_to = max(last, first - 1)
            known.images_read = known.images_read and not whole  # images of what was fetched: from its folder
        return last

    async def read_images(self, run: str, folder: str) -> None:
        """Images of validations fetched without one, from the run folder (a trainer on this machine)."""
        if os.path.isdir(folder):
            await asyncio.to_thread(images_from_folder, self.recorder.store, run, folder)

    async def refresh_checkpoints(self, run: str) -> list[Any] | None:
        reply = await self._quiet(run, CommandName.CHECKPOINTS)
        if reply is None or not reply.get("ok"):
            return None
        self.adopt(run, CommandName.CHECKPOINTS, reply)
        known = self.state.run(run)
        checkpoints = known.checkpoints if known else None
        self.hub.publish({"type": "checkpoints", "run": run, "checkpoints": checkpoints})
        return checkpoints

    async def _quiet(self, run: str, command: str, args: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The reply, or None (logged) when the trainer cannot be reached."""
        try:
            return await self.command(run, command, args)
        except (TrainerUnavailable, BadReply) as exc:
            log.info("sync %s: %s", run, exc)
            return None

    def adopt(self, run: str, command: str, reply: dict[str, Any]) -> None:
        known = self.state.run(run)
        if known is None:
            return
        try:
            if command == CommandName.STATUS and isinstance(reply.get("status"), dict):
                known.apply("status", reply["status"])
            elif command == CommandName.CHECKPOINTS and isinstance(reply.get("checkpoints"), list):
                known.checkpoints = json_safe(reply["checkpoints"])
        except (ValueError, TypeError) as exc:
            self.state.count_malformed(f"{command} reply: {exc}")

    # ---- housekeeping ------------------------------------------------------
    async def _watch_online(self) -> None:
        last_record = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.tick_s)
            for run, online in self.state.online_changes():
                self.hub.publish({"type": "online", "run": run, "online": online})
                if not online and run in self.state.runs:
                    self.recorder.quiet(self.state.runs[run])
            if self.alerts is not None:
                self.alerts.tick()
            if asyncio.get_running_loop().time() - last_record >= RECORD_EVERY_S:
                last_record = asyncio.get_running_loop().time()
                for run in [r.name for r in self.state.runs.values() if r.online and r.name not in self._syncing]:
                    self._spawn(self._record(run))

    async def _record(self, run: str) -> None:
        self._syncing.add(run)
        try:
            await self.fetch_record(run)
        finally:
            self._syncing.discard(run)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
