"""A drawing canvas that keeps stroke order (Gradio's Sketchpad only returns rasters): a gr.HTML component whose
value is the strokes as JSON [[[x, y], ...], ...] in canvas pixels."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np

from diffsketch_core.budgets import MAX_CANVAS_CHARS, MAX_CANVAS_POINTS, MAX_CANVAS_STROKES, MAX_COORD

NOT_A_DRAWING = ("The canvas sent something that is not a drawing (it must be a list of strokes, each a list of "
                 "[x, y] numbers); press Clear and draw again.")
CANVAS_SIZE = 512
CANVAS_HTML = f"""<div class="ds-pad"><canvas width="{CANVAS_SIZE}" height="{CANVAS_SIZE}"></canvas>
<div class="ds-tools"><button type="button" data-action="undo">Undo</button>
<button type="button" data-action="clear">Clear</button><span data-role="count"></span></div></div>"""
CANVAS_CSS = """.ds-pad canvas { width: 100%; max-width: 512px; aspect-ratio: 1; border: 1px solid #bbb; border-radius: 6px;
  touch-action: none; background: #fff; cursor: crosshair; display: block; }
.ds-tools { margin-top: 6px; display: flex; gap: 8px; align-items: center; }
.ds-tools button { padding: 2px 12px; border: 1px solid #bbb; border-radius: 4px; background: #f6f6f6; }"""
# Records strokes in order (Sketchpad only returns rasters) and sends them as JSON [[[x, y], ...], ...] in canvas
# pixels. Listeners sit on the component's root, which survives re-renders; the canvas is redrawn from the strokes.
CANVAS_JS = """
const strokes = []; let current = null;
const canvas = () => element.querySelector('canvas');
const publish = () => { props.value = JSON.stringify(strokes); trigger('change');
  requestAnimationFrame(redraw); };
function point(e) { const c = canvas(), r = c.getBoundingClientRect();
  return [Math.round((e.clientX - r.left) * c.width / r.width * 10) / 10,
          Math.round((e.clientY - r.top) * c.height / r.height * 10) / 10]; }
function redraw() { const c = canvas(); if (!c) return; const g = c.getContext('2d');
  g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height);
  g.strokeStyle = '#111'; g.lineWidth = 4; g.lineCap = 'round'; g.lineJoin = 'round';
  for (const s of current ? strokes.concat([current]) : strokes) { g.beginPath();
    s.forEach((p, i) => i ? g.lineTo(p[0], p[1]) : g.moveTo(p[0], p[1]));
    if (s.length === 1) g.lineTo(s[0][0] + 0.1, s[0][1]); g.stroke(); }
  const n = element.querySelector('[data-role=count]'); if (n) n.textContent = strokes.length + ' strokes'; }
element.addEventListener('pointerdown', e => { if (e.target.tagName !== 'CANVAS') return;
  e.target.setPointerCapture(e.pointerId); current = [point(e)]; redraw(); });
element.addEventListener('pointermove', e => { if (current) { current.push(point(e)); redraw(); } });
const finish = () => { if (!current) return; strokes.push(current); current = null; publish(); };
element.addEventListener('pointerup', finish); element.addEventListener('pointercancel', finish);
element.addEventListener('click', e => { const a = e.target.dataset && e.target.dataset.action;
  if (a === 'clear') { strokes.length = 0; publish(); } if (a === 'undo') { strokes.pop(); publish(); } });
redraw();
"""


def build(elem_id: str) -> gr.HTML:
    return gr.HTML("[]", html_template=CANVAS_HTML, css_template=CANVAS_CSS, js_on_load=CANVAS_JS, elem_id=elem_id)


def strokes_from_value(value) -> list[np.ndarray]:
    """The canvas value -> polylines (float arrays of shape (n, 2)), or gr.Error with one sentence. The value is
    typed here, at the boundary: the JSON text the canvas sends (or its parsed list, from an API client), a list of
    strokes, each a list of [x, y] finite numbers, within the canvas budgets. Nothing else (a string that names a
    file, objects, deep nesting) ever reaches the core."""
    if isinstance(value, str):
        if len(value) > MAX_CANVAS_CHARS:
            raise gr.Error(f"The drawing is too large to send ({len(value):,} characters; at most {MAX_CANVAS_CHARS:,}).")
        try:
            value = json.loads(value or "[]")
        except (ValueError, RecursionError):
            raise gr.Error(NOT_A_DRAWING) from None
    if not isinstance(value, list) or not all(isinstance(s, list) for s in value):
        raise gr.Error(NOT_A_DRAWING)
    if len(value) > MAX_CANVAS_STROKES:
        raise gr.Error(f"The drawing has {len(value):,} strokes; at most {MAX_CANVAS_STROKES:,} are accepted.")
    total = sum(len(s) for s in value)
    if total > MAX_CANVAS_POINTS:
        raise gr.Error(f"The drawing has {total:,} points; at most {MAX_CANVAS_POINTS:,} are accepted.")
    polylines = []
    for stroke in value:
        if not all(isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p) for p in stroke):
            raise gr.Error(NOT_A_DRAWING)
        if stroke:
            polylines.append(np.asarray(stroke, dtype=np.float64))
    if polylines and not all(np.isfinite(p).all() and np.abs(p).max() <= MAX_COORD for p in polylines):
        raise gr.Error(f"Stroke coordinates must be finite and within +-{MAX_COORD:g} px.")
    return polylines


def _is_number(x) -> bool:
    return isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool) and abs(x) <= MAX_COORD)
