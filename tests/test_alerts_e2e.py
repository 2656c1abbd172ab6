"""Alerts end to end: real trainer processes (or a real Publisher), the monitor app, and a real webhook
receiver on 127.0.0.1. Each alert arrives once; silence is `stalled`; delivery never slows the dashboard;
webhook URLs never show."""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from monitor.alerts import AlertSettings
from monitor.app import create_app
from monitor.config import MonitorConfig, TrainerEndpoints
from protocol import CommandClient, Publisher, example_fields
from tests.net_support import free_endpoint, free_port, wait_until
from tests.trainer_support import ONE_THREAD, TINY_FLAGS, start_trainer
from tests.webhook_support import Receiver

STALL_S = 2.0
SECRET = "T0001/B0002/sEcReTtOkEn"


@contextmanager
def monitor(pub: str, rep: str, *urls: str, db: str = ":memory:", **settings: Any) -> Iterator[TestClient]:
    """The monitor app following one trainer, alerts to `urls` (retries 50 ms apart), stall after 2 s."""
    alerts = AlertSettings(notify=urls, stall_after_s=STALL_S, backoff_s=0.05, **settings)
    config = MonitorConfig(trainers=[TrainerEndpoints(pub, rep)], db=db, alerts=alerts, command_timeout_ms=1500)
    with TestClient(create_app(config), base_url="http://127.0.0.1:5050") as client:
        yield client


@contextmanager
def trainer(run_dir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen, str, str]]:
    proc, pub, rep = start_trainer(run_dir, *extra)
    try:
        yield proc, pub, rep
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.communicate(timeout=30)


def arrived(receiver: Receiver, kind: str, timeout: float = 120.0) -> dict[str, Any]:
    return wait_until(lambda: receiver.bodies(kind) and receiver.bodies(kind)[-1], timeout=timeout,
                      what=f"a {kind!r} alert", every=0.1)


def stored(client: TestClient, run: str, count: int) -> list[dict[str, Any]]:
    """GET /api/alerts once it lists `count` alerts, all settled (delivered or failed)."""
    def settled() -> list[dict[str, Any]] | None:
        rows = client.get("/api/alerts", params={"run": run}).json().get("alerts", [])
        return rows if len(rows) == count and all(r["delivery"] != "pending" for r in rows) else None
    return wait_until(settled, timeout=10, what=f"{count} settled alerts in /api/alerts")


def test_a_short_real_run_sends_started_and_finished_once_each(tmp_path: Path) -> None:
    with Receiver() as receiver, trainer(tmp_path / "run", "--max-iters", "6") as (proc, pub, rep):
        with monitor(pub, rep, receiver.url) as client:
            finished = arrived(receiver, "finished")
            assert proc.wait(timeout=60) == 0
            time.sleep(STALL_S + 1)  # a stalled or a second alert would come by now
            rows = stored(client, finished["run"], 3)
    assert receiver.kinds() == ["started", "finished"]
    assert finished["iteration"] == 6 and finished["run"] in finished["text"]
    assert finished["text"] == finished["content"]
    assert [(r["kind"], r["delivery"], r["tries"]) for r in rows] == [  # new_best: kept, not sent by default
        ("started", "delivered", 1), ("new_best", "none", 0), ("finished", "delivered", 1)]


def test_a_paused_run_is_not_stalled_and_a_run_stopped_with_stop_sends_stopped(tmp_path: Path) -> None:
    with Receiver() as receiver, trainer(tmp_path / "run") as (proc, pub, rep):
        with monitor(pub, rep, receiver.url) as client:
            arrived(receiver, "started")
            with CommandClient(rep, timeout_ms=3000, retries=2) as ctl:
                assert ctl.request("pause")["ok"]
                wait_until(lambda: client.get("/api/status").json()["is_paused"], timeout=30, what="paused")
                time.sleep(2.5 * STALL_S)  # paused: no steps, but heartbeats
                assert receiver.kinds() == ["started"]
                assert ctl.request("stop")["ok"]
            arrived(receiver, "stopped", timeout=60)
            assert proc.wait(timeout=60) == 0
            time.sleep(STALL_S + 1)
    assert receiver.kinds() == ["started", "stopped"]


