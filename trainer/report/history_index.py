"""The index kept beside `metrics.jsonl` (in `metrics.index/`), so a run's whole history reads in
bounded time and memory however long the run.

What it holds is the run's *live curve*: the `train` and `val` records that no later record redid.
A resumed run (or one rolled back after diverging) goes on from an earlier step, and the records it
wrote past that step before are superseded. The rule, in file order: a record at step s drops every
earlier train or val record past s, and an earlier record of its own kind at s (a `start` record,
written when a process starts training at step s, drops those past s). So each kind's live rows are
a stack sorted by step: appended, and cut back when a run goes back.

Files (fixed-size little-endian rows, read through np.memmap):
- `train.bin`: a history point per live train record (`protocol.HISTORY_FIELDS`, read from the record's
  keys `RECORD_NAMES`), so a reply needs no JSON;
- `val.bin`: a validation point per live val record (`protocol.VALIDATION_POINT_FIELDS`; `metric_space`
  as 1 + its place in `protocol.METRIC_SPACES`, 0 when absent; absent numbers as NaN);
- `levelK.bin`: the last iteration and the lowest loss_min and highest loss_max of each complete block of
  FANOUT**K train rows, so finding an iteration and the extremes of any row range read
  O(FANOUT * levels) values (trainer.report.history reads them);
- `meta.json`: the metrics.jsonl bytes indexed, the row counts and their CRC32, written after every
  cut and every META_EVERY records. On open, an index that does not match metrics.jsonl (missing,
  truncated, corrupt, another file) is rebuilt from it; a matching one is extended with the lines
  appended since. The level files are always rebuilt from train.bin (cheap: numpy over the rows).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol import HISTORY_FIELDS, METRIC_SPACES, VALIDATION_POINT_FIELDS
from trainer.report.rowfile import CHUNK, RowFile

VERSION = 3
FANOUT = 16
META_EVERY = 256
NOTICE_BYTES = 64 * 2**20  # a rebuild from a metrics.jsonl this large says so first
# A history point's field -> the name its value has in a metrics.jsonl `train` record.
RECORD_NAMES = {"iteration": "step", "total_loss": "loss", "learn_rate": "lr", "iter_speed": "iter_speed",
                "gpu_memory": "gpu_memory", "timestamp": "ts", "loss_min": "loss_min", "loss_max": "loss_max"}
assert tuple(RECORD_NAMES) == HISTORY_FIELDS
TRAIN_ROW = np.dtype([(name, "<i8" if name == "iteration" else "<f8") for name in HISTORY_FIELDS])
VAL_ROW = np.dtype([(name, "<i8" if name in ("iteration", "metric_space") else "<f8")
                    for name in VALIDATION_POINT_FIELDS])
LEVEL_ROW = np.dtype([("iteration", "<i8"), ("loss_min", "<f8"), ("loss_max", "<f8")])  # iteration: the block's last
_HEAD_BYTES = 256  # the start of metrics.jsonl that identifies it (another file after an archive differs)


@dataclass(frozen=True)
class View:
    """What a reader may read without the lock: row counts at one moment and the generation then
    (any cut bumps it; a reader that sees it changed reads again)."""

    folder: Path
    source: Path
    train: int
    val: int
    levels: tuple[int, ...]  # complete blocks at level 1, 2, ...
    generation: int

    def rows(self, name: str, dtype: np.dtype, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype)
        return np.memmap(self.folder / name, dtype=dtype, mode="r", shape=(count,))


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _block(entries: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """(last iteration, lowest lo, highest hi), NaN ignored unless all are NaN (as np.fmin/np.fmax)."""
    los = [lo for _, lo, _ in entries if lo == lo]
    his = [hi for _, _, hi in entries if hi == hi]
    return (entries[-1][0], min(los) if los else math.nan, max(his) if his else math.nan)


_TRAIN_KEYS = [RECORD_NAMES[f] for f in HISTORY_FIELDS[1:]]


def _train_row(step: int, record: dict[str, Any]) -> list[int | float]:
    """A train record as its history point's row; records from before loss_min/loss_max: the loss for both."""
    values = [record.get(key) for key in _TRAIN_KEYS]
    if "loss_min" not in record:
        values[-2] = values[-1] = record.get("loss")
    return [step, *(v if type(v) is float else _float(v) for v in values)]


