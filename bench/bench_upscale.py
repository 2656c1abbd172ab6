"""Streaming upscale: peak RSS of a short vs a 10x longer video, end-to-end vs model-only frames/s.

`python -m bench upscale`. Each peak RSS comes from its own child process (`python -m
trainer.upscale` under a wrapper that reads its own ru_maxrss), so the runs do not share a heap.
Throughput compares, on the same decoded frames and the same model, `upscale_frames` alone
(frames already in memory, outputs dropped) with the whole pipeline (decode -> model -> x264).
"""

from __future__ import annotations

import contextlib
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ckpt import save_checkpoint
from tests.video_support import shot, write_video
from trainer.config import ModelConfig
from trainer.infer.load import load_model
from trainer.infer.model import UpscaleOptions
from trainer.infer.sequence import upscale_frames
from trainer.models import build
from trainer.upscale import main as upscale_main
from trainer.upscale import read_frames

RSS_SIZE, RSS_FRAMES = (72, 128), 48  # LR frames (h, w); the long video has 10x as many
SPEED_SIZE, SPEED_FRAMES = (68, 120), 96  # enough frames that start-up (model load, encoder flush) weighs little
_CHILD = ("import resource, sys\nfrom trainer.upscale import main\nrc = main(sys.argv[1:])\n"
          "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
          "raise SystemExit(rc)")


def default_checkpoint(path: Path, **overrides) -> Path:
    """The trainer's default model (random weights) as a checkpoint."""
    cfg = ModelConfig()
    kwargs = {**cfg.kwargs(), **overrides}
    model = build(cfg.name, **kwargs)
    return save_checkpoint(path, {"step": 0, "model_name": cfg.name, "model_kwargs": kwargs,
                                  "model_state_dict": model.state_dict()})


def video(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """A video of `frames` frames (shots of 30 with hard cuts) and an audio track."""
    shots = [shot(min(30, frames - i), *size, seed=i) for i in range(0, frames, 30)]
    return write_video(path, [f for s in shots for f in s], audio=True, crf=18)


def peak_rss_mb(ckpt: Path, src: Path, out: Path) -> float:
    run = subprocess.run([sys.executable, "-c", _CHILD, "--checkpoint", str(ckpt), "--input", str(src),
                          "--output", str(out), "--device", "cpu"], capture_output=True, text=True, check=True)
    return int(run.stderr.rsplit("maxrss_kb", 1)[1].split()[0]) / 1024


def bench_rss(tmp: Path) -> None:
    ckpt = default_checkpoint(tmp / "default.pth")
    rss = {}
    for n in (RSS_FRAMES, 10 * RSS_FRAMES):
        rss[n] = peak_rss_mb(ckpt, video(tmp / f"in{n}.mp4", n, RSS_SIZE), tmp / f"out{n}.mp4")
        print(f"  {n:4d} frames {RSS_SIZE[1]}x{RSS_SIZE[0]} -> x3: peak RSS {rss[n]:6.0f} MB", flush=True)
    print(f"peak RSS 10x longer / short: {rss[10 * RSS_FRAMES] / rss[RSS_FRAMES]:.3f} (goal <= 1.1)")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def bench_speed(tmp: Path, rounds: int = 3) -> None:
    """Wall-clock frames/s (best of interleaved rounds) and CPU seconds per frame, which a shared
    machine's other processes disturb less: the pipeline's extra CPU is decoding and encoding."""
    ckpt = default_checkpoint(tmp / "default.pth")
    src = video(tmp / "speed.mp4", SPEED_FRAMES, SPEED_SIZE)
    loaded, cpu = load_model(ckpt, torch.device("cpu")), torch.device("cpu")
    _, frames, _ = read_frames(src)

    def model_alone() -> None:
        for _ in upscale_frames(loaded, frames, UpscaleOptions(), cpu):
            pass

    def pipeline() -> None:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            assert upscale_main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp / "o.mp4"),
                                 "--device", "cpu"]) == 0

    best = {"model": (float("inf"), 0.0), "pipeline": (float("inf"), 0.0)}
    for _ in range(rounds):  # interleaved, best of each: the machine is shared
        for name, fn in (("model", model_alone), ("pipeline", pipeline)):
            best[name] = min(best[name], _timed(fn))
    fps = {k: SPEED_FRAMES / wall for k, (wall, _) in best.items()}
    print(f"default model, {SPEED_FRAMES} frames {SPEED_SIZE[1]}x{SPEED_SIZE[0]} -> x3, {torch.get_num_threads()} "
          f"torch threads: model alone {fps['model']:.2f} frames/s, video -> video {fps['pipeline']:.2f} frames/s "
          f"(ratio {fps['pipeline'] / fps['model']:.3f}, goal >= 0.9); CPU s/frame "
          f"{best['model'][1] / SPEED_FRAMES:.3f} vs {best['pipeline'][1] / SPEED_FRAMES:.3f}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench_upscale_") as tmp:
        bench_rss(Path(tmp))
        bench_speed(Path(tmp))
        torch.set_num_threads(1)  # less at the mercy of a shared machine's other processes
        bench_speed(Path(tmp))


if __name__ == "__main__":
    main()
