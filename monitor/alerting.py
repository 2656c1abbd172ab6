"""Alerts from detection to the world: `Alerts` takes what `monitor.watch` raises and keeps it (the store,
with its delivery state), shows it (the run's event list, the WebSocket) and sends it (`monitor.notify`).
Runs on the event loop and never waits there: the store writes on its own thread, sending only queues.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .alerts import Alert, AlertSettings
from .notify import Notifier
from .watch import Watcher

log = logging.getLogger("monitor")


class AlertStore(Protocol):
    def last_alert_kinds(self) -> dict[str, str]: ...
    def add_alert(self, alert: dict[str, Any]) -> None: ...
    def set_alert_delivery(self, alert_id: str, delivery: str, tries: int) -> None: ...


class Alerts:
    def __init__(self, settings: AlertSettings, store: AlertStore | None = None) -> None:
        last = store.last_alert_kinds() if store is not None else {}
        self.watcher = Watcher(settings.stall_after_s, last_kinds=last)
        self.notify_on = frozenset(settings.notify_on)
        sender = Notifier(settings.notify, public_url=settings.public_url, tries=settings.tries,
                          backoff_s=settings.backoff_s)
        self.sender: Notifier | None = sender if sender.urls else None
        self.store = store
        self.state: Any = None
        self.hub: Any = None
        if self.sender is not None:
            self.sender.on_result = self._delivered

    def attach(self, state: Any, hub: Any) -> None:
        self.state, self.hub = state, hub

    async def start(self) -> None:
        if self.sender is not None:
            await self.sender.start()

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()

    def on_frame(self, run: str, topic: str, payload: dict[str, Any]) -> None:
        for alert in self.watcher.frame(run, topic, payload):
            self.emit(alert)

    def tick(self) -> None:
        for alert in self.watcher.tick():
            self.emit(alert)

    def emit(self, alert: Alert) -> None:
        notify = alert.kind in self.notify_on
        if notify and self.sender is not None:
            alert.delivery = "pending"
        if self.store is not None:
            self.store.add_alert(alert.row())
        entry = alert.event(notify)
        run = self.state.run(alert.run) if self.state is not None else None
        if run is not None:
            run.events.append(entry)
        if self.hub is not None:
            self.hub.publish({"type": "alert", "run": alert.run, "alert": entry})
        log.info("alert %s: %s", alert.kind, alert.text)
        if alert.delivery == "pending" and self.sender is not None:
            self.sender.send(alert)

    def _delivered(self, alert: Alert, delivery: str, tries: int) -> None:
        alert.delivery, alert.tries = delivery, tries
        if self.store is not None:
            self.store.set_alert_delivery(alert.id, delivery, tries)
