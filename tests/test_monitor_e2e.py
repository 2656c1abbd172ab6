"""Monitor against MockTrainer over real ZeroMQ sockets on free loopback ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import zmq
from starlette.testclient import TestClient

from monitor.app import create_app
from monitor.config import MonitorConfig, TrainerEndpoints
from monitor.mock import MockTrainer
from monitor.state import MonitorState
from protocol import CommandClient, SecurityConfig, encode_message, generate_keys
from tests.net_support import free_endpoint, wait_until


@contextmanager
def monitor_for(*mocks: MockTrainer, state: MonitorState | None = None, **kw: Any) -> Iterator[TestClient]:
    trainers = [TrainerEndpoints(m.pub_endpoint, m.rep_endpoint) for m in mocks]
    config = MonitorConfig(trainers=trainers, command_timeout_ms=kw.pop("timeout_ms", 1500), **kw)
    with TestClient(create_app(config, state), base_url="http://127.0.0.1:5050") as client:
        yield client


def status(client: TestClient, run: str | None = None) -> dict[str, Any]:
    return client.get("/api/status", params={"run": run} if run else None).json()


def act(client: TestClient, command: str, run: str | None = None):
    return client.post("/api/action", json={"command": command, **({"run": run} if run else {})})


def test_monitor_shows_live_status_and_validate_reaches_the_trainer() -> None:
    with MockTrainer("live", status_hz=20, speed=50, validate_s=0.3) as mock, monitor_for(mock) as client:
        wait_until(lambda: status(client)["trainer_online"] and status(client)["iteration"] > 0,
                 what="first status")
        reply = act(client, "validate")
        assert reply.status_code == 200 and reply.json()["ok"] is True
        wait_until(lambda: client.get("/api/validation").status_code == 200, what="validation")
        image = client.get("/api/validation.png")
        assert image.headers["content-type"] == "image/png" and image.content[:4] == b"\x89PNG"


def test_pause_stops_the_iteration_count_and_resume_restarts_it() -> None:
    with MockTrainer("p", status_hz=20, speed=50) as mock, monitor_for(mock) as client:
        wait_until(lambda: status(client)["iteration"] > 0, what="first status")
        assert act(client, "pause").status_code == 200
        wait_until(lambda: status(client)["is_paused"], what="paused status")
        held = status(client)["iteration"]
        time.sleep(0.4)
        assert status(client)["iteration"] == held
        assert act(client, "resume").status_code == 200
        wait_until(lambda: status(client)["iteration"] > held, what="iterations after resume")


def test_monitor_started_after_the_trainer_fetches_history_and_checkpoints_at_once() -> None:
    with MockTrainer("late", status_hz=20, speed=50) as mock:
        with CommandClient(mock.rep_endpoint) as ctl:
            assert ctl.request("save")["ok"]
        time.sleep(1.2)  # the mock records a history point per second
        state = MonitorState()
        with monitor_for(mock, state=state) as client:
            wait_until(lambda: status(client)["trainer_online"], what="online")
            run = wait_until(lambda: (r := state.run("late")) and r.checkpoints and r, what="sync")
            assert run.checkpoints[0]["filename"].startswith("checkpoint_step_")
            first = mock.records()[0]["iteration"]
            wait_until(lambda: client.get("/api/history.json").json()["history"][0]["iteration"] == first,
                       what="the run's history from its first point")
            assert first < status(client)["iteration"]


def test_silent_trainer_shows_offline_and_a_restarted_one_is_followed_without_restart() -> None:
    pub, rep = free_endpoint(), free_endpoint()
    first = MockTrainer("again", pub=pub, rep=rep, status_hz=20, speed=50).start()
    with monitor_for(first, offline_after_s=1.0, timeout_ms=400) as client:
        wait_until(lambda: status(client)["trainer_online"], what="online")
        first.stop()
        wait_until(lambda: not status(client)["trainer_online"], timeout=5, what="offline")
        assert act(client, "pause").status_code == 503
        with MockTrainer("again", pub=pub, rep=rep, status_hz=20, start_iteration=5000):
            wait_until(lambda: status(client)["iteration"] >= 5000, what="the new trainer")
            assert status(client)["trainer_online"] is True
            assert act(client, "pause").status_code == 200


def test_websocket_pushes_each_frame_after_the_snapshot() -> None:
    with MockTrainer("ws", status_hz=20) as mock, monitor_for(mock) as client:
        wait_until(lambda: status(client)["trainer_online"], what="online")
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json()["type"] == "snapshot"
            seen = [ws.receive_json() for _ in range(5)]
        frames = [m for m in seen if m["type"] == "frame" and m["topic"] == "status"]
        assert frames and frames[0]["run"] == "ws"
        iterations = [m["data"]["iteration"] for m in frames]
        assert iterations == sorted(iterations)


def test_several_trainers_are_followed_and_commands_go_to_the_named_run() -> None:
    with MockTrainer("a", status_hz=20, speed=50) as a, MockTrainer("b", status_hz=20, speed=50) as b:
        with monitor_for(a, b) as client:
            wait_until(lambda: {r["run"] for r in client.get("/api/runs").json()["runs"]} == {"a", "b"},
                     what="both runs")
            assert act(client, "pause", run="b").status_code == 200
            wait_until(lambda: status(client, "b")["is_paused"], what="b paused")
            assert status(client, "a")["is_paused"] is False


def test_monitor_with_curve_keys_talks_to_a_secured_trainer(tmp_path: Path) -> None:
    generate_keys(tmp_path)
    server = SecurityConfig.from_keys_dir(tmp_path, role="server")
    with MockTrainer("curve", status_hz=20, security=server) as mock:
        with monitor_for(mock, keys=tmp_path) as client:
            wait_until(lambda: status(client)["trainer_online"], what="online over CURVE")
            assert act(client, "save").status_code == 200


def test_demo_prints_its_url_serves_and_ends_cleanly_on_ctrl_c() -> None:
    port = int(free_endpoint().rsplit(":", 1)[1])
    proc = subprocess.Popen([sys.executable, "-m", "monitor.demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert any(f"http://localhost:{port}" in line for line in lines), lines
        wait_until(lambda: _online(port), what="demo status")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "demo stopped" in out and "Traceback" not in out


def _online(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/status").json()["trainer_online"]
    except httpx.HTTPError:
        return False


def test_garbage_on_the_wire_is_counted_and_the_monitor_keeps_going() -> None:
    pub = free_endpoint()
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(pub)
    good = encode_message("heartbeat", {"v": 1, "run": "raw", "seq": 1, "ts": 0.0,
                                        "state": "training", "iteration": 7})
    config = MonitorConfig(trainers=[TrainerEndpoints(pub, free_endpoint())], command_timeout_ms=300)
    try:
        with TestClient(create_app(config)) as client:
            def garbage_counted() -> bool:
                sock.send_multipart([b"status", b"\xc1not msgpack"])
                return client.get("/healthz").json()["malformed"] > 0
            wait_until(garbage_counted, what="malformed count")
            sock.send_multipart(good)
            wait_until(lambda: status(client)["trainer_online"], what="a good frame after garbage")
            assert client.get("/healthz").json()["malformed_reasons"]
    finally:
        sock.close()
