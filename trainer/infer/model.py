"""What every way of running a trained model shares: the loaded model, the run options, the error.

`trainer.infer.load` makes a `LoadedModel` from a file (a checkpoint, a released file, a `.onnx`);
`trainer.infer.sequence` runs one over frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from trainer.infer.released import ModelSource


class UpscaleError(ValueError):
    """What is wrong with the checkpoint, the input or the options, in words."""


@dataclass
class UpscaleOptions:
    tile: int = 0  # LR tile side; 0 = whole frames
    tile_overlap: int = 16  # LR pixels of context around each tile
    window: int = 15  # frames per chunk for many-to-many models
    window_overlap: int = 3  # frames of context on each side of a chunk
    amp: bool = True  # float16 autocast on CUDA

    def __post_init__(self) -> None:
        if self.tile < 0 or self.tile_overlap < 0 or self.window_overlap < 0:
            raise UpscaleError("--tile, --tile-overlap and --window-overlap must be >= 0")
        if self.window - 2 * self.window_overlap < 1:
            raise UpscaleError(f"--window ({self.window}) must exceed twice --window-overlap "
                               f"({self.window_overlap})")


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    scale: int
    num_frames: int
    many_to_many: bool
    max_frames: int | None = None  # most frames one call takes (an exported model's fixed T); None = any
    kwargs: dict = field(default_factory=dict)  # the model's arguments as the checkpoint gives them
    source: ModelSource | None = None  # the file's format and which weights in it (None: an .onnx file)


def check_expected(path: str | Path, name: str, scale: int, expect_model: str | None,
                   expect_scale: int | None) -> None:
    if expect_model is not None and name != expect_model:
        raise UpscaleError(f"{path} holds a {name!r} model, not the expected {expect_model!r}")
    if expect_scale is not None and scale != expect_scale:
        raise UpscaleError(f"{path} holds a x{scale} model, not the expected x{expect_scale}")
