"""Small real videos for the tests, encoded with PyAV: shots with hard cuts, black and frozen
stretches, an audio track, odd sizes, 10-bit, truncated files. One home for every video-making
helper the tests share (prepare, upscale, evaluate, export).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def shot(n: int, height: int, width: int, seed: int, speed: int = 2) -> list[np.ndarray]:
    """n frames of one textured scene panning `speed` px/frame (motion, detail, no cut inside)."""
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, size=(height // 4 + 8, (width + n * speed) // 4 + 8, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big, 4, axis=0), 4, axis=1)  # 4x4 blocks: survives compression
    tint = rng.integers(0, 256, size=3, dtype=np.uint8)
    big = ((big.astype(np.uint16) + tint) // 2).astype(np.uint8)
    return [np.ascontiguousarray(big[:height, i * speed:i * speed + width]) for i in range(n)]


def black(n: int, height: int, width: int) -> list[np.ndarray]:
    return [np.zeros((height, width, 3), np.uint8) for _ in range(n)]


def frozen(n: int, frame: np.ndarray) -> list[np.ndarray]:
    return [frame.copy() for _ in range(n)]


def blurred(frames: list[np.ndarray], radius: int = 4) -> list[np.ndarray]:
    """The frames out of focus: a (2*radius+1)^2 box blur, edges wrapped."""
    out = []
    for frame in frames:
        acc = frame.astype(np.float32)
        for axis in (0, 1):
            acc = sum(np.roll(acc, d, axis=axis) for d in range(-radius, radius + 1)) / (2 * radius + 1)
        out.append(np.rint(acc).astype(np.uint8))
    return out


def write_video(path: Path, frames: Iterable[np.ndarray], *, fps: int = 25, codec: str = "libx264",
                pix_fmt: str = "yuv420p", audio: bool = False, crf: int = 12,
                times_ms: list[int] | None = None, hdr: bool = False) -> Path:
    """Encode RGB uint8 frames [H, W, 3] (even sizes for yuv420p) into `path`; with `audio`, a
    stereo 440 Hz AAC track as long as the video; `times_ms`: each frame's time (variable rate);
    `hdr`: tagged HDR10 (BT.2020 primaries and matrix, PQ transfer; the pixels are not converted)."""
    frames = list(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if hdr:
            ctx = stream.codec_context
            ctx.color_primaries, ctx.color_trc, ctx.colorspace = 9, 16, 9  # BT.2020, SMPTE 2084, BT.2020 NCL
        if codec in ("libx264", "libx265"):
            stream.options = {"crf": str(crf), "preset": "ultrafast"}
        sound = out.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        if times_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times_ms is not None:
                picture.pts, picture.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            _write_tone(out, sound, seconds=len(frames) / fps)
    return path


def _write_tone(out: av.container.OutputContainer, sound: av.AudioStream, seconds: float) -> None:
    rate, chunk = 48000, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        t = np.arange(start, min(total, start + chunk)) / rate
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts, frame.time_base = start, Fraction(1, rate)
        for packet in sound.encode(frame):
            out.mux(packet)
    for packet in sound.encode():
        out.mux(packet)


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut a file to `fraction` of its bytes, as an interrupted copy or download leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB uint8 [H, W, 3]."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
