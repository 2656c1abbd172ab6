"""`trainer.evaluate` against BasicSR 1.4.2: Y-channel PSNR/SSIM differences, and evaluate's frames/s.

BasicSR's own metric file (basicsr/metrics/psnr_ssim.py, with metric_util.py and color_util.py) is
read from its PyPI sdist, cached as for the BasicVSR++ parity check (bench_basicvsrpp), with a
stand-in for its registry; its code runs unchanged (it needs cv2: opencv-python-headless in dev).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from bench.bench_basicvsrpp import _load_file, _module, _Registry, basicsr_sdist, extract_files
from trainer.metrics import psnr, ssim, to_8bit

_METRIC_FILES = ("basicsr/metrics/psnr_ssim.py", "basicsr/metrics/metric_util.py", "basicsr/utils/color_util.py")


def load_basicsr_metrics(fetch: bool = True) -> types.ModuleType | None:
    """BasicSR 1.4.2's psnr_ssim module (calculate_psnr, calculate_ssim); None without sdist or cv2."""
    sdist = basicsr_sdist(fetch)
    try:
        import cv2  # noqa: F401  (BasicSR's SSIM filters with it)
    except ImportError:
        return None
    if sdist is None:
        return None
    src = extract_files(sdist, set(_METRIC_FILES))
    saved = dict(sys.modules)
    try:
        sys.modules.update({
            "basicsr": _module("basicsr", __path__=[str(src)]),
            "basicsr.utils.registry": _module("basicsr.utils.registry", METRIC_REGISTRY=_Registry()),
            "basicsr.metrics": _module("basicsr.metrics", __path__=[str(src / "metrics")]),
        })
        color = _load_file("basicsr.utils.color_util", src / "utils" / "color_util.py")
        sys.modules["basicsr.utils"] = _module("basicsr.utils", __path__=[], bgr2ycbcr=color.bgr2ycbcr)
        _load_file("basicsr.metrics.metric_util", src / "metrics" / "metric_util.py")
        return _load_file("basicsr.metrics.psnr_ssim", src / "metrics" / "psnr_ssim.py")
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def load_basicsr_imresize(fetch: bool = True):
    """BasicSR 1.4.2's port of MATLAB's imresize (basicsr/utils/matlab_functions.py); None without sdist."""
    sdist = basicsr_sdist(fetch)
    if sdist is None:
        return None
    src = extract_files(sdist, {"basicsr/utils/matlab_functions.py"})
    return _load_file("basicsr_matlab_functions", src / "utils" / "matlab_functions.py").imresize


def basicsr_bicubic_up(imresize, lr: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's bicubic resize of uint8 [h, w, 3] by `scale` with BasicSR's port, rounded to uint8."""
    return np.clip(np.round(imresize(lr.astype(np.float64) / 255, scale) * 255), 0, 255).astype(np.uint8)


def basicsr_y(metrics: types.ModuleType, sr: np.ndarray, gt: np.ndarray, crop: int) -> tuple[float, float]:
    """BasicSR's (PSNR, SSIM) with test_y_channel=True of uint8 RGB HxWx3 frames (it reads BGR, as cv2 does)."""
    a, b = sr[..., ::-1], gt[..., ::-1]
    return (float(metrics.calculate_psnr(a, b, crop, test_y_channel=True)),
            float(metrics.calculate_ssim(a, b, crop, test_y_channel=True)))


def _ours(sr: np.ndarray, gt: np.ndarray, crop: int, space: str) -> tuple[float, float]:
    a, b = (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].double() / 255 for x in (sr, gt))
    return psnr(a, b, crop_border=crop, space=space), ssim(a, b, crop_border=crop, space=space)


def ours_y(sr: np.ndarray, gt: np.ndarray, crop: int) -> tuple[float, float]:
    """Our Y (PSNR, SSIM) of the same uint8 RGB frames."""
    return _ours(sr, gt, crop, "y")


def ours_rgb(sr: np.ndarray, gt: np.ndarray, crop: int) -> tuple[float, float]:
    """Our RGB (PSNR, SSIM) of uint8 frames (BasicSR's without test_y_channel: channel order is moot)."""
    return _ours(sr, gt, crop, "rgb")


