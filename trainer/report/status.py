"""What goes into a status frame (protocol.STATUS): `status_frame`, from explicit inputs, and nowhere else.

`Telemetry` gathers the inputs as plain numbers (the loss tensor is read only when a status goes
out) and sends what `status_frame` returns; its once-a-second refresh while nothing steps is the
same inputs at a new time and state.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = ("training", "validating", "paused")  # the states in which `is_training` is true


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class StatusInputs:
    """Everything a status frame says, as plain values. Until this process has trained a step
    (`stepped`), loss and LR are placeholders, so the frame says "loading" whatever `state` is."""

    state: str  # one of protocol.STATES
    stepped: bool
    iteration: int
    max_iterations: int
    loss: float
    learn_rate: float
    iter_speed: float  # iterations per second, smoothed
    gpu_memory: float  # GB
    best_score: float | None
    skipped_steps: int
    rollbacks: int
    timestamp: float  # unix seconds
    # the last step's details and the run's extras; absent from the frame while None
    epoch: int | None = None
    grad_norm: float | None = None
    losses: dict[str, float] | None = None  # loss parts, e.g. {"l1": 0.01}
    activity: dict[str, float] | None = None  # per-layer mean |output|
    loss_min: float | None = None  # lowest and highest loss since the last history point
    loss_max: float | None = None
    init_from: str | None = None  # the file a fine-tune started from, by name


OPTIONAL = ("epoch", "grad_norm", "losses", "activity", "loss_min", "loss_max", "init_from")


def status_frame(given: StatusInputs) -> dict[str, object]:
    """The status frame's fields (the envelope aside)."""
    speed = given.iter_speed
    remaining = (given.max_iterations - given.iteration) / speed if speed > 0 else 0.0
    frame: dict[str, object] = {
        "iteration": given.iteration, "total_loss": given.loss, "learn_rate": given.learn_rate,
        "time_remaining": format_eta(remaining), "iter_speed": round(speed, 4),
        "gpu_memory": given.gpu_memory, "best_score": given.best_score,
        "is_validating": given.state == "validating", "is_training": given.state in RUNNING,
        "is_paused": given.state == "paused", "max_iterations": given.max_iterations,
        "timestamp": given.timestamp, "state": given.state if given.stepped else "loading",
        "skipped_steps": given.skipped_steps, "rollbacks": given.rollbacks,
    }
    frame.update({key: getattr(given, key) for key in OPTIONAL if getattr(given, key) is not None})
    return frame
