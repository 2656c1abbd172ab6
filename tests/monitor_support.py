"""Helpers shared by the monitor tests: frames as a trainer sends them, and a trainer that never answers."""

from __future__ import annotations

from monitor.config import TrainerEndpoints
from tests.net_support import free_endpoint


def frame(seq: int, run: str = "r1", **fields: object) -> dict:
    """A decoded payload: the envelope, then `fields`."""
    return {"v": 1, "run": run, "seq": seq, "ts": 100.0 + seq, **fields}


def nobody() -> TrainerEndpoints:
    """Endpoints of free ports: a trainer address where nobody answers."""
    return TrainerEndpoints(free_endpoint(), free_endpoint())
