"""`python -m protocol send|watch|keys` as a user runs it, against real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from protocol import CommandServer, Publisher, encode_message, example_fields
from protocol.__main__ import main


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "protocol", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server() -> Iterator[CommandServer]:
    queries = {"status": lambda args: {"status": {"iteration": 7}}}
    with CommandServer("tcp://127.0.0.1:*", queries=queries) as srv:
        yield srv


def test_send_prints_the_reply_as_json_and_exits_zero(server: CommandServer) -> None:
    result = cli("send", "status", "--rep", server.endpoint)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"v": 1, "ok": True, "status": {"iteration": 7}}


def test_send_passes_args_read_as_json_values(server: CommandServer) -> None:
    result = cli("send", "set", "--arg", "key=train.lr", "--arg", "value=0.001", "--rep", server.endpoint)
    assert result.returncode == 0, result.stderr
    assert [(c.name, c.args) for c in server.drain()] == [("set", {"key": "train.lr", "value": 0.001})]


def test_send_exits_nonzero_with_the_error_when_the_trainer_says_no(server: CommandServer) -> None:
    result = cli("send", "launch", "--rep", server.endpoint)
    assert result.returncode == 1
    assert json.loads(result.stdout)["ok"] is False
    assert "unknown command 'launch'" in result.stderr


def test_send_to_nobody_times_out_with_a_message(capsys) -> None:
    probe = CommandServer("tcp://127.0.0.1:*", queries={})
    probe.close()
    assert main(["send", "ping", "--rep", probe.endpoint, "--timeout", "0.2", "--retries", "0"]) == 3
    out, err = capsys.readouterr()
    assert "no reply from" in err and out == ""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["send", "ping", "--arg", "novalue"], "expected KEY=VALUE"),
        (["send", "ping", "--timeout", "-1"], "positive number"),
        (["watch", "--count", "x"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_gets_a_clear_error_and_exit_status_2(capsys, args: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and says in capsys.readouterr().err


def test_a_missing_key_folder_is_named_without_a_traceback(capsys, tmp_path: Path) -> None:
    assert main(["send", "ping", "--keys", str(tmp_path / "nokeys")]) == 2
    assert "does not exist" in capsys.readouterr().err


def repeat_until(stop: threading.Event, send: Callable[[], object]) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(0.02):
            send()

    thread = threading.Thread(target=loop)
    thread.start()
    return thread


@pytest.fixture
def publishing() -> Iterator[Publisher]:
    stop = threading.Event()
    with Publisher("tcp://127.0.0.1:*", "cli-run") as pub:
        def send() -> None:
            pub.publish("status", **example_fields("status"))
            pub.publish("validation", **{**example_fields("validation"), "image": b"\x89PNG...."})

        thread = repeat_until(stop, send)
        yield pub
        stop.set()
        thread.join()


def test_watch_prints_frames_as_json_lines_with_bytes_as_sizes(publishing: Publisher) -> None:
    result = cli("watch", "--pub", publishing.endpoint, "--topic", "validation", "--count", "2",
                 "--timeout", "20")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and {line["topic"] for line in lines} == {"validation"}
    assert lines[0]["payload"]["image"] == {"bytes": 8} and lines[0]["payload"]["run"] == "cli-run"


def test_watch_reports_bad_frames_on_stderr_and_goes_on() -> None:
    envelope = {"v": 1, "run": "r", "seq": 1, "ts": 1.0}
    good = encode_message("heartbeat", {**envelope, **example_fields("heartbeat")})
    raw = zmq.Context.instance().socket(zmq.PUB)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()
    thread = repeat_until(stop, lambda: (raw.send_multipart([b"status", b"\xc1not msgpack"]),
                                         raw.send_multipart(good)))
    try:
        result = cli("watch", "--pub", f"tcp://127.0.0.1:{port}", "--count", "1", "--timeout", "20")
    finally:
        stop.set()
        thread.join()
        raw.close(linger=0)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["topic"] == "heartbeat"
    assert "bad frame skipped" in result.stderr and "not valid msgpack" in result.stderr


def test_keys_makes_a_key_folder_once(capsys, tmp_path: Path) -> None:
    assert main(["keys", str(tmp_path / "k")]) == 0
    assert (tmp_path / "k" / "authorized" / "client.key").is_file()
    assert main(["keys", str(tmp_path / "k")]) == 2
    assert "already holds" in capsys.readouterr().err
