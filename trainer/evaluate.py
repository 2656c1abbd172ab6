"""Numbers comparable to papers: PSNR/SSIM on RGB and Y, per clip and overall, beside bicubic and bilinear.

    python -m trainer.evaluate --checkpoint F --data PATH [--lr PATH] [--json FILE] [--csv FILE]
                               [--save DIR] [--crop-border N] [--device D] [--window N] [--threads N]

PATH, the ground truth, is a root of clip folders (ROOT/CLIP/*.png), one frame folder or a video
file. LR frames come from --lr (the same structure: benchmarks that ship their own LR, such as
Vid4's BI sets) or are made from GT by the checkpoint's own training degradation (its config's
data.degrade), GT first cropped to a multiple of the scale as BasicSR does.

The conventions are BasicSR's and mmagic's: the model's output is rounded to 8 bits before it is
measured (so the frames --save writes measure the same again), --crop-border pixels (default: the
scale) are left out at every edge, Y is BT.601 as MATLAB's rgb2ycbcr; the numbers are averaged
per frame, then per clip, then over clips. Many-to-many models see each clip whole, as in those
projects' tests (--window N: chunks of N frames instead); no autocast. Bicubic and bilinear are
MATLAB's imresize upscales (as papers' bicubic rows) of the same 8-bit LR.

Frames stream as in `trainer.upscale`: each is read when the model needs it and dropped once
measured, so memory does not grow with a clip's length (except the model's own: a many-to-many
model holds the clip it sees). The metrics run on the model's device, each GT frame's SSIM
statistics shared by the three candidates (`trainer.infer.scoring`). Progress: a bar on a
terminal, a line every few seconds otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ckpt import CheckpointError
from trainer.data.images import DEGRADATIONS, DataError, to_tensor, write_png
from trainer.device import pick_device
from trainer.infer.load import load_model
from trainer.infer.model import LoadedModel, UpscaleError, UpscaleOptions
from trainer.infer.pairs import EvaluateError, Frame, clip_frames, count_frames, find_clips, pair_lr
from trainer.infer.progress import FrameProgress
from trainer.infer.report import METHODS, clip_row, format_table, mean_row, write_csv, write_json
from trainer.infer.scoring import BASELINES, FrameScorer, upscale_baseline
from trainer.infer.sequence import upscale_frames
from trainer.infer.video import to_array
from trainer.metrics import METRIC_SPACES, SSIM_WINDOW, psnr_per_image, ssim_per_image

__all__ = ["EvaluateError", "Setup", "cpu_threads", "evaluate", "evaluate_clip", "main", "measure"]

WHOLE_CLIP = 2**31  # a chunk longer than any clip: a many-to-many model sees each clip whole


# ---- measuring --------------------------------------------------------------------------------------


def measure(sr: Tensor, gt: Tensor, crop_border: int) -> dict[str, Tensor]:
    """{"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}: per image [N] of 8-bit [N, 3, H, W] images in [0, 1]
    (pair by pair, with trainer.metrics' general functions; evaluate itself shares the GT's statistics)."""
    out = {}
    for space in METRIC_SPACES:
        out[f"psnr_{space}"] = psnr_per_image(sr, gt, crop_border=crop_border, space=space)
        out[f"ssim_{space}"] = ssim_per_image(sr, gt, crop_border=crop_border, space=space)
    return out


@dataclass
class Setup:
    loaded: LoadedModel
    device: torch.device
    crop_border: int
    degrade: str  # how LR is made when --lr is not given
    save: Path | None = None
    window: int = WHOLE_CLIP  # frames per chunk of a many-to-many model


def _check_size(setup: Setup, name: str, frame: Frame) -> None:
    h, w = frame.gt.shape[:2]
    if min(h, w) - 2 * setup.crop_border < SSIM_WINDOW:
        raise EvaluateError(f"clip {name}: {w}x{h} frames minus a {setup.crop_border} px border are smaller "
                            f"than SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window")


def evaluate_clip(setup: Setup, name: str, frames: Iterable[Frame], progress: FrameProgress) -> dict:
    """One clip's row: per-frame metrics of the model and the baselines, averaged over its frames.

    Frames stream: a frame is read when the model needs it and dropped once it is measured."""
    pending: deque[Frame] = deque()  # read, not yet measured: the model's window ahead

    def lr_stream() -> Iterator[Tensor]:
        for frame in frames:
            if not pending and not scorer.frames:
                _check_size(setup, name, frame)
            pending.append(frame)
            yield to_tensor(frame.lr)

    scorer, scale = FrameScorer(setup.crop_border, setup.device), setup.loaded.scale
    opts = UpscaleOptions(window=setup.window, amp=False)
    for out in upscale_frames(setup.loaded, lr_stream(), opts, setup.device):
        frame = pending.popleft()
        sr = to_array(out)  # [H, W, 3] uint8, as saved
        if sr.shape != frame.gt.shape:
            h, w = frame.gt.shape[:2]
            raise EvaluateError(f"clip {name}: the model gave {sr.shape[1]}x{sr.shape[0]} frames, GT is {w}x{h}")
        if setup.save is not None:
            (setup.save / name).mkdir(parents=True, exist_ok=True)
            write_png(setup.save / name / f"{frame.name}.png", sr)
        scorer.add(frame.gt, [sr] + [upscale_baseline(frame.lr, scale, m) for m in BASELINES])
        progress.update()
    return clip_row(name, scorer.frames, dict(zip(METHODS, scorer.means(), strict=True)))


def evaluate(setup: Setup, data: Path, lr_path: Path | None = None) -> dict:
    """The report {"scale", "crop_border", "clips": [...], "mean": {...}} of every clip under `data`."""
    gt_clips = find_clips(data)
    lr_clips = pair_lr(gt_clips, find_clips(lr_path)) if lr_path is not None else [None] * len(gt_clips)
    counts = [count_frames(c.source) for c in gt_clips]
    total = None if None in counts else sum(counts)  # type: ignore[arg-type]
    scale, rows = setup.loaded.scale, []
    with FrameProgress(total, "evaluate") as bar:
        for clip, lr_clip in zip(gt_clips, lr_clips, strict=True):
            bar.describe(clip.name)
            frames = clip_frames(clip.name, clip.source, lr_clip and lr_clip.source, scale, setup.degrade)
            rows.append(evaluate_clip(setup, clip.name, frames, bar))
            bar.write(f"  {clip.name}: {rows[-1]['frames']} frames, PSNR-Y {rows[-1]['psnr_y']:.2f} dB")
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
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (default: $OMP_NUM_THREADS, else every core, or 1 when other work already "
                        "keeps the cores busy: threads that wait on each other run several times slower)")
    p.add_argument("--window", type=int, default=WHOLE_CLIP,
                   help="frames per chunk of a many-to-many model (default: the whole clip, as papers measure)")
    return p


def _training_degradation(checkpoint: str) -> str:
    from ckpt import read_metadata
    from trainer.data import DataConfig

    config = read_metadata(checkpoint).get("config")
    data = config.get("data") if isinstance(config, dict) else None
    how = data.get("degrade") if isinstance(data, dict) else None
    return how if how in DEGRADATIONS else DataConfig().degrade


def cpu_threads(asked: int, cores: int, load: float) -> int:
    """CPU threads: as asked, else $OMP_NUM_THREADS, else every core, or one when other work already keeps
    the cores busy (load >= cores): threads that wait on each other there run several times slower than one."""
    if asked:
        return asked
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user's explicit choice wins
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return 1 if load >= cores else cores


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.crop_border is not None and args.crop_border < 0:
            raise EvaluateError(f"--crop-border must be >= 0, got {args.crop_border}")
        if args.threads < 0:
            raise EvaluateError(f"--threads must be >= 0, got {args.threads}")
        try:
            device = pick_device(args.device)
        except ValueError as exc:  # e.g. --device cuda without CUDA
            raise EvaluateError(str(exc)) from None
        where = str(device)
        if device.type == "cpu":
            cores, load = os.cpu_count() or 1, os.getloadavg()[0]
            torch.set_num_threads(cpu_threads(args.threads, cores, load))
            where = f"cpu ({torch.get_num_threads()} thread(s); load {load:.1f} on {cores} cores)"
        loaded = load_model(args.checkpoint, device)
        how = _training_degradation(args.checkpoint)
        crop = loaded.scale if args.crop_border is None else args.crop_border
        source = f"LR from {args.lr}" if args.lr else f"LR made from GT by {how} downscaling (the training degradation)"
        print(f"{loaded.name} x{loaded.scale} on {where}; {source}; border {crop} px", file=sys.stderr)
        report = evaluate(Setup(loaded, device, crop, how, args.save, args.window), args.data, args.lr)
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
