"""The resume table and prompt (the original trainer's exact layout), and select_checkpoint(dir, spec)."""

from __future__ import annotations

import math
import os

import pytest

from ckpt import (
    CheckpointError,
    checkpoint_name,
    format_table,
    list_checkpoints,
    prompt_for_checkpoint,
    select_checkpoint,
)
from tests.ckpt_support import save

ORIGINAL_TABLE = """\
================================================================================
AVAILABLE CHECKPOINTS (Last 10):
================================================================================
#    Step         Type         Quality      Loss       Date              
--------------------------------------------------------------------------------
1    10,000       regular      72.5%        0.0145     2024-01-14 10:23  
2    12,000       best         75.3%        0.0132     2024-01-14 11:45  
3    14,000       best         76.8%        0.0128     2024-01-14 13:12  
================================================================================"""  # noqa: W291


def _entry(step, kind="regular", quality=None, loss=None, status="ok", date="2024-01-14 10:23"):
    return {"step": step, "type": kind, "quality": quality, "loss": loss, "status": status,
            "date_str": date, "filename": f"c{step}", "mtime": 0.0}  # fmt: skip


ORIGINAL_ENTRIES = [
    _entry(10000, "regular", 0.725, 0.0145, date="2024-01-14 10:23"),
    _entry(12000, "best", 0.753, 0.0132, date="2024-01-14 11:45"),
    _entry(14000, "best", 0.768, 0.0128, date="2024-01-14 13:12"),
]


def test_table_matches_the_original_trainers_layout_exactly():
    assert format_table(ORIGINAL_ENTRIES) == ORIGINAL_TABLE


def test_table_shows_the_last_n_numbered_from_one_and_marks_damaged_ones():
    entries = [_entry(s) for s in range(1, 13)] + [_entry(13, status="corrupt")]
    lines = format_table(entries, last=3).splitlines()
    assert lines[1] == "AVAILABLE CHECKPOINTS (Last 3):"
    rows = lines[5:-1]
    assert [row.split()[:2] for row in rows] == [["1", "11"], ["2", "12"], ["3", "13"]]
    assert rows[0].split()[3:5] == ["-", "-"]
    assert "CORRUPT" in rows[2]


def _ask(entries, answer):
    shown, prompts = [], []

    def reply(prompt):
        prompts.append(prompt)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return prompt_for_checkpoint(entries, input_fn=reply, print_fn=shown.append), shown, prompts


def test_prompt_enter_takes_the_latest_and_shows_the_table():
    chosen, shown, prompts = _ask(ORIGINAL_ENTRIES, "")
    assert chosen["step"] == 14000
    assert shown == [ORIGINAL_TABLE]
    assert prompts == ["Which checkpoint to load? (number 1-3, Enter for latest): "]


def test_prompt_number_takes_that_row():
    assert _ask(ORIGINAL_ENTRIES, " 2 ")[0]["step"] == 12000


@pytest.mark.parametrize("answer", ["abc", "0", "4", "-1", "1.5"])
def test_prompt_invalid_input_warns_and_takes_the_latest(answer):
    chosen, shown, _ = _ask(ORIGINAL_ENTRIES, answer)
    assert chosen["step"] == 14000
    assert "invalid choice" in shown[-1]


def test_prompt_end_of_input_takes_the_latest():
    assert _ask(ORIGINAL_ENTRIES, EOFError())[0]["step"] == 14000


def test_prompt_never_returns_a_corrupt_row():
    entries = [*ORIGINAL_ENTRIES, _entry(16000, status="corrupt")]
    chosen, shown, _ = _ask(entries, "4")
    assert chosen["step"] == 14000 and "corrupt" in shown[-1]
    assert _ask(entries, "")[0]["step"] == 14000


def test_prompt_without_checkpoints_returns_none():
    assert _ask([], "1")[0] is None


def test_select_latest_and_best(tmp_path):
    save(tmp_path, 100, quality=0.7)
    save(tmp_path, 200, "best", quality=0.9)
    save(tmp_path, 300, quality=0.8)
    assert select_checkpoint(tmp_path, "latest")["step"] == 300
    assert select_checkpoint(tmp_path, "best")["step"] == 200


def test_latest_and_best_skip_checkpoints_saved_with_nan_metrics(tmp_path):
    save(tmp_path, 100, quality=0.7)
    save(tmp_path, 200, quality=math.nan, loss=math.nan)
    assert select_checkpoint(tmp_path, "latest")["step"] == 100
    assert select_checkpoint(tmp_path, "best")["step"] == 100
    assert select_checkpoint(tmp_path, 200)["step"] == 200  # asked for by step: yours


def test_table_marks_checkpoints_whose_quality_or_loss_is_not_finite(tmp_path):
    save(tmp_path, 100, quality=0.7)
    save(tmp_path, 200, quality=math.nan)
    save(tmp_path, 300, quality=None, loss=math.inf)
    rows = format_table(list_checkpoints(tmp_path)).splitlines()[5:-1]
    assert "NOT FINITE" not in rows[0] and "70.0%" in rows[0]
    assert "NOT FINITE" in rows[1] and "NOT FINITE" in rows[2]


def test_select_best_without_any_quality_takes_the_latest(tmp_path):
    save(tmp_path, 1, quality=None)
    save(tmp_path, 2, quality=None)
    assert select_checkpoint(tmp_path, "best")["step"] == 2


def test_select_in_an_empty_directory_returns_none(tmp_path):
    assert select_checkpoint(tmp_path, "latest") is None
    assert select_checkpoint(tmp_path / "absent", "best") is None


def test_select_step_prefers_the_readable_regular_file_then_the_newest(tmp_path):
    emergency = save(tmp_path, 500, "emergency")
    regular = save(tmp_path, 500)
    os.utime(regular, (1000, 1000))
    assert select_checkpoint(tmp_path, "500")["path"] == str(regular)
    regular.write_bytes(b"damaged")
    assert select_checkpoint(tmp_path, 500)["path"] == str(emergency)


def test_select_unknown_step_says_which_steps_exist(tmp_path):
    save(tmp_path, 7)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint at step 8 \(good steps: 7\)"):
        select_checkpoint(tmp_path, "8")


def test_select_path_must_exist(tmp_path):
    path = save(tmp_path, 9)
    assert select_checkpoint(tmp_path, str(path))["step"] == 9
    assert select_checkpoint(tmp_path, path.name)["step"] == 9
    with pytest.raises(CheckpointError, match="no such file"):
        select_checkpoint(tmp_path, str(tmp_path / checkpoint_name(10)))


def test_select_refuses_a_corrupt_path(tmp_path):
    path = tmp_path / checkpoint_name(3)
    path.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot be used"):
        select_checkpoint(tmp_path, str(path))


@pytest.mark.parametrize("spec", ["newest", "", "-3", "latest!"])
def test_select_invalid_spec_says_what_is_allowed(tmp_path, spec):
    with pytest.raises(CheckpointError, match="'latest', 'best', a step number or the path"):
        select_checkpoint(tmp_path, spec)
