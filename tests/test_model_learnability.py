from __future__ import annotations

import pytest

from bench.learnability import RunConfig, run


@pytest.mark.slow
def test_default_small_model_beats_bilinear_by_a_decibel_on_the_embedded_set() -> None:
    result = run(RunConfig(), log=lambda *_: None)
    assert result.val.psnr_gain >= 1.0
    assert result.val.ssim > result.val.baseline_ssim
