"""prune: what is kept, and what is never removed."""

from __future__ import annotations

import math

import pytest

from ckpt import CheckpointError, checkpoint_name, prune
from tests.ckpt_support import save


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def _regulars(directory, steps, quality=0.5):
    return [save(directory, step, quality=quality) for step in steps]


def test_prune_keeps_the_last_k_regular_and_the_best_n_by_quality(tmp_path):
    _regulars(tmp_path, range(1, 9))
    top = save(tmp_path, 2, "best", quality=0.95)
    second = save(tmp_path, 3, "best", quality=0.9)
    save(tmp_path, 4, "best", quality=0.6)
    removed = prune(tmp_path, keep_last=2, keep_best=2)
    assert {p.name for p in removed} >= {checkpoint_name(1), checkpoint_name(4, "best")}
    expected = [checkpoint_name(s) for s in (7, 8)] + [top.name, second.name]
    assert _names(tmp_path) == sorted(expected)


def test_prune_never_removes_the_checkpoint_a_run_resumed_from(tmp_path):
    resumed, *_ = _regulars(tmp_path, range(1, 6))
    prune(tmp_path, keep_last=1, keep_best=0, protect=[str(resumed)])
    assert _names(tmp_path) == [checkpoint_name(1), checkpoint_name(5)]


def test_prune_never_removes_files_that_are_not_checkpoints(tmp_path):
    _regulars(tmp_path, range(1, 5))
    others = ["training.log", "checkpoint_step_1.pt", "notes.pth", ".c.pth.1.abcdef12.tmp"]
    for name in others:
        (tmp_path / name).write_text("keep me")
    prune(tmp_path, keep_last=1, keep_best=0)
    assert _names(tmp_path) == sorted([*others, checkpoint_name(4)])


def test_prune_keeps_the_newest_emergency_checkpoint(tmp_path):
    _regulars(tmp_path, [10, 20])
    save(tmp_path, 12, "emergency")
    save(tmp_path, 15, "emergency")
    prune(tmp_path, keep_last=1, keep_best=0)
    assert _names(tmp_path) == [checkpoint_name(15, "emergency"), checkpoint_name(20)]


def test_prune_keeps_the_newest_good_checkpoint_even_with_zero_limits(tmp_path):
    _regulars(tmp_path, [1, 2])
    newest = save(tmp_path, 3, "emergency")
    prune(tmp_path, keep_last=0, keep_best=0)
    assert _names(tmp_path) == [newest.name]


def test_prune_leaves_corrupt_unsafe_and_custom_suffix_files_alone(tmp_path):
    _regulars(tmp_path, [1, 2, 3])
    (tmp_path / checkpoint_name(0)).write_bytes(b"damaged")
    manual = save(tmp_path, 1, "manual")
    prune(tmp_path, keep_last=1, keep_best=0)
    assert _names(tmp_path) == sorted([checkpoint_name(0), manual.name, checkpoint_name(3)])


def test_prune_keeps_the_target_of_a_best_symlink(tmp_path):
    first, *_ = _regulars(tmp_path, [1, 2, 3])
    (tmp_path / "checkpoint_best.pth").symlink_to(first.name)
    prune(tmp_path, keep_last=1, keep_best=0)
    assert _names(tmp_path) == sorted(["checkpoint_best.pth", first.name, checkpoint_name(3)])


def test_prune_of_a_missing_directory_removes_nothing(tmp_path):
    assert prune(tmp_path / "absent") == []


@pytest.mark.parametrize(
    "limits", [{"keep_last": -1}, {"keep_best": 1.5}, {"keep_emergency": 0}, {"keep_last": True}]
)
def test_prune_refuses_bad_limits(tmp_path, limits):
    with pytest.raises(CheckpointError, match="must be an int"):
        prune(tmp_path, **limits)


def test_prune_ranks_nan_quality_below_every_finite_one_and_keeps_the_newest_finite(tmp_path):
    for step, quality in zip((10, 20, 30, 40, 50), (math.nan, 0.8, math.nan, 0.5, math.nan), strict=True):
        save(tmp_path, step, quality=quality, loss=math.nan if math.isnan(quality) else 0.1)
    prune(tmp_path, keep_last=1, keep_best=1)
    # 20: the best; 40 (0.5): the newest finite one; 50: the newest, kept as ever
    assert _names(tmp_path) == [checkpoint_name(s) for s in (20, 40, 50)]


def test_prune_keeps_the_finite_best_n_whatever_the_nan_ones_around_them(tmp_path):
    for step, quality in zip((10, 20, 30, 40, 50), (math.nan, 0.8, math.nan, 0.5, math.nan), strict=True):
        save(tmp_path, step, "best", quality=quality)
    prune(tmp_path, keep_last=0, keep_best=2)
    assert _names(tmp_path) == [checkpoint_name(s, "best") for s in (20, 40, 50)]
