"""Published BasicVSR++ files (issue 17): parity with BasicSR, fine-tune against scratch, start-up time.

1. A BasicSR-format file of the paper's c64n7 (random weights, perturbed) on 5 real 64x64 frames:
   `just upscale` against BasicSR 1.4.2's own forward (max 8-bit pixel difference), and
   `just evaluate`'s Y-PSNR against BasicSR's calculate_psnr on BasicSR's output.
2. A small model trained by BasicSR's own code (`train_basicsr`), then two runs of the trainer on the same
   data: one with --init-from that file, one from scratch; their first validation PSNR.
3. Seconds from `python -m trainer --init-from FILE` (paper-size file) to its first step, against the
   same command without --init-from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.bench_basicvsrpp import build_basicsr, load_basicsr_reference
from bench.bench_evaluate import basicsr_y, load_basicsr_metrics
from tests.evaluate_support import write_frames
from tests.net_support import free_port
from tests.video_support import shot  # the tests' panning textured shot: real motion

STEPS = 45  # BasicSR training steps for the "released" small model (about +3 dB over bilinear)
TRAIN_SEEDS, HELD_OUT_SEEDS = range(6), (100, 101)  # shots it trains on; shots that only validate


def to_8bit(frames: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] in [0, 1] -> uint8 [T, H, W, 3] as BasicSR's tensor2img (clamp, *255, round)."""
    return frames.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def basicsr_forward(model: torch.nn.Module, lqs: torch.Tensor) -> torch.Tensor:
    """BasicSR's forward() step by step through its own methods, minus its >= 64 px assertion
    (its SPyNet still needs frames over 32 px)."""
    n, t, c, h, w = lqs.shape
    model.cpu_cache = False
    model.check_if_mirror_extended(lqs)
    spatial = model.feat_extract(lqs.view(-1, c, h, w)).view(n, t, -1, h, w)
    feats = {"spatial": [spatial[:, i] for i in range(t)]}
    flows_forward, flows_backward = model.compute_flow(lqs)
    for name in ("backward_1", "forward_1", "backward_2", "forward_2"):
        feats[name] = []
        feats = model.propagate(feats, flows_backward if name.startswith("backward") else flows_forward, name)
    return model.upsample(lqs, feats)


def train_basicsr(model: torch.nn.Module, clips: list[np.ndarray], steps: int, *, lr: float = 2e-3,
                  seed: int = 0) -> torch.nn.Module:
    """Train BasicSR's model briefly as its recipe does (Adam, Charbonnier, SPyNet frozen) on GT
    clips uint8 [T, H, W, 3], LR made by the trainer's default degradation (area, x4)."""
    from trainer.data.images import degrade

    pairs = [(torch.from_numpy(degrade(c, 4, "area")).permute(0, 3, 1, 2).float().div(255),
              torch.from_numpy(c).permute(0, 3, 1, 2).float().div(255)) for c in clips]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    model.spynet.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99))
    for _ in range(steps):
        lq, gt = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
        loss = torch.sqrt((basicsr_forward(model, lq.unsqueeze(0)) - gt.unsqueeze(0)) ** 2 + 1e-6).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def trained_file(cls: type) -> Path:
    """A small BasicVSR++ (c16n1) trained by BasicSR's own code for STEPS steps on TRAIN_SEEDS' shots,
    saved as BasicSR publishes it. Minutes on a busy CPU, so kept in the cache folder (as the embedded
    data set is), written whole or not at all."""
    from bench.bench_basicvsrpp import cache_dir

    cached = cache_dir() / f"basicsr_trained_c16n1_{STEPS}steps_v1.pth"
    if cached.is_file():
        return cached
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BasicSR's torch.meshgrid without indexing=
        torch.manual_seed(0)
        model = build_basicsr(cls, mid_channels=16, num_blocks=1)
        with torch.no_grad():  # as tests/released_support.basicsr_model: offsets start off zero
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        train_basicsr(model, [np.stack(_shot(3, 144, seed)) for seed in TRAIN_SEEDS], STEPS)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
    torch.save({"params": model.state_dict()}, partial)
    os.replace(partial, cached)
    return cached


