"""The evaluation report: its JSON structure (the one `--json` promises users), the CSV rows and the printed table.

    {"scale", "crop_border",
     "clips": [{"name", "frames", "psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y",
                "bicubic": {the four metrics}, "bilinear": {the four metrics}}],
     "mean": {"frames" (all clips), the four metrics, "bicubic": {...}, "bilinear": {...}}}

The mean is over clips (each clip already the mean over its frames), as BasicSR and mmagic report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["METHODS", "METRICS", "clip_row", "format_table", "mean_row", "write_csv", "write_json"]

METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
METHODS = ("model", "bicubic", "bilinear")  # the model's numbers sit at the top level of a row
BASELINE_METHODS = METHODS[1:]


def clip_row(name: str, frames: int, means: dict[str, list[float]]) -> dict:
    """A clip's row from {method: the four metric means in METRICS order}."""
    row: dict = {"name": name, "frames": frames, **dict(zip(METRICS, means["model"], strict=True))}
    for method in BASELINE_METHODS:
        row[method] = dict(zip(METRICS, means[method], strict=True))
    return row


def _values(row: dict, method: str) -> dict[str, float]:
    return {k: row[k] for k in METRICS} if method == "model" else row[method]


def mean_row(rows: list[dict]) -> dict:
    """The mean over clips of every metric, and the total frame count."""
    means = {m: [sum(_values(r, m)[k] for r in rows) / len(rows) for k in METRICS] for m in METHODS}
    row = clip_row("", sum(r["frames"] for r in rows), means)
    del row["name"]
    return row


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def _flat(row: dict, name: str) -> dict:
    out = {"name": name, "frames": row["frames"], **_values(row, "model")}
    for method in BASELINE_METHODS:
        out.update({f"{method}_{k}": v for k, v in row[method].items()})
    return out


def write_csv(path: Path, report: dict) -> None:
    """One row per clip, then the mean (name "mean"); columns name, frames, the model's four
    metrics, then bicubic_* and bilinear_*."""
    rows = [_flat(r, r["name"]) for r in report["clips"]] + [_flat(report["mean"], "mean")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cells(row: dict) -> str:
    return " | ".join(f"{v['psnr_y']:6.2f} {v['ssim_y']:.4f} {v['psnr_rgb']:6.2f} {v['ssim_rgb']:.4f}"
                      for v in (_values(row, m) for m in METHODS))


def format_table(report: dict) -> str:
    """Clips as rows; model, bicubic and bilinear side by side, each PSNR-Y SSIM-Y PSNR SSIM (RGB)."""
    width = max([len("mean")] + [len(r["name"]) for r in report["clips"]])
    group = f"{'PSNR-Y':>6} {'SSIM-Y':>6} {'PSNR':>6} {'SSIM':>6}"
    head = f"{'':{width}} {'':>6} | " + " | ".join(f"{m:^27}" for m in METHODS)
    lines = [head, f"{'clip':{width}} {'frames':>6} | " + " | ".join([group] * len(METHODS))]
    lines.append("-" * len(lines[-1]))
    lines += [f"{r['name']:{width}} {r['frames']:>6} | {_cells(r)}" for r in report["clips"]]
    lines.append("-" * len(lines[-1]))
    lines.append(f"{'mean':{width}} {report['mean']['frames']:>6} | {_cells(report['mean'])}")
    title = f"x{report['scale']}, {report['crop_border']} px border left out; PSNR in dB; Y = BT.601 luma"
    return "\n".join(line.rstrip() for line in [title, *lines])
