"""Wire protocol v1 codec: schemas, envelope, versions, size limits and a fuzz of every decoder."""

from __future__ import annotations

import ast
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    MAX_FRAME_BYTES,
    TOPICS,
    ProtocolError,
    decode_message,
    decode_reply,
    decode_request,
    encode_message,
    encode_reply,
    encode_request,
    example_fields,
)

ENVELOPE = {"v": 1, "run": "run-1", "seq": 7, "ts": 1700000000.5}


def payload(topic: str, **changes: object) -> dict:
    return {**ENVELOPE, **example_fields(topic), **changes}


def packed(topic: str, body: object) -> list[bytes]:
    return [topic.encode(), msgpack.packb(body, use_bin_type=True)]


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_every_topic_round_trips_through_two_frames(topic: str) -> None:
    body = payload(topic)
    frames = encode_message(topic, body)
    assert len(frames) == 2 and frames[0] == topic.encode("ascii")
    assert decode_message(frames) == (topic, body)


def test_status_requires_every_field_users_rely_on() -> None:
    required = {name for name, field in TOPICS["status"].items() if field.required}
    assert required >= {
        "iteration", "total_loss", "learn_rate", "time_remaining", "iter_speed", "gpu_memory",
        "best_score", "is_validating", "is_training", "timestamp", "is_paused", "max_iterations",
    }


def test_validation_image_bytes_survive_the_round_trip() -> None:
    body = payload("validation", image=b"\x89PNG\r\n\x1a\n" + bytes(range(256)), image_format="png")
    assert decode_message(encode_message("validation", body))[1]["image"] == body["image"]


def test_ints_are_accepted_where_floats_are_expected_and_best_score_may_be_nil() -> None:
    body = payload("status", total_loss=1, learn_rate=0, best_score=None, gpu_memory=0)
    assert decode_message(encode_message("status", body))[1]["total_loss"] == 1


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("iteration", "12", "field 'iteration' must be int, got str"),
        ("iteration", True, "field 'iteration' must be int, got bool"),
        ("total_loss", "nan", "field 'total_loss' must be float"),
        ("is_paused", 0, "field 'is_paused' must be bool"),
        ("time_remaining", "2h 3m", "field 'time_remaining' must match"),
        ("best_score", "0.5", "field 'best_score' must be float or nil"),
    ],
)
def test_a_status_field_of_the_wrong_type_is_rejected_with_its_name(field, value, says) -> None:
    with pytest.raises(ProtocolError, match=says):
        decode_message(packed("status", payload("status", **{field: value})))
    with pytest.raises(ProtocolError, match=says):
        encode_message("status", payload("status", **{field: value}))


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_a_missing_required_field_is_named(topic: str) -> None:
    body = payload(topic)
    name = next(n for n, f in TOPICS[topic].items() if f.required)
    del body[name]
    with pytest.raises(ProtocolError, match=f"required field '{name}' is missing"):
        decode_message(packed(topic, body))


@pytest.mark.parametrize("name", ["v", "run", "seq", "ts"])
def test_every_message_needs_the_envelope(name: str) -> None:
    body = payload("heartbeat")
    del body[name]
    with pytest.raises(ProtocolError, match=f"'{name}'"):
        decode_message(packed("heartbeat", body))


def test_unknown_topics_are_decoded_with_the_envelope_checked_only() -> None:
    assert decode_message(packed("gpu_stats", {**ENVELOPE, "anything": [1, 2]}))[1]["anything"] == [1, 2]
    with pytest.raises(ProtocolError, match="'seq' is missing"):
        decode_message(packed("gpu_stats", {"v": 1, "run": "r", "ts": 1.0}))


def test_extra_fields_pass_through_untouched() -> None:
    body = payload("status", lr_warmup=True, per_gpu=[1.5, 2.5])
    assert decode_message(encode_message("status", body))[1]["per_gpu"] == [1.5, 2.5]


def test_image_format_is_png_or_jpeg() -> None:
    with pytest.raises(ProtocolError, match="one of png, jpeg"):
        encode_message("validation", payload("validation", image_format="gif"))


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_another_protocol_version_is_refused_everywhere(version: object) -> None:
    says = "unsupported protocol version|'v'"
    with pytest.raises(ProtocolError, match=says):
        decode_message(packed("status", payload("status", v=version)))
    with pytest.raises(ProtocolError, match=says):
        decode_request(msgpack.packb({"v": version, "command": "ping"}))
    with pytest.raises(ProtocolError, match=says):
        decode_reply(msgpack.packb({"v": version, "ok": True}))


def test_an_oversized_frame_is_refused_before_unpacking(monkeypatch) -> None:
    big = b"\x00" * (MAX_FRAME_BYTES + 1)
    monkeypatch.setattr(msgpack, "unpackb", lambda *a, **k: pytest.fail("unpacked an oversized frame"))
    for decode in (decode_request, decode_reply, lambda data: decode_message([b"status", data])):
        with pytest.raises(ProtocolError, match="limit is"):
            decode(big)


