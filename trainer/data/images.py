"""PNG reading/writing and the small array operations every data set shares.

Arrays are uint8 HWC (one frame) or THWC (a stack of frames); tensors are float [0, 1] CHW / TCHW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "DEGRADATIONS", "DataError", "read_rgb", "write_png", "area_downscale", "bicubic_downscale", "degrade",
    "split_stacked", "augment", "to_tensor",
]


class DataError(ValueError):
    """A data file or folder is missing, unreadable or the wrong size; the message names it."""


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3]; errors name the file."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def write_png(path: Path, array: np.ndarray, compress_level: int = 1) -> None:
    Image.fromarray(array).save(path, compress_level=compress_level)


def area_downscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Box-filter downscale by an integer factor; [..., H, W, 3] with H, W divisible by scale.

    Integer block sums (whole rows first, then pixel groups), then the mean rounded half to even
    as np.rint does: exact, and a few times faster than a float mean over the block axes (this
    runs on every clip sample)."""
    *lead, h, w, c = frames.shape
    rows = frames.reshape(-1, h // scale, scale, w * c)
    acc = rows[:, :, 0].astype(np.uint16)
    for i in range(1, scale):
        acc += rows[:, :, i]
    groups = acc.reshape(-1, h // scale, w // scale, scale, c)
    total = groups[..., 0, :].copy()
    for j in range(1, scale):
        total += groups[..., j, :]
    n = scale * scale
    q, r = np.divmod(total, n)
    mean = q + ((2 * r > n) | ((2 * r == n) & (q % 2 == 1)))
    return mean.astype(np.uint8).reshape(*lead, h // scale, w // scale, c)


def bicubic_downscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscale (PIL, like MATLAB imresize) of [T, H, W, 3] frames."""
    h, w = frames.shape[-3] // scale, frames.shape[-2] // scale
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


DEGRADATIONS = ("area", "bicubic")  # how LR frames are made from GT ones (data.degrade)


def degrade(frames: np.ndarray, scale: int, how: str) -> np.ndarray:
    """LR of uint8 [T, H, W, 3] frames by `how` (one of DEGRADATIONS)."""
    return area_downscale(frames, scale) if how == "area" else bicubic_downscale(frames, scale)


def split_stacked(image: np.ndarray, count: int, path: Path) -> np.ndarray:
    """[count*h, w, 3] (frames stacked vertically) -> [count, h, w, 3]."""
    if image.shape[0] % count:
        raise DataError(
            f"{path}: height {image.shape[0]} is not a multiple of {count} "
            f"(expected {count} frames stacked vertically)"
        )
    return image.reshape(count, image.shape[0] // count, *image.shape[1:])


def augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random h-flip, v-flip and transpose (rot90 family) on every array ([..., H, W, C])."""
    hflip, vflip, transpose = rng.random(3) < 0.5
    out = []
    for a in arrays:
        if hflip:
            a = a[..., :, ::-1, :]
        if vflip:
            a = a[..., ::-1, :, :]
        if transpose:
            a = np.swapaxes(a, -3, -2)
        out.append(a)
    return out


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [0, 1]."""
    chw = np.ascontiguousarray(np.moveaxis(array, -1, -3))
    return torch.from_numpy(chw).float().div_(255.0)
