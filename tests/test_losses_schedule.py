from __future__ import annotations

import pytest
import torch

from trainer.train.schedule import PlateauBoost, ScheduleConfig, build_optimizer, lr_at, set_lr

CFG = ScheduleConfig(lr_max=1e-4, lr_min=1e-6, warmup_iters=100, max_iters=1000, boost_iters=50)


def test_lr_warms_up_linearly_then_follows_a_cosine_to_the_minimum() -> None:
    assert lr_at(0, CFG) == pytest.approx(1e-6)
    assert lr_at(49, CFG) == pytest.approx(5e-5)
    assert lr_at(100, CFG) == pytest.approx(1e-4)
    assert lr_at(550, CFG) == pytest.approx((1e-4 + 1e-6) / 2)
    assert lr_at(1000, CFG) == pytest.approx(1e-6)
    assert lr_at(5000, CFG) == pytest.approx(1e-6)
    lrs = [lr_at(s, CFG) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_plateau_boost_multiplies_then_fades_and_survives_resume() -> None:
    boost = PlateauBoost(ScheduleConfig(boost_patience=2))
    assert not boost.observe(100, 0.5)
    assert not boost.observe(200, 0.5)
    assert boost.observe(300, 0.5)
    assert lr_at(300, CFG, boost.start) == pytest.approx(2 * lr_at(300, CFG))
    assert lr_at(350, CFG, boost.start) == pytest.approx(lr_at(350, CFG))
    again = PlateauBoost()
    again.load_state_dict(boost.state_dict())
    assert again.start == 300


def test_optimizer_is_adamw_with_weight_decay_and_lr_can_be_set() -> None:
    opt = build_optimizer(torch.nn.Linear(2, 2), CFG)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 1e-3
    set_lr(opt, 3e-5)
    assert opt.param_groups[0]["lr"] == 3e-5


def test_bad_schedule_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="lr_min"):
        ScheduleConfig(lr_max=1e-5, lr_min=1e-4)
