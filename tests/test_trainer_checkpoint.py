"""The checkpoint schema: to_checkpoint and from_checkpoint mirror each other; the docs list its keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import ckpt
from ckpt.__main__ import main as ckpt_cli
from tests.trainer_support import TINY_RUN as TINY
from trainer.config import load_config
from trainer.train.batches import BatchStream
from trainer.train.checkpoint import CHECKPOINT_KEYS, TRAIN_STATE_KEYS, ResumeError, from_checkpoint, to_checkpoint
from trainer.train.distributed import DistInfo
from trainer.train.snapshot import freeze
from trainer.train.state import TrainingState

DOC = Path(__file__).resolve().parents[1] / "docs" / "checkpoints.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state(**over) -> TrainingState:
    cfg = load_config(overrides={**TINY, **over})
    return TrainingState(cfg, torch.device("cpu"), BatchStream(list(range(8)), cfg, DistInfo()))


def _trained(state: TrainingState) -> TrainingState:
    """One real optimizer step plus changed small parts, so that nothing is at its initial value."""
    frames = torch.rand(2, 5, 3, 8, 8)
    loss, _ = state.loss_fn(state.model(frames), torch.rand(2, 3, 24, 24))
    loss.backward()
    state.clipper.observe(state.clip(state.model.parameters()))
    state.optimizer.step()
    state.batches.sampler.advance(3)
    state.record_validation(10, {"quality": 0.5, "psnr": 30.0, "ssim": 0.9, "loss": 0.1})
    state.boost.start = 7
    return state


def _documented_keys() -> tuple[set[str], str]:
    table = DOC.read_text().split("## Contents", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    keys = {key for row in rows for key in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    train_row = next(row for row in rows if row.startswith("| `train_state`"))
    return keys, train_row


def test_docs_list_exactly_the_keys_the_schema_writes():
    written = to_checkpoint(_state(), step=0, kind="regular", config=load_config(), train_loss=None)
    keys, train_row = _documented_keys()
    assert keys == set(CHECKPOINT_KEYS) == {*written, "format_version"}
    assert set(written["train_state"]) == set(TRAIN_STATE_KEYS)
    assert all(f"`{key}`" in train_row for key in TRAIN_STATE_KEYS)


def test_from_checkpoint_restores_what_to_checkpoint_wrote(tmp_path):
    cfg = load_config(overrides=TINY)
    original = _trained(_state())
    path = tmp_path / ckpt.checkpoint_name(5)
    ckpt.save_checkpoint(path, freeze(to_checkpoint(original, step=5, kind="regular", config=cfg, train_loss=0.2)))
    restored = _state()
    assert from_checkpoint(ckpt.load_checkpoint(path), restored, path) == 5
    a = to_checkpoint(original, step=5, kind="regular", config=cfg, train_loss=0.2)
    b = to_checkpoint(restored, step=5, kind="regular", config=cfg, train_loss=0.2)
    assert all(torch.equal(v, b["model_state_dict"][k]) for k, v in a["model_state_dict"].items())
    assert b["train_state"] == a["train_state"] and b["data_state"] == a["data_state"]
    assert b["scheduler_state_dict"] == a["scheduler_state_dict"] and b["epoch"] == a["epoch"]
    assert b["metrics"] == a["metrics"]
    for x, y in zip(a["optimizer_state_dict"]["state"].values(), b["optimizer_state_dict"]["state"].values(),
                    strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_a_resumed_run_lists_its_last_validation_quality_before_it_validates_again(tmp_path, capsys):
    cfg = load_config(overrides=TINY)
    validated = _trained(_state())  # validated at step 10: quality 0.5
    first = tmp_path / ckpt.checkpoint_name(10)
    ckpt.save_checkpoint(first, freeze(to_checkpoint(validated, step=10, kind="regular", config=cfg,
                                                     train_loss=0.2)))
    resumed = _state()
    from_checkpoint(ckpt.load_checkpoint(first), resumed, first)
    ckpt.save_checkpoint(tmp_path / ckpt.checkpoint_name(12), freeze(to_checkpoint(
        resumed, step=12, kind="regular", config=cfg, train_loss=0.3)))
    assert ckpt_cli(["list", str(tmp_path), "--json"]) == 0  # `just ckpt list RUN --json`
    listed = json.loads(capsys.readouterr().out)
    assert [(e["step"], e["quality"], e["psnr"], e["loss"]) for e in listed] == [
        (10, 0.5, 30.0, 0.1), (12, 0.5, 30.0, 0.1)]


def test_before_any_validation_a_resumed_run_lists_no_quality_and_its_fresh_training_loss(tmp_path):
    cfg = load_config(overrides=TINY)
    first = tmp_path / ckpt.checkpoint_name(2)
    ckpt.save_checkpoint(first, freeze(to_checkpoint(_state(), step=2, kind="regular", config=cfg, train_loss=0.2)))
    resumed = _state()
    from_checkpoint(ckpt.load_checkpoint(first), resumed, first)
    assert to_checkpoint(resumed, step=3, kind="regular", config=cfg, train_loss=0.3)["metrics"]["loss"] == 0.3
    assert resumed.last_validation == {}


def test_a_checkpoint_of_another_model_is_refused_with_the_settings_that_fit(tmp_path):
    path = tmp_path / ckpt.checkpoint_name(1)
    ckpt.save_checkpoint(path, freeze(to_checkpoint(_state(), step=1, kind="regular", config=load_config(),
                                                    train_loss=None)))
    with pytest.raises(ResumeError, match="--set model.n_feats=4"):
        from_checkpoint(ckpt.load_checkpoint(path), _state(**{"model.n_feats": 8}), path)
