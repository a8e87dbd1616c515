"""Representative-timestep analysis (DiffSketch section 2): which diffusion timesteps carry distinct features?

Sample N images with DDIM; at every timestep of the grid, pool each decoder tap's features (both guidance
branches) to a small grid and concatenate them: one vector per (image, timestep). PCA(25) on the raw vectors (no
per-dimension z-scoring, as in the official analysis), then k-means for each k in a range, scored by silhouette,
Davies-Bouldin and Calinski-Harabasz.

DESIGN: the features are taken the way training and Photo -> Sketch take them (`--path extract`, the default):
each generated image's z0 is noised to every grid timestep and extracted (noise-and-extract), so the analysis
ranks the features the generator actually sees. `--path trajectory` records them along the sampling trajectory
instead, as the DiffSketch paper does (its generator trains on trajectory features; ours does not). The chosen k (best silhouette unless given)
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
from .features import decoder_taps
from .taps import Taps, to_nchw
from .sampling import ddim_sample


PATHS = ("extract", "trajectory")


@torch.no_grad()
def collect(backbone: Backbone, n_images: int = 100, steps: int = 50, pool: int = 4, batch: int = 4,
            prompt: str = "", guidance: float = 5.0, seed: int = 0, path: str = "extract",
            taps: list[str] | None = None) -> tuple[np.ndarray, list[int]]:
    """(n_images, steps, D) pooled decoder features at every grid timestep, and the grid (descending)."""
    if path not in PATHS:
        raise BadInputError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    if path == "extract":
        by_tap, grid = collect_by_tap(backbone, n_images, steps, pool, batch, prompt, guidance, seed, taps)
        return np.concatenate(list(by_tap.values()), -1), grid
    unet = backbone.unet
    cond_all, uncond = backbone.encode_prompt(prompt), backbone.encode_prompt("")
    per_image: list[np.ndarray] = []
    grid: list[int] = []
    latent_hw = (unet.config.sample_size, unet.config.sample_size)
    for start in range(0, n_images, batch):
        b = min(batch, n_images - start)
        rows: list[torch.Tensor] = []
        with Taps(unet, taps or decoder_taps(unet)) as taps_:
            def after(_m, _i, _o):
                vecs = [F.adaptive_avg_pool2d(to_nchw(r[-1].float(), latent_hw), pool).flatten(1)
                        for r in taps_.records.values()]
                rows.append(torch.cat(vecs, 1).view(2, b, -1).transpose(0, 1).flatten(1).cpu())  # (b, D)
                for r in taps_.records.values():
                    r.clear()

            handle = unet.register_forward_hook(after)
            try:
                ddim_sample(backbone, cond_all.expand(b, -1, -1), uncond, steps=steps, guidance=guidance,
                            seed=seed + start, callback=lambda i, t, x: grid.append(t) if start == 0 else None)
            finally:
                handle.remove()
        per_image.append(torch.stack(rows, 1).numpy())  # (b, steps, D)
    return np.concatenate(per_image), grid


@torch.no_grad()
def collect_by_tap(backbone: Backbone, n_images: int = 100, steps: int = 50, pool: int = 4, batch: int = 4,
                   prompt: str = "", guidance: float = 5.0, seed: int = 0,
                   taps: list[str] | None = None) -> tuple[dict[str, np.ndarray], list[int]]:
    """Noise-and-extract at every grid timestep on DDIM-generated images (the path training and inference use):
    tap -> (n_images, steps, G * C * pool^2), and the grid (descending)."""
    from .features import FeatureExtractor
    from .sampling import ddim_grid, stream_seed

    grid = ddim_grid(backbone, steps)
    cond_all, uncond = backbone.encode_prompt(prompt), backbone.encode_prompt("")
    ex = FeatureExtractor(backbone, taps=taps, timesteps=grid)
    per_tap: dict[str, list[np.ndarray]] = {n: [] for n in ex.taps}
    for start in range(0, n_images, batch):
        b = min(batch, n_images - start)
        cond = cond_all.expand(b, -1, -1)
        z0 = ddim_sample(backbone, cond, uncond, steps=steps, guidance=guidance, seed=stream_seed(seed, 1, start))
        feats = ex.unet_features(z0, cond, uncond, seed=stream_seed(seed, 2, start))
        for name, m in feats.maps.items():  # (b, G, T, C, H, W) -> (b, T, G * C * pool^2)
            pooled = F.adaptive_avg_pool2d(m.flatten(0, 2), pool).reshape(b, m.shape[1], m.shape[2], -1)
            per_tap[name].append(pooled.transpose(1, 2).flatten(2).cpu().numpy())
    return {n: np.concatenate(v) for n, v in per_tap.items()}, grid


def rank_taps(by_tap: dict[str, np.ndarray], labels: np.ndarray, n_components: int = 25, seed: int = 0) -> dict:
    """Silhouette of each tap's own features under a timestep clustering (labels per (image, timestep) point):
    how well that tap alone tells the chosen timestep groups apart. Highest first."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    scores = {}
    for name, v in by_tap.items():
        flat = v.reshape(-1, v.shape[-1]).astype(np.float64)
        z = PCA(n_components=min(n_components, flat.shape[0] - 1, flat.shape[1]), random_state=seed).fit_transform(flat)
        scores[name] = float(silhouette_score(z, labels))
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def select(vectors: np.ndarray, grid: list[int], k_range: range, k: int | None = None, n_components: int = 25,
           seed: int = 0, standardize: bool = False) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    n, s, d = vectors.shape
    flat = vectors.reshape(n * s, d).astype(np.float64)
    if standardize:  # off by default: z-scoring lets near-constant dimensions weigh as much as informative ones
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
    return {"timesteps": sorted(set(nearest)), "k": chosen, "scores": {str(q): v for q, v in scores.items()},
            "labels": km.labels_.tolist()}


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
    p.add_argument("--images", type=cli.at_least(1), default=100)
    p.add_argument("--steps", type=cli.at_least(1), default=50)
    p.add_argument("--k-min", type=cli.at_least(1), default=5)
    p.add_argument("--k-max", type=cli.at_least(1), default=20)
    p.add_argument("--k", type=cli.at_least(1), default=None, help="force k (DiffSketch uses 13)")
    p.add_argument("--batch", type=cli.at_least(1), default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--path", choices=PATHS, default="extract",
                   help="extract: noise-and-extract at each timestep (what training uses); trajectory: along DDIM")
    p.add_argument("--standardize", action="store_true", help="z-score each dimension before PCA")
    p.add_argument("--taps", default=None, help="comma-separated UNet taps (default: the 12 decoder resnets)")
    p.add_argument("--rank-taps", action="store_true",
                   help="also rank each tap by how well its features alone separate the timestep clusters")
    p.add_argument("--out", required=True)
    return p


