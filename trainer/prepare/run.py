"""The whole run: find and probe the videos, split them, prepare the unfinished ones on worker
processes (one video per job), record each in the manifest as it finishes, report progress."""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import PrepareError
from .manifest import load_manifest, new_manifest, save_manifest
from .options import PrepareOptions
from .progress import Progress
from .sources import find_videos, probe_all, split_by_video
from .video import Job, prepare_video
from .writers import TMP

__all__ = ["prepare"]

LOCK = "lock"
PR_SET_PDEATHSIG = 1


def prepare(options: PrepareOptions, out: Path, workers: int = 0, *, tty: bool | None = None) -> dict:
    """Make (or finish) the data set in `out`; returns the manifest. PrepareError when nothing is usable."""
    paths = find_videos(options.inputs)
    manifest = load_manifest(out, options) or new_manifest(options)
    videos, unreadable = probe_all(paths)
    if not videos:
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in list(unreadable.items())[:3])
        raise PrepareError(f"no usable video among {len(paths)} input file(s)" + (f" ({reasons})" if reasons else ""))
    split_by_video(videos, options.val_fraction, options.seed)
    manifest["unreadable"] = unreadable
    workers = min(workers or _default_workers(videos, options), len(videos))
    threads = max(1, _cores() // workers)  # cores left to each worker's PNG compression
    jobs = [Job(str(v.path), v.name, v.split, v.info.frames, v.info.note, threads)
            for v in videos if v.name not in manifest["videos"]]
    with _exclusive(out):
        save_manifest(out, manifest)
        total = sum(-(-j.estimate // options.stride) for j in jobs)
        with Progress(total, len(jobs), tty=sys.stderr.isatty() if tty is None else tty) as progress:
            for name, result in _run(jobs, options, out, workers, progress.advance):
                manifest["videos"][name] = result
                save_manifest(out, manifest)
                progress.finished(name, result)
        manifest["complete"] = True
        save_manifest(out, manifest)
        (out / TMP / LOCK).unlink()
    _remove_tmp(out)
    if not any(v.get("clips") for v in manifest["videos"].values()):
        raise PrepareError("no usable clips: every window was cut short, black, frozen or blurred, or every "
                           f"video failed to decode (see {out / 'prepare.json'}; thresholds are options)")
    return manifest


def _cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _default_workers(videos: list, options: PrepareOptions) -> int:
    """One per core, as many as half the memory holds: a worker keeps up to two windows of frames
    (30 4K frames are 750 MB), so many workers on big frames could exhaust a machine's RAM."""
    window = max(v.info.width * v.info.height * 3 for v in videos) * options.frames
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return _cores()
    return max(1, min(_cores(), memory // 2 // (2 * window + 2**28)))


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One prepare at a time per folder (the lock dies with the process, however it ends)."""
    lock = out / TMP / LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PrepareError(f"another prepare is writing {out}; wait for it or stop it") from None
        yield


def _remove_tmp(out: Path) -> None:
    for folder in (out / TMP / "tmp", out / TMP):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


_tick = None  # a worker's progress counter (set by _init_worker)


def _die_with_parent() -> None:
    """Linux: a worker is killed when the parent dies (SIGKILL included), so a rerun never races it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _init_worker(counter) -> None:
    global _tick
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()

    def tick(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    _tick = tick


def _work(args: tuple[Job, PrepareOptions, Path]) -> tuple[str, dict]:
    job, options, out = args
    return job.name, prepare_video(job, options, out, _tick)


def _run(jobs: list[Job], options: PrepareOptions, out: Path, workers: int, advance) -> Iterator[tuple[str, dict]]:
    if min(workers, len(jobs)) <= 1:
        for job in jobs:
            yield job.name, prepare_video(job, options, out, advance)
        return
    counter = multiprocessing.Value("q", 0)
    with multiprocessing.Pool(min(workers, len(jobs)), _init_worker, (counter,)) as pool:
        results = pool.imap_unordered(_work, [(job, options, out) for job in jobs])
        reported = 0
        for _ in jobs:
            while True:
                try:
                    done = results.next(timeout=0.2)
                    break
                except multiprocessing.TimeoutError:
                    pass
                finally:
                    reported = _report(counter, reported, advance)
            yield done


def _report(counter, reported: int, advance) -> int:
    now = counter.value
    if now > reported:
        advance(now - reported)
    return now
