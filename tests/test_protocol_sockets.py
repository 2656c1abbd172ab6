"""Publisher/Subscriber and CommandServer/CommandClient over real zmq sockets."""

from __future__ import annotations

import itertools
import threading

import msgpack
import pytest
import zmq

from protocol import (
    CommandClient,
    CommandServer,
    CommandTimeout,
    EndpointError,
    ProtocolError,
    Publisher,
    Subscriber,
    decode_reply,
    example_fields,
)

_names = itertools.count()


def inproc() -> str:
    return f"inproc://protocol-test-{next(_names)}"


def first_message(pub: Publisher, sub: Subscriber, topic: str = "heartbeat") -> tuple[str, dict]:
    """Publish until the subscriber is connected (PUB/SUB drops what is sent before)."""
    for _ in range(200):
        pub.publish(topic, **example_fields(topic))
        message = sub.recv(10)
        if message is not None:
            return message
    raise AssertionError("subscriber never received a frame")


def drain_all(sub: Subscriber) -> list[tuple[str, dict]]:
    messages = []
    while (message := sub.recv(50)) is not None:
        messages.append(message)
    return messages


@pytest.fixture
def pair():
    endpoint = inproc()
    pub = Publisher(endpoint, "run-a")
    sub = Subscriber(endpoint)
    yield pub, sub
    sub.close()
    pub.close()


