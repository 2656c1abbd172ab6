"""The protocol's words are defined once (protocol.schemas) and every sender keeps to them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import msgpack
import pytest

import monitor
from monitor.mock import MockTrainer
from protocol import (
    ACTION_COMMANDS,
    ACTIONS,
    COMMANDS,
    EVENTS,
    QUERIES,
    QUERY_COMMANDS,
    SIMPLE_ACTIONS,
    CommandClient,
    CommandName,
    ProtocolError,
    Subscriber,
    check_event,
    decode_message,
    encode_message,
    example_fields,
)
from tests.net_support import free_port
from tests.trainer_support import make_trainer
from trainer.config import TelemetryConfig, load_config
from trainer.report.control import Action
from trainer.report.reporting import Reporting
from trainer.report.telemetry import Telemetry
from trainer.train.loop import RunOptions

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


# Args for each action, where it takes any
ACTION_ARGS = {CommandName.SET: {"key": "train.val_every", "value": 7}}


def test_every_command_has_a_name_and_is_a_query_or_an_action_never_both() -> None:
    assert set(CommandName) == set(COMMANDS) == set(QUERY_COMMANDS) | set(ACTION_COMMANDS)
    assert not set(QUERIES) & set(ACTIONS) and COMMANDS == {**QUERIES, **ACTIONS}


def test_the_trainer_handles_every_action(tmp_path) -> None:
    trainer = make_trainer(tmp_path / "run")
    try:
        assert set(trainer.handlers) == set(ACTION_COMMANDS)
        last = [trainer._apply(Action(name, ACTION_ARGS.get(name, {}))) for name in ACTION_COMMANDS]
        assert last == [name == CommandName.STOP for name in ACTION_COMMANDS]  # only `stop` stops
        assert trainer.cfg.train.val_every == 7
    finally:
        trainer.setup.close()


def test_the_trainer_answers_every_command_on_its_socket(tmp_path) -> None:
    cfg, rep = load_config(), f"tcp://127.0.0.1:{free_port()}"
    opts = RunOptions(run_dir=tmp_path / "run", pub=None, rep=rep, interactive=False, console=False)
    report = Reporting(cfg, opts, main=True, get_cfg=lambda: cfg)
    try:
        with CommandClient(rep) as client:
            for name in COMMANDS:
                reply = client.request(name, ACTION_ARGS.get(name))
                assert reply["ok"], (name, reply)
        assert [a.name for a in report.controller.drain()] == list(ACTION_COMMANDS)  # queued for the loop
    finally:
        report.close()


def test_the_mock_trainer_answers_and_handles_every_command() -> None:
    with MockTrainer("every-command", status_hz=50) as mock:
        assert set(mock.handlers) == set(ACTION_COMMANDS)
        with CommandClient(mock.rep_endpoint) as client:
            for name in [*QUERY_COMMANDS, *(a for a in ACTION_COMMANDS if a != CommandName.STOP), CommandName.STOP]:
                reply = client.request(name, ACTION_ARGS.get(name))
                assert reply["ok"], (name, reply)
        assert mock.stopped.wait(5)  # its loop ran every handler up to `stop` (a missing one kills it first)


def _dashboard_commands() -> dict[str, str]:
    """Every command name the dashboard's buttons send: `data-command` attributes, what the scripts
    assign to `dataset.command` and compare `command` with; name -> file."""
    found: dict[str, str] = {}
    static = Path(monitor.__file__).parent / "static"
    for path in sorted(static.glob("*.html")) + sorted(static.glob("*.js")):
        text = path.read_text()
        names = re.findall(r'data-command="([^"]*)"', text) + re.findall(r'command\s*===?\s*"([^"]*)"', text)
        for assigned in re.findall(r"dataset\.command\s*=\s*([^;\n]+)", text):
            names += re.findall(r'"([^"]*)"', assigned)
        found.update(dict.fromkeys(names, path.name))
    return found


def test_every_dashboard_button_names_an_action_the_monitor_forwards() -> None:
    found = _dashboard_commands()
    assert {"validate", "pause", "resume", "save", "stop"} <= set(found)  # the parse sees the buttons
    assert {name: where for name, where in found.items() if name not in SIMPLE_ACTIONS} == {}
