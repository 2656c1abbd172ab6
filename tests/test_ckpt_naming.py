"""Names and parsing (the original trainer's naming, regex extraction, old/new coexistence, emergency)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ckpt import checkpoint_name, checkpoint_type, parse_step


def test_names_are_zero_padded_to_seven_digits():
    assert checkpoint_name(123) == "checkpoint_step_0000123.pth"
    assert checkpoint_name(0) == "checkpoint_step_0000000.pth"


def test_steps_beyond_seven_digits_keep_all_digits():
    assert checkpoint_name(12_345_678) == "checkpoint_step_12345678.pth"
    assert parse_step(checkpoint_name(12_345_678)) == 12_345_678


def test_emergency_name_carries_the_real_step():
    name = checkpoint_name(4144, "emergency")
    assert name == "checkpoint_step_0004144_emergency.pth"
    assert parse_step(name) == 4144
    assert checkpoint_type(name) == "emergency"


def test_suffix_may_be_given_with_its_underscore():
    assert checkpoint_name(5, "_best") == "checkpoint_step_0000005_best.pth"


@pytest.mark.parametrize("step", [-1, 1.5, "7", True, None])
def test_bad_step_is_refused_with_a_clear_message(step):
    with pytest.raises(ValueError, match="step must be an int"):
        checkpoint_name(step)


@pytest.mark.parametrize("suffix", ["a.b", "x/y", "-lead", "has space"])
def test_bad_suffix_is_refused(suffix):
    with pytest.raises(ValueError, match="suffix"):
        checkpoint_name(1, suffix)


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("checkpoint_step_0000123.pth", 123),
        ("checkpoint_step_123.pth", 123),
        ("checkpoint_step_0001234_emergency.pth", 1234),
        ("checkpoint_step_42_best.pth", 42),
        ("checkpoint_step_0000007_manual-save.pth", 7),
        ("checkpoint_emergency.pth", 0),
        ("/some/run/checkpoint_step_0000009.pth", 9),
    ],
)
def test_parse_step_reads_padded_unpadded_suffixed_and_legacy_names(name, step):
    assert parse_step(name) == step


@pytest.mark.parametrize(
    "name",
    [
        "checkpoint_best.pth",
        "checkpoint_best_old.pth",
        "checkpoint_step_.pth",
        "checkpoint_step_12.pt",
        "checkpoint_step_12.pth.tmp",
        ".checkpoint_step_0000012.pth.123.abcd.tmp",
        "checkpoint_step_12.pth.bak",
        "xcheckpoint_step_12.pth",
        "checkpoint_step_12_.pth",
        "checkpoint_step_12_a.b.pth",
        "training.log",
        "",
    ],
)
def test_anything_else_is_not_a_checkpoint(name):
    assert parse_step(name) is None
    assert checkpoint_type(name) is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("checkpoint_step_0000123.pth", "regular"),
        ("checkpoint_step_123.pth", "regular"),
        ("checkpoint_step_0000123_best.pth", "best"),
        ("checkpoint_step_0000123_emergency.pth", "emergency"),
        ("checkpoint_emergency.pth", "emergency"),
        ("checkpoint_step_0000123_manual.pth", "manual"),
    ],
)
def test_suffix_maps_to_a_type_and_unknown_suffixes_are_kept(name, kind):
    assert checkpoint_type(name) == kind


def test_old_and_new_names_sort_together_by_number():
    names = ["checkpoint_step_0000011.pth", "checkpoint_step_10.pth", "checkpoint_step_9.pth"]
    assert sorted(names, key=parse_step) == names[::-1]


@given(
    step=st.integers(min_value=0, max_value=10**12),
    suffix=st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,12}", fullmatch=True),
)
def test_every_name_parses_back_to_its_step_and_type(step, suffix):
    name = checkpoint_name(step, suffix)
    assert parse_step(name) == step
    expected = {None: "regular", "best": "best", "emergency": "emergency"}.get(suffix, suffix)
    assert checkpoint_type(name) == expected


@given(st.lists(st.integers(min_value=0, max_value=9_999_999), min_size=2, max_size=20))
def test_seven_digit_names_sort_as_text_in_step_order(steps):
    names = sorted(checkpoint_name(step) for step in steps)
    assert [parse_step(n) for n in names] == sorted(steps)


def test_import_ckpt_and_listing_do_not_load_torch(tmp_path):
    code = (
        "import sys, ckpt; ckpt.list_checkpoints(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    (tmp_path / checkpoint_name(1)).write_bytes(b"not a checkpoint")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
