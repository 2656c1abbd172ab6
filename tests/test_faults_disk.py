"""Damaged storage: a disk that fills up during checkpoint saves, and corrupt, truncated or
unsafe files in the run folder."""

from __future__ import annotations

import random
import signal
from fractions import Fraction
from pathlib import Path

import torch

import ckpt
import protocol
from tests.faults.disk import small_disk
from tests.faults.procs import TINY, TINY_SETTINGS, TrainerProc, event_of, wait_for_frame
from tests.faults.record import record


def is_save_error(topic: str, msg: dict) -> bool:
    return topic == "event" and msg.get("kind") == "error" and "NOT saved" in msg.get("message", "")


def test_full_disk_during_saves_is_a_clear_error_and_older_checkpoints_stay_intact(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        run = disk.root / "run"
        trainer = TrainerProc(run, [*TINY, "--max-iters", "1000000", "--save-every", "3",
                                    "--val-every", "1000000", "--resume", "never"],
                              out_dir=tmp_path)
        sub = protocol.Subscriber(trainer.pub, topics=("event",))
        try:
            trainer.start(preexec=disk.preexec)
            wait_for_frame(sub, event_of("checkpoint_saved"), 120, "a first checkpoint")
            disk.fill(trainer.proc.pid, leave=16 * 1024)
            error = wait_for_frame(sub, is_save_error, 60, "a failed save reported")
            assert any(why in error["message"] for why in ("No space left", "File too large")), error
            kept = {e["path"]: e["step"] for e in ckpt.list_checkpoints(run)}  # saves run one at a time
            wait_for_frame(sub, is_save_error, 60, "the next save failing too")
            entries = ckpt.list_checkpoints(run)
            assert {e["path"]: e["step"] for e in entries} == kept, "older checkpoints untouched"
            assert all(e["status"] == "ok" for e in entries)
            assert all(ckpt.load_checkpoint(path)["step"] == step for path, step in kept.items())
            disk.free(trainer.proc.pid)
            wait_for_frame(sub, event_of("checkpoint_saved"), 60, "saves working again")
            trainer.signal(signal.SIGTERM)
            assert trainer.wait(60) == 128 + signal.SIGTERM, trainer.output
            assert "Traceback" not in trainer.output, trainer.output
            assert not [p for p in run.iterdir() if p.name.endswith(".tmp")], "failed saves leave no temp file"
        finally:
            sub.close()
            trainer.kill()
    record(f"disk full during checkpoint saves ({disk.mode})", 1,
           f"clear error event: {error['message'][:120]}...; older checkpoints intact, no partial "
           "file; saves resumed once space was back")


def train_in_process(run, steps: int) -> None:
    """A short run in this process (no second torch import): checkpoints at steps 2, 4, ..."""
    from trainer.config import load_config
    from trainer.train.loop import RunOptions, train

    settings = {**TINY_SETTINGS, "train.max_iters": steps, "train.save_every": 2, "train.val_every": 10**6}
    options = RunOptions(run_dir=run, resume="never", pub=None, rep=None, console=False)
    assert train(load_config(None, settings), options) == 0


def plant_damaged_files(run, newest) -> dict[str, str]:
    """Files under newer checkpoint names than `newest`: truncated, garbage, empty, unsafe. name -> status."""
    data = newest.read_bytes()
    planted = {
        ckpt.checkpoint_name(100): data[: len(data) // 2],
        ckpt.checkpoint_name(200, "emergency"): random.Random(3).randbytes(len(data)),
        ckpt.checkpoint_name(300): b"",
        ckpt.checkpoint_name(400, "best"): data[:-100],
    }
    for name, content in planted.items():
        (run / name).write_bytes(content)
    torch.save({"step": 500, "type": "regular", "model_state_dict": {}, "hook": Fraction(1, 3)},
               run / ckpt.checkpoint_name(500))
    (run / f".{ckpt.checkpoint_name(600)}.99999999.0123abcd.tmp").write_bytes(data)
    return {**dict.fromkeys(planted, "corrupt"), ckpt.checkpoint_name(500): "unsafe"}


def test_corrupt_truncated_and_unsafe_files_are_marked_and_resume_latest_takes_the_newest_good(tmp_path):
    run = tmp_path / "run"
    train_in_process(run, steps=6)
    newest = ckpt.select_checkpoint(run, "latest")
    assert newest["step"] == 6
    planted = plant_damaged_files(run, Path(newest["path"]))
    listed = {e["filename"]: e["status"] for e in ckpt.list_checkpoints(run)}
    assert {name: listed[name] for name in planted} == planted
    assert ckpt.select_checkpoint(run, "latest")["step"] == 6
    trainer = TrainerProc(run, [*TINY, "--max-iters", "8", "--save-every", "2", "--resume", "latest"]).start()
    assert trainer.wait(180) == 0, trainer.output
    assert f"Resumed from {Path(newest['path']).name} (step 6" in trainer.output
    after = {e["filename"]: e["status"] for e in ckpt.list_checkpoints(run)}
    assert {name: after[name] for name in planted} == planted, "damaged files are kept for a person to see"
    assert ckpt.load_checkpoint(ckpt.select_checkpoint(run, "latest")["path"])["step"] == 8
    assert not list(run.glob("*.tmp")), "the stale temp file is gone"
    record("corrupt, truncated, empty and unsafe files in the run folder", len(planted),
           "all listed as corrupt/unsafe, never chosen; --resume latest resumed from the newest "
           "good checkpoint and finished; stale temp file removed")
