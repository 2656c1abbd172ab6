"""What the monitor keeps of each run: frames into the store, the trainer's record fetched into it
(`backfill`), and the run list that joins the stored runs with the live ones.

Runs on the event loop; the store does the writing on its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from protocol import HISTORY_FIELDS, VALIDATION_POINT_FIELDS, json_safe

from .run import ENDED, RunState, pick
from .state import MonitorState
from .store import Store
from .values import image_type

END_OF_RUN = 2**62  # "and everything after": the trainer's record is the whole run
PAGE = 2000  # points asked per `history` request when fetching a run
ROW_EVERY_S = 5.0  # a live run's row (iteration, last seen) is rewritten at most this often (a new state: at once)
SEEN_LATELY_S = 30.0  # a stored row seen this recently is live to a reader without frames (`runs list`): rows
# are rewritten every ROW_EVERY_S and written in the store's 5 s batches
POINT_EVERY_S = 1  # seconds: a live status point kept per run and period (by the frames' time), as the trainer does

Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class Recorder:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._written: dict[str, tuple[float, str | None]] = {}  # run -> (when its row was written, its state)
        self._best: dict[str, float] = {}
        self._pointed: dict[str, int] = {}  # run -> the period (`ts` // POINT_EVERY_S) of its last live point kept
        self._heard: dict[str, float] = {}  # run -> time (`ts`) of its last frame
        self.folders: dict[str, str] = {}  # run -> its run folder (heartbeat `run_dir`), for images on this machine

    def frame(self, run: RunState, topic: str, payload: dict[str, Any]) -> None:
        """Keep one accepted frame of `run`."""
        key, state = run.name, None
        self._heard[key] = payload.get("ts") or self.clock()
        if topic == "status":
            state = payload.get("state") or "training"
            # loading: loss and LR are placeholders, not a step; where the trainer's record is in, it wins
            if state != "loading" and payload.get("iteration", -1) > run.synced_to and self._point_due(key, payload):
                self.store.add_points(key, [pick(payload, HISTORY_FIELDS)])
        elif topic == "heartbeat":
            state = payload.get("state")
            if isinstance(payload.get("run_dir"), str):
                self.folders[key] = payload["run_dir"]
        elif topic == "validation":
            self._validation(run, payload)
        elif topic == "event":
            self.store.add_event(key, {"ts": payload.get("ts"), **json_safe(payload)})
            state = _event_state(payload)
        self._row(run, payload, state)

    def quiet(self, run: RunState) -> None:
        """The run went quiet (or the monitor stops): its row says when it was last heard."""
        if run.name in self._heard:
            self.store.upsert_run({"id": run.name, "name": run.display, "last_seen": self._heard[run.name]})
            self._written.pop(run.name, None)  # its next frame writes the row at once

    def _point_due(self, key: str, payload: dict[str, Any]) -> bool:
        """The first status of each second (by the frame's time: every monitor keeps the same ones): the
        trainer's record, fetched later, has every step's extremes; these only bridge the seconds until then."""
        ts = payload.get("ts")
        second = int(ts if isinstance(ts, float | int) else self.clock()) // POINT_EVERY_S
        if self._pointed.get(key) == second:
            return False
        self._pointed[key] = second
        return True

    def _validation(self, run: RunState, payload: dict[str, Any]) -> None:
        """Kept with its image; a new best (above the trainer's best score so far, which its status says
        even to a monitor restarted since) keeps its image for good."""
        key = run.name
        metrics = pick(json_safe(payload), VALIDATION_POINT_FIELDS)
        metrics.setdefault("timestamp", payload.get("ts"))
        quality, before = metrics.get("quality"), run.status.get("best_score")
        known = max(self._best.get(key, float("-inf")), before if isinstance(before, float | int) else float("-inf"))
        best = isinstance(quality, float | int) and quality > known
        if best:
            self._best[key] = quality
        image = payload.get("image")
        kind = image_type(image) if isinstance(image, bytes) else None
        self.store.add_validation(key, metrics, image if kind else None, kind, best=best)

    def _row(self, run: RunState, payload: dict[str, Any], state: str | None) -> None:
        """The run's row: at once when its state changes, else at most every ROW_EVERY_S."""
        now = self.clock()
        written, old_state = self._written.get(run.name, (0.0, None))
        changed = state is not None and state != old_state
        if not changed and now - written < ROW_EVERY_S:
            return
        if state == "stopped" and old_state != "stopping":  # the last word without `stopping` before it
            state = "finished" if old_state == "finished" else "failed"
        state = state or old_state
        self._written[run.name] = (now, state)
        row: dict[str, Any] = {"id": run.name, "name": run.display, "host": host_of(run.display),
                               "last_seen": payload.get("ts", now), "started": payload.get("ts", now)}
        status = run.status
        for column in ("iteration", "max_iterations", "best_score"):
            if isinstance(status.get(column), int | float):
                row[column] = status[column]
        if isinstance(status.get("init_from"), str):  # a fine-tune: the file it started from (status field)
            row["init_from"] = status["init_from"]
        if isinstance(payload.get("run_dir"), str):
            row["run_dir"] = payload["run_dir"]
        if state is not None:
            row["state"] = state
            row["ended"] = payload.get("ts", now) if state in ENDED else None
        self.store.upsert_run(row)


async def backfill(ask: Ask, store: Store, run_id: str, first: int = 0, *, whole: bool = False) -> int | None:
    """Fetch the trainer's record from iteration `first` on, page by page, into the store (it replaces
    ours there: the trainer's record has every step's loss extremes). `whole`: the record is the whole
    run, so stored points past its end (a run resumed from an earlier step) go. Returns the last
    iteration the trainer knew, or None when it could not be asked."""
    span = PAGE
    while True:
        last = first + span - 1
        reply = await ask({"points": PAGE, "from": first, "to": last})
        if reply is None or not reply.get("ok") or not isinstance(reply.get("history"), list):
            return None
        points = [pick(json_safe(p), HISTORY_FIELDS) for p in reply["history"]
                  if isinstance(p, dict) and isinstance(p.get("iteration"), int)]
        for v in reply.get("validations") or []:
            if isinstance(v, dict) and isinstance(v.get("iteration"), int):
                store.add_validation(run_id, pick(json_safe(v), VALIDATION_POINT_FIELDS))
        end = reply.get("last_iteration")
        if not isinstance(end, int):  # a trainer without paging: its last points, as they are
            if points:
                store.replace_points(run_id, points[0]["iteration"], points[-1]["iteration"], points)
            return points[-1]["iteration"] if points else None
        done = last >= end
        store.replace_points(run_id, first, END_OF_RUN if done and whole else min(last, end), points)
        if done:
            return end
        its = [p["iteration"] for p in points]
        gaps = [b - a for a, b in zip(its, its[1:], strict=False)]
        first, span = last + 1, PAGE * max(1, min(gaps)) if gaps else span * 4  # sparse records: wider pages


def _event_state(event: dict[str, Any]) -> str | None:
    kind, data = event.get("kind"), event.get("data")
    if kind == "error":
        return "failed" if isinstance(data, dict) and data.get("fatal") else None
    return kind if kind in ("finished", "stopping") else None


def host_of(display: str) -> str | None:
    """`folder@host` -> host."""
    return display.rpartition("@")[2] if "@" in display else None


def runs_listing(stored: list[dict[str, Any]], state: MonitorState, now: float | None = None) -> list[dict[str, Any]]:
    """Every run, stored (the store's rows) or live, newest first, as GET /api/runs gives them (on the loop)."""
    now = time.time() if now is None else now
    rows = {r["id"]: r for r in stored}
    for run in state.runs.values():  # live runs whose row the writer has not written yet
        rows.setdefault(run.name, {"id": run.name, "name": run.display, "host": host_of(run.display),
                                   "state": run.status.get("state"), "started": now, "last_seen": now})
    listing = [_summary(row, state, now) for row in rows.values()]
    return sorted(listing, key=lambda r: r["started"] or 0.0, reverse=True)


def shown_state(row: dict[str, Any], live: bool) -> tuple[str | None, float | None]:
    """A stored run's state as shown (GET /api/runs, `runs list`) and when it ended: one not live that
    has not ended is `lost` (`stopped` after `stopping`: its last word), ended when last seen."""
    if live or row.get("state") in ENDED:
        return row.get("state"), row.get("ended")
    return ("stopped" if row.get("state") == "stopping" else "lost"), row.get("last_seen")


def seen_lately(row: dict[str, Any], now: float) -> bool:
    """Whether a stored row counts as live where no frames are heard (the command line)."""
    return isinstance(row.get("last_seen"), float | int) and now - row["last_seen"] < SEEN_LATELY_S


def _summary(row: dict[str, Any], state: MonitorState, now: float) -> dict[str, Any]:
    live = state.is_online(row["id"])
    known = state.runs.get(row["id"])
    status = known.status if known is not None else {}
    run_state, ended = shown_state(row, live)
    started = row.get("started")
    duration = ((now if live else ended or row.get("last_seen") or now) - started) if started else None
    summary = {"id": row["id"], "run": row["id"], "name": row["name"], "host": row.get("host"), "state": run_state,
               "live": live, "iteration": status.get("iteration", row.get("iteration") or 0),
               "max_iterations": status.get("max_iterations", row.get("max_iterations") or 0),
               "best_score": status.get("best_score", row.get("best_score")), "started": started,
               "ended": None if live else ended, "duration": duration, "current": row["id"] == state.current}
    if row.get("init_from"):
        summary["init_from"] = row["init_from"]
    return summary
