"""Atomic save, safe load, tensor-free metadata."""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ckpt.store
from ckpt import (
    FORMAT_VERSION,
    CheckpointError,
    UnsafeCheckpointError,
    checkpoint_name,
    load_checkpoint,
    parse_step,
    read_metadata,
    save_checkpoint,
)
from tests.ckpt_support import make_state, save, save_as_if_on_cuda, write_original


def test_saved_checkpoint_round_trips_every_part(tmp_path):
    state = make_state(12, quality=0.75)
    path = save_checkpoint(tmp_path / checkpoint_name(12), state)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION
    assert isinstance(loaded["timestamp"], str)
    assert torch.equal(loaded["model_state_dict"]["w"], state["model_state_dict"]["w"])
    assert torch.equal(loaded["rng_state"]["torch"], state["rng_state"]["torch"])
    assert loaded["metrics"] == state["metrics"]
    assert loaded["optimizer_state_dict"] == state["optimizer_state_dict"]


def test_save_keeps_a_given_format_version_and_timestamp(tmp_path):
    state = {"step": 1, "format_version": 7, "timestamp": "2024-01-01T00:00:00"}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pth", state))
    assert (loaded["format_version"], loaded["timestamp"]) == (7, "2024-01-01T00:00:00")


def test_state_that_would_not_load_safely_is_refused_before_writing(tmp_path):
    state = {"step": 1, "rng_state": {"numpy": np.random.get_state()}}
    with pytest.raises(CheckpointError, match=r"state\['rng_state'\]\['numpy'\]"):
        save_checkpoint(tmp_path / checkpoint_name(1), state)
    assert list(tmp_path.iterdir()) == []


def test_temp_file_name_is_never_a_checkpoint_name():
    assert parse_step(ckpt.store.temp_name(checkpoint_name(5))) is None


def _only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_crash_mid_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch, failing):
    path = save(tmp_path, 3, quality=0.1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt.store.os, failing, crash)
    with pytest.raises(CheckpointError, match="could not save checkpoint"):
        save(tmp_path, 3, quality=0.9)
    monkeypatch.undo()
    assert _only_files(tmp_path) == [path.name]
    assert path.read_bytes() == before


def test_disk_full_raises_a_clear_error_removes_the_temp_and_spares_old_files(
    tmp_path, monkeypatch
):
    old = save(tmp_path, 1)

    def write_then_fail(state, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", write_then_fail)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        save(tmp_path, 2)
    monkeypatch.undo()
    assert "untouched" in str(info.value)
    assert _only_files(tmp_path) == [old.name]
    assert load_checkpoint(old)["step"] == 1


def test_interrupt_mid_save_removes_the_temp_and_propagates(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 2)
    assert _only_files(tmp_path) == []


def test_load_of_a_missing_file_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.pth")


def test_truncated_checkpoint_fails_to_load_with_checkpoint_error(tmp_path):
    path = save(tmp_path, 4)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="damaged"):
        read_metadata(path)


