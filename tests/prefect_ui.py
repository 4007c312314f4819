"""Drive the Prefect UI in Debian's Chromium with Playwright: what the browser test and the screenshots share.

Used by tests/test_ui_browser.py and scripts/ui_screenshots.py, so both find their way around the UI the same
way. Playwright cannot download its own browsers here, so it runs the system's Chromium (``/usr/bin/chromium``
from Debian's ``chromium`` package, or CHROMIUM=/path) headless. The UI is the one a user lands in with the
default settings: the server's root redirects to it (``/v2/`` with Prefect 3.9), and :func:`landing_ui` finds
its base from that redirect rather than assuming it.

Every wait here waits on a condition (a text, a URL) with a deadline, never on a fixed sleep: the UI is a
single-page app that fetches after loading, and logs reach the API in batches after a run's final state.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# We run as root (no sandbox); the rest keeps Chromium off the network, which is closed here anyway.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
WINDOW = (1440, 1000)
TIMEOUT_MS = 90_000  # actions and lookups: the suite runs 3 workers on 2 cores, and the UI then renders slowly

# The line each failed upload attempt logs, e.g. "Upload attempt 1 of 5 failed: HTTP 503 (...)": matched
# loosely (case, what comes before "attempt") so a rewording of its prefix does not break the checks.
RETRY_LINE = re.compile(r"attempt 1 of \d+ failed: HTTP 503", re.IGNORECASE)


def missing() -> str | None:
    """One line saying what to install when the browser or Playwright is missing, else None."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        hint = f" (or set CHROMIUM={found})" if found else ""
        return f"needs Chromium at {CHROMIUM}: apt-get update && apt-get install -y chromium{hint}"
    if importlib.util.find_spec("playwright") is None:
        return "needs Playwright: pip install playwright (or pip install -e '.[dev]')"
    return None


@contextmanager
def browser_page() -> Iterator[Page]:
    """A page in a fresh headless Chromium (closed, with its helper processes, when the context ends)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # assertions too, not only actions (their own default is 5 s)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": WINDOW[0], "height": WINDOW[1]})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def landing_ui(page: Page, server: str) -> str:
    """Open the server's root as a user would and return the base URL of the UI it lands in (e.g. .../v2)."""
    page.goto(server.rstrip("/") + "/")
    page.wait_for_url(re.compile(r"/dashboard"))
    return page.url.split("/dashboard", 1)[0]


def field(page: Page, title: str) -> Locator:
    """The run form's input for the parameter whose title is ``title`` (optional ones say "(Optional)")."""
    return page.get_by_label(re.compile(rf"^{re.escape(title)}( \(Optional\))?$"))


def open_deployment(page: Page, ui: str, name: str) -> None:
    """Deployments (in the menu) -> the deployment ``name``."""
    page.goto(f"{ui}/deployments")
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/deployments/deployment/"))


def open_custom_run_form(page: Page) -> None:
    """On a deployment's page: Run (top right) -> Custom run."""
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.wait_for_url(re.compile(r"/run\b"))


def fill_run_form(page: Page, values: dict[str, str | bool]) -> None:
    """Set the form's fields by title: text for inputs, True/False for switches (clicked when different)."""
    for title, value in values.items():
        control = field(page, title)
        if isinstance(value, bool):
            if (control.get_attribute("aria-checked") == "true") != value:
                control.click()
        else:
            control.fill(value)


def submit_run(page: Page, client, deployment_id, timeout: float = 90, attempts: int = 3) -> str:
    """Submit the run form; return the id of the flow run it created on the deployment.

    The run is found through the API (a run of the deployment that was not there before the click): the toast
    with its "View run" link is gone after a few seconds, and a page slowed down by a busy machine can miss it.
    When the link is seen, it must name the same run. If no run appears within a third of ``timeout`` (the UI
    shows an error toast when the server refused the request, as a busy SQLite server can), Submit is pressed
    again, as a user would; the error says what the page showed after each press.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    def runs() -> set[str]:
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        return {str(r.id) for r in client.read_flow_runs(deployment_filter=only)}

    before, seen = runs(), []
    for _ in range(attempts):
        page.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + timeout / attempts
        while not (new := runs() - before) and time.monotonic() < deadline:
            time.sleep(0.25)
        if new:
            break
        seen.append(" ".join(page.inner_text("body").split())[-700:])
    else:
        raise RuntimeError(f"no flow run of the deployment {timeout:g} s after Submit ({attempts} presses); the page "
                           f"at {page.url} ended with: " + " | ".join(seen))
    flow_run_id = sorted(new)[0] if len(new) == 1 else max(new, key=lambda i: client.read_flow_run(i).created)
    try:
        href = page.get_by_role("link", name="View run").last.get_attribute("href", timeout=5_000)
    except PlaywrightTimeout:
        href = None  # the toast has gone: the API said which run it was
    if href is not None and not any(run in href for run in new):
        raise RuntimeError(f"the toast links to {href!r}, not to a new run of the deployment ({sorted(new)})")
    return flow_run_id


def flow_run_tab(page: Page, ui: str, flow_run_id: str, tab: str) -> Locator:
    """Open a flow run's page on ``tab`` (Logs, Task Runs, Artifacts, ...); return the tab's panel."""
    page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
    page.get_by_role("tab", name=tab, exact=True).click()
    return page.get_by_role("tabpanel", name=tab)


def reload_until(page: Page, find, timeout: float = 30, what: str = "it") -> Locator:
    """Wait for ``find(page)`` (a locator) to be visible, reloading the page every few seconds: some pages
    (the event feed, lists) show what the server had when they loaded. Returns the locator."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout
    while True:
        locator = find(page)
        try:
            locator.first.wait_for(state="visible", timeout=3_000)
            return locator
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} on {page.url}") from None
            page.reload()


def find_log_line(page: Page, pattern: re.Pattern[str], timeout: float = 30) -> Locator:
    """On a run's Logs tab, the log line matching ``pattern``, scrolled into view. The list renders only the
    lines near its scroll position, so this scrolls it down until the line shows; logs reach the API in
    batches, possibly after the run's final state, so at the bottom it reloads and looks again."""
    deadline = time.monotonic() + timeout
    while True:
        panel = page.get_by_role("tabpanel", name="Logs")
        panel.get_by_text(re.compile(r"\S")).first.wait_for()
        box = panel.locator(".overflow-y-auto").first
        line = panel.get_by_text(pattern)
        for _ in range(100):
            if line.count():
                line.first.scroll_into_view_if_needed()
                return line.first
            if box.evaluate("e => { const end = e.scrollTop + e.clientHeight >= e.scrollHeight - 2;"
                            " e.scrollBy(0, e.clientHeight * 0.8); return end; }"):
                break
            page.wait_for_timeout(100)  # the list renders the lines it scrolled to
        if time.monotonic() > deadline:
            raise TimeoutError(f"no log line matching {pattern.pattern!r} on {page.url} after {timeout:.0f} s")
        page.wait_for_timeout(1000)
        page.reload()


def fit_to_content(page: Page, max_height: int = 4000) -> None:
    """Make the viewport as high as the page's content (at least WINDOW's), so a screenshot shows all of it.
    The UI's frame is one screen high, so a full-page screenshot alone would cut its menu short."""
    page.set_viewport_size({"width": WINDOW[0], "height": WINDOW[1]})
    height = page.evaluate("Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": WINDOW[0], "height": min(max(int(height), WINDOW[1]), max_height)})
