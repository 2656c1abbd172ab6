"""Clip reading speed, PNG folders vs raw (.npy through a memory map), on the same 1280x720 clips.

`python -m bench data`. Samples/s of one data worker (one process, one thread) for the
BasicVSR++ recipe (30 frames, 64 px LR crops, x4, all frames as targets) and the VSR++ one
(5 frames, 16 px, x3, centre target), plus disk bytes per frame: the table in the README.
Reads are from the OS page cache (the clip was just written); from a cold disk raw is bounded by
the disk's read speed for the crop, PNG by the decode.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainer.data.clips import ClipFolderDataset
from trainer.data.rawclips import RawClip
from trainer.prepare.writers import encode_pngs

H, W, FRAMES = 720, 1280, 30
RECIPES = [("30 frames, 64 px LR, x4", dict(num_frames=30, patch_size=64, scale=4, many_to_many=True)),
           ("5 frames, 16 px LR, x3", dict(num_frames=5, patch_size=16, scale=3, many_to_many=False))]


def natural_frames(n: int, seed: int = 0) -> np.ndarray:
    """Smooth shapes, hard edges and fine grain, panning 2 px a frame: compresses like camera
    footage, not like noise, and is sharp by prepare's blur measure (about 0.3)."""
    rng = np.random.default_rng(seed)
    size = (W + 2 * n, H)
    coarse = rng.integers(0, 256, (H // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
    edges = rng.integers(0, 256, (H // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    big = (np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC)).astype(np.int16)
           + np.asarray(Image.fromarray(edges).resize(size, Image.NEAREST))) // 2
    big += rng.integers(-6, 7, big.shape, dtype=np.int16)
    big = np.clip(big, 0, 255).astype(np.uint8)
    return np.stack([big[:, 2 * i : 2 * i + W] for i in range(n)])


def write_clips(root: Path, frames: np.ndarray) -> tuple[Path, Path]:
    png, raw = root / "png" / "clip", root / "raw" / "clip.npy"
    png.mkdir(parents=True)
    raw.parent.mkdir()
    for i, data in enumerate(encode_pngs(list(frames))):  # what prepare writes
        (png / f"{i:08d}.png").write_bytes(data)
    np.save(raw, frames)
    return png, raw


def samples_per_s(ds: ClipFolderDataset, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        ds[(n % len(ds), n)]
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        png, raw = write_clips(Path(tmp), natural_frames(FRAMES))
        png_bytes = sum(p.stat().st_size for p in png.iterdir()) / FRAMES
        raw_bytes = raw.stat().st_size / FRAMES
        print(f"{W}x{H} clip of {FRAMES} frames; one process, one thread, page cache warm")
        print(f"disk per frame: PNG (zlib level 1, Paeth) {png_bytes / 2**20:.2f} MiB, raw {raw_bytes / 2**20:.2f} MiB "
              f"({raw_bytes / png_bytes:.1f}x)")
        print(f"  {'recipe':<26} {'PNG samples/s':>14} {'raw samples/s':>14} {'raw/PNG':>8}")
        for label, recipe in RECIPES:
            common = dict(train=True, augment=True, cache=False, **recipe)
            a = samples_per_s(ClipFolderDataset([sorted(png.iterdir())], **common), 4.0)
            b = samples_per_s(ClipFolderDataset([RawClip(raw)], **common), 2.0)
            print(f"  {label:<26} {a:>14.2f} {b:>14.1f} {b / a:>7.0f}x")


if __name__ == "__main__":
    main()
