"""10,000 malformed frames on the monitor's subscription: it keeps working, counts each with
its reason, and its memory stays bounded."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial

import psutil
import pytest
import zmq

from protocol import encode_message, example_fields
from tests.faults.garbage import FRAME_KINDS, FRAME_MIX
from tests.faults.procs import MonitorProc, free_endpoint, wait_until
from tests.faults.record import record

RSS_GROWTH_LIMIT = 64 * 2**20  # generous: the point is "bounded", not a tight figure


class FakeTrainer:
    """A bare PUB socket where the trainer's would be; sends whatever it is given."""

    def __init__(self) -> None:
        self.endpoint = free_endpoint()
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)  # queue rather than drop: every frame must be counted
        self.sock.bind(self.endpoint)
        self.seq = 0

    def status(self, iteration: int) -> None:
        self.seq += 1
        payload = {"v": 1, "run": "under-fire", "seq": self.seq, "ts": 1.0,
                   **example_fields("status"), "iteration": iteration}
        self.sock.send_multipart(encode_message("status", payload))


@pytest.fixture
def monitor() -> Iterator[tuple[MonitorProc, FakeTrainer]]:
    fake = FakeTrainer()
    monitor = MonitorProc(fake.endpoint, free_endpoint()).start()
    try:
        yield monitor, fake
    finally:
        monitor.kill()
        fake.sock.close()


def shows_iteration(monitor: MonitorProc, fake: FakeTrainer, iteration: int) -> bool:
    fake.status(iteration)
    shown = monitor.get("/api/status")
    return bool(shown and shown["trainer_online"] and shown["iteration"] == iteration)


def counted(monitor: MonitorProc, at_least: int) -> dict | None:
    health = monitor.get("/healthz")
    return health if health and health["malformed"] >= at_least else None


def test_ten_thousand_malformed_frames_are_counted_with_reasons_and_the_monitor_keeps_working(monitor):
    monitor, fake = monitor
    wait_until(lambda: shows_iteration(monitor, fake, 1), 60, "the monitor to follow the fake trainer")
    process, rss, sent = psutil.Process(monitor.proc.pid), None, 0
    kinds = list(FRAME_MIX)
    random.Random(10).shuffle(kinds)
    rng = random.Random(11)
    for number, kind in enumerate(kinds, start=2):
        make, phrase = FRAME_KINDS[kind]
        for _ in range(FRAME_MIX[kind]):
            fake.sock.send_multipart(make(rng))
        sent += FRAME_MIX[kind]
        health = wait_until(partial(counted, monitor, sent), 60, f"{sent} malformed frames counted")
        assert health["malformed"] == sent
        assert all(phrase in reason for reason in health["malformed_reasons"]), (kind, health)
        wait_until(partial(shows_iteration, monitor, fake, number), 10, f"a good frame after {kind}")
        rss = rss or process.memory_info().rss  # after the first batch: the monitor is warm
    growth = process.memory_info().rss - rss
    assert growth < RSS_GROWTH_LIMIT, f"monitor RSS grew {growth / 2**20:.0f} MiB"
    text = wait_until(lambda: monitor.text("/metrics"), 10, "/metrics")
    assert f"vsrpp_monitor_malformed_total {sent}" in text and sent == 10_000
    record("malformed frames on the monitor's subscription", sent,
           f"all counted in /healthz and /metrics with their reason ({len(kinds)} kinds); good "
           f"frames between the kinds still shown; monitor RSS {growth / 2**20:+.1f} MiB")

