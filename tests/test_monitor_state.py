from __future__ import annotations

import math

from monitor.run import RunState
from monitor.state import MonitorState
from protocol import STATUS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(seq: int, iteration: int, run: str = "r1", **extra: object) -> dict:
    return {"v": 1, "run": run, "seq": seq, "ts": 1.0 * seq, "iteration": iteration,
            "total_loss": 0.5, "learn_rate": 1e-4, **extra}


def test_status_has_every_required_field_and_the_counters_with_defaults_before_any_frame() -> None:
    got = MonitorState().status()
    required = {name for name, field in STATUS.items() if field.required}
    assert required | {"skipped_steps", "rollbacks", "trainer_online", "run"} <= set(got)
    assert got["iteration"] == 0 and got["trainer_online"] is False and got["run"] is None
    assert got["skipped_steps"] == 0 and got["rollbacks"] == 0


def test_the_live_stretch_in_memory_stays_bounded_over_a_long_run() -> None:
    state = MonitorState(recent=1000)
    for i in range(100_000):
        state.ingest("status", {"v": 1, "run": "r1", "seq": i, "ts": 0.0, "iteration": i})
    run = state.run("r1")
    assert run is not None and [p["iteration"] for p in run.history] == list(range(99_000, 100_000))


def test_runs_are_keyed_by_run_id_and_found_by_display_name_too() -> None:
    state = MonitorState()
    run_id = "0123456789abcdef0123456789abcdef"
    state.ingest("status", status(1, 10, run="default@box", run_id=run_id))
    state.ingest("status", status(1, 20, run="default@box", run_id=run_id))  # a resumed process: same run
    assert list(state.runs) == [run_id]
    assert state.status(run_id)["run"] == "default@box" and state.status("default@box")["iteration"] == 20


def test_sequence_gaps_are_counted() -> None:
    state = MonitorState()
    for seq in (1, 2, 5, 6, 10):
        state.ingest("heartbeat", {"v": 1, "run": "r1", "seq": seq, "ts": 0.0})
    assert state.health()["seq_gaps"] == 5


def test_malformed_frames_are_counted_with_reason_and_never_raise() -> None:
    state = MonitorState()
    bad = [None, [], {"run": "x"}, {"run": 3, "seq": 1}, {"run": "x", "seq": "1"},
           {"run": "x", "seq": 1, "iteration": "many"}]
    for payload in bad:
        assert state.ingest("status", payload) is None
    health = state.health()
    assert health["malformed"] == len(bad)
    assert any("iteration" in r for r in health["malformed_reasons"])
    assert state.runs == {} or state.status()["iteration"] == 0


def test_trainer_goes_offline_after_three_silent_seconds_and_comes_back() -> None:
    clock = Clock()
    state = MonitorState(clock=clock)
    first = state.ingest("status", status(1, 1))
    assert first is not None and first.needs_sync
    assert state.status()["trainer_online"] is True
    clock.now += 3.5
    assert state.status()["trainer_online"] is False
    assert state.online_changes() == [("r1", False)]
    back = state.ingest("heartbeat", {"v": 1, "run": "r1", "seq": 2, "ts": 0.0})
    assert back is not None and back.needs_sync
    assert state.status()["trainer_online"] is True


def test_new_trainer_process_with_reset_sequence_asks_for_a_resync() -> None:
    state = MonitorState()
    state.ingest("status", status(50, 50))
    again = state.ingest("status", status(1, 51))
    assert again is not None and again.needs_sync
    steady = state.ingest("status", status(2, 52))
    assert steady is not None and not steady.needs_sync


def test_runs_are_kept_apart_and_the_live_current_run_stays_until_it_goes_quiet() -> None:
    clock = Clock()
    state = MonitorState(clock=clock)
    state.ingest("status", status(1, 10, run="a"))
    state.ingest("status", status(1, 20, run="b"))
    assert state.status("a")["iteration"] == 10 and state.status("b")["iteration"] == 20
    assert state.status()["run"] == "a"
    clock.now += 5
    state.ingest("status", status(2, 21, run="b"))
    assert state.status()["run"] == "b"
    assert {r["run"] for r in state.runs_summary()} == {"a", "b"}


def test_non_finite_numbers_become_null_so_json_never_breaks() -> None:
    state = MonitorState()
    state.ingest("status", status(1, 1, total_loss=math.nan, gpu_memory=math.inf))
    got = state.status()
    assert got["total_loss"] is None and got["gpu_memory"] is None


def test_validation_keeps_latest_metrics_and_a_real_image_only() -> None:
    state = MonitorState()
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 20
    state.ingest("validation", {"v": 1, "run": "r", "seq": 1, "ts": 0.0, "iteration": 5,
                                "psnr": 30.0, "image": png})
    state.ingest("validation", {"v": 1, "run": "r", "seq": 2, "ts": 0.0, "iteration": 6,
                                "psnr": 31.0, "image": b"<script>"})
    run = state.run("r")
    assert run is not None and run.image == png and run.image_type == "image/png"
    assert run.validation is not None and run.validation["psnr"] == 31.0
    assert "image" not in run.validation


def test_two_live_trainers_with_the_same_run_name_are_kept_apart() -> None:
    state = MonitorState()
    state.ingest("status", status(1, 10, run="default"), source="tcp://a:5555")
    state.ingest("status", status(1, 99, run="default"), source="tcp://b:5555")
    state.ingest("status", status(2, 11, run="default"), source="tcp://a:5555")
    state.ingest("status", status(2, 100, run="default"), source="tcp://b:5555")
    assert state.status("default")["iteration"] == 11
    assert state.status("default @ tcp://b:5555")["iteration"] == 100
    assert state.health()["seq_gaps"] == 0


def test_a_loading_trainers_status_is_shown_but_is_no_history_point():
    run = RunState("r", "s")
    run.apply("status", {"v": 1, "run": "r", "seq": 1, "ts": 1.0, "iteration": 40, "total_loss": 0.0,
                         "learn_rate": 0.0, "timestamp": 1.0, "state": "loading"})
    assert run.public_status(True)["iteration"] == 40 and not run.history