def test_an_oversized_payload_is_refused_when_encoding() -> None:
    body = payload("validation", image=b"x" * MAX_FRAME_BYTES)
    with pytest.raises(ProtocolError, match="limit is"):
        encode_message("validation", body)


def test_deep_nesting_is_refused() -> None:
    deep = b"\x81\xa1a" * 3000 + b"\xc0"  # {"a": {"a": ... nil}} 3000 levels
    with pytest.raises(ProtocolError):
        decode_request(deep)
    nested: dict = {}
    for _ in range(20):
        nested = {"k": nested}
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_message(packed("event", {**payload("event"), "data": nested}))


def test_non_plain_values_are_refused_when_encoding() -> None:
    with pytest.raises(ProtocolError, match="not a plain msgpack value"):
        encode_message("event", payload("event", data={"step": 1, "path": "p", "when": object()}))
    with pytest.raises(ProtocolError, match="map key 1 is not a str"):
        encode_message("event", payload("event", data={"step": 1, "path": "p", 1: "x"}))


def test_msgpack_extension_types_are_refused() -> None:
    ext = msgpack.packb({**ENVELOPE, "x": msgpack.ExtType(5, b"\x01")})
    with pytest.raises(ProtocolError):
        decode_message([b"event", ext])


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\xc1", "not valid msgpack"),
        (b"GET / HTTP/1.1\r\n", "not valid msgpack"),
        (msgpack.packb([1, 2]), "must be a map, got list"),
        (msgpack.packb({"v": 1}), "'command' is missing"),
        (msgpack.packb({"v": 1, "command": "ping", "args": [1]}), "'args' must be map"),
        (msgpack.packb({"v": 1, "command": "set", "args": {"key": "lr"}}), "'value' is missing"),
        (msgpack.packb({"v": 1, "command": "Bad Name"}), "'command' must match"),
    ],
)
def test_a_malformed_request_says_why(data: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        decode_request(data)


def test_requests_and_replies_round_trip() -> None:
    assert decode_request(encode_request("set", {"key": "lr", "value": 0.001})) == (
        "set", {"key": "lr", "value": 0.001})
    assert decode_request(encode_request("ping")) == ("ping", {})
    assert decode_request(encode_request("future_command", {"x": 1})) == ("future_command", {"x": 1})
    assert decode_reply(encode_reply(True, checkpoints=[])) == {"v": 1, "ok": True, "checkpoints": []}
    assert decode_reply(encode_reply(False, error="busy"))["error"] == "busy"


def test_a_failed_reply_must_say_why() -> None:
    with pytest.raises(ProtocolError, match="'error' is missing"):
        encode_reply(False)
    with pytest.raises(ProtocolError, match="'error' is missing"):
        decode_reply(msgpack.packb({"v": 1, "ok": False}))


def test_a_bad_topic_frame_is_refused() -> None:
    body = msgpack.packb(payload("status"))
    for topic, says in [(b"st\xffatus", "not ASCII"), (b"a b", "topic must be"), (b"x" * 65, "limit")]:
        with pytest.raises(ProtocolError, match=says):
            decode_message([topic, body])
    with pytest.raises(ProtocolError, match="2 frames"):
        decode_message([b"status", body, b"extra"])


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
frames = st.lists(st.binary(max_size=64), max_size=3) | st.builds(
    lambda topic, body: [topic.encode(), msgpack.packb(body)],
    st.sampled_from(sorted(TOPICS) + ["other"]), st.dictionaries(st.text(max_size=8), plain, max_size=6),
)
blobs = st.binary(max_size=128) | plain.map(msgpack.packb)
fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_values_or_protocol_errors(decode, data) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@fuzz
@given(frames)
def test_decode_message_returns_a_message_or_raises_protocol_error(data) -> None:
    _only_values_or_protocol_errors(decode_message, data)


@fuzz
@given(blobs)
def test_decode_request_returns_a_request_or_raises_protocol_error(data: bytes) -> None:
    _only_values_or_protocol_errors(decode_request, data)


@fuzz
@given(blobs)
def test_decode_reply_returns_a_reply_or_raises_protocol_error(data: bytes) -> None:
    _only_values_or_protocol_errors(decode_reply, data)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, blobs)
def test_every_decoder_survives_a_long_fuzz(message_frames, data: bytes) -> None:
    _only_values_or_protocol_errors(decode_message, message_frames)
    _only_values_or_protocol_errors(decode_request, data)
    _only_values_or_protocol_errors(decode_reply, data)


def test_protocol_never_imports_torch_trainer_monitor_ckpt_or_pickle() -> None:
    forbidden = {"torch", "trainer", "monitor", "ckpt", "pickle", "cloudpickle", "dill"}
    for path in Path(protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"
