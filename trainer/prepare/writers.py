"""Writing clips and patches so that nothing half-written is ever where the trainer reads.

A clip is built in OUT/.prepare/tmp/ and moved into place with one os.replace (a folder of PNGs or
one .npy file), so a reader sees all of it or none of it. Outputs that already exist are complete
(they got there by a rename) and identical to what this run would write, so they are kept:
that is how a killed run resumes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from .decode import require_av

__all__ = ["ClipWriter", "PatchWriter", "split_folder", "TMP", "encode_pngs"]

TMP = ".prepare"
SPLIT_FOLDERS = {"clips": {"train": "train", "val": "val"}, "patches": {"train": "Patches", "val": "Val"}}


def split_folder(out: Path, layout: str, split: str) -> Path:
    return out / SPLIT_FOLDERS[layout][split]


def encode_pngs(frames: list[np.ndarray], threads: int = 1) -> list[bytes]:
    """PNG files of RGB uint8 frames (zlib level 1, Paeth prediction) by FFmpeg's encoder: about
    twice PIL's speed at the same size, and frames of a clip compress in parallel threads."""
    av = require_av()
    ctx = av.CodecContext.create("png", "w")
    ctx.height, ctx.width = frames[0].shape[:2]
    ctx.pix_fmt = "rgb24"
    ctx.options = {"compression_level": "1", "pred": "paeth"}
    if threads > 1:
        ctx.thread_type, ctx.thread_count = "FRAME", threads
    packets = []
    for frame in frames:
        packets += ctx.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
    packets += ctx.encode(None)
    return [bytes(p) for p in packets]


def _save_npy(path: Path, frames: list[np.ndarray]) -> None:
    """What np.save(path, np.stack(frames)) writes, without the stacked copy."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(frames), *frames[0].shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for frame in frames:
            f.write(np.ascontiguousarray(frame).data)


def _tmp(out: Path, name: str) -> Path:
    tmp = out / TMP / "tmp" / name
    if tmp.is_dir():
        shutil.rmtree(tmp)
    tmp.unlink(missing_ok=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


class ClipWriter:
    """OUT/{train,val}/NAME_NNNN/00000000.png ... (png) or OUT/{train,val}/NAME_NNNN.npy, uint8 [T, H, W, 3] (raw)."""

    def __init__(self, out: Path, split: str, fmt: str, threads: int = 1) -> None:
        self.out, self.fmt, self.threads = out, fmt, threads
        self.folder = split_folder(out, "clips", split)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, frames: list[np.ndarray]) -> int:
        """Write one clip; returns 1 (the number of training items it makes)."""
        final = self.folder / (f"{name}.npy" if self.fmt == "raw" else name)
        if final.exists():
            return 1
        tmp = _tmp(self.out, final.name)
        if self.fmt == "raw":
            _save_npy(tmp, frames)
        else:
            tmp.mkdir()
            for i, png in enumerate(encode_pngs(frames, self.threads)):
                (tmp / f"{i:08d}.png").write_bytes(png)
        os.replace(tmp, final)
        return 1

    def remove(self, video: str) -> None:
        """Delete every clip of one video (it failed part-way)."""
        pattern = re.compile(rf"{re.escape(video)}_\d{{4,}}(\.npy)?")
        for path in self.folder.iterdir():
            if pattern.fullmatch(path.name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


class PatchWriter:
    """The original layout: SPLIT/GT/NAME.png (centre frame, patch*scale square) and SPLIT/LR[_7frames]/NAME.png
    (the T area-downscaled frames stacked vertically), one pair per tile of a grid over the frame."""

    def __init__(self, out: Path, split: str, frames: int, scale: int, patch: int) -> None:
        self.out, self.scale, self.patch = out, scale, patch
        folder = split_folder(out, "patches", split)
        self.gt, self.lr = folder / "GT", folder / ("LR" if frames == 5 else f"LR_{frames}frames")
        self.gt.mkdir(parents=True, exist_ok=True)
        self.lr.mkdir(parents=True, exist_ok=True)

    def tiles(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left corners of the non-overlapping GT squares, the grid centred in the frame."""
        side = self.patch * self.scale
        ny, nx = height // side, width // side
        y0, x0 = (height - ny * side) // 2, (width - nx * side) // 2
        return [(y0 + j * side, x0 + i * side) for j in range(ny) for i in range(nx)]

    def write(self, name: str, frames: list[np.ndarray]) -> int:
        """Write the window's patches; returns how many."""
        # imports torch: only the patches layout pays for it
        from trainer.data.images import area_downscale

        side, stack = self.patch * self.scale, np.stack(frames)
        tiles = self.tiles(*stack.shape[1:3])
        for t, (y, x) in enumerate(tiles):
            file = f"{name}_{t:02d}.png"
            if (self.gt / file).exists():  # GT goes last: its presence means the pair is complete
                continue
            crop = stack[:, y : y + side, x : x + side]
            lr = area_downscale(crop, self.scale)
            self._place(self.lr / file, lr.reshape(-1, *lr.shape[2:]))
            self._place(self.gt / file, crop[len(frames) // 2])
        return len(tiles)

    def _place(self, final: Path, rgb: np.ndarray) -> None:
        tmp = _tmp(self.out, final.name)
        tmp.write_bytes(encode_pngs([rgb])[0])
        os.replace(tmp, final)

    def remove(self, video: str) -> None:
        pattern = re.compile(rf"{re.escape(video)}_\d{{4,}}_\d{{2,}}\.png")
        for folder in (self.gt, self.lr):
            for path in folder.iterdir():
                if pattern.fullmatch(path.name):
                    path.unlink()
