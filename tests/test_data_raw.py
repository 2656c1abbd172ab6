"""Raw clips (ROOT/CLIP.npy, what `prepare --format raw` writes) give the same samples as the PNG
clip folders they were made from, read through a memory map that is never copied into workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from trainer.data import DataConfig, DataError, ResumableRandomSampler, build_datasets
from trainer.data.rawclips import RawClip


def _clips(root: Path, raw: bool) -> None:
    rng = np.random.default_rng(0)
    for split, names in (("train", ("a", "b")), ("val", ("c",))):
        for name in names:
            clip = rng.integers(0, 256, (9, 36, 48, 3), dtype=np.uint8)
            (root / split).mkdir(parents=True, exist_ok=True)
            if raw:
                np.save(root / split / f"{name}.npy", clip)
                continue
            (root / split / name).mkdir()
            for i, frame in enumerate(clip):
                Image.fromarray(frame).save(root / split / name / f"{i:08d}.png")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    png, raw = tmp_path_factory.mktemp("png"), tmp_path_factory.mktemp("raw")
    _clips(png, raw=False)
    _clips(raw, raw=True)
    return png, raw


@pytest.mark.parametrize("many_to_many", [False, True])
def test_raw_clips_give_the_same_samples_as_png_clips(roots, many_to_many: bool, one_torch_thread) -> None:
    cfg = dict(num_frames=5 + many_to_many, scale=3, patch_size=8, many_to_many=many_to_many)
    png = build_datasets(DataConfig(root=str(roots[0]), **cfg))
    raw = build_datasets(DataConfig(root=str(roots[1]), **cfg))
    for a, b in zip(png, raw, strict=True):
        assert len(a) == len(b) > 0
        for key in [(0, 0), (3, 1), (len(a) - 1, 7)]:
            x, y = a[key], b[key]
            assert x["name"] == y["name"] and torch.equal(x["lr"], y["lr"]) and torch.equal(x["gt"], y["gt"])


def test_a_raw_clip_is_not_copied_when_handed_to_a_worker(roots, one_torch_thread) -> None:
    train, _ = build_datasets(DataConfig(root=str(roots[1]), patch_size=8))
    train[0]  # maps the file
    assert len(pickle.dumps(train)) < 4096  # 9 x 36 x 48 x 3 = 46 KB per clip if the map were copied
    loader = DataLoader(train, batch_size=2, sampler=ResumableRandomSampler(len(train), seed=1), num_workers=1)
    batch = next(iter(loader))
    assert batch["lr"].shape == (2, 5, 3, 8, 8)


def test_a_raw_file_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((9, 36, 48), np.uint8))
    with pytest.raises(DataError, match=r"bad.npy: expected a uint8 array \[T, H, W, 3\]"):
        RawClip(tmp_path / "bad.npy")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad.npy: cannot read raw clip"):
        RawClip(tmp_path / "bad.npy")


def test_a_truncated_raw_clip_is_named_when_read(tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.zeros((9, 36, 48, 3), np.uint8))
    clip = RawClip(tmp_path / "short.npy")
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"short.npy: cannot read raw clip"):
        clip.window(0, 5)
