"""Vector sketches: stroke-3 data, a diffusion model over strokes (SketchKnitter), rendering and export."""