def test_a_run_at_lr_1e4_sends_diverged_then_failed_when_it_gives_up(tmp_path: Path) -> None:
    flags = ("--max-iters", "300", "--save-every", "20", "--set", "schedule.lr_max=1e4", "--set", "clip.start=1e9",
             "--set", "clip.adaptive=false")
    with Receiver() as receiver, trainer(tmp_path / "run", *flags) as (proc, pub, rep):
        with monitor(pub, rep, receiver.url):
            failed = arrived(receiver, "failed", timeout=240)
            assert proc.wait(timeout=60) != 0
            time.sleep(STALL_S + 1)
    kinds = receiver.kinds()
    assert kinds[0] == "started" and kinds[-1] == "failed" and kinds.count("failed") == 1
    assert "diverged" in kinds and set(kinds) == {"started", "diverged", "failed"}, kinds
    assert "diverged" in failed["text"]


def test_a_sigstopped_trainer_is_stalled_within_stall_after_and_alive_after_sigcont(tmp_path: Path) -> None:
    with Receiver() as receiver, trainer(tmp_path / "run") as (proc, pub, rep):
        with monitor(pub, rep, receiver.url):
            arrived(receiver, "started")
            os.kill(proc.pid, signal.SIGSTOP)
            frozen = time.time()
            stalled = arrived(receiver, "stalled", timeout=STALL_S + 10)
            assert receiver.posts[-1][0] - frozen <= STALL_S + 5
            os.kill(proc.pid, signal.SIGCONT)
            arrived(receiver, "alive", timeout=30)
    assert receiver.kinds() == ["started", "stalled", "alive"]
    assert str(STALL_S).rstrip("0").rstrip(".") in stalled["text"]


def test_a_sigkilled_trainer_is_stalled(tmp_path: Path) -> None:
    with Receiver() as receiver, trainer(tmp_path / "run") as (proc, pub, rep):
        with monitor(pub, rep, receiver.url):
            arrived(receiver, "started")
            proc.kill()
            killed = time.time()
            arrived(receiver, "stalled", timeout=STALL_S + 10)
            assert receiver.posts[-1][0] - killed <= STALL_S + 5
            time.sleep(STALL_S + 1)
    assert receiver.kinds() == ["started", "stalled"]


def test_a_monitor_restarted_mid_run_does_not_repeat_started(tmp_path: Path) -> None:
    db = str(tmp_path / "monitor.sqlite")
    with Receiver() as receiver, trainer(tmp_path / "run") as (proc, pub, rep):
        with monitor(pub, rep, receiver.url, db=db):
            arrived(receiver, "started")
        with monitor(pub, rep, receiver.url, db=db) as client:
            wait_until(lambda: client.get("/api/status").json()["trainer_online"], timeout=30, what="frames again")
            time.sleep(1.0)
            with CommandClient(rep, timeout_ms=3000, retries=2) as ctl:
                assert ctl.request("stop")["ok"]
            arrived(receiver, "stopped", timeout=60)
    assert receiver.kinds() == ["started", "stopped"]


def test_the_trainers_own_monitor_sends_alerts_to_vsrpp_notify(tmp_path: Path) -> None:
    """`VSRPP_NOTIFY=URL just train`: the monitor the trainer starts reads the variable, and its last
    alert still goes out though the trainer stops that monitor as soon as the run ends."""
    flags = [f for f in TINY_FLAGS if f != "--no-monitor"]
    with Receiver() as receiver:
        env = {**ONE_THREAD, "VSRPP_NOTIFY": receiver.url, "XDG_DATA_HOME": str(tmp_path)}  # its store: in tmp
        cmd = [sys.executable, "-m", "trainer", "--run-dir", str(tmp_path / "run"), "--max-iters", "4",
               "--pub", free_endpoint(), "--rep", free_endpoint(), "--monitor-port", str(free_port()), *flags]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert receiver.kinds() == ["started", "finished"]
    assert f"to 127.0.0.1:{receiver.port}" in done.stdout and receiver.path not in done.stdout


# ---- a Publisher standing in for the trainer: quick ------------------------------------------------


def publish_until_seen(pub: Publisher, ws: Any, iteration: int) -> float:
    """Publish a status of `iteration`; seconds until the WebSocket pushes it."""
    start = time.perf_counter()
    pub.publish("status", **{**example_fields("status"), "iteration": iteration})
    while True:
        msg = ws.receive_json()
        if msg.get("type") == "frame" and msg.get("topic") == "status" and msg["data"]["iteration"] == iteration:
            return time.perf_counter() - start


