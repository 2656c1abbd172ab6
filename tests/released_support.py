"""Released BasicVSR++ files for the tests: BasicSR's own model (architecture code from its PyPI
sdist, see bench/bench_basicvsrpp.py) saved the ways the authors publish it.

BasicSR: `{'params': ...}` (and `params_ema`); mmagic/mmediting: `{'meta': ..., 'state_dict':
{'generator.…': ...}}` with its own SPyNet and upsampler names; or a bare state dict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.bench_basicvsrpp import build_basicsr, load_basicsr_reference

__all__ = ["basicsr_class", "basicsr_model", "mmagic_names", "save_basicsr", "save_bare", "save_mmagic",
           "to_8bit"]


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


def to_8bit(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [0, 1] -> uint8 [T, H, W, 3] as BasicSR's tensor2img (clamp, *255, round)."""
    return frames.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def basicsr_forward(model: torch.nn.Module, lqs: torch.Tensor) -> torch.Tensor:
    """BasicSR's forward() step by step through its own methods, minus its >= 64 px assertion
    (its SPyNet still needs frames over 32 px)."""
    n, t, c, h, w = lqs.shape
    model.cpu_cache = False
    model.check_if_mirror_extended(lqs)
    spatial = model.feat_extract(lqs.view(-1, c, h, w)).view(n, t, -1, h, w)
    feats = {"spatial": [spatial[:, i] for i in range(t)]}
    flows_forward, flows_backward = model.compute_flow(lqs)
    for name in ("backward_1", "forward_1", "backward_2", "forward_2"):
        feats[name] = []
        feats = model.propagate(feats, flows_backward if name.startswith("backward") else flows_forward, name)
    return model.upsample(lqs, feats)


def train_basicsr(model: torch.nn.Module, clips: list[np.ndarray], steps: int, *, lr: float = 2e-3,
                  seed: int = 0) -> torch.nn.Module:
    """Train BasicSR's model briefly as its recipe does (Adam, Charbonnier, SPyNet frozen) on GT
    clips uint8 [T, H, W, 3], LR made by the trainer's default degradation (area, x4)."""
    from trainer.data.images import degrade

    pairs = [(torch.from_numpy(degrade(c, 4, "area")).permute(0, 3, 1, 2).float().div(255),
              torch.from_numpy(c).permute(0, 3, 1, 2).float().div(255)) for c in clips]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    model.spynet.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99))
    for _ in range(steps):
        lq, gt = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
        out = basicsr_forward(model, lq.unsqueeze(0))
        loss = torch.sqrt((out - gt.unsqueeze(0)) ** 2 + 1e-6).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
