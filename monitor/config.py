"""The monitor's settings and the rule that guards a network-facing monitor."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from protocol import DEFAULT_PUB, DEFAULT_REP, LOOPBACK, MONITOR_PORT

from .alerts import AlertSettings

TRANSPORTS = ("tcp://", "ipc://", "inproc://")


class ConfigError(ValueError):
    """A setting the monitor refuses to start with; the message says what to do."""


@dataclass(frozen=True)
class TrainerEndpoints:
    pub: str = DEFAULT_PUB
    rep: str = DEFAULT_REP

    def __post_init__(self) -> None:
        for flag, endpoint in (("--pub", self.pub), ("--rep", self.rep)):
            if not endpoint.startswith(TRANSPORTS) or endpoint.endswith("://"):
                raise ConfigError(f"{flag} {endpoint!r} is not a ZeroMQ endpoint; "
                                  f"expected e.g. {DEFAULT_PUB}")


@dataclass
class MonitorConfig:
    trainers: list[TrainerEndpoints] = field(default_factory=lambda: [TrainerEndpoints()])
    host: str = LOOPBACK
    port: int = MONITOR_PORT
    token: str | None = None
    insecure: bool = False
    keys: Path | None = None
    command_timeout_ms: int = 2500
    offline_after_s: float = 3.0
    max_body_bytes: int = 16 * 1024
    history_recent: int = 2000  # live points kept in memory per run (the whole history is in the store)
    db: str = ":memory:"  # the SQLite store (`python -m monitor` defaults to store.default_path())
    alerts: AlertSettings = field(default_factory=AlertSettings)  # --notify, --notify-on, --stall-after, ...

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if not self.trainers:
            raise ConfigError("at least one trainer (--pub/--rep pair) is needed")
        if self.token == "":
            self.token = None
        if not is_loopback(self.host) and self.token is None and not self.insecure:
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: anyone on the network could "
                "pause or stop training. Pass --token (or set VSRPP_MONITOR_TOKEN), or --insecure "
                "if you really mean it."
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
