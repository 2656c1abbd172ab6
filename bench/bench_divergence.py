"""Divergence figures: cost of the non-finite checks per step (on/off side by side), and how far one
injected NaN batch moves a run's final PSNR on the embedded set.

Run with `python -m bench divergence` (env BENCH_DIVERGENCE_ITERS: steps of the spike runs, default 600).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainer import models
from trainer.config import load_config
from trainer.train.adaptive import AdaptiveClipper
from trainer.train.divergence import DivergenceConfig, Guard, optimizer_step

GOAL_PCT = 0.5
SPIKE_GOAL_DB = 0.1


class _Step:
    """One real training step (VSR++ forward/backward, clip, AdamW), with or without the guard."""

    def __init__(self, fused: bool) -> None:
        torch.manual_seed(0)
        cfg = load_config()  # the default recipe's model, batch and crop size
        self.model = models.build(cfg.model.name, **cfg.model.kwargs())
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=fused)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.clipper, self.adaptive = AdaptiveClipper(), None
        b, t, p, s = cfg.train.batch_size, cfg.model.num_frames, cfg.data.patch_size, cfg.model.scale
        self.x, self.y = torch.rand(b, t, 3, p, p), torch.rand(b, 3, p * s, p * s)
        self.guard = Guard(DivergenceConfig())
        self.step = 0

    def run(self, guarded: bool) -> None:
        loss = (self.model(self.x) - self.y).abs().mean()
        if guarded:
            loss = self.guard.poison(loss)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(self.model.parameters()), self.clipper.clip)
        self.clipper.observe(norm)
        bad = self.guard.observe(norm) if guarded else None
        optimizer_step(self.optimizer, self.scaler, bad)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if guarded:
            self.guard.end_step(self.step, self, _Silent(), Path("."))

    def cpu_time(self, guarded: bool) -> float:
        """CPU-seconds of one step in this process (other processes on a busy machine barely move it)."""
        cpu0 = time.process_time()
        self.run(guarded)
        return time.process_time() - cpu0


class _Silent:
    def event(self, *_a, **_k) -> None:
        pass

    def set_divergence(self, *_a) -> None:
        pass


def _checks_alone_us(fused: bool, n: int = 2000) -> float:
    """Microseconds per step of the added work alone: poison, flag, skip decision, amortized host read."""
    guard, loss = Guard(DivergenceConfig()), torch.tensor(0.5, requires_grad=True)
    norm, times = torch.tensor(1.0), []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            guard.poison(loss)
            finite = guard.observe(norm)
            _ = torch.where(finite, 0.0, 1.0) if fused else bool(finite)
            if i % guard.cfg.check_every == 0:
                guard._read()
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def check_cost(steps: int = 60) -> None:
    torch.set_num_threads(1)  # steady CPU times on a shared machine
    for fused in (False, True):
        step = _Step(fused)
        for _ in range(3):  # warm-up
            step.run(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(steps):  # on and off alternate step by step, order flipping, so drift hits both
            for guarded in ((True, False) if i % 2 else (False, True)):
                times[guarded].append(step.cpu_time(guarded))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        alone = _checks_alone_us(fused)
        print(f"{'fused' if fused else 'for-loop'} AdamW, CPU, default recipe step: off {off * 1e3:.1f} ms, "
              f"on {on * 1e3:.1f} ms (median CPU time, {steps} alternating steps each): {(on / off - 1) * 100:+.2f}%; "
              f"the added work alone {alone:.1f} us = {alone / (off * 1e6) * 100:.3f}% of a step "
              f"(goal <= {GOAL_PCT}%)", flush=True)


def _final_psnr(run_dir: Path, iters: int, inject: list[int]) -> float:
    from trainer.train.loop import RunOptions, Trainer

    cfg = load_config(overrides={"train.max_iters": iters, "train.val_every": iters, "train.save_every": iters,
                                 "telemetry.tensorboard": False, "divergence.inject_nan_steps": inject})
    opts = RunOptions(run_dir=run_dir, resume="never", pub=None, rep=None, interactive=False, console=False)
    trainer = Trainer(cfg, opts)
    assert trainer.run() == 0
    return float(trainer.setup.state.last_validation["psnr"])


def spike_figure() -> None:
    iters = int(os.environ.get("BENCH_DIVERGENCE_ITERS", 600))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clean = _final_psnr(Path(tmp) / "clean", iters, [])
        spiked = _final_psnr(Path(tmp) / "spiked", iters, [iters // 2])
    diff = spiked - clean
    print(f"embedded set, default config, {iters} steps: final PSNR {clean:.3f} dB without a spike, "
          f"{spiked:.3f} dB with one NaN batch at step {iters // 2}: {diff:+.3f} dB (goal |diff| <= "
          f"{SPIKE_GOAL_DB} dB) [{time.perf_counter() - t0:.0f} s]", flush=True)


def main() -> None:
    check_cost()
    spike_figure()


if __name__ == "__main__":
    main()
