"""The training state: what one optimizer step depends on, and what a checkpoint saves and restores.

Model, optimizer, AMP grad scaler, loss (with its adaptive weights), gradient clipper, plateau
boost, data position and the best validation quality so far; `trainer.train.checkpoint` turns this
object into a checkpoint dict and back.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import torch

from trainer import models
from trainer.config import Config, ConfigError
from trainer.device import amp_dtype, autocast_dtype
from trainer.train import adaptive, losses, schedule
from trainer.train.batches import BatchStream
from trainer.train.distributed import DistInfo, wrap_model
from trainer.train.divergence import Guard
from trainer.train.snapshot import unwrap


class TrainingState:
    """Built from the config on `device`; `wrap` puts the model into DDP once it is restored.

    Under DDP only rank 0 (`decides`) takes the decisions that change the update rule; the others
    `follow` them at the top of the next iteration (see `decisions`).
    """

    def __init__(self, cfg: Config, device: torch.device, batches: BatchStream, *, decides: bool = True) -> None:
        self.device = device
        self.decides = decides
        self.model_name, self.model_kwargs = cfg.model.name, cfg.model.kwargs()
        try:
            self.model = models.build(self.model_name, **self.model_kwargs).to(device)
        except ValueError as exc:  # e.g. model.options.mid_channels contradicting model.n_feats
            raise ConfigError(f"model {self.model_name!r}: {exc}") from None
        self.optimizer = schedule.build_optimizer(self.model, cfg.schedule)
        self.dtype = amp_dtype(cfg.train.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        initial = losses.LossWeights(cfg.loss.w_l1, cfg.loss.w_ms, cfg.loss.w_grad, cfg.loss.w_perc)
        self.adaptive = adaptive.AdaptiveLossWeights(initial, cfg.adaptive) if cfg.train.adaptive_loss else None
        self.loss_fn = losses.build_loss(cfg.loss, weights=self.adaptive).to(device)
        self.clipper = adaptive.AdaptiveClipper(cfg.clip)
        self.boost = schedule.PlateauBoost(cfg.schedule)
        self.divergence = Guard(cfg.divergence)  # skipped steps, rollbacks, the lowered-LR window
        self.batches = batches
        self.best_score: float | None = None  # the best validation quality so far
        self.last_validation: dict[str, Any] = {}  # the latest validation's metrics
        self.init_source: dict[str, Any] | None = None  # --init-from's file (path, name, sha256, format)

    def wrap(self, dist: DistInfo) -> None:
        self.model = wrap_model(self.model, dist, self.device)

    # ---- one step -----------------------------------------------------------------
    def lr(self, step: int, cfg: Config) -> float:
        """This step's LR from the live schedule settings, the plateau boost and a rollback's lowering."""
        return schedule.lr_at(step, cfg.schedule, boost_start=self.boost.start) * self.divergence.lr_scale(step)

    def prepare_step(self, step: int) -> None:
        """Per-step model switches, pure functions of the step (BasicVSR++: SPyNet frozen before
        spynet_fix_iter), so a resumed run sets them exactly as the straight one."""
        model = unwrap(self.model)
        if hasattr(model, "set_flow_trainable"):
            model.set_flow_trainable(step)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_dtype(self.device, self.dtype)

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """DDP: no gradient all-reduce for the micro-batches before the last one."""
        if skip and hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def clip(self, params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(list(params), self.clipper.clip)
        if self.decides:
            self.clipper.observe(norm)
        return norm

    def adapt_loss_weights(self, step: int, pred: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> bool:
        """Let the adaptive loss weights look at this step's output; True when they changed."""
        if self.adaptive is None or not self.decides:
            return False
        if self.adaptive.due(step) and self.divergence.step_was_bad():  # a skipped step is not measured
            return False
        return self.adaptive.observe(step, pred, target, loss)

    # ---- decisions: taken once (rank 0), followed by every rank at the same step ----------
    def decisions(self) -> dict[str, Any]:
        """Everything rank 0 decided that changes the update rule. A new adaptive control joins
        here and in `follow`; `set` commands and step-driven switches (SPyNet freezing) need not:
        they reach every rank as actions, or are functions of the step."""
        return {"boost": self.boost.state_dict(), "clip": self.clipper.clip,
                "loss_weights": self.adaptive.current() if self.adaptive else None}

    def follow(self, decisions: dict[str, Any]) -> None:
        """Take rank 0's `decisions` (on the other ranks)."""
        self.boost.load_state_dict(decisions["boost"])
        self.clipper.clip = decisions["clip"]
        if self.adaptive is not None:
            self.adaptive.weights = dict(decisions["loss_weights"])

    def on_config_change(self, cfg: Config) -> None:
        if cfg.clip.start != self.clipper.cfg.start:
            self.clipper.clip = float(cfg.clip.start)
        self.clipper.cfg = cfg.clip
        self.divergence.cfg = cfg.divergence  # the settable divergence.* knobs (report.control.SETTABLE)

    # ---- validation -----------------------------------------------------------------
    def record_validation(self, step: int, metrics: dict[str, Any]) -> tuple[bool, bool]:
        """(improved on the best quality, a plateau LR boost starts now)."""
        quality = metrics["quality"]
        boosted = self.boost.observe(step, quality)
        improved = math.isfinite(quality) and (self.best_score is None or quality > self.best_score)
        if improved:
            self.best_score = quality
        self.last_validation = metrics
        return improved, boosted

    # ---- per-layer activity (models that record it) -------------------------------------
    def track_activity(self, due: bool) -> bool:
        """Let the model accumulate per-layer activity on the device during this step."""
        model = unwrap(self.model)
        on = due and hasattr(model, "activity")
        if on or getattr(model, "track_activity", False):
            model.track_activity = on
        return on

    def read_activity(self) -> dict[str, float]:
        """What the tracked step recorded (one device->host copy); tracking goes off again."""
        model = unwrap(self.model)
        model.track_activity = False
        return model.activity()
