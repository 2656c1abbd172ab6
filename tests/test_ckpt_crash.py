"""A process SIGKILLed while saving never leaves a partial file under a checkpoint name."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import torch

from ckpt import (
    checkpoint_name,
    list_checkpoints,
    load_checkpoint,
    parse_step,
    remove_stale_temp_files,
    save_checkpoint,
)


def _save_forever(run: Path, size_mb: int, progress: Connection) -> None:
    """The victim: saves ever newer checkpoints, reporting each completed one."""
    state = {"step": 0, "w": torch.ones(size_mb * 2**20 // 4)}
    for step in itertools.count(1):
        state["step"] = step
        save_checkpoint(run / checkpoint_name(step), state)
        progress.send(step)


def _writing(run: Path) -> bool:
    """A temp file with bytes in it exists: a save is under way."""
    for path in run.glob("*.tmp"):
        try:
            if path.stat().st_size:
                return True
        except FileNotFoundError:
            continue  # renamed into place just now
    return False


def _kill_mid_save(run: Path, size_mb: int, after_saves: int) -> None:
    """Start a saver loop, wait for `after_saves` complete saves, SIGKILL it mid-write."""
    # A spawned process: a fork of a process whose torch thread pool already ran can deadlock.
    receiver, sender = multiprocessing.Pipe(duplex=False)
    saver = multiprocessing.get_context("spawn").Process(
        target=_save_forever, args=(run, size_mb, sender), daemon=True
    )
    saver.start()
    try:
        for _ in range(after_saves):
            assert receiver.poll(120), "the saver died before saving"
            receiver.recv()
        deadline = time.monotonic() + 60
        while not _writing(run):
            assert time.monotonic() < deadline, "no save in progress seen"
            time.sleep(0.001)
        os.kill(saver.pid, signal.SIGKILL)
    finally:
        saver.kill()
        saver.join()


def _assert_only_complete_checkpoints(run: Path) -> None:
    entries = list_checkpoints(run)
    assert entries, "the completed saves are listed"
    assert {e["status"] for e in entries} == {"ok"}
    for path in run.iterdir():
        if parse_step(path.name) is not None:
            assert load_checkpoint(path)["step"] == parse_step(path.name)


def test_sigkill_during_a_big_save_leaves_only_complete_checkpoints(tmp_path):
    _kill_mid_save(tmp_path, size_mb=24, after_saves=1)
    _assert_only_complete_checkpoints(tmp_path)
    leftovers = [p for p in tmp_path.iterdir() if parse_step(p.name) is None]
    assert leftovers, "the kill landed mid-write, so a temp file remains"
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(leftovers)
    _assert_only_complete_checkpoints(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(20))
def test_repeated_sigkills_at_varied_moments_never_leave_a_partial_checkpoint(tmp_path, attempt):
    _kill_mid_save(tmp_path, size_mb=8 + 4 * attempt, after_saves=1 + attempt % 3)
    _assert_only_complete_checkpoints(tmp_path)
