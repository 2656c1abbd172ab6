from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from trainer.metrics import PSNR_CAP, psnr, quality, rgb_to_y, ssim, to_8bit


def _pair(seed: int, n: int = 3, h: int = 24, w: int = 31) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, h, w, generator=g)
    b = (a + 0.1 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return a, b


def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    vals = [
        structural_similarity(x.permute(1, 2, 0).double().numpy(), y.permute(1, 2, 0).double().numpy(),
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=2)
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_scikit_image_gaussian_ssim(seed: int) -> None:
    a, b = _pair(seed)
    assert ssim(a, b) == pytest.approx(_sk_ssim(a, b), abs=1e-6)


def test_psnr_matches_scikit_image_and_is_mean_over_images() -> None:
    a, b = _pair(5)
    expected = np.mean([peak_signal_noise_ratio(x.double().numpy(), y.double().numpy(), data_range=1.0)
                        for x, y in zip(a, b, strict=True)])
    assert psnr(a, b) == pytest.approx(expected, abs=1e-6)


def test_psnr_of_a_known_error_is_hand_computed() -> None:
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 0.1)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)  # mse 0.01 -> 20 dB


def test_identical_images_give_capped_psnr_and_unit_ssim() -> None:
    a, _ = _pair(3)
    assert psnr(a, a) == PSNR_CAP
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9)


def test_crop_border_ignores_the_frame() -> None:
    a = torch.rand(1, 3, 30, 30)
    b = a.clone()
    b[..., :4, :] = 0
    assert psnr(a, b, crop_border=4) == PSNR_CAP
    assert psnr(a, b) < 40


def test_mismatched_or_too_small_images_are_rejected_with_a_reason() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_quality_is_the_original_formula_and_clamped() -> None:
    assert quality(35.0, 0.9) == pytest.approx(0.7 * 0.5 + 0.3 * 0.9)
    assert quality(10.0, 0.0) == 0.0
    assert quality(100.0, 1.0) == 1.0
    assert math.isnan(quality(float("nan"), 0.5))


def test_y_channel_is_matlab_bt601_studio_range_luma() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.25, 0.75]]).view(4, 3, 1, 1)
    y = rgb_to_y(rgb).flatten() * 255
    expected = [235.0, 16.0, 16 + 65.481, 16 + 65.481 * 0.5 + 128.553 * 0.25 + 24.966 * 0.75]
    assert y.tolist() == pytest.approx(expected, abs=1e-4)


def test_y_space_measures_the_luma_only() -> None:
    a = torch.rand(2, 3, 16, 16)
    b = a.clone()
    b[:, 0] += 0.01 * 128.553 / 65.481  # a change of R balanced by G leaves luma as it was
    b[:, 1] -= 0.01
    assert psnr(a, b, space="y") > 80 and psnr(a, b) < 60
    with pytest.raises(ValueError, match="metric space"):
        psnr(a, b, space="lab")


def test_to_8bit_rounds_to_the_nearest_level_and_clamps() -> None:
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 0.49 / 255, 100.6 / 255, 1.3])
    assert (to_8bit(x) * 255).tolist() == pytest.approx([0, 0, 0, 0, 101, 255])  # round half to even, as BasicSR