GARBAGE = {
    "random bytes": os.urandom(4096),
    "a plain pickle": pickle.dumps({"weights": [1.0, 2.0]}),
    "text": b"hello, this is not a model\n" * 20,
    "empty": b"",
    "half a zip": b"PK\x03\x04" + bytes(200),
}


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_corrupt_or_foreign_file_gets_one_line_of_ours_and_no_advice_to_load_it_unsafely(tmp_path, content):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_checkpoint_written_on_a_gpu_box_loads_on_a_cpu_box(tmp_path, monkeypatch):
    path = save_as_if_on_cuda(tmp_path / checkpoint_name(3), make_state(3), monkeypatch)
    with zipfile.ZipFile(path) as archive:
        assert b"cuda:0" in archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    state = load_checkpoint(path)  # map_location="cpu", the default
    assert state["model_state_dict"]["w"].device.type == "cpu"
    assert torch.equal(state["model_state_dict"]["w"], make_state(3)["model_state_dict"]["w"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_checkpoint_kept_on_cuda_on_a_cpu_box_names_the_device_not_unsafety(tmp_path, monkeypatch):
    path = save_as_if_on_cuda(tmp_path / checkpoint_name(3), make_state(3), monkeypatch)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, map_location=None)
    assert not isinstance(caught.value, UnsafeCheckpointError)
    assert "CUDA device" in str(caught.value) and "map_location='cpu' (the default) always works" in str(caught.value)
    assert "\n" not in str(caught.value) and "refuses" not in str(caught.value)


@pytest.mark.parametrize(("raised", "cause"), [
    (OSError(errno.EIO, "Input/output error"), "cannot read checkpoint .*: Input/output error \\(errno 5\\)"),
    (RuntimeError("PytorchStreamReader failed reading zip archive"),
     "could not be loaded: RuntimeError: PytorchStreamReader failed reading zip archive"),
    (pickle.UnpicklingError("Weights only load failed"), "objects that torch's safe loader refuses"),
], ids=["read error", "other torch error", "safe loader refusal"])
def test_each_load_failure_of_a_well_formed_file_names_its_own_cause(tmp_path, monkeypatch, raised, cause):
    path = save(tmp_path, 3)

    def failing(*_args, **_kwargs):
        raise raised

    monkeypatch.setattr(torch, "load", failing)
    with pytest.raises(CheckpointError, match=cause) as caught:
        load_checkpoint(path)
    assert isinstance(caught.value, UnsafeCheckpointError) == isinstance(raised, pickle.UnpicklingError)


def test_file_that_is_not_a_dict_is_not_a_checkpoint(tmp_path):
    torch.save([1, 2], tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load_checkpoint(tmp_path / "c.pth")


def test_unsafe_checkpoint_loads_only_when_allowed_and_then_warns(tmp_path):
    path = tmp_path / checkpoint_name(5)
    torch.save({"step": 5, "extra": np.arange(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused: it pickles numpy.*would run code from the file"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        read_metadata(path)
    with pytest.warns(UserWarning, match="allow_unsafe"):
        state = load_checkpoint(path, allow_unsafe=True)
    assert state["extra"].tolist() == [0, 1, 2]


def _rewrite_tensor_records(src: Path, dst: Path, keep_records: bool) -> None:
    """Copy a torch.save zip, turning every tensor record into garbage (or dropping it)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if "/data/" in info.filename and "/.data/" not in info.filename:
                if not keep_records:
                    continue
                data = b"\xff" * len(data)
            new.writestr(info, data)


def test_metadata_is_read_without_the_tensor_bytes(tmp_path):
    src = save(tmp_path, 77, quality=0.625, loss=0.25, numel=4096)
    damaged = tmp_path / "damaged.pth"
    _rewrite_tensor_records(src, damaged, keep_records=True)
    meta = read_metadata(damaged)
    assert (meta["step"], meta["metrics"]["quality"], meta["metrics"]["loss"]) == (77, 0.625, 0.25)


def test_missing_tensor_records_make_the_file_corrupt(tmp_path):
    src = save(tmp_path, 8)
    _rewrite_tensor_records(src, tmp_path / "gone.pth", keep_records=False)
    with pytest.raises(CheckpointError, match="missing"):
        read_metadata(tmp_path / "gone.pth")


def test_metadata_of_an_original_system_checkpoint(tmp_path):
    path = write_original(tmp_path / "checkpoint_step_10000.pth", 10000, 0.725, 0.0145)
    meta = read_metadata(path)
    assert meta["step"] == 10000
    assert meta["metrics"] == {"ki_quality": 0.725, "val_loss": 0.0145}
    assert meta["timestamp"] == "2024-01-14T10:23:05"
    assert load_checkpoint(path)["scheduler_state_dict"]["T_max"] == 100


def test_metadata_of_a_pre_zip_torch_save_file(tmp_path):
    path = tmp_path / "checkpoint_step_3.pth"
    write_original(path, 3, 0.5, 0.2, _use_new_zipfile_serialization=False)
    assert read_metadata(path)["metrics"]["ki_quality"] == 0.5


def test_metrics_stored_as_one_element_tensors_are_read(tmp_path):
    state = {
        "step": 2,
        "metrics": {"ki_quality": torch.tensor(0.5), "val_loss": torch.tensor([2.0])},
    }
    path = save_checkpoint(tmp_path / checkpoint_name(2), state)
    assert read_metadata(path)["metrics"] == {"ki_quality": 0.5, "val_loss": 2.0}


def test_directory_fsync_is_part_of_the_save(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(ckpt.store.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    save(tmp_path, 1)
    assert len(synced) == 2  # the file, then its folder