def write_clips(root: Path) -> Path:
    """ROOT/train (the shots the small model trained on) and ROOT/val (two held-out shots), 144x144 GT."""
    for seed in TRAIN_SEEDS:
        write_frames(root / "train" / f"t{seed}", _shot(3, 144, seed))
    for seed in HELD_OUT_SEEDS:
        write_frames(root / "val" / f"v{seed}", _shot(3, 144, seed))
    return root


def _shot(n: int, size: int, seed: int) -> list[np.ndarray]:
    """n frames size x size of a textured scene panning 4 px a frame."""
    return shot(n, size, size, seed=seed, speed=4)


def parity(cls: type, root: Path) -> None:
    from trainer.evaluate import main as evaluate
    from trainer.upscale import main as upscale

    torch.manual_seed(0)
    ref = build_basicsr(cls, mid_channels=64, num_blocks=7).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    torch.save({"params": ref.state_dict()}, root / "BasicVSRPP_x4_c64n7.pth")
    lr = _shot(5, 64, seed=3)
    gt = [np.asarray(Image.fromarray(f).resize((256, 256), Image.BICUBIC)) for f in _shot(5, 64, seed=3)]
    write_frames(root / "lr" / "clip", lr)
    write_frames(root / "gt" / "clip", gt)
    x = torch.from_numpy(np.stack(lr)).permute(0, 3, 1, 2).float().div(255)[None]
    with torch.no_grad():
        theirs = to_8bit(ref(x)[0])
    upscale(["--checkpoint", str(root / "BasicVSRPP_x4_c64n7.pth"), "--input", str(root / "lr" / "clip"),
             "--output", str(root / "sr"), "--device", "cpu"])
    ours = np.stack([np.asarray(Image.open(p)) for p in sorted((root / "sr").glob("*.png"))])
    diff = np.abs(ours.astype(int) - theirs)
    evaluate(["--checkpoint", str(root / "BasicVSRPP_x4_c64n7.pth"), "--data", str(root / "gt"), "--lr",
              str(root / "lr"), "--device", "cpu", "--json", str(root / "r.json")])
    mine = json.loads((root / "r.json").read_text())["clips"][0]["psnr_y"]
    metrics = load_basicsr_metrics()
    ref_y = np.mean([basicsr_y(metrics, theirs[i], gt[i], 4)[0] for i in range(5)]) if metrics else float("nan")
    print(f"c64n7, 5 frames 64x64 -> 256x256, one chunk: max |upscale - BasicSR forward| = {diff.max()} "
          f"(8-bit levels), {100 * (diff > 0).mean():.4f}% of values differ")
    print(f"Y-PSNR: just evaluate {mine:.4f} dB, BasicSR calculate_psnr on BasicSR's output {ref_y:.4f} dB, "
          f"difference {abs(mine - ref_y):.4f} dB")


