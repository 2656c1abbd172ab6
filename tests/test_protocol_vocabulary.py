"""The protocol's words are defined once (protocol.schemas) and every sender keeps to them."""

from __future__ import annotations

import time

import msgpack
import pytest

from monitor.mock import MockTrainer
from protocol import (
    EVENTS,
    CommandClient,
    ProtocolError,
    Subscriber,
    check_event,
    decode_message,
    encode_message,
    example_fields,
)
from trainer.config import TelemetryConfig
from trainer.report.telemetry import Telemetry

ENVELOPE = {"v": 1, "run": "r", "seq": 1, "ts": 1.0}


def event_frame(kind: str, **data: object) -> list[bytes]:
    """An event as another program might send it: packed without our encoder's checks."""
    return [b"event", msgpack.packb({**ENVELOPE, "kind": kind, "message": "m", "data": data}, use_bin_type=True)]


def test_the_agreed_divergence_events_have_their_fields() -> None:
    check_event("nan_skipped", {"step": 5, "skipped": 2, "reason": "loss is nan"})
    check_event("diverged", {"step": 9, "restore_step": 0})
    check_event("recovered", {"step": 9, "from_step": 0, "rollbacks": 1})
    check_event("checkpoint_refused", {"step": 9, "path": "runs/x.pth", "reason": "NaN weights"})
    with pytest.raises(ProtocolError, match="'nan_skipped' event data: required field 'skipped'"):
        check_event("nan_skipped", {"step": 5, "reason": "loss is nan"})


def test_a_known_event_kind_with_wrong_data_is_refused_on_the_wire() -> None:
    with pytest.raises(ProtocolError, match="'recovered' event data: field 'rollbacks' must be int"):
        decode_message(event_frame("recovered", step=1, from_step=0, rollbacks="one"))


def test_an_unknown_event_kind_is_refused_when_sent_but_read_when_received() -> None:
    with pytest.raises(ProtocolError, match="unknown event kind 'checkpoint'"):
        check_event("checkpoint", {})
    _, payload = decode_message(event_frame("from_a_newer_trainer"))
    assert payload["kind"] == "from_a_newer_trainer"


def test_telemetry_refuses_event_kinds_and_states_outside_the_protocol() -> None:
    tel = Telemetry(None, TelemetryConfig(), max_iters=10)
    with pytest.raises(ProtocolError, match="unknown event kind 'stopped'"):
        tel.event("stopped", "a word nothing else knows")
    with pytest.raises(ValueError, match="unknown trainer state 'sleeping'"):
        tel.set_state("sleeping")
    tel.event("nan_skipped", "skipped a step", step=3, skipped=1, reason="loss is nan")


def test_status_carries_the_divergence_counters() -> None:
    tel = Telemetry(None, TelemetryConfig(), max_iters=10)
    assert (tel.latest_status()["skipped_steps"], tel.latest_status()["rollbacks"]) == (0, 0)
    tel.set_divergence(skipped_steps=4, rollbacks=1)
    tel.publish_status()
    status = tel.latest_status()
    assert (status["skipped_steps"], status["rollbacks"]) == (4, 1)
    encode_message("status", {**ENVELOPE, **status})


def test_validation_metric_space_is_rgb_or_y() -> None:
    fields = {**ENVELOPE, **example_fields("validation")}
    encode_message("validation", {**fields, "metric_space": "y"})
    with pytest.raises(ProtocolError, match="metric_space' must be one of rgb, y"):
        encode_message("validation", {**fields, "metric_space": "YUV"})


def test_the_mock_trainer_sends_only_the_real_event_kinds() -> None:
    with MockTrainer("words", status_hz=20, validate_s=0.1) as mock:
        sub = Subscriber(mock.pub_endpoint, topics=["event"])
        time.sleep(0.3)  # let the subscription reach the publisher
        with CommandClient(mock.rep_endpoint) as client:
            for command in ("pause", "resume", "validate", "save", "stop"):
                assert client.request(command)["ok"]
                time.sleep(0.15)
        kinds = []
        deadline = time.monotonic() + 5
        while "stopping" not in kinds and time.monotonic() < deadline:
            message = sub.recv(200)
            if message is not None:
                kinds.append(message[1]["kind"])
        sub.close()
    assert {"paused", "resumed", "validation_started", "checkpoint_saved", "stopping"} <= set(kinds)
    assert set(kinds) <= set(EVENTS)
