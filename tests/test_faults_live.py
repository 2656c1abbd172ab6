"""A live trainer under faults: its monitor killed and restarted, garbage on its REP socket,
SIGTERM and SIGINT, and a restart that the monitor must follow."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
import zmq

import ckpt
import protocol
from tests.faults.garbage import REQUEST_KINDS, mixed
from tests.faults.procs import (
    TINY,
    MonitorProc,
    TrainerProc,
    event_of,
    newest_status,
    status_at_least,
    wait_for_frame,
    wait_until,
)
from tests.faults.record import record

ARGS = [*TINY, "--max-iters", "1000000", "--save-every", "1000000", "--val-every", "1000000",
        "--resume", "latest"]
RSS_GROWTH_LIMIT = 64 * 2**20  # generous: the point is "bounded", not a tight figure


@dataclass
class Live:
    trainer: TrainerProc
    monitor: MonitorProc
    sub: protocol.Subscriber
    run: str = ""  # the trainer's current run name


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    trainer = TrainerProc(tmp_path_factory.mktemp("live") / "run", ARGS).start()
    live = Live(trainer, MonitorProc(trainer.pub, trainer.rep).start(),
                protocol.Subscriber(trainer.pub, topics=("status", "event")))
    try:
        live.run = wait_for_frame(live.sub, status_at_least(1), 120, "the trainer's first steps")["run"]
        yield live
    finally:
        live.sub.close()
        live.monitor.kill()
        live.trainer.kill()


def monitor_follows(live: Live, *, at_least: int) -> dict | None:
    """The monitor's /api/status when it shows the trainer online at `at_least` or later."""
    shown, now = live.monitor.get("/api/status"), newest_status(live.sub)
    ok = (shown and shown["trainer_online"] and shown["run"] == now["run"]
          and shown["max_iterations"] == now["max_iterations"] and shown["iteration"] >= at_least)
    return shown if ok else None


def kill_and_restart_monitor(live: Live) -> float:
    """SIGKILL the monitor, see training go on, restart it: seconds until its /api/status is right."""
    live.monitor.kill()
    before = newest_status(live.sub)["iteration"]
    wait_for_frame(live.sub, status_at_least(before + 5), 60, "training going on without a monitor")
    live.monitor = MonitorProc(live.trainer.pub, live.trainer.rep, port=live.monitor.port).start()
    wait_until(lambda: live.monitor.get("/api/status"), 60, "the restarted monitor serving")
    serving, reached = time.monotonic(), newest_status(live.sub)["iteration"]
    wait_until(lambda: monitor_follows(live, at_least=reached), 5, "/api/status right after restart")
    return time.monotonic() - serving


@pytest.mark.parametrize("cycles", [1, pytest.param(5, marks=pytest.mark.slow)])
def test_monitor_killed_and_restarted_while_training_is_correct_again_at_once(live: Live, cycles: int) -> None:
    wait_until(lambda: monitor_follows(live, at_least=1), 60, "the monitor following the trainer")
    took = [kill_and_restart_monitor(live) for _ in range(cycles)]
    record("monitor SIGKILLed and restarted during training", cycles,
           f"training went on (+5 iterations while it was down); /api/status correct at most "
           f"{max(took):.2f} s after the new monitor answered HTTP")


def request_raw(sock: zmq.Socket, frames: list[bytes]) -> dict:
    sock.send_multipart(frames)
    assert sock.poll(10_000), "the trainer answers every request"
    return protocol.decode_reply(sock.recv())


