"""A drawing canvas that keeps stroke order (Gradio's Sketchpad only returns rasters): a gr.HTML component whose
value is the strokes as JSON [[[x, y], ...], ...] in canvas pixels."""

from __future__ import annotations

import gradio as gr

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
