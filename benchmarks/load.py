"""Load: N concurrent mixed requests against the running app, over loopback only; latency percentiles and errors.

    python benchmarks/load.py [--requests 40] [--concurrency 8] [--seconds 300] [--burst 48] [--url http://127.0.0.1:7860/]
    python benchmarks/load.py --worst     # each CPU job once on the worst input its budgets admit, against REQUEST_SECONDS

Without --url the app is launched in this process on a free 127.0.0.1 port (so its memory is this process's).
The mix: what users do (Classic sketch with Canny and XDoG, Draw strokes with DDIM, Rectify a canvas drawing) and
what hostile-but-realistic users send (a path string as the canvas, the noise image, a 0-byte upload), which must
come back as refusals with a sentence, quickly. --burst then sends that many Classic requests at once, to see what
the queue does past its size. Counts and time are bounded (at most 400 requests, 64 at a time, 600 s).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._util import peak_rss_mb  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SQUARE = json.dumps([[[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]], [[100, 100], [300, 300]]])


def _inputs(folder: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    noise = folder / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((512, 512)) > 0.5).astype(np.uint8) * 255).save(noise)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return {"photo": ROOT / "assets" / "photos" / "chelsea.png", "noise": noise, "empty": empty}


def kinds(files: dict[str, Path], strokes: bool) -> dict[str, tuple[bool, str, callable]]:
    """name -> (should succeed, api name, args factory)."""
    from gradio_client import handle_file

    out = {
        "classic canny": (True, "/classic_sketch", lambda: [handle_file(str(files["photo"])), "canny"]),
        "classic xdog": (True, "/classic_sketch", lambda: [handle_file(str(files["photo"])), "xdog"]),
        "0-byte upload": (False, "/classic_sketch", lambda: [handle_file(str(files["empty"])), "canny"]),
    }
    if strokes:
        out |= {
            "draw strokes (ddim, 2)": (True, "/draw_strokes", lambda: ["any", 2, "ddim", 0]),
            "rectify canvas": (True, "/rectify", lambda: [SQUARE, None, "auto", "rectify", 0.3, 0.5, 0, True]),
            "path string as canvas": (False, "/rectify",
                                      lambda: ['"/etc/hostname"', None, "auto", "rectify", 0.3, 0.5, 0, True]),
            "noise image": (False, "/rectify",
                            lambda: ["[]", handle_file(str(files["noise"])), "auto", "rectify", 0.3, 0.5, 0, True]),
        }
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


def run(url: str, requests: int, concurrency: int, seconds: float, files: dict[str, Path], strokes: bool) -> list[dict]:
    from gradio_client import Client

    mix = kinds(files, strokes)
    names = list(mix)
    local = threading.local()
    deadline = time.monotonic() + seconds

    def one(i: int) -> dict:
        name = names[i % len(names)]
        good, api, args = mix[name]
        if time.monotonic() > deadline:
            return {"kind": name, "skipped": True}
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False)
        start = time.perf_counter()
        try:
            local.client.predict(*args(), api_name=api)
            error = None
        except Exception as exc:  # an AppError carries the app's sentence
            error = str(exc) or type(exc).__name__
        return {"kind": name, "good": good, "seconds": time.perf_counter() - start, "error": error}

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(requests)))


def burst(url: str, n: int, files: dict[str, Path]) -> dict:
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in range(min(n, 8))]
    barrier = threading.Barrier(n)

    def one(i: int):
        barrier.wait()
        start = time.perf_counter()
        try:
            clients[i % len(clients)].predict(handle_file(str(files["photo"])), "canny", api_name="/classic_sketch")
            return "ok", time.perf_counter() - start
        except Exception as exc:
            return str(exc), time.perf_counter() - start

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    outcome: dict[str, int] = {}
    for what, _ in results:
        outcome[what[:80]] = outcome.get(what[:80], 0) + 1
    return {"outcomes": outcome, "max_s": max(s for _, s in results)}


def queue_settings(demo) -> str:
    """What the queue holds, read from the launched Blocks: its size and each heavy event's concurrency."""
    queue = demo._queue
    parts = []
    for fn in demo.fns.values():
        if fn.api_name in {"classic_sketch", "draw_strokes", "rectify", "train_style", "photos_to_sketches",
                           "upload_style", "sketch_to_picture"}:
            limit = queue.default_concurrency_limit if fn.concurrency_limit == "default" else fn.concurrency_limit
            shared = f" (shared slot '{fn.concurrency_id}')" if not str(fn.concurrency_id).isdigit() else ""
            parts.append(f"{fn.api_name} {limit if limit is not None else 'unlimited'} at a time{shared}")
    return f"queue: max_size {queue.max_size} waiting; " + "; ".join(parts)


