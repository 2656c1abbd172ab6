"""Tiny checkpoints and clip folders for the evaluate tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ckpt import save_checkpoint
from tests.video_support import shot
from trainer.models import build

VSRPP = {"num_frames": 3, "n_feats": 4, "n_blocks": 2, "scale": 3}


def checkpoint(path: Path, name: str = "vsrpp", kwargs: dict | None = None, *, degrade: str = "area") -> Path:
    """A small random model of `name` whose training config made LR by `degrade`."""
    kwargs = kwargs or VSRPP
    torch.manual_seed(0)
    model = build(name, **kwargs)
    with torch.no_grad():  # a visible learnt part, so the model differs from its bilinear base
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_checkpoint(path, {"step": 1, "model_name": name, "model_kwargs": kwargs,
                                  "model_state_dict": model.state_dict(),
                                  "config": {"data": {"degrade": degrade, "scale": kwargs["scale"]}}})


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
