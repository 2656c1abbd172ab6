"""Raw clips: one uncompressed uint8 array file per clip, ROOT/CLIP.npy of shape [T, H, W, 3]
(written by `python -m trainer.prepare --format raw`).

Reads go through a memory map, so a training crop touches only its own pixels: no decoding, no
whole-frame reads. The map is opened lazily in each process (DataLoader workers included) and
never pickled, so handing the data set to a worker does not copy the clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import DataError

__all__ = ["RawClip", "RAW_SUFFIX"]

RAW_SUFFIX = ".npy"


class RawClip:
    def __init__(self, path: Path) -> None:
        self.path, self.name = Path(path), Path(path).stem
        self._array: np.ndarray | None = None
        shape = self.array.shape
        if self.array.dtype != np.uint8 or len(shape) != 4 or shape[3] != 3:
            raise DataError(f"{path}: expected a uint8 array [T, H, W, 3], got {self.array.dtype} {list(shape)}")

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            try:
                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.path}: cannot read raw clip ({exc})") from None
        return self._array

    def __len__(self) -> int:
        return self.array.shape[0]

    def window(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) as a read-only view [count, H, W, 3]; nothing is read yet."""
        return self.array[start : start + count]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}