def _main(args: argparse.Namespace) -> int:
    bb = load_backbone(args.backbone)
    taps = [t.strip() for t in args.taps.split(",") if t.strip()] if args.taps else None
    if args.rank_taps and args.path != "extract":
        raise BadInputError("--rank-taps works with --path extract")
    try:
        if args.path == "extract":
            by_tap, grid = collect_by_tap(bb, args.images, args.steps, batch=args.batch, seed=args.seed, taps=taps)
            vectors = np.concatenate(list(by_tap.values()), -1)
        else:
            vectors, grid = collect(bb, args.images, args.steps, batch=args.batch, seed=args.seed, path=args.path,
                                    taps=taps)
    except ValueError as exc:  # an unknown tap
        raise BadInputError(str(exc)) from None
    result = select(vectors, grid, range(args.k_min, args.k_max + 1), args.k, seed=args.seed,
                    standardize=args.standardize)
    labels = np.asarray(result.pop("labels"))
    result["path"] = args.path
    if args.rank_taps:
        result["tap_ranking"] = rank_taps(by_tap, labels, seed=args.seed)
        for name, score in result["tap_ranking"].items():
            print(f"  {score:+.3f}  {name}")
    result |= {"images": args.images, "steps": args.steps, "backbone": bb.fingerprint}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"k = {result['k']}: timesteps {result['timesteps']} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
