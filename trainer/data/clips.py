"""Plain clip folders (the REDS layout): ROOT/CLIP/00000000.png, 00000001.png, ...
or raw clips, ROOT/CLIP.npy (see rawclips.py); a folder may hold both.

Training samples are windows of T consecutive frames at a random crop; LR is made on the fly
(area or antialiased bicubic downscale). Validation samples are windows at evenly spaced
positions of each clip, centre-cropped to 2x the training patch (bounded by the frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.media import frame_files

from .images import DEGRADATIONS, DataError, augment, degrade, read_rgb, to_tensor
from .rawclips import RAW_SUFFIX, RawClip
from .sampler import sample_rng, split_key

__all__ = ["ClipFolderDataset", "find_clips", "Clip"]

VAL_WINDOWS_PER_CLIP = 4

Clip = list[Path] | RawClip  # a folder's sorted frame files, or one raw clip file


def find_clips(root: Path, num_frames: int) -> list[Clip]:
    """Every sub-folder of root holding >= num_frames images (as sorted frame path lists) and every
    raw clip ROOT/CLIP.npy with >= num_frames frames, in name order."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    clips: list[Clip] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            clip: Clip = frame_files(entry)
        elif entry.suffix == RAW_SUFFIX:
            clip = RawClip(entry)
        else:
            continue
        if len(clip) >= num_frames:
            clips.append(clip)
    if not clips:
        raise DataError(
            f"{root}: no clip folders with at least {num_frames} frames "
            f"(expected ROOT/CLIP/00000000.png ..., ROOT/CLIP.npy, or the Patches/ + Val/ layout)"
        )
    return clips


class ClipFolderDataset(Dataset):
    """Samples {"lr": [T,3,h,w], "gt": [3,H,W] or [T,3,H,W], "name": "CLIP/FRAME"}."""

    def __init__(
        self,
        clips: list[Clip],
        *,
        num_frames: int = 5,
        scale: int = 3,
        patch_size: int = 32,
        degrade: str = "area",
        train: bool = True,
        augment: bool = True,
        many_to_many: bool = False,
        cache: bool = True,
        seed: int = 0,
    ) -> None:
        if degrade not in DEGRADATIONS:
            raise ValueError(f"degrade must be 'area' or 'bicubic', got {degrade!r}")
        self.clips, self.num_frames, self.scale = clips, num_frames, scale
        self.hr_patch = (2 * patch_size if not train else patch_size) * scale
        self.degrade, self.train, self.augment = degrade, train, augment and train
        self.many_to_many, self.seed = many_to_many, seed
        self.windows = self._windows()
        self._frames: dict[Path, np.ndarray] | None = {} if cache else None

    def _windows(self) -> list[tuple[int, int]]:
        out = []
        for c, frames in enumerate(self.clips):
            last = len(frames) - self.num_frames
            if self.train:
                out += [(c, s) for s in range(last + 1)]
            else:
                count = min(VAL_WINDOWS_PER_CLIP, last + 1)
                out += [(c, int(s)) for s in np.unique(np.linspace(0, last, count).round().astype(int))]
        return out

    def __len__(self) -> int:
        return len(self.windows)

    def _frame(self, path: Path) -> np.ndarray:
        if self._frames is not None and path in self._frames:
            return self._frames[path]
        img = read_rgb(path)
        if min(img.shape[:2]) < self.scale * 4:
            raise DataError(f"{path}: frame {img.shape[1]}x{img.shape[0]} is too small for scale {self.scale}")
        if self._frames is not None:
            self._frames[path] = img
        return img

    def _load_window(self, c: int, start: int) -> np.ndarray:
        """[T, H, W, 3]; for a raw clip a memory-mapped view, so only the crop taken from it is read."""
        clip = self.clips[c]
        if isinstance(clip, RawClip):
            frames = clip.window(start, self.num_frames)
            if min(frames.shape[1:3]) < self.scale * 4:
                raise DataError(f"{clip.path}: frames {frames.shape[2]}x{frames.shape[1]} are too small "
                                f"for scale {self.scale}")
            return frames
        paths = clip[start : start + self.num_frames]
        frames = [self._frame(p) for p in paths]
        for p, f in zip(paths[1:], frames[1:], strict=True):
            if f.shape != frames[0].shape:
                raise DataError(f"{p}: size {f.shape[1]}x{f.shape[0]} differs from {paths[0].name} "
                                f"({frames[0].shape[1]}x{frames[0].shape[0]})")
        return np.stack(frames)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, epoch = split_key(key)
        c, start = self.windows[index]
        hr = self._load_window(c, start)
        rng = sample_rng(self.seed, epoch, index)
        hr = np.ascontiguousarray(self._crop(hr, rng))  # a raw clip reads only these pixels
        lr = degrade(hr, self.scale, self.degrade)
        if self.augment:
            # flips and transposes commute with the downscale (exactly for area, to rounding for
            # bicubic); done last, they cost nothing until to_tensor's one copy
            hr, lr = augment([hr, lr], rng)
        gt = hr if self.many_to_many else hr[self.num_frames // 2]
        return {"lr": to_tensor(lr), "gt": to_tensor(gt), "name": self._name(c, start + self.num_frames // 2)}

    def _name(self, c: int, frame: int) -> str:
        """CLIP/FRAME, e.g. "000/00000012"."""
        clip = self.clips[c]
        if isinstance(clip, RawClip):
            return f"{clip.name}/{frame:08d}"
        return f"{clip[0].parent.name}/{clip[frame].stem}"

    def _crop(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random crop (train) or centre crop (val), sides multiples of the scale."""
        h, w, s = hr.shape[1], hr.shape[2], self.scale
        ph, pw = (min(self.hr_patch, h) // s) * s, (min(self.hr_patch, w) // s) * s
        if self.train:
            y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        else:
            y, x = (h - ph) // 2, (w - pw) // 2
        return hr[:, y : y + ph, x : x + pw]
