"""The dashboard's alerts in headless Chromium: an alert shows in the run's event list, and after the opt-in
"Notify me" the page raises a browser notification for it (the Notification API, recorded by the test)."""

from __future__ import annotations

import pytest

from monitor.alerts import AlertSettings
from monitor.mock import MockTrainer
from tests.browser_support import chromium, require_chromium, screenshot, serving
from tests.net_support import wait_until

pytestmark = pytest.mark.browser
sync_api = require_chromium()

# Stands in for the browser's Notification API (headless Chromium shows none): records each one.
RECORD_NOTIFICATIONS = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body }); }
  static get permission() { return window.__granted ? "granted" : "default"; }
  static requestPermission() { window.__granted = true; return Promise.resolve("granted"); }
};
"""


def test_notify_me_raises_a_browser_notification_for_an_alert_shown_in_the_event_list() -> None:
    mock = MockTrainer("nb", status_hz=10, speed=40).start()
    with serving([mock], alerts=AlertSettings(stall_after_s=1.0)) as url, chromium(sync_api) as browser:
        page = browser.new_page()
        page.add_init_script(RECORD_NOTIFICATIONS)
        page.goto(url + "?run=nb")
        page.wait_for_selector("#btn-notify", state="visible")
        assert page.text_content("#btn-notify") == "Notify me"
        page.click("#btn-notify")
        wait_until(lambda: page.text_content("#btn-notify") == "Notifications on", what="opted in")
        mock.stop()  # silence: `stalled` after 1 s
        def stalled() -> list[dict]:
            return [n for n in page.evaluate("window.__notes") if n["title"] == "VSR++ stalled: nb"]
        (note,) = wait_until(stalled, timeout=15, what="a notification")
        assert "has sent nothing for 1 s" in note["body"]
        shown = page.locator("#events .kind.alert", has_text="stalled")
        shown.first.wait_for(timeout=5000)
        screenshot(page, "alerts_notify_me")
