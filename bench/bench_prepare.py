"""`prepare` figures: throughput against plain PyAV decoding of the same file, scaling with
workers, and peak memory of a short video against one 10x longer.

`python -m bench prepare`. Videos are made here (H.264, smooth panning content); PNG vs raw
samples/s for training is `python -m bench data`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from bench.bench_data import natural_frames
from tests.video_support import write_video
from trainer.prepare import PrepareOptions, prepare


def _video(path: Path, frames: int, height: int, width: int) -> Path:
    full = natural_frames(frames)  # 720p; smaller sizes are crops of it
    return write_video(path, (f[:height, :width] for f in full), crf=23)


def _timed(run) -> tuple[float, float, float]:
    """(frames/s of wall time, CPU ms per frame over all of this process's threads, frames)."""
    wall, cpu = time.perf_counter(), time.process_time()
    frames = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return frames / wall, 1000 * cpu / frames, frames


def plain_decode(path: Path) -> int:
    """Decode to RGB arrays and nothing else, with the same decoder threading as prepare."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def run_prepare(videos: list[Path], out: Path, workers: int, **options) -> int:
    shutil.rmtree(out, ignore_errors=True)
    manifest = prepare(PrepareOptions(inputs=[str(v) for v in videos], val_fraction=0, **options), out, workers,
                       tty=False)
    return sum(v["frames"] for v in manifest["videos"].values())


def prepare_fps(videos: list[Path], out: Path, workers: int, **options) -> float:
    return _timed(lambda: run_prepare(videos, out, workers, **options))[0]


# A small parent runs prepare and reports its child's peak: measured from this (large) process,
# ru_maxrss would include the pages the child shared with it between fork and exec.
RSS_PROBE = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"""


def peak_rss_mib(video: Path, out: Path) -> float:
    """Peak resident memory of a `python -m trainer.prepare` process, in MiB."""
    cmd = [sys.executable, "-m", "trainer.prepare", str(video), "--out", str(out), "--workers", "1",
           "--val-fraction", "0"]
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, *cmd], capture_output=True, text=True, check=True)
    return int(done.stdout) / 1024  # KiB on Linux


def throughput(root: Path) -> None:
    """Best of 3 runs each, interleaved, so a busy machine penalises both sides alike."""
    hd = write_video(root / "hd.mp4", [*natural_frames(100)] * 3, crf=23)  # 300 frames: fixed costs fade
    runs = {"plain PyAV decode to RGB": lambda: plain_decode(hd),
            "prepare --format raw": lambda: run_prepare([hd], root / "raw", 1, format="raw"),
            "prepare --format png": lambda: run_prepare([hd], root / "png", 1, format="png")}
    best = dict.fromkeys(runs, (0.0, 0.0, 0))
    for round_ in range(3):
        for label, run in runs.items():
            if round_ == 0 or "png" not in label:  # PNG is slow: once
                best[label] = max(best[label], _timed(run))
    decode = best["plain PyAV decode to RGB"][0]
    print("1280x720 H.264, 300 frames, one worker (best of 3, interleaved):")
    for label, (fps, cpu_ms, _) in best.items():
        print(f"  {label:<26} {fps:5.0f} frames/s ({fps / decode:.2f}x decode), CPU {cpu_ms:5.1f} ms/frame")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        throughput(root)
        small = [_video(root / f"s{i}.mp4", 150, 360, 640) for i in range(4)]
        one, two = (prepare_fps(small, root / f"w{w}", w, format="raw") for w in (1, 2))
        print(f"4 videos 640x360, raw: 1 worker {one:.0f} frames/s, 2 workers {two:.0f} frames/s "
              f"({two / one:.2f}x; this machine has {os.cpu_count()} cores, shared)")
        short, long = _video(root / "short.mp4", 60, 360, 640), _video(root / "long.mp4", 600, 360, 640)
        a, b = peak_rss_mib(short, root / "rss-short"), peak_rss_mib(long, root / "rss-long")
        print(f"peak RSS of python -m trainer.prepare, 640x360 png: 60 frames {a:.0f} MiB, "
              f"600 frames {b:.0f} MiB ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
