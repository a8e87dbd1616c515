"""The diffusion wing: Stable Diffusion backbones (hub id, local folder, tiny, SD-shaped), feature taps and
extraction (noise-and-extract), DDIM sampling, and the representative-timestep analysis."""
