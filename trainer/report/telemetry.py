"""Status, event, heartbeat and validation frames for the monitor (wire protocol v1).

The loop only hands messages to a queue; one telemetry thread owns the
`protocol.Publisher` socket, publishes them, sends a heartbeat every
`heartbeat_s` and re-sends the latest status at least once a second, so what a
monitor holds is never older than 1 s, also while loading, validating or paused.
The loss tensor is read (`.item()`, a device sync) only when a status goes out.
Per-layer activity is measured on one step every ACTIVITY_EVERY_S (`activity_due`),
read once, logged, and carried by every later status as `activity`.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from protocol import HISTORY_FIELDS, STATES, check_event
from trainer.config import TelemetryConfig
from trainer.report.history import record_values
from trainer.report.runlog import RunLog
from trainer.report.status import StatusInputs, status_frame

STATUS_MAX_AGE_S = 1.0
ACTIVITY_EVERY_S = 2.0  # per-layer activity costs ~5-8% of a step: measured on one step in this interval


def gpu_memory_gb() -> float:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return 0.0


class SpeedMeter:
    """Iterations per second, smoothed with an exponential moving average."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.speed = 0.0
        self.reset()

    def reset(self) -> None:
        """Restart the clock (after a pause or a validation) without forgetting the speed."""
        self._t0: float | None = None
        self._it0 = 0

    def update(self, iteration: int, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        if self._t0 is None:
            self._t0, self._it0 = now, iteration
        elif now - self._t0 >= 0.2 and iteration > self._it0:
            sample = (iteration - self._it0) / (now - self._t0)
            self.speed = sample if self.speed == 0.0 else self.alpha * sample + (1 - self.alpha) * self.speed
            self._t0, self._it0 = now, iteration
        return self.speed


class Telemetry:
    """What the trainer tells the world; a silent no-op on ranks without a publisher."""

    def __init__(self, publisher: Any | None, cfg: TelemetryConfig, *, max_iters: int,
                 runlog: RunLog | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.max_iters = max_iters
        self.runlog = runlog
        self.echo = echo
        self.speed = SpeedMeter()
        self.state = "loading"
        self.iteration = 0
        self.best_score: float | None = None
        self.skipped_steps = 0
        self.rollbacks = 0
        self.init_from: str | None = None  # the file a fine-tune started from (--init-from), by name
        self._stepped = False  # no step yet in this process: the status holds placeholders for loss and LR
        # the last step's numbers (tensors until a status reads them)
        self._loss: torch.Tensor | float = 0.0
        self._lr = 0.0
        self._epoch: int | None = None
        self._grad_norm: torch.Tensor | float | None = None
        self._losses: dict[str, Any] | None = None
        self._low: Any = None  # lowest and highest loss since the last history point (tensors: no sync)
        self._high: Any = None
        # the last history point (a `train` record in metrics.jsonl): when the next one is due
        self._point_iteration: int | None = None
        self._point_time: float | None = None
        self._publisher = publisher
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=2000)
        self._lock = threading.Lock()
        self._activity: dict[str, float] | None = None
        self._inputs = self._status_inputs()  # what the latest status said, for its refresh
        self._latest: dict[str, Any] = status_frame(self._inputs)
        self._due = True
        self._last_status = 0.0
        self._last_activity = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- loop side -------------------------------------------------------
    def start(self) -> None:
        if self._publisher is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
            self._thread.start()

    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"unknown trainer state {state!r}; the protocol's states: {', '.join(STATES)}")
        self.state = state
        if state in ("training", "paused"):
            self.speed.reset()
        self.publish_status(force=True)
        self._due = True  # the next step's numbers go out at once

    def step(self, iteration: int, loss: torch.Tensor | float, lr: float, *, epoch: int | None = None,
             grad_norm: torch.Tensor | float | None = None, losses: dict[str, Any] | None = None) -> None:
        """Called every iteration with its loss, LR, epoch, gradient norm and loss parts; publishes (and
        syncs the loss) at most `status_hz` times a second."""
        self.iteration, self._stepped = iteration, True
        self.speed.update(iteration)
        self._loss, self._lr, self._epoch, self._grad_norm, self._losses = loss, lr, epoch, grad_norm, losses
        self._low, self._high = _extreme(self._low, loss, torch.fmin), _extreme(self._high, loss, torch.fmax)
        now = time.monotonic()
        if self._due or now - self._last_status >= 1.0 / self.cfg.status_hz or iteration >= self.max_iters:
            self._due = False
            self.publish_status(force=iteration >= self.max_iters)

    def activity_due(self) -> bool:
        """Whether the next step should measure per-layer activity (never on silent ranks)."""
        if self._publisher is None and self.runlog is None:
            return False
        return time.monotonic() - self._last_activity >= ACTIVITY_EVERY_S

    def set_activity(self, iteration: int, values: dict[str, float]) -> None:
        """Fresh per-layer mean |output|: logged now, published with the next status (which is due at once)."""
        self._last_activity = time.monotonic()
        if not values:
            return
        self._activity = {str(k): float(v) for k, v in values.items()}
        if self.runlog is not None:
            self.runlog.metrics("activity", iteration, self._activity)
        self._due = True

    def publish_status(self, *, force: bool = False) -> None:
        inputs = self._status_inputs()
        status = status_frame(inputs)
        with self._lock:
            self._inputs, self._latest = inputs, status
        due = force or self._point_time is None or status["timestamp"] - self._point_time >= 1.0
        # before the first step, loss and LR are placeholders, not a point; a point needs a new step
        if due and self._stepped and status["iteration"] != self._point_iteration:
            point = {k: status.get(k) for k in HISTORY_FIELDS}
            self._point_iteration, self._point_time = point["iteration"], point["timestamp"]
            self._low, self._high = None, None
            self._log_point(point, status)
        self._last_status = time.monotonic()
        self._send("status", status)

    def _log_point(self, point: dict[str, Any], status: dict[str, Any]) -> None:
        """A history point is a `train` record in metrics.jsonl (same time, same values), with the loss parts."""
        if self.runlog is None:
            return
        values = record_values(point)
        for key in ("epoch", "grad_norm", "losses"):  # the step's details, when it gave them
            if key not in status:
                continue
            value = status[key]
            if isinstance(value, dict):
                values.update({f"{key}_{k}": v for k, v in value.items()})
            else:
                values[key] = value
        self.runlog.metrics("train", point["iteration"], values, ts=point["timestamp"])

    def set_divergence(self, skipped_steps: int, rollbacks: int) -> None:
        """This run's totals of skipped non-finite steps and rollbacks, carried by every later status."""
        self.skipped_steps, self.rollbacks = int(skipped_steps), int(rollbacks)
        self._due = True

    def event(self, kind: str, message: str, **data: Any) -> None:
        """An event: published, appended to training.log, echoed to the terminal.
        `kind` and `data` must follow the protocol's event table (`protocol.EVENTS`): ProtocolError if not."""
        check_event(kind, data)
        if self.runlog is not None:
            self.runlog.event(kind, message, **data)
        if self.echo is not None:
            self.echo(message)
        self._send("event", {"kind": kind, "message": message, "data": data})

    def validation(self, iteration: int, metrics: dict[str, Any], image: bytes | None = None) -> None:
        fields = {"iteration": iteration, **metrics, "timestamp": time.time()}
        if self.runlog is not None:
            self.runlog.metrics("val", iteration, metrics, ts=fields["timestamp"])
        if image:
            fields.update(image=image, image_format="png")
        self._send("validation", fields)

    # ---- query side (command server thread) ------------------------------
    def latest_status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._latest)

    # ---- telemetry thread -------------------------------------------------
    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued, stop the thread (the publisher itself is closed by its owner)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _status_inputs(self) -> StatusInputs:
        """This moment's status as plain numbers (reads the loss tensors: a device sync)."""
        return StatusInputs(
            state=self.state, stepped=self._stepped, iteration=self.iteration, max_iterations=self.max_iters,
            loss=_scalar(self._loss), learn_rate=float(self._lr), iter_speed=self.speed.speed,
            gpu_memory=gpu_memory_gb(), best_score=self.best_score, skipped_steps=self.skipped_steps,
            rollbacks=self.rollbacks, timestamp=time.time(), epoch=self._epoch, grad_norm=_scalar(self._grad_norm),
            losses=_scalar(self._losses), activity=self._activity, loss_min=_scalar(self._low),
            loss_max=_scalar(self._high), init_from=self.init_from or None)

    def _send(self, topic: str, fields: dict[str, Any]) -> None:
        if self._publisher is None:
            return
        try:
            self._queue.put_nowait((topic, fields))
        except queue.Full:  # nobody can keep up; never stall training
            pass

    def _run(self) -> None:
        last_beat = 0.0
        while True:
            try:
                topic, fields = self._queue.get(timeout=self.cfg.heartbeat_s / 2)
                self._publisher.publish(topic, **fields)
            except queue.Empty:
                if self._stop.is_set():
                    break
            now = time.monotonic()
            if now - last_beat >= self.cfg.heartbeat_s:
                last_beat = now
                run_dir = {} if self.runlog is None else {"run_dir": str(self.runlog.run_dir.resolve())}
                self._publisher.publish("heartbeat", state=self.state, iteration=self.iteration, **run_dir)
                if now - self._last_status >= STATUS_MAX_AGE_S:
                    self._refresh_status()

    def _refresh_status(self) -> None:
        """The latest status at this time and state (no tensor is read on this thread)."""
        with self._lock:
            self._inputs = dataclasses.replace(self._inputs, state=self.state, stepped=self._stepped,
                                               timestamp=time.time())
            self._latest = status_frame(self._inputs)
            status = dict(self._latest)
        self._last_status = time.monotonic()
        self._publisher.publish("status", **status)



def _extreme(current: Any, loss: torch.Tensor | float, pick: Callable[..., torch.Tensor]) -> torch.Tensor:
    """`pick` (torch.fmin/fmax: NaN loses) of the running extreme and this step's loss, on the loss's device."""
    value = loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
    return value if current is None else pick(current, value)


def _scalar(value: Any) -> Any:
    """Plain numbers from tensors (a device sync: only when publishing or logging)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().item())
    if isinstance(value, dict):
        return {k: _scalar(v) for k, v in value.items()}
    return value