def fine_tune_vs_scratch(cls: type, root: Path) -> None:
    from trainer.config import load_config
    from trainer.report.history import run_history
    from trainer.train.init_from import model_settings, read_init_from
    from trainer.train.loop import RunOptions, Trainer

    write_clips(root / "data")
    start = time.perf_counter()
    file = trained_file(cls)
    print(f"BasicSR's code trained the small model (c16n1, {STEPS} steps; cached in {file.parent}): "
          f"{time.perf_counter() - start:.0f} s this time")
    base = {"data.root": str(root / "data"), "model.num_frames": 3, "data.patch_size": 24, "train.batch_size": 1,
            "train.max_iters": 10, "train.val_every": 10, "train.save_every": 10, "train.val_images": 1,
            "train.adaptive_loss": False, "telemetry.tensorboard": False, "train.num_workers": 0,
            "model.name": "basicvsrpp", "model.n_feats": 16, "model.n_blocks": 1, "model.scale": 4,
            "schedule.lr_max": 5e-5, "schedule.warmup_iters": 0, "model.options.spynet_fix_iter": 0}
    runs = {}
    for label, init in (("--init-from", read_init_from(file)), ("scratch", None)):
        cfg = load_config(overrides={**base, **(model_settings(init, load_config(overrides=base)) if init else {})})
        opts = RunOptions(run_dir=root / label.strip("-"), resume="never", pub=None, rep=None, interactive=False,
                          console=False, init_from=init)
        trainer = Trainer(cfg, opts)
        trainer.run()
        runs[label] = run_history(opts.run_dir)["validations"]
    ft, scratch = runs["--init-from"], runs["scratch"]
    print(f"held-out PSNR (RGB, 2 clips 36x36 -> 144x144): bilinear {ft[0]['baseline_psnr']:.2f} dB; "
          f"fine-tune first validation (iteration {ft[0]['iteration']}) {ft[0]['psnr']:.2f} dB, after 10 steps "
          f"{ft[-1]['psnr']:.2f} dB; scratch first validation (iteration {scratch[0]['iteration']}) "
          f"{scratch[0]['psnr']:.2f} dB")


def _first_step_seconds(root: Path, *extra: str) -> tuple[float, float]:
    """Seconds from starting `python -m trainer ...` to its first step's status, and to its first
    validation frame (nan when none came before that step)."""
    import protocol

    pub, rep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "trainer", "--run-dir", str(root / f"run{len(extra)}"), "--pub", pub, "--rep", rep,
           "--no-monitor", "--device", "cpu", "--data", str(root / "data"), "--max-iters", "100000",
           "--set", "model.num_frames=3", "--set", "data.patch_size=16", "--set", "train.batch_size=1",
           "--set", "train.num_workers=0", "--set", "telemetry.tensorboard=false", "--set", "train.val_limit=1",
           "--set", "train.val_images=1", *extra]
    sub = protocol.Subscriber(pub)
    start, validated = time.perf_counter(), float("nan")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 600:
            msg = sub.recv(100)
            if msg and msg[0] == "validation" and validated != validated:
                validated = time.perf_counter() - start
            if msg and msg[0] == "status" and msg[1].get("iteration", 0) >= 1:
                return time.perf_counter() - start, validated
        return float("nan"), validated
    finally:
        proc.terminate()
        proc.wait(30)
        sub.close()


def time_to_first_step(root: Path) -> None:
    from trainer.models import build
    from trainer.train.init_from import read_init_from

    file = root / "BasicVSRPP_x4_c64n7.pth"
    start = time.perf_counter()
    read_init_from(file)
    read_s = time.perf_counter() - start
    paper = ["--set", "model.name=basicvsrpp", "--set", "model.n_feats=64", "--set", "model.n_blocks=7",
             "--set", "model.scale=4"]
    init, validated = _first_step_seconds(root, "--init-from", str(file))
    scratch, _ = _first_step_seconds(root, *paper)
    size = sum(p.numel() for p in build("basicvsrpp").parameters()) / 1e6
    print(f"c64n7 ({size:.1f} M parameters, {file.stat().st_size / 2**20:.1f} MiB file): reading and checking the "
          f"file {read_s:.2f} s; process start to first step: --init-from {init:.1f} s (its iteration-0 validation "
          f"on 1 clip done at {validated:.1f} s), same model from scratch {scratch:.1f} s")


def main() -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore", UserWarning)  # BasicSR's torch.meshgrid without indexing=
    cls = load_basicsr_reference()
    if cls is None:
        print("BasicSR reference unavailable (pip download basicsr==1.4.2 failed): nothing to compare")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parity(cls, root)
        fine_tune_vs_scratch(cls, root)
        time_to_first_step(root)


if __name__ == "__main__":
    main()
