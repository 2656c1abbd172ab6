"""All runs the monitor follows, keyed by run id (else run name), plus frame health counters.

Only ever touched from the event loop (the subscriber threads hand frames over
with `call_soon_threadsafe`), so it needs no locks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .run import STATUS_DEFAULTS, RunState
from .values import require_int, require_str

DEFAULT_SOURCE = "default"


@dataclass
class Update:
    """What one accepted frame means for the rest of the monitor."""

    run: str
    topic: str
    data: dict[str, Any]
    needs_sync: bool = False
    checkpoints_changed: bool = False


class MonitorState:
    def __init__(
        self,
        *,
        offline_after: float = 3.0,
        recent: int = 2000,
        max_runs: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.offline_after = offline_after
        self.recent, self.max_runs = recent, max_runs
        self.clock = clock
        self.runs: dict[str, RunState] = {}
        self.current: str | None = None
        self.frames = 0
        self.malformed = 0
        self.malformed_reasons: deque[str] = deque(maxlen=10)

    def count_malformed(self, reason: str) -> None:
        self.malformed += 1
        self.malformed_reasons.append(reason[:300])

    def ingest(self, topic: str, payload: Any, source: str = DEFAULT_SOURCE) -> Update | None:
        """Fold a decoded frame in; a bad one is counted with its reason and gives None."""
        try:
            return self._ingest(topic, payload, source)
        except (ValueError, TypeError, KeyError) as exc:
            self.count_malformed(f"{topic}: {exc}")
            return None

    def _ingest(self, topic: str, payload: Any, source: str) -> Update:
        if not isinstance(payload, dict):
            raise ValueError(f"payload must be a map, got {type(payload).__name__}")
        display = require_str(payload, "run")
        run_id = payload.get("run_id")
        name = run_id if isinstance(run_id, str) and run_id else self._key(display, source)
        seq = require_int(payload, "seq")
        run, is_new = self._run_for(name, source)
        run.display = display
        was_online = self.is_online(name)
        restarted = run.track_seq(seq)
        data = run.apply(topic, payload)
        run.frames += 1
        run.last_seen = self.clock()
        run.source = source
        run.online = True
        self.frames += 1
        if self.current is None or not self.is_online(self.current):
            self.current = name  # stay on a live run; follow a new one when it goes quiet
        checkpoints = topic == "event" and payload.get("kind") == "checkpoint_saved"
        sync = is_new or restarted or not was_online
        return Update(name, topic, data, needs_sync=sync, checkpoints_changed=checkpoints)

    def _key(self, name: str, source: str) -> str:
        """Two live trainers that use the same run name are kept apart as `name @ source`."""
        run = self.runs.get(name)
        if run is not None and run.source != source and self.is_online(name):
            return f"{name} @ {source}"
        return name

    def _run_for(self, name: str, source: str) -> tuple[RunState, bool]:
        run = self.runs.get(name)
        if run is not None:
            return run, False
        if len(self.runs) >= self.max_runs:
            self._forget_oldest()
        run = RunState(name, source, recent=self.recent)
        self.runs[name] = run
        return run, True

    def _forget_oldest(self) -> None:
        oldest = min(self.runs.values(), key=lambda r: r.last_seen or 0.0)
        del self.runs[oldest.name]

    def is_online(self, name: str | None) -> bool:
        run = self.runs.get(name) if name else None
        if run is None or run.last_seen is None:
            return False
        return self.clock() - run.last_seen < self.offline_after

    def online_changes(self) -> list[tuple[str, bool]]:
        """Runs whose online flag flipped since the last call (polled by the app)."""
        changes = []
        for run in self.runs.values():
            online = self.is_online(run.name)
            if online != run.online:
                run.online = online
                changes.append((run.name, online))
        return changes

    def run(self, name: str | None = None) -> RunState | None:
        """The run of that id (or display name), or the most recently heard one."""
        key = name or self.current or ""
        found = self.runs.get(key)
        return found or next((r for r in reversed(self.runs.values()) if r.display == key), None)

    def status(self, name: str | None = None) -> dict[str, Any]:
        run = self.run(name)
        if run is None:
            return {**STATUS_DEFAULTS, "trainer_online": False, "run": None}
        return run.public_status(self.is_online(run.name))

    def runs_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "run": r.name,
                "source": r.source,
                "trainer_online": self.is_online(r.name),
                "iteration": r.status.get("iteration", 0),
                "frames": r.frames,
                "seq_gaps": r.seq_gaps,
                "current": r.name == self.current,
            }
            for r in self.runs.values()
        ]

    def snapshot(self) -> dict[str, Any]:
        runs = {name: r.snapshot(self.is_online(name)) for name, r in self.runs.items()}
        return {"type": "snapshot", "current": self.current, "runs": runs}

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "frames": self.frames,
            "runs": len(self.runs),
            "trainer_online": self.is_online(self.current),
            "seq_gaps": sum(r.seq_gaps for r in self.runs.values()),
            "malformed": self.malformed,
            "malformed_reasons": list(self.malformed_reasons),
        }
