"""The table printed at the end of a run: videos, clips, frames, skipped frames by reason, disk used."""

from __future__ import annotations

from pathlib import Path

from .shots import SKIP_REASONS
from .writers import split_folder

__all__ = ["summary"]

REASON_LABELS = {"black": "black", "frozen": "frozen", "blurred": "blurred", "shot_end": "shot ends (cuts)",
                 "unselected": "not selected (--clips-per-video)"}


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def summary(manifest: dict, out: Path) -> str:
    options, videos = manifest["options"], manifest["videos"]
    layout = options["layout"]
    item = "clips" if layout == "clips" else "patches"
    lines = [f"{out}: layout {layout}, format {options['format']}, {options['frames']} frames per {item[:-1]}",
             f"  {'split':<6} {'videos':>7} {item:>8} {'frames used':>12} {'frames read':>12} {'disk':>10}"]
    for split in ("train", "val"):
        ok = [v for v in videos.values() if v["split"] == split and "error" not in v]
        disk = _disk(split_folder(out, layout, split))
        count = sum(v["items"] for v in ok)
        used, read = sum(v["clips"] for v in ok) * options["frames"], sum(v["frames"] for v in ok)
        lines.append(f"  {split:<6} {len(ok):>7} {count:>8} {used:>12} {read:>12} {_size(disk):>10}")
    skipped = {r: sum(v["skipped"][r] for v in videos.values() if "error" not in v) for r in SKIP_REASONS}
    lines.append("  frames left out: " + ", ".join(f"{REASON_LABELS[r]} {n}" for r, n in skipped.items()))
    bad = {**manifest["unreadable"], **{v["source"]: v["error"] for v in videos.values() if "error" in v}}
    for source, reason in sorted(bad.items()):
        lines.append(f"  skipped {source}: {reason}")
    for v in sorted(videos.values(), key=lambda v: v["source"]):
        if v.get("note"):
            lines.append(f"  converted {v['source']}: {v['note']}")
    return "\n".join(lines)
