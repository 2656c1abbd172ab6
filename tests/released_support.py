"""Released BasicVSR++ files for the tests: BasicSR's own model (architecture code from its PyPI
sdist, see bench/bench_basicvsrpp.py) saved the ways the authors publish it.

BasicSR: `{'params': ...}` (and `params_ema`); mmagic/mmediting: `{'meta': ..., 'state_dict':
{'generator.…': ...}}` with its own SPyNet and upsampler names; or a bare state dict.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.bench_basicvsrpp import build_basicsr, load_basicsr_reference
from bench.bench_released import basicsr_forward, to_8bit, train_basicsr

__all__ = ["basicsr_class", "basicsr_forward", "basicsr_model", "mmagic_names", "save_basicsr", "save_bare",
           "save_mmagic", "to_8bit", "train_basicsr"]


def basicsr_class() -> type | None:
    """BasicSR 1.4.2's BasicVSRPlusPlus, or None when its sdist cannot be had."""
    return load_basicsr_reference()


def basicsr_model(cls: type, mid_channels: int = 16, num_blocks: int = 1, seed: int = 0) -> torch.nn.Module:
    """BasicSR's model with perturbed weights (non-zero offset residues: deformable sampling
    really differs from warping), in eval mode."""
    torch.manual_seed(seed)
    model = build_basicsr(cls, mid_channels=mid_channels, num_blocks=num_blocks)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def mmagic_names(state: dict) -> dict:
    """BasicSR's names -> mmagic's, wrapped as its released files are (meta, restorer buffers)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("spynet.basic_module.") and len(parts) == 6:
            key = ".".join([*parts[:4], str(int(parts[4]) // 2), "conv", parts[5]])
        key = key.replace("upconv1.", "upsample1.upsample_conv.").replace("upconv2.", "upsample2.upsample_conv.")
        out[f"generator.{key}"] = value
    return {"meta": {"mmedit_version": "0.14.0", "epoch": 1, "iter": 600000},
            "state_dict": {**out, "step_counter": torch.zeros(1)}}


def save_basicsr(path: Path, state: dict, *, ema: dict | None = None) -> Path:
    """BasicSR's file: `params`, and `params_ema` when given."""
    torch.save({"params": state, **({"params_ema": ema} if ema is not None else {})}, path)
    return path


def save_mmagic(path: Path, state: dict) -> Path:
    torch.save(mmagic_names(state), path)
    return path


def save_bare(path: Path, state: dict) -> Path:
    torch.save(dict(state), path)
    return path
