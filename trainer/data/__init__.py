"""VSR++ data sets: the embedded generated set, the original Patches/Val layout, clip folders.

Samples are dicts {"lr": float [T,3,h,w], "gt": float [3,H,W] (or [T,3,H,W] for many-to-many),
"name": str}; see docs/internal-interfaces.md.
"""

from __future__ import annotations

from .build import DataConfig, build_datasets, detect_layout
from .clips import ClipFolderDataset, find_clips
from .images import DataError
from .patches import PatchFolderDataset
from .sampler import ResumableRandomSampler, sample_rng
from .synthetic import SyntheticSpec, default_dataset_root, generate_dataset

__all__ = [
    "ClipFolderDataset", "DataConfig", "DataError", "PatchFolderDataset", "ResumableRandomSampler",
    "SyntheticSpec", "build_datasets", "default_dataset_root", "detect_layout", "find_clips",
    "generate_dataset", "sample_rng",
]
