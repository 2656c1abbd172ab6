"""Fault benchmarks: training speed while the monitor is up, killed and back; how fast a restarted
monitor is right again; how long SIGTERM takes to leave an emergency checkpoint.

Goals: training speed does not depend on the monitor being alive (ratios near 1.0);
/api/status is right within ~1 s of a restarted monitor answering HTTP; the emergency
checkpoint exists well within 5 s of SIGTERM.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import protocol
from tests.faults import procs

WINDOW_S = 6.0


def speed(sub: protocol.Subscriber) -> float:
    """Iterations per second over WINDOW_S, from the trainer's own status frames."""
    first = procs.newest_status(sub)
    time.sleep(WINDOW_S)
    last = procs.newest_status(sub)
    return (last["iteration"] - first["iteration"]) / max(last["ts"] - first["ts"], 1e-9)


def correct_after_restart(monitor: procs.MonitorProc, sub: protocol.Subscriber) -> float:
    monitor.start()
    procs.wait_until(lambda: monitor.get("/api/status"), 60, "the monitor serving")
    serving, reached = time.monotonic(), procs.newest_status(sub)["iteration"]

    def right() -> bool:
        shown = monitor.get("/api/status")
        return bool(shown and shown["trainer_online"] and shown["iteration"] >= reached)

    procs.wait_until(right, 30, "a correct /api/status")
    return time.monotonic() - serving


def emergency_latency(trainer: procs.TrainerProc, sub: protocol.Subscriber) -> float:
    trainer.signal(signal.SIGTERM)
    sent = time.monotonic()
    step = procs.wait_for_frame(sub, procs.event_of("stopping"), 30, "stopping")["data"]["step"]
    path = trainer.run_dir / f"checkpoint_step_{step:07d}_emergency.pth"
    procs.wait_until(path.exists, 30, path.name, every=0.005)
    return time.monotonic() - sent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = [*procs.TINY, "--max-iters", "1000000", "--save-every", "1000000", "--val-every", "1000000"]
        trainer = procs.TrainerProc(Path(tmp) / "run", args).start()
        sub = protocol.Subscriber(trainer.pub, topics=("status", "event"))
        monitor = procs.MonitorProc(trainer.pub, trainer.rep).start()
        try:
            procs.wait_for_frame(sub, procs.status_at_least(20), 120, "training under way")
            with_monitor = speed(sub)
            monitor.kill()
            without = speed(sub)
            back = correct_after_restart(monitor, sub)
            again = speed(sub)
            emergency = emergency_latency(trainer, sub)
        finally:
            monitor.kill()
            trainer.kill()
            sub.close()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; tiny model, {WINDOW_S:.0f} s windows")
    print(f"{'training it/s':<36}{'monitor up':>12}{'killed':>12}{'restarted':>12}")
    print(f"{'':<36}{with_monitor:>12.1f}{without:>12.1f}{again:>12.1f}")
    print(f"{'ratio to monitor up':<36}{1.0:>12.2f}{without / with_monitor:>12.2f}{again / with_monitor:>12.2f}")
    print(f"/api/status right {back:.2f} s after the restarted monitor answered HTTP (goal ~1 s)")
    print(f"emergency checkpoint on disk {emergency:.2f} s after SIGTERM (goal < 5 s)")


if __name__ == "__main__":
    main()
