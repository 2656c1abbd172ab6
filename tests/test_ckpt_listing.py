"""list_checkpoints: the fields users rely on, numeric order, original files, damaged files, cost."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import numpy as np
import torch

import ckpt.safe_pickle
from ckpt import checkpoint_name, list_checkpoints, save_checkpoint, select_checkpoint
from tests.ckpt_support import make_state, save, write_original


def _steps(directory):
    return [e["step"] for e in list_checkpoints(directory)]


def test_missing_directory_lists_nothing(tmp_path):
    assert list_checkpoints(tmp_path / "absent") == []


def test_entries_carry_the_fields_users_rely_on(tmp_path):
    path = save(tmp_path, 1234, "best", quality=0.85, loss=0.0123)
    (entry,) = list_checkpoints(tmp_path)
    assert entry["path"] == str(path)
    assert entry["filename"] == "checkpoint_step_0001234_best.pth"
    assert (entry["step"], entry["type"], entry["status"]) == (1234, "best", "ok")
    assert (entry["quality"], entry["loss"]) == (0.85, 0.0123)
    assert entry["size_mb"] == round(path.stat().st_size / 2**20, 2)
    assert isinstance(entry["timestamp"], datetime)
    assert entry["date_str"] == entry["timestamp"].strftime("%Y-%m-%d %H:%M")


def test_sorting_is_numeric_across_old_and_new_names(tmp_path):
    for name, step in [("checkpoint_step_0000011.pth", 11), ("checkpoint_step_10.pth", 10)]:
        save_checkpoint(tmp_path / name, make_state(step))
    save_checkpoint(tmp_path / "checkpoint_step_9.pth", make_state(9))
    assert _steps(tmp_path) == [9, 10, 11]


def test_same_step_entries_are_ordered_by_file_time(tmp_path):
    emergency = save(tmp_path, 50, "emergency")
    regular = save(tmp_path, 50)
    os.utime(emergency, (1000, 1000))
    os.utime(regular, (2000, 2000))
    assert [e["type"] for e in list_checkpoints(tmp_path)] == ["emergency", "regular"]


def test_non_checkpoint_files_are_ignored(tmp_path):
    target = save(tmp_path, 5)
    (tmp_path / "training.log").write_text("log")
    (tmp_path / ".checkpoint_step_0000006.pth.1.0badc0de.tmp").write_bytes(b"partial")
    (tmp_path / "checkpoint_step_7.pt").write_bytes(b"x")
    (tmp_path / "checkpoint_best.pth").symlink_to(target)
    (tmp_path / "checkpoint_step_0000008.pth").mkdir()
    assert [e["filename"] for e in list_checkpoints(tmp_path)] == [target.name]


def test_original_system_checkpoints_are_listed_with_quality_loss_and_date(tmp_path):
    write_original(tmp_path / "checkpoint_step_10000.pth", 10000, 0.725, 0.0145)
    (entry,) = list_checkpoints(tmp_path)
    assert (entry["step"], entry["type"], entry["status"]) == (10000, "regular", "ok")
    assert (entry["quality"], entry["loss"]) == (0.725, 0.0145)
    assert entry["timestamp"] == datetime(2024, 1, 14, 10, 23, 5)
    assert entry["date_str"] == "2024-01-14 10:23"


def test_legacy_emergency_file_is_listed_with_its_real_step(tmp_path):
    write_original(tmp_path / "checkpoint_emergency.pth", 4144, 0.5, 0.1)
    (entry,) = list_checkpoints(tmp_path)
    assert (entry["step"], entry["type"]) == (4144, "emergency")


def test_pre_zip_torch_files_are_listed(tmp_path):
    path = tmp_path / "checkpoint_step_3.pth"
    write_original(path, 3, 0.5, 0.2, _use_new_zipfile_serialization=False)
    (entry,) = list_checkpoints(tmp_path)
    assert (entry["status"], entry["quality"]) == ("ok", 0.5)


def test_unsafe_checkpoint_is_listed_with_step_from_name_and_file_date(tmp_path):
    path = tmp_path / checkpoint_name(300)
    torch.save({"step": 999, "metrics": {"ki_quality": 0.9}, "x": np.ones(2)}, path)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    (entry,) = list_checkpoints(tmp_path)
    assert (entry["status"], entry["step"], entry["quality"]) == ("unsafe", 300, None)
    assert entry["timestamp"] == datetime.fromtimestamp(1_700_000_000)
    assert "numpy" in entry["error"]


def test_truncated_checkpoint_is_listed_corrupt_and_never_chosen_as_latest(tmp_path):
    save(tmp_path, 10, quality=0.4)
    newest = save(tmp_path, 20, quality=0.9)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (tmp_path / checkpoint_name(30)).write_bytes(b"not a zip, not a pickle")
    statuses = [(e["step"], e["status"]) for e in list_checkpoints(tmp_path)]
    assert statuses == [(10, "ok"), (20, "corrupt"), (30, "corrupt")]
    assert select_checkpoint(tmp_path, "latest")["step"] == 10
    assert select_checkpoint(tmp_path, "best")["step"] == 10


def test_aware_timestamps_become_local_and_bad_values_fall_back(tmp_path):
    state = make_state(1) | {"timestamp": "2024-01-15T13:30:00Z"}
    save_checkpoint(tmp_path / checkpoint_name(1), state)
    save_checkpoint(tmp_path / checkpoint_name(2), make_state(2) | {"timestamp": "yesterday"})
    first, second = list_checkpoints(tmp_path)
    utc = datetime(2024, 1, 15, 13, 30, tzinfo=UTC)
    assert first["timestamp"] == utc.astimezone().replace(tzinfo=None)
    assert second["timestamp"] == datetime.fromtimestamp(second["mtime"])


def test_quality_outside_zero_to_one_is_reported_unknown(tmp_path):
    save(tmp_path, 1, quality=72.5)
    assert list_checkpoints(tmp_path)[0]["quality"] is None


class _CountingFile(io.FileIO):
    bytes_read = 0

    def readinto(self, buffer):
        count = super().readinto(buffer)
        _CountingFile.bytes_read += count or 0
        return count


def test_listing_does_not_read_tensor_bytes(tmp_path, monkeypatch):
    save(tmp_path, 1, numel=4 * 2**20)  # 16 MB of tensor data
    monkeypatch.setattr(_CountingFile, "bytes_read", 0)
    opener = lambda path, mode="rb": io.BufferedReader(_CountingFile(path, "r"))  # noqa: E731
    monkeypatch.setattr(ckpt.safe_pickle, "open", opener, raising=False)
    (entry,) = list_checkpoints(tmp_path)
    assert entry["status"] == "ok" and entry["size_mb"] > 15
    assert 0 < _CountingFile.bytes_read < 256 * 1024