@pytest.mark.parametrize("count", [1200, pytest.param(10_000, marks=pytest.mark.slow)])
def test_garbage_requests_get_ok_false_with_the_reason_and_the_trainer_keeps_working(live: Live,
                                                                                     count: int) -> None:
    mix = {kind: count // len(REQUEST_KINDS) for kind in REQUEST_KINDS}
    mix["huge frame"] = 5  # 2 MiB each
    mix["random bytes"] += count - sum(mix.values())
    trainer = psutil.Process(live.trainer.proc.pid)
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(live.trainer.rep)
    before, rss = newest_status(live.sub)["iteration"], trainer.memory_info().rss
    try:
        for kind, frames in mixed(REQUEST_KINDS, mix, seed=6):
            reply = request_raw(sock, frames)
            phrase = REQUEST_KINDS[kind][1]
            assert not reply["ok"] and phrase in reply["error"], (kind, reply)
        assert request_raw(sock, [protocol.encode_request("ping")])["ok"]
    finally:
        sock.close()
    growth = trainer.memory_info().rss - rss
    assert growth < RSS_GROWTH_LIMIT, f"trainer RSS grew {growth / 2**20:.0f} MiB"
    wait_for_frame(live.sub, status_at_least(before + 1), 60, "training going on")
    record("malformed requests on the trainer's REP socket", sum(mix.values()),
           f"every one answered ok:false with its reason ({len(mix)} kinds); ping still ok; "
           f"trainer RSS {growth / 2**20:+.1f} MiB; training went on")


def stop_with(live: Live, trainer: TrainerProc, sig: int) -> int:
    """Send `sig`; the emergency checkpoint of the real step must appear within 5 s. Its step."""
    seen = newest_status(live.sub)["iteration"]
    trainer.signal(sig)
    sent = time.monotonic()
    try:
        step = wait_for_frame(live.sub, event_of("stopping"), 10, "the stopping event")["data"]["step"]
    except AssertionError as exc:
        raise AssertionError(f"{exc}; trainer output:\n{trainer.output[-3000:]}") from None
    path = trainer.run_dir / ckpt.checkpoint_name(step, "emergency")
    wait_until(lambda: path.exists() and ckpt.describe_checkpoint(path)["status"] == "ok", 5,
               f"{path.name} within 5 s of {signal.Signals(sig).name}")
    took = time.monotonic() - sent
    assert step >= seen and ckpt.load_checkpoint(path)["step"] == step
    assert trainer.wait(60) == 128 + sig, trainer.output
    record(f"{signal.Signals(sig).name} to the trainer", 1,
           f"emergency checkpoint of the real step ({step}) after {took:.2f} s; exit code {128 + sig}")
    return step


def restart_trainer(live: Live) -> None:
    """Start a new trainer process on the same run folder and sockets; wait for its first status (the old
    process is gone: what the subscriber still holds is its, and is dropped first)."""
    while live.sub.recv(timeout_ms=200) is not None:
        pass
    live.trainer = TrainerProc(live.trainer.run_dir, ARGS, pub=live.trainer.pub, rep=live.trainer.rep).start()
    first = wait_for_frame(live.sub, lambda t, m: t == "status", 120, "the restarted trainer's first status")
    live.run = first["run"]


@pytest.mark.parametrize("cycles", [1, pytest.param(6, marks=pytest.mark.slow)])
def test_sigterm_and_sigint_save_the_real_step_and_the_monitor_follows_the_restart(live: Live,
                                                                                   cycles: int) -> None:
    if live.trainer.proc.poll() is not None:  # an earlier case stopped it
        restart_trainer(live)
    signals = (signal.SIGTERM, signal.SIGINT)
    for cycle in range(cycles):
        wait_until(lambda: monitor_follows(live, at_least=1), 120, "the monitor following the trainer")
        first_run = live.run
        step = stop_with(live, live.trainer, signals[cycle % 2])
        wait_until(lambda: live.monitor.get("/api/status")["trainer_online"] is False, 15,
                   "the monitor showing the trainer offline")
        restart_trainer(live)
        shown = wait_until(lambda: monitor_follows(live, at_least=step + 1), 120,  # noqa: B023
                           "the monitor following the restart")
        assert shown["run"] == first_run  # a resume continues the same run (its name is folder@host)
        assert f"Resumed from {ckpt.checkpoint_name(step, 'emergency')}" in live.trainer.output
    stop_with(live, live.trainer, signals[cycles % 2])
    record("trainer stopped and started again under a running monitor", cycles,
           "monitor showed trainer_online false, then followed the new run from the resumed step")
