"""Every run's story in a real browser: a run from last week (kept only in the monitor's SQLite file,
its trainer long gone) overlaid on a live one, a validation picked on the chart and by the slider,
finer points fetched on zoom. Headless /usr/bin/chromium; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.mock import MockTrainer, comparison_png
from monitor.store import KEEP_IMAGES
from tests.browser_support import chromium, require_chromium, screenshot, serving
from tests.net_support import wait_until

pytestmark = pytest.mark.browser
sync_api = require_chromium()

OLD, LIVE, IMPORTED = "last-week", "today", "imported@gpu7"
SPIKE_STEP, SPIKE = 61_237, 40.0  # one step's loss, between two records of an imported run
VAL_EVERY = 900  # its validations: 900, 1800, ... 91,800
PAST_STATES = ("finished", "stopped", "failed", "lost")
RELEASED = "basicvsrpp_reds4.pth"


class FineTune(MockTrainer):
    """A mock run fine-tuned from a released model: its status says so (`init_from`)."""

    def status(self) -> dict[str, Any]:
        return {**super().status(), "init_from": RELEASED}


def get(address: str, path: str, **params: Any) -> Any:
    with urllib.request.urlopen(f"{address}{path}?{urllib.parse.urlencode(params)}", timeout=5) as res:
        return json.load(res)


def stored_validations(address: str, run: str) -> int:
    """How many validations the monitor has of `run` (0 before it has heard of it)."""
    try:
        return len(get(address, "api/history.json", run=run)["validations"])
    except urllib.error.HTTPError:
        return 0


def state_of(address: str, run: str) -> str | None:
    return next((r["state"] for r in get(address, "api/runs")["runs"] if r["id"] == run), None)


def stop(address: str, run: str) -> None:
    body = json.dumps({"command": "stop", "run": run}).encode()
    req = urllib.request.Request(address + "api/action", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as res:
        assert json.load(res)["ok"]


def plot(page: Any, chart: str, script: str) -> Any:
    """Evaluate `script` (a function of the chart's uPlot instance `u`) in the page."""
    return page.evaluate(f"() => {{ const u = VsrDashboard.charts.plot({chart!r}); return u && ({script})(u); }}")


def write_run_folder(folder: Path) -> None:
    """A finished run of 100,000 steps as the trainer leaves it, copied from another machine: a `train`
    record every 5 steps (20,000), one step between two of them spiking to SPIKE, and KEEP_IMAGES + 2
    validations, the first the best: the monitor keeps the images of that one and the last KEEP_IMAGES."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"id": uuid.uuid4().hex, "name": "imported", "host": "gpu7",
                                                 "created": 1.7e9}))
    lines = []
    for step in range(5, 100_001, 5):
        loss = 0.02 + 0.3 * math.exp(-step / 25_000)
        top = SPIKE if step - 5 < SPIKE_STEP <= step else loss * 1.05
        lines.append({"kind": "train", "step": step, "ts": 1.7e9 + step / 10, "loss": loss, "lr": 1e-4,
                      "iter_speed": 10.0, "gpu_memory": 7.8, "loss_min": loss * 0.95, "loss_max": top})
    for k in range(KEEP_IMAGES + 2):
        step = VAL_EVERY * (k + 1)
        lines.append({"kind": "val", "step": step, "ts": 1.7e9 + step / 10, "psnr": 30.0 - k / 100, "ssim": 0.8,
                      "quality": 0.6 - k / 1000, "baseline_psnr": 24.0, "baseline_ssim": 0.75, "baseline_quality": 0.3})
        images = folder / "validation" / f"step_{step:07d}"
        images.mkdir(parents=True)
        (images / "val_000.png").write_bytes(comparison_png(step))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "training.log").write_text("2026-11-30 10:00:00 started\n2026-12-01 10:00:00 finished training\n")


@pytest.fixture(scope="module")
def stored_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A monitor's SQLite file holding one run that validated three times and was stopped, and one
    imported from its run folder (`python -m monitor import`)."""
    tmp = tmp_path_factory.mktemp("monitor")
    db = str(tmp / "monitor.sqlite")
    write_run_folder(tmp / "imported")
    subprocess.run([sys.executable, "-m", "monitor", "import", str(tmp / "imported"), "--db", db], check=True,
                   capture_output=True, timeout=120)
    old = MockTrainer(OLD, status_hz=20, speed=400, validate_every=500, validate_s=0.05)
    with serving([old.start()], db=db, offline_after_s=1.0) as address:
        wait_until(lambda: stored_validations(address, OLD) >= 3, 30, "three validations stored", every=0.3)
        stop(address, OLD)
        wait_until(lambda: old.stopped.is_set(), what="the old trainer stopping")
        wait_until(lambda: state_of(address, OLD) in PAST_STATES, what="the run ended", every=0.3)
    return db, OLD  # a trainer without a run id is known by its run name


@pytest.fixture(scope="module")
def address(stored_db: tuple[str, str]) -> Iterator[str]:
    """A new monitor on that file, following a live trainer that validates every 100 steps."""
    live = FineTune(LIVE, status_hz=10, speed=60, validate_every=100, validate_s=0.05).start()
    with serving([live], db=stored_db[0]) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(sync_api) as b:
        yield b


def open_page(browser: Any, address: str, width: int, height: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.errors, page.requests = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append((r.method, r.url)))
    page.goto(address)
    page.wait_for_selector(f"#runs-table tbody tr:has-text('{OLD}')")
    page.select_option("#run-select", label=LIVE)
    return page


@pytest.fixture
def page(browser: Any, address: str) -> Iterator[Any]:
    pg = open_page(browser, address, 1280, 900)
    yield pg
    assert pg.errors == [] and only_reads(pg)
    pg.close()


def drawn_runs(page: Any, chart: str) -> dict[str, int]:
    """Series label -> how many points it draws, for the runs' own series on `chart`."""
    return plot(page, chart, "(u) => Object.fromEntries(u.series.slice(1).filter((s) => s.label !== 'max' "
                             "&& s.label !== 'min').map((s, i) => [s.label, u.data[u.series.indexOf(s)]"
                             ".filter((v) => v != null).length]))") or {}


def tick(page: Any, name: str) -> None:
    page.check(f"#runs-table tbody tr:has-text('{name}') input[type=checkbox]")


def test_a_stopped_run_stays_listed_with_its_state_iteration_best_and_times(page: Any) -> None:
    row = page.locator(f"#runs-table tbody tr:has-text('{OLD}')")
    cells = row.locator("td").all_text_contents()
    assert cells[2] in PAST_STATES
    assert int(cells[3].split("/")[0].replace(",", "")) >= 1500
    assert cells[4].endswith("%") and cells[5] != "–" and cells[6] not in ("–", "running") and cells[7] != "–"


def test_an_imported_run_of_100k_steps_keeps_its_one_step_spike_on_the_loss_band(page: Any) -> None:
    page.click(f"#runs-table tbody tr:has-text('{IMPORTED}') td.name")
    wait_until(lambda: page.text_content("#run-name") == IMPORTED, what="the imported run shown")
    assert page.text_content("#run-state") == "finished" and not page.is_enabled("#btn-stop")
    band = "(u) => { const hi = u.series.findIndex((s) => s.label === 'max'); " \
           "return [u.data[0].length, Math.max(...u.data[hi].filter((v) => v != null)), u.scales.y.max]; }"
    wait_until(lambda: (plot(page, "chart-loss", band) or [0])[0] > 500, what="the whole run drawn")
    points, top, y_max = plot(page, "chart-loss", band)
    assert points <= 2000 and top == SPIKE and y_max >= SPIKE  # 20,000 records thinned, the spike kept
    last = VAL_EVERY * (KEEP_IMAGES + 2)
    wait_until(lambda: f"iteration {last:,} (latest)" in page.text_content("#val-iter"), what="its last validation")
    page.wait_for_selector("#val-image", state="visible")
    assert page.eval_on_selector("#val-image", "(e) => e.naturalWidth") > 0


def test_a_validation_whose_image_was_not_kept_says_so(page: Any) -> None:
    page.click(f"#runs-table tbody tr:has-text('{IMPORTED}') td.name")
    wait_until(lambda: page.eval_on_selector("#val-step", "(e) => e.max") == str(KEEP_IMAGES + 1), what="the slider")
    page.eval_on_selector("#val-step", "(e) => { e.value = '1'; e.dispatchEvent(new Event('input')); }")
    wait_until(lambda: "not kept" in page.text_content("#val-note"), what="the note")  # neither best nor recent
    assert not page.is_visible("#val-image") and "30.00 dB" not in page.text_content("#val-table")
    page.eval_on_selector("#val-step", "(e) => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
    page.wait_for_selector("#val-image", state="visible")  # the best one's image is kept
    assert "30.00 dB" in page.text_content("#val-table") and page.text_content("#val-note") == ""


def test_a_fine_tuned_run_names_the_model_it_started_from(page: Any) -> None:
    origin = f"fine-tuned from {RELEASED}"
    page.wait_for_selector(f"#runs-table tbody tr:has-text('{LIVE}') .origin:has-text('{origin}')")
    assert page.text_content("#run-origin") == origin
    assert page.text_content(f"#runs-table tbody tr:has-text('{OLD}') .origin") == ""


def test_a_stored_run_and_a_live_one_are_drawn_together_with_their_bands(page: Any) -> None:
    wait_until(lambda: drawn_runs(page, "chart-loss").get("smoothed", 0) > 3, what="the live run's loss")
    tick(page, OLD)
    wait_until(lambda: all(n > 3 for n in drawn_runs(page, "chart-loss").values())
               and set(drawn_runs(page, "chart-loss")) == {LIVE, OLD}, what="both runs on the loss chart")
    wait_until(lambda: set(drawn_runs(page, "chart-val")) == {LIVE, OLD}
               and all(n >= 1 for n in drawn_runs(page, "chart-val").values()), what="both on the validation chart")
    assert plot(page, "chart-loss", "(u) => u.bands.length") == 2  # a loss_min..loss_max band per run
    legend = page.locator("#chart-loss .u-legend .u-series:visible").all_text_contents()
    assert any(LIVE in t for t in legend) and any(OLD in t for t in legend)
    screenshot(page, "history-overlay-laptop")


def test_clicking_a_validation_point_shows_its_image_and_metrics(page: Any, address: str,
                                                                 stored_db: tuple[str, str]) -> None:
    run_id = stored_db[1]
    tick(page, OLD)
    wait_until(lambda: drawn_runs(page, "chart-val").get(OLD, 0) >= 3, what="the old run's validations")
    target = plot(page, "chart-val", f"""(u) => {{
        const s = u.series.findIndex((x) => x.label === {OLD!r}), j = u.data[s].findIndex((v) => v != null);
        const box = u.over.getBoundingClientRect();
        return {{ iteration: u.data[0][j], x: box.left + u.valToPos(u.data[0][j], "x"),
                  y: box.top + u.valToPos(u.data[s][j], "y") }}; }}""")
    expected = get(address, "api/validation", run=run_id, iteration=target["iteration"])
    image = f"/api/validation.png?run={run_id}&iteration={target['iteration']}"
    with page.expect_response(lambda r: image in r.url and r.status == 200):
        page.mouse.click(target["x"], target["y"])
    wait_until(lambda: f"{expected['psnr']:.2f} dB" in page.text_content("#val-table"), what="its metrics shown")
    assert page.text_content("#val-run") == OLD
    assert page.is_visible("#val-image") and page.is_visible("#val-latest")
    # the step slider walks the same run's validations
    later = get(address, "api/history.json", run=run_id)["validations"][1]["iteration"]
    with page.expect_response(lambda r: f"run={run_id}&iteration={later}" in r.url and "validation.png" in r.url):
        page.eval_on_selector("#val-step", "(e) => { e.value = '1'; e.dispatchEvent(new Event('input')); }")
    wait_until(lambda: f"iteration {later:,}" in page.text_content("#val-iter"), what="the slider's step")


def test_zooming_the_loss_chart_fetches_finer_points_for_the_range(page: Any, stored_db: tuple[str, str]) -> None:
    tick(page, OLD)
    wait_until(lambda: drawn_runs(page, "chart-loss").get(OLD, 0) > 3, what="the old run's loss")
    box = page.locator("#chart-loss .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/api/history.json" in r.url and f"run={stored_db[1]}" in r.url
                             and "from=" in r.url and "to=" in r.url) as asked:
        page.mouse.move(box["x"] + box["width"] * 0.2, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
        page.mouse.up()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(asked.value.url).query)
    first, last = int(query["from"][0]), int(query["to"][0])
    assert 0 < first < last
    lr_range = "(u) => [Math.round(u.scales.x.min), Math.round(u.scales.x.max)]"
    wait_until(lambda: plot(page, "chart-lr", lr_range) == [first, last], what="the LR chart zoomed alike")
    page.dblclick("#chart-loss .u-over")
    wait_until(lambda: plot(page, "chart-lr", "(u) => u.scales.x.min") < first, what="zoomed out again")


def only_reads(page: Any) -> bool:
    """The page asked for nothing but GETs (the page deletes nothing; these tests press no button)."""
    return {method for method, _ in page.requests} == {"GET"}


def test_the_page_reads_at_phone_width_and_only_reads(browser: Any, address: str) -> None:
    page = open_page(browser, address, 390, 844)
    tick(page, OLD)
    page.wait_for_selector("#chart-val .uplot")
    wait_until(lambda: set(drawn_runs(page, "chart-val")) == {LIVE, OLD}, what="both runs drawn")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "history-overlay-phone")
    assert page.errors == [] and only_reads(page)
    page.close()
