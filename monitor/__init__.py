"""The monitor: dashboard, HTTP API and WebSocket push for running trainers.

Never imports torch or `trainer`; talks to trainers only through `protocol`.
"""

from __future__ import annotations

from monitor.app import create_app
from monitor.config import ConfigError, MonitorConfig, TrainerEndpoints
from monitor.mock import MockTrainer
from monitor.state import MonitorState

__all__ = [
    "ConfigError",
    "MockTrainer",
    "MonitorConfig",
    "MonitorState",
    "TrainerEndpoints",
    "create_app",
]
