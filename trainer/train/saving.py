"""Checkpoint saving for the loop: snapshot, write in the background, prune, report.

Only rank 0 saves. A regular save returns at once: the weights are copied on the writer
thread while the next forward/backward runs (`wait_copied` guards the optimizer step).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ckpt
from trainer.config import Config
from trainer.report.telemetry import Telemetry
from trainer.train.snapshot import BackgroundWriter, SnapshotBuffers, freeze


class CheckpointSaver:
    """Writes checkpoint dicts under `run_dir` and keeps the folder to the retention settings."""

    def __init__(self, run_dir: Path, telemetry: Telemetry, get_cfg: Callable[[], Config]) -> None:
        self.run_dir = run_dir
        self.telemetry = telemetry
        self.get_cfg = get_cfg
        self.resumed_from: Path | None = None  # never pruned while this run lasts
        self.writer = BackgroundWriter(on_saved=self._on_saved, on_error=self._on_save_error)
        self.buffers = SnapshotBuffers()

    def path(self, step: int, kind: str) -> Path:
        return self.run_dir / ckpt.checkpoint_name(step, None if kind == "regular" else kind)

    def save(self, make_state: Callable[[], dict[str, Any]], path: Path, *, sync: bool) -> None:
        """Write the checkpoint `make_state()` returns, once the previous write is done (its reused
        snapshot buffers must not change under it)."""
        self.writer.wait()
        state = make_state()
        if sync:
            self.writer.save_now(path, freeze(state, self.buffers))
        else:
            self.writer.submit(path, state, freeze=lambda s: freeze(s, self.buffers))

    def wait_copied(self) -> None:
        """Before an optimizer step: the snapshot in flight no longer reads the live weights."""
        self.writer.wait_copied()

    # ---- writer thread -----------------------------------------------------------------
    def _on_saved(self, path: Path, state: dict[str, Any]) -> None:
        cfg = self.get_cfg()
        protect = [p for p in (self.resumed_from, path) if p is not None]
        removed = ckpt.prune(self.run_dir, keep_last=cfg.checkpoint.keep_last,
                             keep_best=cfg.checkpoint.keep_best, protect=protect)
        size_mb = ckpt.size_mb(path.stat().st_size) if path.exists() else None
        metrics = {k: v for k, v in state["metrics"].items() if k in ("quality", "loss")}
        self.telemetry.event("checkpoint_saved", f"Checkpoint saved: {path.name}", path=str(path),
                             filename=path.name, step=state["step"], type=state["type"],
                             size_mb=size_mb, removed=[p.name for p in removed], **metrics)

    def _on_save_error(self, path: Path, exc: BaseException) -> None:
        self.telemetry.event("error", f"Checkpoint {path.name} NOT saved: {exc}", path=str(path))

    def close(self) -> None:
        self.writer.wait()
