"""A file of fixed-size rows sorted by iteration (little-endian, numpy dtype): appended, cut back to an
iteration, its prefix checked by CRC32. The history index (trainer.report.history_index) keeps its
train, validation and level rows in these."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

CHUNK = 1 << 16  # rows per read when scanning a whole file


class RowFile:
    """One file of rows; `count` of them are valid (the file may be longer: see `reset`)."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype = path, dtype
        self.packer = struct.Struct("<" + "".join("q" if dtype[n].kind == "i" else "d" for n in dtype.names))
        self.fh = open(path, "a+b")  # created when missing; writes go where `seek` says (r+b semantics below)
        self.fh.close()
        self.fh = open(path, "r+b")
        self._at_end = False
        self.count = 0
        self.last_step = -1
        self.crc = 0

    def reset(self, count: int = 0, crc: int | None = None, shrink: bool = False) -> None:
        """Keep the first `count` rows (already checked; `crc` theirs when known) and drop the rest. The file
        shrinks only when asked (on open): a reader may have mapped it, and reading a mapped page past the
        end of a file kills the process (SIGBUS); rows past `count` are simply written over later."""
        self.fh.flush()
        if shrink:
            self.fh.truncate(count * self.dtype.itemsize)
        self._at_end = False
        self.count = count
        self.crc = self.prefix_crc(count) if crc is None else crc
        has_step = "iteration" in self.dtype.names
        self.last_step = int(self.read(count - 1, count)["iteration"][0]) if count and has_step else -1

    def push(self, row: tuple) -> None:
        data = self.packer.pack(*row)
        if not self._at_end:  # a seek flushes the write buffer: only after a read or a cut
            self.fh.seek(self.count * self.dtype.itemsize)
            self._at_end = True
        self.fh.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.count += 1
        self.last_step = int(row[0])

    def cut(self, step: int, keep_equal: bool) -> bool:
        """Drop the rows past `step` (and at it unless `keep_equal`); True when any went."""
        if self.last_step < step or (keep_equal and self.last_step == step):
            return False
        low, high = 0, self.count  # the first row past `step` (or at it): bisection, a row read at a time
        while low < high:
            middle = (low + high) // 2
            row_step = int(self.read(middle, middle + 1)["iteration"][0])
            low, high = (middle + 1, high) if row_step < step or (keep_equal and row_step == step) else (low, middle)
        self.reset(low)
        return True

    def read(self, start: int, stop: int) -> np.ndarray:
        self.fh.flush()
        self._at_end = False
        self.fh.seek(start * self.dtype.itemsize)
        return np.frombuffer(self.fh.read((stop - start) * self.dtype.itemsize), self.dtype)

    def prefix_crc(self, count: int) -> int:
        crc = 0
        for start in range(0, count, CHUNK):
            crc = zlib.crc32(self.read(start, min(count, start + CHUNK)).tobytes(), crc)
        return crc

    def size_rows(self) -> int:
        self.fh.flush()
        return os.fstat(self.fh.fileno()).st_size // self.dtype.itemsize

    def close(self) -> None:
        self.fh.close()
