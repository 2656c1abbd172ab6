from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from trainer.data import (
    DataConfig,
    DataError,
    PatchFolderDataset,
    ResumableRandomSampler,
    SyntheticSpec,
    build_datasets,
    default_dataset_root,
    generate_dataset,
)
from trainer.data.images import area_downscale

SMALL = SyntheticSpec(n_train=6, n_val=2)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth"), seed=0, spec=SMALL)


def _array(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_generated_set_has_the_original_layout_and_is_deterministic(small_root: Path, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", seed=0, spec=SMALL)
    for split, n in (("Patches", 6), ("Val", 2)):
        names = sorted(p.name for p in (small_root / split / "GT").glob("*.png"))
        assert len(names) == n
        for sub in ("GT", "LR", "LR_7frames", "GT_7frames"):
            for name in names:
                assert np.array_equal(_array(small_root / split / sub / name), _array(again / split / sub / name))
    assert _array(small_root / "Val" / "GT" / names[0]).shape == (96, 96, 3)
    assert _array(small_root / "Val" / "LR" / names[0]).shape == (5 * 32, 32, 3)
    train = {p.name for p in (small_root / "Patches" / "GT").glob("*.png")}
    assert not train & set(names)


def test_generated_frames_move_by_subpixel_steps_and_lr_is_the_area_downscale(small_root: Path) -> None:
    name = next((small_root / "Patches" / "GT").glob("*.png")).name
    gt = _array(small_root / "Patches" / "GT" / name)
    lr = _array(small_root / "Patches" / "LR" / name).reshape(5, 32, 32, 3)
    assert np.array_equal(lr[2], area_downscale(gt, 3))
    assert all(not np.array_equal(lr[i], lr[2]) for i in (0, 1, 3, 4))


def test_default_root_generates_once_atomically_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VSRPP_CACHE", str(tmp_path))
    root = default_dataset_root(spec=SMALL)
    assert root.parent == tmp_path and (root / "Val" / "GT").is_dir()
    stamp = (root / "Patches").stat().st_mtime_ns
    assert default_dataset_root(spec=SMALL) == root
    assert (root / "Patches").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp folder left behind


def test_augmentation_is_identical_on_all_frames_and_the_target(small_root: Path) -> None:
    ds = PatchFolderDataset(small_root / "Patches", augment=True, patch_size=16)
    for epoch in range(4):
        sample = ds[(1, epoch)]
        lr, gt = sample["lr"], sample["gt"]
        assert lr.shape == (5, 3, 16, 16) and gt.shape == (3, 48, 48)
        down = torch.nn.functional.avg_pool2d(gt.unsqueeze(0), 3)[0]
        assert torch.allclose(down, lr[2], atol=1 / 255 + 1e-6)


def test_augmentation_depends_only_on_seed_epoch_and_index(small_root: Path) -> None:
    ds = PatchFolderDataset(small_root / "Patches", augment=True, patch_size=16, seed=3)
    assert torch.equal(ds[(2, 5)]["lr"], ds[(2, 5)]["lr"])
    assert any(not torch.equal(ds[(2, 5)]["lr"], ds[(2, e)]["lr"]) for e in range(6, 12))


def test_many_to_many_samples_carry_all_frames(small_root: Path) -> None:
    train, val = build_datasets(DataConfig(root=str(small_root), many_to_many=True, num_frames=5, patch_size=32))
    assert train[0]["gt"].shape == (5, 3, 96, 96)
    assert val[0]["lr"].shape == (5, 3, 32, 32)


def test_sampler_resumes_exactly_where_the_loop_stopped() -> None:
    full = ResumableRandomSampler(10, seed=7)
    it = iter(full)
    expected = [next(it) for _ in range(35)]
    first = ResumableRandomSampler(10, seed=7)
    it = iter(first)
    got = [next(it) for _ in range(14)]  # the loader may have prefetched more than this
    first.advance(12)
    resumed = ResumableRandomSampler(10, seed=7)
    resumed.load_state_dict(first.state_dict())
    it = iter(resumed)
    got = got[:12] + [next(it) for _ in range(23)]
    assert got == expected
    assert sorted(i for i, e in expected if e == 1) == list(range(10))
    assert first.state_dict() == {"epoch": 1, "position": 2, "seed": 7, "n": 10}


def test_dataloader_workers_give_the_same_batches_as_the_main_process(small_root: Path) -> None:
    ds = PatchFolderDataset(small_root / "Patches", augment=True, patch_size=16)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(ds, batch_size=4, sampler=ResumableRandomSampler(len(ds), seed=1), num_workers=workers)
        it = iter(loader)
        return [next(it)["lr"] for _ in range(3)]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(2), strict=True))


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_missing_misnamed_or_mis_sized_files_name_the_file(small_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing GT folder"):
        PatchFolderDataset(tmp_path)
    _write(tmp_path / "GT" / "a.png", np.zeros((96, 96, 3), np.uint8))
    with pytest.raises(DataError, match="LR"):
        PatchFolderDataset(tmp_path)
    _write(tmp_path / "LR" / "a.png", np.zeros((5 * 30, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"GT/a.png: size 96x96 does not match .* 30x30"):
        PatchFolderDataset(tmp_path)
    _write(tmp_path / "LR" / "a.png", np.zeros((7 * 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="not a multiple of 5"):
        PatchFolderDataset(tmp_path)
    (tmp_path / "LR" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"LR/a.png: cannot read image"):
        PatchFolderDataset(tmp_path)


def test_empty_folder_says_which_layout_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CLIP/00000000.png"):
        build_datasets(DataConfig(root=str(tmp_path)))
    with pytest.raises(DataError, match="does not exist"):
        build_datasets(DataConfig(root=str(tmp_path / "nope")))


def test_clip_folders_make_lr_on_the_fly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for clip in ("000", "001"):
        for i in range(7):
            _write(tmp_path / clip / f"{i:08d}.png", rng.integers(0, 256, (60, 72, 3), dtype=np.uint8))
    for degrade in ("area", "bicubic"):
        cfg = DataConfig(root=str(tmp_path), patch_size=8, degrade=degrade, many_to_many=degrade == "bicubic")
        train, val = build_datasets(cfg)
        assert len(train) == 3 and len(val) == 3  # windows of 5 in a 7-frame clip
        sample = train[(0, 1)]
        assert sample["lr"].shape == (5, 3, 8, 8)
        assert sample["gt"].shape[-2:] == (24, 24)
        assert val[0]["lr"].shape == (5, 3, 16, 16) and val[0]["name"] == "001/00000002"
    area = build_datasets(DataConfig(root=str(tmp_path), patch_size=8))[0][(0, 3)]
    down = torch.nn.functional.avg_pool2d(area["gt"].unsqueeze(0), 3)[0]
    assert torch.allclose(down, area["lr"][2], atol=1 / 255 + 1e-6)


def test_fewer_frames_use_the_middle_of_the_stored_stacks(small_root: Path) -> None:
    train, _ = build_datasets(DataConfig(root=str(small_root), num_frames=3, augment=False))
    five, _ = build_datasets(DataConfig(root=str(small_root), num_frames=5, augment=False))
    assert torch.equal(train[0]["lr"], five[0]["lr"][1:4])
    seven, _ = build_datasets(DataConfig(root=str(small_root), num_frames=7, augment=False))
    assert torch.equal(seven[0]["lr"][1:6], five[0]["lr"])


def test_patches_layout_without_val_says_what_is_expected(small_root: Path, tmp_path: Path) -> None:
    (tmp_path / "Patches").mkdir()
    with pytest.raises(DataError, match=r"missing Val/ folder \(expected ROOT/Patches/\{GT,LR\}"):
        build_datasets(DataConfig(root=str(tmp_path)))


def test_a_clip_frame_of_another_size_is_named(tmp_path: Path) -> None:
    for clip in ("a", "b"):
        for i in range(5):
            size = (30, 36, 3) if (clip, i) == ("b", 3) else (36, 36, 3)
            _write(tmp_path / clip / f"{i:08d}.png", np.zeros(size, np.uint8))
    _, val = build_datasets(DataConfig(root=str(tmp_path), patch_size=4))
    with pytest.raises(DataError, match=r"b/00000003.png: size 36x30 differs"):
        val[0]


def test_losing_a_generation_race_keeps_the_winners_set(tmp_path: Path, monkeypatch) -> None:
    import trainer.data.synthetic as synthetic

    real = synthetic.generate_dataset
    final = tmp_path / synthetic.dataset_dir_name(0, SMALL)

    def racing(root: Path, seed: int, spec: SyntheticSpec) -> Path:
        real(root, seed, spec)
        final.mkdir()  # another process finished first
        (final / "winner").touch()
        return root

    monkeypatch.setattr(synthetic, "generate_dataset", racing)
    assert default_dataset_root(tmp_path, spec=SMALL) == final
    assert (final / "winner").exists()
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_area_downscale_is_the_block_mean_rounded_half_to_even(scale: int) -> None:
    frames = np.random.default_rng(scale).integers(0, 256, (3, 2, 12 * scale, 8 * scale, 3), dtype=np.uint8)
    blocks = frames.reshape(3, 2, 12, scale, 8, scale, 3).astype(np.float64)
    expected = np.rint(blocks.mean(axis=(3, 5))).astype(np.uint8)
    assert np.array_equal(area_downscale(frames, scale), expected)
    assert np.array_equal(area_downscale(frames[:, :, ::-1], scale), expected[:, :, ::-1])  # strided input
