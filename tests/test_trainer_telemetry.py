from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import pytest
import torch

import protocol
from tests.trainer_support import make_trainer
from trainer.config import TelemetryConfig
from trainer.report.control import Controller, KeyReader
from trainer.report.history import history
from trainer.report.runlog import RunLog
from trainer.report.status import StatusInputs, format_eta, status_frame
from trainer.report.telemetry import SpeedMeter, Telemetry


@pytest.fixture
def wired():
    pub = protocol.Publisher("tcp://127.0.0.1:*", "test-run")
    sub = protocol.Subscriber(pub.endpoint)
    tel = Telemetry(pub, TelemetryConfig(status_hz=10.0, heartbeat_s=0.2), max_iters=100_000)
    tel.start()
    time.sleep(0.3)  # slow joiner
    yield tel, sub
    tel.close()
    sub.close()
    pub.close()


def _collect(sub, seconds):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        msg = sub.recv(50)
        if msg is not None:
            out.append(msg)
    return out


def test_status_frames_are_rate_limited_however_fast_the_loop_runs(wired):
    tel, sub = wired
    tel.set_state("training")
    start = time.monotonic()
    for it in range(1, 5001):
        tel.step(it, torch.tensor(0.5), 1e-4)
    elapsed = time.monotonic() - start
    statuses = [m for t, m in _collect(sub, 0.5) if t == "status"]
    assert 1 <= len(statuses) <= elapsed * 10 + 4
    last = statuses[-1]
    assert last["total_loss"] == 0.5 and last["max_iterations"] == 100_000


def test_heartbeats_and_fresh_status_keep_coming_while_paused(wired):
    tel, sub = wired
    tel.step(7, 0.25, 1e-4)
    tel.set_state("paused")
    messages = _collect(sub, 2.2)
    states = [m["state"] for t, m in messages if t == "heartbeat"]
    # Beats sent before the pause (the fixture waits 0.3 s) may still be queued; once one says
    # "paused", every later one must.
    since_pause = states[states.index("paused"):] if "paused" in states else []
    assert len(since_pause) >= 5 and set(since_pause) == {"paused"}
    statuses = [m for t, m in messages if t == "status"]
    assert len(statuses) >= 2 and statuses[-1]["is_paused"] is True
    gaps = [b["ts"] - a["ts"] for a, b in zip(statuses, statuses[1:], strict=False)]
    assert max(gaps) <= 1.9  # re-sent about once a second; slack for a loaded 2-core box


def test_events_reach_subscribers_and_the_run_log(tmp_path, wired):
    tel, sub = wired
    tel.runlog = RunLog(tmp_path, tensorboard=False)
    tel.event("checkpoint_saved", "Checkpoint saved: x.pth", step=3, path="x.pth")
    events = [m for t, m in _collect(sub, 0.5) if t == "event"]
    assert events[0]["kind"] == "checkpoint_saved" and events[0]["data"]["step"] == 3
    assert "checkpoint_saved" in (tmp_path / "training.log").read_text()
    tel.runlog.close()


def test_every_forced_status_after_a_step_is_one_record_and_the_history_reply_is_bounded(tmp_path):
    """The history points are the run folder's `train` records; the `history` reply thins them to `points`."""
    runlog = RunLog(tmp_path, tensorboard=False)
    tel = Telemetry(None, TelemetryConfig(), max_iters=10, runlog=runlog)
    for i in range(1, 21):
        tel.step(i, 0.1, 1e-4)
        tel.publish_status(force=True)
    tel.publish_status(force=True)  # no new step: no new record
    assert len(history(runlog.history, {"points": 5000})["history"]) == 20
    assert len(history(runlog.history, {"points": 5})["history"]) == 5
    assert [p["iteration"] for p in history(runlog.history, {"limit": 2})["history"]] == [19, 20]
    runlog.close()


def test_eta_comes_from_a_smoothed_speed():
    meter = SpeedMeter(alpha=0.5)
    meter.update(0, now=0.0)
    meter.update(10, now=1.0)
    meter.update(30, now=2.0)
    assert meter.speed == pytest.approx(15.0)
    assert format_eta(3725) == "01:02:05"


def test_key_presses_on_a_tty_become_actions():
    master, slave = os.openpty()
    stream = os.fdopen(slave, "r")
    reader = KeyReader(stream)
    assert KeyReader.available(stream)
    reader.start()
    try:
        os.write(master, b"vXq")
        controller = Controller(keys=reader)
        names: list[str] = []
        deadline = time.monotonic() + 3
        while len(names) < 2 and time.monotonic() < deadline:
            names += [a.name for a in controller.drain()]
            time.sleep(0.02)
        assert names == ["validate", "stop"]
    finally:
        reader.close()
        stream.close()
        os.close(master)


def test_statuses_before_the_first_step_are_not_history_points(tmp_path):
    """While loading (and until the first step) loss and LR are placeholders: no `train` record at 0 loss."""
    runlog = RunLog(tmp_path, tensorboard=False)
    tel = Telemetry(None, TelemetryConfig(), max_iters=10, runlog=runlog)
    tel.iteration = 40  # a resumed run says its real step from the first frame
    tel.publish_status(force=True)
    tel.set_state("training")
    assert history(runlog.history, {})["history"] == [] and tel.latest_status()["iteration"] == 40
    assert tel.latest_status()["state"] == "loading" and tel.latest_status()["is_training"]
    tel.step(41, 0.25, 1e-4)
    assert [(p["iteration"], p["total_loss"]) for p in history(runlog.history, {})["history"]] == [(41, 0.25)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"], r["loss"]) for r in records] == [("train", 41, 0.25)]
    assert tel.latest_status()["state"] == "training"
    runlog.close()


ENVELOPE = {"v": 1, "run": "r", "seq": 1, "ts": 1.0}


def test_a_status_frame_is_its_inputs_alone_and_keeps_to_the_protocol():
    given = StatusInputs(state="paused", stepped=True, iteration=50, max_iterations=150, loss=0.5, learn_rate=1e-4,
                         iter_speed=2.0, gpu_memory=1.5, best_score=None, skipped_steps=1, rollbacks=0,
                         timestamp=1000.0, losses={"l1": 0.4})
    assert status_frame(given) == {
        "iteration": 50, "total_loss": 0.5, "learn_rate": 1e-4, "time_remaining": "00:00:50", "iter_speed": 2.0,
        "gpu_memory": 1.5, "best_score": None, "is_validating": False, "is_training": True, "is_paused": True,
        "max_iterations": 150, "timestamp": 1000.0, "state": "paused", "skipped_steps": 1, "rollbacks": 0,
        "losses": {"l1": 0.4}}
    protocol.encode_message("status", {**ENVELOPE, **status_frame(given)})
    assert status_frame(dataclasses.replace(given, stepped=False))["state"] == "loading"  # placeholders until a step


def test_a_trained_step_s_status_carries_its_epoch_gradient_norm_and_loss_parts(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    assert trainer.run() == 0
    status = trainer.setup.report.telemetry.latest_status()
    assert status["iteration"] == 6 and isinstance(status["epoch"], int) and math.isfinite(status["grad_norm"])
    assert status["losses"] and all(isinstance(v, float) for v in status["losses"].values())
    protocol.encode_message("status", {**ENVELOPE, **status})
