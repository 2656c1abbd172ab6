"""The parts of one training run, built from the config: device, model, data, optimiser,
loss, clipping, telemetry, command server, checkpoint writer; and the resume that fills them.

`trainer.loop` drives these parts; this module only assembles and adapts them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

import ckpt
import protocol
from trainer import adaptive, data, losses, models, schedule, validation
from trainer.config import GENERIC_MODEL_KEYS, Config, ConfigError
from trainer.console import KEYS_HINT, Console, ResumeError, choose_checkpoint, is_tty
from trainer.control import ACTIONS, Controller, KeyReader, validate_set_args
from trainer.device import amp_dtype, pick_device
from trainer.distributed import (
    DistInfo,
    ShardedSampler,
    broadcast_object,
    cleanup,
    init_distributed,
    local_device,
    wrap_model,
)
from trainer.runlog import RunLog
from trainer.snapshot import BackgroundWriter, SnapshotBuffers, restore_state, unwrap
from trainer.telemetry import Telemetry


def ignore_stop_signals(_worker_id: int) -> None:
    """Data workers leave Ctrl-C / SIGTERM sent to the whole process group to the main process,
    which stops at a step boundary, saves, and then shuts the workers down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class BatchStream:
    """Endless batches in the resumable sampler's order; `mark_step` commits what an iteration used."""

    def __init__(self, dataset: Any, cfg: Config, dist: DistInfo) -> None:
        self.sampler = data.ResumableRandomSampler(len(dataset), seed=cfg.train.seed)
        self.dataset, self.cfg, self.dist = dataset, cfg, dist
        self._iter: Iterator[Any] | None = None
        self._pending = 0

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def _loader(self) -> Iterator[Any]:
        sampler = ShardedSampler(self.sampler, self.dist) if self.dist.enabled else self.sampler
        workers = self.cfg.train.num_workers
        loader = DataLoader(self.dataset, batch_size=self.cfg.train.batch_size, sampler=sampler,
                            num_workers=workers, pin_memory=torch.cuda.is_available(),
                            persistent_workers=False, generator=torch.Generator(),
                            prefetch_factor=2 if workers else None,
                            worker_init_fn=ignore_stop_signals if workers else None)
        return iter(loader)

    def next(self) -> dict[str, Any]:
        if self._iter is None:
            self._iter = self._loader()
        self._pending += self.cfg.train.batch_size * self.dist.world_size
        return next(self._iter)

    def mark_step(self) -> None:
        self.sampler.advance(self._pending)
        self._pending = 0

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self.close()

    def close(self) -> None:
        """Drop the endless iterator; CPython frees it at once, which stops its worker processes."""
        self._iter, self._pending = None, 0


def cpu_threads(requested: int, num_workers: int) -> int:
    """Torch threads per process: as asked, else this process's share of the cores minus its data workers."""
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user's explicit choice wins
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (os.cpu_count() or 1) // local_procs - num_workers)


