"""OUT/prepare.json: the options a data set was made with and what each video gave.

It is both the record a person reads and the resume state: rewritten atomically after every
video, so a killed run knows which videos are finished. Its content depends only on the inputs
and options (no times, sorted keys), so it is as reproducible as the clips.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import PrepareError
from .options import PrepareOptions, differing_option
from .writers import TMP

__all__ = ["MANIFEST", "load_manifest", "save_manifest", "new_manifest"]

MANIFEST = "prepare.json"
VERSION = 1


def new_manifest(options: PrepareOptions) -> dict:
    return {"version": VERSION, "options": options.recorded(), "videos": {}, "unreadable": {}, "complete": False}


def load_manifest(out: Path, options: PrepareOptions) -> dict | None:
    """The manifest of an earlier run into `out` (None for a new or empty folder); refuses a folder
    made with other options, or holding files `prepare` did not write."""
    path = out / MANIFEST
    if not path.is_file():
        if out.is_dir() and any(p.name != TMP for p in out.iterdir()):
            raise PrepareError(f"--out {out} holds files that prepare did not make; choose an empty or new folder")
        return None
    try:
        manifest = json.loads(path.read_text())
        stored = manifest["options"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrepareError(f"{path}: unreadable manifest ({exc}); delete {out} to start again") from None
    differs = differing_option(stored, options)
    if differs:
        raise PrepareError(f"--out {out} holds a data set made with other options: {differs}; "
                           "use another --out (or the same command to finish that one)")
    return manifest


def save_manifest(out: Path, manifest: dict) -> None:
    tmp = out / TMP / MANIFEST
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / MANIFEST)
