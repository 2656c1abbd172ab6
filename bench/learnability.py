"""Learnability of the embedded set: a minimal training loop built from the trainer's pieces.

`python -m bench.learnability [--iters N --n-feats F --n-blocks B --batch B --lr LR ...]`
trains the small default model on the embedded set on CPU and prints iterations, wall time,
throughput, the share of step time spent waiting for data, and validation PSNR/SSIM of the model
next to the bilinear baseline (the goal: at least +1.0 dB in under 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from trainer.data import DataConfig, ResumableRandomSampler, build_datasets
from trainer.models import build
from trainer.train.adaptive import AdaptiveClipper
from trainer.train.losses import build_loss
from trainer.train.schedule import ScheduleConfig, build_optimizer, lr_at, set_lr
from trainer.train.validation import ValidationResult, validate


@dataclass
class RunConfig:
    iters: int = 600
    n_feats: int = 32
    n_blocks: int = 4
    batch: int = 16
    patch: int = 16  # LR crop side; small crops = more updates per second, the model is local
    lr: float = 2e-3
    warmup: int = 30
    workers: int = 1
    threads: int = 0  # 0 = torch default
    val_every: int = 0  # 0 = only at the end
    seed: int = 0


@dataclass
class RunResult:
    iters: int
    train_s: float
    val_s: float
    data_wait_share: float
    samples_per_s: float
    val: ValidationResult


def _batches(cfg: RunConfig, train_ds) -> tuple[ResumableRandomSampler, DataLoader]:
    sampler = ResumableRandomSampler(len(train_ds), seed=cfg.seed)
    loader = DataLoader(train_ds, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=torch.cuda.is_available())
    return sampler, loader


def run(cfg: RunConfig, log=print) -> RunResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_ds, val_ds = build_datasets(DataConfig(patch_size=cfg.patch, seed=cfg.seed))
    sampler, loader = _batches(cfg, train_ds)
    val_loader = DataLoader(val_ds, batch_size=8)
    model = build("vsrpp", num_frames=5, n_feats=cfg.n_feats, n_blocks=cfg.n_blocks, scale=3)
    sched = ScheduleConfig(lr_max=cfg.lr, lr_min=cfg.lr / 100, warmup_iters=cfg.warmup, max_iters=cfg.iters)
    optimizer, loss_fn, clipper = build_optimizer(model, sched), build_loss(), AdaptiveClipper()
    batches, wait, val_s = iter(loader), 0.0, 0.0
    start = time.perf_counter()
    for step in range(cfg.iters):
        # data
        t0 = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t0
        # forward / backward / clip / step
        set_lr(optimizer, lr_at(step, sched))
        total, _ = loss_fn(model(batch["lr"]), batch["gt"])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        clipper.observe(torch.nn.utils.clip_grad_norm_(model.parameters(), clipper.clip))
        optimizer.step()
        sampler.advance(len(batch["lr"]))
        if cfg.val_every and (step + 1) % cfg.val_every == 0 and step + 1 < cfg.iters:
            t0 = time.perf_counter()
            v = validate(model, val_loader, "cpu")
            val_s += time.perf_counter() - t0
            log(f"  step {step + 1:5d}  loss {total.item():.4f}  val PSNR {v.psnr:.2f} "
                f"(bilinear {v.baseline_psnr:.2f}, gain {v.psnr_gain:+.2f} dB)  {time.perf_counter() - start:.0f} s")
    train_s = time.perf_counter() - start - val_s
    t0 = time.perf_counter()
    result = validate(model, val_loader, "cpu")
    val_s += time.perf_counter() - t0
    return RunResult(cfg.iters, train_s, val_s, wait / train_s, cfg.iters * cfg.batch / train_s, result)


def report(cfg: RunConfig, r: RunResult) -> None:
    v = r.val
    print(f"config: n_feats={cfg.n_feats} n_blocks={cfg.n_blocks} batch={cfg.batch} patch={cfg.patch} "
          f"lr={cfg.lr:g} warmup={cfg.warmup} iters={cfg.iters} workers={cfg.workers} "
          f"threads={torch.get_num_threads()}")
    print(f"wall: train {r.train_s:.0f} s + validation {r.val_s:.1f} s = {r.train_s + r.val_s:.0f} s")
    print(f"throughput: {r.samples_per_s:.1f} samples/s = {r.samples_per_s * 5:.0f} LR frames/s in, "
          f"{r.samples_per_s:.1f} HR frames/s out; data wait {100 * r.data_wait_share:.1f}% of step time")
    print(f"val ({v.n_images} images): PSNR model {v.psnr:.2f} dB vs bilinear {v.baseline_psnr:.2f} dB "
          f"(gain {v.psnr_gain:+.2f} dB); SSIM {v.ssim:.4f} vs {v.baseline_ssim:.4f}; "
          f"quality {v.quality:.3f} vs {v.baseline_quality:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(RunConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    cfg = RunConfig(**vars(parser.parse_args(argv)))
    report(cfg, run(cfg))


if __name__ == "__main__":
    main()
