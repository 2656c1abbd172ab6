"""Frames in and out for `trainer.upscale`: frame folders and video files (PyAV), one frame at a time.

A source yields (FrameInfo, frame [3, h, w] float in [0, 1]) lazily and hands a video's audio
packets to a callback as it demuxes them; a sink writes HR frames as lossless PNGs (same names) or
encodes them (`--codec`, `--crf`, `--pix-fmt`) with the input's timestamps, and remuxes the audio
packets unchanged. Odd HR sizes: formats with subsampled chroma (the default yuv420p) need even
sizes, so such frames get one edge-replicated row/column; yuv444p keeps the exact size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image
from torch import Tensor

from trainer.data.images import to_tensor
from trainer.infer.model import UpscaleError
from trainer.media import frame_files
from trainer.media import import_av as _import_av

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
CRF_CODECS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")


@dataclass(frozen=True)
class VideoOptions:
    codec: str = "libx264"
    crf: int = 18
    pix_fmt: str = "yuv420p"
    fps: float | None = None  # force a constant rate (default: the input's timestamps, or 25 for folders)


@dataclass(frozen=True)
class FrameInfo:
    name: str  # PNG name in an output folder
    pts: int | None = None  # presentation time in time_base units (video inputs)
    time_base: Fraction | None = None


def import_av() -> ModuleType:
    """PyAV, or an UpscaleError saying how to install it."""
    return _import_av(UpscaleError, "video files")


class FolderSource:
    def __init__(self, path: Path) -> None:
        self.files = frame_files(path)
        if not self.files:
            raise UpscaleError(f"no PNG/JPG frames in {path}")
        self.count, self.fps, self.time_base, self.audio = len(self.files), None, None, []
        self.size = Image.open(self.files[0]).size[::-1]  # (h, w)

    def frames(self, on_audio: Callable[[object], None]) -> Iterator[tuple[FrameInfo, Tensor]]:
        for f in self.files:
            array = np.array(Image.open(f).convert("RGB"))
            if array.shape[:2] != self.size:
                raise UpscaleError(f"frames differ in size: {f.name} is {array.shape[:2]}, the first {self.size}")
            yield FrameInfo(f.stem + ".png"), to_tensor(array)

    def close(self) -> None:
        pass


class VideoSource:
    def __init__(self, path: Path) -> None:
        av = import_av()
        try:
            self.container = av.open(str(path))
            self.stream = self.container.streams.video[0]
        except (av.FFmpegError, IndexError) as exc:
            raise UpscaleError(f"cannot read a video from {path}: {exc or 'no video stream'}") from None
        self.path, self.audio = path, list(self.container.streams.audio)
        self.time_base = self.stream.time_base
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.size = (self.stream.codec_context.height, self.stream.codec_context.width)
        seconds = (self.stream.duration * self.stream.time_base if self.stream.duration
                   else (self.container.duration or 0) / 1e6)  # Matroska gives only the container's
        self.count = self.stream.frames or (round(seconds * rate) if seconds and rate else None)

    def frames(self, on_audio: Callable[[object], None]) -> Iterator[tuple[FrameInfo, Tensor]]:
        av = import_av()
        i = 0
        try:
            for packet in self.container.demux(self.stream, *self.audio):
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        on_audio(packet)
                    continue
                for frame in packet.decode():
                    if (frame.height, frame.width) != self.size:
                        raise UpscaleError(f"{self.path}: frame {i} is {frame.width}x{frame.height}, "
                                           f"the stream {self.size[1]}x{self.size[0]}")
                    info = FrameInfo(f"{i:08d}.png", frame.pts, frame.time_base)
                    yield info, to_tensor(frame.to_ndarray(format="rgb24"))
                    i += 1
        except av.FFmpegError as exc:
            raise UpscaleError(f"cannot decode {self.path} after {i} frames: {exc}") from None
        if i == 0:
            raise UpscaleError(f"no video frames in {self.path}")

    def close(self) -> None:
        self.container.close()


def open_source(path: str | Path) -> FolderSource | VideoSource:
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise UpscaleError(f"input not found: {path}")
    return VideoSource(path)


def to_array(frame: Tensor) -> np.ndarray:
    """[3, H, W] float in [0, 1] -> HxWx3 uint8."""
    return frame.mul(255).round_().byte().permute(1, 2, 0).contiguous().numpy()


class FrameSink:
    """Writes HR frames [3, H, W] as PNGs into a folder, or into a video file (by extension) whose
    audio streams copy `audio` (input streams; their packets come through `mux`)."""

    def __init__(self, path: str | Path, fps: float = 25.0, video: VideoOptions | None = None,
                 audio: list | None = None, size: tuple[int, int] | None = None,
                 time_base: Fraction | None = None) -> None:
        self.path, self.fps, self.video = Path(path), fps, video or VideoOptions()
        self.audio, self.size, self.time_base = audio or [], size, time_base
        self._container = self._stream = None
        self._copies: dict = {}  # input audio stream -> output stream
        self._frames = 0

    def __enter__(self) -> FrameSink:
        if self.path.suffix.lower() not in VIDEO_EXT:
            self.path.mkdir(parents=True, exist_ok=True)
            return self
        av = import_av()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # written beside the output and renamed at the end: a killed run never leaves a broken file
        # under the output's name, nor replaces a complete one
        self._container = av.open(str(self.partial), mode="w")
        if self.size is not None:
            self._add_video(*self.size)
        try:
            self._copies = {s.index: self._container.add_stream_from_template(s) for s in self.audio}
        except (av.FFmpegError, ValueError) as exc:
            self._container.close()
            self.partial.unlink(missing_ok=True)
            raise UpscaleError(f"cannot copy the audio into {self.path.suffix}: {exc}") from None
        return self

    def _add_video(self, height: int, width: int) -> None:
        av = import_av()
        opts = self.video
        try:
            fmt = av.VideoFormat(opts.pix_fmt, width, height)
            stream = self._container.add_stream(opts.codec, rate=Fraction(self.fps).limit_denominator(1001))
        except (av.FFmpegError, ValueError) as exc:
            raise UpscaleError(f"--codec {opts.codec} / --pix-fmt {opts.pix_fmt}: {exc}") from None
        if fmt.chroma_width() != width:  # subsampled chroma: whole chroma pixels need an even width
            width += width % 2
        if fmt.chroma_height() != height:
            height += height % 2
        stream.width, stream.height, stream.pix_fmt = width, height, opts.pix_fmt
        if self.time_base is not None and opts.fps is None:  # keep the input's timestamps exactly (VFR too)
            stream.codec_context.time_base = stream.time_base = self.time_base
        if opts.codec in CRF_CODECS:
            stream.options = {"crf": str(opts.crf)}
        self._stream, self._pad = stream, (height, width)

    def write(self, info: FrameInfo | str, frame: Tensor) -> None:
        info = FrameInfo(info) if isinstance(info, str) else info
        array = to_array(frame)
        if self._container is None:
            Image.fromarray(array).save(self.path / info.name)
            return
        if self._stream is None:
            self._add_video(*array.shape[:2])
        h, w = self._pad
        if array.shape[:2] != (h, w):
            array = np.pad(array, ((0, h - array.shape[0]), (0, w - array.shape[1]), (0, 0)), mode="edge")
        out = import_av().VideoFrame.from_ndarray(array, format="rgb24")
        if info.pts is not None and self.video.fps is None:
            out.pts, out.time_base = info.pts, info.time_base
        else:
            out.pts, out.time_base = self._frames, Fraction(1, 1) / Fraction(self.fps).limit_denominator(1001)
        self._frames += 1
        for packet in self._stream.encode(out):
            self._container.mux(packet)

    def mux(self, packet) -> None:
        """Copy one input audio packet into its output stream, unchanged (frame folders have no audio)."""
        if self._container is None:
            return
        packet.stream = self._copies[packet.stream.index]
        self._container.mux(packet)

    @property
    def partial(self) -> Path:
        """Where a video is written until it is complete."""
        return self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        if self._container is None:
            return
        if error is not None and not issubclass(error, KeyboardInterrupt):  # Ctrl-C keeps what was done
            self._container.close()
            self.partial.unlink(missing_ok=True)
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        os.replace(self.partial, self.path)
