"""The prepared GPU check: CUDA training steps, AMP, channels_last, torch.compile, memory, frames/s.

Run on a CUDA machine with `python -m bench cuda` (one call, about 3-5 minutes on an H200).
On a machine without CUDA it says so and returns. Every figure is printed side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from trainer import models
from trainer.train.losses import build_loss

VSRPP_DEFAULT = {"num_frames": 5, "n_feats": 128, "n_blocks": 32, "scale": 3}  # the original's 10.88 M
BASICVSRPP = {"mid_channels": 64, "num_blocks": 7, "scale": 4}  # the published network


def _timed(fn: Callable[[], object], warmup: int = 3, reps: int = 10) -> float:
    """Median seconds per call, with CUDA synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _train_step_fn(model: torch.nn.Module, lr: torch.Tensor, gt: torch.Tensor, dtype: torch.dtype | None,
                   channels_last: bool) -> Callable[[], object]:
    loss_fn = build_loss().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(lr)
            loss, _ = loss_fn(out.float(), gt)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def vsrpp_training(batch: int = 16, lr_side: int = 64) -> None:
    print(f"vsrpp {VSRPP_DEFAULT}, batch {batch}, LR {lr_side}px -> x3; train step (ms) and peak memory (GB)")
    lr = torch.rand(batch, 5, 3, lr_side, lr_side, device="cuda")
    gt = torch.rand(batch, 3, 3 * lr_side, 3 * lr_side, device="cuda")
    rows = [("fp32", None, False, False), ("bf16", torch.bfloat16, False, False),
            ("fp16+scaler", torch.float16, False, False), ("bf16 channels_last", torch.bfloat16, True, False),
            ("bf16 compiled", torch.bfloat16, False, True)]
    base = None
    for name, dtype, channels_last, compiled in rows:
        torch.manual_seed(0)
        model = models.build("vsrpp", **VSRPP_DEFAULT).cuda()
        if compiled:
            model = torch.compile(model)
        torch.cuda.reset_peak_memory_stats()
        try:
            t = _timed(_train_step_fn(model, lr, gt, dtype, channels_last))
        except Exception as exc:  # a variant that fails is reported, the others still run
            print(f"  {name:22s} failed: {type(exc).__name__}: {exc}")
            continue
        base = base or t
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"  {name:22s} {t * 1e3:8.1f} ms  {batch * 5 / t:8.0f} LR frames/s  "
              f"{base / t:5.2f}x vs fp32  peak {peak:5.2f} GB")


def basicvsrpp_inference(frames: int = 20) -> None:
    print(f"basicvsrpp {BASICVSRPP}: {frames} frames 320x180 -> x4, forward (ms per frame)")
    lqs = torch.rand(1, frames, 3, 180, 320, device="cuda")
    model = models.build("basicvsrpp", **BASICVSRPP).cuda().eval()
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        def forward(dtype: torch.dtype | None = dtype) -> None:
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                model(lqs)
        torch.cuda.reset_peak_memory_stats()
        t = _timed(forward, warmup=1, reps=3)
        print(f"  {name:6s} {t / frames * 1e3:7.1f} ms/frame  {frames / t:6.1f} frames/s  "
              f"peak {torch.cuda.max_memory_allocated() / 2**30:5.2f} GB   (paper: 77 ms/frame on a V100)")


def main() -> None:
    if not torch.cuda.is_available():
        print("CUDA is not available on this machine: the GPU check was skipped.")
        return
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    torch.backends.cudnn.benchmark = True
    vsrpp_training()
    basicvsrpp_inference()


if __name__ == "__main__":
    main()
