"""The one JSON sanitiser: any value a trainer, a checkpoint listing or a frame holds, made safe to
write as strict JSON (no NaN/Infinity), and bounded so a hostile frame cannot blow it up."""

from __future__ import annotations

import math
from datetime import date
from itertools import islice
from typing import Any

MAX_STRING = 2000
MAX_DEPTH = 6
MAX_ITEMS = 1000
_PLAIN = {int, bool, type(None)}
_BINARY = {bytes, bytearray, memoryview}


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: non-finite floats -> None, bytes dropped, dates as ISO text, scalars of
    tensors and arrays as numbers, anything else as its text; long strings cut, depth bounded."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is str:
        return value if len(value) <= MAX_STRING else value[:MAX_STRING]
    if depth >= MAX_DEPTH or kind in _BINARY:
        return None
    if isinstance(value, dict):
        return _safe_map(value, depth)
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value[:MAX_ITEMS]]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):  # a float subclass, e.g. numpy.float64
        return json_safe(float(value))
    return _scalar_or_text(value)


def _scalar_or_text(value: Any) -> Any:
    """A one-element tensor or array as its number; anything else (a Path, ...) as its text."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError, RuntimeError):  # more than one element
            pass
    return str(value)[:MAX_STRING]


def _safe_map(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    items = value.items() if len(value) <= MAX_ITEMS else islice(value.items(), MAX_ITEMS)
    out = {}
    for k, v in items:
        kind = type(v)
        if kind in _BINARY:
            continue
        key = k if type(k) is str and len(k) <= 200 else str(k)[:200]
        out[key] = v if kind in _PLAIN or kind is str and len(v) <= MAX_STRING else json_safe(v, depth + 1)
    return out
