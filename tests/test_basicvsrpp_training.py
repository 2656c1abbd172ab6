"""BasicVSR++ through the real trainer: model options, SPyNet freezing + LR multiplier, many-to-many
loss on clip folders, exact resume across the unfreeze step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ckpt
from tests.trainer_support import TINY_SETTINGS as TINY
from tests.trainer_support import assert_same_training_state as _assert_same_training_state
from tests.trainer_support import final_state as _final_state
from tests.trainer_support import make_trainer
from trainer import models
from trainer.config import ConfigError, load_config
from trainer.train.loop import Trainer, centre_if_single_target

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIGS = Path(models.__file__).parent.parent / "configs"
FIX = 2  # SPyNet frozen for steps 0 and 1, trained from step 2
BVPP = {**TINY, "model.name": "basicvsrpp", "model.n_feats": 16, "model.n_blocks": 1, "data.patch_size": 16,
        "model.options.hr_channels": 4, "model.options.spynet_fix_iter": FIX, "train.batch_size": 1,
        "train.max_iters": 4}


def _trainer(run_dir: Path, resume: str = "never", stop_at: int | None = None, **over) -> Trainer:
    return make_trainer(run_dir, resume, stop_at, **{**BVPP, **over})


def _spynet(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.setup.state.model.spynet.state_dict().items()}


def _groups(trainer: Trainer) -> dict[str, dict]:
    return {g["name"]: g for g in trainer.setup.state.optimizer.param_groups}


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("straight")
    assert _trainer(run_dir).run() == 0
    return _final_state(run_dir)


def test_checkpoint_model_kwargs_rebuild_the_trained_basicvsrpp(straight):
    kwargs = straight["model_kwargs"]
    assert straight["model_name"] == "basicvsrpp" and straight["step"] == 4
    assert kwargs["hr_channels"] == 4 and kwargs["spynet_fix_iter"] == FIX and kwargs["n_feats"] == 16
    model = models.build(straight["model_name"], **kwargs)
    model.load_state_dict(straight["model_state_dict"], strict=True)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 3, 8, 8)).shape == (1, 3, 3, 24, 24)


def test_spynet_frozen_before_fix_iter_then_trained_at_its_lr_multiple_and_resume_is_exact(tmp_path, straight):
    run_dir = tmp_path / "split"
    first = _trainer(run_dir, stop_at=FIX)
    initial = _spynet(first)
    assert first.run() == 0
    flow_params = _groups(first)["spynet"]["params"]
    assert all(not p.requires_grad and p.grad is None for p in flow_params)
    assert all(first.setup.state.optimizer.state.get(p) is None for p in flow_params)  # Adam never touched them
    assert all(torch.equal(initial[k], v) for k, v in _spynet(first).items())
    assert [e["step"] for e in ckpt.list_checkpoints(run_dir)] == [FIX]

    resumed = _trainer(run_dir, resume="latest")
    assert resumed.step == FIX and resumed.run() == 0
    groups = _groups(resumed)
    assert groups["spynet"]["lr_mult"] == 0.25 and groups["main"]["lr_mult"] == 1.0
    assert groups["spynet"]["lr"] == pytest.approx(groups["main"]["lr"] * 0.25)
    assert all(p.requires_grad for p in groups["spynet"]["params"])
    assert any(not torch.equal(initial[k], v) for k, v in _spynet(resumed).items())
    _assert_same_training_state(straight, _final_state(run_dir))


def _write_clips(root: Path, clips: int = 3, frames: int = 5, size: int = 32) -> None:
    rng = np.random.default_rng(0)
    for c in range(clips):
        base = rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)
        folder = root / f"{c:03d}"
        folder.mkdir(parents=True)
        for f in range(frames):  # a smooth picture drifting one pixel per frame
            img = Image.fromarray(base).resize((size + frames, size + frames), Image.BILINEAR)
            img.crop((f, 0, f + size, size)).save(folder / f"{f:08d}.png")


def test_clip_folders_train_every_output_frame_with_an_even_clip_length(tmp_path):
    _write_clips(tmp_path / "clips")
    trainer = _trainer(tmp_path / "run", **{"data.root": str(tmp_path / "clips"), "data.layout": "clips",
                                             "model.num_frames": 4, "model.scale": 2, "data.patch_size": 8,
                                             "train.max_iters": 2})
    shapes, loss_fn = [], trainer.setup.state.loss_fn
    trainer.setup.state.loss_fn = lambda pred, gt: (shapes.append((pred.shape, gt.shape)), loss_fn(pred, gt))[1]
    assert trainer.run() == 0
    assert shapes[0] == (torch.Size([1, 4, 3, 16, 16]),) * 2  # training: all four frames
    assert ckpt.select_checkpoint(tmp_path / "run", "latest")["step"] == 2


def test_many_to_many_output_against_one_centre_target_trains_the_centre_frame():
    pred = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(2, 5, 3, 4, 4)
    assert torch.equal(centre_if_single_target(pred, torch.zeros(2, 3, 4, 4)), pred[:, 2])
    assert centre_if_single_target(pred, torch.zeros(2, 5, 3, 4, 4)) is pred


def test_reds_recipe_config_loads_with_30_frames():
    cfg = load_config(CONFIGS / "basicvsrpp_reds.toml")
    assert cfg.data.num_frames == 30 and cfg.data.many_to_many and cfg.model.kwargs()["n_feats"] == 64


def test_model_options_are_checked_against_the_models_arguments():
    with pytest.raises(ConfigError, match=r"model.options.bogus .* allowed: .*hr_channels.*spynet_lr_mul"):
        load_config(overrides={"model.name": "basicvsrpp", "model.options.bogus": 1})
    with pytest.raises(ConfigError, match="data.num_frames must be odd"):
        load_config(overrides={"model.num_frames": 6})  # vsrpp restores the centre frame
