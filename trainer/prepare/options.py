"""PrepareOptions: every choice that shapes a prepared data set, validated in one place.

The options that change the output bytes (everything but `workers`) are recorded in the data set's
manifest; a later run into the same folder must use the same ones (see `differing_option`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["PrepareOptions", "OptionError", "LAYOUTS", "FORMATS", "default_frames", "default_scale", "differing_option"]

LAYOUTS = ("clips", "patches")
FORMATS = ("png", "raw")


class OptionError(ValueError):
    """A bad option value or an option that conflicts with an existing data set; the message says which."""


def default_frames(layout: str) -> int:
    return 30 if layout == "clips" else 5  # BasicVSR++'s recipe; the original's 5-frame stacks


def default_scale(layout: str) -> int:
    return 4 if layout == "clips" else 3  # BasicVSR++'s x4; the original's 180 -> 540 px patches


@dataclass
class PrepareOptions:
    inputs: list[str] = field(default_factory=list)
    layout: str = "clips"
    frames: int = 0  # 0 = default_frames(layout)
    scale: int = 0  # 0 = default_scale(layout); clips keep full resolution, patches are cut at this scale
    stride: int = 1
    clips_per_video: int = 0  # 0 = every clip the video has
    val_fraction: float = 0.1
    seed: int = 0
    format: str = "png"
    patch_size: int = 64  # patches layout: LR side of each patch
    cut_threshold: float = 0.2  # colour-histogram change (0-1) between two frames that starts a new shot
    black_threshold: float = 16.0  # a frame whose mean brightness (0-255) is below this is black
    frozen_threshold: float = 1.0  # a window whose mean frame-to-frame change (0-255) is below this is frozen
    blur_threshold: float = 0.5  # a window whose centre frame's blur (0 sharp - 1 flat) is above this is blurred

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise OptionError(f"--layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        if self.format not in FORMATS:
            raise OptionError(f"--format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if self.format == "raw" and self.layout != "clips":
            raise OptionError("--format raw is for --layout clips (patches are the original's PNG layout)")
        self.frames = self.frames or default_frames(self.layout)
        self.scale = self.scale or default_scale(self.layout)
        if self.layout == "patches" and self.frames not in (5, 7):
            raise OptionError(f"--frames must be 5 or 7 with --layout patches; got {self.frames}")
        if self.frames < 2:
            raise OptionError(f"--frames must be >= 2; got {self.frames}")
        if self.scale not in (2, 3, 4):
            raise OptionError(f"--scale must be 2, 3 or 4; got {self.scale}")
        for name in ("stride", "patch_size"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(self, name)}")
        if self.clips_per_video < 0:
            raise OptionError(f"--clips-per-video must be >= 0; got {self.clips_per_video}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise OptionError(f"--val-fraction must be in [0, 1); got {self.val_fraction}")

    def recorded(self) -> dict:
        """The options that shape the output, as stored in the manifest."""
        return asdict(self)


def differing_option(stored: dict, options: PrepareOptions) -> str | None:
    """A message naming the first option that differs from a stored data set's, or None."""
    for key, value in options.recorded().items():
        if stored.get(key) != value:
            flag = "the INPUT list" if key == "inputs" else f"--{key.replace('_', '-')}"
            was = "" if key == "inputs" else f" {stored.get(key)!r} (this run: {value!r})"
            return f"it was made with a different {flag}{was}"
    return None
