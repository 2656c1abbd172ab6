"""Tally of what the fault tests tried, for docs/reliability.md (test-artifacts/faults.jsonl)."""

from __future__ import annotations

import json
import time
from pathlib import Path

LOG = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults.jsonl"


def record(fault: str, tries: int, outcome: str) -> None:
    """Append one line: which fault, how many times it was tried, what happened."""
    LOG.parent.mkdir(exist_ok=True)
    line = {"fault": fault, "tries": tries, "outcome": outcome, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    with LOG.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
