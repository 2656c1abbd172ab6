"""`python -m trainer.prepare INPUT... --out DIR` (`just prepare`): videos to a training set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import PrepareError
from .options import FORMATS, LAYOUTS, OptionError, PrepareOptions
from .run import prepare
from .summary import summary

__all__ = ["main"]

DEFAULTS = PrepareOptions(layout="clips")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.prepare", description=(
        "Turn videos into a training set: clips of one shot each, split by video into train/ and val/. "
        "A killed run continues where it stopped when given the same command again."))
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, or folders searched recursively")
    p.add_argument("--out", required=True, type=Path, help="the data set folder (new, or one this command began)")
    p.add_argument("--layout", choices=LAYOUTS, default="clips",
                   help="clips: DIR/{train,val}/CLIP/*.png (default); patches: the original DIR/Patches + DIR/Val")
    p.add_argument("--frames", type=int, default=0,
                   help="frames per clip (default 30) or patch stack (5 or 7, default 5)")
    p.add_argument("--scale", type=int, default=0,
                   help="upscaling factor: patches' LR = GT / scale (default 3); clips stay full size (default 4)")
    p.add_argument("--stride", type=int, default=DEFAULTS.stride, help="take every K-th frame")
    p.add_argument("--clips-per-video", type=int, default=0,
                   help="at most N clips per video, spread evenly (default all)")
    p.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction, help="share of videos for validation")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="chooses the validation videos")
    p.add_argument("--workers", type=int, default=0, help="processes, one video each (default: CPU cores)")
    p.add_argument("--format", choices=FORMATS, default="png",
                   help="png, or raw: one uncompressed .npy per clip, read through a memory map (fast, large)")
    p.add_argument("--patch-size", type=int, default=DEFAULTS.patch_size, help="patches layout: LR side of a patch")
    for name, help_ in (("cut", "colour-histogram change (0-1) between frames that starts a new shot"),
                        ("black", "mean brightness (0-255) under which a frame is black"),
                        ("frozen", "mean frame-to-frame change (0-255) under which a window is frozen"),
                        ("blur", "blur measure (0 sharp - 1 no detail, Crete et al. 2007) over which "
                                 "a window is out of focus")):
        p.add_argument(f"--{name}-threshold", type=float, default=getattr(DEFAULTS, f"{name}_threshold"), help=help_)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out, workers = args.out.expanduser(), args.workers
    fields = {k: v for k, v in vars(args).items() if k not in ("out", "workers")}
    fields["inputs"] = [str(Path(i).expanduser().resolve()) for i in args.inputs]
    try:
        manifest = prepare(PrepareOptions(**fields), out, workers)
    except (OptionError, PrepareError) as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, OptionError) else 1
    except KeyboardInterrupt:
        print(f"prepare: interrupted; run the same command again to finish {out}", file=sys.stderr)
        return 130
    print(summary(manifest, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