def worst_cases(folder: Path) -> None:
    """Each CPU job on the largest input budgets.py lets through, timed against its REQUEST_SECONDS (one at a time,
    called in-process: the seconds are the job's own, without queueing)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from diffsketch_core import budgets
    from ui import classic, common, rectify, strokes

    def uploaded(path: Path) -> str:
        import gradio as gr

        target = Path(gr.utils.get_upload_folder()) / "load-benchmark" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        return str(target)

    rng = np.random.default_rng(0)
    width = int((budgets.MAX_PIXELS * 1.5) ** 0.5)  # 3:2, just under the pixel budget
    height = int(width / 1.5)
    big = folder / "big.png"
    noise = rng.integers(0, 255, (height // 10, width // 10, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((width, height)).save(big, compress_level=1)
    polys = [np.cumsum(rng.normal(0, 3, (budgets.MAX_CANVAS_POINTS // budgets.MAX_CANVAS_STROKES, 2)), 0)
             + rng.uniform(0, 500, 2) for _ in range(budgets.MAX_CANVAS_STROKES)]
    canvas = json.dumps([p.round(1).tolist() for p in polys])
    dashes = Image.new("L", (512, 512), 255)  # separate dashes, just under the traced-path budget
    d = ImageDraw.Draw(dashes)
    for x, y in rng.integers(0, 506, (int(budgets.MAX_TRACED_PATHS * 0.5), 2)):
        d.line([x, y, x + 4, y + 4], fill=0)
    dashes_path = folder / "dashes.png"
    dashes.save(dashes_path)
    method = next(m for m in ("hed", "pidinet", "fast", "xdog") if classic.needs(m) is None)
    req = type("R", (), {"session_hash": "load-worst"})()
    jobs = {
        f"classic_sketch: {width}x{height} PNG ({width * height / 1e6:.0f} MP), {method}":
            ("classic_sketch", lambda: classic.classic_sketch(uploaded(big), method, req)),
    }
    if common.STROKES_READY:
        jobs |= {
            f"rectify: canvas of {budgets.MAX_CANVAS_POINTS:,} points in {budgets.MAX_CANVAS_STROKES:,} strokes, guidance 4":
                ("rectify", lambda: rectify.rectify_sketch(canvas, None, "auto", "rectify", 0.3, 4.0, 0, True, req)),
            f"rectify: upload tracing to ~{int(budgets.MAX_TRACED_PATHS * 0.5):,} paths":
                ("rectify", lambda: rectify.rectify_sketch("[]", uploaded(dashes_path), "auto", "rectify", 0.3, 1.0, 0,
                                                           True, req)),
            "draw_strokes: 16 sketches, skip sampler": ("draw_strokes", lambda: strokes.draw_strokes("any", 16, "skip", 0, req)),
            f"draw_strokes: {budgets.MAX_DDPM_SKETCHES} sketches, full DDPM":
                ("draw_strokes", lambda: strokes.draw_strokes("any", budgets.MAX_DDPM_SKETCHES, "ddpm", 0, req)),
        }
    print("| job, worst admitted input | seconds | budget s | answer |")
    print("|---|---|---|---|")
    for name, (budget, fn) in jobs.items():
        start = time.perf_counter()
        try:
            fn()
            answer = "result"
        except Exception as exc:
            answer = f"refused: {str(exc)[:80]}"
        took = time.perf_counter() - start
        print(f"| {name} | {took:.1f} | {budgets.REQUEST_SECONDS[budget]} | {answer} |", flush=True)
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running app on this machine (default: launch one here)")
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--burst", type=int, default=0, help="then this many Classic requests at once (0: none)")
    p.add_argument("--worst", action="store_true", help="time each CPU job on its worst admitted input instead")
    args = p.parse_args()
    if args.worst:
        import torch

        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory() as tmp:
            worst_cases(Path(tmp))
        return
    if not (1 <= args.requests <= 400 and 1 <= args.concurrency <= 64 and 0 < args.seconds <= 600
            and 0 <= args.burst <= 128):
        p.error("bounded: --requests 1..400, --concurrency 1..64, --seconds up to 600, --burst up to 128")
    demo = None
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            p.error("loopback only: --url must be http://127.0.0.1:PORT/ (or localhost)")
        url = args.url
        strokes = True
    else:
        import torch

        torch.set_num_threads(2)
        import app
        from ui import common

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo = app.demo
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        url, strokes = f"http://127.0.0.1:{port}/", common.STROKES_READY
        print(queue_settings(demo))
    with tempfile.TemporaryDirectory() as tmp:
        files = _inputs(Path(tmp))
        start = time.perf_counter()
        results = run(url, args.requests, args.concurrency, args.seconds, files, strokes)
        wall = time.perf_counter() - start
        done = [r for r in results if not r.get("skipped")]
        print(f"{len(done)} requests ({len(results) - len(done)} skipped past --seconds), {args.concurrency} at a time, "
              f"{wall:.1f} s wall, {len(done) / wall:.2f} requests/s")
        print("| request | n | answered as expected | unexpected | p50 s | p90 s | p99 s | max s |")
        print("|---|---|---|---|---|---|---|---|")
        for kind in dict.fromkeys(r["kind"] for r in done):
            rs = [r for r in done if r["kind"] == kind]
            ok = [r for r in rs if (r["error"] is None) == r["good"]]
            bad = [r for r in rs if r not in ok]
            secs = [r["seconds"] for r in rs]
            print(f"| {kind} | {len(rs)} | {len(ok)} | {len(bad)} | {_pct(secs, .5):.2f} | {_pct(secs, .9):.2f} | "
                  f"{_pct(secs, .99):.2f} | {max(secs):.2f} |")
        unexpected = [r for r in done if (r["error"] is None) != r["good"]]
        for r in unexpected[:5]:
            print(f"  unexpected: {r['kind']}: {r['error']}")
        refusals = {r["kind"]: r["error"] for r in done if not r["good"] and r["error"]}
        for kind, text in refusals.items():
            print(f"  refusal, {kind}: {text[:140]}")
        if args.burst:
            b = burst(url, args.burst, files)
            print(f"burst of {args.burst} Classic requests at once: {b['outcomes']}; slowest {b['max_s']:.1f} s")
    if demo is not None:
        print(f"peak RSS of the app process (server and clients): {peak_rss_mb():.0f} MB")
        demo.close()


if __name__ == "__main__":
    main()
