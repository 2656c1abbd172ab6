"""CheckpointSaver: what its `checkpoint_saved` event says about the file it wrote."""

from __future__ import annotations

import torch

import ckpt
from trainer.config import Config
from trainer.train.saving import CheckpointSaver


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def event(self, kind: str, message: str, **data) -> None:
        self.seen.append((kind, data))


def test_the_saved_event_gives_the_size_the_listing_gives(tmp_path):
    events = _Events()
    saver = CheckpointSaver(tmp_path, events, get_cfg=Config)
    state = {"step": 3, "type": "regular", "metrics": {"quality": None, "loss": 0.1},
             "model_state_dict": {"w": torch.zeros(300_000)}, "optimizer_state_dict": {}}  # 1.2 MB, 1.14 MiB
    saver.save(lambda: state, saver.path(3, "regular"), sync=True)
    (kind, data), (entry,) = events.seen[-1], ckpt.list_checkpoints(tmp_path)
    assert kind == "checkpoint_saved" and data["filename"] == entry["filename"]
    size = (tmp_path / entry["filename"]).stat().st_size
    assert data["size_mb"] == entry["size_mb"] == round(size / 2**20, 2)  # MiB, as docs/checkpoints.md says
