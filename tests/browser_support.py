"""The dashboard in headless Chromium: a real monitor under uvicorn, and the browser to open it.

Never downloads a browser: uses /usr/bin/chromium. A test module calls `require_chromium()` at
import: skipped when it is missing, except under CI where that is a failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from monitor.app import create_app
from monitor.config import MonitorConfig, TrainerEndpoints
from monitor.mock import MockTrainer
from tests.net_support import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def require_chromium() -> Any:
    """playwright.sync_api, or a skip (a failure under CI) when Chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing; browser tests must run under CI")
        pytest.skip(f"{CHROMIUM} missing (not under CI)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium(sync_api: Any) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@contextmanager
def serving(mocks: list[MockTrainer], **config: Any) -> Iterator[str]:
    """The monitor under uvicorn on a free port, in a thread, following `mocks` (stopped on exit)."""
    trainers = [TrainerEndpoints(m.pub_endpoint, m.rep_endpoint) for m in mocks]
    port = free_port()
    app = create_app(MonitorConfig(trainers=trainers, port=port, **config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        for m in mocks:
            m.stop()


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
