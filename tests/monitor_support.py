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
