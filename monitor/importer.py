"""A run folder no monitor watched, read into the store: run.json, metrics.jsonl, validation images.

metrics.jsonl holds one `train` record about a second (the run's history points, with the loss extremes
of the steps between them) and one `val` record per validation, across every resume: a record whose
step is not past the one before it starts a stretch that replaces what came after that step (a resumed
or rolled-back run redid those steps). The comparison image of a validation at step S is the first
`validation/step_SSSSSSS/val_*.png`; the last KEEP_IMAGES and every new best are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol import VALIDATION_POINT_FIELDS

from .recorder import END_OF_RUN, host_of
from .store import KEEP_IMAGES, Store
from .values import image_type

CHUNK = 20_000  # points handed to the store at a time
RECORD_NAMES = {"total_loss": "loss", "learn_rate": "lr", "iter_speed": "iter_speed", "gpu_memory": "gpu_memory",
                "loss_min": "loss_min", "loss_max": "loss_max"}  # history field -> name in a `train` record
ENDINGS = {"finished": "finished", "stopping": "stopped", "error": "failed"}  # training.log's last word


class ImportError_(ValueError):
    """The folder is not a run folder (one line for the CLI)."""


def identity(run_dir: Path) -> dict[str, Any]:
    """The run's row from run.json; a folder from before run.json gets an id made from its path."""
    try:
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        return {"id": str(meta["id"]), "name": f"{meta['name']}@{meta['host']}", "host": str(meta["host"]),
                "started": float(meta["created"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"id": hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:32], "name": run_dir.name,
                "host": None}


def import_run(store: Store, run_dir: str | Path) -> dict[str, Any]:
    """Read the folder into the store (replacing what it held of that run); returns the run's row."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise ImportError_(f"{run_dir} is not a run folder: it has no metrics.jsonl")
    row = {**identity(run_dir), "run_dir": str(run_dir.resolve())}
    store.replace_points(row["id"], 0, END_OF_RUN, [])
    chunk: list[dict[str, Any]] = []
    validations: dict[int, dict[str, Any]] = {}
    last: dict[str, Any] | None = None
    first_ts = None
    for record in _records(metrics):
        if record.get("kind") == "val":
            validations[record["step"]] = {**_validation(record)}
            continue
        if record.get("kind") != "train":
            continue
        point = {"iteration": record["step"], "timestamp": record.get("ts"),
                 **{k: record.get(name) for k, name in RECORD_NAMES.items()}}
        if last is not None and point["iteration"] <= last["iteration"]:  # steps redone: the later stretch wins
            store.add_points(row["id"], chunk)
            store.replace_points(row["id"], point["iteration"], END_OF_RUN, [])
            chunk = []
        chunk.append(point)
        last = point
        first_ts = first_ts if first_ts is not None else point["timestamp"]
        if len(chunk) >= CHUNK:
            store.add_points(row["id"], chunk)
            chunk = []
    store.add_points(row["id"], chunk)
    best = _store_validations(store, row["id"], run_dir, validations, last)
    ended = last["timestamp"] if last else None
    row.update(iteration=last["iteration"] if last else 0, best_score=best, last_seen=ended, ended=ended,
               state=_ending(run_dir), started=row.get("started", first_ts))
    row["host"] = row["host"] or host_of(row["name"])
    store.upsert_run(row)
    store.flush(timeout=600)
    return row


def _store_validations(store: Store, run_id: str, run_dir: Path, validations: dict[int, dict[str, Any]],
                       last: dict[str, Any] | None) -> float | None:
    """Every validation up to the run's last step, with the images worth keeping; the best quality."""
    end = last["iteration"] if last else 0
    steps = [s for s in sorted(validations) if s <= end]
    best, best_steps, keep = _kept([(step, validations[step].get("quality")) for step in steps])
    for step in steps:
        image = _image(run_dir, step) if step in keep else None
        kind = image_type(image) if image else None
        store.add_validation(run_id, validations[step], image if kind else None, kind, best=step in best_steps)
    return best


def images_from_folder(store: Store, run_id: str, run_dir: str | Path) -> int:
    """The comparison images of a run's stored validations that came without one (fetched with `history`),
    read from its folder on this machine: the last KEEP_IMAGES and every new best. How many were read."""
    store.flush()
    validations = store.history(run_id, 1)["validations"]
    _, bests, keep = _kept([(v["iteration"], v.get("quality")) for v in validations])
    read = 0
    for v in validations:
        image = _image(Path(run_dir), v["iteration"]) if v["iteration"] in keep and not v["image"] else None
        kind = image_type(image) if image else None
        if kind:
            metrics = {k: val for k, val in v.items() if k != "image"}
            store.add_validation(run_id, metrics, image, kind, best=v["iteration"] in bests)
            read += 1
    return read


def _kept(qualities: list[tuple[int, Any]]) -> tuple[float | None, set[int], set[int]]:
    """Over (step, quality) in step order: the best quality, the steps that each set a new best, and the
    steps whose image is kept (those and the last KEEP_IMAGES)."""
    best, bests = None, set()
    for step, quality in qualities:
        if isinstance(quality, float | int) and (best is None or quality > best):
            best = quality
            bests.add(step)
    return best, bests, bests | {step for step, _ in qualities[-KEEP_IMAGES:]}


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                yield record


def _validation(record: dict[str, Any]) -> dict[str, Any]:
    point = {"iteration": record["step"], "timestamp": record.get("ts")}
    point.update({k: record[k] for k in VALIDATION_POINT_FIELDS if k in record and k not in point})
    return point


def _image(run_dir: Path, step: int) -> bytes | None:
    found = sorted((run_dir / "validation" / f"step_{step:07d}").glob("val_*.png"))
    return found[0].read_bytes() if found else None


def _ending(run_dir: Path) -> str:
    """finished / stopped / failed from training.log's last such event; lost when it has none."""
    try:
        with open(run_dir / "training.log", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - 65536, 0))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return "lost"
    words = re.findall(r"^\S+ \S+\s+(finished|stopping|error)\b", tail, re.MULTILINE)
    return ENDINGS[words[-1]] if words else "lost"
