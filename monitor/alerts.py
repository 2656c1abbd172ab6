"""Alerts: what is worth telling a person about a run, defined once, and where each alert goes.

An `Alert` is one occurrence (a run finished, went silent, ...). `monitor.watch` decides when one
happens from the frames the monitor already sees; `monitor.alerting.Alerts` then keeps it (the store,
with its delivery state), shows it (the run's event list, the WebSocket) and hands it to
`monitor.notify` for the webhooks. Kinds outside `--notify-on` are kept and shown but not sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from .run import ENDED

KINDS = ("started", *ENDED, "diverged", "stalled", "alive", "new_best")  # an ended run: the alert named as its state
DEFAULT_NOTIFY_ON = tuple(kind for kind in KINDS if kind != "new_best")
DEFAULT_STALL_AFTER_S = 120.0
TRIES = 6  # delivery tries per webhook, waiting BACKOFF_S, 2x, 4x, ... between them
BACKOFF_S = 4.0  # 4 + 8 + 16 + 32 + 64 s: six tries over about two minutes
MAX_TEXT = 300


def host_of(url: str) -> str:
    """What may be shown of a webhook URL: its host (and port), never its path or query."""
    try:
        parts = urlsplit(url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"
    except ValueError:
        return "?"


def check_url(url: str, flag: str = "--notify") -> str:
    """The URL when it is http(s) with a host; ValueError (one line, host only) otherwise."""
    try:
        parts = urlsplit(url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and url.strip().isprintable()
        ok = ok and " " not in url.strip()
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number
    except ValueError:
        ok, parts = False, None
    if not ok:
        scheme = f"{parts.scheme}://" if parts is not None and parts.scheme else "no scheme"
        raise ValueError(f"{flag}: a URL must be http:// or https:// with a host; got {scheme} "
                         f"(host {host_of(url)}); the rest is not shown, it may be a secret")
    return url.strip()


@dataclass(frozen=True)
class AlertSettings:
    """`--notify` (webhook URLs: the credential, never shown), `--notify-on`, `--stall-after`, `--public-url`;
    `backoff_s` and `tries` shape the retries (tests shorten them). ValueError for a bad value."""

    notify: tuple[str, ...] = field(default=(), repr=False)
    notify_on: tuple[str, ...] = DEFAULT_NOTIFY_ON
    stall_after_s: float = DEFAULT_STALL_AFTER_S
    public_url: str | None = None
    backoff_s: float = BACKOFF_S
    tries: int = TRIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "notify", tuple(dict.fromkeys(check_url(u) for u in self.notify)))
        if self.public_url is not None:
            object.__setattr__(self, "public_url", check_url(self.public_url, "--public-url"))
        if not self.stall_after_s > 0:
            raise ValueError(f"--stall-after must be a positive number of seconds, got {self.stall_after_s}")
        object.__setattr__(self, "notify_on", check_kinds(self.notify_on))


def parse_kinds(text: str) -> tuple[str, ...]:
    """`--notify-on started,failed` -> the kinds; ValueError naming the unknown ones."""
    return check_kinds(text.split(","))


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(k.strip() for k in kinds if k.strip()))
    unknown = [k for k in chosen if k not in KINDS]
    if unknown or not chosen:
        raise ValueError(f"--notify-on: unknown kind(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(KINDS)}")
    return chosen


@dataclass
class Alert:
    kind: str
    run: str  # the monitor's key for the run (its id when the trainer sends one)
    name: str  # the run's display name
    text: str  # one short sentence, the run's name in it
    iteration: int
    ts: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    delivery: str = "none"  # pending, delivered, failed; none: not sent (no --notify, or not in --notify-on)
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
        return alert_event(self.row(), notify)


def alert_event(row: dict[str, Any], notify: bool = False) -> dict[str, Any]:
    """An alert (`Alert.row()`, or the store's) as an entry of the run's event list (`alert: true`);
    `notify`: its kind is in --notify-on (the dashboard's browser notifications follow it)."""
    return {"kind": row["kind"], "message": row["text"], "ts": row["ts"], "alert": True,
            "data": {"id": row["id"], "iteration": row["iteration"], "title": row["title"], "notify": notify}}
