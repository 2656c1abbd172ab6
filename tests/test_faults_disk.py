"""Damaged storage: a disk that fills up during checkpoint saves, and corrupt, truncated or
unsafe files in the run folder."""

from __future__ import annotations

import signal

import ckpt
import protocol
from tests.faults.disk import small_disk
from tests.faults.procs import TINY, TrainerProc, event_of, wait_for_frame
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
            kept = {e["path"]: e["step"] for e in ckpt.list_checkpoints(run)}
            error = wait_for_frame(sub, is_save_error, 60, "a failed save reported")
            assert any(why in error["message"] for why in ("No space left", "File too large")), error
            entries = ckpt.list_checkpoints(run)
            assert {e["path"]: e["step"] for e in entries} == kept, "older checkpoints untouched"
            assert all(e["status"] == "ok" for e in entries)
            assert all(ckpt.load_checkpoint(path)["step"] == step for path, step in kept.items())
            assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
            disk.free(trainer.proc.pid)
            wait_for_frame(sub, event_of("checkpoint_saved"), 60, "saves working again")
            trainer.signal(signal.SIGTERM)
            assert trainer.wait(60) == 128 + signal.SIGTERM, trainer.output
            assert "Traceback" not in trainer.output, trainer.output
        finally:
            sub.close()
            trainer.kill()
    record(f"disk full during checkpoint saves ({disk.mode})", 1,
           f"clear error event: {error['message'][:120]}...; older checkpoints intact, no partial "
           "file; saves resumed once space was back")
