"""Budgets for every job, in one place: what one request may ask of the server.

A request that goes over a budget is refused with a sentence that names the budget (never a traceback, never a
silent wrong result). The figures are sized so that the worst input a budget lets through still answers within
`REQUEST_SECONDS` on this project's 2-core CPU when the job has it to itself (tests/test_hostile.py checks the
refusals' times, benchmarks/load.py --worst the admitted worst cases).
"""

from __future__ import annotations

# ---------------------------------------------------------------- images (every upload, every tab)
# Decoded pixels of one image, checked from the file's header before a pixel is decoded. 50 MP covers any camera
# short of the 100+ MP ones; decoding it takes ~150 MB as RGB, while a 600 MP PNG of 633 KB took 4 GB.
MAX_PIXELS = 50_000_000

# ---------------------------------------------------------------- the Rectify canvas (JSON strokes)
MAX_CANVAS_CHARS = 2_000_000  # the JSON text itself (a 20,000-point drawing is ~300 KB)
MAX_CANVAS_STROKES = 1_000
MAX_CANVAS_POINTS = 20_000  # rectifying 20,000 points in 500 strokes takes ~5 s (simplified to the model's 96)
MAX_COORD = 1e5  # |x|, |y| in canvas pixels

# ---------------------------------------------------------------- tracing an uploaded drawing (strokes.vectorize)
# A line drawing at 512 px traces to tens or hundreds of paths (60 long crossing lines: 4,100, traced in 0.7 s);
# a 512x512 black/white noise image to ~144,500 (10 s to trace, and ordering them compared every pair). Both
# figures are counted from the skeleton before tracing.
MAX_TRACED_PATHS = 5_000
MAX_SKELETON_PIXELS = 60_000  # one-pixel-wide ink left after thinning, at most 512 px on the long side

# ---------------------------------------------------------------- style zips (style.archive)
MAX_STYLE_BYTES = 256 * 1024**2  # all members together, uncompressed (from the headers, then counted while streaming)
MAX_STYLE_JSON_BYTES = 1024**2  # style.json and config.json each

# ---------------------------------------------------------------- numbers typed by users (or sent over the API)
MAX_SEED = 2**32 - 1
# The 1000-step sampler, per request: on one thread, 16 sketches took 76 s at light load; at load average 14 on the
# 2 cores, 2 took 47 s and 8 took 126 s. 4 keeps it near the seconds budget even then.
MAX_DDPM_SKETCHES = 4

# ---------------------------------------------------------------- seconds per request (CPU jobs), worst input
# What the input budgets above hold each job to: its worst admitted input, measured on its own (benchmarks/load.py
# --worst: Classic HED on a 50 MP PNG 28 s, Rectify of 20,000 points in 1,000 strokes at guidance 4 16 s on one
# thread, 16 skip-sampled sketches 13 s). Rectify/heal and Draw strokes also carry a jobs.Deadline of these seconds:
# their samplers check it before every denoising step and stop with a sentence naming the budget (on a machine
# loaded 6x over, load average 12 on 2 cores, the worst admitted Rectify took 87 s; now it stops at 20 s).
REQUEST_SECONDS = {"classic_sketch": 30, "rectify": 20, "draw_strokes": 60}

# ---------------------------------------------------------------- files the app writes (ui/common.py sweeps them)
OUTPUT_TTL_S = 120  # a request's output files, copied to Gradio's cache when the response is sent
SESSION_TTL_S = 24 * 3600  # a session's own folder (trained or uploaded styles) once nothing in it has changed
SWEEP_EVERY_S = 60
