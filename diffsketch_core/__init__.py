"""DiffSketch Studio core: everything the app does, with no UI code.

Modules (one concept each): `backbone` loads Stable Diffusion parts, `features` pulls activations out of
them, `extractors` holds the classic edge/line extractors, `images` normalises user images.
"""

__version__ = "0.1.0"
