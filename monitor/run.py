"""What the monitor knows about one training run."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from protocol import HISTORY_FIELDS, VALIDATION_POINT_FIELDS, json_safe

from .values import image_type, require_int

Point = dict[str, Any]

STATUS_DEFAULTS: dict[str, Any] = {
    "iteration": 0,
    "total_loss": 0.0,
    "learn_rate": 0.0,
    "time_remaining": "00:00:00",
    "iter_speed": 0.0,
    "gpu_memory": 0.0,
    "best_score": None,
    "is_validating": False,
    "is_training": False,
    "timestamp": 0.0,
    "is_paused": False,
    "max_iterations": 0,
    "activity": None,  # latest per-layer mean |output|: {layer: float}
    "skipped_steps": 0,
    "rollbacks": 0,
}
ENVELOPE = ("v", "seq")
ENDED = ("finished", "stopped", "failed")  # a run in one of these has ended: its process is over
MAX_LAYERS = 512


def activity_of(value: Any) -> dict[str, float] | None:
    """A status frame's per-layer activity (cleaned map): finite non-negative numbers; None when none."""
    if not isinstance(value, dict):
        return None
    out = {k: float(v) for k, v in islice(value.items(), MAX_LAYERS)
           if type(v) in (int, float) and math.isfinite(v) and v >= 0}
    return out or None


def pick(payload: dict[str, Any], keys: tuple[str, ...]) -> Point:
    return {k: payload[k] for k in keys if k in payload}


@dataclass
class RunState:
    """One run as its frames tell it. `name` is its key (the envelope's `run_id`, else its `run`);
    `display` the name shown. The whole history lives in the store; here only the live stretch."""

    name: str
    source: str
    recent: int = 2000
    max_events: int = 200
    display: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    image: bytes | None = None
    image_type: str | None = None
    image_version: int = 0
    checkpoints: list[Any] | None = None
    last_seq: int | None = None
    seq_gaps: int = 0
    frames: int = 0
    last_seen: float | None = None
    online: bool = False
    activity: dict[str, float] | None = None  # latest per-layer mean |output| (kept when a frame lacks it)

    synced_to: int = -1  # the trainer's record is in the store up to this iteration
    images_read: bool = False  # its validations' images were read from its run folder (a trainer on this machine)

    def __post_init__(self) -> None:
        self.display = self.display or self.name
        self.history: deque[Point] = deque(maxlen=self.recent)
        self.validations: deque[Point] = deque(maxlen=max(self.recent // 4, 1))
        self.events: deque[dict[str, Any]] = deque(maxlen=self.max_events)

    def track_seq(self, seq: int) -> bool:
        """Count gaps; True when the sequence went backwards (a new trainer process)."""
        restarted = self.last_seq is not None and seq <= self.last_seq
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.seq_gaps += seq - self.last_seq - 1
        self.last_seq = seq
        return restarted

    def apply(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Fold one frame in; returns its JSON-safe form for the browsers."""
        if topic == "validation":
            return self._apply_validation(payload)
        data = json_safe(payload)
        if topic == "status":
            require_int(payload, "iteration")
            self._apply_activity(data)
            self.status = {k: v for k, v in data.items() if k not in ENVELOPE}
            if data.get("state") != "loading":  # loading: loss and LR are placeholders, not a step
                self.history.append(pick(data, HISTORY_FIELDS))
        elif topic == "event":
            self.events.append(data)
        return data

    def _apply_activity(self, data: dict[str, Any]) -> None:
        """Keep the checked map (browsers get it too); a frame without a usable one keeps the last."""
        checked = activity_of(data.pop("activity", None))
        if checked:
            data["activity"] = self.activity = checked

    def _apply_validation(self, payload: dict[str, Any]) -> dict[str, Any]:
        require_int(payload, "iteration")
        image = payload.get("image")
        data = json_safe(payload)
        if isinstance(image, bytes) and image_type(image):
            self.image, self.image_type = image, image_type(image)
            self.image_version += 1
        data["image_version"] = self.image_version
        self.validation = data
        point = pick(data, VALIDATION_POINT_FIELDS)
        point.setdefault("timestamp", data.get("ts"))  # a sender without the field: the frame's time
        self.validations.append(point)
        return data

    def public_status(self, online: bool) -> dict[str, Any]:
        return {**STATUS_DEFAULTS, **self.status, "activity": self.activity, "trainer_online": online,
                "run": self.display, "run_id": self.name}

    def snapshot(self, online: bool) -> dict[str, Any]:
        return {
            "status": self.public_status(online),
            "history": list(self.history),
            "validations": list(self.validations),
            "validation": self.validation,
            "events": list(self.events),
            "checkpoints": self.checkpoints,
            "image_version": self.image_version,
            "seq_gaps": self.seq_gaps,
            "frames": self.frames,
        }

