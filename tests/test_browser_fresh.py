"""A new user's first clicks on a fresh machine: offline, no weights folder, empty caches. The app runs as
`python app.py` in its own process (as the README starts it), so nothing of the test session's setup leaks in."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port
from test_browser import ARTIFACTS, BROWSER_ARGS, CHROMIUM, _upload

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")]


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fresh-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFSKETCH_", "HF_", "TORCH_"))}
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), TORCH_HOME=str(home / "torch"), HF_HUB_OFFLINE="1",
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               TMPDIR=str(home))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(30)


@pytest.fixture
def fresh_page(fresh_server, request):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(fresh_server)
        page.get_by_text("DiffSketch Studio").first.wait_for(timeout=60_000)
        yield page
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        browser.close()


def test_classic_sketch_works_at_once_and_missing_weights_are_explained(fresh_page):
    page = fresh_page
    radio = page.locator("#classic-method")
    needs = radio.get_by_label("PiDiNet (clean contours) - needs weights")
    needs.wait_for()
    assert "needs weights" not in radio.locator("label:has(input:checked)").inner_text()
    needs.check()  # choosing one that cannot run says why, in the page
    page.locator("#classic-method-note").get_by_text("cannot run yet").wait_for(timeout=30_000)
    assert "DIFFSKETCH_WEIGHTS_DIR" in page.locator("#classic-method-note").inner_text()
    page.reload()
    page.get_by_text("DiffSketch Studio").first.wait_for()
    _upload(page, "Photo", ROOT / "assets" / "photos" / "chelsea.png")
    page.get_by_role("button", name="Make sketch").click()  # the default extractor, untouched
    page.get_by_text("sketch, 451x300 px").wait_for(timeout=120_000)


def _toast_says(page, text: str) -> None:
    """The error of a click reaches the user as a sentence (not only an 'Error' badge)."""
    toast = page.get_by_test_id("toast-body").filter(has_text=text).first
    toast.wait_for(timeout=30_000)
    assert "**" not in toast.inner_text() and "`" not in toast.inner_text()  # toasts render HTML, not Markdown
    toast.get_by_test_id("toast-close").click()


def test_every_tab_first_click_works_or_names_the_setting(fresh_page):
    page = fresh_page
    page.get_by_role("tab", name="Style").click()
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_test_id("toast-body").locator("code", has_text="DIFFSKETCH_SD_MODEL").first.wait_for(timeout=30_000)
    _toast_says(page, "DIFFSKETCH_SD_MODEL")
    page.get_by_role("tab", name="Photo -> Sketch").click()
    page.get_by_role("button", name="Sketch photos").click()
    _toast_says(page, "DIFFSKETCH_SD_MODEL")
    page.get_by_role("tab", name="Sketch -> Picture").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    _toast_says(page, "DIFFSKETCH_SD_MODEL")
    failed = 3
    if page.get_by_role("tab", name="Draw strokes").count():
        page.get_by_role("tab", name="Draw strokes").click()
        page.get_by_role("button", name="Draw", exact=True).click()
        page.get_by_text("network evaluations per sketch").wait_for(timeout=120_000)
        page.get_by_role("tab", name="Rectify").click()
        page.locator("#rectify-guidance").get_by_text("LPIPS is not available").wait_for(timeout=30_000)
        page.get_by_role("button", name="Rectify", exact=True).click()  # nothing drawn yet
        _toast_says(page, "draw something first")
        failed += 1
    # Gradio marks a failed click with an "Error" badge: on its result area only, not on every output
    badges = page.get_by_text("Error", exact=True)
    page.wait_for_function("() => !document.querySelector('[data-testid=toast-body]')")  # toasts say Error too
    assert badges.count() == failed
