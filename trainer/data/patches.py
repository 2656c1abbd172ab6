"""The original layout: ROOT/Patches/{GT,LR}/NAME.png (train) and ROOT/Val/{GT,LR}/NAME.png.

GT is one HR frame; LR is ONE png with the T LR frames stacked vertically (w x T*h); 7-frame
sets live in `LR_7frames` (any T: `LR_{T}frames`; T = 5 uses `LR`). Optional `GT_{K}frames`
stacks (K >= T) hold every HR frame for many-to-many models; the middle T are used.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import DataError, augment, read_rgb, split_stacked, to_tensor
from .sampler import sample_rng, split_key

__all__ = ["PatchFolderDataset"]


def _stacks(split: Path, prefix: str, num_frames: int) -> list[tuple[int, Path]]:
    """Folders of stacks with K >= T frames (K - T even, so the middle T are centred), fewest first."""
    found = [(5, split / "LR")] if prefix == "LR" and (split / "LR").is_dir() else []
    for d in split.glob(f"{prefix}_*frames"):
        m = re.fullmatch(rf"{prefix}_(\d+)frames", d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d))
    return sorted((k, d) for k, d in found if k >= num_frames and (k - num_frames) % 2 == 0)


def _lr_folder(split: Path, num_frames: int) -> tuple[Path, int]:
    found = _stacks(split, "LR", num_frames)
    if not found:
        raise DataError(f"{split}: no LR folder with {num_frames}-frame stacks "
                        f"(expected LR/ for 5 frames or LR_{num_frames}frames/)")
    k, folder = found[0]
    return folder, k


def _gt_stack_folder(split: Path, num_frames: int) -> tuple[Path, int]:
    found = _stacks(split, "GT", num_frames)
    if not found:
        raise DataError(
            f"{split}: many-to-many training needs all {num_frames} HR frames per sample, "
            f"stacked vertically in a GT_{num_frames}frames folder (the original layout has only the centre GT)"
        )
    k, folder = found[0]
    return folder, k


class PatchFolderDataset(Dataset):
    """Samples {"lr": [T,3,h,w], "gt": [3,H,W] (or [T,3,H,W] when many_to_many), "name": str}."""

    def __init__(
        self,
        split_dir: str | Path,
        *,
        num_frames: int = 5,
        scale: int = 3,
        augment: bool = False,
        patch_size: int | None = None,
        many_to_many: bool = False,
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        self.split = Path(split_dir)
        self.num_frames, self.scale, self.augment = num_frames, scale, augment
        self.patch_size, self.many_to_many, self.seed = patch_size, many_to_many, seed
        gt_dir = self.split / "GT"
        if not gt_dir.is_dir():
            raise DataError(f"{self.split}: missing GT folder (expected {self.split}/GT/NAME.png and LR/NAME.png)")
        self.lr_dir, self.lr_frames = _lr_folder(self.split, num_frames)
        self.gt_dir, self.gt_frames = (gt_dir, 1)
        if many_to_many:
            self.gt_dir, self.gt_frames = _gt_stack_folder(self.split, num_frames)
        self.names = sorted(p.name for p in gt_dir.glob("*.png"))
        if not self.names:
            raise DataError(f"{gt_dir}: no .png files (expected GT/NAME.png with LR/NAME.png of the same name)")
        missing = [n for n in self.names if not (self.lr_dir / n).is_file()]
        if missing:
            raise DataError(f"{self.lr_dir}: no LR stack for {len(missing)} GT file(s), e.g. {missing[:3]}")
        self._cache = [self._load(i) for i in range(len(self.names))] if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        name = self.names[i]
        lr_path, gt_path = self.lr_dir / name, self.gt_dir / name
        lr = _middle(split_stacked(read_rgb(lr_path), self.lr_frames, lr_path), self.num_frames)
        gt = read_rgb(gt_path)
        if self.gt_frames > 1:
            gt = _middle(split_stacked(gt, self.gt_frames, gt_path), self.num_frames)
        h, w = lr.shape[1:3]
        if gt.shape[-3:-1] != (h * self.scale, w * self.scale):
            raise DataError(
                f"{gt_path}: size {gt.shape[-2]}x{gt.shape[-3]} does not match its LR frames "
                f"{w}x{h} at scale {self.scale} (expected {w * self.scale}x{h * self.scale})"
            )
        return lr, gt

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, epoch = split_key(key)
        lr, gt = self._cache[index] if self._cache is not None else self._load(index)
        if self.augment:
            rng = sample_rng(self.seed, epoch, index)
            lr, gt = self._crop(lr, gt, rng)
            lr, gt = augment([lr, gt], rng)
        return {"lr": to_tensor(lr), "gt": to_tensor(gt), "name": self.names[index]}

    def _crop(self, lr: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p, (h, w) = self.patch_size, lr.shape[1:3]
        if not p or (p >= h and p >= w):
            return lr, gt
        p = min(p, h, w)
        y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        s = self.scale
        return lr[:, y : y + p, x : x + p], gt[..., y * s : (y + p) * s, x * s : (x + p) * s, :]


def _middle(frames: np.ndarray, count: int) -> np.ndarray:
    start = (len(frames) - count) // 2
    return frames[start : start + count]
