"""The run folder's logs: `training.log` (timestamped events), `metrics.jsonl`, TensorBoard.

All files are opened in append mode: a resumed run continues the same logs. Every metrics.jsonl line
is also handed to the run's history index (trainer.report.history_index), which the `history`
command reads. TensorBoard scalars are written only when the optional `tensorboard` extra is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from protocol import json_safe
from trainer.report.history_index import HistoryIndex


def _open_tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional extra not installed
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class RunLog:
    """Append-only event log and metric stream of one run folder (thread-safe)."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._failing = False
        self._log = open(self.run_dir / "training.log", "a", encoding="utf-8")
        self._metrics = open(self.run_dir / "metrics.jsonl", "ab", buffering=0)  # one write per line: its offset
        self._metrics_end, self._torn = self._metrics_state()
        self.history = HistoryIndex(self.run_dir / "metrics.jsonl")
        self._tb = _open_tensorboard(self.run_dir) if tensorboard else None

    def event(self, name: str, message: str = "", **fields: Any) -> None:
        """One line in training.log: `2026-11-28 20:00:00  checkpoint_saved  message {fields}`."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        extra = f" {json.dumps(json_safe(fields), sort_keys=True)}" if fields else ""
        with self._lock:
            self._append(self._log, f"{stamp}  {name:<20} {message}{extra}\n".rstrip() + "\n")

    def metrics(self, kind: str, step: int, values: dict[str, Any], ts: float | None = None) -> None:
        """One JSON line in metrics.jsonl (`ts`: now unless given), and TensorBoard scalars `kind/name`."""
        record = json_safe({"ts": round(time.time(), 3) if ts is None else ts, "kind": kind, "step": step, **values})
        with self._lock:
            self._append_record(record)
            if self._tb is not None:
                for name, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        self._tb.add_scalar(f"{kind}/{name}", value, step)

    def _append_record(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl line, then its index entry. A line torn by a crash or a full disk is ended
        first, so the next record starts a line of its own."""
        line = json.dumps(record).encode() + b"\n"
        prefix = b"\n" if self._torn else b""
        if self._append(self._metrics, prefix + line):
            start, self._metrics_end = self._metrics_end + len(prefix), self._metrics_end + len(prefix + line)
            self._torn = False
            self.history.add(start, self._metrics_end, record)
        else:
            self._metrics_end, self._torn = self._metrics_state()

    def _metrics_state(self) -> tuple[int, bool]:
        """metrics.jsonl's size, and whether its last line is torn (no newline at its end)."""
        size = os.fstat(self._metrics.fileno()).st_size
        if size == 0:
            return 0, False
        with open(self._metrics.name, "rb") as fh:
            fh.seek(size - 1)
            return size, fh.read(1) != b"\n"

    def _append(self, fh: Any, line: str | bytes) -> bool:
        """A full disk must not stop training: a failed write is reported once per streak, not raised."""
        try:
            if fh.write(line) != len(line):  # an unbuffered write cut short by a full disk
                raise OSError(28, os.strerror(28))
            fh.flush()
        except OSError as exc:
            if not self._failing:
                print(f"warning: cannot write {Path(fh.name).name} ({exc.strerror}); training goes on",
                      file=sys.stderr, flush=True)
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self) -> None:
        with self._lock:
            for fh in (self._log, self._metrics):
                if not fh.closed:
                    with contextlib.suppress(OSError):  # unflushed lines on a full disk
                        fh.close()
            if self._tb is not None:
                self._tb.close()
                self._tb = None
            self.history.close()
