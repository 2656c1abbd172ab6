"""Model/data figures: parameter counts, training throughput, data-wait share, activity overhead.

`python -m bench model`. The learnability figure (val PSNR gain over bilinear within the default
budget) takes minutes: `python -m bench.learnability` (defaults = the recommended config).
"""

from __future__ import annotations

import time

import torch

from bench.learnability import RunConfig, run
from trainer.models import build
from trainer.train.losses import build_loss

ORIGINAL_SIZES = [(128, 32, 10.88), (64, 24, 2.1), (96, 24, 4.8), (160, 32, 17.0), (192, 32, 24.5)]


def parameter_counts() -> None:
    print("parameters (n_feats/n_blocks: ours vs the original's):")
    for nf, nb, original in ORIGINAL_SIZES:
        with torch.device("meta"):
            model = build("vsrpp", n_feats=nf, n_blocks=nb, scale=3)
        print(f"  {nf:3d}/{nb:2d}: {sum(p.numel() for p in model.parameters()) / 1e6:6.2f} M  vs {original} M")


def activity_overhead(cfg: RunConfig, rounds: int = 6) -> None:
    """Interleaved forward+backward timings with tracking on and off; the fastest of each."""
    model, loss_fn = build("vsrpp", n_feats=cfg.n_feats, n_blocks=cfg.n_blocks), build_loss()
    x, y = torch.rand(cfg.batch, 5, 3, cfg.patch, cfg.patch), torch.rand(cfg.batch, 3, 3 * cfg.patch, 3 * cfg.patch)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(rounds):
        for track in (False, True):
            model.track_activity = track
            t0 = time.perf_counter()
            loss_fn(model(x), y)[0].backward()
            best[track] = min(best[track], time.perf_counter() - t0)
    model.activity()
    print(f"activity tracking: step {best[True] * 1000:.0f} ms with vs {best[False] * 1000:.0f} ms without "
          f"(ratio {best[True] / best[False]:.2f})")


def throughput(cfg: RunConfig) -> None:
    for threads, workers in ((1, 0), (1, 1), (2, 1)):
        r = run(RunConfig(**{**vars(cfg), "iters": 40, "workers": workers, "threads": threads}), log=lambda *_: None)
        print(f"  torch threads={threads} workers={workers}: {r.samples_per_s:5.1f} samples/s "
              f"({5 * r.samples_per_s:5.0f} LR frames/s in), data wait {100 * r.data_wait_share:4.1f}% of step time")


def main() -> None:
    cfg = RunConfig()
    parameter_counts()
    print(f"default config: n_feats={cfg.n_feats} n_blocks={cfg.n_blocks} batch={cfg.batch} "
          f"patch={cfg.patch} (LR) on CPU, {torch.get_num_threads()} threads")
    activity_overhead(cfg)
    print("training throughput (40 steps, DataLoader, embedded set):")
    throughput(cfg)


if __name__ == "__main__":
    main()