def test_published_frames_arrive_with_the_envelope_and_increasing_seq(pair) -> None:
    pub, sub = pair
    first_message(pub, sub)
    for topic in ("status", "event", "validation", "heartbeat"):
        assert pub.publish(topic, **example_fields(topic))
    received = drain_all(sub)
    assert [t for t, _ in received] == ["status", "event", "validation", "heartbeat"]
    seqs = [p["seq"] for _, p in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and seqs[-1] == pub.seq
    assert all(p["run"] == "run-a" and p["v"] == 1 and isinstance(p["ts"], float) for _, p in received)


def test_topics_filter_by_exact_name() -> None:
    endpoint = inproc()
    with Publisher(endpoint, "r") as pub, Subscriber(endpoint, topics=["status"]) as sub:
        first_message(pub, sub, "status")
        pub.publish("status_extra", note="prefix of nothing we asked for")
        pub.publish("event", **example_fields("event"))
        pub.publish("status", **example_fields("status"))
        assert [t for t, _ in drain_all(sub)] == ["status"]


def test_a_bad_topic_name_is_refused_before_subscribing() -> None:
    with pytest.raises(ProtocolError, match="topic must be"):
        Subscriber(inproc(), topics=["stätus"])


def test_an_invalid_payload_raises_and_does_not_use_a_seq(pair) -> None:
    pub, _ = pair
    with pytest.raises(ProtocolError, match="'iteration'"):
        pub.publish("heartbeat", state="training")
    with pytest.raises(ProtocolError, match="set by the publisher"):
        pub.publish("heartbeat", seq=5, **example_fields("heartbeat"))
    assert pub.seq == 0


def test_publisher_never_blocks_without_subscribers() -> None:
    with Publisher(inproc(), "r", hwm=100) as pub:
        for i in range(100_000):
            pub.publish("heartbeat", state="training", iteration=i)
        assert pub.sent + pub.dropped == 100_000 and pub.seq == 100_000


def test_publisher_never_blocks_on_a_subscriber_that_never_reads() -> None:
    with Publisher("tcp://127.0.0.1:*", "r", hwm=10) as pub:
        with Subscriber(pub.endpoint, hwm=10) as sub:
            first_message(pub, sub)
            for i in range(100_000):
                pub.publish("heartbeat", state="training", iteration=i)
            assert pub.sent + pub.dropped == pub.seq


def test_frames_lost_to_a_slow_subscriber_show_as_missed_seq() -> None:
    endpoint = inproc()
    with Publisher(endpoint, "r", hwm=10) as pub, Subscriber(endpoint, hwm=10) as sub:
        first = first_message(pub, sub)[1]["seq"]
        for i in range(1000):
            pub.publish("heartbeat", state="training", iteration=i)
        received = drain_all(sub)
        last = first_message(pub, sub)[1]["seq"]
        assert 0 < len(received) < 1000
        assert sub.missed == last - first - 1 - len(received) > 0


def test_publish_after_close_is_a_counted_drop_not_an_error() -> None:
    pub = Publisher(inproc(), "r")
    pub.close()
    assert pub.publish("heartbeat", **example_fields("heartbeat")) is False
    assert pub.dropped == 1


def test_a_bad_frame_raises_protocol_error_and_the_next_good_one_still_arrives() -> None:
    endpoint = inproc()
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.bind(endpoint)
    try:
        with Subscriber(endpoint) as sub:
            good = [b"heartbeat", msgpack.packb({"v": 1, "run": "r", "seq": 1, "ts": 1.0,
                                                 "state": "training", "iteration": 1})]
            while sub.recv(10) is None:
                raw.send_multipart(good)
            drain_all(sub)
            raw.send_multipart([b"status", b"\xc1garbage"])
            raw.send_multipart(good)
            with pytest.raises(ProtocolError, match="not valid msgpack"):
                sub.recv(1000)
            assert sub.recv(1000) == ("heartbeat", msgpack.unpackb(good[1]))
    finally:
        raw.close(linger=0)


def test_binding_a_busy_endpoint_says_so() -> None:
    endpoint = inproc()
    with Publisher(endpoint, "r"), pytest.raises(EndpointError, match=f"cannot bind {endpoint}"):
        Publisher(endpoint, "r")


# ---- commands -------------------------------------------------------------------------------

def failing_query(args: dict) -> dict:
    raise RuntimeError("disk on fire")


def reject_negative(args: dict) -> None:
    if isinstance(args.get("value"), (int, float)) and args["value"] < 0:
        raise ValueError("value must be >= 0")


@pytest.fixture
def server_and_client():
    status = {"status": {**example_fields("status"), "v": 1, "run": "r", "seq": 3, "ts": 1.0}}
    server = CommandServer(
        inproc(),
        queries={"status": lambda args: status, "echo": lambda args: {"echo": args},
                 "broken": failing_query, "checkpoints": lambda args: {"checkpoints": []}},
        validators={"set": reject_negative},
    ).start()
    client = CommandClient(server.endpoint, timeout_ms=2000, retries=0)
    yield server, client
    client.close()
    server.close()


def test_queries_are_answered_on_the_server_thread(server_and_client) -> None:
    server, client = server_and_client
    assert client.request("ping")["ok"] is True
    assert client.request("status")["status"]["iteration"] == 12345
    assert client.request("checkpoints") == {"v": 1, "ok": True, "checkpoints": []}
    assert server.drain() == []


def test_actions_are_queued_for_the_loop_in_order_with_ids(server_and_client) -> None:
    server, client = server_and_client
    first = client.request("pause")
    second = client.request("set", {"key": "train.lr", "value": 0.001})
    assert first["queued"] and second["queued"] and second["id"] > first["id"]
    drained = server.drain()
    assert [(c.name, c.args, c.id) for c in drained] == [
        ("pause", {}, first["id"]), ("set", {"key": "train.lr", "value": 0.001}, second["id"])]
    assert server.drain() == []


def test_a_validator_rejects_bad_action_args_without_queueing(server_and_client) -> None:
    server, client = server_and_client
    reply = client.request("set", {"key": "train.lr", "value": -1})
    assert reply["ok"] is False and "value must be >= 0" in reply["error"]
    assert server.drain() == []


def test_unknown_commands_and_failing_queries_get_ok_false_and_the_server_lives_on(
        server_and_client) -> None:
    _, client = server_and_client
    unknown = client.request("launch_rockets")
    assert unknown["ok"] is False and "unknown command 'launch_rockets'" in unknown["error"]
    broken = client.request("broken")
    assert broken["ok"] is False and "disk on fire" in broken["error"]
    assert client.request("ping")["ok"] is True


@pytest.mark.parametrize(
    ("frames", "says"),
    [
        ([b"\xc1"], "not valid msgpack"),
        ([b"not msgpack at all"], "not valid msgpack"),
        ([msgpack.packb([1, 2])], "must be a map"),
        ([msgpack.packb({"v": 9, "command": "ping"})], "unsupported protocol version 9"),
        ([msgpack.packb({"v": 1, "command": "ping"}), b"second"], "got 2 frames"),
        ([b"\x00" * (3 * 1024 * 1024)], "limit is"),
    ],
)
def test_the_server_survives_garbage_frames_and_says_why(server_and_client, frames, says) -> None:
    server, client = server_and_client
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        raw.send_multipart(frames)
        assert raw.poll(2000), "no reply to a garbage frame"
        reply = decode_reply(raw.recv())
        assert reply["ok"] is False and says in reply["error"]
    finally:
        raw.close()
    assert client.request("ping")["ok"] is True


def test_the_client_is_safe_to_share_between_threads(server_and_client) -> None:
    _, client = server_and_client
    mismatches: list[tuple[int, int]] = []

    def ask(worker: int) -> None:
        for i in range(20):
            echoed = client.request("echo", {"n": worker * 100 + i})["echo"]["n"]
            if echoed != worker * 100 + i:
                mismatches.append((worker * 100 + i, echoed))

    threads = [threading.Thread(target=ask, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []


def test_the_client_times_out_on_a_dead_server_and_recovers_when_it_returns() -> None:
    probe = CommandServer("tcp://127.0.0.1:*", queries={})
    endpoint = probe.endpoint
    probe.close()
    client = CommandClient(endpoint, timeout_ms=100, retries=1)
    try:
        with pytest.raises(CommandTimeout, match="after 2 tries of 100 ms"):
            client.request("ping")
        with CommandServer(endpoint, queries={}):
            client.timeout_ms = 2000
            assert client.request("ping")["ok"] is True
    finally:
        client.close()


def test_close_stops_the_server_thread() -> None:
    server = CommandServer(inproc(), queries={}).start()
    server.close()
    assert not server._thread.is_alive()
