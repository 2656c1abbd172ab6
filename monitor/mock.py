"""A mock trainer speaking the real wire protocol: for `just demo`, tests and benchmarks."""

from __future__ import annotations

import io
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from ckpt.naming import checkpoint_name
from protocol import ACTION_COMMANDS, HISTORY_FIELDS, CommandName, CommandServer, Publisher, SecurityConfig

from .store import bucketed


def quality(psnr: float, ssim: float) -> float:
    return min(max(0.7 * min(max((psnr - 20) / 30, 0.0), 1.0) + 0.3 * ssim, 0.0), 1.0)


def comparison_png(iteration: int, size: int = 96) -> bytes:
    """LR | model | GT panels of a synthetic scene; the model panel sharpens as training goes on."""
    gt = Image.new("RGB", (size, size), (20, 30, 60))
    draw = ImageDraw.Draw(gt)
    for i in range(0, size, 8):
        draw.line([(i, 0), (size - i, size)], fill=(220, 120 + i, 60), width=2)
    draw.ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline=(250, 250, 250), width=3)
    lr = gt.resize((size // 3, size // 3), Image.BILINEAR).resize((size, size), Image.NEAREST)
    blur = max(0.3, 2.5 * math.exp(-iteration / 3000))
    model = gt.filter(ImageFilter.GaussianBlur(blur))
    sheet = Image.new("RGB", (3 * size + 4, size), (0, 0, 0))
    for k, panel in enumerate((lr, model, gt)):
        sheet.paste(panel, (k * (size + 2), 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


MOCK_LAYERS = ("feat", "backward.fuse", "backward.trunk", "forward.fuse", "forward.trunk", "fusion",
               "upsample", "output")


def mock_activity(iteration: int) -> dict[str, float]:
    """Plausible per-layer mean |output| values that drift slowly with training."""
    return {name: 0.05 + 0.4 * abs(math.sin(i + iteration / 3000)) for i, name in enumerate(MOCK_LAYERS)}


class MockTrainer:
    """Publishes status/heartbeat/event/validation frames and obeys commands, on its own thread.

    Endpoints default to free loopback ports (`tcp://127.0.0.1:*`); read `pub_endpoint`
    and `rep_endpoint` after `start()`.
    """

    def __init__(self, run: str = "demo", *, pub: str = "tcp://127.0.0.1:*",
                 rep: str = "tcp://127.0.0.1:*", status_hz: float = 8.0, speed: float = 12.0,
                 max_iterations: int = 100_000, validate_every: int = 0, validate_s: float = 2.0,
                 start_iteration: int = 0, metric_space: str = "rgb", spike_at: int = 0,
                 security: SecurityConfig | None = None, run_id: str | None = None,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.run, self.status_hz, self.speed = run, status_hz, speed
        self.max_iterations, self.validate_every, self.validate_s = max_iterations, validate_every, validate_s
        self.iteration = float(start_iteration)
        self.paused = False
        self.validating_until: float | None = None
        self.best_score: float | None = None
        self.metric_space = metric_space
        self.skipped_steps = self.rollbacks = 0
        self.spike_at = spike_at  # act out a loss spike (`diverge`) when the run passes this step; 0: never
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self.run_id = run_id  # sent in every frame's envelope when set
        # its record since iteration 0: `history` (a resumed mock is given the record up to its resume step)
        self._history: list[dict[str, Any]] = [h for h in history or [] if h["iteration"] <= start_iteration]
        self._validations: deque[dict[str, Any]] = deque(maxlen=100)
        self._checkpoints: list[dict[str, Any]] = []
        self._publisher = Publisher(pub, run, security=security, run_id=run_id)
        self._server = CommandServer(rep, actions=ACTION_COMMANDS, security=security, queries={
            CommandName.STATUS: lambda a: {"status": self.status()},
            CommandName.HISTORY: self._history_reply,
            CommandName.CHECKPOINTS: lambda a: {"checkpoints": list(self._checkpoints)},
        })
        # what each protocol action does here, given the step and the action's args (a test checks them all)
        self.handlers: dict[str, Callable[[int, dict[str, Any]], None]] = {
            CommandName.VALIDATE: self._on_validate, CommandName.PAUSE: self._on_pause,
            CommandName.RESUME: self._on_resume, CommandName.SAVE: lambda _step, _args: self._save("regular"),
            CommandName.STOP: self._on_stop, CommandName.SET: self._on_set,
        }
        self.pub_endpoint, self.rep_endpoint = self._publisher.endpoint, self._server.endpoint
        self._thread = threading.Thread(target=self._loop, name=f"mock-trainer {run}", daemon=True)

    # ---- lifecycle ---------------------------------------------------------
    def start(self) -> MockTrainer:
        self._server.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._server.close()
        self._publisher.close()

    def __enter__(self) -> MockTrainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what it reports ---------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Its whole record, one point a second since iteration 0 (what `history` thins)."""
        with self._lock:
            return list(self._history)

    def _recorded(self) -> int:
        with self._lock:
            return self._history[-1]["iteration"] if self._history else -1

    def _history_reply(self, args: dict[str, Any]) -> dict[str, Any]:
        """`history` as the trainer answers it: at most `points` points over [from, to], every validation
        in range; the old `limit` arg: the last `limit` points."""
        records = self.records()
        end = records[-1]["iteration"] if records else 0
        first, last = int(args.get("from") or 0), int(args.get("to", end))
        if args.get("limit") and "points" not in args:
            return {"history": records[-int(args["limit"]):], "validations": list(self._validations)}
        points = bucketed(records, int(args.get("points") or 2000), first, last)
        validations = [v for v in self._validations if first <= v["iteration"] <= last]
        return {"run": self.run, "run_id": self.run_id, "history": points, "validations": validations,
                "from": first, "to": last, "last_iteration": end}

    def status(self) -> dict[str, Any]:
        with self._lock:
            it = int(self.iteration)
            validating = self.validating_until is not None
            speed = 0.0 if self.paused or validating else self.speed * (1 + 0.05 * random.random())
            loss = 0.02 + 0.3 * math.exp(-it / 2500) + 0.004 * random.random()
            lr = 1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * min(it / self.max_iterations, 1)))
            remaining = (self.max_iterations - it) / self.speed
            return {
                "iteration": it, "total_loss": loss, "learn_rate": lr, "time_remaining": hms(remaining),
                "iter_speed": round(speed, 3), "gpu_memory": 7.8 + 0.1 * random.random(),
                "best_score": self.best_score, "is_validating": validating, "is_training": True,
                "timestamp": time.time(), "is_paused": self.paused, "max_iterations": self.max_iterations,
                "state": "paused" if self.paused else "validating" if validating else "training",
                "activity": mock_activity(it), "skipped_steps": self.skipped_steps, "rollbacks": self.rollbacks,
                "loss_min": loss * 0.9, "loss_max": loss * 1.1,
            }

    def diverge(self, skipped: int, rollback: bool = False) -> None:
        """Act out a loss spike: `skipped` non-finite steps skipped, then maybe a rollback, as the
        real trainer reports them (events, and the counters in every later status)."""
        step = int(self.iteration)
        with self._lock:
            self.skipped_steps += skipped
            self.rollbacks += rollback
        self._event("nan_skipped", f"Skipped non-finite steps up to step {step} ({self.skipped_steps} so far)",
                    step=step, skipped=self.skipped_steps, reason="loss is not finite")
        if rollback:
            self._event("diverged", f"Training diverged at step {step}: rolling back", step=step,
                        restore_step=max(step - 100, 0))
            self._event("recovered", f"Recovered at step {step}", step=step, from_step=max(step - 100, 0),
                        rollbacks=self.rollbacks)

    # ---- the loop ----------------------------------------------------------
    def _loop(self) -> None:
        tick, last_beat, last_point = 1.0 / self.status_hz, 0.0, 0.0
        self._event("started", f"mock run {self.run!r} started", step=int(self.iteration))
        while not self.stopped.wait(tick):
            for command in self._server.drain():
                self.handlers[command.name](int(self.iteration), dict(command.args or {}))
            if self.stopped.is_set():
                break
            self._advance(tick)
            if self.spike_at and self.iteration >= self.spike_at:
                self.spike_at = 0
                self.diverge(5, rollback=True)
            status = self.status()
            self._publisher.publish("status", **status)
            now = time.monotonic()
            if now - last_point >= 1.0 and status["iteration"] > self._recorded():  # a record per new step
                last_point = now
                with self._lock:
                    self._history.append({k: status[k] for k in HISTORY_FIELDS if k in status})
            if now - last_beat >= 1.0:
                last_beat = now
                self._publisher.publish("heartbeat", state=status["state"], iteration=status["iteration"])

    def _advance(self, dt: float) -> None:
        with self._lock:
            before = int(self.iteration)
            if self.validating_until is not None:
                if time.monotonic() >= self.validating_until:
                    self.validating_until = None
                    self._finish_validation()
            elif not self.paused:
                self.iteration = min(self.iteration + self.speed * dt, self.max_iterations)
            every = self.validate_every
            if every and int(self.iteration) // every > before // every:
                self.validating_until = time.monotonic() + self.validate_s

    def _on_validate(self, step: int, _args: dict[str, Any]) -> None:
        with self._lock:
            self.validating_until = time.monotonic() + self.validate_s
        self._event("validation_started", f"Validating at step {step}", step=step)

    def _on_pause(self, step: int, _args: dict[str, Any]) -> None:
        with self._lock:
            self.paused = True
        self._event("paused", f"Paused at step {step}", step=step)

    def _on_resume(self, step: int, _args: dict[str, Any]) -> None:
        with self._lock:
            self.paused = False
        self._event("resumed", f"Resumed at step {step}", step=step)

    def _on_stop(self, step: int, _args: dict[str, Any]) -> None:
        self._event("stopping", f"Stopping at step {step}: stop requested", step=step)
        self.stopped.set()

    def _on_set(self, _step: int, args: dict[str, Any]) -> None:  # a mock has no knobs: it says what it was told
        self._event("set", f"Set {args['key']} = {args['value']!r}", key=args["key"], value=args["value"])

    def _finish_validation(self) -> None:
        it = int(self.iteration)
        psnr = 24.0 + 9.0 * (1 - math.exp(-it / 1500)) + random.random() * 0.2
        ssim = 0.76 + 0.16 * (1 - math.exp(-it / 1500))
        metrics = {"iteration": it, "psnr": psnr, "ssim": ssim, "quality": quality(psnr, ssim),
                   "baseline_psnr": 26.1, "baseline_ssim": 0.78, "baseline_quality": quality(26.1, 0.78),
                   "metric_space": self.metric_space}
        metrics.update(improvement=metrics["quality"] - metrics["baseline_quality"], timestamp=time.time())
        self._validations.append(dict(metrics))
        if self.best_score is None or metrics["quality"] > self.best_score:
            self.best_score = metrics["quality"]
            self._save("best")
        self._publisher.publish("validation", **metrics, image=comparison_png(it), image_format="png")

    def _save(self, kind: str) -> None:
        it = int(self.iteration)
        entry = {"filename": checkpoint_name(it, None if kind == "regular" else kind), "step": it,
                 "type": kind, "quality": self.best_score, "loss": 0.02 + 0.3 * math.exp(-it / 2500),
                 "size_mb": 41.6, "date_str": time.strftime("%Y-%m-%d %H:%M"), "status": "ok"}
        self._checkpoints.append(entry)
        self._event("checkpoint_saved", f"Checkpoint saved: {entry['filename']}", filename=entry["filename"],
                    path=entry["filename"], type=kind, step=it)

    def _event(self, kind: str, message: str, **data: Any) -> None:
        self._publisher.publish("event", kind=kind, message=message, data=data)
