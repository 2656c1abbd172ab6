"""A prepared data set is reproducible: same inputs and seed, same bytes, whatever the worker count,
and a run killed at any moment (SIGKILL, Ctrl-C) then started again finishes with those same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.video_support import shot, write_video
from trainer.prepare.__main__ import main


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("videos")
    return [write_video(root / f"v{i}.mp4", shot(40, 96, 160, i) + shot(40, 96, 160, 10 + i)) for i in range(4)]


@pytest.fixture(scope="module")
def whole(videos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The uninterrupted run's files."""
    out = tmp_path_factory.mktemp("whole") / "out"
    assert main(command(videos, out, "--workers", "1")) == 0
    return tree(out)


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def command(videos: list[Path], out: Path, *extra: str) -> list[str]:
    return [*map(str, videos), "--out", str(out), "--frames", "5", "--val-fraction", "0.25", "--seed", "3", *extra]


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_same_inputs_and_seed_give_the_same_bytes_with_any_worker_count(videos, whole, tmp_path: Path,
                                                                         fmt: str) -> None:
    assert main(command(videos, tmp_path / "a", "--workers", "1", "--format", fmt)) == 0
    assert main(command(videos, tmp_path / "b", "--workers", "2", "--format", fmt)) == 0
    a = tree(tmp_path / "a")
    assert len(a) > 20 and a == tree(tmp_path / "b") and (fmt == "raw" or a == whole)
    assert main(command(videos, tmp_path / "a", "--workers", "2", "--format", fmt)) == 0  # finished: no-op
    assert tree(tmp_path / "a") == a


def _start(videos: list[Path], out: Path, workers: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainer.prepare", *command(videos, out, "--workers", str(workers))]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_clips(out: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while sum(1 for _ in out.glob("*/v*_*")) < count:
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)


@pytest.mark.parametrize(("clips_before_kill", "workers"), [(1, 1), (13, 2)])
def test_a_killed_run_started_again_finishes_with_identical_bytes(videos, whole, tmp_path: Path,
                                                                  clips_before_kill: int, workers: int) -> None:
    out = tmp_path / "killed"
    proc = _start(videos, out, workers)
    _wait_for_clips(out, clips_before_kill, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for clip in out.glob("*/v*_*"):  # nothing half-written where the trainer reads
        assert sorted(p.name for p in clip.iterdir()) == [f"{i:08d}.png" for i in range(5)]
    rerun = _start(videos, out)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
    assert tree(out) == whole


def test_ctrl_c_stops_cleanly_and_the_same_command_finishes_the_job(videos, whole, tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    proc = _start(videos, out)
    _wait_for_clips(out, 5, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "run the same command again" in proc.stderr.read()
    assert _start(videos, out).wait(timeout=120) == 0
    assert tree(out) == whole


def test_a_second_prepare_into_the_same_folder_is_refused_while_the_first_runs(videos, tmp_path: Path,
                                                                               capsys) -> None:
    out = tmp_path / "busy"
    proc = _start(videos, out)
    try:
        _wait_for_clips(out, 1, proc)
        assert main(command(videos, out, "--workers", "1")) == 1
        assert f"another prepare is writing {out}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
