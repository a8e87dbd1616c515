"""Issue 13's 'done when' in a real browser: a new user, offline, trains a real style on the CPU (frozen ImageNet
VGG16 from the weights folder) in the Style tab, sees its preview, and applies it in Photo -> Sketch.

Debian's Chromium driven by Playwright (never a downloaded browser); skipped without ../shared/weights
(DIFFSKETCH_WEIGHTS_DIR), since a random VGG16 must never stand in for the real one."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, launched_app, requires_shared

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [pytest.mark.browser, requires_shared,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic"]


def _block(page, label: str):
    return page.locator(".block", has=page.get_by_text(label, exact=True)).first


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 192x128 photo and its XDoG sketch: a real photo, so VGG16 has something to see; small, so it is quick."""
    from diffsketch_core.extractors import extract_sketch

    photo = Image.open(ROOT / "assets" / "photos" / "coffee.png").convert("RGB").resize((192, 128))
    photo.save(tmp_path / "photo.png")
    extract_sketch(photo, "xdog").image.save(tmp_path / "sketch.png")
    return tmp_path / "photo.png", tmp_path / "sketch.png"


def _image_in(page, label: str) -> np.ndarray:
    """The picture an image block shows, fetched from the server as the browser would."""
    src = _block(page, label).locator("img").first.get_attribute("src")
    assert src, f"no image in {label!r}"
    body = page.request.get(src).body()
    from io import BytesIO

    return np.asarray(Image.open(BytesIO(body)).convert("L"))


def test_new_user_trains_a_cpu_style_and_applies_it(tmp_path):
    from playwright.sync_api import sync_playwright

    photo, sketch = _pair(tmp_path)
    with launched_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        try:
            page.goto(url + "/")
            page.get_by_text("DiffSketch Studio").first.wait_for()
            # no SD weights here: the Backbone panel proposes the CPU backbone; the user just loads it
            page.get_by_text(re.compile(r"^Backbone \(Stable Diffusion 1\.x")).click()
            assert page.get_by_label("Hub id or local diffusers folder", exact=False).input_value() == "vgg16"
            page.get_by_role("button", name="Load", exact=True).click()
            loaded = page.get_by_text(re.compile(r"^Loaded"))
            loaded.wait_for(timeout=60_000)
            assert "vgg16 (CPU: VGG16 features)" in loaded.inner_text()

            page.get_by_role("tab", name="Style").click()
            _block(page, "Your photo").locator("input[type=file]").set_input_files(str(photo))
            _block(page, "Your sketch of it").locator("input[type=file]").set_input_files(str(sketch))
            _block(page, "Your sketch of it").locator("img").first.wait_for(timeout=30_000)
            iterations = _block(page, "Iterations").locator("input[type=number]")
            page.wait_for_function("e => e.value === '120'", arg=iterations.element_handle(), timeout=30_000)
            iterations.fill("2")
            iterations.press("Enter")
            runs = page.locator("#style-runs input[type=number]")  # two runs of 2 iterations, averaged
            runs.fill("2")
            runs.press("Enter")
            page.wait_for_timeout(500)
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text(re.compile(r"Training done after 4 iterations")).wait_for(timeout=90_000)
            preview = _image_in(page, "Your photo, current style")
            assert preview.shape == (176, 256) and preview.std() > 0  # the photo read at the backbone's 256 px

            page.get_by_role("tab", name="Photo -> Sketch").click()
            _block(page, "Photos").locator("input[type=file]").set_input_files(str(photo))
            page.get_by_role("button", name="Sketch photos").click()
            page.get_by_text("1 sketch(es).").wait_for(timeout=60_000)
            out = _image_in(page, "Sketches")
            assert out.shape == (128, 192) and out.std() > 0
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "new_user_trains_a_cpu_style.png"), full_page=True)
            browser.close()
