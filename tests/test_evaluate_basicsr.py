"""Our Y-channel PSNR/SSIM against BasicSR 1.4.2's own calculate_psnr/calculate_ssim (test_y_channel=True).

BasicSR's metric file comes from its PyPI sdist, cached under ~/.cache/vsrpp ($VSRPP_CACHE) and
fetched with pip once, as for the BasicVSR++ parity test; these tests skip only when it cannot be
had (no network and no cache) or cv2 (opencv-python-headless, in dev) is missing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.bench_evaluate import (
    basicsr_bicubic_up,
    basicsr_y,
    degraded_pair,
    load_basicsr_imresize,
    load_basicsr_metrics,
    ours_rgb,
    ours_y,
)
from tests.evaluate_support import checkpoint, clip_folders
from trainer.evaluate import main
from trainer.infer.scoring import upscale_baseline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def basicsr_metrics():
    metrics = load_basicsr_metrics()
    if metrics is None:
        pytest.skip("basicsr==1.4.2 sdist (not cached in ~/.cache/vsrpp, `pip download` failed) or cv2 unavailable")
    return metrics


@pytest.mark.parametrize(("seed", "size", "crop"), [(0, (64, 80), 4), (1, (45, 61), 3), (2, (40, 40), 0)])
def test_y_psnr_and_ssim_equal_basicsr_on_the_same_8bit_frames(basicsr_metrics, seed, size, crop):
    sr, gt = degraded_pair(seed, *size)
    (p_ref, s_ref), (p_ours, s_ours) = basicsr_y(basicsr_metrics, sr, gt, crop), ours_y(sr, gt, crop)
    assert 20 < p_ref < 45
    assert p_ours == pytest.approx(p_ref, abs=0.01)
    assert s_ours == pytest.approx(s_ref, abs=1e-3)


def test_rgb_psnr_and_ssim_equal_basicsr_without_the_y_switch(basicsr_metrics):
    sr, gt = degraded_pair(3, 48, 48)
    p_ours, s_ours = ours_rgb(sr, gt, 2)
    assert p_ours == pytest.approx(basicsr_metrics.calculate_psnr(sr, gt, 2), abs=0.01)
    assert s_ours == pytest.approx(basicsr_metrics.calculate_ssim(sr, gt, 2), abs=1e-3)


def test_evaluate_reports_basicsr_numbers_for_the_frames_it_saves(basicsr_metrics, tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth", degrade="area")
    gt_root = clip_folders(tmp_path / "gt", clips=("city", "walk"), frames=3, size=(38, 47))  # GT cropped to 36x45 (x3)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(ckpt), "--data", str(gt_root), "--save", str(out), "--device", "cpu",
                 "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    for row in report["clips"]:
        scores = []
        for saved in sorted((out / row["name"]).iterdir()):
            gt = np.asarray(Image.open(gt_root / row["name"] / saved.name).convert("RGB"))[:36, :45]
            scores.append(basicsr_y(basicsr_metrics, np.asarray(Image.open(saved)), gt, report["crop_border"]))
        assert row["psnr_y"] == pytest.approx(np.mean([p for p, _ in scores]), abs=0.01)
        assert row["ssim_y"] == pytest.approx(np.mean([s for _, s in scores]), abs=1e-3)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_bicubic_baseline_is_matlabs_imresize(basicsr_metrics, scale):
    imresize = load_basicsr_imresize()  # BasicSR's port of MATLAB's imresize
    gt = degraded_pair(scale, 60, 84)[1]
    lr = basicsr_bicubic_up(imresize, gt, 1 / scale)
    ours, ref = upscale_baseline(lr, scale, "bicubic"), basicsr_bicubic_up(imresize, lr, scale)
    assert np.abs(ours.astype(int) - ref).max() <= 1  # float32 vs float64 at a rounding edge
    assert ours_y(ours, gt, scale)[0] == pytest.approx(ours_y(ref, gt, scale)[0], abs=0.01)
