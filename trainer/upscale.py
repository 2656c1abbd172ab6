"""Upscale frame folders or videos with a trained checkpoint (either architecture) or an exported .onnx.

    python -m trainer.upscale --checkpoint runs/default/checkpoint_step_0001000.pth \\
        --input film.mp4 --output film_x3.mp4 [--crf 18] [--codec libx264] [--pix-fmt yuv420p]

Streaming: a decoding thread, the model, and an encoding thread hand frames on through bounded
queues, so memory does not grow with the length of the video (vsrpp keeps its window of
num_frames, basicvsrpp its chunk of --window frames; --tile N splits frames into LR tiles).
A video's audio streams are copied unchanged and the output keeps the input's timestamps.
Ctrl-C closes the output cleanly: what was done plays, and the tool says the output is partial.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from trainer.device import pick_device
from trainer.infer.load import load_model
from trainer.infer.model import LoadedModel, UpscaleError, UpscaleOptions
from trainer.infer.sequence import run_tiled, upscale_frames
from trainer.infer.video import FrameSink, VideoOptions, open_source

QUEUE_FRAMES = 8  # frames decoded ahead of the model, and HR frames waiting for the encoder
_END = object()
__all__ = ["FrameSink", "UpscaleError", "UpscaleOptions", "VideoOptions", "load_model", "main",
           "read_frames", "run_pipeline", "run_tiled", "upscale_frames"]


def read_frames(path: str | Path) -> tuple[list[str], Tensor, float | None]:
    """(output names, frames [T, 3, h, w], fps or None), all in memory: for short clips and tests."""
    source = open_source(path)
    try:
        pairs = list(source.frames(lambda packet: None))
    finally:
        source.close()
    return [info.name for info, _ in pairs], torch.stack([f for _, f in pairs]), source.fps


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put, giving up once `stop` is set (so a stopped pipeline never blocks its producer)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _decode(source, decoded: queue.Queue, encoded: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in source.frames(lambda packet: _put(encoded, ("audio", packet), stop)):
            if not _put(decoded, item, stop):
                return
        _put(decoded, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
        _put(decoded, exc, stop)


def _encode(sink: FrameSink, encoded: queue.Queue, errors: list[BaseException]) -> None:
    """Write until _END; after a failure keep draining so the model thread never blocks."""
    while (item := encoded.get()) is not _END:
        if errors:
            continue
        kind, *rest = item
        try:
            if kind == "audio":
                sink.mux(*rest)
            else:
                sink.write(*rest)
        except (UpscaleError, OSError) as exc:
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - an encoder/muxer refusal (av.FFmpegError ...), in words
            errors.append(UpscaleError(f"cannot write {sink.path}: {exc}"))


def run_pipeline(loaded: LoadedModel, source, sink: FrameSink, opts: UpscaleOptions, device: torch.device,
                 on_frame=lambda: None) -> int:
    """decode -> model -> encode with at most QUEUE_FRAMES frames in each queue; returns frames written."""
    decoded, encoded = queue.Queue(QUEUE_FRAMES), queue.Queue(QUEUE_FRAMES)
    stop, errors, infos = threading.Event(), [], deque()
    decoder = threading.Thread(target=_decode, args=(source, decoded, encoded, stop), daemon=True)
    encoder = threading.Thread(target=_encode, args=(sink, encoded, errors), daemon=True)
    decoder.start()
    encoder.start()

    def lr_frames() -> Iterator[Tensor]:
        while (item := decoded.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            infos.append(item[0])
            yield item[1]

    done = 0
    try:
        for hr in upscale_frames(loaded, lr_frames(), opts, device):
            if errors:
                break
            encoded.put(("video", infos.popleft(), hr))
            done += 1
            on_frame()
    finally:
        stop.set()
        encoded.put(_END)  # the encoder writes what is queued, then the sink closes cleanly
        encoder.join()
        decoder.join()
    if errors:
        raise errors[0]
    return done


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.upscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pth) or a model.onnx from trainer.export")
    p.add_argument("--input", required=True, help="folder of PNG/JPG frames (sorted by name) or a video file")
    p.add_argument("--output", required=True, help="folder for PNG frames (same names) or a video file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--tile", type=int, default=0, help="LR tile side for large frames (0 = whole frames)")
    p.add_argument("--tile-overlap", type=int, default=16, help="LR context pixels around each tile")
    p.add_argument("--window", type=int, default=15, help="frames per chunk (many-to-many models)")
    p.add_argument("--window-overlap", type=int, default=3, help="context frames each side of a chunk")
    p.add_argument("--no-amp", action="store_true", help="full float32 on CUDA")
    video = VideoOptions()
    p.add_argument("--codec", default=video.codec, help=f"output video codec (default {video.codec})")
    p.add_argument("--crf", type=int, default=video.crf, help=f"quality for x264/x265/vp9/av1 (default {video.crf})")
    p.add_argument("--pix-fmt", default=video.pix_fmt,
                   help=f"output pixel format (default {video.pix_fmt}; odd sizes get one edge row/column, "
                        "yuv444p keeps them)")
    p.add_argument("--fps", type=float, default=None,
                   help="constant output frame rate (default: the input's timestamps, or 25 for frame folders)")
    p.add_argument("--expect-model", default=None, help="refuse a checkpoint of another architecture")
    p.add_argument("--expect-scale", type=int, default=None, help="refuse a checkpoint of another scale")
    return p


def _upscale(args: argparse.Namespace, done: list[int]) -> LoadedModel:
    opts = UpscaleOptions(args.tile, args.tile_overlap, args.window, args.window_overlap, not args.no_amp)
    try:
        device = pick_device(args.device)
    except ValueError as exc:
        raise UpscaleError(str(exc)) from None
    loaded = load_model(args.checkpoint, device, expect_model=args.expect_model, expect_scale=args.expect_scale)
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise UpscaleError("--output must differ from --input (the input frames would be overwritten)")
    source = open_source(args.input)
    try:
        h, w = source.size
        video = VideoOptions(args.codec, args.crf, args.pix_fmt, args.fps)
        with FrameSink(args.output, args.fps or source.fps or 25.0, video, source.audio,
                       (h * loaded.scale, w * loaded.scale), source.time_base) as sink, \
                tqdm(total=source.count, unit="frame", desc=f"{loaded.name} x{loaded.scale}") as bar:
            def step() -> None:
                done[0] += 1
                bar.update()

            run_pipeline(loaded, source, sink, opts, device, on_frame=step)
        if source.count and done[0] < source.count - 1:  # a header's count may be an estimate (+-1)
            print(f"warning: {args.input} ended after {done[0]} of the {source.count} frames its header "
                  "announces (truncated?)", file=sys.stderr)
    finally:
        source.close()
    return loaded


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    done = [0]
    try:
        loaded = _upscale(args, done)
    except KeyboardInterrupt:
        print(f"interrupted: {args.output} is PARTIAL, {done[0]} frames (closed cleanly: what was done plays)",
              file=sys.stderr)
        return 130
    except (UpscaleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{done[0]} frames x{loaded.scale} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
