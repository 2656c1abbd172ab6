"""`python -m monitor`: the dashboard/API process for one or more trainers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from protocol import DEFAULT_PUB, DEFAULT_REP, LOOPBACK, MONITOR_PORT

from . import runs_cli
from .alerts import DEFAULT_NOTIFY_ON, DEFAULT_STALL_AFTER_S, KINDS, AlertSettings, host_of, parse_kinds
from .config import ConfigError, MonitorConfig, TrainerEndpoints
from .runs_cli import COMMANDS
from .store import StoreError, default_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m monitor", description=__doc__)
    p.add_argument("--pub", action="append", metavar="ENDPOINT",
                   help=f"a trainer's PUB endpoint (default {DEFAULT_PUB}); repeat with --rep "
                        "to follow several trainers")
    p.add_argument("--rep", action="append", metavar="ENDPOINT",
                   help=f"the same trainer's REP endpoint (default {DEFAULT_REP})")
    p.add_argument("--host", default=LOOPBACK, help=f"address to serve on (default {LOOPBACK})")
    p.add_argument("--port", type=int, default=MONITOR_PORT, help=f"HTTP port (default {MONITOR_PORT})")
    p.add_argument("--token", default=os.environ.get("VSRPP_MONITOR_TOKEN"),
                   help="token required for actions (default $VSRPP_MONITOR_TOKEN); "
                        "open the dashboard once as http://HOST:PORT/?token=TOKEN")
    p.add_argument("--insecure", action="store_true",
                   help="allow serving beyond loopback without a token")
    p.add_argument("--keys", type=Path, help="CURVE key folder (client keys) for the trainer sockets")
    p.add_argument("--db", default=str(default_path()), metavar="PATH",
                   help="the SQLite file that keeps every run (default $XDG_DATA_HOME/vsrpp/monitor.sqlite); "
                        ":memory: keeps nothing")
    p.add_argument("--notify", action="append", default=[], metavar="URL",
                   help="POST each alert as JSON to URL: a Slack, Discord, Mattermost or ntfy webhook, ... "
                        "(repeatable; also $VSRPP_NOTIFY, comma-separated)")
    p.add_argument("--notify-on", default=",".join(DEFAULT_NOTIFY_ON), metavar="KIND,...",
                   help=f"the alert kinds to send (default: all but new_best; kinds: {','.join(KINDS)})")
    p.add_argument("--stall-after", type=float, default=DEFAULT_STALL_AFTER_S, metavar="SECONDS",
                   help=f"a run with no frame for this long is stalled (default {DEFAULT_STALL_AFTER_S:g})")
    p.add_argument("--public-url", metavar="URL", help="the dashboard's address for the alerts' readers; "
                                                      "each alert links to its run there")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> MonitorConfig:
    pubs, reps = args.pub or [DEFAULT_PUB], args.rep or [DEFAULT_REP]
    if len(pubs) != len(reps):
        raise ConfigError(f"give --pub and --rep in pairs: got {len(pubs)} --pub and {len(reps)} --rep")
    trainers = [TrainerEndpoints(pub, rep) for pub, rep in zip(pubs, reps, strict=True)]
    notify = [u for u in os.environ.get("VSRPP_NOTIFY", "").split(",") if u.strip()] + args.notify
    try:
        alerts = AlertSettings(notify=tuple(notify), notify_on=parse_kinds(args.notify_on),
                               stall_after_s=args.stall_after, public_url=args.public_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return MonitorConfig(trainers=trainers, host=args.host, port=args.port, token=args.token,
                         insecure=args.insecure, keys=args.keys, alerts=alerts, db=args.db)


def serve(config: MonitorConfig, log_level: str = "warning") -> None:
    """Build the app (ConfigError/SecurityError before anything starts), then serve until Ctrl-C."""
    import uvicorn

    from .app import create_app

    app = create_app(config)
    shown = "localhost" if config.host in (LOOPBACK, "::1") else config.host
    trainers = ", ".join(f"{t.pub} / {t.rep}" for t in config.trainers)
    print(f"Monitor: http://{shown}:{config.port}  (trainer {trainers})", flush=True)
    print(f"Runs kept in {config.db}", flush=True)
    if config.alerts.notify:  # the hosts only: a webhook URL is often the credential itself
        hosts = ", ".join(host_of(u) for u in config.alerts.notify)
        print(f"Alerts: {','.join(config.alerts.notify_on)} to {hosts}", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level)


def main(argv: list[str] | None = None) -> int:
    from protocol import SecurityError

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return runs_cli.main(argv)
    args = parse_args(argv)
    try:
        serve(config_from(args), args.log_level)
    except (ConfigError, SecurityError, StoreError) as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
