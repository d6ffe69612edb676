"""The real app in headless Chromium: launch a short real run from the page, watch it finish, read its results,
and keep a screenshot of every page (in $LDIFS_ARTIFACTS, else the test session's temporary folder; and in
docs/screenshots/ with LDIFS_UPDATE_SCREENSHOTS=1).

Waits follow progress, so a loaded machine makes the test slower, not red: waits for work (a run, the WiSE-FT
path) fail only when the page's progress (its bars and the sidebar's job list) has not changed for STALL_S seconds;
waits for a page's elements last as long as Streamlit is still drawing the page, and PAGE_TIMEOUT_MS after.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STALL_S = float(os.environ.get("LDIFS_E2E_STALL_S", 600))  # evaluation may show no change for minutes under load
POLL_MS = 2_000
PROGRESS = '[data-testid="stProgress"], [data-testid="stSidebar"]'  # what moves while the worker works
STATUS = '[data-testid="stStatusWidget"]'  # Streamlit's "running" indicator: the page's script is being run
PAGE_TIMEOUT_MS = 30_000
SHORT_RUN = {"Steps": "30", "Test images per dataset": "300", "Train images per class for linear probes": "10",
             "At most this many linear-probe train images per dataset": "500", "Points per dataset in the UMAP": "150"}
NAV = {"launch": "Launch", "forgetting": "Forgetting", "drift": "Feature drift", "runs": "Runs & sweeps",
       "learn": "Learn"}


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium (Playwright cannot download its own browsers here); installed with apt-get when missing
    and this process is root. Elsewhere it skips with the reason; under CI it fails, since CI must run it."""
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            give_up(f"{CHROMIUM} is missing and apt-get cannot install it here (needs root).")
        install = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
        if subprocess.run(["bash", "-c", install], capture_output=True).returncode != 0 or not CHROMIUM.exists():
            give_up(f"`{install}` failed, so there is no browser to drive.")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode} before it served")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """The app as `make run` starts it, on a free port and an empty temporary run store."""
    port = free_port()
    store = tmp_path_factory.mktemp("runs")
    log = (tmp_path_factory.getbasetemp() / "streamlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "localhost", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "LDIFS_STORE": str(store)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://localhost:{port}"
        wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots and the downloaded report go: never into the checkout unless asked."""
    configured = os.environ.get("LDIFS_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("artifacts")
    (folder / "screenshots").mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(chromium, app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        tab = browser.new_page(viewport={"width": 1400, "height": 1600})
        tab.set_default_timeout(PAGE_TIMEOUT_MS)
        tab.goto(f"{app_url}/runs")  # the first request of a fresh server is a deep link, as after a restart
        yield tab
        browser.close()


def screenshot(page, artifacts: Path, name: str) -> None:
    shown(page, page.locator(STATUS), state="hidden")  # the script run has finished
    page.wait_for_timeout(500)  # and Plotly its transitions
    shot = artifacts / "screenshots" / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("LDIFS_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOTS / f"{name}.png")


def progress_text(page) -> str:
    return "\n".join(page.locator(PROGRESS).all_inner_texts())


def wait_while_progressing(page, target, what: str, state: str = "visible", drawing_moves: bool = False,
                           stall_s: float = STALL_S) -> None:
    """Wait until `target` reaches `state` for as long as the page's progress keeps changing (with `drawing_moves`,
    also while Streamlit still runs the page's script); fail, saying what the page last showed, once nothing moved
    for `stall_s` seconds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    seen, since = None, time.monotonic()
    while True:
        try:
            target.wait_for(state=state, timeout=POLL_MS)
            return
        except PlaywrightTimeout:
            pass
        shown_now = progress_text(page)
        if shown_now != seen or (drawing_moves and page.locator(STATUS).is_visible()):
            seen, since = shown_now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            pytest.fail(f"{what}: nothing moved for {stall_s:.0f} s; the page's progress still reads {seen!r}")


def shown(page, target, state: str = "visible") -> None:
    """A page element after a click or a navigation: waited for while the page is drawn, however long that takes
    on a loaded machine, and PAGE_TIMEOUT_MS more once it has been drawn."""
    wait_while_progressing(page, target, f"waiting for {target} to be {state}", state, drawing_moves=True,
                           stall_s=PAGE_TIMEOUT_MS / 1000)


def open_page(page, name: str) -> None:
    page.get_by_role("link", name=NAV[name], exact=True).click()


def chart(page, title: str):
    return page.locator(".js-plotly-plot").filter(has_text=title)


def assert_no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_short_real_run_launched_in_the_browser_shows_its_forgetting_and_drift(page, artifacts):
    # The deep link opened first still ran main.py: the page, the navigation's names and the Jobs panel.
    shown(page, page.get_by_role("heading", name="Runs and sweeps"))
    sidebar = page.get_by_test_id("stSidebar")
    shown(page, sidebar.get_by_text("Jobs", exact=True))
    for name in NAV.values():
        assert page.get_by_role("link", name=name, exact=True).count() == 1
    assert_no_traceback(page)

    open_page(page, "learn")
    shown(page, page.get_by_text("Concept forgetting and LDIFS"))
    open_page(page, "launch")
    shown(page, page.get_by_text("Launch a fine-tuning run"))
    page.get_by_text("Advanced").click()
    for label, value in SHORT_RUN.items():
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
    page.get_by_role("button", name="Start run").click()
    wait_while_progressing(page, page.get_by_text("See what it forgot"), "the launched run")
    assert_no_traceback(page)
    screenshot(page, artifacts, "launch")

    open_page(page, "forgetting")
    shown(page, chart(page, "Accuracy before and after fine-tuning"))
    shown(page, chart(page, "ranked by accuracy drop"))
    # The concept gallery: thumbnails of the chosen concept's flipped test images, from the run's own records.
    shown(page, page.get_by_text("See what was forgotten"))
    gallery_image = page.locator('[data-testid="stImage"] img').first
    if page.get_by_text("No test image of").count():  # a short run may flip no image of the top concept one way
        page.get_by_role("button", name="became right", exact=True).click()
    shown(page, gallery_image)
    assert gallery_image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert_no_traceback(page)
    screenshot(page, artifacts, "forgetting")

    open_page(page, "drift")
    shown(page, chart(page, "Joint UMAP"))
    shown(page, chart(page, "Feature distance per layer"))
    assert page.get_by_text("2-D distances are only a picture").is_visible()
    assert page.locator('[data-testid="stImage"]').count() == 0
    # Clicking a point shows that test image's thumbnail (Plotly's hover cannot carry an image; a click can).
    chart(page, "Joint UMAP").locator("g.trace.scatter path.point").first.click(force=True)
    shown(page, page.locator('[data-testid="stImage"] img').first)
    assert_no_traceback(page)
    screenshot(page, artifacts, "drift")

    open_page(page, "runs")
    shown(page, chart(page, "Trade-off"))
    assert_no_traceback(page)
    screenshot(page, artifacts, "runs")
    page.get_by_role("tab", name="Download").click()
    shown(page, page.get_by_role("button", name="Metrics as CSV"))
    # The HTML report opens on its own (offline, plotly.js inside) and draws its figures and images.
    with page.expect_download() as download:
        page.get_by_role("button", name="Report (HTML)").click()
    report_path = artifacts / "report.html"
    download.value.save_as(report_path)
    report_page = page.context.browser.new_page()
    report_page.goto(report_path.as_uri())
    shown(report_page, report_page.locator(".main-svg").first)
    assert report_page.locator("img[src^='data:image/png;base64,']").count() >= 1
    report_page.close()

    # WiSE-FT: the path is evaluated by the worker (listed in the sidebar meanwhile), then drawn as a curve.
    page.get_by_role("tab", name="WiSE-FT").click()
    page.get_by_role("button", name="Evaluate the WiSE-FT path").click()
    wait_while_progressing(page, chart(page, "WiSE-FT: weight mixing"), "the WiSE-FT path")
    wait_while_progressing(page, page.get_by_text("Evaluating the mixes"), "the WiSE-FT path", state="detached")
    assert page.locator(".js-plotly-plot").filter(has_text="α=1").count() >= 1
    assert_no_traceback(page)

    open_page(page, "learn")
    shown(page, page.locator(".katex").first)
    assert_no_traceback(page)
    screenshot(page, artifacts, "learn")

    # The demo's runs are found in the store, not in the session: a reload still shows them (here while they are
    # queued or running; AppTest covers the finished comparison), and they can be cancelled from there.
    page.get_by_role("button", name="Run the demo").click()
    demo_cards = page.get_by_text("demo ldifs")
    shown(page, demo_cards.first)
    page.reload()
    shown(page, demo_cards.first)
    assert_no_traceback(page)
