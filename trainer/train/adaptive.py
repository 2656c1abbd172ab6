"""The original system's adaptive control, fixed: adaptive loss weights and adaptive gradient clipping.

`AdaptiveLossWeights` is the weight source HybridLoss reads at every call, so the weights it
reports are exactly the weights in use. Every `every` steps after `warmup` it measures output
sharpness = mean|grad pred| / mean|grad gt| (one host sync per check): below `low` the gradient
weight rises, above `high` it falls, each change bounded and followed by a cooldown. Weight moves
between the gradient and L1 terms so their sum stays constant. When blur persists for
`aggressive_after` checks while the loss is on a plateau, "aggressive mode" multiplies the step and
halves the cooldown until the output is sharp enough again.

`AdaptiveClipper`: clip = momentum*clip + (1-momentum)*p95(last `window` grad norms), start 1.5.
Norms are kept on the device and read in groups of `flush_every` (one sync per group); the
update is then applied once per norm, as if it ran every step, only a little later.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trainer.train.losses import LossWeights, image_gradients

__all__ = ["AdaptiveConfig", "AdaptiveLossWeights", "AdaptiveClipper", "ClipConfig", "sharpness"]


@dataclass
class AdaptiveConfig:
    warmup: int = 1000
    every: int = 50
    low: float = 0.75  # sharpness below: output too blurry -> raise w_grad
    high: float = 0.92  # sharpness above: lower w_grad
    step_up: float = 0.02
    step_down: float = 0.01
    max_step: float = 0.05  # bound on one change, aggressive mode included
    w_grad_min: float = 0.05
    w_grad_max: float = 0.5
    w_l1_min: float = 0.2
    cooldown: int = 200  # steps after a change before the next one
    aggressive_after: int = 5  # consecutive blurry checks ...
    plateau_checks: int = 10  # ... while the loss improved by < plateau_tol over this many checks
    plateau_tol: float = 0.01
    aggressive_factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"adaptive: need 0 < low < high, got low={self.low} high={self.high}")
        if self.every < 1 or self.warmup < 0 or self.cooldown < 0:
            raise ValueError("adaptive: every must be >= 1, warmup and cooldown >= 0")
        if not 0 <= self.w_grad_min <= self.w_grad_max:
            raise ValueError("adaptive: need 0 <= w_grad_min <= w_grad_max")


@torch.no_grad()
def sharpness(pred: Tensor, gt: Tensor) -> float:
    (pdx, pdy), (gdx, gdy) = image_gradients(pred.float()), image_gradients(gt.float())
    num = pdx.mean() + pdy.mean()
    den = gdx.mean() + gdy.mean()
    return float(num / den.clamp_min(1e-8))


class AdaptiveLossWeights:
    def __init__(self, initial: LossWeights | None = None, cfg: AdaptiveConfig | None = None) -> None:
        self.cfg = cfg or AdaptiveConfig()
        self.weights = (initial or LossWeights()).current()
        self.last_change = -(10**9)
        self.blur_streak = 0
        self.aggressive = False
        self.last_sharpness: float | None = None
        self.losses: deque[float] = deque(maxlen=self.cfg.plateau_checks + 1)

    def current(self) -> dict[str, float]:
        return dict(self.weights)

    def due(self, step: int) -> bool:
        return step >= self.cfg.warmup and step % self.cfg.every == 0

    def observe(self, step: int, pred: Tensor, gt: Tensor, loss: Tensor | float | None = None) -> bool:
        """Call once per training step; returns True when the weights changed."""
        if not self.due(step):
            return False
        s = self.last_sharpness = sharpness(pred.detach(), gt)
        if loss is not None:
            self.losses.append(float(loss))
        if s < self.cfg.low:
            self.blur_streak += 1
            if self.blur_streak >= self.cfg.aggressive_after and self._on_plateau():
                self.aggressive = True
        else:
            self.blur_streak, self.aggressive = 0, False
        cooldown = self.cfg.cooldown // 2 if self.aggressive else self.cfg.cooldown
        if step - self.last_change < cooldown:
            return False
        if s < self.cfg.low:
            factor = self.cfg.aggressive_factor if self.aggressive else 1.0
            return self._shift(min(self.cfg.step_up * factor, self.cfg.max_step), step)
        if s > self.cfg.high:
            return self._shift(-min(self.cfg.step_down, self.cfg.max_step), step)
        return False

    def _on_plateau(self) -> bool:
        if len(self.losses) < self.losses.maxlen:
            return False
        old, new = self.losses[0], self.losses[-1]
        return old <= 0 or (old - new) / old < self.cfg.plateau_tol

    def _shift(self, delta: float, step: int) -> bool:
        """Move `delta` of weight from L1 to the gradient term (negative: back), within bounds."""
        w, c = self.weights, self.cfg
        delta = min(delta, c.w_grad_max - w["w_grad"], w["w_l1"] - c.w_l1_min)
        delta = max(delta, c.w_grad_min - w["w_grad"])
        if abs(delta) < 1e-12:
            return False
        w["w_grad"] = round(w["w_grad"] + delta, 6)
        w["w_l1"] = round(w["w_l1"] - delta, 6)
        self.last_change = step
        return True

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights), "last_change": self.last_change, "blur_streak": self.blur_streak,
                "aggressive": self.aggressive, "last_sharpness": self.last_sharpness, "losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        self.weights = {k: float(v) for k, v in state["weights"].items()}
        self.last_change = int(state["last_change"])
        self.blur_streak, self.aggressive = int(state["blur_streak"]), bool(state["aggressive"])
        self.last_sharpness = state.get("last_sharpness")
        self.losses.clear()
        self.losses.extend(state.get("losses", []))


@dataclass
class ClipConfig:
    start: float = 1.5
    adaptive: bool = True
    momentum: float = 0.9
    percentile: float = 95.0
    window: int = 500
    min_history: int = 10
    flush_every: int = 25

    def __post_init__(self) -> None:
        if self.start <= 0 or not 0 <= self.momentum < 1 or not 0 < self.percentile <= 100:
            raise ValueError("clip: need start > 0, 0 <= momentum < 1, 0 < percentile <= 100")


class AdaptiveClipper:
    def __init__(self, cfg: ClipConfig | None = None) -> None:
        self.cfg = cfg or ClipConfig()
        self.clip = float(self.cfg.start)
        self.history: deque[float] = deque(maxlen=self.cfg.window)
        self._pending: list[Tensor] = []

    def observe(self, grad_norm: Tensor | float) -> None:
        """Record the (pre-clip) total grad norm of a step, e.g. clip_grad_norm_'s return value."""
        if not self.cfg.adaptive:
            return
        norm = grad_norm.detach().float() if isinstance(grad_norm, Tensor) else torch.tensor(float(grad_norm))
        self._pending.append(norm)
        if len(self._pending) >= self.cfg.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        device = self._pending[0].device
        values = torch.stack([p.reshape(()).to(device) for p in self._pending]).cpu().tolist()  # one sync
        self._pending.clear()
        m = self.cfg.momentum
        for v in values:
            if not math.isfinite(v):
                continue
            self.history.append(v)
            if len(self.history) >= self.cfg.min_history:
                self.clip = m * self.clip + (1 - m) * float(np.percentile(self.history, self.cfg.percentile))

    def state_dict(self) -> dict:
        self.flush()
        return {"clip": self.clip, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self._pending.clear()
        self.clip = float(state["clip"])
        self.history.clear()
        self.history.extend(float(v) for v in state["history"])