def push_latency(*urls: str, frames: int = 60) -> float:
    """Median publish -> WebSocket latency while every frame pair also raises an alert for `urls`."""
    endpoint = free_endpoint()
    with Publisher(endpoint, "lat") as pub, monitor(endpoint, free_endpoint(), *urls) as client:
        with client.websocket_connect("/ws") as ws:
            ws.receive_json()  # the snapshot
            wait_until(lambda: pub.publish("heartbeat", state="training", iteration=0) and
                       client.get("/api/status").json()["trainer_online"], what="the SUB socket joined")
            latencies = []
            for i in range(1, frames + 1):
                pub.publish("event", kind="diverged", message="rollback", data={"step": i, "restore_step": i - 1})
                latencies.append(publish_until_seen(pub, ws, i))
                time.sleep(0.01)
    return statistics.median(latencies)


def test_a_receiver_that_never_answers_leaves_the_dashboard_push_latency_unchanged() -> None:
    with Receiver() as live:
        with_live = push_latency(live.url)
        assert len(live.kinds()) >= 50
    with Receiver(hang=True) as dead:
        with_dead = push_latency(dead.url)
        assert dead.posts  # the monitor did try, and is still waiting for its answer
    assert with_dead < 3 * with_live + 0.05, (with_live, with_dead)


def test_webhook_urls_never_show_in_the_page_the_api_metrics_or_a_log_line(caplog) -> None:
    endpoint = free_endpoint()
    down = f"http://127.0.0.1:{free_port()}/{SECRET}"
    with caplog.at_level(logging.DEBUG), Receiver(path="/" + SECRET) as receiver:
        with Publisher(endpoint, "secret-run") as pub, monitor(endpoint, free_endpoint(), receiver.url, down) as client:
            wait_until(lambda: pub.publish("status", **example_fields("status")) and
                       client.get("/api/status").json()["trainer_online"], what="frames")
            pub.publish("event", kind="error", message="boom", data={"step": 3, "fatal": True})
            wait_until(lambda: receiver.kinds() == ["started", "failed"], what="both alerts")
            rows = stored(client, "secret-run", 2)
            pages = [client.get(path).text for path in ("/", "/api/status", "/api/runs", "/api/events",
                                                         "/api/alerts?run=secret-run", "/metrics", "/healthz")]
            with client.websocket_connect("/ws") as ws:
                pages.append(str(ws.receive_json()))
    assert [r["delivery"] for r in rows] == ["failed", "failed"]  # the down receiver never took them
    logged = [r.getMessage() for r in caplog.records]
    assert any("127.0.0.1" in line and "not delivered" in line for line in logged)
    assert all(SECRET not in text for text in pages + logged)


def test_a_stored_runs_event_list_holds_its_alerts(tmp_path: Path) -> None:
    db, endpoint = str(tmp_path / "monitor.sqlite"), free_endpoint()
    with Publisher(endpoint, "gone") as pub, monitor(endpoint, free_endpoint(), db=db) as client:
        wait_until(lambda: pub.publish("heartbeat", state="training", iteration=3) and
                   client.get("/api/alerts", params={"run": "gone"}).json().get("alerts"), what="started")
        pub.publish("event", kind="finished", message="done", data={"step": 3})
        stored(client, "gone", 2)
    with monitor(free_endpoint(), free_endpoint(), db=db) as client:  # the run is no longer live
        events = client.get("/api/events", params={"run": "gone"}).json()["events"]
    assert [(e["kind"], e["alert"]) for e in events if e.get("alert")] == [("started", True), ("finished", True)]
    assert [e["kind"] for e in events if not e.get("alert")] == ["finished"]  # the trainer's own event


@pytest.mark.parametrize("flags", [["--notify", "ftp://hooks.example.org/" + SECRET],
                                   ["--notify", "https://hooks.example.org/" + SECRET, "--notify-on", "finished,bogus"],
                                   ["--public-url", "dashboard.example.org"]])
def test_the_monitor_refuses_bad_alert_settings_in_one_line_with_exit_2(flags: list[str]) -> None:
    env = {**os.environ, "VSRPP_NOTIFY": ""}
    done = subprocess.run([sys.executable, "-m", "monitor", *flags], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert SECRET not in done.stderr + done.stdout
