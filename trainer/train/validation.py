"""One validation pass: model vs the bilinear baseline, mean metrics, comparison images.

Metrics are per image, averaged over all validation images (sums stay on the device; one host
read at the end). Many-to-many models are scored on the centre frame's output, like the
original model (their loss still covers all frames). The baseline is the bilinear upscale of
the centre LR frame. Outputs are clamped to [0, 1] before scoring.

`metric_space="y"` scores as papers do (BasicSR/mmagic, and `trainer.evaluate`): outputs and
baseline rounded to 8 bits, PSNR/SSIM of the BT.601 luma, a border of the scale left out.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from trainer.device import autocast
from trainer.metrics import SSIM_WINDOW, psnr_per_image, quality, ssim_per_image, to_8bit

__all__ = ["ValidationResult", "validate", "side_by_side"]

COMPARISON_MAX_BYTES = 256 * 1024


@dataclass
class ValidationResult:
    psnr: float
    ssim: float
    quality: float
    baseline_psnr: float
    baseline_ssim: float
    baseline_quality: float
    psnr_gain: float  # mean over images of (model - baseline) PSNR
    improvement: float  # quality - baseline_quality
    loss: float
    n_images: int
    metric_space: str = "rgb"  # where PSNR/SSIM were measured: rgb, or y (the papers' convention)
    comparison_png: bytes = b""  # LR (nearest) | model | GT of the first image, <= 256 KB
    images: list[str] = field(default_factory=list)  # side-by-side PNGs written to out_dir

    def metrics(self) -> dict[str, float | int | str]:
        """The numbers and their metric_space (for telemetry and checkpoint metrics)."""
        return {k: v for k, v in asdict(self).items() if k not in ("comparison_png", "images")}


def _centre(x: Tensor) -> Tensor:
    return x[:, x.shape[1] // 2] if x.dim() == 5 else x


def _batch_loss(loss_fn: nn.Module | None, pred: Tensor, gt: Tensor) -> Tensor:
    if loss_fn is None:
        return F.l1_loss(_centre(pred), _centre(gt))
    if pred.shape != gt.shape:
        pred, gt = _centre(pred), _centre(gt)
    out = loss_fn(pred, gt)
    return out[0] if isinstance(out, tuple) else out


@torch.inference_mode()
def validate(
    model: nn.Module,
    loader,
    device: torch.device | str,
    *,
    out_dir: str | Path | None = None,
    max_images: int = 4,
    amp: bool | str = False,
    loss_fn: nn.Module | None = None,
    metric_space: str = "rgb",
) -> ValidationResult:
    """Score `model` on every batch of `loader` ({"lr", "gt", "name"} dicts)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # psnr, ssim, base psnr, base ssim, loss*n
    n, panels = 0, []
    try:
        for batch in loader:
            lr = batch["lr"].to(device, non_blocking=True)
            gt = batch["gt"].to(device, non_blocking=True)
            with autocast(device, amp):
                pred = model(lr)
            batch_sums, out, target = _score(lr, pred.float(), gt, loss_fn, metric_space)
            sums += batch_sums
            n += len(lr)
            for i in range(min(len(lr), max(1, max_images) - len(panels))):
                panels.append((batch["name"][i], side_by_side(lr[i, lr.shape[1] // 2], out[i], target[i])))
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("validation loader yielded no images")
    p, s, bp, bs, loss = (sums / n).tolist()
    q, bq = quality(p, s), quality(bp, bs)
    images = []
    if out_dir is not None:
        images = [str(_write(Path(out_dir), i, name, panel)) for i, (name, panel) in enumerate(panels[:max_images])]
    return ValidationResult(p, s, q, bp, bs, bq, p - bp, q - bq, loss, n, metric_space, _bounded_png(panels[0][1]),
                            images)


def _score(lr: Tensor, pred: Tensor, gt: Tensor, loss_fn: nn.Module | None,
           space: str = "rgb") -> tuple[Tensor, Tensor, Tensor]:
    """Per-batch sums (model/baseline PSNR and SSIM, loss * n) on the device, the clamped output, the target."""
    out, target = _centre(pred).clamp(0, 1), _centre(gt)
    base = F.interpolate(lr[:, lr.shape[1] // 2], size=target.shape[-2:], mode="bilinear",
                         align_corners=False).clamp(0, 1)
    a, b, kw = out, base, {"space": space}
    if space == "y":
        scale = target.shape[-1] // lr.shape[-1]
        a, b = to_8bit(out), to_8bit(base)
        kw["crop_border"] = scale if min(target.shape[-2:]) - 2 * scale >= SSIM_WINDOW else 0  # tiny crops: no border
    sums = torch.stack([psnr_per_image(a, target, **kw).sum(), ssim_per_image(a, target, **kw).sum(),
                        psnr_per_image(b, target, **kw).sum(), ssim_per_image(b, target, **kw).sum(),
                        _batch_loss(loss_fn, pred, gt).double() * len(lr)])
    return sums, out, target


def side_by_side(lr: Tensor, out: Tensor, gt: Tensor, gap: int = 2) -> np.ndarray:
    """uint8 [H, 3W + 2*gap, 3]: LR upscaled (nearest) | model | GT."""
    up = F.interpolate(lr[None].float(), size=gt.shape[-2:], mode="nearest")[0]
    white = torch.ones(3, gt.shape[-2], gap, device=gt.device)
    row = torch.cat([up, white, out.float(), white, gt.float()], dim=2).clamp(0, 1)
    return (row * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _bounded_png(panel: np.ndarray, limit: int = COMPARISON_MAX_BYTES) -> bytes:
    """PNG of the panel, shrunk until it is at most `limit` bytes."""
    img = Image.fromarray(panel)
    while True:
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=False, compress_level=6)
        if buf.tell() <= limit or img.width < 16:
            return buf.getvalue()
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.BOX)


def _write(out_dir: Path, index: int, name: str, panel: np.ndarray) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name)).stem if "/" not in str(name) else str(name))
    path = out_dir / f"val_{index:02d}_{stem}.png"
    Image.fromarray(panel).save(path)
    return path
