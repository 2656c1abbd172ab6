"""When training diverges: skip non-finite steps, roll back to the last finite state, never save a broken one.

Per step, on the device and without a host sync: `poison` makes a non-finite loss turn every gradient
non-finite, so the gradient norm the loop computes anyway for clipping (one fused reduction; in DDP over
the all-reduced gradients, hence equal on every rank) decides alone: finite, the optimizer steps; not
finite, nothing changes (a fused optimizer gets the flag as `found_inf` and skips on the device; others
read it, free on CPU; the clipper already ignores non-finite norms). The per-step flags stay on the
device and are read together every `check_every` steps, a fixed cadence, so every rank and a resumed run
decide at the same steps: `nan_skipped` events, a rollback after `max_skips` consecutive skips or when
the weights are not finite, a clean stop after `max_rollbacks` rollbacks without progress (M clean steps and a new
snapshot). A rollback restores weights, optimizer, grad scaler, clipper and adaptive loss weights from
the in-memory snapshot (else the newest finite checkpoint), keeps the step and data position going (the
batches in between are skipped) and scales the LR down for `lr_steps` steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import get_total_norm

import ckpt
from trainer.train.checkpoint import restore_training_parts, state_tensors, training_parts
from trainer.train.snapshot import SnapshotBuffers

NAN = float("nan")
EVENT_EVERY_S = 10.0  # nan_skipped events at most this often (the status carries the count always)
SKIP_REASON = "non-finite loss or gradient norm"


class DivergenceError(RuntimeError):
    """The run keeps diverging after `max_rollbacks` rollbacks: it stops (one line, non-zero exit)."""


@dataclass
class DivergenceConfig:
    enabled: bool = True
    max_skips: int = 10  # K: consecutive non-finite steps that trigger a rollback
    max_rollbacks: int = 3  # R: rollbacks without progress before the run stops
    lr_factor: float = 0.5  # LR multiplier after a rollback (compounds while there is no progress)
    lr_steps: int = 500  # how many steps the lowered LR lasts
    snapshot_every: int = 100  # M: in-memory snapshot cadence; 0 = roll back to the newest finite checkpoint
    check_every: int = 5  # the host reads the steps' flags every N steps (one sync)
    inject_nan_steps: list[int] = field(default_factory=list)  # FOR TESTS: these steps get a NaN batch
    inject_nan_rank: int = -1  # FOR TESTS: on this rank only (-1: every rank)

    def __post_init__(self) -> None:
        limits = (("max_skips", 1), ("check_every", 1), ("max_rollbacks", 0), ("lr_steps", 0),
                  ("snapshot_every", 0))
        for key, low in limits:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"divergence.{key} must be an int >= {low}, got {value!r}")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"divergence.lr_factor must be in (0, 1], got {self.lr_factor!r}")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in self.inject_nan_steps):
            raise ValueError(f"divergence.inject_nan_steps must be a list of steps >= 1, "
                             f"got {self.inject_nan_steps!r}")


# ---- device side: no host sync ------------------------------------------------------------------
def poison(loss: torch.Tensor) -> torch.Tensor:
    """`loss` itself when finite (bit for bit, gradients too); else a loss whose backward pass makes
    every gradient NaN, so the non-finite step shows in the (all-reduced) gradient norm."""
    return loss * loss.detach().mul(0).add_(1)  # 1 exactly when finite; 0 * inf or nan is NaN


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Whether every floating tensor is finite: one fused max-|x| reduction, a 0-dim bool on the device."""
    floats = [t.detach() for t in tensors if t.is_floating_point()]
    if not floats:
        return torch.tensor(True)
    return torch.isfinite(get_total_norm(floats, norm_type=math.inf))


def finite_state(parts: dict[str, Any]) -> bool:
    """Whether the weights and optimizer state of a checkpoint (or of `training_parts`) are all finite."""
    return bool(all_finite([t for _, t in state_tensors(parts)]))


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   finite: torch.Tensor | None) -> None:
    """The optimizer step, or none at all (not even weight decay or the step count) unless `finite`."""
    if finite is None or scaler.is_enabled():  # GradScaler skips steps with non-finite gradients itself
        scaler.step(optimizer)
    elif getattr(optimizer, "_step_supports_amp_scaling", False):  # fused: skipped on the device
        optimizer.found_inf = torch.where(finite, 0.0, 1.0)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif bool(finite):  # a host read: free on CPU, a sync for non-fused optimizers on CUDA
        optimizer.step()


