"""The end of the walk-through: `python -m trainer --data OUT` trains on what `prepare` made (PNG and raw)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer_support import TINY_FLAGS
from tests.video_support import shot, write_video
from trainer.prepare.__main__ import main

TINY = [*TINY_FLAGS, "--pub", "tcp://127.0.0.1:0", "--rep", "tcp://127.0.0.1:0", "--resume", "never"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("videos")
    return [write_video(root / f"v{i}.mp4", shot(16, 48, 64, i)) for i in range(2)]


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_the_trainer_trains_on_a_prepared_data_set(videos: list[Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "data"
    assert main([*map(str, videos), "--out", str(out), "--frames", "8", "--format", fmt, "--val-fraction", "0.5"]) == 0
    cmd = [sys.executable, "-m", "trainer", "--data", str(out), "--max-iters", "2",
           "--run-dir", str(tmp_path / "run"), *TINY]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Reached max_iters=2" in done.stdout and "Validation at step 2" in done.stdout
