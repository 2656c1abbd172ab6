from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.train.adaptive import AdaptiveClipper, AdaptiveConfig, AdaptiveLossWeights, ClipConfig
from trainer.train.losses import HybridLoss

CFG = AdaptiveConfig(warmup=100, every=10, cooldown=20, aggressive_after=3, plateau_checks=3)


def _sharp_and_blurry() -> tuple[torch.Tensor, torch.Tensor]:
    gt = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return gt, F.avg_pool2d(gt, 5, stride=1, padding=2)


def test_blurry_output_raises_the_gradient_weight_and_the_loss_uses_it() -> None:
    gt, blurry = _sharp_and_blurry()
    adaptive = AdaptiveLossWeights(cfg=CFG)
    loss = HybridLoss(adaptive)
    assert not adaptive.observe(99, blurry, gt)  # still warming up
    assert adaptive.observe(100, blurry, gt)
    assert adaptive.current()["w_grad"] == pytest.approx(0.22)
    assert adaptive.current()["w_l1"] == pytest.approx(0.58)
    total, parts = loss(blurry, gt)
    assert total.item() == pytest.approx((0.58 * parts["l1"] + 0.2 * parts["ms"] + 0.22 * parts["grad"]).item())
    assert not adaptive.observe(110, blurry, gt)  # cooldown
    assert adaptive.observe(120, blurry, gt)


def test_oversharp_output_lowers_the_gradient_weight_within_bounds() -> None:
    gt, blurry = _sharp_and_blurry()
    adaptive = AdaptiveLossWeights(cfg=CFG)
    for step in range(100, 3000, 10):
        adaptive.observe(step, gt * 2, blurry)
    assert adaptive.current()["w_grad"] == pytest.approx(CFG.w_grad_min)
    assert sum(adaptive.current().values()) == pytest.approx(1.0)


def test_persistent_blur_on_a_plateau_turns_on_aggressive_mode() -> None:
    gt, blurry = _sharp_and_blurry()
    adaptive = AdaptiveLossWeights(cfg=CFG)
    for step in range(100, 160, 10):
        adaptive.observe(step, blurry, gt, loss=0.1)
    assert adaptive.aggressive
    before = adaptive.current()["w_grad"]
    adaptive.observe(1000, blurry, gt, loss=0.1)
    assert adaptive.current()["w_grad"] - before == pytest.approx(0.04)  # doubled step
    adaptive.observe(1010, gt, gt, loss=0.1)
    assert not adaptive.aggressive


def test_adaptive_weights_resume_to_the_same_decisions() -> None:
    gt, blurry = _sharp_and_blurry()
    a = AdaptiveLossWeights(cfg=CFG)
    for step in range(100, 200, 10):
        a.observe(step, blurry, gt, loss=0.1)
    b = AdaptiveLossWeights(cfg=CFG)
    b.load_state_dict(a.state_dict())
    for step in range(200, 400, 10):
        assert a.observe(step, blurry, gt, loss=0.1) == b.observe(step, blurry, gt, loss=0.1)
    assert a.state_dict() == b.state_dict()


def test_clip_follows_the_95th_percentile_of_recent_norms() -> None:
    clipper = AdaptiveClipper(ClipConfig(start=1.5, flush_every=7))
    for _ in range(600):
        clipper.observe(torch.tensor(0.5))
    clipper.flush()
    assert clipper.clip == pytest.approx(0.5, abs=1e-6)
    clipper.observe(float("nan"))
    assert clipper.state_dict()["history"][-1] == 0.5


def test_clipper_state_round_trips_and_fixed_mode_never_moves() -> None:
    a = AdaptiveClipper(ClipConfig(flush_every=3))
    for i in range(40):
        a.observe(torch.tensor(float(i)))
    b = AdaptiveClipper()
    b.load_state_dict(a.state_dict())
    assert b.clip == a.clip and list(b.history) == list(a.history)
    fixed = AdaptiveClipper(ClipConfig(adaptive=False))
    for _ in range(100):
        fixed.observe(9.0)
    assert fixed.clip == 1.5
