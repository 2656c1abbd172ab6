"""Raw clips: one uncompressed uint8 array file per clip, ROOT/CLIP.npy of shape [T, H, W, 3]
(written by `python -m trainer.prepare --format raw`).

Reads go through a memory map, so a training crop touches only its own pixels: no decoding, no
whole-frame reads. Only the header is read up front; each sample maps the file afresh (about
30 microseconds; the OS page cache keeps the pixels), so no mapping is held per clip (a data set of
100,000 clips stays under the kernel's map limit) and nothing but the path is pickled to workers.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from .images import DataError

__all__ = ["RawClip", "RAW_SUFFIX"]

RAW_SUFFIX = ".npy"


def _header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, offset of the data) of an .npy file."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        return (*read(f), f.tell())


class RawClip:
    def __init__(self, path: Path) -> None:
        self.path, self.name = Path(path), Path(path).stem
        try:
            self.shape, fortran, dtype, self.offset = _header(self.path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read raw clip ({exc})") from None
        if dtype != np.uint8 or fortran or len(self.shape) != 4 or self.shape[3] != 3:
            raise DataError(f"{path}: expected a uint8 array [T, H, W, 3], got {dtype} {list(self.shape)}")

    def __len__(self) -> int:
        return self.shape[0]

    def window(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) as a read-only view [count, H, W, 3]; nothing is read yet."""
        try:
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            frames = np.frombuffer(mapped, np.uint8, count=int(np.prod(self.shape)), offset=self.offset)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: cannot read raw clip ({exc})") from None
        return frames.reshape(self.shape)[start : start + count]
