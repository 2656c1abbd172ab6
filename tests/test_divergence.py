"""trainer.train.divergence on its own: skip a non-finite step without a trace, roll back, stop, refuse to save."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import ckpt
from tests.trainer_support import make_trainer
from trainer.config import load_config
from trainer.report.control import Action, with_setting
from trainer.train.adaptive import AdaptiveClipper
from trainer.train.divergence import (
    DivergenceConfig,
    DivergenceError,
    Guard,
    all_finite,
    optimizer_step,
    poison,
)
from trainer.train.schedule import PlateauBoost, ScheduleConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Events:
    """Stands in for Telemetry: records events and the status counters."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.counters = (0, 0)

    def event(self, kind: str, _message: str, **data) -> None:
        self.events.append((kind, data))

    def set_divergence(self, skipped: int, rollbacks: int) -> None:
        self.counters = (skipped, rollbacks)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def _state(fused: bool = False) -> SimpleNamespace:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return SimpleNamespace(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused),
                           scaler=torch.amp.GradScaler("cpu", enabled=False), clipper=AdaptiveClipper(),
                           adaptive=None)


def _step(state: SimpleNamespace, guard: Guard, x: torch.Tensor) -> torch.Tensor:
    loss = guard.poison(state.model(x).square().mean())
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(state.model.parameters()), 1e9)
    state.clipper.observe(norm)
    finite = guard.observe(norm)
    optimizer_step(state.optimizer, state.scaler, finite)
    state.optimizer.zero_grad(set_to_none=True)
    return finite


def _tensors(state: SimpleNamespace) -> list[torch.Tensor]:
    opt = [v.clone() for s in state.optimizer.state.values() for v in s.values()]
    return [p.detach().clone() for p in state.model.parameters()] + opt


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_poison_leaves_a_finite_loss_and_its_gradients_bit_identical():
    state = _state()
    x = torch.randn(3, 4)
    plain = state.model(x).square().mean()
    grads = torch.autograd.grad(plain, list(state.model.parameters()))
    poisoned = poison(state.model(x).square().mean())
    assert torch.equal(plain, poisoned)
    assert _same(list(grads), list(torch.autograd.grad(poisoned, list(state.model.parameters()))))


def test_a_non_finite_loss_makes_every_gradient_non_finite():
    state = _state()
    loss = poison(state.model(torch.randn(3, 4)).square().mean() + float("inf"))
    assert all(not torch.isfinite(g).all() for g in torch.autograd.grad(loss, list(state.model.parameters())))


@pytest.mark.parametrize("fused", [False, True], ids=["for-loop", "fused"])
def test_a_nan_batch_is_skipped_and_leaves_weights_and_optimizer_bit_identical(fused):
    state, guard = _state(fused), Guard(DivergenceConfig())
    _step(state, guard, torch.randn(3, 4))
    before, clip = _tensors(state), state.clipper.state_dict()
    assert not bool(_step(state, guard, torch.full((3, 4), float("nan"))))
    assert _same(before, _tensors(state)) and state.clipper.state_dict() == clip
    assert bool(_step(state, guard, torch.randn(3, 4)))
    assert not _same(before, _tensors(state))
    assert (guard.state_dict()["consecutive"], guard.skipped) == (0, 1)


def _run(guard: Guard, state, tel: Events, steps: range, bad_steps: set[int], tmp_path) -> None:
    for step in steps:
        x = torch.full((3, 4), float("nan")) if step in bad_steps else torch.randn(3, 4)
        _step(state, guard, x)
        guard.end_step(step, state, tel, tmp_path)


def test_consecutive_skips_roll_back_to_the_snapshot_and_lower_the_lr(tmp_path):
    cfg = DivergenceConfig(max_skips=3, check_every=2, snapshot_every=4, lr_factor=0.5, lr_steps=10)
    state, guard, tel = _state(), Guard(cfg), Events()
    guard.start(0, state, tmp_path)
    _run(guard, state, tel, range(1, 5), set(), tmp_path)  # snapshot at step 4
    at_4 = _tensors(state)
    _run(guard, state, tel, range(5, 9), {6, 7, 8}, tmp_path)  # step 5 trains, then NaN; checked at 8
    assert tel.kinds() == ["nan_skipped", "diverged", "recovered"]
    assert tel.events[1][1] == {"step": 8, "restore_step": 4}
    assert tel.events[2][1] == {"step": 8, "from_step": 4, "rollbacks": 1}
    assert _same(at_4, _tensors(state))  # step 5's update is gone too
    assert tel.counters == (3, 1) and guard.lr_scale(17) == 0.5 and guard.lr_scale(18) == 1.0


def test_rollbacks_without_progress_stop_the_run(tmp_path):
    cfg = DivergenceConfig(max_skips=2, check_every=2, snapshot_every=4, max_rollbacks=2)
    state, guard, tel = _state(), Guard(cfg), Events()
    guard.start(0, state, tmp_path)
    with pytest.raises(DivergenceError, match="after 2 rollback"):
        _run(guard, state, tel, range(1, 100), set(range(3, 100)), tmp_path)
    assert tel.kinds().count("recovered") == 2 and guard.lr_factor == 0.25


