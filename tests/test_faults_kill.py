"""SIGKILL of a real trainer at random moments, also in the middle of a checkpoint write.

Every restart with `--resume latest` must start from the newest complete checkpoint,
no partial file may ever be listed, and the run must reach its last iteration.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import time
from pathlib import Path

import pytest

import ckpt
import protocol
from tests.faults.procs import BIG, TINY, TrainerProc, status_at_least, wait_for_frame, wait_until
from tests.faults.record import record

MODES = ("training", "writing", "startup")


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.iterdir() if p.name.endswith(".tmp")] if run.exists() else []


def writing(run: Path) -> bool:
    """A checkpoint write is under way: a temp file with bytes in it (or just renamed into place)."""
    sizes = []
    for path in temp_files(run):
        with contextlib.suppress(FileNotFoundError):
            sizes.append(path.stat().st_size)
    return any(sizes)


def assert_only_complete_checkpoints(run: Path) -> int | None:
    """Every listed file is a complete checkpoint; temp files are never listed. The newest step."""
    entries = ckpt.list_checkpoints(run)
    assert all(e["status"] == "ok" for e in entries), [(e["filename"], e["error"]) for e in entries]
    listed = {e["filename"] for e in entries}
    assert not listed & {p.name for p in temp_files(run)}
    assert all(ckpt.parse_step(p.name) is None for p in temp_files(run))
    newest = ckpt.latest_good(entries)
    return newest["step"] if newest else None


def started_from(trainer: TrainerProc) -> int:
    found = re.search(r"Training from step (\d+)", trainer.output)
    assert found, trainer.output
    return int(found[1])


def kill_once(trainer: TrainerProc, mode: str, rng: random.Random, after_step: int) -> None:
    """Start the trainer, wait for the moment `mode` names, SIGKILL it."""
    sub = protocol.Subscriber(trainer.pub, topics=("status",))
    try:
        trainer.start()
        if mode == "startup":
            time.sleep(rng.uniform(0.0, 4.0))
        else:
            target = after_step + rng.randint(1, 3)
            wait_for_frame(sub, status_at_least(target), 120, f"iteration {target}")
            if mode == "writing":
                wait_until(lambda: writing(trainer.run_dir), 60, "a checkpoint write", every=0.001)
            else:
                time.sleep(rng.uniform(0.0, 0.4))
        trainer.signal(signal.SIGKILL)
        trainer.wait()
    finally:
        sub.close()
        trainer.kill()


def kill_and_resume(tmp_path: Path, model: list[str], modes: list[str], max_iters: int,
                    seed: int) -> dict[str, int]:
    """SIGKILL one trainer per mode, restart with --resume latest each time, then finish the run."""
    rng, run, seen = random.Random(seed), tmp_path / "run", {"temp_left": 0, "kills": 0}
    args = [*model, "--max-iters", str(max_iters), "--save-every", "2", "--val-every", "1000000",
            "--resume", "latest"]
    newest = None
    for mode in modes:
        trainer, earlier = TrainerProc(run, args), set(temp_files(run))
        kill_once(trainer, mode, rng, after_step=newest or 0)
        if trainer.output and "Training from" in trainer.output:
            assert started_from(trainer) == (newest or 0), "resumed from the newest complete checkpoint"
        seen["kills"] += 1
        seen["temp_left"] += bool(set(temp_files(run)) - earlier)
        newest = assert_only_complete_checkpoints(run)
    final = TrainerProc(run, args).start()
    assert final.wait(timeout=300) == 0, final.output
    assert started_from(final) == (newest or 0)
    assert assert_only_complete_checkpoints(run) == max_iters
    assert ckpt.load_checkpoint(ckpt.select_checkpoint(run, "latest")["path"])["step"] == max_iters
    assert not temp_files(run), "stale temp files of killed writes are cleaned up on start"
    return seen


def test_three_sigkills_at_random_moments_then_resume_latest_reaches_the_last_iteration(tmp_path):
    seen = kill_and_resume(tmp_path, BIG, ["training", "writing", "training"], max_iters=60, seed=1)
    record("SIGKILL trainer (quick, 6 MB checkpoints, 1 mid-write)", seen["kills"],
           f"all restarts resumed from the newest complete checkpoint; run finished; "
           f"{seen['temp_left']} kill(s) left a temp file, never listed")


@pytest.mark.slow
@pytest.mark.parametrize(("model", "kills"), [(TINY, 20), (BIG, 8)], ids=["tiny", "big"])
def test_many_sigkills_at_random_moments_never_leave_a_partial_checkpoint_listed(tmp_path, model, kills):
    modes = [MODES[i % len(MODES)] if model is TINY else "writing" for i in range(kills)]
    seen = kill_and_resume(tmp_path, model, modes, max_iters=50 * kills + 50, seed=kills)
    size = "70 KB" if model is TINY else "6 MB"
    record(f"SIGKILL trainer (long, {size} checkpoints)", seen["kills"],
           f"all restarts resumed from the newest complete checkpoint; run finished; "
           f"{seen['temp_left']} kill(s) left a temp file, never listed")
