"""The dashboard in headless Chromium against a real monitor (uvicorn) and MockTrainers.

Screenshots go to test-artifacts/. Never downloads a browser: uses /usr/bin/chromium,
skipped when it is missing, except under CI where that is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.mock import MockTrainer
from tests.browser_support import chromium, require_chromium, screenshot, serving
from tests.net_support import wait_until

pytestmark = pytest.mark.browser
sync_api = require_chromium()
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def mocks() -> list[MockTrainer]:
    return [MockTrainer("demo", status_hz=10, speed=40, validate_s=1.5).start(),
            MockTrainer(EVIL, status_hz=5, speed=10).start()]


@pytest.fixture(scope="module")
def url(mocks: list[MockTrainer]) -> Iterator[str]:
    with serving(mocks) as address:
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(sync_api) as b:
        yield b


@pytest.fixture
def page(browser: Any, url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    size = getattr(request, "param", (1280, 900))
    pg = browser.new_page(viewport={"width": size[0], "height": size[1]})
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.goto(url)
    pg.wait_for_selector("#run-select option[value='demo']", state="attached")
    pg.select_option("#run-select", "demo")
    wait_until(lambda: pg.text_content("#run-name") == "demo" and iteration(pg) > 0, what="live status")
    yield pg
    screenshot(pg, request.node.name)
    pg.close()


def iteration(pg: Any) -> int:
    return int(pg.text_content("#m-iteration").replace(",", ""))


def test_iteration_updates_live_without_reload(page: Any) -> None:
    first = iteration(page)
    wait_until(lambda: iteration(page) > first, what="a higher iteration")
    assert page.is_visible("#badge-training") and not page.is_visible("#badge-offline")


def test_trigger_validation_turns_the_badge_orange(page: Any) -> None:
    page.click("#btn-validate")
    page.wait_for_selector("#badge-validating", state="visible")
    color = page.eval_on_selector("#badge-validating", "e => getComputedStyle(e).color")
    assert color == "rgb(243, 156, 18)"
    page.wait_for_selector("#val-image", state="visible", timeout=10_000)


def test_pause_stops_the_count_and_resume_restarts_it(page: Any) -> None:
    page.click("#btn-pause")
    page.wait_for_selector("#badge-paused", state="visible")
    held = iteration(page)
    time.sleep(0.6)
    assert iteration(page) == held
    assert page.text_content("#btn-pause") == "Resume"
    page.click("#btn-pause")
    wait_until(lambda: iteration(page) > held, what="iterations after resume")


@pytest.mark.parametrize("page", [(390, 844)], indirect=True)
def test_nothing_overflows_at_phone_width(page: Any) -> None:
    page.wait_for_selector("#chart-loss .uplot")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_hostile_run_name_is_shown_as_text_and_runs_no_script(page: Any) -> None:
    page.select_option("#run-select", label=EVIL)
    wait_until(lambda: page.text_content("#run-name") == EVIL, what="the hostile run selected")
    assert page.locator("img[src='x']").count() == 0
    assert EVIL in page.text_content("#runs-table")
    assert page.dialogs == []


def test_token_opened_once_in_the_url_is_kept_for_actions_and_hidden(browser: Any) -> None:
    with serving([MockTrainer("secured", status_hz=10).start()], token="tok123") as address:
        with_token = browser.new_page()
        with_token.goto(address + "?token=tok123")
        wait_until(lambda: with_token.is_enabled("#btn-save"), what="controls enabled")
        assert "tok123" not in with_token.url
        with_token.click("#btn-save")
        wait_until(lambda: with_token.text_content("#action-msg") == "save: accepted", what="accepted save")
        without = browser.new_context().new_page()
        without.goto(address)
        wait_until(lambda: without.is_enabled("#btn-save"), what="controls enabled")
        without.click("#btn-save")
        wait_until(lambda: "token" in without.text_content("#action-msg"), what="token refusal")
        with_token.close()
        without.context.close()


def test_a_red_badge_counts_skipped_steps_and_rollbacks(page: Any, mocks: list[MockTrainer]) -> None:
    assert not page.is_visible("#badge-diverged")
    mocks[0].diverge(3, rollback=True)
    page.wait_for_selector("#badge-diverged", state="visible")
    wait_until(lambda: page.text_content("#badge-diverged") == "NaN: 3 steps skipped · 1 rollback",
               what="the counts on the badge")
    color = page.eval_on_selector("#badge-diverged", "e => getComputedStyle(e).borderColor")
    assert color == "rgb(231, 76, 60)"
    assert page.text_content("#events .kind.alert") in ("nan_skipped", "diverged", "recovered")


def test_the_latest_validation_says_where_psnr_and_ssim_were_measured(page: Any) -> None:
    page.click("#btn-validate")
    wait_until(lambda: page.is_visible("#val-space"), 10, what="a validation")
    assert page.text_content("#val-space") == "PSNR/SSIM on RGB"
