"""Make trainer-sent values safe to keep and to serve as JSON."""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

MAX_STRING = 2000
MAX_DEPTH = 6
MAX_ITEMS = 1000
_PLAIN = {int, bool, type(None)}
_BINARY = {bytes, bytearray, memoryview}


def clean(value: Any, depth: int = 0) -> Any:
    """JSON-safe copy: non-finite floats -> None, bytes dropped, long strings cut, depth bounded."""
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
        return _clean_map(value, depth)
    if isinstance(value, list | tuple):
        return [clean(v, depth + 1) for v in value[:MAX_ITEMS]]
    return clean(value.item()) if hasattr(value, "item") else str(value)[:MAX_STRING]


def _clean_map(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    items = value.items() if len(value) <= MAX_ITEMS else islice(value.items(), MAX_ITEMS)
    out = {}
    for k, v in items:
        kind = type(v)
        if kind in _BINARY:
            continue
        key = k if type(k) is str and len(k) <= 200 else str(k)[:200]
        out[key] = v if kind in _PLAIN or kind is str and len(v) <= MAX_STRING else clean(v, depth + 1)
    return out


def image_type(data: bytes) -> str | None:
    """Content type from the magic bytes; None for anything that is not an image we serve."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def require_int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {key!r} must be an int, got {type(value).__name__}")
    return value


def require_str(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {key!r} must be a non-empty string, got {type(value).__name__}")
    return value
