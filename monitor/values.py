"""Checks on trainer-sent values (the JSON sanitiser itself is `protocol.json_safe`)."""

from __future__ import annotations

from typing import Any


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
