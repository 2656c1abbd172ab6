"""Resume restores everything: N straight iterations == N/2 + stop + resume + N/2, bit for bit."""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch

import ckpt
from tests.trainer_support import (
    ScriptedCommands,
    StopAt,
    assert_same_checkpoint,
    assert_same_training_state,
    final_state,
    make_trainer,
)
from trainer.report.control import Action

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, one_torch_thread) -> dict:
    run_dir = tmp_path_factory.mktemp("straight")
    assert make_trainer(run_dir).run() == 0
    return final_state(run_dir)


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_and_resume_gives_bit_identical_weights(tmp_path, straight, workers):
    """The straight run uses no workers: the data order does not depend on the worker count either."""
    split = tmp_path / "split"
    assert make_trainer(split, stop_at=3, **{"train.num_workers": workers}).run() == 0
    assert [e["step"] for e in ckpt.list_checkpoints(split)] == [3]
    resumed = make_trainer(split, resume="latest", **{"train.num_workers": workers})
    assert resumed.step == 3
    assert resumed.run() == 0
    b = final_state(split)
    assert straight["step"] == b["step"] == 6
    assert_same_training_state(straight, b)


class CtrlCTwiceAt(StopAt):
    """Delivers SIGINT twice at the top of iteration `step`, as an impatient user would."""

    def drain(self) -> list[Action]:
        if self.trainer.step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return []


def test_ctrl_c_twice_leaves_one_exact_emergency_checkpoint(tmp_path, straight):
    run_dir = tmp_path / "run"
    trainer = make_trainer(run_dir)
    trainer.setup.report.controller = CtrlCTwiceAt(trainer, 3)
    assert trainer.run() == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is not None  # the trainer's handler is gone again
    entries = ckpt.list_checkpoints(run_dir)
    assert [(e["step"], e["type"], e["status"]) for e in entries] == [(3, "emergency", "ok")]
    resumed = make_trainer(run_dir, resume="latest")
    assert resumed.step == 3 and resumed.run() == 0
    assert_same_training_state(straight, final_state(run_dir))


def _other_code_draws_random_numbers() -> None:
    """What other code in the process (tests, a user's tools) does to the global generators."""
    np.random.seed(1234)
    random.seed(1234)
    np.random.rand(7)
    random.random()
    torch.rand(7)


def test_two_runs_with_the_same_seed_save_identical_checkpoints_rng_states_included(tmp_path, straight):
    _other_code_draws_random_numbers()
    assert make_trainer(tmp_path / "again").run() == 0
    assert_same_checkpoint(straight, final_state(tmp_path / "again"))


def test_a_crashed_and_resumed_run_saves_the_straight_runs_checkpoint_rng_states_included(tmp_path, straight):
    run_dir = tmp_path / "run"
    trainer = make_trainer(run_dir)
    trainer.setup.report.controller = CtrlCTwiceAt(trainer, 3)
    assert trainer.run() == 128 + signal.SIGINT
    _other_code_draws_random_numbers()
    assert make_trainer(run_dir, resume="latest").run() == 0
    assert_same_checkpoint(straight, final_state(run_dir))


def test_the_seed_fixes_numpy_and_python_random_too(tmp_path):
    make_trainer(tmp_path / "a", **{"train.max_iters": 1}).setup.close()
    drawn = (np.random.rand(), random.random(), torch.rand(1).item())
    _other_code_draws_random_numbers()
    make_trainer(tmp_path / "b", **{"train.max_iters": 1}).setup.close()
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == drawn


class PauseThenSetAndResume(ScriptedCommands):
    """`pause` at the top of iteration 2; once paused, a `set` and a `resume` in the same drain."""

    def __init__(self, trainer) -> None:
        super().__init__(trainer, {2: [Action("pause")]})
        self.sent = False

    def drain(self) -> list[Action]:
        if self.trainer.paused and not self.sent:
            self.sent = True
            return [Action("set", {"key": "schedule.lr_max", "value": 1e-3}), Action("resume")]
        return super().drain()


def test_set_and_resume_sent_together_while_paused_are_both_applied(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    trainer.setup.report.controller = PauseThenSetAndResume(trainer)
    assert trainer.run() == 0
    assert trainer.step == 6 and trainer.cfg.schedule.lr_max == 1e-3
