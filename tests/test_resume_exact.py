"""Resume restores everything: N straight iterations == N/2 + stop + resume + N/2, bit for bit."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import ckpt
from trainer.config import load_config
from trainer.control import Action
from trainer.loop import RunOptions, Trainer

TINY = {"model.n_feats": 4, "model.n_blocks": 2, "data.patch_size": 8, "train.batch_size": 2,
        "train.val_every": 1000, "train.save_every": 1000, "train.val_images": 1, "train.val_limit": 2,
        "telemetry.tensorboard": False, "adaptive.warmup": 2, "adaptive.every": 2, "adaptive.cooldown": 2,
        "clip.min_history": 2, "clip.flush_every": 2, "schedule.warmup_iters": 2, "train.cpu_threads": 1}


class StopAt:
    """Stands in for the command server: asks for `stop` at the top of iteration `step`."""

    def __init__(self, trainer: Trainer, step: int) -> None:
        self.trainer, self.step = trainer, step

    def drain(self) -> list[Action]:
        return [Action("stop")] if self.trainer.step == self.step else []

    def close(self) -> None:
        pass


def _trainer(run_dir, resume="never", stop_at=None, **over) -> Trainer:
    cfg = load_config(overrides={**TINY, "train.max_iters": 6, **over})
    opts = RunOptions(run_dir=run_dir, resume=resume, pub=None, rep=None, interactive=False, console=False)
    trainer = Trainer(cfg, opts)
    if stop_at is not None:
        trainer.parts.report.controller = StopAt(trainer, stop_at)
    return trainer


def _final_state(run_dir) -> dict:
    entry = ckpt.select_checkpoint(run_dir, "latest")
    return ckpt.load_checkpoint(entry["path"])


def _assert_same_training_state(a: dict, b: dict) -> None:
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key
    for x, y in zip(a["optimizer_state_dict"]["state"].values(), b["optimizer_state_dict"]["state"].values(),
                    strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert a["train_state"] == b["train_state"] and a["data_state"] == b["data_state"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, one_torch_thread) -> dict:
    run_dir = tmp_path_factory.mktemp("straight")
    assert _trainer(run_dir).run() == 0
    return _final_state(run_dir)


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_and_resume_gives_bit_identical_weights(tmp_path, straight, workers):
    """The straight run uses no workers: the data order does not depend on the worker count either."""
    split = tmp_path / "split"
    assert _trainer(split, stop_at=3, **{"train.num_workers": workers}).run() == 0
    assert [e["step"] for e in ckpt.list_checkpoints(split)] == [3]
    resumed = _trainer(split, resume="latest", **{"train.num_workers": workers})
    assert resumed.step == 3
    assert resumed.run() == 0
    b = _final_state(split)
    assert straight["step"] == b["step"] == 6
    _assert_same_training_state(straight, b)


class CtrlCTwiceAt(StopAt):
    """Delivers SIGINT twice at the top of iteration `step`, as an impatient user would."""

    def drain(self) -> list[Action]:
        if self.trainer.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return []


def test_ctrl_c_twice_leaves_one_exact_emergency_checkpoint(tmp_path, straight):
    run_dir = tmp_path / "run"
    trainer = _trainer(run_dir)
    trainer.parts.report.controller = CtrlCTwiceAt(trainer, 3)
    assert trainer.run() == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is not None  # the trainer's handler is gone again
    entries = ckpt.list_checkpoints(run_dir)
    assert [(e["step"], e["type"], e["status"]) for e in entries] == [(3, "emergency", "ok")]
    resumed = _trainer(run_dir, resume="latest")
    assert resumed.step == 3 and resumed.run() == 0
    _assert_same_training_state(straight, _final_state(run_dir))
