"""HybridLoss: w_l1*pixel + w_ms*pixel(avgpool2) + w_grad*pixel(|dx|,|dy|) [+ w_perc*VGG16].

`pixel` is L1 or Charbonnier. The weights are read at every call from a weight source
(`LossWeights`, or `trainer.train.adaptive.AdaptiveLossWeights`), so the weights shown are the weights
used. `forward` returns (total, parts) with detached part tensors: logging them needs no sync.
5-D inputs [B, T, 3, H, W] (many-to-many) are folded into the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LossConfig", "LossWeights", "HybridLoss", "VGGPerceptual", "build_loss", "image_gradients"]


@dataclass
class LossWeights:
    w_l1: float = 0.6
    w_ms: float = 0.2
    w_grad: float = 0.2
    w_perc: float = 0.0

    def current(self) -> dict[str, float]:
        return asdict(self)


class WeightSource(Protocol):
    def current(self) -> dict[str, float]: ...


@dataclass
class LossConfig(LossWeights):
    """The initial weights plus how the terms are computed."""

    pixel: str = "l1"  # l1 | charbonnier
    charbonnier_eps: float = 1e-3
    vgg_weights: str | None = None  # LOCAL torchvision vgg16 state_dict file; needed when w_perc > 0

    def __post_init__(self) -> None:
        if self.pixel not in ("l1", "charbonnier"):
            raise ValueError(f"loss.pixel must be 'l1' or 'charbonnier', got {self.pixel!r}")
        for key in ("w_l1", "w_ms", "w_grad", "w_perc"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {getattr(self, key)}")


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Absolute horizontal and vertical finite differences."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()


def _vgg16_relu3_3() -> nn.Sequential:
    """torchvision's vgg16().features[:16] (same layer indices, so its state_dict keys load)."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (64, 64, "M", 128, 128, "M", 256, 256, 256):
        if c_out == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
        c_in = c_out
    return nn.Sequential(*layers)


class VGGPerceptual(nn.Module):
    """L1 between VGG16 relu3_3 features; weights only from a local file, never downloaded."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, weights_path: str | None) -> None:
        super().__init__()
        if not weights_path or not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"perceptual loss (w_perc > 0) needs a local VGG16 weights file; not found: {weights_path!r} "
                "(set loss.vgg_weights to a torchvision vgg16 state_dict .pth; nothing is downloaded)"
            )
        self.features = _vgg16_relu3_3()
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        own = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        keys = set(self.features.state_dict())
        missing = keys - set(own)
        if missing:
            raise ValueError(f"{weights_path}: not a VGG16 state_dict (missing {sorted(missing)[:3]} ...)")
        self.features.load_state_dict({k: own[k] for k in keys})
        self.features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        f = self.features((torch.cat([pred, gt]) - self.mean) / self.std)
        fp, fg = f.chunk(2)
        return F.l1_loss(fp, fg)


class HybridLoss(nn.Module):
    def __init__(self, weights: WeightSource | None = None, *, pixel: str = "l1", eps: float = 1e-3,
                 perceptual: nn.Module | None = None) -> None:
        super().__init__()
        self.weights = weights if weights is not None else LossWeights()
        self.pixel, self.eps, self.perceptual = pixel, eps, perceptual

    def _pixel(self, a: Tensor, b: Tensor) -> Tensor:
        if self.pixel == "charbonnier":
            return torch.sqrt((a - b).pow(2) + self.eps**2).mean()
        return F.l1_loss(a, b)

    def forward(self, pred: Tensor, gt: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {list(pred.shape)} and target {list(gt.shape)} differ in shape")
        pred, gt = pred.flatten(0, -4), gt.flatten(0, -4)  # fold [B, T] of many-to-many outputs
        pred, gt = pred.float(), gt.float()
        w = self.weights.current()
        parts = {"l1": self._pixel(pred, gt), "ms": self._pixel(F.avg_pool2d(pred, 2), F.avg_pool2d(gt, 2))}
        (pdx, pdy), (gdx, gdy) = image_gradients(pred), image_gradients(gt)
        parts["grad"] = 0.5 * (self._pixel(pdx, gdx) + self._pixel(pdy, gdy))
        total = w["w_l1"] * parts["l1"] + w["w_ms"] * parts["ms"] + w["w_grad"] * parts["grad"]
        if w.get("w_perc", 0.0) > 0:
            if self.perceptual is None:
                raise ValueError("w_perc > 0 but the loss was built without a perceptual network")
            parts["perc"] = self.perceptual(pred, gt)
            total = total + w["w_perc"] * parts["perc"]
        return total, {k: v.detach() for k, v in parts.items()}


def build_loss(cfg: LossConfig | None = None, weights: WeightSource | None = None) -> HybridLoss:
    """HybridLoss from a LossConfig (default: LossConfig()).

    weights: the live weight source (e.g. AdaptiveLossWeights); default: the config's fixed weights.
    """
    cfg = cfg or LossConfig()
    if weights is None:
        weights = LossWeights(cfg.w_l1, cfg.w_ms, cfg.w_grad, cfg.w_perc)
    w_perc = weights.current().get("w_perc", 0.0)
    perceptual = VGGPerceptual(cfg.vgg_weights) if w_perc > 0 else None
    return HybridLoss(weights, pixel=cfg.pixel, eps=cfg.charbonnier_eps, perceptual=perceptual)
