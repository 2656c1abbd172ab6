"""A monitor started in the middle of a run shows the same history as one that watched it live.

Real processes: one trainer, a monitor started before it and one started late (which re-fetches
what it missed with the `history` command). Points are matched by their timestamp (status points)
or their iteration (validation points) and must agree field for field.
"""

from __future__ import annotations

import time

import pytest

from monitor.run import RunState
from protocol import HISTORY_FIELDS, CommandClient
from tests.faults.procs import TINY, MonitorProc, TrainerProc, wait_until
from trainer.config import TelemetryConfig
from trainer.report.telemetry import Telemetry

METRICS = {"psnr": 28.0, "ssim": 0.8, "quality": 0.7, "baseline_psnr": 26.0, "baseline_ssim": 0.75,
           "baseline_quality": 0.6, "improvement": 0.1}


def history(monitor: MonitorProc) -> dict | None:
    body = monitor.get("/api/history.json")
    return body if body and "history" in body else None


class Wire:
    """Telemetry's publisher: each frame is folded into a live monitor's run as it is sent."""

    def __init__(self) -> None:
        self.run, self.seq = RunState("r", "s"), 0

    def publish(self, topic: str, **fields: object) -> None:
        self.seq += 1
        self.run.apply(topic, {"v": 1, "run": "r", "seq": self.seq, "ts": time.time(), **fields})


def test_re_fetched_points_equal_the_live_ones_field_for_field() -> None:
    wire = Wire()
    tel = Telemetry(wire, TelemetryConfig(), max_iters=100)
    tel.start()
    tel.set_state("training")  # as the loop does once loaded: statuses before it are not history points
    for step in (1, 2, 3):
        tel.step(step, 0.5 / step, 1e-4)
        tel.publish_status(force=True)
        tel.validation(step, METRICS)
    tel.close()  # every queued frame has gone through the wire
    late = RunState("r", "s")
    late.replace_history(tel.history(), tel.validations())
    live_points = {p["timestamp"]: p for p in wire.run.history.points()}
    assert late.history.points() and all(p == live_points[p["timestamp"]] for p in late.history.points())
    assert late.validations.points() == wire.run.validations.points()
    assert set(late.history.points()[0]) == set(HISTORY_FIELDS)


@pytest.mark.slow
def test_a_late_monitor_shows_the_same_history_as_a_live_one(tmp_path) -> None:
    trainer = TrainerProc(tmp_path / "run", [*TINY, "--max-iters", "1000000", "--val-every", "20",
                                             "--save-every", "1000000", "--resume", "never"])
    live = MonitorProc(trainer.pub, trainer.rep).start()
    late = MonitorProc(trainer.pub, trainer.rep)
    try:
        trainer.start()
        wait_until(lambda: (h := history(live)) and len(h["validations"]) >= 2
                   and h["history"][-1]["timestamp"] - h["history"][0]["timestamp"] > 3,
                   120, "two validations and 3 s of status points on the live monitor", every=0.2)
        joined = time.time()
        late.start()
        wait_until(lambda: (h := history(late)) and h["history"][0]["timestamp"] < joined,
                   60, "the late monitor to re-fetch the history", every=0.2)
        time.sleep(1)
        with CommandClient(trainer.rep) as client:
            assert client.request("stop")["ok"]
        assert trainer.wait(60) == 0, trainer.output
        time.sleep(0.5)  # the last frames reach both monitors
        seen, caught_up = history(live), history(late)
    finally:
        trainer.kill()
        live.kill()
        late.kill()

    live_points = {p["timestamp"]: p for p in seen["history"]}
    shared = [p for p in caught_up["history"] if p["timestamp"] in live_points]
    refetched = [p for p in shared if p["timestamp"] < joined]
    assert len(refetched) >= 3 and len(shared) > len(refetched)
    for point in shared:
        assert point == live_points[point["timestamp"]]
        assert set(point) == set(HISTORY_FIELDS)

    live_validations = {p["iteration"]: p for p in seen["validations"]}
    assert [p["iteration"] for p in caught_up["validations"]] == list(live_validations)
    for point in caught_up["validations"]:
        assert point == live_validations[point["iteration"]]
        assert {"timestamp", "psnr", "quality", "improvement"} <= set(point)
