"""Helpers shared by the ckpt tests (no tests here): states and files as users have them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

from ckpt import checkpoint_name, save_checkpoint


def make_state(step: int, quality: float | None = 0.5, loss: float | None = 0.1, numel: int = 8):
    """A small state dict shaped like the trainer's."""
    return {
        "step": step,
        "epoch": step // 10,
        "type": "regular",
        "model_name": "vsrpp",
        "model_kwargs": {"n_feats": 4},
        "metrics": {"quality": quality, "loss": loss, "ki_quality": quality, "val_loss": loss},
        "model_state_dict": {"w": torch.arange(numel, dtype=torch.float32)},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "rng_state": {"torch": torch.get_rng_state(), "python": [3, [1, 2, 3], None]},
    }


def save(directory: Path, step: int, suffix: str | None = None, **kwargs) -> Path:
    """save_checkpoint under its standard name (checkpoint_step_NNNNNNN[_suffix].pth)."""
    return save_checkpoint(directory / checkpoint_name(step, suffix), make_state(step, **kwargs))


def write_original(path: Path, step: int, quality: float, loss: float, **torch_save_kwargs) -> Path:
    """A checkpoint exactly as the original system wrote it (plain torch.save, ISO timestamp)."""
    # The optimizer/scheduler dicts are written out by hand: building an AdamW imports
    # torch._dynamo (seconds), and their exact shape does not matter here.
    model = torch.nn.Conv2d(3, 4, 3)
    moments = {"step": torch.tensor(5.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}
    optimizer = {"state": {0: moments}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}
    scheduler = {"T_max": 100, "eta_min": 1e-6, "last_epoch": step, "base_lrs": [1e-4]}
    state = {
        "step": step,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer,
        "scheduler_state_dict": scheduler,
        "metrics": {"ki_quality": quality, "val_loss": loss},
        "timestamp": datetime(2024, 1, 14, 10, 23, 5).isoformat(),
    }
    torch.save(state, path, **torch_save_kwargs)
    return path


def save_as_if_on_cuda(path: Path, state: dict, monkeypatch) -> Path:
    """`save_checkpoint`, with every storage tagged as torch tags CUDA ones ("cuda:0"): the file a
    GPU box writes, made on any machine."""
    import torch.serialization

    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda _storage: "cuda:0")
        return save_checkpoint(path, state)
