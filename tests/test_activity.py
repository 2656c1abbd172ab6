"""Per-layer activity (mean |output|) from the model to the dashboard: trainer frames and logs,
the monitor's /api/status, the dashboard panel."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from starlette.testclient import TestClient

import protocol
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.mock import MockTrainer
from monitor.state import MonitorState
from tests.browser_support import chromium, require_chromium, screenshot, serving
from tests.monitor_support import frame, nobody
from tests.trainer_support import TINY_SETTINGS as TINY
from tests.trainer_support import free_port
from trainer import models
from trainer.config import TelemetryConfig, load_config
from trainer.report.runlog import RunLog
from trainer.report.telemetry import Telemetry
from trainer.train.loop import RunOptions, Trainer
from trainer.train.snapshot import unwrap

EVIL = "<img src=x onerror=alert(1)>"


def _valid(activity: Any) -> bool:
    return isinstance(activity, dict) and bool(activity) and all(
        isinstance(v, float) and math.isfinite(v) and v >= 0 for v in activity.values())


@pytest.mark.usefixtures("one_torch_thread")
def test_a_short_run_publishes_and_logs_finite_non_negative_activity(tmp_path: Path) -> None:
    cfg = load_config(overrides={**TINY, "train.max_iters": 3})
    pub = f"tcp://127.0.0.1:{free_port()}"
    trainer = Trainer(cfg, RunOptions(run_dir=tmp_path / "run", resume="never", pub=pub, rep=None,
                                      interactive=False, console=False))
    sub, frames, done = protocol.Subscriber(pub), [], threading.Event()

    def collect() -> None:
        while not done.is_set():
            if (msg := sub.recv(50)) is not None:
                frames.append(msg)
        while (msg := sub.recv(300)) is not None:  # what was still on its way
            frames.append(msg)

    reader = threading.Thread(target=collect)
    reader.start()
    time.sleep(0.3)  # slow joiner
    try:
        assert trainer.run() == 0
    finally:
        done.set()
        reader.join(10)
        sub.close()
    layers = unwrap(trainer.setup.state.model).layer_names
    carried = [f["activity"] for topic, f in frames if topic == "status" and "activity" in f]
    assert carried, "no status frame carried activity"
    assert all(_valid(a) and list(a) == layers for a in carried)
    assert unwrap(trainer.setup.state.model).track_activity is False  # only the measured step paid for it
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [rec for rec in lines if rec["kind"] == "activity"]
    assert logged and set(layers) <= set(logged[0]) and logged[0]["step"] >= 1


def test_activity_is_measured_once_per_interval_and_never_on_silent_ranks(tmp_path: Path) -> None:
    tel = Telemetry(None, TelemetryConfig(), max_iters=10, runlog=RunLog(tmp_path, tensorboard=False))
    assert tel.activity_due()
    tel.set_activity(1, {"feat": 0.5, "out": 0.01})
    assert not tel.activity_due()
    assert tel.latest_status().get("activity") is None  # it goes out with the next status
    tel.step(2, torch.tensor(0.1), 1e-4)
    assert tel.latest_status()["activity"] == {"feat": 0.5, "out": 0.01}
    tel.runlog.close()
    assert not Telemetry(None, TelemetryConfig(), max_iters=10).activity_due()


def test_basicvsrpp_records_activity_per_stage_only_when_tracked() -> None:
    model = models.build("basicvsrpp", mid_channels=16, num_blocks=1, scale=2)
    x = torch.rand(1, 3, 3, 8, 8)
    model(x)
    assert model.activity() == {}
    model.track_activity = True
    model(x)
    act = model.activity()
    assert list(act) == model.layer_names and _valid(act)
    assert model.activity() == {} and "_activity_sum" not in model.state_dict()


def test_activity_from_a_frame_is_served_by_api_status_and_kept(tmp_path: Path) -> None:
    state = MonitorState()
    with TestClient(create_app(MonitorConfig(trainers=[nobody()]), state), base_url="http://127.0.0.1:5050") as c:
        assert c.get("/api/status").json()["activity"] is None
        state.ingest("status", frame(1, iteration=5, activity={"feat": 0.25, "out": 1, "bad": -1.0,
                                                                 "nan": float("nan"), "flag": True}))
        assert c.get("/api/status").json()["activity"] == {"feat": 0.25, "out": 1.0}
        state.ingest("status", frame(2, iteration=6))  # a frame without it keeps the last one
        assert c.get("/api/status").json()["activity"] == {"feat": 0.25, "out": 1.0}
        with c.websocket_connect("/ws") as ws:
            snap = ws.receive_json()
        assert snap["runs"]["r1"]["status"]["activity"] == {"feat": 0.25, "out": 1.0}


class ActiveMock(MockTrainer):
    def status(self) -> dict[str, Any]:
        layers = ["feat", "backward.block0", "forward.block0", EVIL, "out"]
        return {**super().status(), "activity": {k: 0.1 * (i + 1) for i, k in enumerate(layers)}}


@pytest.mark.browser
def test_the_dashboard_draws_one_labelled_bar_per_layer_on_desktop_and_phone() -> None:
    sync_api = require_chromium()
    with serving([ActiveMock("act", status_hz=5).start()]) as url, chromium(sync_api) as browser:
        for width, height in ((1280, 900), (390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("dialog", lambda d: pytest.fail(f"a script ran: {d.message}"))
            page.goto(url)
            page.wait_for_selector("#activity .act-row:nth-child(5)")
            widths = page.eval_on_selector_all("#activity .act-bar span", "els => els.map(e => e.style.width)")
            assert [round(float(w.rstrip("%"))) for w in widths] == [20, 40, 60, 80, 100]
            assert EVIL in page.text_content("#activity") and page.locator("img[src='x']").count() == 0
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            screenshot(page, f"activity_{width}")
