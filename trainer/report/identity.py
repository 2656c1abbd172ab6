"""A run's identity: `RUN_DIR/run.json`, made on the run's first start and read on every resume.

`{"id": "<32 hex>", "name": "<run folder name>", "host": "<hostname>", "created": <unix s>}`. A resume
continues the same run (same id); starting anew moves run.json into the archive with the other files,
so the next start makes a new id. Two machines' `runs/default` are two runs (two ids). Viewers show a
run as `folder@host` (`display_name`), the same across resumes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

FILENAME = "run.json"
_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RunIdentity:
    id: str
    name: str
    host: str
    created: float


def display_name(run_dir: str | Path) -> str:
    """`folder@host`: how viewers show the run in `run_dir` (known before run.json is read)."""
    return f"{folder_name(run_dir)}@{socket.gethostname()}"


def folder_name(run_dir: str | Path) -> str:
    return Path(run_dir).resolve().name or "run"


def read_identity(run_dir: str | Path) -> RunIdentity | None:
    """The identity kept in `run_dir`, or None when run.json is missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / FILENAME).read_text(encoding="utf-8"))
        identity = RunIdentity(str(data["id"]), str(data["name"]), str(data["host"]), float(data["created"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return identity if _ID.fullmatch(identity.id) else None


def load_or_create(run_dir: str | Path) -> RunIdentity:
    """This run's identity: the one in `run_dir` (a resume), else a new one written there atomically.
    An unreadable run.json is replaced (a new id), since nothing else could say which run it was."""
    run_dir = Path(run_dir)
    identity = read_identity(run_dir)
    if identity is not None:
        return identity
    identity = RunIdentity(uuid.uuid4().hex, folder_name(run_dir), socket.gethostname(), round(time.time(), 3))
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{FILENAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(asdict(identity), fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run_dir / FILENAME)
    return identity
