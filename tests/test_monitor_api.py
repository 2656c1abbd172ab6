"""HTTP API through Starlette's TestClient, with frames fed straight into the state
and a trainer address where nobody answers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from monitor.__main__ import main as monitor_main
from monitor.app import create_app
from monitor.config import ConfigError, MonitorConfig
from monitor.state import MonitorState
from tests.monitor_support import feed, frame, nobody

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def state() -> MonitorState:
    return MonitorState()


@pytest.fixture
def client(state: MonitorState):
    config = MonitorConfig(trainers=[nobody()], command_timeout_ms=300)
    with TestClient(create_app(config, state), base_url="http://127.0.0.1:5050") as c:
        yield c


@pytest.fixture
def secured(state: MonitorState):
    config = MonitorConfig(trainers=[nobody()], token="s3cret", command_timeout_ms=300)
    with TestClient(create_app(config, state), base_url="http://127.0.0.1:5050") as c:
        yield c


def post(client: TestClient, body: object, **headers: str):
    return client.post("/api/action", json=body, headers=headers)


def test_status_before_any_frame_has_defaults_and_offline_trainer(client: TestClient) -> None:
    got = client.get("/api/status").json()
    assert got["iteration"] == 0 and got["trainer_online"] is False and got["run"] is None
    assert got["is_paused"] is False and got["time_remaining"] == "00:00:00"


def test_status_reflects_the_latest_frame(client: TestClient, state: MonitorState) -> None:
    state.ingest("status", frame(1, iteration=42, total_loss=0.1, is_training=True))
    got = client.get("/api/status").json()
    assert got["iteration"] == 42 and got["trainer_online"] is True and got["run"] == "r1"


def test_action_answers_503_when_the_trainer_does_not_answer(client: TestClient) -> None:
    response = post(client, {"command": "validate"})
    assert response.status_code == 503
    assert response.json()["ok"] is False and "did not answer" in response.json()["error"]


@pytest.mark.parametrize("body", [{"command": "explode"}, {"nope": 1}, [1, 2], "validate"])
def test_unknown_command_is_400_with_the_allowed_list(client: TestClient, body: object) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert "validate" in response.json()["error"]


def test_bad_json_is_400(client: TestClient) -> None:
    response = client.post("/api/action", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]


def test_action_needs_a_json_content_type(client: TestClient) -> None:
    response = client.post("/api/action", content=b"command=stop",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_huge_body_is_refused_with_413(client: TestClient) -> None:
    response = post(client, {"command": "validate", "pad": "x" * 100_000})
    assert response.status_code == 413


def test_no_state_change_by_get(client: TestClient) -> None:
    assert client.get("/api/action?command=stop").status_code == 405


def test_cross_origin_action_is_refused(client: TestClient) -> None:
    response = post(client, {"command": "stop"}, origin="http://evil.example")
    assert response.status_code == 403


def test_same_origin_action_passes_the_origin_check(client: TestClient) -> None:
    response = post(client, {"command": "stop"}, origin="http://127.0.0.1:5050")
    assert response.status_code == 503  # got as far as the (absent) trainer


def test_token_is_required_for_actions_when_configured(secured: TestClient) -> None:
    assert post(secured, {"command": "pause"}).status_code == 401
    assert post(secured, {"command": "pause"}, authorization="Bearer wrong").status_code == 401
    assert post(secured, {"command": "pause"}, authorization="Bearer s3cret").status_code == 503
    assert post(secured, {"command": "pause"}, **{"x-token": "s3cret"}).status_code == 503
    assert secured.get("/api/status").status_code == 200


def test_refuses_to_serve_beyond_loopback_without_token() -> None:
    with pytest.raises(ConfigError, match="--token"):
        MonitorConfig(host="0.0.0.0")
    assert MonitorConfig(host="0.0.0.0", insecure=True).insecure
    assert MonitorConfig(host="0.0.0.0", token="t").token == "t"


def test_cli_says_why_it_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert monitor_main(["--host", "0.0.0.0", "--token", ""]) == 2
    assert "without a token" in capsys.readouterr().err
    assert monitor_main(["--pub", "tcp://127.0.0.1:1", "--pub", "tcp://127.0.0.1:2"]) == 2
    assert "in pairs" in capsys.readouterr().err


def test_history_exports_as_csv_and_json(client: TestClient, state: MonitorState) -> None:
    for i in range(1, 6):
        feed(client, "status", frame(i, iteration=i * 10, total_loss=1.0 / i, learn_rate=1e-4))
    rows = client.get("/api/history.csv").text.strip().splitlines()
    assert rows[0].startswith("iteration,total_loss") and len(rows) == 6
    points = client.get("/api/history.json?run=r1").json()["history"]
    assert [p["iteration"] for p in points] == [10, 20, 30, 40, 50]
    assert client.get("/api/history.json?run=missing").status_code == 404


def test_validation_metrics_and_image_are_served_with_the_right_type(
    client: TestClient, state: MonitorState
) -> None:
    assert client.get("/api/validation.png").status_code == 404
    state.ingest("validation", frame(1, iteration=500, psnr=30.5, ssim=0.9, quality=0.8,
                                     baseline_psnr=28.0, baseline_ssim=0.85,
                                     baseline_quality=0.7, image=PNG))
    assert client.get("/api/validation").json()["psnr"] == 30.5
    image = client.get("/api/validation.png?run=r1")
    assert image.headers["content-type"] == "image/png" and image.content == PNG


@pytest.mark.parametrize("query", ["/api/validation?iteration=x", "/api/validation.png?iteration=1.5",
                                   "/api/history.json?points=many", "/api/history.json?to=end"])
def test_a_per_run_query_that_is_not_an_integer_is_400_naming_it(
    client: TestClient, state: MonitorState, query: str
) -> None:
    state.ingest("status", frame(1, iteration=3))
    response = client.get(query)
    key = query.split("?")[1].split("=")[0]
    assert response.status_code == 400 and f"?{key}= must be an integer" in response.json()["error"]


def test_runs_events_and_health_report_what_arrived(client: TestClient, state: MonitorState) -> None:
    state.ingest("event", frame(1, run="a", kind="started", message="hello"))
    state.ingest("heartbeat", frame(5, run="a", state="training", iteration=1))
    state.ingest("status", {"broken": True})
    assert {r["run"] for r in client.get("/api/runs").json()["runs"]} == {"a"}
    assert client.get("/api/events?run=a").json()["events"][0]["message"] == "hello"
    health = client.get("/healthz").json()
    assert health["seq_gaps"] == 3 and health["malformed"] == 1 and health["malformed_reasons"]


def test_metrics_are_prometheus_text_with_escaped_run_labels(
    client: TestClient, state: MonitorState
) -> None:
    state.ingest("status", frame(1, run='we"ird\nrun', iteration=7, total_loss=0.5))
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'vsrpp_iteration{run="we\\"ird\\nrun"} 7' in response.text
    assert "vsrpp_monitor_frames_total 1" in response.text


def test_metrics_export_the_divergence_counters(client: TestClient, state: MonitorState) -> None:
    state.ingest("status", frame(1, run="spiky", iteration=9, skipped_steps=12, rollbacks=2))
    state.ingest("status", frame(1, run="calm", iteration=9))
    text = client.get("/metrics").text
    assert "# TYPE vsrpp_skipped_steps_total counter" in text and "# TYPE vsrpp_rollbacks_total counter" in text
    assert 'vsrpp_skipped_steps_total{run="spiky"} 12' in text and 'vsrpp_rollbacks_total{run="spiky"} 2' in text
    assert 'vsrpp_skipped_steps_total{run="calm"} 0' in text


def test_checkpoints_answer_503_without_a_trainer(client: TestClient) -> None:
    assert client.get("/api/checkpoints").status_code == 503


def test_websocket_sends_a_snapshot_first(client: TestClient, state: MonitorState) -> None:
    state.ingest("status", frame(1, iteration=3))
    with client.websocket_connect("/ws") as ws:
        first = ws.receive_json()
    assert first["type"] == "snapshot" and first["runs"]["r1"]["status"]["iteration"] == 3


def test_websocket_from_another_origin_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()


def test_dashboard_and_its_assets_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Trigger Validation" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)  # every script and stylesheet the page names
    assert {"/static/app.js", "/static/charts.js", "/static/style.css", "/static/vendor/uPlot.iife.min.js",
            "/static/vendor/uPlot.min.css"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "http" not in page.text.replace("http-equiv", "")


def test_monitor_never_imports_torch_or_trainer() -> None:
    code = ("import monitor.app, monitor.demo, monitor.__main__, sys; "
            "bad = [m for m in ('torch', 'trainer') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
