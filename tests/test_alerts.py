"""Alerts: when each kind is raised (monitor.watch, frames as the trainer sends them, a fake clock), and
their delivery to a real HTTP receiver on 127.0.0.1 (monitor.notify: retries, redirects, dead receivers,
secrets kept out of the logs)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from monitor.alerts import DEFAULT_NOTIFY_ON, KINDS, Alert, check_url, parse_kinds
from monitor.notify import Notifier
from monitor.watch import Watcher
from tests.monitor_support import frame
from tests.net_support import free_port
from tests.webhook_support import Receiver

S = 10.0  # --stall-after in these tests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(seq: int, state: str = "training", iteration: int | None = None, best: float | None = None) -> dict:
    return frame(seq, iteration=seq if iteration is None else iteration, state=state, best_score=best,
                 max_iterations=100)


def event(seq: int, kind: str, **data: object) -> dict:
    return frame(seq, kind=kind, message=f"{kind} at {seq}", data={"step": seq, **data})


def heartbeat(seq: int, state: str = "training") -> dict:
    return frame(seq, state=state, iteration=seq)


def feed(w: Watcher, *frames: tuple[str, dict]) -> list[str]:
    return [a.kind for topic, payload in frames for a in w.frame("r1", topic, payload)]


def test_a_run_that_starts_and_finishes_raises_started_then_finished_once_each() -> None:
    clock = Clock()
    w = Watcher(S, clock=clock)
    kinds = feed(w, ("heartbeat", heartbeat(1, "loading")), ("event", event(2, "started")),
                 ("status", status(3)), ("heartbeat", heartbeat(4)), ("event", event(5, "finished")),
                 ("status", status(6, "stopped")), ("heartbeat", heartbeat(7, "stopped")))
    assert kinds == ["started", "finished"]
    clock.now += 10 * S
    assert w.tick() == []  # a finished run is silent, not stalled


def test_stop_gives_stopped_and_an_exit_without_finished_or_stopping_gives_failed() -> None:
    w = Watcher(S, clock=Clock())
    assert feed(w, ("event", event(1, "started")), ("event", event(2, "stopping")),
                ("status", status(3, "stopping")), ("status", status(4, "stopped"))) == ["started", "stopped"]
    w = Watcher(S, clock=Clock())
    assert feed(w, ("event", event(1, "started")), ("status", status(2)),
                ("status", status(3, "stopped"))) == ["started", "failed"]


def test_a_fatal_error_fails_the_run_once_and_a_harmless_error_does_not() -> None:
    w = Watcher(S, clock=Clock())
    kinds = feed(w, ("event", event(1, "started")), ("event", event(2, "error")),
                 ("event", event(3, "error", fatal=True)), ("status", status(4, "stopped")))
    assert kinds == ["started", "failed"]
    w = Watcher(S, clock=Clock())
    w.frame("r1", "event", event(1, "started"))
    (failed,) = w.frame("r1", "event", event(9, "error", fatal=True))
    assert failed.text == "r1 failed at iteration 9: error at 9" and failed.iteration == 9


def test_each_rollback_is_one_diverged_alert_naming_where_it_went_back_to() -> None:
    w = Watcher(S, clock=Clock())
    w.frame("r1", "event", event(1, "started"))
    alerts = w.frame("r1", "event", event(40, "diverged", restore_step=30))
    assert [a.kind for a in alerts] == ["diverged"] and "30" in alerts[0].text and alerts[0].iteration == 40


def test_silence_is_stalled_once_and_the_next_frame_is_alive() -> None:
    clock = Clock()
    w = Watcher(S, clock=clock)
    feed(w, ("event", event(1, "started")), ("status", status(2)))
    clock.now += S - 0.1
    assert w.tick() == []
    clock.now += 0.2
    stalled = w.tick()
    assert [a.kind for a in stalled] == ["stalled"] and stalled[0].iteration == 2
    clock.now += 5 * S
    assert w.tick() == []  # one alert per occurrence
    assert feed(w, ("heartbeat", heartbeat(3))) == ["alive"]


def test_a_paused_run_that_keeps_sending_heartbeats_is_not_stalled() -> None:
    clock = Clock()
    w = Watcher(S, clock=clock)
    feed(w, ("event", event(1, "started")), ("event", event(2, "paused")))
    for seq in range(3, 3 + int(4 * S)):
        clock.now += 1.0
        assert feed(w, ("heartbeat", heartbeat(seq, "paused"))) == []
        assert w.tick() == []


def test_a_flapping_link_sends_at_most_one_stalled_alive_pair_per_stall_after() -> None:
    clock = Clock()
    w = Watcher(S, clock=clock)
    feed(w, ("event", event(1, "started")))
    seen: list[tuple[float, str]] = []
    for seq in range(2, 400):  # silences of 0.3 S .. 1.5 S between single frames, checked every 0.1 S
        for _ in range(int(3 + 12 * (seq % 5) / 4)):
            clock.now += 0.1 * S
            seen += [(clock.now, a.kind) for a in w.tick()]
        seen += [(clock.now, a.kind) for a in w.frame("r1", "heartbeat", heartbeat(seq))]
    stalled = [t for t, kind in seen if kind == "stalled"]
    assert len(stalled) > 10 and [k for _, k in seen] == ["stalled", "alive"] * len(stalled)
    assert min(b - a for a, b in zip(stalled, stalled[1:], strict=False)) >= S


def test_stopping_then_silence_is_stopped_not_stalled() -> None:
    clock = Clock()
    w = Watcher(S, clock=clock)
    feed(w, ("event", event(1, "started")), ("event", event(2, "stopping")))
    clock.now += S + 1
    assert [a.kind for a in w.tick()] == ["stopped"]


def test_a_restarted_monitor_does_not_repeat_started_but_a_run_resumed_after_its_end_starts_again() -> None:
    running = Watcher(S, clock=Clock(), last_kinds={"r1": "started"})
    assert feed(running, ("status", status(50)), ("status", status(51))) == []
    ended = Watcher(S, clock=Clock(), last_kinds={"r1": "finished"})
    assert feed(ended, ("heartbeat", heartbeat(1, "loading")), ("status", status(2))) == ["started"]
    silent = Watcher(S, clock=Clock(), last_kinds={"r1": "stalled"})
    assert feed(silent, ("status", status(60))) == ["alive"]


def test_new_best_when_the_best_score_rises_but_not_for_the_first_one_a_monitor_sees() -> None:
    w = Watcher(S, clock=Clock())
    kinds = feed(w, ("status", status(1, best=0.5)), ("status", status(2, best=0.5)),
                 ("status", status(3, best=0.6)), ("status", status(4, best=None)))
    assert kinds == ["started", "new_best"]


def test_notify_on_takes_known_kinds_and_refuses_others_in_one_line() -> None:
    assert parse_kinds("failed, stalled,failed") == ("failed", "stalled")
    assert "new_best" not in DEFAULT_NOTIFY_ON and set(DEFAULT_NOTIFY_ON) | {"new_best"} == set(KINDS)
    with pytest.raises(ValueError, match="unknown kind.*bogus") as info:
        parse_kinds("failed,bogus")
    assert "\n" not in str(info.value)


# ---- delivery -------------------------------------------------------------------

SECRET = "T000/B000/XXXXsecretXXXX"


def alert(kind: str = "finished") -> Alert:
    return Alert(kind, "run-id", "default@box", "default@box finished at iteration 6", 6)


def deliver(urls: list[str], *alerts: Alert, **kw: object) -> list[tuple[str, str, int]]:
    """Send `alerts` through a Notifier on its own loop; the (kind, delivery, tries) results."""
    results: list[tuple[str, str, int]] = []

    async def run() -> None:
        notifier = Notifier(urls, on_result=lambda a, d, t: results.append((a.kind, d, t)), **kw)
        await notifier.start()
        for a in alerts:
            notifier.send(a)
        for _ in range(1000):
            if len(results) == len(alerts):
                break
            await asyncio.sleep(0.01)
        await notifier.stop()

    asyncio.run(run())
    return results


def test_a_receiver_that_answers_500_three_times_then_200_gets_one_delivered_alert() -> None:
    with Receiver([500, 500, 500]) as receiver:
        results = deliver([receiver.url], alert(), backoff_s=0.01)
    assert results == [("finished", "delivered", 4)]
    bodies = receiver.bodies()
    assert len(bodies) == 4 and all(b == bodies[0] for b in bodies)


def test_the_body_carries_text_and_content_for_slack_and_discord_and_the_dashboard_url() -> None:
    with Receiver() as receiver:
        deliver([receiver.url], alert(), public_url="https://mon.example.org/")
    (body,) = receiver.bodies()
    assert set(body) == {"kind", "run", "title", "text", "content", "iteration", "ts", "url"}
    assert body["text"] == body["content"] == "default@box finished at iteration 6"
    assert body["kind"] == "finished" and body["run"] == "default@box" and body["iteration"] == 6
    assert isinstance(body["ts"], float) and body["url"] == "https://mon.example.org/?run=run-id"


def test_a_redirect_is_not_followed_and_fails_at_once_with_one_line_naming_the_host_only(caplog) -> None:
    with Receiver([302]) as receiver, caplog.at_level(logging.WARNING, logger="monitor"):
        results = deliver([receiver.url + "/" + SECRET], alert(), backoff_s=0.01)
    assert results == [("finished", "failed", 1)]
    assert [p for _, p, _ in receiver.posts] == ["/hook/" + SECRET]  # /elsewhere never asked for
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{receiver.port}" in line and "302" in line and SECRET not in line


def test_a_receiver_that_is_down_is_tried_several_times_then_given_up_with_one_line(caplog) -> None:
    url = f"http://127.0.0.1:{free_port()}/{SECRET}"
    with caplog.at_level(logging.DEBUG):
        results = deliver([url], alert(), backoff_s=0.01, tries=5)
    assert results == [("finished", "failed", 5)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "after 5 tries" in warnings[0]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_two_receivers_each_get_the_alert_and_one_down_marks_it_failed() -> None:
    with Receiver() as good:
        results = deliver([good.url, f"http://127.0.0.1:{free_port()}/x"], alert(), backoff_s=0.01, tries=2)
    assert results == [("finished", "failed", 2)] and good.kinds() == ["finished"]


@pytest.mark.parametrize("url", ["ftp://hooks.example.org/" + SECRET, "hooks.slack.com/services/" + SECRET,
                                 "https:///" + SECRET, "http://host:port/" + SECRET, "mailto:" + SECRET,
                                 "https://exa mple.org/" + SECRET, "https://example.org/\n" + SECRET])
def test_a_bad_url_is_refused_in_one_line_that_does_not_show_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        check_url(url)
    message = str(info.value)
    assert "http:// or https://" in message and SECRET not in message and "\n" not in message
    assert check_url("https://hooks.slack.com/services/" + SECRET).endswith(SECRET)


def test_notify_urls_come_from_vsrpp_notify_and_the_flags_and_stay_out_of_the_config_repr(monkeypatch) -> None:
    from monitor.__main__ import config_from, parse_args

    monkeypatch.setenv("VSRPP_NOTIFY", "https://a.example/" + SECRET + ", https://b.example/y")
    args = parse_args(["--notify", "https://c.example/z", "--notify-on", "failed,stalled", "--stall-after", "30",
                       "--db", ":memory:"])
    alerts = config_from(args).alerts
    assert alerts.notify == ("https://a.example/" + SECRET, "https://b.example/y", "https://c.example/z")
    assert alerts.notify_on == ("failed", "stalled") and alerts.stall_after_s == 30
    assert SECRET not in repr(config_from(args))
