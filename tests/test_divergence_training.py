"""Divergence in real training runs: a NaN batch is skipped without a trace, LR 1e4 rolls back and stops
cleanly, nothing non-finite reaches the disk, a resume after a rollback is the straight run, DDP ranks agree."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

import ckpt
from tests.trainer_support import (
    ONE_THREAD,
    TINY_FLAGS,
    StopAt,
    assert_same_training_state,
    final_state,
    free_port,
    make_trainer,
    torchrun_trainer,
)
from trainer.report.control import Action
from trainer.train.loop import Trainer
from trainer.train.snapshot import unwrap

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIVERGENCE = {"divergence.check_every": 1, "divergence.snapshot_every": 2, "divergence.max_skips": 2}


def _trainer(run_dir, resume="never", stop_at=None, **over) -> Trainer:
    return make_trainer(run_dir, resume, stop_at, **{**DIVERGENCE, **over})


def _training_state(trainer: Trainer) -> list[torch.Tensor]:
    state = trainer.setup.state
    opt = [v for s in state.optimizer.state.values() for v in s.values()]
    return [t.detach().clone() for t in (*unwrap(state.model).state_dict().values(), *opt)]


def events(run_dir) -> list[tuple[str, dict]]:
    """(kind, data) of every event in the run's training.log: `date time  kind  message {json}`."""
    found = []
    for line in (run_dir / "training.log").read_text().splitlines():
        kind, data = line.split()[2], {}
        for match in re.finditer(r" \{", line):  # the message may hold braces too: the JSON ends the line
            try:
                data = json.loads(line[match.start() + 1:])
                break
            except json.JSONDecodeError:
                continue
        found.append((kind, data))
    return found


def _all_finite(path) -> bool:
    state = ckpt.load_checkpoint(path)
    tensors = list(state["model_state_dict"].values())
    tensors += [v for s in state["optimizer_state_dict"]["state"].values() for v in s.values()]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def test_an_injected_nan_batch_is_skipped_and_leaves_the_weights_bit_identical(tmp_path):
    before = _trainer(tmp_path / "a", **{"train.max_iters": 2})
    assert before.run() == 0
    skipped = _trainer(tmp_path / "b", **{"train.max_iters": 3, "divergence.inject_nan_steps": [3]})
    assert skipped.run() == 0
    assert all(torch.equal(x, y) for x, y in zip(_training_state(before), _training_state(skipped), strict=True))
    assert skipped.setup.state.clipper.state_dict() == before.setup.state.clipper.state_dict()
    assert ("nan_skipped", {"step": 3, "skipped": 1, "reason": "non-finite loss or gradient norm"}) \
        in events(tmp_path / "b")
    assert skipped.setup.report.telemetry.latest_status()["skipped_steps"] == 1


class NanWeightsThenSaveAt(StopAt):
    """At the top of iteration `step`: one weight becomes NaN, then a `save` command arrives."""

    def drain(self) -> list[Action]:
        if self.trainer.step != self.step:
            return []
        with torch.no_grad():
            next(unwrap(self.trainer.setup.state.model).parameters()).view(-1)[0] = float("nan")
        return [Action("save")]


def test_a_save_of_nan_weights_is_refused_and_never_written(tmp_path):
    trainer = _trainer(tmp_path, **{"train.max_iters": 3})
    trainer.setup.report.controller = NanWeightsThenSaveAt(trainer, 2)
    assert trainer.run() == 0
    assert ckpt.list_checkpoints(tmp_path) == []
    refused = [data for kind, data in events(tmp_path) if kind == "checkpoint_refused"]
    assert [d["step"] for d in refused] == [2, 3]  # the command's save and the final one
    assert all("non-finite" in d["reason"] for d in refused)


@pytest.mark.parametrize("stop_at", [3, 7], ids=["resumed-before", "resumed-after"])
def test_a_run_resumed_before_or_after_a_rollback_continues_as_the_straight_run(tmp_path, stop_at):
    """NaN batches at steps 4 and 5 roll back to step 2's snapshot at step 5; a run resumed at step 3
    reloads that snapshot from the step-2 checkpoint, one resumed at 7 carries the rollback's LR window."""
    over = {"train.max_iters": 9, "train.save_every": 2, "divergence.inject_nan_steps": [4, 5]}
    straight = _trainer(tmp_path / "straight", **over)
    assert straight.run() == 0
    assert [(k, d) for k, d in events(tmp_path / "straight") if k == "diverged"] == \
        [("diverged", {"step": 5, "restore_step": 2})]
    split = tmp_path / "split"
    assert _trainer(split, stop_at=stop_at, **over).run() == 0
    resumed = _trainer(split, resume="latest", **over)
    assert resumed.step == stop_at and resumed.run() == 0
    assert_same_training_state(final_state(tmp_path / "straight"), final_state(split))
    status = resumed.setup.report.telemetry.latest_status()
    assert (status["skipped_steps"], status["rollbacks"]) == (2, 1)  # counted once, across the resume


def test_lr_1e4_rolls_back_then_stops_with_one_line_and_only_finite_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--resume", "never",
           "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep", f"tcp://127.0.0.1:{free_port()}",
           "--max-iters", "300", "--save-every", "20", "--val-every", "20", *TINY_FLAGS,
           "--set", "schedule.lr_max=1e4", "--set", "clip.start=1e9", "--set", "clip.adaptive=false"]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ONE_THREAD,
                          timeout=240)
    assert done.returncode != 0, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "Traceback" not in done.stderr, done.stderr
    kinds = [k for k, _ in events(run_dir)]
    assert kinds.count("recovered") == 3 and "diverged" in kinds
    paths = [e["path"] for e in ckpt.list_checkpoints(run_dir)]
    assert all(_all_finite(p) for p in paths)


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on POSIX")
def test_ddp_ranks_skip_and_roll_back_at_the_same_steps_when_one_rank_sees_nan_batches(tmp_path):
    cmd = torchrun_trainer(tmp_path / "run",
                           "--pub", f"tcp://127.0.0.1:{free_port()}", "--rep", f"tcp://127.0.0.1:{free_port()}",
                           "--max-iters", "6", "--val-every", "100", "--save-every", "100",
                           "--set", "divergence.inject_nan_steps=[3,4]", "--set", "divergence.inject_nan_rank=1",
                           *(f"--set=divergence.{k.split('.')[1]}={v}" for k, v in DIVERGENCE.items()))
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ONE_THREAD,
                          timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    counts = re.findall(r"\[rank (\d)\] skipped (\d+) non-finite steps, (\d+) rollbacks", out)
    assert sorted(counts) == [("0", "2", "1"), ("1", "2", "1")], out
