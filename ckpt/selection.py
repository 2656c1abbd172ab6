"""Choosing a checkpoint: the resume table and prompt, and `select_checkpoint(dir, spec)`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ckpt.errors import CheckpointError
from ckpt.listing import describe_checkpoint, is_good, is_usable, list_checkpoints

__all__ = ["format_table", "latest_good", "prompt_for_checkpoint", "select_checkpoint"]

_RULE = "=" * 80
_ROW = "{:<5}{:<13}{:<13}{:<13}{:<11}{:<18}"
_PROMPT = "Which checkpoint to load? (number 1-{n}, Enter for latest): "
_SPECS = "'latest', 'best', a step number or the path of a checkpoint file"


def _quality_cell(entry: dict) -> str:
    if not is_good(entry):
        return entry["status"].upper()
    if not is_usable(entry):
        return "NOT FINITE"
    return "-" if entry["quality"] is None else f"{entry['quality'] * 100:.1f}%"


def _row(number: int, entry: dict) -> str:
    loss = "-" if entry["loss"] is None else f"{entry['loss']:.4f}"
    cells = (number, f"{entry['step']:,}", entry["type"], _quality_cell(entry), loss)
    return _ROW.format(*cells, entry["date_str"])


def format_table(entries: list[dict], last: int | None = 10) -> str:
    """The resume table of the last `last` entries (all when None); corrupt, unsafe and
    non-finite (NaN loss or quality) checkpoints are marked in the Quality column."""
    shown = entries[-last:] if last else entries
    title = f"Last {last}" if last else f"All {len(entries)}"
    lines = [_RULE, f"AVAILABLE CHECKPOINTS ({title}):", _RULE]
    lines.append(_ROW.format("#", "Step", "Type", "Quality", "Loss", "Date"))
    lines.append("-" * 80)
    lines += [_row(number, entry) for number, entry in enumerate(shown, start=1)]
    lines.append(_RULE)
    return "\n".join(lines)


def latest_good(entries: list[dict]) -> dict | None:
    """The newest entry (by step) that is neither corrupt nor unsafe and has finite metrics."""
    good = [e for e in entries if is_usable(e)]
    return good[-1] if good else None


def _best_good(entries: list[dict]) -> dict | None:
    rated = [e for e in entries if is_usable(e) and e["quality"] is not None]
    if not rated:
        return latest_good(entries)
    return max(rated, key=lambda e: (e["quality"], e["step"]))


def prompt_for_checkpoint(
    entries: list[dict],
    input_fn: Callable[[str], str] = input,
    print_fn: Callable[[str], object] = print,
    last: int = 10,
) -> dict | None:
    """Show the table, ask for a row: Enter/end of input = latest good; bad input = warning + latest."""
    latest = latest_good(entries)
    if not entries:
        print_fn("No checkpoints found.")
        return None
    shown = entries[-last:]
    print_fn(format_table(entries, last))
    try:
        answer = input_fn(_PROMPT.format(n=len(shown))).strip()
    except EOFError:
        return latest
    if not answer:
        return latest
    if answer.isdigit() and 1 <= int(answer) <= len(shown):
        chosen = shown[int(answer) - 1]
        if chosen["status"] != "corrupt":
            return chosen
        print_fn(f"Warning: checkpoint {answer} is corrupt; using the latest instead.")
        return latest
    print_fn(f"Warning: invalid choice {answer!r}; using the latest checkpoint.")
    return latest


def _at_step(entries: list[dict], step: int) -> dict:
    usable = [e for e in entries if e["step"] == step and e["status"] != "corrupt"]
    if not usable:
        steps = ", ".join(f"{e['step']}" for e in entries if is_good(e)) or "none"
        raise CheckpointError(f"no usable checkpoint at step {step} (good steps: {steps})")
    return max(usable, key=lambda e: (is_good(e), e["type"] != "emergency", e["mtime"]))


def _by_path(directory: Path, spec: str) -> dict:
    path = Path(spec).expanduser()
    if not path.is_file() and not path.is_absolute() and (directory / path).is_file():
        path = directory / path
    if not path.is_file():
        raise CheckpointError(f"checkpoint spec {spec!r}: no such file (use {_SPECS})")
    entry = describe_checkpoint(path)
    if entry["status"] == "corrupt":
        raise CheckpointError(entry["error"])
    return entry


def select_checkpoint(directory: str | os.PathLike[str], spec: str | int) -> dict | None:
    """The entry `spec` names: 'latest', 'best', a step, a path; None when there is none.

    'best' is the highest quality (the latest good one when none has a quality).
    Corrupt files are never chosen; unsafe ones and ones with non-finite metrics
    (saved after the run diverged) only by an explicit step or path.
    """
    directory = Path(directory)
    text = str(spec).strip()
    if text in ("latest", "best"):
        entries = list_checkpoints(directory)
        return latest_good(entries) if text == "latest" else _best_good(entries)
    if text.isdigit():
        return _at_step(list_checkpoints(directory), int(text))
    if text and (text.endswith(".pth") or os.sep in text or Path(text).exists()):
        return _by_path(directory, text)
    raise CheckpointError(f"invalid checkpoint spec {text!r}: use {_SPECS}")
