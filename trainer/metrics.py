"""PSNR, SSIM and the original's quality score, on RGB batches [N, 3, H, W] in [0, 1].

Both metrics are computed per image in float64 and averaged over the N images.
Identical images have infinite PSNR; it is capped at PSNR_CAP (100 dB) so means stay finite.
SSIM is Wang et al. 2004 as scikit-image computes it with gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1: an 11x11 Gaussian window, K1 0.01, K2 0.03,
'valid' filtering (no padded border), mean over pixels and channels.

`space="y"` measures the luma of ITU-R BT.601 as MATLAB's rgb2ycbcr computes it (studio range,
unrounded), the convention of BasicSR and mmagic; with the images rounded to 8 bits first
(`to_8bit`) and the border cropped by the scale, these are BasicSR's calculate_psnr/calculate_ssim
with test_y_channel=True (the same formula on [0, 1] instead of [0, 255]: both are scale-free).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from protocol import METRIC_SPACES  # the vocabulary: where PSNR/SSIM are measured, "rgb" or "y"

__all__ = ["METRIC_SPACES", "PSNR_CAP", "SSIM_WINDOW", "SsimStats", "psnr", "ssim", "quality", "psnr_per_image",
           "ssim_per_image", "ssim_stats", "ssim_channels", "psnr_of_mse", "rgb_to_y", "to_8bit"]

PSNR_CAP = 100.0
SSIM_WINDOW = 11  # pixels: SSIM needs images at least this big (after any border is cropped)
_WIN, _SIGMA, _K1, _K2 = SSIM_WINDOW, 1.5, 0.01, 0.03
_Y_WEIGHTS, _Y_OFFSET = (65.481, 128.553, 24.966), 16.0  # BT.601 luma of [0, 1] RGB, in [16, 235]


def rgb_to_y(x: Tensor) -> Tensor:
    """[N, 3, H, W] RGB in [0, 1] -> [N, 1, H, W] BT.601 luma (MATLAB rgb2ycbcr) scaled to [0, 1]."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"Y needs RGB images [N, 3, H, W], got {list(x.shape)}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * w).sum(1, keepdim=True) + _Y_OFFSET) / 255.0


def to_8bit(x: Tensor) -> Tensor:
    """Values rounded to the nearest of the 256 levels of an 8-bit image (as saving a PNG would)."""
    return x.clamp(0, 1).mul(255).round().div(255)


def _prepare(a: Tensor, b: Tensor, crop_border: int, space: str) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {list(a.shape)} vs {list(b.shape)}")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got {list(a.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
        if a.numel() == 0:
            raise ValueError(f"crop_border={crop_border} leaves no pixels")
    if space not in METRIC_SPACES:
        raise ValueError(f"metric space must be one of {METRIC_SPACES}, got {space!r}")
    # contiguous: the filter's shifted views are slow on channels-last strides (frames from HxWx3 arrays)
    a, b = a.detach().to(torch.float64).contiguous(), b.detach().to(torch.float64).contiguous()
    return (rgb_to_y(a), rgb_to_y(b)) if space == "y" else (a, b)


def psnr_per_image(a: Tensor, b: Tensor, *, crop_border: int = 0, space: str = "rgb") -> Tensor:
    """PSNR in dB of each image pair, shape [N], on the inputs' device (no host sync)."""
    a, b = _prepare(a, b, crop_border, space)
    return psnr_of_mse((a - b).pow(2).flatten(1).mean(1))


def psnr_of_mse(mse: Tensor) -> Tensor:
    """PSNR in dB of mean squared errors of [0, 1] images, capped at PSNR_CAP."""
    return (10 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP)


def _gaussian_window() -> tuple[float, ...]:
    g = [math.exp(-((i - _WIN // 2) ** 2) / (2 * _SIGMA**2)) for i in range(_WIN)]
    return tuple(v / sum(g) for v in g)


_GAUSS = _gaussian_window()


def _filter(x: Tensor) -> Tensor:
    """Separable Gaussian filter, 'valid' region only, applied per channel.

    Weighted sums of shifted views: ~10x faster than conv2d, which has no fast float64 CPU kernel.
    """
    h, w = x.shape[-2] - _WIN + 1, x.shape[-1] - _WIN + 1
    rows = x[..., :w] * _GAUSS[0]
    for i in range(1, _WIN):
        rows.add_(x[..., i:i + w], alpha=_GAUSS[i])
    out = rows[..., :h, :] * _GAUSS[0]
    for i in range(1, _WIN):
        out.add_(rows[..., i:i + h, :], alpha=_GAUSS[i])
    return out


class SsimStats(NamedTuple):
    """An image's SSIM statistics: measured once, shared by every image compared with it."""

    x: Tensor  # [N, C, H, W] float64
    mu: Tensor  # Gaussian-weighted local mean, 'valid' region [N, C, H - 10, W - 10]
    mu2: Tensor  # mu squared
    var: Tensor  # Gaussian-weighted local variance


def ssim_stats(x: Tensor) -> SsimStats:
    """The statistics of float64 images [N, C, H, W] (at least SSIM_WINDOW pixels each way)."""
    mu = _filter(x)
    mu2 = mu * mu
    return SsimStats(x, mu, mu2, _filter(x * x).sub_(mu2))


def ssim_channels(a: Tensor, ref: SsimStats) -> Tensor:
    """Mean SSIM map per image and channel [N, C] of float64 a [N, C, H, W] against `ref`
    (its N is N or 1, shared by every image of a): the reference's own filters are not run again."""
    mu, mu2, var = ssim_stats(a)[1:]  # in-place below: they are this call's own
    mu_ab = mu.mul_(ref.mu)
    cov = _filter(a * ref.x).sub_(mu_ab)
    num = mu_ab.mul_(2).add_(_K1**2).mul_(cov.mul_(2).add_(_K2**2))
    den = mu2.add_(ref.mu2).add_(_K1**2).mul_(var.add_(ref.var).add_(_K2**2))
    return num.div_(den).mean((-2, -1))


def ssim_per_image(a: Tensor, b: Tensor, *, crop_border: int = 0, space: str = "rgb") -> Tensor:
    """SSIM of each image pair, shape [N] (mean over channels and pixels)."""
    a, b = _prepare(a, b, crop_border, space)
    if min(a.shape[-2:]) < _WIN:
        raise ValueError(f"SSIM needs images of at least {_WIN}x{_WIN} pixels, got {list(a.shape[-2:])}")
    return ssim_channels(a, ssim_stats(b)).mean(1)


def psnr(a: Tensor, b: Tensor, *, crop_border: int = 0, space: str = "rgb") -> float:
    """Mean PSNR (dB) over the batch; identical images count as PSNR_CAP."""
    return float(psnr_per_image(a, b, crop_border=crop_border, space=space).mean())


def ssim(a: Tensor, b: Tensor, *, crop_border: int = 0, space: str = "rgb") -> float:
    """Mean Gaussian-window SSIM over the batch."""
    return float(ssim_per_image(a, b, crop_border=crop_border, space=space).mean())


def quality(psnr_db: float, ssim_value: float) -> float:
    """The original's score in [0, 1]: 0.7 * clamp((PSNR - 20) / 30) + 0.3 * SSIM, clamped."""
    if math.isnan(psnr_db) or math.isnan(ssim_value):
        return float("nan")
    p = min(max((psnr_db - 20.0) / 30.0, 0.0), 1.0)
    return min(max(0.7 * p + 0.3 * ssim_value, 0.0), 1.0)
