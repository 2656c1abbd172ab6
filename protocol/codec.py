"""Encode and decode wire protocol v1 messages, requests and replies (msgpack, no pickle).

Everything that arrives from a socket goes through a `decode_*` function, which
returns a checked value or raises `ProtocolError` (a `ValueError`) whose message
says what is wrong. Frames over `MAX_FRAME_BYTES` are refused before unpacking;
msgpack's own length limits and a nesting bound cap the work a hostile frame
can cause. The format is documented in docs/protocol.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgpack

from protocol.schemas import (
    COMMANDS,
    ENVELOPE,
    EVENTS,
    MAX_ARRAY_LEN,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    MAX_MAP_LEN,
    MAX_TOPIC_BYTES,
    PROTOCOL_VERSION,
    REPLY,
    REQUEST,
    TOPICS,
    Any_,
    Field,
    Schema,
)

_TOPIC_RE = re.compile(r"[A-Za-z0-9_.:/-]+")
_PLAIN = (type(None), bool, int, float, str, bytes, list, dict)
_MISSING = object()
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_TYPE_NAMES = {type(None): "nil", dict: "map", list: "list", bytes: "bytes", str: "str",
               bool: "bool", int: "int", float: "float"}


class ProtocolError(ValueError):
    """A frame, message, request or reply that does not follow wire protocol v1."""


# ---- encoding -------------------------------------------------------------------------------

def encode_message(topic: str, payload: dict[str, Any]) -> list[bytes]:
    """Two PUB frames `[topic, msgpack payload]`; the payload must carry the envelope."""
    topic_bytes = check_topic(topic).encode("ascii")
    _check_payload(topic, payload)
    return [topic_bytes, _pack(payload, f"'{topic}' message")]


def encode_request(command: str, args: dict[str, Any] | None = None) -> bytes:
    request: dict[str, Any] = {"v": PROTOCOL_VERSION, "command": command}
    if args is not None:
        request["args"] = args
    _check_request(request)
    return _pack(request, f"'{command}' request")


def encode_reply(ok: bool, **fields: Any) -> bytes:
    """A reply map `{"v": 1, "ok": ok, **fields}`; `error=` is required when not ok."""
    if "v" in fields or "ok" in fields:
        raise ProtocolError("reply fields 'v' and 'ok' are set by encode_reply")
    reply = {"v": PROTOCOL_VERSION, "ok": ok, **fields}
    _check_reply(reply)
    return _pack(reply, "reply")


# ---- decoding -------------------------------------------------------------------------------

def decode_message(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """`[topic, payload]` -> (topic, payload). Unknown topics get the envelope check only."""
    if not isinstance(frames, (list, tuple)) or len(frames) != 2:
        count = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise ProtocolError(f"a message has 2 frames [topic, payload], got {count}")
    raw_topic = _as_bytes(frames[0], "topic frame")
    if len(raw_topic) > MAX_TOPIC_BYTES:
        raise ProtocolError(f"topic frame is {len(raw_topic)} bytes, the limit is {MAX_TOPIC_BYTES}")
    try:
        topic = raw_topic.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"topic {raw_topic[:20]!r} is not ASCII") from None
    check_topic(topic)
    payload = _unpack(frames[1], f"'{topic}' payload")
    _check_payload(topic, payload)
    return topic, payload


def decode_request(data: bytes) -> tuple[str, dict[str, Any]]:
    """A request frame -> (command, args). Args of known commands are checked;
    whether a command is served at all is the server's decision."""
    request = _unpack(data, "request")
    _check_request(request)
    return request["command"], request.get("args", {})


def decode_reply(data: bytes) -> dict[str, Any]:
    reply = _unpack(data, "reply")
    _check_reply(reply)
    return reply


# ---- checks ---------------------------------------------------------------------------------

_Rule = tuple[str, tuple[type, ...], bool, Field]  # name, exact types for the fast path, required, field


def _compile(schema: Schema) -> tuple[_Rule, ...]:
    """Rules whose fast path (an exact type match) is only taken when nothing else needs checking."""
    return tuple((name, () if f.choices or f.pattern or Any_ in f.types else f.types, f.required, f)
                 for name, f in schema.items())


def _check_rules(obj: dict[str, Any], rules: tuple[_Rule, ...], what: str) -> None:
    for name, fast_types, required, field in rules:
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise ProtocolError(f"{what}: required field '{name}' is missing")
        elif type(value) not in fast_types:
            _check_value(value, field, f"{what}: field '{name}'")


_TOPIC_RULES = {topic: _compile({**ENVELOPE, **schema}) for topic, schema in TOPICS.items()}
_ENVELOPE_RULES = _compile(ENVELOPE)
_EVENT_RULES = {kind: _compile(schema) for kind, schema in EVENTS.items()}
_COMMAND_RULES = {command: _compile(schema) for command, schema in COMMANDS.items()}
_REQUEST_RULES = _compile(REQUEST)
_REPLY_RULES = _compile(REPLY)


