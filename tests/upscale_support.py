"""Tiny random checkpoints of both architectures for the upscale, export and evaluate tests."""

from __future__ import annotations

from pathlib import Path

import torch

from ckpt import save_checkpoint
from trainer.models import build

VSRPP = {"num_frames": 3, "n_feats": 4, "n_blocks": 2, "scale": 3}
BVPP = {"num_frames": 5, "mid_channels": 16, "num_blocks": 1, "hr_channels": 4, "scale": 2}


def checkpoint(path: Path, name: str, kwargs: dict, config: dict | None = None) -> Path:
    """A small random model (with `config` as its training config, when given) saved at `path`."""
    torch.manual_seed(0)
    model = build(name, **kwargs)
    with torch.no_grad():  # make the learnt part visible in the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = {"step": 1, "model_name": name, "model_kwargs": kwargs, "model_state_dict": model.state_dict()}
    return save_checkpoint(path, state if config is None else {**state, "config": config})
