"""trainer.media: one frame-file listing and one PyAV guard for every tool that reads frames or videos."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from trainer.data.clips import find_clips as training_clips
from trainer.infer.model import UpscaleError
from trainer.infer.pairs import count_frames
from trainer.infer.pairs import find_clips as evaluate_clips
from trainer.infer.video import FolderSource
from trainer.infer.video import import_av as upscale_av
from trainer.media import frame_files
from trainer.prepare.decode import require_av as prepare_av
from trainer.prepare.errors import PrepareError


def _clip(folder):
    folder.mkdir(parents=True)
    frame = np.zeros((4, 6, 3), dtype=np.uint8)
    for name in ("f2.png", "f0.JPG", "f1.jpeg"):
        Image.fromarray(frame).save(folder / name, format="PNG" if name.endswith("png") else "JPEG")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "folder.png").mkdir()  # a folder, whatever its name
    return folder


def test_frames_are_the_png_and_jpg_files_in_name_order(tmp_path):
    clip = _clip(tmp_path / "clip")
    assert [p.name for p in frame_files(clip)] == ["f0.JPG", "f1.jpeg", "f2.png"]


def test_training_upscale_and_evaluate_see_the_same_frames(tmp_path):
    clip = _clip(tmp_path / "root" / "clip")
    expected = frame_files(clip)
    assert training_clips(tmp_path / "root", num_frames=1) == [expected]
    assert FolderSource(clip).files == expected
    assert [c.source for c in evaluate_clips(tmp_path / "root")] == [clip]
    assert count_frames(clip) == len(expected) == 3


def test_without_pyav_each_tool_says_the_same_line_in_its_own_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    for require, error in ((upscale_av, UpscaleError), (prepare_av, PrepareError)):
        with pytest.raises(error, match=r"need PyAV, which is not installed: pip install -e '\.\[video\]'$"):
            require()