class RunParts:
    """Everything the loop touches, built once; `close()` releases it in reverse order."""

    def __init__(self, cfg: Config, opts: Any, get_cfg: Callable[[], Config]) -> None:
        self.get_cfg = get_cfg
        self.run_dir = Path(opts.run_dir)
        try:
            self.device = pick_device(cfg.train.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.dist = init_distributed(self.device)
        self.device = local_device(self.device, self.dist)
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg.train.cpu_threads, cfg.train.num_workers))
        torch.manual_seed(cfg.train.seed)
        self.start_step, self.best_score, self.last_metrics = 0, None, {}
        self.publisher = self.runlog = self.writer = None
        self.controller, self.telemetry, self.console = Controller(), None, None
        try:
            self._build_reporting(cfg, opts)
            self._build_training(cfg)
            entry = self._choose_resume(opts)
            if entry is not None:
                self._resume(Path(entry["path"]))
            self.model = wrap_model(self.model, self.dist, self.device)
            if self.controller.keys is not None:  # only now: the start prompt above reads stdin too
                self.controller.keys.start()
                self.console.info(KEYS_HINT)
        except BaseException:
            self.close()  # sockets, key reader (terminal mode), log files
            raise

    # ---- building ---------------------------------------------------------------
    def _build_reporting(self, cfg: Config, opts: Any) -> None:
        main = self.dist.is_main
        self.console = Console(total=cfg.train.max_iters, log_every_s=cfg.telemetry.log_every_s,
                               enabled=main and opts.console)
        self.runlog = RunLog(self.run_dir, tensorboard=cfg.telemetry.tensorboard) if main else None
        publisher = server = keys = None
        if main:
            security = protocol.SecurityConfig.from_keys_dir(opts.keys) if opts.keys else None
            run_name = f"{self.run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            for endpoint in (opts.pub, opts.rep):
                if endpoint:
                    protocol.check_bind_allowed(endpoint, security, opts.insecure)
            if opts.pub:
                publisher = protocol.Publisher(opts.pub, run_name, security=security)
            if opts.rep:
                server = protocol.CommandServer(
                    opts.rep, queries=self._queries(), actions=ACTIONS, security=security,
                    validators={"set": validate_set_args(self.get_cfg)})
            if opts.console and KeyReader.available():
                keys = KeyReader()
        self.publisher = publisher
        self.telemetry = Telemetry(publisher, cfg.telemetry, max_iters=cfg.train.max_iters,
                                   runlog=self.runlog, echo=self.console.info)
        self.telemetry.start()
        self.controller = Controller(server, keys)
        if server is not None:
            server.start()
        self.writer = BackgroundWriter(on_saved=self._on_saved, on_error=self._on_save_error)
        self.buffers = SnapshotBuffers()

    def _build_training(self, cfg: Config) -> None:
        self.telemetry.event("loading", f"Loading data ({cfg.data.root or 'embedded sample set'})")
        train_ds, val_ds = data.build_datasets(cfg.data)
        if cfg.train.val_limit:
            val_ds = Subset(val_ds, range(min(cfg.train.val_limit, len(val_ds))))
        self.batches = BatchStream(train_ds, cfg, self.dist)
        self.val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
        self.model_name, self.model_kwargs = cfg.model.name, cfg.model.kwargs()
        try:
            self.model = models.build(self.model_name, **self.model_kwargs).to(self.device)
        except ValueError as exc:  # e.g. model.options.mid_channels contradicting model.n_feats
            raise ConfigError(f"model {self.model_name!r}: {exc}") from None
        self.optimizer = schedule.build_optimizer(self.model, cfg.schedule)
        self.dtype = amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        initial = losses.LossWeights(cfg.loss.w_l1, cfg.loss.w_ms, cfg.loss.w_grad, cfg.loss.w_perc)
        self.adaptive = adaptive.AdaptiveLossWeights(initial, cfg.adaptive) if cfg.train.adaptive_loss else None
        self.loss_fn = losses.build_loss(cfg.loss, weights=self.adaptive).to(self.device)
        self.clipper = adaptive.AdaptiveClipper(cfg.clip)
        self.boost = schedule.PlateauBoost(cfg.schedule)

    def _choose_resume(self, opts: Any) -> dict[str, Any] | None:
        if not self.dist.is_main:
            return None if not self.dist.enabled else _shared(None, self.dist)
        interactive = is_tty() if opts.interactive is None else opts.interactive
        ckpt.remove_stale_temp_files(self.run_dir)  # left by saves that a kill cut short
        entry = choose_checkpoint(self.run_dir, opts.resume, tty=interactive)
        return _shared(entry, self.dist) if self.dist.enabled else entry

    def _resume(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path)
        self._check_model(path, state)
        try:
            restore_state(state, model=self.model, optimizer=self.optimizer)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ResumeError(f"cannot resume from {path}: {exc}") from None
        if state.get("scaler_state_dict"):
            self.scaler.load_state_dict(state["scaler_state_dict"])
        train_state = state.get("train_state") or {}
        self.best_score = train_state.get("best_score")
        self.telemetry.best_score = self.best_score
        if train_state.get("clipper"):
            self.clipper.load_state_dict(train_state["clipper"])
        if (state.get("scheduler_state_dict") or {}).get("plateau_boost"):
            self.boost.load_state_dict(state["scheduler_state_dict"]["plateau_boost"])
        if self.adaptive is not None and train_state.get("adaptive_loss"):
            self.adaptive.load_state_dict(train_state["adaptive_loss"])
        if state.get("data_state"):
            self.batches.load_state_dict(state["data_state"])
        self.start_step = int(state["step"])
        self.resumed_from = path
        self.telemetry.iteration = self.start_step
        self.console.info(f"Resumed from {path.name} (step {self.start_step}, best quality "
                          f"{'-' if self.best_score is None else f'{self.best_score:.2%}'})")

    def _check_model(self, path: Path, state: dict[str, Any]) -> None:
        name, kwargs = state.get("model_name"), state.get("model_kwargs")
        if name is None or (name, kwargs) == (self.model_name, self.model_kwargs):
            return
        settings = " ".join(f"--set model.{'' if k in GENERIC_MODEL_KEYS else 'options.'}{k}={v!r}"
                            for k, v in (kwargs or {}).items())
        raise ResumeError(f"{path.name} holds a {name!r} model with {kwargs}, but this run is configured "
                          f"for {self.model_name!r} with {self.model_kwargs}. Resume with the same "
                          f"settings (--set model.name={name} {settings}) or start a new run "
                          f"(--resume never).")

    # ---- used by the loop ---------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """DDP: no gradient all-reduce for the micro-batches before the last one."""
        if skip and hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def lr(self, step: int) -> float:
        """This step's LR from the live schedule settings and the plateau boost."""
        return schedule.lr_at(step, self.get_cfg().schedule, boost_start=self.boost.start)

    def prepare_step(self, step: int) -> None:
        """Per-step model switches, pure functions of the step (BasicVSR++: SPyNet frozen before
        spynet_fix_iter), so a resumed run sets them exactly as the straight one."""
        model = unwrap(self.model)
        if callable(getattr(model, "set_flow_trainable", None)):
            model.set_flow_trainable(step)

    def clip(self, params: Any) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_(list(params), self.clipper.clip)
        self.clipper.observe(norm)
        return norm

    def track_activity(self, due: bool) -> bool:
        """Let the model accumulate per-layer activity on the device during this step (models with it)."""
        model = unwrap(self.model)
        on = due and callable(getattr(model, "activity", None))
        if on or getattr(model, "track_activity", False):
            model.track_activity = on
        return on

    def read_activity(self) -> dict[str, float]:
        """What the tracked step recorded (one device->host copy); tracking goes off again."""
        model = unwrap(self.model)
        model.track_activity = False
        return model.activity()

    def after_step(self, step: int, pred: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        if self.adaptive is None:
            return
        changed = self.adaptive.observe(step, pred, target, loss)
        if self.dist.enabled and self.adaptive.due(step):  # every rank uses rank 0's weights
            self.adaptive.load_state_dict(broadcast_object(self.adaptive.state_dict(), self.dist))
        if changed:
            self.telemetry.event("loss_weights", f"Adaptive loss weights now {self.adaptive.current()}",
                                 step=step, **self.adaptive.current())

    def observe_quality(self, step: int, quality: float) -> None:
        if self.boost.observe(step, quality):
            self.telemetry.event("lr_boost", f"Validation quality on a plateau: LR boost from step {step}",
                                 step=step)

    def run_validation(self, step: int) -> tuple[dict[str, Any], bytes | None]:
        cfg = self.get_cfg()
        out_dir = self.run_dir / "validation" / f"step_{step:07d}"
        result = validation.validate(unwrap(self.model), self.val_loader, self.device, out_dir=out_dir,
                                     max_images=cfg.train.val_images, amp=cfg.train.amp,
                                     loss_fn=self.loss_fn)
        return result.metrics(), result.comparison_png or None

    def extra_state(self) -> dict[str, Any]:
        cfg = self.get_cfg()
        loss = self.last_metrics.get("loss", self.telemetry.latest_status().get("total_loss"))
        quality = self.last_metrics.get("quality")
        return {
            "model_name": self.model_name, "model_kwargs": self.model_kwargs, "config": cfg.to_dict(),
            "metrics": {"quality": quality, "loss": loss, "psnr": self.last_metrics.get("psnr"),
                        "ssim": self.last_metrics.get("ssim"), "ki_quality": quality, "val_loss": loss},
            "scheduler_state_dict": {"kind": "lr_at", "plateau_boost": self.boost.state_dict()},
            "scaler_state_dict": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "train_state": {"best_score": self.best_score, "clipper": self.clipper.state_dict(),
                            "adaptive_loss": self.adaptive.state_dict() if self.adaptive else None},
            "data_state": self.batches.state_dict(),
        }

    def on_config_change(self, cfg: Config) -> None:
        if cfg.clip.start != self.clipper.cfg.start:
            self.clipper.clip = float(cfg.clip.start)
        self.clipper.cfg = cfg.clip

    # ---- checkpoint writer callbacks (writer thread) -------------------------------------
    def _on_saved(self, path: Path, state: dict[str, Any]) -> None:
        cfg = self.get_cfg()
        protect = [getattr(self, "resumed_from", path), path]
        removed = ckpt.prune(self.run_dir, keep_last=cfg.checkpoint.keep_last,
                             keep_best=cfg.checkpoint.keep_best, protect=protect)
        size_mb = round(path.stat().st_size / 1e6, 2) if path.exists() else None
        self.telemetry.event("checkpoint_saved", f"Checkpoint saved: {path.name}", path=str(path),
                             filename=path.name, step=state["step"], type=state["type"],
                             size_mb=size_mb, removed=[p.name for p in removed], **{
                                 k: v for k, v in state["metrics"].items() if k in ("quality", "loss")})

    def _on_save_error(self, path: Path, exc: BaseException) -> None:
        self.telemetry.event("error", f"Checkpoint {path.name} NOT saved: {exc}", path=str(path))

    # ---- queries (command server thread) ----------------------------------------------
    def _queries(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        def checkpoints(_args: dict[str, Any]) -> dict[str, Any]:
            return {"checkpoints": [_json_safe(e) for e in ckpt.list_checkpoints(self.run_dir)]}

        return {
            "status": lambda _a: {"status": self.telemetry.latest_status()},
            "history": lambda a: {"history": self.telemetry.history(a.get("limit")),
                                  "validations": self.telemetry.validations()},
            "checkpoints": checkpoints,
        }

    def close(self) -> None:
        """Release everything built so far (also after a failed build)."""
        parts = (self.writer, self.controller, self.telemetry, self.publisher, self.runlog, self.console,
                 getattr(self, "batches", None))
        for part in parts:
            if part is not None:
                part.close()
        cleanup(self.dist)
        sys.stdout.flush()


def _shared(entry: dict[str, Any] | None, dist: DistInfo) -> dict[str, Any] | None:
    return broadcast_object(entry, dist)


def _json_safe(entry: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in entry.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif isinstance(value, Path):
            value = str(value)
        out[key] = value
    return out


def build_run(cfg: Config, opts: Any, get_cfg: Callable[[], Config]) -> RunParts:
    return RunParts(cfg, opts, get_cfg)
