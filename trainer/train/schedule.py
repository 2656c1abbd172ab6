"""Learning rate as a pure function of the step (and an explicit boost state), so resume is exact.

lr_at: linear warm-up from 0 to lr_max over warmup_iters, then cosine from lr_max to lr_min at
max_iters (lr_min after). The optional plateau boost multiplies the LR by boost_factor at the step
a plateau was detected, fading back to 1 over boost_iters; `PlateauBoost` detects plateaus from
validation scores and is saved with the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ScheduleConfig", "PlateauBoost", "lr_at", "build_optimizer", "set_lr"]


@dataclass
class ScheduleConfig:
    lr_max: float = 2e-3
    lr_min: float = 1e-6
    warmup_iters: int = 30
    max_iters: int = 100_000  # in a trainer Config: train.max_iters
    weight_decay: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.99
    boost_factor: float = 2.0
    boost_iters: int = 2000
    boost_patience: int = 5  # validations without improvement before a boost
    boost_min_delta: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 <= self.lr_min <= self.lr_max:
            raise ValueError(f"schedule: need 0 <= lr_min <= lr_max, got {self.lr_min} and {self.lr_max}")
        if self.warmup_iters < 0 or self.max_iters < 1:
            raise ValueError("schedule: warmup_iters must be >= 0 and max_iters >= 1")


def lr_at(step: int, cfg: ScheduleConfig, boost_start: int | None = None) -> float:
    """LR for `step` (0-based)."""
    lr_max, lr_min, warmup, max_iters = cfg.lr_max, cfg.lr_min, cfg.warmup_iters, cfg.max_iters
    if step < warmup:
        lr = lr_max * (step + 1) / warmup
    else:
        progress = min(1.0, (step - warmup) / max(1, max_iters - warmup))
        lr = lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * progress))
    if boost_start is not None and step >= boost_start:
        fade = max(0.0, 1 - (step - boost_start) / max(1, cfg.boost_iters))
        lr *= 1 + (cfg.boost_factor - 1) * fade
    return lr


class PlateauBoost:
    """Starts a boost when the validation score has not improved for `boost_patience` validations."""

    def __init__(self, cfg: ScheduleConfig | None = None) -> None:
        self.cfg = cfg or ScheduleConfig()
        self.best: float | None = None
        self.stale = 0
        self.start: int | None = None

    def observe(self, step: int, score: float) -> bool:
        """Feed a validation score (higher is better); True when a boost starts at `step`. A non-finite
        score (a diverged run) is no plateau: it changes nothing."""
        if not math.isfinite(score):
            return False
        if self.best is None or score > self.best + self.cfg.boost_min_delta:
            self.best, self.stale = score, 0
            return False
        self.stale += 1
        if self.stale >= self.cfg.boost_patience:
            self.start, self.stale = step, 0
            return True
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "stale": self.stale, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.stale, self.start = state["best"], int(state["stale"]), state["start"]


def build_optimizer(model: nn.Module, cfg: ScheduleConfig | None = None) -> torch.optim.AdamW:
    """AdamW (weight decay 1e-3 by default); fused on CUDA. A model with `param_groups(lr)` (BasicVSR++:
    its SPyNet at a fraction of the LR, even while frozen) gets those groups, each with its `lr_mult`."""
    cfg = cfg or ScheduleConfig()
    if callable(getattr(model, "param_groups", None)):
        params = model.param_groups(cfg.lr_max)
        first = next((p for g in params for p in g["params"]), None)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        first = params[0] if params else None
    fused = first is not None and first.is_cuda
    return torch.optim.AdamW(params, lr=cfg.lr_max, weight_decay=cfg.weight_decay,
                             betas=(cfg.beta1, cfg.beta2), fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """This step's LR into every group, times the group's `lr_mult` (1 when it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
