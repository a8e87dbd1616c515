"""Take the README's screenshots from the running app (Debian chromium + Playwright).

    python tools/screenshots.py      # writes assets/screenshots/{classic,strokes,rectify,style}.png
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DIFFSKETCH_WEIGHTS_DIR", str(ROOT.parent / "shared" / "weights"))
OUT = ROOT / "assets" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def upload(page, label: str, path: Path) -> None:
    page.locator(".block", has=page.get_by_text(label, exact=True)).first.locator("input[type=file]").set_input_files(str(path))


def main() -> None:
    import app
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        upload(page, "Photo", ROOT / "assets" / "photos" / "astronaut.png")
        page.get_by_role("button", name="Make sketch").click()
        page.get_by_text(re.compile("sketch, 512x512 px")).wait_for(timeout=120_000)
        page.screenshot(path=str(OUT / "classic.png"))

        page.get_by_role("tab", name="Draw strokes").click()
        page.get_by_label("Class").click()
        page.get_by_role("option", name="apple").click()
        page.get_by_role("button", name="Draw", exact=True).click()
        page.get_by_text("network evaluations per sketch").wait_for(timeout=300_000)
        page.wait_for_timeout(4000)  # let the SVG animation draw
        page.screenshot(path=str(OUT / "strokes.png"))

        page.get_by_role("tab", name="Rectify").click()
        box = page.locator("#rectify-canvas canvas").bounding_box()
        import math
        ring = [(0.5 + 0.3 * math.cos(a / 20 * 2 * math.pi), 0.55 + 0.28 * math.sin(a / 20 * 2 * math.pi)) for a in range(21)]
        for stroke in (ring, [(0.5, 0.27), (0.52, 0.15)], [(0.52, 0.2), (0.65, 0.14)]):
            page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=3)
            page.mouse.up()
        page.get_by_role("button", name="Rectify", exact=True).click()
        page.get_by_text("Rectified as").wait_for(timeout=300_000)
        page.screenshot(path=str(OUT / "rectify.png"), full_page=True)

        page.get_by_text("Backbone (Stable Diffusion 1.x)").click()
        page.get_by_label("Demo backbone (tiny, random weights)").check()
        page.get_by_role("button", name="Load", exact=True).click()
        page.get_by_text(re.compile("^Loaded")).wait_for(timeout=120_000)
        page.get_by_role("tab", name="Style").click()
        upload(page, "Your photo", ROOT / "assets" / "photos" / "coffee.png")
        page.get_by_role("button", name="Make starting sketch").click()
        page.locator(".block", has=page.get_by_text("Your sketch of it", exact=True)).locator("img").first.wait_for(
            timeout=120_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text(re.compile("Training (done|stopped)")).wait_for(timeout=600_000)
        page.screenshot(path=str(OUT / "style.png"), full_page=True)
        browser.close()
    app.demo.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
