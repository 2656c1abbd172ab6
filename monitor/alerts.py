"""Alerts: what is worth telling a person about a run, defined once, and where each alert goes.

An `Alert` is one occurrence (a run finished, went silent, ...). `monitor.watch` decides when one
happens from the frames the monitor already sees; `Alerts` then keeps it (the store, with its delivery
state), shows it (the run's event list, the WebSocket) and hands it to `monitor.notify` for the
webhooks. Kinds outside `--notify-on` are kept and shown but not sent.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

log = logging.getLogger("monitor")

KINDS = ("started", "finished", "stopped", "failed", "diverged", "stalled", "alive", "new_best")
DEFAULT_NOTIFY_ON = tuple(kind for kind in KINDS if kind != "new_best")
ENDINGS = ("finished", "stopped", "failed")  # a run's process is over after one of these
DELIVERY = ("pending", "delivered", "failed", "none")  # `none`: not sent (no --notify, or not in --notify-on)
DEFAULT_STALL_AFTER_S = 120.0
MAX_TEXT = 300


def parse_kinds(text: str) -> tuple[str, ...]:
    """`--notify-on started,failed` -> the kinds; ValueError naming the unknown ones."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"--notify-on: unknown kind(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(KINDS)}")
    return kinds


@dataclass
class Alert:
    kind: str
    run: str  # the monitor's key for the run (its id when the trainer sends one)
    name: str  # the run's display name
    text: str  # one short sentence, the run's name in it
    iteration: int
    ts: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    delivery: str = "none"
    tries: int = 0

    def __post_init__(self) -> None:
        self.text = self.text if len(self.text) <= MAX_TEXT else self.text[:MAX_TEXT - 1] + "…"

    @property
    def title(self) -> str:
        return f"VSR++ {self.kind.replace('_', ' ')}: {self.name}"

    def body(self, public_url: str | None) -> dict[str, Any]:
        """The JSON a webhook receives; `text` and `content` so Slack, Mattermost and Discord take it as is."""
        url = f"{public_url.rstrip('/')}/?run={quote(self.run, safe='')}" if public_url else None
        return {"kind": self.kind, "run": self.name, "title": self.title, "text": self.text,
                "content": self.text, "iteration": self.iteration, "ts": self.ts, "url": url}

    def row(self) -> dict[str, Any]:
        """The shape of `GET /api/alerts` (and of the store's rows)."""
        return {"id": self.id, "kind": self.kind, "run": self.run, "title": self.title, "text": self.text,
                "iteration": self.iteration, "ts": self.ts, "delivery": self.delivery, "tries": self.tries}

    def event(self, notify: bool) -> dict[str, Any]:
        """The alert as an entry of the run's event list (`alert: true`); `notify`: in --notify-on."""
        return {"kind": self.kind, "message": self.text, "ts": self.ts, "alert": True,
                "data": {"id": self.id, "iteration": self.iteration, "title": self.title, "notify": notify}}


class AlertStore(Protocol):
    def add_alert(self, alert: dict[str, Any]) -> None: ...
    def set_alert_delivery(self, alert_id: str, delivery: str, tries: int) -> None: ...


class Sender(Protocol):
    urls: list[str]
    on_result: Any

    def send(self, alert: Alert) -> bool: ...


class Alerts:
    """Detection (`monitor.watch.Watcher`) -> the store, the run's event list, the WebSocket, the webhooks.
    Runs on the event loop: nothing here waits (the store writes on its thread, `Sender.send` queues)."""

    def __init__(self, watcher: Any, *, notify_on: tuple[str, ...] = DEFAULT_NOTIFY_ON,
                 sender: Sender | None = None, store: AlertStore | None = None) -> None:
        self.watcher = watcher
        self.notify_on = frozenset(notify_on)
        self.sender = sender if sender is not None and sender.urls else None
        self.store = store
        self.state: Any = None
        self.hub: Any = None
        if self.sender is not None:
            self.sender.on_result = self._delivered

    def attach(self, state: Any, hub: Any) -> None:
        self.state, self.hub = state, hub

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
