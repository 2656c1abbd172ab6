"""The embedded default data set: procedural video patches, generated once into a cache folder.

Each sample is a scene (smooth gradients, low-frequency shading, stripes, checkers, shapes, lines,
text) drawn with PIL at 2x and box-filtered to HR, so it has both sharp antialiased edges and
smooth regions. A camera pans over it with a random velocity: frame i is an HR crop shifted by
whole HR pixels, i.e. sub-pixel (1/scale) steps at LR resolution. LR frames are area
downscales of those crops; GT is the centre HR crop. Train and validation scenes come from
disjoint seeds. Written in the original layout (see `patches.py`) plus `GT_7frames` stacks
(all 7 HR frames; many-to-many models with 5 frames use the middle five).
"""

from __future__ import annotations

import functools
import os
import shutil
import string
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import area_downscale, write_png

__all__ = ["SyntheticSpec", "default_dataset_root", "generate_dataset", "render_sample"]

GENERATOR_VERSION = 1
MAX_FRAMES = 7  # render 7; the 5-frame set is the middle five


@dataclass(frozen=True)
class SyntheticSpec:
    scale: int = 3
    lr_size: int = 32
    n_train: int = 400
    n_val: int = 40
    max_speed: float = 2.5  # HR pixels per frame, per axis

    @property
    def hr_size(self) -> int:
        return self.lr_size * self.scale


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A linear gradient between two colours times smooth low-frequency shading."""
    t = np.linspace(0, 1, size // 2, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 + (c1 - c0) * ramp[..., None]
    coarse = Image.fromarray(rng.uniform(0.7, 1.15, (4, 4)).astype(np.float32), mode="F")
    shade = np.asarray(coarse.resize((size // 2, size // 2), Image.BICUBIC))
    small = Image.fromarray(np.clip(img * shade[..., None], 0, 255).astype(np.uint8))
    return small.resize((size, size), Image.BILINEAR)


def _pattern(rng: np.random.Generator, size: int) -> Image.Image:
    """Stripes (sinusoidal or square) or a checkerboard, at a random frequency and angle.

    Computed at half size and upscaled (cheap; the 2x canvas is box-filtered afterwards anyway).
    """
    yy, xx = np.ogrid[0 : size // 2, 0 : size // 2]
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 14)
    u = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period
    kind = rng.integers(3)
    if kind == 0:
        v = 0.5 + 0.5 * np.sin(u)
    elif kind == 1:
        v = (np.sin(u) > 0).astype(np.float32)
    else:
        w = (-np.sin(angle) * xx + np.cos(angle) * yy) * 2 * np.pi / period
        v = ((np.sin(u) > 0) ^ (np.sin(w) > 0)).astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    small = Image.fromarray((c0 + (c1 - c0) * v[..., None].astype(np.float32)).astype(np.uint8))
    return small.resize((size, size), Image.BILINEAR)


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _box(rng: np.random.Generator, size: int, lo: float, hi: float) -> list[int]:
    w, h = (rng.uniform(lo, hi, 2) * size).astype(int)
    x0, y0 = rng.integers(-w // 3, size - w // 2), rng.integers(-h // 3, size - h // 2)
    return [int(x0), int(y0), int(x0 + w), int(y0 + h)]


def _draw_items(img: Image.Image, rng: np.random.Generator) -> None:
    size = img.width
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 3)):  # textured patches
        box = _box(rng, size, 0.25, 0.6)
        mask = Image.new("L", img.size)
        shape = ImageDraw.Draw(mask).ellipse if rng.random() < 0.4 else ImageDraw.Draw(mask).rectangle
        shape(box, fill=255)
        img.paste(_pattern(rng, size), (0, 0), mask)
    for _ in range(rng.integers(3, 8)):  # solid shapes with optional outline
        box, kind = _box(rng, size, 0.08, 0.35), rng.integers(3)
        outline = _color(rng) if rng.random() < 0.5 else None
        width = int(rng.integers(2, 8))
        if kind == 0:
            draw.rectangle(box, fill=_color(rng), outline=outline, width=width)
        elif kind == 1:
            draw.ellipse(box, fill=_color(rng), outline=outline, width=width)
        else:
            pts = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(rng.integers(3, 6))]
            draw.polygon(pts, fill=_color(rng), outline=outline)
    for _ in range(rng.integers(1, 5)):  # thin and thick lines
        pts = [tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)]
        draw.line(pts, fill=_color(rng), width=int(rng.integers(2, 9)))
    for _ in range(rng.integers(1, 4)):  # text
        font = _font(int(rng.integers(18, 56)))
        text = "".join(rng.choice(list(string.ascii_letters + string.digits), rng.integers(3, 9)))
        xy = tuple(int(v) for v in rng.integers(-size // 8, size * 3 // 4, 2))
        draw.text(xy, text, fill=_color(rng), font=font)


def render_sample(seed: int, spec: SyntheticSpec = SyntheticSpec()) -> tuple[np.ndarray, np.ndarray]:
    """Render one clip: (HR frames [7, H, W, 3], LR frames [7, h, w, 3]), uint8, deterministic in seed."""
    rng = np.random.default_rng([GENERATOR_VERSION, spec.scale, seed])
    hr, half = spec.hr_size, MAX_FRAMES // 2
    margin = int(np.ceil(spec.max_speed * half)) + 1
    canvas = hr + 2 * margin
    big = _background(rng, canvas * 2)
    _draw_items(big, rng)
    scene = np.asarray(big.resize((canvas, canvas), Image.BOX))
    vx, vy = rng.uniform(-spec.max_speed, spec.max_speed, 2)
    frames = []
    for i in range(-half, half + 1):
        dx, dy = int(round(vx * i)), int(round(vy * i))
        frames.append(scene[margin + dy : margin + dy + hr, margin + dx : margin + dx + hr])
    hr_frames = np.stack(frames)
    return hr_frames, area_downscale(hr_frames, spec.scale)


def _write_sample(folder: Path, seed: int, spec: SyntheticSpec) -> None:
    hr, lr = render_sample(seed, spec)
    name = f"{seed:06d}.png"
    write_png(folder / "GT" / name, hr[MAX_FRAMES // 2])
    write_png(folder / "LR" / name, np.concatenate(lr[1:6]))
    write_png(folder / "LR_7frames" / name, np.concatenate(lr))
    write_png(folder / "GT_7frames" / name, np.concatenate(hr))


def _write_split(folder: Path, seeds: range, spec: SyntheticSpec) -> None:
    for sub in ("GT", "LR", "LR_7frames", "GT_7frames"):
        (folder / sub).mkdir(parents=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL/numpy release the GIL
        list(pool.map(lambda seed: _write_sample(folder, seed, spec), seeds))


def generate_dataset(root: Path, seed: int = 0, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write the set into `root` (Patches/ and Val/). Train and val scenes use disjoint seeds."""
    base = seed * 1_000_000
    _write_split(root / "Patches", range(base, base + spec.n_train), spec)
    _write_split(root / "Val", range(base + 500_000, base + 500_000 + spec.n_val), spec)
    return root


def dataset_dir_name(seed: int, spec: SyntheticSpec) -> str:
    """Cache folder name: changes whenever the content would (generator version, spec, seed)."""
    return f"synthetic-v{GENERATOR_VERSION}-x{spec.scale}-lr{spec.lr_size}-n{spec.n_train}-{spec.n_val}-seed{seed}"


def default_dataset_root(
    cache_dir: str | Path | None = None, seed: int = 0, *, spec: SyntheticSpec = SyntheticSpec()
) -> Path:
    """The embedded set's folder, generated on first use (into a temp dir, then renamed atomically).

    cache_dir defaults to $VSRPP_CACHE, else ~/.cache/vsrpp.
    """
    if cache_dir is None:
        cache_dir = os.environ.get("VSRPP_CACHE") or Path.home() / ".cache" / "vsrpp"
    cache = Path(cache_dir).expanduser()
    name = dataset_dir_name(seed, spec)
    root = cache / name
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
    try:
        generate_dataset(tmp, seed, spec)
        os.rename(tmp, root)
    except OSError:
        if not root.is_dir():  # a concurrent generator did not win the race: a real error
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
