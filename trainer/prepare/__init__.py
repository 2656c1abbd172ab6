"""Videos to a training set (`python -m trainer.prepare`, issue 12).

INPUT videos -> (decode: one PyAV pass, 8-bit RGB) -> (shots: cuts, black/frozen/blurred windows)
-> (writers: clips as PNG folders or raw .npy, or the original's Patches/Val) in OUT, with
OUT/prepare.json recording the options and each video's result (also the resume state).
"""

from __future__ import annotations

from .errors import PrepareError
from .options import OptionError, PrepareOptions
from .run import prepare
from .summary import summary

__all__ = ["OptionError", "PrepareError", "PrepareOptions", "prepare", "summary"]
