"""The trainer's `history` reply, read from the run folder's metrics.jsonl through its index
(trainer.report.history_index): the whole run across every resume, in bounded time and memory.

`{"points": N, "from": I, "to": J}` (each optional: HISTORY_POINTS points over the whole run) splits
the iterations I..J into N equal buckets; each bucket with records becomes one point: the values of
its last record, and `loss_min`/`loss_max` = the extremes of every step in the bucket, so a one-step
spike survives any thinning. `limit` (the old argument) asks for the last `limit` records, one point
each. Validations: every one in I..J. Work per request: O(N * FANOUT * levels) index values and the
validations asked for, whatever the run's length; metrics.jsonl itself is not read.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from protocol import HISTORY_FIELDS, METRIC_SPACES, VALIDATION_POINT_FIELDS, ProtocolError
from protocol.schemas import HISTORY_MAX_POINTS, HISTORY_POINTS
from trainer.report.history_index import FANOUT, LEVEL_ROW, RECORD_NAMES, TRAIN_ROW, VAL_ROW, HistoryIndex, View


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


def run_history(run_dir: str | Path, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """`history` of a run folder no trainer is writing now (a finished run), through its index."""
    index = HistoryIndex(Path(run_dir) / "metrics.jsonl")
    try:
        return history(index, args or {})
    finally:
        index.close()


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
    last = max(int(train["iteration"][-1]) if len(train) else 0, int(vals["iteration"][-1]) if len(vals) else 0)
    start = 0 if start is None else start
    stop = last if stop is None else stop
    arrays = [train, *(view.rows(f"level{k}.bin", LEVEL_ROW, n) for k, n in enumerate(view.levels, start=1))]
    a, b = (int(i) for i in _search(arrays, np.array([start, stop + 1])))
    if limit is not None or b - a <= points:
        first = a if limit is None else max(a, b - limit)
        starts = np.arange(first, b, dtype=np.int64)
        ends = starts + 1
    else:
        edges = start + (np.arange(1, points, dtype=np.int64) * (stop - start + 1) + points - 1) // points
        cuts = np.concatenate(([a], _search(arrays, edges), [b]))
        starts, ends = cuts[:-1], cuts[1:]
        keep = starts < ends
        starts, ends = starts[keep], ends[keep]
    lo, hi = _extremes(arrays, starts, ends)
    va, vb = np.searchsorted(np.asarray(vals["iteration"]), [start, stop + 1])  # validations: a few thousand
    points = _points(train[ends - 1] if len(ends) else train[:0], lo, hi)
    validations = _validations(np.asarray(vals[va:vb]))
    return {"history": points, "validations": validations, "from": int(start), "to": int(stop),
            "last_iteration": last}


def _extremes(arrays: list[np.ndarray], starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest loss_min and highest loss_max of the train rows [starts[i], ends[i]) for every i.

    Level by level: the parts of each range outside whole blocks of the next level are read here (at
    most 2 * FANOUT values), the rest one level up, where the range is FANOUT times shorter."""
    lo, hi = np.full(len(starts), np.inf), np.full(len(starts), -np.inf)
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
            lo = np.fmin(lo, np.fmin.reduce(np.where(inside, rows["loss_min"][index], np.inf), axis=1))
            hi = np.fmax(hi, np.fmax.reduce(np.where(inside, rows["loss_max"][index], -np.inf), axis=1))
        first, stop, active = up // FANOUT, down // FANOUT, climb
    return lo, hi


def _search(arrays: list[np.ndarray], needles: np.ndarray) -> np.ndarray:
    """np.searchsorted(train rows' iterations, needles, "left"), level by level from the top: the first
    block whose last iteration reaches the needle holds the answer, so each level reads FANOUT values
    per needle (numpy's own search would copy the memory-mapped column whole first)."""
    top = np.asarray(arrays[-1]["iteration"])  # under FANOUT entries when there are levels, else few rows
    found = np.searchsorted(top, needles, "left")
    offsets = np.arange(FANOUT)
    for lower in reversed(arrays[:-1]):
        index = found[:, None] * FANOUT + offsets  # the block's entries one level down (or the tail there)
        inside = index < len(lower)
        below = lower["iteration"][np.minimum(index, len(lower) - 1)] < needles[:, None]
        found = found * FANOUT + (below & inside).sum(axis=1)
    return found


def _column(values: np.ndarray) -> list[Any]:
    """Plain numbers; non-finite ones (nothing recorded) as None."""
    out = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def _points(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[dict[str, Any]]:
    """Each bucket's last row, with the bucket's extremes."""
    columns = [_column(np.asarray(rows[field])) for field in HISTORY_FIELDS[:-2]] + [_column(lo), _column(hi)]
    return [dict(zip(HISTORY_FIELDS, values, strict=True)) for values in zip(*columns, strict=True)]


def _validations(rows: np.ndarray) -> list[dict[str, Any]]:
    """Validation points with the fields their records had (absent numbers are NaN, an absent space 0)."""
    columns = {field: _column(rows[field]) for field in VALIDATION_POINT_FIELDS}
    columns["metric_space"] = [METRIC_SPACES[code - 1] if code else None for code in columns["metric_space"]]
    return [{k: v for k, v in zip(VALIDATION_POINT_FIELDS, values, strict=True) if v is not None}
            for values in zip(*columns.values(), strict=True)]
