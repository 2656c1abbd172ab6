"""The shipped BasicVSR++ configs: the small one builds and runs, the REDS one is the paper's recipe."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from trainer import models
from trainer.config import load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = Path(models.__file__).parent.parent / "configs"


def test_small_config_builds_a_many_to_many_x3_model_that_runs():
    cfg = load_config(CONFIGS / "basicvsrpp_small.toml")
    assert cfg.model.name == "basicvsrpp" and cfg.model.scale == 3 and cfg.data.many_to_many
    assert cfg.loss.pixel == "charbonnier"
    model = models.build(cfg.model.name, **cfg.model.kwargs())
    with torch.no_grad():
        out = model(torch.rand(1, cfg.model.num_frames, 3, 8, 8))
    assert out.shape == (1, cfg.model.num_frames, 3, 24, 24)


def test_reds_config_is_the_papers_recipe():
    raw = tomllib.loads((CONFIGS / "basicvsrpp_reds.toml").read_text())
    assert raw["model"] == {"name": "basicvsrpp", "num_frames": 30, "n_feats": 64, "n_blocks": 7, "scale": 4}
    assert raw["data"]["patch_size"] == 64 and raw["data"]["layout"] == "clips"
    assert raw["schedule"]["lr_max"] == 1e-4 and raw["schedule"]["weight_decay"] == 0.0
    assert raw["train"]["max_iters"] == 600_000 and raw["loss"]["pixel"] == "charbonnier"
    with torch.device("meta"):  # shapes only, no memory
        model = models.build("basicvsrpp", **{k: v for k, v in raw["model"].items() if k != "name"})
    assert (model.spynet_fix_iter, model.spynet_lr_mul) == (5000, 0.25)
