"""Building a run: place it (device, ranks, threads, seed), open its reporting side, choose the
checkpoint to resume from, load the data, build the training state and restore it.

`build_run` returns a `Run` whose parts are all built, or releases what it had built and raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

import ckpt
from trainer import data
from trainer.config import Config, ConfigError
from trainer.device import pick_device
from trainer.report.console import KEYS_HINT, choose_checkpoint, is_tty
from trainer.report.reporting import Reporting
from trainer.train import validation
from trainer.train.batches import BatchStream
from trainer.train.checkpoint import from_checkpoint
from trainer.train.distributed import DistInfo, broadcast_object, cleanup, init_distributed, local_device
from trainer.train.init_from import InitFrom
from trainer.train.replicas import ReplicaGuard
from trainer.train.saving import CheckpointSaver
from trainer.train.snapshot import seed_everything, unwrap
from trainer.train.state import TrainingState


class Run:
    """A built run: where it trains, what it reports through, what it trains and saves."""

    def __init__(self, *, run_dir: Path, device: torch.device, dist: DistInfo, report: Reporting,
                 state: TrainingState, saver: CheckpointSaver, guard: ReplicaGuard, val_loader: DataLoader,
                 start_step: int, validate_first: bool = False) -> None:
        self.run_dir, self.device, self.dist = run_dir, device, dist
        self.report, self.state, self.saver, self.guard = report, state, saver, guard
        self.val_loader = val_loader
        self.start_step = start_step
        self.validate_first = validate_first  # started from --init-from's weights: validate at iteration 0

    def validate_model(self, step: int, cfg: Config) -> tuple[dict[str, Any], bytes | None]:
        """Score the model on the validation set (rank 0); comparison images go to the run folder."""
        out_dir = self.run_dir / "validation" / f"step_{step:07d}"
        result = validation.validate(unwrap(self.state.model), self.val_loader, self.device, out_dir=out_dir,
                                     max_images=cfg.train.val_images, amp=cfg.train.amp,
                                     loss_fn=self.state.loss_fn, metric_space=cfg.train.val_metric_space)
        return result.metrics(), result.comparison_png or None

    def close(self) -> None:
        """Release everything in reverse order of building."""
        self.saver.close()
        self.state.batches.close()
        self.report.close()
        cleanup(self.dist)


def build_run(cfg: Config, opts: Any, get_cfg: Callable[[], Config]) -> Run:
    run_dir = Path(opts.run_dir)
    device, dist = _place(cfg)
    report = None
    try:
        report = Reporting(cfg, opts, main=dist.is_main, get_cfg=get_cfg)
        entry = _choose_resume(run_dir, opts, dist)
        init = _init_unless_resuming(opts.init_from, entry, report)
        start_step = int(entry["step"]) if entry else 0
        report.start(start_step)  # status frames say the resume step while loading
        report.telemetry.event("loading", f"Loading data ({cfg.data.root or 'embedded sample set'})")
        train_ds, val_ds = data.build_datasets(cfg.data)
        if cfg.train.val_limit:
            val_ds = Subset(val_ds, range(min(cfg.train.val_limit, len(val_ds))))
        state = TrainingState(cfg, device, BatchStream(train_ds, cfg, dist), decides=dist.is_main)
        saver = CheckpointSaver(run_dir, report.telemetry, get_cfg)
        if entry is not None:
            saver.resumed_from = Path(entry["path"])
            start_step = _resume(state, saver.resumed_from, report)
        elif init is not None:
            init.apply(state.model)
            state.init_source = init.record()
        report.telemetry.init_from = (state.init_source or {}).get("name")
        state.wrap(dist)
        if report.controller.keys is not None:  # only now: the start prompt above reads stdin too
            report.controller.keys.start()
            report.console.info(KEYS_HINT)
    except BaseException:
        if report is not None:
            report.close()  # sockets, key reader (terminal mode), log files
        cleanup(dist)
        raise
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0)
    guard = ReplicaGuard(state, dist, every=cfg.train.replica_check_every)
    return Run(run_dir=run_dir, device=device, dist=dist, report=report, state=state, saver=saver, guard=guard,
               val_loader=val_loader, start_step=start_step, validate_first=init is not None and entry is None)


def _place(cfg: Config) -> tuple[torch.device, DistInfo]:
    """This process's device and rank; CPU threads; the seed of every random stream."""
    try:
        device = pick_device(cfg.train.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dist = init_distributed(device)
    device = local_device(device, dist)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg.train.cpu_threads, cfg.train.num_workers))
    seed_everything(cfg.train.seed)
    return device, dist


def cpu_threads(requested: int, num_workers: int) -> int:
    """Torch threads per process: as asked, else this process's share of the cores minus its data workers."""
    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user's explicit choice wins
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (os.cpu_count() or 1) // local_procs - num_workers)


def _choose_resume(run_dir: Path, opts: Any, dist: DistInfo) -> dict[str, Any] | None:
    """Rank 0 chooses (asking on a TTY); every rank gets its choice."""
    entry = None
    if dist.is_main:
        interactive = is_tty() if opts.interactive is None else opts.interactive
        ckpt.remove_stale_temp_files(run_dir)  # left by saves that a kill cut short
        entry = choose_checkpoint(run_dir, opts.resume, tty=interactive)
    return broadcast_object(entry, dist)


def _init_unless_resuming(init: InitFrom | None, entry: dict[str, Any] | None, report: Reporting) -> InitFrom | None:
    """Resume rules come first: with a checkpoint to resume from, --init-from is ignored (one line)."""
    if init is None or entry is None:
        return init
    report.console.info(f"--init-from {init.name} ignored: resuming from {Path(entry['path']).name} "
                        "(--resume never starts a new run from the file)")
    return None


def _resume(state: TrainingState, path: Path, report: Reporting) -> int:
    step = from_checkpoint(ckpt.load_checkpoint(path), state, path)
    report.telemetry.best_score = state.best_score
    best = "-" if state.best_score is None else f"{state.best_score:.2%}"
    report.console.info(f"Resumed from {path.name} (step {step}, best quality {best})")
    return step
