"""`trainer.evaluate` on long clips: memory does not grow with the clip, progress is shown without flooding a log,
and the shared-statistics scoring gives the pair-by-pair numbers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.evaluate_support import checkpoint, clip_folders
from tests.video_support import shot, write_video
from trainer.evaluate import main, measure
from trainer.infer.progress import FrameProgress
from trainer.infer.report import METRICS
from trainer.infer.scoring import FrameScorer, upscale_baseline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _peak_bytes(ckpt: Path, video: Path) -> int:
    """The most memory Python and numpy held at once while evaluating (frames are numpy arrays)."""
    tracemalloc.start()
    try:
        assert main(["--checkpoint", str(ckpt), "--data", str(video), "--device", "cpu"]) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_of_a_long_clip_is_that_of_a_short_one(tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth")
    short = write_video(tmp_path / "short.mp4", shot(8, 96, 128, seed=1))
    long = write_video(tmp_path / "long.mp4", shot(32, 96, 128, seed=1))
    _peak_bytes(ckpt, short)  # first-call allocations (imports, caches) out of the way
    short_peak, long_peak = _peak_bytes(ckpt, short), _peak_bytes(ckpt, long)
    frame = 96 * 128 * 3
    # the whole clip in memory (as evaluate once held it) would add 24 frames at least
    assert long_peak < short_peak + 4 * frame, (short_peak, long_peak)


def test_frames_whose_count_differs_from_their_lr_are_refused_when_the_shorter_stream_ends(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "m.pth")
    gt = write_video(tmp_path / "gt.mp4", shot(5, 48, 60, seed=2))
    lr = clip_folders(tmp_path / "lr", clips=("x",), frames=4, size=(16, 20)) / "x"
    assert main(["--checkpoint", str(ckpt), "--data", str(gt), "--lr", str(lr), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: clip gt: 5 GT frames but 4 LR frames"


def test_a_many_to_many_model_in_chunks_gives_a_report_for_every_frame(tmp_path, capsys):
    from tests.upscale_support import BVPP

    ckpt = checkpoint(tmp_path / "b.pth", "basicvsrpp", BVPP)
    root = clip_folders(tmp_path / "gt", clips=("a",), frames=10, size=(24, 24))
    assert main(["--checkpoint", str(ckpt), "--data", str(root), "--device", "cpu", "--window", "9"]) == 0
    assert "a: 10 frames" in capsys.readouterr().err


def test_one_pass_scoring_equals_pair_by_pair_metrics_for_model_and_baselines():
    frames = shot(2, 60, 84, seed=4)
    gt, lr = frames[0], frames[1][::3, ::3]
    candidates = [frames[1], upscale_baseline(lr, 3, "bicubic"), upscale_baseline(lr, 3, "bilinear"), gt]
    scores = FrameScorer(3, torch.device("cpu")).score(gt, candidates)
    to01 = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).double() / 255  # noqa: E731
    expected = measure(to01(candidates), to01([gt] * len(candidates)), 3)
    for j, key in enumerate(METRICS):
        assert scores[:, j].tolist() == pytest.approx(expected[key].tolist(), abs=1e-9)
    assert scores[-1].tolist() == pytest.approx([100.0, 1.0, 100.0, 1.0])  # GT against itself


def test_plain_progress_is_a_line_every_few_seconds_with_rate_and_eta():
    now = [0.0]
    out = io.StringIO()  # not a terminal
    with FrameProgress(100, "evaluate", stream=out, every_s=5.0, clock=lambda: now[0]) as progress:
        progress.describe("city")
        for _ in range(100):
            now[0] += 0.5  # 2 frames/s
            progress.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # every 10 frames, and the summary; not one per frame
    assert lines[0] == "evaluate city: 10/100 frames, 2.00 frames/s, ETA 0:00:45"
    assert lines[-1] == "evaluate: 100/100 frames in 0:00:50, 2.00 frames/s"
    assert "\r" not in out.getvalue()


def _evaluate_cli(tmp_path: Path, stderr) -> subprocess.CompletedProcess:
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", clips=("a", "b"), frames=6, size=(36, 48))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "trainer.evaluate", "--checkpoint", str(ckpt), "--data", str(root),
                           "--device", "cpu"], stdout=subprocess.PIPE, stderr=stderr, env=env, timeout=120)


def test_off_a_terminal_evaluate_prints_plain_progress_lines_not_a_bar(tmp_path):
    done = _evaluate_cli(tmp_path, subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "\r" not in err and "it/s" not in err
    progress = [line for line in err.splitlines() if "frames/s" in line]
    assert progress and len(progress) < 12  # not one line per frame
    assert progress[-1].startswith("evaluate: 12/12 frames in ")
    assert "a: 6 frames, PSNR-Y" in err and "b: 6 frames, PSNR-Y" in err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_evaluate_shows_a_tqdm_bar_with_rate_and_eta(tmp_path):
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    try:
        done = _evaluate_cli(tmp_path, follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    err = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, err
    assert "\r" in err and "12/12" in err and "frame/s" in err and "<" in err  # tqdm's rate and "elapsed<ETA"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_metrics_run_on_the_gpu_and_equal_the_cpus():
    frames = shot(2, 60, 84, seed=5)
    cpu, gpu = FrameScorer(3, torch.device("cpu")), FrameScorer(3, torch.device("cuda"))
    for scorer in (cpu, gpu):
        scorer.add(frames[0], [frames[1], frames[0]])
    assert gpu.sums is not None and gpu.sums.device.type == "cuda"
    assert np.allclose(gpu.means(), cpu.means(), atol=1e-9)
