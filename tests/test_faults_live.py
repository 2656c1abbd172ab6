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


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    trainer = TrainerProc(tmp_path_factory.mktemp("live") / "run", ARGS).start()
    live = Live(trainer, MonitorProc(trainer.pub, trainer.rep).start(),
                protocol.Subscriber(trainer.pub, topics=("status", "event")))
    try:
        wait_for_frame(live.sub, status_at_least(1), 120, "the trainer's first steps")
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


def test_monitor_killed_and_restarted_while_training_is_correct_again_at_once(live: Live) -> None:
    wait_until(lambda: monitor_follows(live, at_least=1), 60, "the monitor following the trainer")
    live.monitor.kill()
    before = newest_status(live.sub)["iteration"]
    wait_for_frame(live.sub, status_at_least(before + 5), 60, "training going on without a monitor")
    live.monitor = MonitorProc(live.trainer.pub, live.trainer.rep, port=live.monitor.port).start()
    wait_until(lambda: live.monitor.get("/api/status"), 60, "the restarted monitor serving")
    serving, reached = time.monotonic(), newest_status(live.sub)["iteration"]
    wait_until(lambda: monitor_follows(live, at_least=reached), 5, "/api/status right after restart")
    took = time.monotonic() - serving
    record("monitor SIGKILLed and restarted during training", 1,
           f"training went on (+5 iterations while it was down); /api/status correct {took:.2f} s "
           "after the new monitor answered HTTP")


def request_raw(sock: zmq.Socket, frames: list[bytes]) -> dict:
    sock.send_multipart(frames)
    assert sock.poll(10_000), "the trainer answers every request"
    return protocol.decode_reply(sock.recv())


def test_garbage_requests_get_ok_false_with_the_reason_and_the_trainer_keeps_working(live: Live) -> None:
    count = 1200
    mix = {kind: count // len(REQUEST_KINDS) for kind in REQUEST_KINDS}
    mix["huge frame"] = 5
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
    step = wait_for_frame(live.sub, event_of("stopping"), 10, "the stopping event")["data"]["step"]
    path = trainer.run_dir / ckpt.checkpoint_name(step, "emergency")
    wait_until(lambda: path.exists() and ckpt.describe_checkpoint(path)["status"] == "ok", 5,
               f"{path.name} within 5 s of {signal.Signals(sig).name}")
    took = time.monotonic() - sent
    assert step >= seen and ckpt.load_checkpoint(path)["step"] == step
    assert trainer.wait(60) == 128 + sig, trainer.output
    record(f"{signal.Signals(sig).name} to the trainer", 1,
           f"emergency checkpoint of the real step ({step}) after {took:.2f} s; exit code {128 + sig}")
    return step


def test_sigterm_and_sigint_save_the_real_step_and_the_monitor_follows_the_restart(live: Live) -> None:
    wait_until(lambda: monitor_follows(live, at_least=1), 60, "the monitor following the trainer")
    first_run = newest_status(live.sub)["run"]
    step = stop_with(live, live.trainer, signal.SIGTERM)
    wait_until(lambda: live.monitor.get("/api/status")["trainer_online"] is False, 15,
               "the monitor showing the trainer offline")
    live.trainer = TrainerProc(live.trainer.run_dir, ARGS, pub=live.trainer.pub, rep=live.trainer.rep).start()
    shown = wait_until(lambda: monitor_follows(live, at_least=step + 1), 120, "the monitor following the restart")
    assert shown["run"] != first_run and f"Resumed from {ckpt.checkpoint_name(step, 'emergency')}" in \
        live.trainer.output
    stop_with(live, live.trainer, signal.SIGINT)
    record("trainer stopped and started again under a running monitor", 1,
           "monitor showed trainer_online false, then followed the new run from the resumed step")
