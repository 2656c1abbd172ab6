"""One GT frame against its candidates (the model's frame and the bicubic and bilinear upscales): PSNR and SSIM
on RGB and Y at once, on the device.

Each 8-bit frame becomes float64 planes R, G, B, Y (BT.601, `trainer.metrics.rgb_to_y`) once, its
border cropped; the GT's SSIM statistics (local mean and variance) are computed once and shared by
the candidates, so a frame costs one SSIM pass per candidate plus one for the GT instead of two per
pair and space. The formulas are `trainer.metrics`' (BasicSR's and mmagic's conventions).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trainer.infer.report import METRICS
from trainer.metrics import psnr_of_mse, rgb_to_y, ssim_channels, ssim_stats

__all__ = ["BASELINES", "FrameScorer", "upscale_baseline"]

BASELINES = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
_MIRROR = 3  # LR pixels mirrored at each edge before resizing: more than the bicubic kernel reaches
_RGB, _Y = slice(0, 3), slice(3, 4)  # the planes of a frame


def upscale_baseline(lr: np.ndarray, scale: int, method: str) -> np.ndarray:
    """MATLAB's imresize upscale (bicubic a = -0.5, or bilinear) of uint8 [h, w, 3], as uint8.

    PIL's kernels in float (its 8-bit mode rounds between the two passes) on the frame with its
    edges mirrored, as MATLAB pads them (PIL would renormalise the kernel at the edges instead).
    """
    p = _MIRROR
    x = np.pad(lr.astype(np.float32), ((p, p), (p, p), (0, 0)), mode="symmetric")
    size = (x.shape[1] * scale, x.shape[0] * scale)
    up = np.stack([np.asarray(Image.fromarray(x[..., c]).resize(size, BASELINES[method])) for c in range(3)], -1)
    return np.clip(np.round(up[p * scale:-p * scale, p * scale:-p * scale]), 0, 255).astype(np.uint8)


class FrameScorer:
    """Measures candidate frames against one GT frame; `sums` adds up their metrics over frames."""

    def __init__(self, crop_border: int, device: torch.device) -> None:
        self.crop, self.device = crop_border, device
        self.sums: Tensor | None = None  # [candidates, len(METRICS)] float64, on the device
        self.frames = 0

    def planes(self, frames: np.ndarray) -> Tensor:
        """uint8 [N, H, W, 3] -> float64 [N, 4 (R, G, B, Y), h, w] of level / 255, border cropped."""
        x = torch.from_numpy(np.array(frames)).to(self.device)  # a copy: frames may be read-only views
        if self.crop:
            x = x[:, self.crop:-self.crop, self.crop:-self.crop]
        rgb = x.permute(0, 3, 1, 2).to(torch.float64).contiguous().div_(255)
        return torch.cat([rgb, rgb_to_y(rgb)], 1)

    def score(self, gt: np.ndarray, candidates: list[np.ndarray]) -> Tensor:
        """[len(candidates), len(METRICS)] of uint8 [H, W, 3] frames against uint8 GT [H, W, 3]."""
        truth = self.planes(gt[None])
        ref = ssim_stats(truth)
        rows = []
        for frame in candidates:  # one at a time: a frame's planes stay in cache through the filters
            x = self.planes(frame[None])
            ssim = ssim_channels(x, ref)[0]  # [4]
            mse = (x - truth).square_().mean((-2, -1))[0]
            psnr = psnr_of_mse(torch.stack([mse[_RGB].mean(), mse[_Y].mean()]))
            by_name = {"psnr_rgb": psnr[0], "ssim_rgb": ssim[_RGB].mean(), "psnr_y": psnr[1], "ssim_y": ssim[_Y].mean()}
            rows.append(torch.stack([by_name[k] for k in METRICS]))
        return torch.stack(rows)

    def add(self, gt: np.ndarray, candidates: list[np.ndarray]) -> None:
        """Score one frame and add it to the sums (no host sync: the sums stay on the device)."""
        scores = self.score(gt, candidates)
        self.sums = scores if self.sums is None else self.sums + scores
        self.frames += 1

    def means(self) -> list[list[float]]:
        """Per candidate, the mean of each metric (METRICS order) over the frames added."""
        assert self.sums is not None, "no frames scored"
        return (self.sums / self.frames).tolist()
