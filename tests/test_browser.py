"""The app in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser), and the
Python client against the launched server. Screenshots land in test-artifacts/ for people to look at."""

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, launched_app, requires_shared

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def server():
    with launched_app() as url:
        yield url + "/"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = ctx.new_page()
    pg.goto(server)
    pg.get_by_text("DiffSketch Studio").first.wait_for()
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    ctx.close()


def _upload(page, label: str, path: Path):
    """Set a file on the upload widget of the component with this label."""
    block = page.locator(".block", has=page.get_by_text(label, exact=True)).first
    block.locator("input[type=file]").set_input_files(str(path))


def test_classic_sketch_in_the_browser(page):
    _upload(page, "Photo", ROOT / "assets" / "photos" / "coffee.png")
    page.get_by_label("Canny (thin, hard edges)").check()
    page.get_by_role("button", name="Make sketch").click()
    page.get_by_text("Canny (thin, hard edges) sketch, 512x341 px").wait_for(timeout=60_000)
    src = page.locator(".block", has=page.get_by_text("Sketch", exact=True)).locator("img").first.get_attribute("src")
    assert src and ".png" in src


def test_bad_upload_shows_a_message_and_app_keeps_serving(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    _upload(page, "Photo", bad)
    page.get_by_role("button", name="Make sketch").click()
    page.get_by_text("Error").first.wait_for(timeout=30_000)
    page.get_by_text("not an image this app can read").first.wait_for(timeout=10_000)  # a sentence, not a bare "Error"
    page.reload()
    _upload(page, "Photo", ROOT / "assets" / "photos" / "chelsea.png")
    page.get_by_role("button", name="Make sketch").click()
    page.get_by_text("sketch, 451x300 px").wait_for(timeout=60_000)


@requires_shared
def test_demo_training_starts_and_stops(page):
    page.get_by_text("Backbone (Stable Diffusion 1.x").first.click()
    page.get_by_label("Demo backbone (tiny, random weights)").check()
    page.get_by_role("button", name="Load", exact=True).click()
    page.get_by_text(re.compile("^Loaded")).wait_for(timeout=60_000)
    page.get_by_role("tab", name="Style").click()
    page.get_by_text("Demo backbone", exact=False).first.wait_for()
    _upload(page, "Your photo", ROOT / "assets" / "photos" / "coffee.png")
    _upload(page, "Your sketch of it", ROOT / "assets" / "photos" / "coffee.png")
    iterations = page.locator(".block", has=page.get_by_text("Iterations", exact=True)).locator("input[type=number]")
    iterations.fill("1500")
    iterations.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text(re.compile(r"^Iteration \d+/1500")).wait_for(timeout=120_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("stopped early").wait_for(timeout=120_000)


def test_python_client_runs_classic_sketch(server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    shown, download, info = client.predict(handle_file(str(ROOT / "assets" / "photos" / "chelsea.png")), "xdog",
                                           api_name="/classic_sketch")
    assert "451x300" in info
    assert Image.open(shown).size == (451, 300)


def test_generate_strokes_and_see_the_svg(page):
    from ui import common
    if not common.STROKES_READY:
        pytest.skip("no stroke checkpoint")
    page.get_by_role("tab", name="Draw strokes").click()
    page.get_by_label("DDIM, 30 steps").check()
    page.get_by_role("button", name="Draw", exact=True).click()
    page.get_by_text("network evaluations per sketch").wait_for(timeout=120_000)
    assert page.locator("svg path").count() > 0


def test_draw_two_strokes_on_the_canvas_and_rectify(page):
    from ui import common
    if not common.STROKES_READY:
        pytest.skip("no stroke checkpoint")
    page.get_by_role("tab", name="Rectify").click()
    canvas = page.locator("#rectify-canvas canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    for (x0, y0), (x1, y1) in (((0.2, 0.2), (0.8, 0.25)), ((0.5, 0.25), (0.5, 0.8))):
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for k in range(1, 11):
            f = k / 10
            page.mouse.move(box["x"] + (x0 + f * (x1 - x0)) * box["width"], box["y"] + (y0 + f * (y1 - y0)) * box["height"])
        page.mouse.up()
    page.get_by_text("2 strokes").wait_for()
    page.get_by_role("button", name="Rectify", exact=True).click()
    page.get_by_text("Rectified as").wait_for(timeout=120_000)
    after = page.locator(".block", has=page.get_by_text("After", exact=True)).locator("img").first
    assert ".png" in (after.get_attribute("src") or "")


def test_rectify_canvas_hands_over_to_sketch_to_picture_and_generates(page):
    from ui import common
    if not common.STROKES_READY:
        pytest.skip("no stroke checkpoint, so no Rectify tab")
    page.get_by_text(re.compile(r"^Backbone \(Stable Diffusion 1\.x")).click()  # the label may grow
    page.get_by_label("Demo backbone (tiny, random weights)").check()
    page.get_by_role("button", name="Load", exact=True).click()
    page.get_by_text(re.compile("^Loaded")).wait_for(timeout=60_000)
    page.get_by_role("tab", name="Rectify").click()
    canvas = page.locator("#rectify-canvas canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(box["x"] + (0.2 + 0.06 * k) * box["width"], box["y"] + (0.3 + 0.04 * k) * box["height"])
    page.mouse.up()
    page.get_by_text("1 strokes").wait_for()
    page.get_by_role("button", name="Send to Sketch -> Picture").click()
    page.locator("#picture-sketch img").first.wait_for(timeout=30_000)  # the tab switched and holds the drawing
    page.get_by_text("Demo backbone", exact=False).first.wait_for()
    page.get_by_label("Prompt: what the picture shows").fill("a cat")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text(re.compile(r"^1 picture\(s\), 128x128 px")).wait_for(timeout=60_000)
    shown = page.locator(".block", has=page.get_by_text("Pictures", exact=True)).locator("img").first
    assert ".png" in (shown.get_attribute("src") or "")
