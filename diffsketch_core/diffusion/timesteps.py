"""Representative-timestep analysis (DiffSketch section 2): which diffusion timesteps carry distinct features?

Sample N images with DDIM; at every step of the grid, pool each decoder tap's features (both guidance branches)
to a small grid and concatenate them: one vector per (image, timestep). PCA(25), then k-means for each k in a
range, scored by silhouette, Davies-Bouldin and Calinski-Harabasz. The chosen k (best silhouette unless given)
gives k clusters; each cluster centre maps to the grid timestep whose mean vector lies nearest to it. The set is
written as JSON that the trainer accepts (`--timesteps`).

CLI: python -m diffsketch_core.diffusion.timesteps --images 100 --out timesteps.json [--backbone tiny] [--k 13]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import cli
from .backbone import Backbone, load_backbone
from ..errors import BadInputError
from .features import Taps, decoder_taps
from .sampling import ddim_sample


@torch.no_grad()
def collect(backbone: Backbone, n_images: int = 100, steps: int = 50, pool: int = 4, batch: int = 4,
            prompt: str = "", guidance: float = 5.0, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """(n_images, steps, D) pooled decoder features along DDIM trajectories, and the grid (descending)."""
    unet = backbone.unet
    cond_all, uncond = backbone.encode_prompt(prompt), backbone.encode_prompt("")
    per_image: list[np.ndarray] = []
    grid: list[int] = []
    for start in range(0, n_images, batch):
        b = min(batch, n_images - start)
        rows: list[torch.Tensor] = []
        with Taps(unet, decoder_taps(unet)) as taps:
            def after(_m, _i, _o):
                vecs = [F.adaptive_avg_pool2d(r[-1].float(), pool).flatten(1) for r in taps.records.values()]
                rows.append(torch.cat(vecs, 1).view(2, b, -1).transpose(0, 1).flatten(1).cpu())  # (b, D)
                for r in taps.records.values():
                    r.clear()

            handle = unet.register_forward_hook(after)
            try:
                ddim_sample(backbone, cond_all.expand(b, -1, -1), uncond, steps=steps, guidance=guidance,
                            seed=seed + start, callback=lambda i, t, x: grid.append(t) if start == 0 else None)
            finally:
                handle.remove()
        per_image.append(torch.stack(rows, 1).numpy())  # (b, steps, D)
    return np.concatenate(per_image), grid


def select(vectors: np.ndarray, grid: list[int], k_range: range, k: int | None = None, n_components: int = 25,
           seed: int = 0) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    n, s, d = vectors.shape
    flat = vectors.reshape(n * s, d).astype(np.float64)
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-8)
    z = PCA(n_components=min(n_components, n * s - 1, d), random_state=seed).fit_transform(flat)
    ks = [q for q in k_range if 2 <= q < n * s]
    if not ks:
        raise BadInputError(f"No k in {list(k_range)} fits {n * s} points.")
    scores, models = {}, {}
    for q in ks:
        km = KMeans(n_clusters=q, n_init=4, random_state=seed).fit(z)
        models[q] = km
        scores[q] = {"silhouette": float(silhouette_score(z, km.labels_)),
                     "davies_bouldin": float(davies_bouldin_score(z, km.labels_)),
                     "calinski_harabasz": float(calinski_harabasz_score(z, km.labels_))}
    chosen = k if k is not None else max(ks, key=lambda q: scores[q]["silhouette"])
    km = models.get(chosen) or KMeans(n_clusters=chosen, n_init=4, random_state=seed).fit(z)
    per_t = z.reshape(n, s, -1).mean(0)  # (steps, pcs): the mean point of each timestep
    nearest = [grid[int(np.argmin(((per_t - c) ** 2).sum(1)))] for c in km.cluster_centers_]
    return {"timesteps": sorted(set(nearest)), "k": chosen, "scores": {str(q): v for q, v in scores.items()}}


def read_timesteps(path: str | Path) -> tuple[int, ...]:
    try:
        data = json.loads(Path(path).read_text())
        ts = tuple(int(t) for t in data["timesteps"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path} is not a timesteps file from diffsketch_core.timesteps ({exc}).") from None
    if not ts or any(not 0 <= t < 1000 for t in ts):
        raise BadInputError(f"{path}: timesteps must be a non-empty list in [0, 1000).")
    return ts


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("diffsketch_core.diffusion.timesteps", __doc__)
    p.add_argument("--backbone", default=None)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--k-min", type=int, default=5)
    p.add_argument("--k-max", type=int, default=20)
    p.add_argument("--k", type=int, default=None, help="force k (DiffSketch uses 13)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    return p


def _main(args: argparse.Namespace) -> int:
    bb = load_backbone(args.backbone)
    vectors, grid = collect(bb, args.images, args.steps, batch=args.batch, seed=args.seed)
    result = select(vectors, grid, range(args.k_min, args.k_max + 1), args.k, seed=args.seed)
    result |= {"images": args.images, "steps": args.steps, "backbone": bb.fingerprint}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"k = {result['k']}: timesteps {result['timesteps']} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
