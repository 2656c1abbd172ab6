"""`python -m trainer`: parse the command line, build the config, start the monitor, train."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from protocol import DEFAULT_PUB, DEFAULT_REP, LOOPBACK, MONITOR_PORT
from trainer.config import Config, ConfigError, load_config, parse_override
from trainer.train.init_from import InitFrom, model_settings, read_init_from, taken_from_file

RESUME_HELP = "ask | latest | best | never | STEP | PATH (without a TTY, ask = latest)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description="Train VSR++ with live telemetry.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", metavar="FILE",
                   help="TOML file on top of the defaults (written out in trainer/configs/default.toml)")
    p.add_argument("--run-dir", default="runs/default", metavar="DIR", help="checkpoints and logs")
    p.add_argument("--data", metavar="DIR", help="dataset root (default: the embedded sample set)")
    p.add_argument("--max-iters", type=int, metavar="N")
    p.add_argument("--resume", default="ask", metavar="SPEC", help=RESUME_HELP)
    p.add_argument("--init-from", metavar="FILE",
                   help="start a new run from this model file's weights (a released BasicSR/mmagic file or a "
                        "checkpoint); the file decides the model and scale; optimizer, schedule and step start fresh")
    p.add_argument("--pub", default=DEFAULT_PUB, metavar="ENDPOINT", help="telemetry PUB socket")
    p.add_argument("--rep", default=DEFAULT_REP, metavar="ENDPOINT", help="command REP socket")
    p.add_argument("--no-monitor", action="store_true", help="do not start the local web monitor")
    p.add_argument("--monitor-port", type=int, default=MONITOR_PORT, metavar="PORT")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--val-every", type=int, metavar="N")
    p.add_argument("--save-every", type=int, metavar="N")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.n_feats=32 (repeatable)")
    p.add_argument("--keys", metavar="DIR", help="CURVE key folder (python -m protocol keys DIR)")
    p.add_argument("--insecure", action="store_true", help="allow binding beyond loopback without keys")
    return p


def config_from_args(args: argparse.Namespace, model: dict | None = None) -> Config:
    """The config the command line asks for; `model` settings (from --init-from's file) win."""
    overrides = dict(parse_override(item) for item in args.set)
    flags = {"train.max_iters": args.max_iters, "train.val_every": args.val_every,
             "train.save_every": args.save_every, "train.seed": args.seed,
             "train.device": args.device, "data.root": args.data}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_config(args.config, {**overrides, **(model or {})})


def read_config(args: argparse.Namespace) -> tuple[Config, InitFrom | None]:
    """The run's config; with --init-from, the file read and checked first (ConfigError when bad) and the
    config built around its model."""
    if not args.init_from:
        return config_from_args(args), None
    init = read_init_from(args.init_from)
    try:
        said = config_from_args(args)
    except ConfigError:  # e.g. options of the file's model (spynet_fix_iter) on a config naming another model
        said = config_from_args(args, {"model.name": init.found.name})
    settings = model_settings(init, said)
    taken = taken_from_file(init, said, settings)
    cfg = config_from_args(args, settings)
    from trainer.train.distributed import env_info

    if env_info().is_main:  # every DDP rank reads the same file; one says so
        print(init.describe(), flush=True)
        if taken:
            print(taken, flush=True)
    return cfg, init


def check_resume_spec(spec: str) -> None:
    if spec in ("ask", "latest", "best", "never") or spec.isdigit() or Path(spec).suffix == ".pth":
        return
    raise ConfigError(f"--resume must be {RESUME_HELP}; got {spec!r}")


def _local(endpoint: str) -> str:
    """Where a process on this machine connects to reach `endpoint` (a wildcard bind)."""
    for wildcard in ("*", "0.0.0.0", "[::]"):
        endpoint = endpoint.replace(f"://{wildcard}:", f"://{LOOPBACK}:")
    return endpoint


def port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_monitor(args: argparse.Namespace) -> subprocess.Popen | None:
    if not port_free(args.monitor_port):
        print(f"⚠️  Port {args.monitor_port} is taken: web monitor not started "
              "(choose another with --monitor-port). Training goes on.", flush=True)
        return None
    cmd = [sys.executable, "-m", "monitor", "--pub", _local(args.pub), "--rep", _local(args.rep),
           "--port", str(args.monitor_port)]
    if args.keys:
        cmd += ["--keys", args.keys]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    print(f"🌐 Web monitor active: http://localhost:{args.monitor_port}", flush=True)
    return proc


def stop_monitor(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_resume_spec(args.resume)
        cfg, init = read_config(args)  # --init-from's file before any data, run folder or socket
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from trainer.train.distributed import env_info
    from trainer.train.loop import RUN_STOPS, USER_ERRORS, RunOptions, train

    opts = RunOptions(run_dir=Path(args.run_dir), resume=args.resume, pub=args.pub, rep=args.rep,
                      keys=args.keys, insecure=args.insecure, init_from=init)
    monitor = None
    if not args.no_monitor and env_info().is_main:
        monitor = start_monitor(args)
    started = time.monotonic()
    try:
        code = train(cfg, opts)
    except USER_ERRORS as exc:  # bad input, not a bug: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RUN_STOPS as exc:  # the run stopped itself on purpose, after an emergency checkpoint
        print(f"error: {exc}\nTraining stopped; the emergency checkpoint is in {args.run_dir}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # before the loop's own handlers are in place: nothing to save yet
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        return 130
    finally:
        stop_monitor(monitor)
    if env_info().is_main:
        print(f"Finished in {time.monotonic() - started:.0f} s; run folder: {args.run_dir}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
