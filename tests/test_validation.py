from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from trainer.metrics import PSNR_CAP
from trainer.models import build
from trainer.train.validation import validate


def _batches(n_batches: int = 2, bs: int = 3, t: int = 5, many: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for b in range(n_batches):
        gt = torch.rand(bs, t, 3, 36, 36, generator=g)
        lr = F.avg_pool2d(gt.flatten(0, 1), 3).view(bs, t, 3, 12, 12)
        out.append({"lr": lr, "gt": gt if many else gt[:, t // 2], "name": [f"clip/{b}_{i}" for i in range(bs)]})
    return out


class Oracle(nn.Module):
    """Returns the ground truth it was given (a perfect model), many-to-many shaped."""

    def __init__(self, batches: list[dict]) -> None:
        super().__init__()
        self.targets = iter([b["gt"] for b in batches])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(self.targets)


def test_baseline_is_bilinear_and_improvement_is_the_mean_gain() -> None:
    model = build("vsrpp", n_feats=8, n_blocks=2)
    batches = _batches()
    result = validate(model, batches, "cpu", max_images=2)
    lr = torch.cat([b["lr"][:, 2] for b in batches])
    gt = torch.cat([b["gt"] for b in batches])
    base = F.interpolate(lr, scale_factor=3, mode="bilinear", align_corners=False).clamp(0, 1)
    per_image = [10 * torch.log10(1 / (base[i] - gt[i]).double().pow(2).mean()) for i in range(len(gt))]
    assert result.n_images == 6
    assert result.baseline_psnr == pytest.approx(float(torch.stack(per_image).mean()), abs=1e-6)
    assert result.psnr_gain == pytest.approx(result.psnr - result.baseline_psnr)
    assert result.improvement == pytest.approx(result.quality - result.baseline_quality)
    assert model.training


def test_many_to_many_models_are_scored_on_the_centre_frame() -> None:
    batches = _batches(many=True)
    result = validate(Oracle(batches), batches, "cpu")
    assert result.psnr == PSNR_CAP and result.ssim == pytest.approx(1.0)
    assert result.loss == 0.0


def test_comparison_images_are_written_and_the_dashboard_png_is_small(tmp_path: Path) -> None:
    batches = _batches()
    result = validate(build("vsrpp", n_feats=8, n_blocks=2), batches, "cpu", out_dir=tmp_path, max_images=4)
    assert len(result.images) == 4 and all(Path(p).parent == tmp_path for p in result.images)
    assert Path(result.images[0]).name == "val_00_clip_0_0.png"
    panel = Image.open(result.images[0])
    assert panel.size == (3 * 36 + 4, 36)
    png = Image.open(io.BytesIO(result.comparison_png))
    assert png.size == panel.size and len(result.comparison_png) <= 256 * 1024
    assert set(result.metrics()) >= {"psnr", "ssim", "quality", "baseline_psnr", "baseline_quality", "loss"}


def test_large_comparisons_are_shrunk_under_the_size_bound() -> None:
    gt = torch.rand(1, 3, 300, 300)
    batch = {"lr": F.avg_pool2d(gt, 3).unsqueeze(1).repeat(1, 3, 1, 1, 1), "gt": gt, "name": ["noise"]}
    result = validate(build("vsrpp", num_frames=3, n_feats=4, n_blocks=2), [batch], "cpu")
    assert len(result.comparison_png) <= 256 * 1024


def test_empty_loader_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        validate(build("vsrpp", n_feats=8, n_blocks=2), [], "cpu")
