"""A small file system that fills up: tmpfs, else a loop-mounted ext2 image, else RLIMIT_FSIZE.

Mounting needs root; the last resort needs nothing: `resource.prlimit` on the trainer's pid makes
writes past the limit fail with EFBIG (SIGXFSZ is ignored in the child so it does not die).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SIZE = "2m"
FILLER = "filler.bin"


def _mount(args: list[str]) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _ignore_sigxfsz() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@dataclass
class SmallDisk:
    root: Path
    mode: str  # "tmpfs" | "loop ext2 image" | "RLIMIT_FSIZE"

    @property
    def preexec(self) -> Callable[[], None] | None:
        """For the writer process: survive RLIMIT_FSIZE (EFBIG instead of SIGXFSZ)."""
        return _ignore_sigxfsz if self.mode == "RLIMIT_FSIZE" else None

    def fill(self, pid: int, leave: int) -> None:
        """Leave about `leave` bytes free (per file under RLIMIT_FSIZE) for process `pid`."""
        if self.mode == "RLIMIT_FSIZE":
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (leave, leave))
            return
        filler = self.root / FILLER
        with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while fh.write(b"\0" * 4096):  # until the file system is full
                pass
        os.truncate(filler, max(0, filler.stat().st_size - leave))

    def free(self, pid: int) -> None:
        if self.mode == "RLIMIT_FSIZE":
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
        else:
            (self.root / FILLER).unlink(missing_ok=True)


def _loop_image(mount_point: Path) -> bool:
    image = mount_point.parent / f"{mount_point.name}.img"
    image.write_bytes(b"\0" * 4 * 2**20)
    made = subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], capture_output=True).returncode == 0
    return made and _mount(["-o", "loop", str(image), str(mount_point)])


@contextlib.contextmanager
def small_disk(mount_point: Path) -> Iterator[SmallDisk]:
    mount_point.mkdir(parents=True, exist_ok=True)
    if _mount(["-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount_point)]):
        mode = "tmpfs"
    elif _loop_image(mount_point):
        mode = "loop ext2 image"
    else:
        mode = "RLIMIT_FSIZE"
    try:
        yield SmallDisk(mount_point, mode)
    finally:
        if mode != "RLIMIT_FSIZE":
            result = subprocess.run(["umount", str(mount_point)], capture_output=True)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)