def _val_row(step: int, record: dict[str, Any]) -> list[int | float]:
    space = record.get("metric_space")
    values = {**record, "timestamp": record.get("ts"),
              "metric_space": METRIC_SPACES.index(space) + 1 if space in METRIC_SPACES else 0}
    return [step, *(values["metric_space"] if f == "metric_space" else _float(values.get(f))
                    for f in VALIDATION_POINT_FIELDS[1:])]


class HistoryIndex:
    """The live curve of one metrics.jsonl; `add` after each line is written, `view` to read. Thread-safe."""

    def __init__(self, source: str | Path, folder: str | Path | None = None) -> None:
        self.source = Path(source)
        self.folder = Path(folder) if folder is not None else self.source.with_suffix(".index")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.train = RowFile(self.folder / "train.bin", TRAIN_ROW)
        self.val = RowFile(self.folder / "val.bin", VAL_ROW)
        self.levels: list[RowFile] = []  # level K at [K - 1]
        self._pending: list[list[tuple[int, float, float]]] = [[]]  # per level: entries not yet in a full block
        self.generation = 0
        self.indexed = 0  # bytes of metrics.jsonl indexed
        self._since_meta = 0
        self._bulk = False  # while reading metrics.jsonl on open: meta.json once at the end
        self.rebuilt = False  # whether open found no usable index (for the benchmark and tests)
        self.failed: str | None = None  # why a write failed: no more updates (nor reads) in this process
        with self._lock:
            self._open()

    # ---- opening ----------------------------------------------------------------------------
    def _open(self) -> None:
        meta = self._read_meta()
        if meta is None or not self._matches(meta):
            size = self.source.stat().st_size if self.source.exists() else 0
            if size > NOTICE_BYTES:  # about 10 s per 200 MB
                print(f"indexing {self.source} ({size / 2**20:.0f} MB) for the `history` command, once",
                      file=sys.stderr, flush=True)
            self.rebuilt = True
            self.indexed = 0
            self.train.reset(0, shrink=True)
            self.val.reset(0, shrink=True)
        self._rebuild_levels()
        self._extend()
        self._write_meta()

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
            return meta if meta.get("version") == VERSION and meta.get("fanout") == FANOUT else None
        except (OSError, ValueError, AttributeError):
            return None

    def _matches(self, meta: dict[str, Any]) -> bool:
        """Whether the index's recorded prefix is intact and describes this metrics.jsonl."""
        try:
            indexed, train, val = int(meta["indexed"]), int(meta["train"]), int(meta["val"])
            if self.source.stat().st_size < indexed or meta["head"] != self._head(indexed):
                return False
            if self.train.size_rows() < train or self.val.size_rows() < val:
                return False
            if self.train.prefix_crc(train) != meta["train_crc"] or self.val.prefix_crc(val) != meta["val_crc"]:
                return False
        except (OSError, KeyError, TypeError, ValueError):
            return False
        self.train.reset(train, meta["train_crc"], shrink=True)
        self.val.reset(val, meta["val_crc"], shrink=True)
        self.indexed = indexed
        return True

    def _head(self, size: int) -> int:
        with open(self.source, "rb") as fh:
            return zlib.crc32(fh.read(min(size, _HEAD_BYTES)))

    def _extend(self) -> None:
        """Index the complete lines after `indexed` (a torn last line waits: it is not complete yet)."""
        try:
            fh = open(self.source, "rb")
        except FileNotFoundError:
            return
        self._bulk = True
        try:
            with fh:
                fh.seek(self.indexed)
                offset = self.indexed
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        record = json.loads(line.decode("utf-8", "replace"))
                    except ValueError:  # a line torn by a crash, then continued by the next process
                        record = None
                    self._add(offset, offset + len(line), record)
                    offset += len(line)
        finally:
            self._bulk = False

    # ---- writing ----------------------------------------------------------------------------
    def add(self, offset: int, end: int, record: dict[str, Any]) -> None:
        """The metrics.jsonl line [offset, end) holds `record` (called after it was written)."""
        with self._lock:
            if self.failed:
                return
            try:
                if offset != self.indexed:  # a line we did not see: catch up from the file
                    self._extend()
                else:
                    self._add(offset, end, record)
            except Exception as exc:  # e.g. a full disk: training goes on; the next start rebuilds what is missing
                plain = isinstance(exc, OSError) and exc.strerror
                self.failed = exc.strerror if plain else f"{type(exc).__name__}: {exc}"
                print(f"warning: cannot update {self.folder.name} ({self.failed}); `history` stops here "
                      "until the next start", file=sys.stderr, flush=True)

    def _add(self, offset: int, end: int, record: Any) -> None:
        self.indexed = end
        kind = record.get("kind") if isinstance(record, dict) else None
        step = record.get("step") if kind in ("train", "val", "start") else None
        if not isinstance(step, int) or isinstance(step, bool):
            return
        cut_train = self.train.cut(step, keep_equal=kind != "train")
        cut_val = self.val.cut(step, keep_equal=kind != "val")
        if cut_train:
            self._after_train_cut()
        if kind == "train":
            row = _train_row(step, record)
            self.train.push(row)
            self._push_level(0, (step, row[-2], row[-1]))
        elif kind == "val":
            self.val.push(_val_row(step, record))
        if cut_train or cut_val:
            self.generation += 1
        self._since_meta += 1
        if not self._bulk and (cut_train or cut_val or self._since_meta >= META_EVERY):
            self._write_meta()

    def _push_level(self, level: int, entry: tuple[int, float, float]) -> None:
        pending = self._pending[level]
        pending.append(entry)
        if len(pending) < FANOUT:
            return
        block = _block(pending)
        pending.clear()
        if len(self.levels) <= level:
            self.levels.append(RowFile(self.folder / f"level{level + 1}.bin", LEVEL_ROW))
            self._pending.append([])
        self.levels[level].push(block)
        self._push_level(level + 1, block)

    def _after_train_cut(self) -> None:
        """Level files and pending entries for the train rows left after a cut."""
        count = self.train.count
        for k, stack in enumerate(self.levels, start=1):
            stack.reset(count // FANOUT ** k)
        self._refill_pending()

    def _rebuild_levels(self) -> None:
        """Level files from train.bin, chunk by chunk (each chunk a whole number of top blocks)."""
        for stack in self.levels:
            stack.close()
        self.levels = []
        for path in sorted(self.folder.glob("level*.bin")):
            path.unlink()
        count, lower = self.train.count, None
        for k in range(1, 64):
            blocks = count // FANOUT ** k
            if blocks == 0:
                break
            stack = RowFile(self.folder / f"level{k}.bin", LEVEL_ROW)
            source = self.train if lower is None else lower
            step = CHUNK - CHUNK % FANOUT
            for start in range(0, blocks * FANOUT, step):
                rows = source.read(start, min(blocks * FANOUT, start + step)).reshape(-1, FANOUT)
                out = np.empty(len(rows), LEVEL_ROW)
                out["iteration"] = rows["iteration"][:, -1]
                out["loss_min"] = np.fmin.reduce(rows["loss_min"], axis=1)
                out["loss_max"] = np.fmax.reduce(rows["loss_max"], axis=1)
                stack.fh.write(out.tobytes())
            stack.count = blocks
            self.levels.append(stack)
            lower = stack
        self._refill_pending()

    def _refill_pending(self) -> None:
        stacks = [self.train, *self.levels]
        self._pending = []
        for stack in stacks:
            full = stack.count - stack.count % FANOUT
            rows = stack.read(full, stack.count)
            self._pending.append(list(zip(rows["iteration"].tolist(), rows["loss_min"].tolist(),
                                          rows["loss_max"].tolist(), strict=True)))
        while self.levels and self.levels[-1].count == 0:  # a cut emptied the top level
            self.levels.pop().close()
            self._pending.pop()

    def _write_meta(self) -> None:
        meta = {"version": VERSION, "fanout": FANOUT, "indexed": self.indexed, "head": self._head(self.indexed)
                if self.source.exists() else 0, "train": self.train.count, "val": self.val.count,
                "train_crc": self.train.crc, "val_crc": self.val.crc}
        for stack in (self.train, self.val):
            stack.fh.flush()
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.folder / "meta.json")
        self._since_meta = 0

    # ---- reading ----------------------------------------------------------------------------
    def view(self) -> View:
        """What readers may read now. RuntimeError once a write failed (the next start rebuilds or extends)."""
        with self._lock:
            if self.failed:
                raise RuntimeError(f"the history index could not be written ({self.failed}); the next start "
                                   "brings it up to date from metrics.jsonl")
            for stack in (self.train, self.val, *self.levels):
                stack.fh.flush()
            return View(self.folder, self.source, self.train.count, self.val.count,
                        tuple(s.count for s in self.levels), self.generation)

    def close(self) -> None:
        with self._lock:
            if not self.failed:  # a failed index is not vouched for: the next start checks and extends it
                self._write_meta()
            for stack in (self.train, self.val, *self.levels):
                with contextlib.suppress(OSError, ValueError):
                    stack.close()
