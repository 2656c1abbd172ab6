"""Numbers comparable to papers: PSNR/SSIM on RGB and Y, per clip and overall, beside bicubic and bilinear.

    python -m trainer.evaluate --checkpoint F --data PATH [--lr PATH] [--json FILE] [--csv FILE]
                               [--save DIR] [--crop-border N] [--device D]

PATH, the ground truth, is a root of clip folders (ROOT/CLIP/*.png), one frame folder or a video
file. LR frames come from --lr (the same structure: benchmarks that ship their own LR, such as
Vid4's BI sets) or are made from GT by the checkpoint's own training degradation (its config's
data.degrade), GT first cropped to a multiple of the scale as BasicSR does.

The conventions are BasicSR's and mmagic's: the model's output is rounded to 8 bits before it is
measured (so the frames --save writes measure the same again), --crop-border pixels (default: the
scale) are left out at every edge, Y is BT.601 as MATLAB's rgb2ycbcr; the numbers are averaged
per frame, then per clip, then over clips. Many-to-many models see each clip whole, as in those
projects' tests; no autocast. Bicubic and bilinear are MATLAB's imresize upscales (as papers'
bicubic rows) of the same 8-bit LR.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ckpt import CheckpointError
from trainer.data.clips import IMAGE_SUFFIXES
from trainer.data.images import (
    DEGRADATIONS,
    DataError,
    degrade,
    read_rgb,
    to_tensor,
    write_png,
)
from trainer.device import pick_device
from trainer.infer.load import load_model
from trainer.infer.model import LoadedModel, UpscaleError, UpscaleOptions
from trainer.infer.report import (
    METHODS,
    METRICS,
    clip_row,
    format_table,
    mean_row,
    write_csv,
    write_json,
)
from trainer.infer.sequence import upscale_frames
from trainer.infer.video import import_av, to_array
from trainer.metrics import METRIC_SPACES, SSIM_WINDOW, psnr_per_image, ssim_per_image

__all__ = ["EvaluateError", "evaluate", "find_clips", "main", "measure", "read_clip", "upscale_baseline"]

BASELINES = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
_MIRROR = 3  # LR pixels mirrored at each edge before resizing: more than the bicubic kernel reaches


class EvaluateError(ValueError):
    """What is wrong with the data, the checkpoint or the options, in one line."""


@dataclass
class Clip:
    name: str
    source: Path  # a frame folder or a video file


# ---- frames in ------------------------------------------------------------------------------------


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_clips(path: Path) -> list[Clip]:
    """A video file or a frame folder is one clip; a folder of frame folders is one clip each."""
    if path.is_file():
        return [Clip(path.stem, path)]
    if not path.is_dir():
        raise EvaluateError(f"{path}: no such file or folder")
    if _images(path):
        return [Clip(path.name, path)]
    clips = [Clip(d.name, d) for d in sorted(path.iterdir()) if d.is_dir() and _images(d)]
    if not clips:
        raise EvaluateError(f"{path}: no frames (expected ROOT/CLIP/*.png, a folder of PNG/JPG frames or a video)")
    return clips


def _decode_video(path: Path) -> list[np.ndarray]:
    av = import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EvaluateError(f"{path}: no video stream")
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise EvaluateError(f"{path}: cannot read it as a video ({exc})") from None


def read_clip(source: Path) -> tuple[list[str], np.ndarray]:
    """(frame names without suffix, uint8 frames [T, H, W, 3]) of a frame folder or a video file."""
    if source.is_dir():
        files = _images(source)
        names, frames = [f.stem for f in files], [read_rgb(f) for f in files]
    else:
        frames = _decode_video(source)
        names = [f"{i:08d}" for i in range(len(frames))]
    if not frames:
        raise EvaluateError(f"{source}: no frames")
    sizes = sorted({f.shape[:2] for f in frames})
    if len(sizes) > 1:
        raise EvaluateError(f"{source}: frames differ in size ({', '.join(f'{w}x{h}' for h, w in sizes)})")
    return names, np.stack(frames)


def _pair_lr(gt_clips: list[Clip], lr_clips: list[Clip]) -> list[Clip]:
    """The LR clip of each GT clip: by name, or the only one with the only one."""
    if len(gt_clips) == 1 and len(lr_clips) == 1:
        return lr_clips
    by_name = {c.name: c for c in lr_clips}
    missing = [c.name for c in gt_clips if c.name not in by_name]
    if missing:
        raise EvaluateError(f"--lr has no clip named {', '.join(missing)} (it has {', '.join(sorted(by_name))})")
    return [by_name[c.name] for c in gt_clips]


def _fit(name: str, gt: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """GT cropped to LR x scale; mismatched counts or sizes are errors."""
    if len(gt) != len(lr):
        raise EvaluateError(f"clip {name}: {len(gt)} GT frames but {len(lr)} LR frames")
    (h, w), (lh, lw) = gt.shape[1:3], lr.shape[1:3]
    if (h // scale, w // scale) != (lh, lw):
        raise EvaluateError(f"clip {name}: LR frames are {lw}x{lh}, but GT {w}x{h} at x{scale} needs "
                            f"{w // scale}x{h // scale}")
    return gt[:, : lh * scale, : lw * scale]


# ---- measuring --------------------------------------------------------------------------------------


def measure(sr: Tensor, gt: Tensor, crop_border: int) -> dict[str, Tensor]:
    """{"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}: per image [N] of 8-bit [N, 3, H, W] images in [0, 1]."""
    out = {}
    for space in METRIC_SPACES:
        out[f"psnr_{space}"] = psnr_per_image(sr, gt, crop_border=crop_border, space=space)
        out[f"ssim_{space}"] = ssim_per_image(sr, gt, crop_border=crop_border, space=space)
    return out


def upscale_baseline(lr: np.ndarray, scale: int, method: str) -> np.ndarray:
    """MATLAB's imresize upscale (bicubic a = -0.5, or bilinear) of uint8 [h, w, 3], as uint8.

    PIL's kernels in float (its 8-bit mode rounds between the two passes) on the frame with its
    edges mirrored, as MATLAB pads them (PIL would renormalise the kernel at the edges instead).
    """
    p = _MIRROR
    x = np.pad(lr.astype(np.float32), ((p, p), (p, p), (0, 0)), mode="symmetric")
    size = (x.shape[1] * scale, x.shape[0] * scale)
    up = np.stack([np.asarray(Image.fromarray(x[..., c]).resize(size, BASELINES[method])) for c in range(3)], -1)
    return np.clip(np.round(up[p * scale:-p * scale, p * scale:-p * scale]), 0, 255).astype(np.uint8)


def _frames01(frames: list[np.ndarray]) -> Tensor:
    """uint8 [H, W, 3] frames -> float64 [N, 3, H, W] of exactly level / 255."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).double() / 255


@dataclass
class Setup:
    loaded: LoadedModel
    device: torch.device
    crop_border: int
    degrade: str  # how LR is made when --lr is not given
    save: Path | None = None


def evaluate_clip(setup: Setup, name: str, frame_names: list[str], gt: np.ndarray, lr: np.ndarray) -> dict:
    """One clip's row: per-frame metrics of the model and the baselines, averaged over its frames."""
    h, w = gt.shape[1:3]
    if min(h, w) - 2 * setup.crop_border < SSIM_WINDOW:
        raise EvaluateError(f"clip {name}: {w}x{h} frames minus a {setup.crop_border} px border are smaller "
                            f"than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window")
    opts = UpscaleOptions(window=max(len(lr), 2 * UpscaleOptions.window_overlap + 1), amp=False)  # whole clip
    per_frame: dict[str, list[Tensor]] = {m: [] for m in METHODS}
    outputs = upscale_frames(setup.loaded, to_tensor(lr), opts, setup.device)
    for i, out in enumerate(outputs):
        sr = to_array(out)  # [H, W, 3] uint8, as saved
        if sr.shape[:2] != (h, w):
            raise EvaluateError(f"clip {name}: the model gave {sr.shape[1]}x{sr.shape[0]} frames, GT is {w}x{h}")
        if setup.save is not None:
            (setup.save / name).mkdir(parents=True, exist_ok=True)
            write_png(setup.save / name / f"{frame_names[i]}.png", sr)
        candidates = [sr] + [upscale_baseline(lr[i], setup.loaded.scale, m) for m in BASELINES]
        truth = _frames01([gt[i]]).to(setup.device).expand(len(candidates), -1, -1, -1)
        scores = measure(_frames01(candidates).to(setup.device), truth, setup.crop_border)
        for j, method in enumerate(METHODS):
            per_frame[method].append(torch.stack([scores[k][j] for k in METRICS]))
    means = {m: torch.stack(v).mean(0).tolist() for m, v in per_frame.items()}
    return clip_row(name, len(gt), means)


def evaluate(setup: Setup, data: Path, lr_path: Path | None = None) -> dict:
    """The report {"scale", "crop_border", "clips": [...], "mean": {...}} of every clip under `data`."""
    gt_clips = find_clips(data)
    lr_clips = _pair_lr(gt_clips, find_clips(lr_path)) if lr_path is not None else [None] * len(gt_clips)
    scale, rows = setup.loaded.scale, []
    for clip, lr_clip in zip(gt_clips, lr_clips, strict=True):
        names, gt = read_clip(clip.source)
        if lr_clip is None:
            gt = gt[:, : gt.shape[1] // scale * scale, : gt.shape[2] // scale * scale]
            lr = degrade(gt, scale, setup.degrade)
        else:
            lr = read_clip(lr_clip.source)[1]
            gt = _fit(clip.name, gt, lr, scale)
        rows.append(evaluate_clip(setup, clip.name, names, gt, lr))
        print(f"  {clip.name}: {len(gt)} frames, PSNR-Y {rows[-1]['psnr_y']:.2f} dB", file=sys.stderr)
    return {"scale": scale, "crop_border": setup.crop_border, "clips": rows, "mean": mean_row(rows)}


# ---- command line -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (.pth)")
    p.add_argument("--data", required=True, type=Path, help="GT: ROOT/CLIP/*.png, one frame folder, or a video")
    p.add_argument("--lr", type=Path, help="LR frames in the same structure (default: the checkpoint's degradation)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--csv", type=Path, help="write one row per clip (and the mean) here")
    p.add_argument("--save", type=Path, help="write the model's frames as DIR/CLIP/NAME.png")
    p.add_argument("--crop-border", type=int, help="pixels left out at each edge (default: the scale)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def _training_degradation(checkpoint: str) -> str:
    from ckpt import read_metadata
    from trainer.data import DataConfig

    config = read_metadata(checkpoint).get("config")
    data = config.get("data") if isinstance(config, dict) else None
    how = data.get("degrade") if isinstance(data, dict) else None
    return how if how in DEGRADATIONS else DataConfig().degrade


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.crop_border is not None and args.crop_border < 0:
            raise EvaluateError(f"--crop-border must be >= 0, got {args.crop_border}")
        try:
            device = pick_device(args.device)
        except ValueError as exc:  # e.g. --device cuda without CUDA
            raise EvaluateError(str(exc)) from None
        loaded = load_model(args.checkpoint, device)
        how = _training_degradation(args.checkpoint)
        crop = loaded.scale if args.crop_border is None else args.crop_border
        source = f"LR from {args.lr}" if args.lr else f"LR made from GT by {how} downscaling (the training degradation)"
        print(f"{loaded.name} x{loaded.scale} on {device}; {source}; border {crop} px", file=sys.stderr)
        report = evaluate(Setup(loaded, device, crop, how, args.save), args.data, args.lr)
        if args.json:
            write_json(args.json, report)
        if args.csv:
            write_csv(args.csv, report)
    except (EvaluateError, UpscaleError, DataError, CheckpointError, OSError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)  # one line, even for torch.load's paragraphs
        return 2
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    print(format_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
