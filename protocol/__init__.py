"""Wire protocol v1 between the trainer and its viewers: ZeroMQ PUB/SUB telemetry and
REQ/REP commands, msgpack payloads checked against declarative schemas, optional CURVE.
The format is written down in docs/protocol.md. Never imports torch, trainer, monitor or ckpt.
"""

from __future__ import annotations

from protocol.codec import (
    ProtocolError,
    check_event,
    decode_message,
    decode_reply,
    decode_request,
    encode_message,
    encode_reply,
    encode_request,
)
from protocol.commands import Command, CommandClient, CommandServer, CommandTimeout
from protocol.examples import example_fields
from protocol.jsonsafe import json_safe
from protocol.pubsub import Publisher, Subscriber
from protocol.schemas import (
    ACTION_COMMANDS,
    ACTIONS,
    COMMANDS,
    DEFAULT_PUB,
    DEFAULT_REP,
    EVENTS,
    HISTORY_FIELDS,
    LOOPBACK,
    MAX_FRAME_BYTES,
    METRIC_SPACES,
    MONITOR_PORT,
    PROTOCOL_VERSION,
    QUERIES,
    QUERY_COMMANDS,
    SIMPLE_ACTIONS,
    STATES,
    STATUS,
    TOPICS,
    VALIDATION,
    VALIDATION_POINT_FIELDS,
    CommandName,
)
from protocol.security import (
    SecurityConfig,
    SecurityError,
    check_bind_allowed,
    generate_keys,
    requires_security,
)
from protocol.sockets import EndpointError

__all__ = [
    "ACTION_COMMANDS",
    "ACTIONS",
    "COMMANDS",
    "DEFAULT_PUB",
    "DEFAULT_REP",
    "EVENTS",
    "HISTORY_FIELDS",
    "LOOPBACK",
    "MAX_FRAME_BYTES",
    "METRIC_SPACES",
    "MONITOR_PORT",
    "PROTOCOL_VERSION",
    "QUERIES",
    "QUERY_COMMANDS",
    "SIMPLE_ACTIONS",
    "STATES",
    "STATUS",
    "TOPICS",
    "VALIDATION",
    "VALIDATION_POINT_FIELDS",
    "Command",
    "CommandClient",
    "CommandName",
    "CommandServer",
    "CommandTimeout",
    "EndpointError",
    "ProtocolError",
    "Publisher",
    "SecurityConfig",
    "SecurityError",
    "Subscriber",
    "check_bind_allowed",
    "check_event",
    "decode_message",
    "decode_reply",
    "decode_request",
    "encode_message",
    "encode_reply",
    "encode_request",
    "example_fields",
    "generate_keys",
    "json_safe",
    "requires_security",
]
