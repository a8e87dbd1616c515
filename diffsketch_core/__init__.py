"""DiffSketch Studio core: everything the app does, with no UI code (it never imports gradio).

One wing per capability: `diffusion` (SD backbones, features, sampling, timesteps), `style` (DiffSketch: generator,
training, photo -> sketch), `strokes` (SketchKnitter: stroke diffusion, recognizability, rectify/heal),
`extractors` (HED, PiDiNet, XDoG, Canny). The ground floor holds what wings share: `images`, `errors`,
`settings`, `jobs`, `metrics`, `checkpoints`, `perceptual` (LPIPS/CLIP), `cli`.
"""

__version__ = "0.1.0"
