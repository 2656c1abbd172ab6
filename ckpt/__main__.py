"""`python -m ckpt list RUN_DIR [--last N] [--json]` and `python -m ckpt prune RUN_DIR ...`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ckpt.errors import CheckpointError
from ckpt.listing import list_checkpoints
from ckpt.retention import KEEP_BEST, KEEP_LAST, prune
from ckpt.selection import format_table
from protocol import json_safe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ckpt", description="Checkpoints of a run.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("list", help="print the checkpoint table of RUN_DIR")
    show.add_argument("run_dir", type=Path)
    show.add_argument("--last", type=int, default=None, help="only the newest N (default: all)")
    show.add_argument("--json", action="store_true", help="a JSON list for scripts")
    trim = commands.add_parser("prune", help="remove old checkpoints of RUN_DIR")
    trim.add_argument("run_dir", type=Path)
    trim.add_argument("--keep-last", type=int, default=KEEP_LAST, help=f"regular ones to keep ({KEEP_LAST})")
    trim.add_argument("--keep-best", type=int, default=KEEP_BEST, help=f"best by quality to keep ({KEEP_BEST})")
    return parser


def _list(args: argparse.Namespace) -> int:
    if args.last is not None and args.last < 1:
        print("error: --last must be at least 1", file=sys.stderr)
        return 2
    entries = list_checkpoints(args.run_dir)
    if args.json:
        shown = entries[-args.last :] if args.last else entries
        print(json.dumps([json_safe(entry) for entry in shown], indent=2, allow_nan=False))
    elif entries:
        print(format_table(entries, args.last))
        sources = sorted({e["init_from"] for e in entries if e.get("init_from")})
        if sources:
            print(f"fine-tuned from {', '.join(sources)}")
    else:
        print(f"No checkpoints in {args.run_dir}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    for path in prune(args.run_dir, keep_last=args.keep_last, keep_best=args.keep_best):
        print(f"removed {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"error: no such run directory: {args.run_dir}", file=sys.stderr)
        return 2
    try:
        return _list(args) if args.command == "list" else _prune(args)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
