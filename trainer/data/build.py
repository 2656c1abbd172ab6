"""DataConfig and build_datasets: pick the layout, split train/val, construct the data sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from .clips import Clip, ClipFolderDataset, find_clips
from .images import DEGRADATIONS, DataError
from .patches import PatchFolderDataset
from .synthetic import SyntheticSpec, default_dataset_root

__all__ = ["DataConfig", "build_datasets", "detect_layout"]

LAYOUTS = ("auto", "patches", "clips")


@dataclass
class DataConfig:
    root: str | None = None  # None or "" = the embedded generated set
    layout: str = "auto"  # auto | patches (ROOT/Patches + ROOT/Val) | clips (ROOT/CLIP/*.png)
    num_frames: int = 5
    scale: int = 3
    patch_size: int = 16  # LR side of training crops (clips; patches larger than this are cropped)
    degrade: str = "area"  # clips: how LR is made, area | bicubic
    many_to_many: bool = False  # targets = all T HR frames instead of the centre one
    augment: bool = True
    cache: bool = True  # keep decoded images in memory when they fit in cache_limit_mb
    cache_limit_mb: int = 2048
    seed: int = 0
    cache_dir: str | None = None  # where the embedded set is generated (default $VSRPP_CACHE or ~/.cache/vsrpp)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"data.layout must be one of {', '.join(LAYOUTS)}; got {self.layout!r}")
        if self.num_frames < 3 or (self.num_frames % 2 == 0 and not self.many_to_many):
            # a centre-frame model needs a middle frame; many-to-many ones (BasicVSR++'s 30) do not
            raise ValueError(f"data.num_frames must be odd and >= 3 (even only for many-to-many models), "
                             f"got {self.num_frames}")
        if self.scale not in (2, 3, 4):
            raise ValueError(f"data.scale must be 2, 3 or 4, got {self.scale}")
        if self.patch_size < 4:
            raise ValueError(f"data.patch_size must be >= 4 LR pixels, got {self.patch_size}")
        if self.degrade not in DEGRADATIONS:
            raise ValueError(f"data.degrade must be 'area' or 'bicubic', got {self.degrade!r}")


def detect_layout(root: Path) -> str:
    if (root / "Patches").is_dir():
        return "patches"
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    return "clips"


def build_datasets(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """(train_ds, val_ds) for the configured folder, or the embedded set when cfg.root is empty."""
    if cfg.root:
        root = Path(cfg.root).expanduser()
    else:
        spec = SyntheticSpec(scale=cfg.scale)
        root = default_dataset_root(cfg.cache_dir, seed=0, spec=spec)
    layout = detect_layout(root) if cfg.layout == "auto" else cfg.layout
    if layout == "patches":
        return _patch_sets(root, cfg)
    return _clip_sets(root, cfg)


def _patch_sets(root: Path, cfg: DataConfig) -> tuple[Dataset, Dataset]:
    for split in ("Patches", "Val"):
        if not (root / split).is_dir():
            raise DataError(f"{root}: missing {split}/ folder (expected ROOT/Patches/{{GT,LR}} and ROOT/Val/{{GT,LR}})")
    common = dict(num_frames=cfg.num_frames, scale=cfg.scale, many_to_many=cfg.many_to_many,
                  cache=cfg.cache, seed=cfg.seed)
    train = PatchFolderDataset(root / "Patches", augment=cfg.augment, patch_size=cfg.patch_size, **common)
    val = PatchFolderDataset(root / "Val", augment=False, **common)
    return train, val


def _clip_sets(root: Path, cfg: DataConfig) -> tuple[Dataset, Dataset]:
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_clips, val_clips = find_clips(root / "train", cfg.num_frames), find_clips(root / "val", cfg.num_frames)
    else:
        clips = find_clips(root, cfg.num_frames)
        if len(clips) < 2:
            raise DataError(f"{root}: need at least 2 clip folders (the last ~10% validate), "
                            f"or ROOT/train/CLIP and ROOT/val/CLIP")
        n_val = max(1, len(clips) // 10)
        train_clips, val_clips = clips[:-n_val], clips[-n_val:]
    cache = cfg.cache and _fits_in_cache(train_clips + val_clips, cfg.cache_limit_mb)
    common = dict(num_frames=cfg.num_frames, scale=cfg.scale, patch_size=cfg.patch_size, degrade=cfg.degrade,
                  many_to_many=cfg.many_to_many, cache=cache, seed=cfg.seed)
    train = ClipFolderDataset(train_clips, train=True, augment=cfg.augment, **common)
    val = ClipFolderDataset(val_clips, train=False, augment=False, **common)
    return train, val


def _fits_in_cache(clips: list[Clip], limit_mb: int) -> bool:
    """Estimate decoded size from the first frame's header (no full decode). Raw clips are never
    cached: they are read through memory maps, and the OS page cache keeps what fits."""
    if not all(isinstance(c, list) for c in clips):
        return False
    with Image.open(clips[0][0]) as img:
        frame_bytes = img.width * img.height * 3
    return frame_bytes * sum(len(c) for c in clips) <= limit_mb * 2**20
