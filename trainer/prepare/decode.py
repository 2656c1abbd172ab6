"""Reading videos with PyAV: open and probe one file, then stream its frames as 8-bit RGB.

One decode pass per video; frames are handed on one at a time, so memory does not grow with length.
Sources of more than 8 bits (10-bit, HDR) are converted by FFmpeg's swscale to 8-bit RGB; the
conversion is described by `conversion_note` so the summary can say which files were converted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from trainer.media import import_av

from .errors import PrepareError

__all__ = ["VideoInfo", "probe", "stream_frames", "require_av", "DecodeError"]

HDR_TRANSFERS = {16: "PQ (SMPTE 2084)", 18: "HLG (ARIB STD-B67)"}


class DecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message is the reason shown in the summary."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int  # estimated frame count (0 = unknown)
    note: str | None  # how a >8-bit or HDR source was converted, or None


def require_av() -> ModuleType:
    """PyAV, or a PrepareError saying how to install it."""
    return import_av(PrepareError, "videos")


def _open(path: Path):
    av = require_av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DecodeError(f"cannot open ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream")
    return container


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0] or type(exc).__name__


def probe(path: Path) -> VideoInfo:
    """Size, estimated length and colour conversion of the first video stream (headers only)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        return VideoInfo(ctx.width, ctx.height, _estimated_frames(container, stream), _conversion_note(ctx))


def _estimated_frames(container, stream) -> int:
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return int(stream.duration * stream.time_base * rate)
    if container.duration and rate:
        return int(container.duration / 1_000_000 * rate)
    return 0


def _conversion_note(ctx) -> str | None:
    pix_fmt = ctx.pix_fmt or "unknown"
    hdr = HDR_TRANSFERS.get(int(getattr(ctx, "color_trc", 0) or 0))
    deep = any(tag in pix_fmt for tag in ("p10", "p12", "p14", "p16", "48", "64"))
    if not (deep or hdr):
        return None
    note = f"{pix_fmt} -> 8-bit RGB (swscale)"
    return f"{note}; HDR {hdr} shown without tone mapping" if hdr else note


def stream_frames(path: Path, stride: int = 1) -> Iterator[np.ndarray]:
    """Every `stride`-th frame as uint8 RGB [H, W, 3], decoded in one pass; DecodeError on a bad file."""
    av = require_av()
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise DecodeError(f"decoding failed ({_reason(exc)})") from None
