"""`python -m protocol send|watch|keys`: scripted commands, a live frame dump, CURVE keys.

Exit status: 0 ok; 1 the trainer answered ok=false; 2 bad usage, keys or endpoint;
3 no reply (send) or fewer than --count frames before --timeout (watch).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from protocol.codec import ProtocolError
from protocol.commands import CommandClient, CommandTimeout
from protocol.pubsub import Subscriber
from protocol.schemas import COMMANDS, DEFAULT_PUB, DEFAULT_REP
from protocol.security import SecurityConfig, generate_keys
from protocol.sockets import EndpointError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, EndpointError) as exc:  # ProtocolError, SecurityError, bad --retries
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `watch | head`
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m protocol", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True, metavar="{send,watch,keys}")

    send = sub.add_parser("send", help="send one command, print the reply as JSON")
    send.add_argument("command", help=", ".join(COMMANDS))
    send.add_argument("--arg", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                      help="a command argument; VALUE is read as JSON when it parses, else as text")
    send.add_argument("--rep", default=DEFAULT_REP, help=f"the trainer's REP endpoint ({DEFAULT_REP})")
    send.add_argument("--timeout", type=_positive, default=2.0, help="seconds per try (2)")
    send.add_argument("--retries", type=int, default=1, help="extra tries after a timeout (1)")
    send.add_argument("--keys", type=Path, help="CURVE key folder (client keys)")
    send.set_defaults(run=run_send)

    watch = sub.add_parser("watch", help="print published frames as JSON lines")
    watch.add_argument("--pub", default=DEFAULT_PUB, help=f"the trainer's PUB endpoint ({DEFAULT_PUB})")
    watch.add_argument("--topic", action="append", default=[], help="only this topic (repeatable)")
    watch.add_argument("--count", type=int, help="stop after N frames")
    watch.add_argument("--timeout", type=_positive, help="stop after S seconds")
    watch.add_argument("--bytes", choices=("size", "base64"), default="size",
                       help='bytes fields as {"bytes": N} (size) or {"base64": "..."}')
    watch.add_argument("--keys", type=Path, help="CURVE key folder (client keys)")
    watch.set_defaults(run=run_watch)

    keys = sub.add_parser("keys", help="make CURVE key pairs (server + client) in DIR")
    keys.add_argument("dir", type=Path)
    keys.set_defaults(run=run_keys)
    return parser


def run_send(args: argparse.Namespace) -> int:
    security = _client_security(args.keys)
    command_args = dict(args.arg) if args.arg else None
    with CommandClient(args.rep, timeout_ms=int(args.timeout * 1000), retries=args.retries,
                       security=security) as client:
        try:
            reply = client.request(args.command, command_args)
        except CommandTimeout as exc:
            print(f"error: {exc} (is the trainer running?)", file=sys.stderr)
            return 3
    print(to_json(reply, indent=2))
    if not reply["ok"]:
        print(f"error: {reply['error']}", file=sys.stderr)
        return 1
    return 0


def run_watch(args: argparse.Namespace) -> int:
    security = _client_security(args.keys)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    with Subscriber(args.pub, topics=args.topic, security=security) as sub:
        while args.count is None or seen < args.count:
            wait_ms = 200 if deadline is None else int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
            try:
                message = sub.recv(min(wait_ms, 200))
            except ProtocolError as exc:
                print(f"bad frame skipped: {exc}", file=sys.stderr)
                continue
            if message is not None:
                seen += 1
                print(to_json({"topic": message[0], "payload": message[1]}, bytes_as=args.bytes),
                      flush=True)
    if args.count is not None and seen < args.count:
        print(f"error: got {seen} of {args.count} frames in {args.timeout} s", file=sys.stderr)
        return 3
    return 0


def run_keys(args: argparse.Namespace) -> int:
    for path in generate_keys(args.dir):
        print(path)
    print(f"trainer: --keys {args.dir} (uses server.key_secret, authorized/*.key)\n"
          f"viewers: copy server.key and client.key_secret, then --keys DIR", file=sys.stderr)
    return 0


def to_json(value: Any, *, indent: int | None = None, bytes_as: str = "size") -> str:
    def encode_bytes(obj: Any) -> Any:
        if isinstance(obj, bytes):
            if bytes_as == "base64":
                return {"base64": base64.b64encode(obj).decode("ascii")}
            return {"bytes": len(obj)}
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    return json.dumps(value, indent=indent, default=encode_bytes)


def _client_security(keys: Path | None) -> SecurityConfig | None:
    return None if keys is None else SecurityConfig.from_keys_dir(keys, "client")


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