def degraded_pair(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random GT and a blurred, noisy 8-bit 'output' of it (PSNR in the 25-35 dB range)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic")
    sr = torch.nn.functional.avg_pool2d(gt, 3, 1, 1) + 0.02 * torch.randn(1, 3, h, w, generator=g)
    to_u8 = lambda x: (to_8bit(x)[0] * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    return to_u8(sr), to_u8(gt)


def max_differences(metrics: types.ModuleType, pairs: int = 8, size: tuple[int, int] = (144, 176),
                    crop: int = 4) -> tuple[float, float]:
    """Largest |ours - BasicSR| of Y PSNR (dB) and Y SSIM over `pairs` random frame pairs."""
    dp = ds = 0.0
    for seed in range(pairs):
        sr, gt = degraded_pair(seed, *size)
        (p0, s0), (p1, s1) = basicsr_y(metrics, sr, gt, crop), ours_y(sr, gt, crop)
        dp, ds = max(dp, abs(p0 - p1)), max(ds, abs(s0 - s1))
    return dp, ds


def bicubic_differences(imresize, pairs: int = 4, size: tuple[int, int] = (144, 176)) -> tuple[int, float]:
    """Our bicubic baseline vs MATLAB's imresize (BasicSR's port) at x2, x3, x4: the largest pixel
    difference (8-bit levels) and the largest Y-PSNR difference against GT (dB)."""
    from trainer.infer.scoring import upscale_baseline

    levels, db = 0, 0.0
    for seed in range(pairs):
        gt = degraded_pair(seed, *size)[1]
        for scale in (2, 3, 4):
            g = gt[: size[0] // scale * scale, : size[1] // scale * scale]
            lr = basicsr_bicubic_up(imresize, g, 1 / scale)
            ours, ref = upscale_baseline(lr, scale, "bicubic"), basicsr_bicubic_up(imresize, lr, scale)
            levels = max(levels, int(np.abs(ours.astype(int) - ref).max()))
            db = max(db, abs(ours_y(ours, g, scale)[0] - ours_y(ref, g, scale)[0]))
    return levels, db


# ---- speed and memory ------------------------------------------------------------------------------


def _write_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:08d}.png", compress_level=1)
    return folder


def _bvpp_checkpoint(path: Path) -> tuple[Path, dict]:
    """A small BasicVSR++ x4 (mid 16, 1 block: BasicSR's class takes these weights as they are)."""
    from ckpt import save_checkpoint
    from trainer.models import build

    kwargs = {"num_frames": 5, "mid_channels": 16, "num_blocks": 1, "scale": 4}
    torch.manual_seed(0)
    state = build("basicvsrpp", **kwargs).state_dict()
    save_checkpoint(path, {"step": 1, "model_name": "basicvsrpp", "model_kwargs": kwargs, "model_state_dict": state})
    return path, state


def basicsr_pipeline(model: torch.nn.Module, metrics: types.ModuleType, lr_dir: Path, gt_dir: Path,
                     crop: int) -> list[tuple[float, ...]]:
    """BasicSR's video test, as VideoRecurrentModel runs it: read_img_seq (cv2, float32 /255, BGR->RGB),
    the whole clip through the model, tensor2img (clamp, RGB->BGR, x255, round), then its
    calculate_psnr / calculate_ssim on RGB and Y for each frame against the cv2-read GT."""
    import cv2

    lq = [cv2.imread(str(p)).astype(np.float32) / 255.0 for p in sorted(lr_dir.iterdir())]
    x = torch.stack([torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)) for f in lq])[None]
    with torch.no_grad():
        out = model(x)[0]
    scores = []
    for frame, gt_path in zip(out, sorted(gt_dir.iterdir()), strict=True):
        sr = cv2.cvtColor(frame.clamp(0, 1).numpy().transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
        sr, gt = (sr * 255.0).round().astype(np.uint8), cv2.imread(str(gt_path))
        scores.append((metrics.calculate_psnr(sr, gt, crop), metrics.calculate_ssim(sr, gt, crop),
                       metrics.calculate_psnr(sr, gt, crop, test_y_channel=True),
                       metrics.calculate_ssim(sr, gt, crop, test_y_channel=True)))
    return scores


def pipeline_fps(metrics: types.ModuleType, frames: int = 6, size: tuple[int, int] = (256, 256)) -> None:
    """`python -m trainer.evaluate --lr` (in-process, end to end: three candidates) against BasicSR's
    test pipeline (the model's frames only), the same BasicVSR++ weights and frames, best of 3 rounds."""
    from bench.bench_basicvsrpp import _best_of, build_basicsr, load_basicsr_reference
    from trainer.evaluate import main as evaluate

    ref_cls = load_basicsr_reference()
    if ref_cls is None:
        print("pipeline comparison skipped: BasicSR's architecture unavailable")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt, state = _bvpp_checkpoint(root / "m.pth")
        ref = build_basicsr(ref_cls, mid_channels=16, num_blocks=1).eval()
        ref.load_state_dict(state, strict=True)
        gts = [degraded_pair(i, *size)[1] for i in range(frames)]
        gt_dir = _write_clip(root / "gt" / "clip", gts)
        lr_dir = _write_clip(root / "lr" / "clip", [basicsr_bicubic_up(load_basicsr_imresize(), g, 1 / 4) for g in gts])
        args = ["--checkpoint", str(ckpt), "--data", str(gt_dir), "--lr", str(lr_dir), "--device", "cpu",
                "--json", str(root / "r.json")]

        def ours_quiet() -> None:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                assert evaluate(args) == 0

        ours, theirs = _best_of([ours_quiet, lambda: basicsr_pipeline(ref, metrics, lr_dir, gt_dir, 4)], 2)
        report = json.loads((root / "r.json").read_text())["clips"][0]
        mean = np.mean(basicsr_pipeline(ref, metrics, lr_dir, gt_dir, 4), axis=0)
    print(f"pipeline, BasicVSR++ x4 (mid 16, 1 block), {frames} frames {size[1]}x{size[0]} GT, CPU, "
          f"{torch.get_num_threads()} thread(s), best of 3 interleaved:")
    print(f"  trainer.evaluate  {frames / ours:6.2f} frames/s  (read, model, bicubic+bilinear, RGB+Y PSNR/SSIM of "
          "all three)")
    print(f"  BasicSR pipeline  {frames / theirs:6.2f} frames/s  (read, model, RGB+Y PSNR/SSIM of the model's frames)")
    ours_mean = [report[k] for k in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")]
    print("  same numbers: |ours - BasicSR| PSNR-RGB, SSIM-RGB, PSNR-Y, SSIM-Y = "
          + ", ".join(f"{abs(a - b):.1e}" for a, b in zip(ours_mean, mean, strict=True)))


def metric_costs(metrics: types.ModuleType | None, size: tuple[int, int] = (272, 640)) -> None:
    """Per-frame metric cost at 640x272: BasicSR's four calls for one frame; ours pair by pair
    (trainer.metrics' general functions); ours in one pass for three candidates (evaluate's way)."""
    from bench.bench_basicvsrpp import _best_of
    from trainer.evaluate import measure
    from trainer.infer.scoring import FrameScorer

    sr, gt = degraded_pair(0, *size)
    to01 = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).double() / 255  # noqa: E731
    scorer = FrameScorer(4, torch.device("cpu"))

    def basicsr_four() -> None:
        basicsr_y(metrics, sr, gt, 4)
        metrics.calculate_psnr(sr, gt, 4)
        metrics.calculate_ssim(sr, gt, 4)

    fns = [lambda: measure(to01([sr] * 3), to01([gt] * 3), 4), lambda: scorer.score(gt, [sr, sr, sr]),
           basicsr_four if metrics else None]
    pair, one_pass, theirs = _best_of(fns, 5)
    print(f"metrics per {size[1]}x{size[0]} frame, RGB+Y PSNR/SSIM, CPU, best of 5: ours one pass, 3 candidates "
          f"{one_pass * 1e3:.0f} ms; ours pair by pair, 3 candidates {pair * 1e3:.0f} ms; BasicSR, 1 frame "
          f"{theirs * 1e3:.0f} ms")


_RSS_SCRIPT = """
import resource, sys
from trainer.evaluate import main
assert main(sys.argv[1:]) == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def rss_growth(frames: int = 20, size: tuple[int, int] = (272, 640)) -> None:
    """Peak RSS of `python -m trainer.evaluate` (default vsrpp, tiny) on N and 4N frames of one clip."""
    from ckpt import save_checkpoint
    from trainer.models import build

    kwargs = {"num_frames": 3, "n_feats": 4, "n_blocks": 2, "scale": 4}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = save_checkpoint(root / "m.pth", {"step": 1, "model_name": "vsrpp", "model_kwargs": kwargs,
                                                "model_state_dict": build("vsrpp", **kwargs).state_dict()})
        base = degraded_pair(0, *size)[1]
        peaks = []
        for n in (frames, 4 * frames):
            clip = _write_clip(root / f"gt{n}" / "clip", [np.roll(base, 3 * i, axis=1) for i in range(n)])
            done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, "--checkpoint", str(ckpt), "--data", str(clip),
                                   "--device", "cpu"], capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            peaks.append(int(done.stdout.strip().splitlines()[-1]))
    print(f"peak RSS, evaluate of one {size[1]}x{size[0]} clip (vsrpp x4, tiny), CPU: {frames} frames "
          f"{peaks[0]} MB, {4 * frames} frames {peaks[1]} MB")


def main() -> None:
    metrics = load_basicsr_metrics()
    if metrics is None:
        print("BasicSR metric check skipped: basicsr==1.4.2 sdist or cv2 unavailable")
    else:
        dp, ds = max_differences(metrics)
        print(f"Y PSNR  max |ours - BasicSR 1.4.2|: {dp:.2e} dB (goal <= 0.01)")
        print(f"Y SSIM  max |ours - BasicSR 1.4.2|: {ds:.2e}    (goal <= 1e-3)")
    imresize = load_basicsr_imresize()
    if imresize is not None:
        levels, db = bicubic_differences(imresize)
        print(f"bicubic baseline vs MATLAB imresize (BasicSR's port), x2/x3/x4: max {levels} level(s), "
              f"Y PSNR max difference {db:.2e} dB")
    # one thread each: on a busy 2-core box two OpenMP (and cv2) threads spin-wait and times swing tenfold
    torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures are noisy when busy); "
          "timings on 1 thread (torch and cv2)")
    metric_costs(metrics)
    if metrics is not None and imresize is not None:
        pipeline_fps(metrics)
    rss_growth()


if __name__ == "__main__":
    main()