def test_clean_steps_after_a_rollback_count_as_progress(tmp_path):
    cfg = DivergenceConfig(max_skips=2, check_every=2, snapshot_every=4, max_rollbacks=1)
    state, guard, tel = _state(), Guard(cfg), Events()
    guard.start(0, state, tmp_path)
    _run(guard, state, tel, range(1, 30), {3, 4, 15, 16, 27, 28}, tmp_path)  # three separate spikes
    assert tel.kinds().count("recovered") == 3 and guard.since_progress == 1


def test_nan_weights_are_refused_for_saving_and_trigger_a_rollback(tmp_path):
    cfg = DivergenceConfig(check_every=2, snapshot_every=2)
    state, guard, tel = _state(), Guard(cfg), Events()
    guard.start(0, state, tmp_path)
    assert guard.refuse_reason(state) is None
    with torch.no_grad():
        state.model[0].weight[0, 0] = math.nan
    assert "non-finite" in guard.refuse_reason(state)
    guard.end_step(2, state, tel, tmp_path)
    assert tel.kinds() == ["diverged", "recovered"] and bool(all_finite(list(state.model.parameters())))


def test_guard_state_round_trips_through_a_state_dict():
    guard = Guard(DivergenceConfig())
    guard.skipped, guard.rollbacks, guard.lr_factor, guard.lr_until, guard.last_rollback = 7, 1, 0.5, 90, 40
    guard.unreported = 2
    other = Guard(DivergenceConfig())
    other.load_state_dict(guard.state_dict())
    assert other.state_dict() == guard.state_dict()


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="lr_factor"):
        DivergenceConfig(lr_factor=2.0)
    with pytest.raises(ValueError, match="max_skips"):
        DivergenceConfig(max_skips=0)


def test_non_finite_validation_scores_never_count_towards_the_plateau_boost():
    boost = PlateauBoost(ScheduleConfig(boost_patience=2))
    assert not boost.observe(1, 0.5)
    assert not any(boost.observe(step, math.nan) for step in range(2, 10))
    assert boost.state_dict() == {"best": 0.5, "stale": 0, "start": None}


def _save(state: SimpleNamespace, run_dir, step: int) -> None:
    ckpt.save_checkpoint(run_dir / ckpt.checkpoint_name(step), {
        "step": step, "type": "regular", "model_state_dict": state.model.state_dict(),
        "optimizer_state_dict": state.optimizer.state_dict(),
        "train_state": {"clipper": state.clipper.state_dict(), "adaptive_loss": None}})


def test_without_a_snapshot_a_rollback_restores_the_newest_finite_checkpoint(tmp_path):
    cfg = DivergenceConfig(max_skips=2, check_every=2, snapshot_every=0)
    state, guard, tel = _state(), Guard(cfg), Events()
    guard.start(0, state, tmp_path)
    _run(guard, state, tel, range(1, 3), set(), tmp_path)
    _save(state, tmp_path, 2)
    at_2 = _tensors(state)
    _run(guard, state, tel, range(3, 5), set(), tmp_path)
    with torch.no_grad():
        state.model[0].weight[0, 0] = math.nan
    _save(state, tmp_path, 4)  # a broken file from before this guard: passed over
    _run(guard, state, tel, range(5, 7), set(), tmp_path)
    assert tel.events[-2] == ("diverged", {"step": 6, "restore_step": 2})
    assert _same(at_2, _tensors(state))


def test_a_live_set_of_max_rollbacks_lets_a_run_roll_back_again_instead_of_stopping(tmp_path):
    cfg = load_config(overrides={"divergence.max_skips": 2, "divergence.check_every": 2,
                                 "divergence.snapshot_every": 4, "divergence.max_rollbacks": 1})
    state, guard, tel = _state(), Guard(cfg.divergence), Events()
    guard.start(0, state, tmp_path)
    _run(guard, state, tel, range(1, 9), {7, 8}, tmp_path)  # rollback 1 at step 8
    guard.cfg = with_setting(cfg, "divergence.max_rollbacks", 2).divergence  # what `set` hands the guard
    _run(guard, state, tel, range(9, 11), {9, 10}, tmp_path)  # with max_rollbacks 1 this stopped the run
    assert tel.kinds().count("recovered") == 2
    with pytest.raises(DivergenceError, match="after 2 rollback"):
        _run(guard, state, tel, range(11, 13), {11, 12}, tmp_path)


def test_the_trainer_takes_a_set_of_a_divergence_knob_and_refuses_its_cadences(tmp_path):
    trainer = make_trainer(tmp_path)
    try:
        trainer._apply(Action("set", {"key": "divergence.max_skips", "value": 25}))
        assert trainer.setup.state.divergence.cfg.max_skips == 25
        with pytest.raises(ValueError, match="'divergence.check_every' cannot be set while training"):
            with_setting(trainer.cfg, "divergence.check_every", 1)
        with pytest.raises(ValueError, match="lr_factor must be in"):
            with_setting(trainer.cfg, "divergence.lr_factor", 2.0)
    finally:
        trainer.setup.close()
