"""Helpers shared by the monitor tests: frames as a trainer sends them, and a trainer that never answers."""

from __future__ import annotations

from typing import Any

from monitor.config import TrainerEndpoints
from tests.net_support import free_endpoint


def frame(seq: int, run: str = "r1", **fields: object) -> dict:
    """A decoded payload: the envelope, then `fields`."""
    return {"v": 1, "run": run, "seq": seq, "ts": 100.0 + seq, **fields}


def nobody() -> TrainerEndpoints:
    """Endpoints of free ports: a trainer address where nobody answers."""
    return TrainerEndpoints(free_endpoint(), free_endpoint())


def feed(client: Any, topic: str, payload: dict) -> None:
    """A frame as the bridge takes it (a TestClient's app): into the state and the store, written on return."""
    monitor = client.app.state.monitor
    update = monitor.state.ingest(topic, payload)
    run = monitor.state.runs.get(update.run) if update else None
    if run is not None:
        monitor.bridge.recorder.frame(run, topic, payload)
    monitor.store.flush()


RUN_ID = "0123456789abcdef0123456789abcdef"  # a run.json id, as a mock trainer sends it


def monitor_on(trainer: Any, db: Any) -> Any:
    """A real `python -m monitor` process following the mock `trainer`, storing in `db`; serving on return."""
    from tests.faults.procs import MonitorProc
    from tests.net_support import wait_until

    proc = MonitorProc(trainer.pub_endpoint, trainer.rep_endpoint, extra=["--db", str(db)]).start()
    wait_until(lambda: proc.get("/healthz"), 30, "the monitor serving")
    return proc


def fetch_history(monitor: Any, **params: object) -> dict:
    """GET /api/history.json (params as query), or an empty history while there is none."""
    query = "&".join(f"{'from' if k == 'first' else k}={v}" for k, v in params.items())
    body = monitor.get(f"/api/history.json?{query}")
    return body if body and "history" in body else {"history": [], "validations": []}


def stored_runs(monitor: Any) -> dict[str, dict]:
    """GET /api/runs by id ({} while the monitor is not serving)."""
    body = monitor.get("/api/runs")
    return {r["id"]: r for r in body["runs"]} if body else {}
