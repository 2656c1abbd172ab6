from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.train.losses import HybridLoss, LossConfig, LossWeights, _vgg16_relu3_3, build_loss


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 12, 12, generator=g), torch.rand(2, 3, 12, 12, generator=g)


def test_hybrid_loss_is_the_weighted_sum_of_its_detached_parts() -> None:
    pred, gt = _pair()
    pred.requires_grad_(True)
    total, parts = build_loss()(pred, gt)
    assert set(parts) == {"l1", "ms", "grad"}
    assert parts["l1"] == pytest.approx(F.l1_loss(pred, gt).item())
    assert parts["ms"] == pytest.approx(F.l1_loss(F.avg_pool2d(pred, 2), F.avg_pool2d(gt, 2)).item())
    assert total.item() == pytest.approx((0.6 * parts["l1"] + 0.2 * parts["ms"] + 0.2 * parts["grad"]).item())
    assert all(not p.requires_grad for p in parts.values())
    total.backward()
    assert pred.grad is not None


def test_loss_reads_the_live_weights_at_every_call() -> None:
    weights = LossWeights(1.0, 0.0, 0.0)
    loss = HybridLoss(weights)
    pred, gt = _pair(1)
    first, parts = loss(pred, gt)
    assert first.item() == pytest.approx(parts["l1"].item())
    weights.w_grad = 1.0
    second, parts = loss(pred, gt)
    assert second.item() == pytest.approx((parts["l1"] + parts["grad"]).item())


def test_identical_images_give_zero_loss_and_charbonnier_is_near_l1() -> None:
    pred, gt = _pair(2)
    assert build_loss()(gt, gt)[0].item() == 0.0
    l1 = build_loss(LossConfig(w_l1=1, w_ms=0, w_grad=0))(pred, gt)[0]
    charb = build_loss(LossConfig(w_l1=1, w_ms=0, w_grad=0, pixel="charbonnier"))(pred, gt)[0]
    assert charb.item() == pytest.approx(l1.item(), rel=0.01)


def test_many_to_many_outputs_are_folded_into_the_batch() -> None:
    pred, gt = torch.rand(2, 5, 3, 8, 8), torch.rand(2, 5, 3, 8, 8)
    a, _ = build_loss()(pred, gt)
    b, _ = build_loss()(pred.flatten(0, 1), gt.flatten(0, 1))
    assert a.item() == pytest.approx(b.item())
    with pytest.raises(ValueError, match="differ in shape"):
        build_loss()(pred, gt[:, :3])


def test_perceptual_loss_needs_a_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_loss(LossConfig(w_perc=0.1, vgg_weights=str(tmp_path / "missing.pth")))
    weights = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in _vgg16_relu3_3().state_dict().items()}, weights)
    loss = build_loss(LossConfig(w_perc=0.1, vgg_weights=str(weights)))
    _, parts = loss(*_pair(3))
    assert "perc" in parts and parts["perc"] > 0


def test_bad_loss_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="pixel"):
        LossConfig(pixel="l2")
    with pytest.raises(ValueError, match="w_grad"):
        LossConfig(w_grad=-1)
