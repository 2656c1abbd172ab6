"""PrepareError: a problem that stops `prepare` with a one-line message and a non-zero exit."""

from __future__ import annotations

__all__ = ["PrepareError"]


class PrepareError(RuntimeError):
    """The whole run cannot go on (no usable video, a conflicting --out, PyAV missing)."""
