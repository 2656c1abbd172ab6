"""The trainer's validation in the papers' convention (metric_space "y"), as `trainer.evaluate` measures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.metrics import psnr_per_image, ssim_per_image, to_8bit
from trainer.models import build
from trainer.train.validation import validate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batches() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    gt = to_8bit(F.interpolate(torch.rand(2, 5, 3, 6, 6, generator=g).flatten(0, 1), size=(36, 36), mode="bicubic"))
    gt = gt.view(2, 5, 3, 36, 36)
    lr = F.avg_pool2d(gt.flatten(0, 1), 3).view(2, 5, 3, 12, 12)
    return [{"lr": lr, "gt": gt[:, 2], "name": ["clip/0", "clip/1"]}]


def test_y_validation_scores_8bit_luma_without_the_border_and_says_so() -> None:
    torch.manual_seed(0)
    model, batches = build("vsrpp", n_feats=8, n_blocks=2), _batches()
    y, rgb = (validate(model, batches, "cpu", metric_space=s).metrics() for s in ("y", "rgb"))
    assert (y["metric_space"], rgb["metric_space"]) == ("y", "rgb")
    with torch.no_grad():
        out = to_8bit(model(batches[0]["lr"]))
    gt = batches[0]["gt"]
    assert y["psnr"] == pytest.approx(float(psnr_per_image(out, gt, crop_border=3, space="y").mean()), abs=1e-9)
    assert y["ssim"] == pytest.approx(float(ssim_per_image(out, gt, crop_border=3, space="y").mean()), abs=1e-9)
    assert y["psnr"] != pytest.approx(rgb["psnr"], abs=0.1)
