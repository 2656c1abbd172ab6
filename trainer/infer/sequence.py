"""A loaded model run over a sequence of frames.

The one-output-per-window model (vsrpp) slides a window of num_frames over the sequence (edges
padded by repeating the first / last frame); many-to-many models (basicvsrpp) run on overlapping
chunks of `window` frames and keep each chunk's centre part; `tile` splits frames into LR tiles.
Frames may come as one tensor or as a stream (any iterable of [3, h, w]): only the frames the
current window or chunk needs are held, so a film costs no more memory than a clip.
Used by `trainer.upscale` (videos and folders) and the model-side tools after it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from trainer.device import autocast
from trainer.infer.model import LoadedModel, UpscaleOptions


def run_tiled(fn: Callable[[Tensor], Tensor], x: Tensor, scale: int, tile: int, overlap: int) -> Tensor:
    """fn on LR tiles of x [..., h, w] with `overlap` context; the centres are stitched together."""
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x)
    out: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            ys, xs = max(0, y0 - overlap), max(0, x0 - overlap)
            part = fn(x[..., ys:min(h, y1 + overlap), xs:min(w, x1 + overlap)])
            if out is None:
                out = part.new_zeros(*part.shape[:-2], h * scale, w * scale)
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                part[..., (y0 - ys) * scale:(y1 - ys) * scale, (x0 - xs) * scale:(x1 - xs) * scale]
    assert out is not None
    return out


def _padded(frames: Iterable[Tensor], pad: int) -> Iterator[Tensor]:
    """The frames with the first and the last one repeated `pad` extra times."""
    last = None
    for i, frame in enumerate(frames):
        if i == 0:
            yield from itertools.repeat(frame, pad)
        yield frame
        last = frame
    if last is not None:
        yield from itertools.repeat(last, pad)


def _windows_many_to_one(frames: Iterable[Tensor], num_frames: int) -> Iterator[Tensor]:
    """For each frame, the num_frames window centred on it, edges repeated: [1, T, 3, h, w]."""
    window: deque[Tensor] = deque(maxlen=num_frames)
    for frame in _padded(frames, num_frames // 2):
        window.append(frame)
        if len(window) == num_frames:
            yield torch.stack(tuple(window)).unsqueeze(0)


def overlapping_chunks(frames: Iterable[Tensor], window: int, overlap: int) -> Iterator[tuple[Tensor, int, int]]:
    """(chunk [1, n, 3, h, w], keep_start, keep_end within it): chunks of at most `window` frames whose
    kept parts cover the sequence once, each with up to `overlap` frames of context on either side
    (a sequence of at most `window` frames is one chunk). Reads the stream holding only the frames
    from the current chunk's start on."""
    stream = iter(frames)
    buf = list(itertools.islice(stream, window + 1))
    if len(buf) <= window:  # the whole sequence is one chunk
        if buf:
            yield torch.stack(buf).unsqueeze(0), 0, len(buf)
        return
    step, base, keep, ended = window - 2 * overlap, 0, 0, False
    while True:
        while not ended and base + len(buf) < keep + step + overlap:
            frame = next(stream, None)
            ended = frame is None
            if frame is not None:
                buf.append(frame)
        known = base + len(buf)  # == the length of the sequence once ended
        if keep >= known:
            return
        keep_end = min(keep + step, known)
        start, end = max(0, keep - overlap), min(known, keep_end + overlap)
        yield torch.stack(buf[start - base:end - base]).unsqueeze(0), keep - start, keep_end - start
        keep = keep_end
        drop = max(0, keep - overlap) - base
        del buf[:drop]
        base += drop


def upscale_frames(loaded: LoadedModel, frames: Tensor | Iterable[Tensor], opts: UpscaleOptions,
                   device: torch.device) -> Iterator[Tensor]:
    """frames [T, 3, h, w] in [0, 1] (CPU; a tensor or any iterable of [3, h, w], read lazily)
    -> each HR frame [3, sH, sW] in order (CPU, clamped)."""
    def fn(x: Tensor) -> Tensor:
        with autocast(device, opts.amp):
            return loaded.model(x.to(device)).float()

    with torch.inference_mode():
        if not loaded.many_to_many:
            for window in _windows_many_to_one(frames, loaded.num_frames):
                yield run_tiled(fn, window, loaded.scale, opts.tile, opts.tile_overlap)[0].clamp(0, 1).cpu()
            return
        window, overlap = opts.window, opts.window_overlap
        if loaded.max_frames is not None and window > loaded.max_frames:
            window, overlap = loaded.max_frames, min(overlap, (loaded.max_frames - 1) // 2)
        for chunk, keep, keep_end in overlapping_chunks(frames, window, overlap):
            out = run_tiled(fn, chunk, loaded.scale, opts.tile, opts.tile_overlap)
            yield from out[0, keep:keep_end].clamp(0, 1).cpu()
