"""A monitor started in the middle of a run shows the same history as one that watched it live.

Real processes: one trainer, a monitor started before it and one started late (which re-fetches
what it missed with the `history` command). Points are matched by their timestamp (status points)
or their iteration (validation points) and must agree field for field.
"""

from __future__ import annotations

import time

import pytest

from protocol import HISTORY_FIELDS, CommandClient
from tests.faults.procs import TINY, MonitorProc, TrainerProc, wait_until


def history(monitor: MonitorProc) -> dict | None:
    body = monitor.get("/api/history.json")
    return body if body and "history" in body else None


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
