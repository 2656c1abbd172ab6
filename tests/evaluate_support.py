"""Tiny checkpoints and clip folders for the evaluate tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests import upscale_support
from tests.video_support import shot

VSRPP = upscale_support.VSRPP


def checkpoint(path: Path, name: str = "vsrpp", kwargs: dict | None = None, *, degrade: str = "area") -> Path:
    """A small random model of `name` whose training config made LR by `degrade`."""
    kwargs = kwargs or VSRPP
    return upscale_support.checkpoint(path, name, kwargs,
                                      config={"data": {"degrade": degrade, "scale": kwargs["scale"]}})


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:08d}.png")
    return folder


def clip_folders(root: Path, clips: tuple[str, ...] = ("a", "b"), frames: int = 3,
                 size: tuple[int, int] = (36, 48)) -> Path:
    """ROOT/CLIP/00000000.png ...: a panning textured shot per clip."""
    for i, name in enumerate(clips):
        write_frames(root / name, shot(frames, *size, seed=i))
    return root
