"""The trainer's `history` reply, read from the run folder's metrics.jsonl through its index
(trainer.report.history_index): the whole run across every resume, in bounded time and memory.

`{"points": N, "from": I, "to": J}` (each optional: HISTORY_POINTS points over the whole run) splits
the iterations I..J into N equal buckets; each bucket with records becomes one point: the values of
its last record, and `loss_min`/`loss_max` = the extremes of every step in the bucket, so a one-step
spike survives any thinning. `limit` (the old argument) asks for the last `limit` records, one point
each. Validations: every one in I..J. Work per request: O(N * FANOUT * levels) index values and N
lines of metrics.jsonl, whatever the run's length.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from protocol import HISTORY_FIELDS, VALIDATION_POINT_FIELDS, ProtocolError
from protocol.schemas import HISTORY_MAX_POINTS, HISTORY_POINTS
from trainer.report.history_index import FANOUT, LEVEL_ROW, TRAIN_ROW, VAL_ROW, HistoryIndex, View

# A history point's field -> the name its value has in a metrics.jsonl `train` record.
RECORD_NAMES = {"iteration": "step", "total_loss": "loss", "learn_rate": "lr", "iter_speed": "iter_speed",
                "gpu_memory": "gpu_memory", "timestamp": "ts", "loss_min": "loss_min", "loss_max": "loss_max"}
assert tuple(RECORD_NAMES) == HISTORY_FIELDS


def record_values(point: dict[str, Any]) -> dict[str, Any]:
    """A history point as the values of its `train` record (step and ts are the record's own keys)."""
    return {RECORD_NAMES[k]: point[k] for k in HISTORY_FIELDS if k not in ("iteration", "timestamp")}


def history(index: HistoryIndex, args: dict[str, Any]) -> dict[str, Any]:
    """The `history` reply's fields: history, validations, from, to, last_iteration."""
    points, start, stop, limit = _request(args)
    for _ in range(3):  # a cut (a rollback) while reading: read again
        view = index.view()
        reply = _read(view, points, start, stop, limit)
        if index.generation == view.generation:
            break
    return reply


def _request(args: dict[str, Any]) -> tuple[int, int | None, int | None, int | None]:
    points, limit = args.get("points", HISTORY_POINTS), args.get("limit") or None
    start, stop = args.get("from"), args.get("to")
    if not 1 <= points <= HISTORY_MAX_POINTS:
        raise ProtocolError(f"'history' points must be 1..{HISTORY_MAX_POINTS}, got {points}")
    if limit is not None and limit < 0:
        raise ProtocolError(f"'history' limit must not be negative, got {limit}")
    if start is not None and stop is not None and start > stop:
        raise ProtocolError(f"'history' from ({start}) is past to ({stop})")
    return points, start, stop, None if limit is None else min(limit, HISTORY_MAX_POINTS)


def _read(view: View, points: int, start: int | None, stop: int | None, limit: int | None) -> dict[str, Any]:
    train = view.rows("train.bin", TRAIN_ROW, view.train)
    vals = view.rows("val.bin", VAL_ROW, view.val)
    last = max(int(train["step"][-1]) if len(train) else 0, int(vals["step"][-1]) if len(vals) else 0)
    start = 0 if start is None else start
    stop = last if stop is None else stop
    a, b = int(np.searchsorted(train["step"], start, "left")), int(np.searchsorted(train["step"], stop, "right"))
    if limit is not None or b - a <= points:
        first = a if limit is None else max(a, b - limit)
        starts = np.arange(first, b, dtype=np.int64)
        ends = starts + 1
    else:
        edges = start + (np.arange(1, points, dtype=np.int64) * (stop - start + 1) + points - 1) // points
        cuts = np.concatenate(([a], np.searchsorted(train["step"], edges, side="left"), [b]))
        starts, ends = cuts[:-1], cuts[1:]
        keep = starts < ends
        starts, ends = starts[keep], ends[keep]
    lo, hi = _extremes(view, train, starts, ends)
    va, vb = np.searchsorted(vals["step"], start, "left"), np.searchsorted(vals["step"], stop, "right")
    with open(view.source, "rb") as fh:
        records = _records(fh, train["offset"][ends - 1] if len(ends) else [])
        validations = [_validation(r) for r in _records(fh, vals["offset"][va:vb])]
    history = [_point(r, low, high) for r, low, high in zip(records, lo.tolist(), hi.tolist(), strict=True)]
    return {"history": history, "validations": validations, "from": int(start), "to": int(stop),
            "last_iteration": last}


def _extremes(view: View, train: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest loss_min and highest loss_max of the train rows [starts[i], ends[i]) for every i.

    Level by level: the parts of each range outside whole blocks of the next level are read here (at
    most 2 * FANOUT values), the rest one level up, where the range is FANOUT times shorter."""
    lo, hi = np.full(len(starts), np.inf), np.full(len(starts), -np.inf)
    arrays = [train, *(view.rows(f"level{k}.bin", LEVEL_ROW, n) for k, n in enumerate(view.levels, start=1))]
    first, stop = starts.astype(np.int64), ends.astype(np.int64)
    active = first < stop
    offsets = np.arange(2 * FANOUT)
    for k, rows in enumerate(arrays):
        if not active.any():
            break
        up, down = -(-first // FANOUT) * FANOUT, stop // FANOUT * FANOUT
        climb = active & (up < down) & (k + 1 < len(arrays))
        segments = ((first, np.where(climb, up, stop)), (np.where(climb, down, stop), stop))
        for seg_start, seg_stop in segments:
            index = seg_start[:, None] + offsets
            inside = (index < seg_stop[:, None]) & active[:, None]
            index = np.minimum(index, len(rows) - 1)
            lo = np.fmin(lo, np.fmin.reduce(np.where(inside, rows["lo"][index], np.inf), axis=1))
            hi = np.fmax(hi, np.fmax.reduce(np.where(inside, rows["hi"][index], -np.inf), axis=1))
        first, stop, active = up // FANOUT, down // FANOUT, climb
    return lo, hi


def _records(fh: Any, offsets: Any) -> list[dict[str, Any]]:
    out = []
    for offset in np.asarray(offsets).tolist():
        fh.seek(offset)
        out.append(json.loads(fh.readline()))
    return out


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _point(record: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    point = {field: record.get(name) for field, name in RECORD_NAMES.items()}
    point["loss_min"], point["loss_max"] = _number(low), _number(high)
    return point


def _validation(record: dict[str, Any]) -> dict[str, Any]:
    point = {"iteration": record["step"], "timestamp": record.get("ts")}
    point.update({k: record[k] for k in VALIDATION_POINT_FIELDS if k in record and k not in point})
    return {k: point[k] for k in VALIDATION_POINT_FIELDS if k in point}
