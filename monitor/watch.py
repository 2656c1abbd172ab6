"""When an alert happens, decided from the frames the monitor already sees and the silence between them.

Per run: `started` at the trainer's `started` event, or at the first training frame of a run whose last
kept alert (the store's, across monitor restarts) says it is not running; `finished` at the `finished`
event; `failed` at a fatal `error` event (`data.fatal`), or when the trainer's last word is state
`stopped` without `finished` or `stopping` before it; `stopped` at that last word after `stopping` (or
at silence after `stopping`: the process is gone); `diverged` at each `diverged` event (a rollback);
`new_best` when the status's `best_score` rises; `stalled` after `stall_after` seconds without any
frame while the run is not over (a paused trainer still sends heartbeats); `alive` at the next frame.
Each occurrence gives one alert, and as `stalled` needs `stall_after` seconds of silence, a flapping
link gives at most one `stalled`/`alive` pair per `stall_after`. Runs only on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .alerts import Alert
from .run import ENDED

LIVE_STATES = ("training", "validating", "paused")
MAX_WATCHED = 256


@dataclass
class RunWatch:
    name: str
    last_seen: float
    running: bool = False  # between a start and an ending
    stopping: bool = False  # a stop was asked for: silence now means it stopped
    stalled_since: float | None = None
    iteration: int = 0
    best: float | None = None
    best_known: bool = False  # a first status sets the best without an alert (a restarted monitor)


class Watcher:
    def __init__(self, stall_after: float, *, last_kinds: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self.clock = clock
        self.last_kinds = dict(last_kinds or {})  # run -> its last kept lifecycle alert (from the store)
        self.runs: dict[str, RunWatch] = {}

    def frame(self, run: str, topic: str, payload: dict[str, Any]) -> list[Alert]:
        """The alerts one accepted frame of `run` raises (most often none)."""
        now = self.clock()
        w = self.runs.get(run) or self._watch(run, payload, now)
        alerts: list[Alert] = []
        w.name = str(payload.get("run", w.name))
        self._note_numbers(w, topic, payload)
        if w.stalled_since is not None:
            silent = now - w.last_seen
            alerts.append(self._alert(run, w, "alive", f"{w.name} is sending again after {silent:.0f} s of "
                                                       f"silence, at iteration {w.iteration}"))
            w.stalled_since = None
        w.last_seen = now
        if topic == "event":
            alerts += self._event(run, w, payload)
        state = payload.get("state") if topic in ("status", "heartbeat") else None
        if state in LIVE_STATES and not w.running:
            w.running = True
            alerts.append(self._alert(run, w, "started", f"{w.name} is training, at iteration {w.iteration}"))
        elif state == "stopped" and w.running:
            alerts.append(self._end(run, w, "stopped" if w.stopping else "failed",
                                    f"{w.name} stopped at iteration {w.iteration}" if w.stopping else
                                    f"{w.name} exited at iteration {w.iteration} without finishing or being stopped"))
        if topic == "status":
            alerts += self._best(run, w, payload.get("best_score"))
        return alerts

    def tick(self) -> list[Alert]:
        """The alerts silence raises by now: `stalled` (or `stopped` when a stop was under way)."""
        now = self.clock()
        alerts = []
        for run, w in self.runs.items():
            if w.stalled_since is not None or now - w.last_seen < self.stall_after:
                continue
            if w.stopping and w.running:
                alerts.append(self._end(run, w, "stopped", f"{w.name} stopped at iteration {w.iteration}"))
            elif w.running or self.last_kinds.get(run) not in ENDED:
                w.stalled_since = now
                text = f"{w.name} has sent nothing for {self.stall_after:g} s (last at iteration {w.iteration})"
                alerts.append(self._alert(run, w, "stalled", text))
        return alerts

    # ---- details --------------------------------------------------------------
    def _watch(self, run: str, payload: dict[str, Any], now: float) -> RunWatch:
        """A run first seen by this monitor: running if its last kept alert says so (no second `started`)."""
        if len(self.runs) >= MAX_WATCHED:
            oldest = min(self.runs, key=lambda r: self.runs[r].last_seen)
            del self.runs[oldest]
        last = self.last_kinds.get(run)
        w = RunWatch(str(payload.get("run", run)), now, running=last is not None and last not in ENDED)
        if last == "stalled":  # it went silent before this monitor restarted: this frame is it being back
            w.stalled_since, w.last_seen = now, now - self.stall_after
        self.runs[run] = w
        return w

    def _note_numbers(self, w: RunWatch, topic: str, payload: dict[str, Any]) -> None:
        data = payload.get("data") if topic == "event" else payload
        if not isinstance(data, dict):
            return
        for key in ("iteration", "step"):
            if type(data.get(key)) is int:
                w.iteration = data[key]

    def _event(self, run: str, w: RunWatch, payload: dict[str, Any]) -> list[Alert]:
        kind, data = payload.get("kind"), payload.get("data") or {}
        message = str(payload.get("message", "")).strip()
        if kind == "started":  # a new trainer process: a start or a resume
            w.running, w.stopping = True, False
            verb = "resumed" if w.iteration > 0 else "started"
            return [self._alert(run, w, "started", f"{w.name} {verb} at iteration {w.iteration}")]
        if kind == "stopping":
            w.stopping = True
        elif kind == "finished" and w.running:
            best = f", best quality {w.best:.1%}" if w.best is not None else ""
            return [self._end(run, w, "finished", f"{w.name} finished at iteration {w.iteration}{best}")]
        elif kind == "error" and data.get("fatal") is True and w.running:
            return [self._end(run, w, "failed", f"{w.name} failed at iteration {w.iteration}: {message}")]
        elif kind == "diverged":
            back = data.get("restore_step")
            return [self._alert(run, w, "diverged", f"{w.name} diverged at iteration {w.iteration}; rolled back to "
                                                    f"iteration {back}")]
        return []

    def _best(self, run: str, w: RunWatch, best: Any) -> list[Alert]:
        if best is not None and (not isinstance(best, int | float) or isinstance(best, bool)):
            return []
        rose = w.best_known and best is not None and (w.best is None or best > w.best)
        w.best, w.best_known = (w.best if best is None else float(best)), True
        if not rose:
            return []
        return [self._alert(run, w, "new_best", f"{w.name} reached a new best quality {best:.1%} at "
                                                f"iteration {w.iteration}")]

    def _end(self, run: str, w: RunWatch, kind: str, text: str) -> Alert:
        w.running = w.stopping = False
        return self._alert(run, w, kind, text)

    def _alert(self, run: str, w: RunWatch, kind: str, text: str) -> Alert:
        self.last_kinds[run] = kind
        return Alert(kind, run, w.name, text, w.iteration)
