"""`trainer.evaluate` against BasicSR 1.4.2: Y-channel PSNR/SSIM differences, and evaluate's frames/s.

BasicSR's own metric file (basicsr/metrics/psnr_ssim.py, with metric_util.py and color_util.py) is
read from its PyPI sdist, cached as for the BasicVSR++ parity check (bench_basicvsrpp), with a
stand-in for its registry; its code runs unchanged (it needs cv2: opencv-python-headless in dev).
"""

from __future__ import annotations

import sys
import tempfile
import time
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


def _evaluate_fps(frames: int = 20, size: tuple[int, int] = (144, 176)) -> tuple[float, float]:
    """Frames/s of `python -m trainer.evaluate` (in-process, end to end) on one clip with the default
    vsrpp model, and of that model alone on the same LR frames."""
    from PIL import Image

    from ckpt import save_checkpoint
    from trainer.config import ModelConfig
    from trainer.evaluate import main
    from trainer.infer.load import load_model
    from trainer.infer.model import UpscaleOptions
    from trainer.infer.sequence import upscale_frames
    from trainer.models import build

    kwargs = ModelConfig().kwargs()  # the default model
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = save_checkpoint(root / "m.pth", {"step": 1, "model_name": "vsrpp", "model_kwargs": kwargs,
                                                "model_state_dict": build("vsrpp", **kwargs).state_dict()})
        clip = root / "gt" / "clip"
        clip.mkdir(parents=True)
        for i in range(frames):
            Image.fromarray(degraded_pair(i, *size)[1]).save(clip / f"{i:08d}.png")
        start = time.perf_counter()
        main(["--checkpoint", str(ckpt), "--data", str(root / "gt"), "--device", "cpu", "--json", str(root / "r.json")])
        end_to_end = frames / (time.perf_counter() - start)
        loaded, cpu = load_model(ckpt, torch.device("cpu")), torch.device("cpu")
        lr = torch.rand(frames, 3, size[0] // kwargs["scale"], size[1] // kwargs["scale"])
        start = time.perf_counter()
        for _ in upscale_frames(loaded, lr, UpscaleOptions(amp=False), cpu):
            pass
        return end_to_end, frames / (time.perf_counter() - start)


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
    fps, model_fps = _evaluate_fps()
    print(f"evaluate, default vsrpp x3, 176x144 GT (58x48 LR), 20 frames, CPU, {torch.get_num_threads()} threads: "
          f"{fps:.1f} frames/s end to end (read, degrade, model, bicubic/bilinear, RGB/Y metrics of all three); "
          f"the model alone {model_fps:.1f} frames/s")


if __name__ == "__main__":
    main()
