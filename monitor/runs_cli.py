"""`python -m monitor import RUN_DIR` and `python -m monitor runs list|delete ID`: the stored runs from
the command line (the web page deletes nothing). Exit 2 with one line on bad input."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .importer import ImportError_, import_run
from .recorder import seen_lately, shown_state
from .store import Store, StoreError, default_path

COMMANDS = ("import", "runs")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m monitor", description=__doc__)
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=str(default_path()), metavar="PATH",
                    help="the monitor's SQLite file (default $XDG_DATA_HOME/vsrpp/monitor.sqlite)")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", parents=[db], help="read a run folder (run.json, metrics.jsonl, images)")
    imp.add_argument("run_dir", metavar="RUN_DIR")
    runs = sub.add_parser("runs", help="list or delete stored runs")
    action = runs.add_subparsers(dest="action", required=True)
    action.add_parser("list", parents=[db], help="every stored run, newest first")
    delete = action.add_parser("delete", parents=[db], help="delete one run (its id, a prefix of it, or its name)")
    delete.add_argument("run", metavar="ID")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        readonly = args.command == "runs" and args.action == "list"  # beside a running monitor too
        store = Store(args.db, owner={"command": " ".join(argv[:2])}, readonly=readonly)
    except StoreError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "import":
            row = import_run(store, args.run_dir)
            print(f"imported {row['name']} ({row['id']}): {row['iteration']} iterations into {args.db}")
        elif args.action == "list":
            print_runs(store.runs(), store)
        else:
            run = find(store, args.run)
            store.delete_run(run["id"])
            store.flush()
            print(f"deleted {run['name']} ({run['id']}) from {args.db}")
    except (ImportError_, LookupError) as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def find(store: Store, key: str) -> dict[str, Any]:
    """The one run that `key` names (id, id prefix or display name); LookupError otherwise."""
    exact = store.run(key)
    if exact is not None:
        return exact
    found = [r for r in store.runs() if r["id"].startswith(key)]
    if len(found) != 1:
        raise LookupError(f"no stored run is {key!r}" if not found else
                          f"{key!r} names {len(found)} runs; give more of the id")
    return found[0]


def print_runs(runs: list[dict[str, Any]], store: Store) -> None:
    """The stored runs, each in the state GET /api/runs shows (a run not seen lately and not ended: lost)."""
    if not runs:
        print(f"no runs stored in {store.path}")
        return
    now = time.time()
    print(f"{'id':<12} {'name':<28} {'state':<10} {'iteration':>10} {'best':>7}  {'started':<16}  ended")
    for r in runs:
        state, ended = shown_state(r, seen_lately(r, now))
        best = f"{r['best_score']:.1%}" if isinstance(r["best_score"], float | int) else "-"
        print(f"{r['id'][:12]:<12} {r['name'][:28]:<28} {state or '-':<10} {r['iteration'] or 0:>10} {best:>7}  "
              f"{when(r['started']):<16}  {when(ended)}")


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"
