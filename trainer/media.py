"""Frames and videos on disk, for every tool that reads them: which files of a folder are frames,
and PyAV. Imports neither torch nor PyAV, so `trainer.prepare` stays light.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

__all__ = ["FRAME_SUFFIXES", "frame_files", "import_av"]

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")  # any case


def frame_files(folder: Path) -> list[Path]:
    """The frame images of `folder` (PNG/JPG files), in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file())


def import_av(error: type[Exception], needed_for: str) -> ModuleType:
    """PyAV, or `error` with one line: what needed it and how to install it."""
    try:
        import av
    except ImportError:
        raise error(f"{needed_for} need PyAV, which is not installed: pip install -e '.[video]'") from None
    return av