def _check_value(value: Any, field: Field, where: str) -> None:
    if not _type_ok(value, field.types):
        raise ProtocolError(f"{where} must be {_names(field.types)}, got {_name(type(value))} {_short(value)}")
    if field.choices and value not in field.choices:
        raise ProtocolError(f"{where} must be one of {', '.join(field.choices)}, got {_short(value)}")
    if field.pattern and isinstance(value, str) and not re.fullmatch(field.pattern, value):
        raise ProtocolError(f"{where} must match {field.pattern}, got {_short(value)}")


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if Any_ in types:
        return True
    if isinstance(value, bool):  # bool is an int subclass; never accept it as a number
        return bool in types
    return isinstance(value, types)


def _check_version(obj: dict[str, Any], what: str) -> None:
    if "v" not in obj:
        raise ProtocolError(f"{what}: required field 'v' (protocol version) is missing")
    version = obj["v"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(f"{what}: unsupported protocol version {_short(version)}; "
                            f"this side speaks v{PROTOCOL_VERSION}")


def _check_payload(topic: str, payload: Any) -> None:
    what = f"'{topic}' message"
    if not isinstance(payload, dict):
        raise ProtocolError(f"{what}: payload must be a map, got {_name(type(payload))}")
    _check_version(payload, what)
    _check_rules(payload, _TOPIC_RULES.get(topic, _ENVELOPE_RULES), what)
    if topic == "event" and payload["kind"] in _EVENT_RULES:  # an unknown kind passes: a newer trainer's
        check_event(payload["kind"], payload.get("data", {}))


def check_event(kind: str, data: dict[str, Any]) -> None:
    """ProtocolError unless `kind` is one of the protocol's event kinds and `data` fits its schema."""
    if kind not in _EVENT_RULES:
        raise ProtocolError(f"unknown event kind {kind!r}; the protocol's kinds are in protocol.schemas.EVENTS")
    _check_rules(data, _EVENT_RULES[kind], f"'{kind}' event data")


def _check_request(request: Any) -> None:
    if not isinstance(request, dict):
        raise ProtocolError(f"request must be a map, got {_name(type(request))}")
    _check_version(request, "request")
    _check_rules(request, _REQUEST_RULES, "request")
    command = request["command"]
    _check_rules(request.get("args", {}), _COMMAND_RULES.get(command, ()), f"'{command}' args")


def _check_reply(reply: Any) -> None:
    if not isinstance(reply, dict):
        raise ProtocolError(f"reply must be a map, got {_name(type(reply))}")
    _check_version(reply, "reply")
    _check_rules(reply, _REPLY_RULES, "reply")
    if not reply["ok"] and "error" not in reply:
        raise ProtocolError("reply: ok is false but field 'error' is missing")


def check_topic(topic: Any) -> str:
    """The topic itself when it is a valid topic name, else ProtocolError."""
    if not isinstance(topic, str) or len(topic) > MAX_TOPIC_BYTES or not _TOPIC_RE.fullmatch(topic):
        raise ProtocolError(f"topic must be 1-{MAX_TOPIC_BYTES} ASCII letters, digits or _.:/-, "
                            f"got {_short(topic)}")
    return topic


def _check_plain(value: Any, what: str, depth: int = 0) -> None:
    """Only plain msgpack values, str map keys, and at most MAX_DEPTH levels of nesting."""
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
        bad = next((k for k in value if type(k) is not str), None)
        if bad is not None:
            raise ProtocolError(f"{what}: map key {_short(bad)} is not a str")
    elif isinstance(value, list):
        items = value
    elif isinstance(value, _PLAIN):
        return
    else:
        raise ProtocolError(f"{what}: {_name(type(value))} is not a plain msgpack value")
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"{what}: nested deeper than {MAX_DEPTH} levels")
    for item in items:
        if type(item) not in _SCALARS:
            _check_plain(item, what, depth + 1)


# ---- msgpack --------------------------------------------------------------------------------

def _pack(obj: dict[str, Any], what: str) -> bytes:
    _check_plain(obj, what)
    try:
        data = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"{what}: cannot encode: {exc}") from None
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes, the limit is {MAX_FRAME_BYTES}")
    return data


def _unpack(data: Any, what: str) -> Any:
    data = _as_bytes(data, what)
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes, the limit is {MAX_FRAME_BYTES}")
    if not data:
        raise ProtocolError(f"{what} is empty")
    try:
        value = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_bin_len=MAX_FRAME_BYTES, max_str_len=MAX_FRAME_BYTES,
            max_array_len=MAX_ARRAY_LEN, max_map_len=MAX_MAP_LEN, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises ValueError subclasses, UnicodeDecodeError, ...
        reason = str(exc) or type(exc).__name__
        raise ProtocolError(f"{what} is not valid msgpack: {reason}") from None
    _check_plain(value, what)
    return value


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ProtocolError(f"{what} must be bytes, got {_name(type(data))}")


def _name(kind: type) -> str:
    return _TYPE_NAMES.get(kind, kind.__name__)


def _names(types: tuple[type, ...]) -> str:
    if Any_ in types:
        return "any value"
    shown = [t for t in types if not (t is int and float in types)]  # int passes as float
    return " or ".join(_name(t) for t in shown)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