# ---- what a rollback restores: checkpoint.training_parts ----------------------------------------
def finite_checkpoint(run_dir: Path, step: int | None = None) -> tuple[int, dict[str, Any]] | None:
    """(step, checkpoint) of the newest checkpoint (at `step` if given) whose tensors are all finite."""
    entries = sorted(ckpt.list_checkpoints(run_dir), key=lambda e: e["step"], reverse=True)
    for entry in (e for e in entries if step is None or e["step"] == step):
        try:
            saved = ckpt.load_checkpoint(entry["path"])
            if finite_state(saved):
                return int(entry["step"]), saved
        except (ckpt.CheckpointError, KeyError, OSError):
            continue
    return None


class Guard:
    """Skip flags on the device, counters and the rollback policy on the host; `state_dict` is training state
    (checkpointed), so a run resumed after a rollback goes on as the straight one. `state` is the
    TrainingState (model, optimizer, scaler, clipper, adaptive); `tel` has `event` and `set_divergence`."""

    def __init__(self, cfg: DivergenceConfig) -> None:
        self.cfg = cfg
        self._flags: list[torch.Tensor] = []  # per step since the last read: finite (0-dim bool, device)
        self.consecutive = self.unreported = 0  # as of the last read
        self.skipped = self.rollbacks = self.since_progress = 0
        self.last_rollback: int | None = None
        self.lr_factor, self.lr_until = 1.0, 0
        self._snapshot: tuple[int, dict[str, Any]] | None = None
        self.snapshot_step: int | None = None  # checkpointed: a resumed run reloads that state if it can
        self._buffers = SnapshotBuffers()
        self._last_event = -math.inf
        self._shown: tuple[int, int] | None = None  # (skipped, rollbacks) as the status last showed them

    # ---- every step, on the device -------------------------------------------------------
    def lr_scale(self, step: int) -> float:
        return self.lr_factor if step < self.lr_until else 1.0

    def inject(self, step: int, frames: torch.Tensor) -> torch.Tensor:
        """The test hook: a NaN batch at the configured steps (1-based, as the step counter after it)."""
        if step not in self.cfg.inject_nan_steps:
            return frames
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return torch.full_like(frames, NAN) if self.cfg.inject_nan_rank in (-1, rank) else frames

    def poison(self, loss: torch.Tensor) -> torch.Tensor:
        return poison(loss) if self.cfg.enabled else loss

    def observe(self, grad_norm: torch.Tensor) -> torch.Tensor | None:
        """Whether this step may change anything (0-dim bool on the device), from the gradient norm;
        kept for the next read. None when the checks are off."""
        if not self.cfg.enabled:
            return None
        finite = torch.isfinite(grad_norm.detach())
        self._flags.append(finite)
        return finite

    def step_was_bad(self) -> bool:
        """Whether the last step was skipped (a host read: only where the loop reads anyway)."""
        return bool(self._flags) and not bool(self._flags[-1])

    def totals(self) -> tuple[int, int]:
        """(skipped steps, rollbacks) so far; reads the pending flags."""
        self._read()
        return self.skipped, self.rollbacks

    def _read(self) -> None:
        """Fold the flags since the last read into the host counters: one device->host copy."""
        if not self._flags:
            return
        for finite in torch.stack(self._flags).tolist():
            self.consecutive = 0 if finite else self.consecutive + 1
            self.unreported += not finite
            self.skipped += not finite
        self._flags.clear()

    # ---- every check_every steps, on the host ---------------------------------------------
    def start(self, step: int, state: Any, run_dir: Path) -> None:
        """The first snapshot: on a resume, the straight run's (from its checkpoint, when one at that step
        is still on disk), else the state training starts from."""
        if not (self.cfg.enabled and self.cfg.snapshot_every):
            return
        saved = self.snapshot_step
        self._snapshot = None if saved in (None, step) else finite_checkpoint(run_dir, saved)
        if self._snapshot is None:
            self._take_snapshot(step, state)
            if saved is not None:  # the straight run's point stays the saved one (equal checkpoints)
                self.snapshot_step = saved

    def end_step(self, step: int, state: Any, tel: Any, run_dir: Path) -> None:
        """After `step`: report skips, roll back, or snapshot, at fixed steps; DivergenceError to stop."""
        cfg = self.cfg
        snapshot_due = cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0
        if not cfg.enabled or (step % cfg.check_every and not snapshot_due):
            return
        self._read()
        consecutive, new = self.consecutive, self.unreported
        if new:
            self._report_skips(step, tel)
            self.unreported = 0
        if consecutive >= cfg.max_skips:
            self._roll_back(step, f"{consecutive} non-finite steps in a row", state, tel, run_dir)
        elif snapshot_due and not finite_state(training_parts(state)):
            self._roll_back(step, "non-finite weights", state, tel, run_dir)
        elif snapshot_due and consecutive == 0 and self._clean_since_rollback(step):
            self._take_snapshot(step, state)
            self.since_progress = 0
        if self._shown != (self.skipped, self.rollbacks):  # also a resumed run's counts, at its first check
            self._shown = (self.skipped, self.rollbacks)
            tel.set_divergence(*self._shown)

    def refuse_reason(self, state: Any) -> str | None:
        """Why the state must not be saved now (None: it may); a sync, as every save has. Isolated
        skipped steps change nothing, but a streak long enough for a rollback means a diverged state."""
        if not finite_state(training_parts(state)):
            return "weights or optimizer state hold non-finite values"
        self._read()
        if self.cfg.enabled and self.consecutive >= self.cfg.max_skips:
            return f"diverged: the last {self.consecutive} steps were not finite"
        return None

    # ---- internals ------------------------------------------------------------------------
    def _clean_since_rollback(self, step: int) -> bool:
        return self.last_rollback is None or step - self.last_rollback >= self.cfg.snapshot_every

    def _take_snapshot(self, step: int, state: Any) -> None:
        self._snapshot, self.snapshot_step = (step, self._buffers.capture(training_parts(state), "rollback")), step

    def _report_skips(self, step: int, tel: Any) -> None:
        now = time.monotonic()
        if now - self._last_event < EVENT_EVERY_S:
            return
        self._last_event = now
        tel.event("nan_skipped", f"Skipped non-finite steps up to step {step} ({self.skipped} so far)",
                  step=step, skipped=self.skipped, reason=SKIP_REASON)

    def _roll_back(self, step: int, reason: str, state: Any, tel: Any, run_dir: Path) -> None:
        if self.since_progress >= self.cfg.max_rollbacks:
            raise DivergenceError(f"training diverged at step {step} ({reason}) after {self.since_progress} "
                                  f"rollback(s) without progress; stopped. The checkpoints in {run_dir} are "
                                  f"intact; lower schedule.lr_max or raise divergence.max_rollbacks")
        source = self._snapshot or finite_checkpoint(run_dir)
        if source is None:
            raise DivergenceError(f"training diverged at step {step} ({reason}) and there is no finite "
                                  f"state to roll back to; lower schedule.lr_max")
        from_step, snap = source
        tel.event("diverged", f"Training diverged at step {step} ({reason}): rolling back to step {from_step}",
                  step=step, restore_step=from_step)
        restore_training_parts(state, snap, keep_saved=True)
        self.consecutive = 0
        self.rollbacks += 1
        self.since_progress += 1
        self.last_rollback = step
        self.lr_factor = self.cfg.lr_factor ** self.since_progress
        self.lr_until = step + self.cfg.lr_steps
        tel.event("recovered", f"Recovered at step {step} from the state of step {from_step} (rollback "
                  f"{self.rollbacks}); LR x{self.lr_factor:g} until step {self.lr_until}",
                  step=step, from_step=from_step, rollbacks=self.rollbacks)

    # ---- checkpointed -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._read()
        return {"skipped": self.skipped, "rollbacks": self.rollbacks, "since_progress": self.since_progress,
                "last_rollback": self.last_rollback, "lr_factor": self.lr_factor, "lr_until": self.lr_until,
                "consecutive": self.consecutive, "unreported": self.unreported,
                "snapshot_step": self.snapshot_step}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.skipped, self.rollbacks = int(saved["skipped"]), int(saved["rollbacks"])
        self.since_progress, self.last_rollback = int(saved["since_progress"]), saved["last_rollback"]
        self.lr_factor, self.lr_until = float(saved["lr_factor"]), int(saved["lr_until"])
        self.consecutive, self.unreported = int(saved["consecutive"]), int(saved["unreported"])
        self.snapshot_step = saved.get("snapshot_step")
        self._flags.clear()
