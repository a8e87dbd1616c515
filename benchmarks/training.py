"""Per-iteration cost of one-shot style training on the `sd15-shaped` backbone (real SD-1.5 configs, random
weights) with a ViT-B/32-shaped CLIP and LPIPS-alex: SD sampling of the CDST images, feature extraction,
generator forward/backward, losses; peak memory; and the projected time of a full training.

    python benchmarks/training.py --resolution 256 --iterations 2        # CPU here: minutes per iteration
    python benchmarks/training.py --resolution 512 --gen-batch 8           # on a GPU

Sampling and extraction run once per `gen_batch` images and are amortised over that many iterations.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFSKETCH_WEIGHTS_DIR", str(ROOT.parent / "shared" / "weights"))

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks._util import machine, peak_rss_mb, timed  # noqa: E402
from diffsketch_core.diffusion.backbone import load_backbone  # noqa: E402
from diffsketch_core.perceptual import ClipImageEncoder, load_lpips, tiny_clip  # noqa: E402
from diffsketch_core.diffusion.sampling import ddim_sample  # noqa: E402
from diffsketch_core.style.training import OneShotTrainer, TrainConfig, _slice  # noqa: E402
from diffsketch_core.style.conditions import fit_prior, read_captions  # noqa: E402
from diffsketch_core.diffusion.features import FeatureBundle  # noqa: E402


def clip_b32_shaped() -> ClipImageEncoder:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return ClipImageEncoder(CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=512)))


def example_pair(size: int):
    photo = Image.new("RGB", (size, size), (180, 200, 220))
    ImageDraw.Draw(photo).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(120, 80, 40))
    sketch = Image.new("L", (size, size), 255)
    ImageDraw.Draw(sketch).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline=0, width=3)
    return photo, sketch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--iterations", type=int, default=2, help="measured iterations (after one warm-up on GPU)")
    p.add_argument("--gen-batch", type=int, default=1)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--full-iterations", type=int, default=1200, help="for the projection")
    p.add_argument("--prior-captions", type=int, default=1200, help="captions encoded for the CDST prior")
    p.add_argument("--backbone", default="sd15-shaped", help="'tiny' for a quick check of the script itself")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    setup: dict = {}
    with timed(setup, "load"):
        bb = load_backbone(args.backbone)
        clip = (clip_b32_shaped() if args.backbone != "tiny" else tiny_clip()).to(bb.device, bb.dtype)
        lp = load_lpips(bb.device)
    cfg = TrainConfig(iterations=args.iterations, resolution=args.resolution, sample_steps=args.sample_steps,
                      gen_batch=args.gen_batch)
    with timed(setup, "prior"):  # a one-off cost (cached per backbone in real use); a small prior is enough here
        prior = fit_prior(bb, read_captions()[:args.prior_captions], n_components=min(512, args.prior_captions - 1))
    with timed(setup, "trainer_setup"):  # example features, CLIP example embeddings
        trainer = OneShotTrainer(bb, *example_pair(args.resolution), "a photo of a horse in mud", cfg,
                                 clip=clip, lpips_model=lp, prior=prior)
    if cuda:
        trainer.step()
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for it in range(args.iterations):
        r: dict = {}
        n = args.gen_batch
        cond = torch.cat([trainer.conditions(it + k) for k in range(n)]).to(bb.device, bb.dtype)
        latent = args.resolution // bb.vae_scale_factor
        with timed(r, "sd_sampling"), torch.no_grad():
            z0 = ddim_sample(bb, cond, trainer.uncond, steps=args.sample_steps, guidance=cfg.guidance, seed=it,
                             latent_hw=(latent, latent))
        with timed(r, "feature_extraction"), torch.no_grad():
            bundle = FeatureBundle(trainer.extractor.unet_features(z0, cond, trainer.uncond, seed=it),
                                   trainer.extractor.vae_features(z0), z0)
        sample = _slice(bundle, 0)
        with timed(r, "generator_forward"):
            s_rec = trainer.generator(trainer.example)
            s_i = trainer.generator(sample)
        with timed(r, "clip_lpips_losses"):
            image_i = (sample.vae.rgb.float().clamp(-1, 1) + 1) / 2
            parts = trainer.loss(s_rec, trainer.target, trainer.e_s_ex, trainer.e_i_ex, s_i, image_i)
        with timed(r, "backward_adam"):
            trainer.opt.zero_grad()
            parts["total"].backward()
            trainer.opt.step()
        rows.append(r)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    per_iter = (mean["sd_sampling"] + mean["feature_extraction"]) / args.gen_batch + sum(
        mean[k] for k in ("generator_forward", "clip_lpips_losses", "backward_adam"))
    params = sum(p.numel() for p in trainer.generator.parameters())
    clip_name = "tiny" if args.backbone == "tiny" else "ViT-B/32-shaped"
    print(f"machine: {machine()}; {args.backbone} backbone, {clip_name} CLIP, LPIPS-alex; {args.resolution}x"
          f"{args.resolution}; {args.sample_steps} DDIM steps x CFG per CDST image; gen_batch {args.gen_batch}; "
          f"generator {params / 1e6:.1f} M parameters")
    print(f"setup: load {setup['load']:.1f} s, CDST prior from {args.prior_captions} captions {setup['prior']:.1f} s "
          f"(once per backbone, cached), example features + embeddings {setup['trainer_setup']:.1f} s")
    print(f"{'phase':<22}{'s per call':>12}{'s per iteration':>17}")
    for k, v in mean.items():
        share = v / args.gen_batch if k in ("sd_sampling", "feature_extraction") else v
        print(f"{k:<22}{v:>12.2f}{share:>17.2f}")
    print(f"{'total':<22}{'':>12}{per_iter:>17.2f}")
    mem = f"peak GPU {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else f"peak RSS {peak_rss_mb() / 1024:.1f} GiB"
    print(f"{mem}; projected {args.full_iterations} iterations: {per_iter * args.full_iterations / 60:.1f} min "
          f"(+ setup {setup['trainer_setup']:.0f} s)")


if __name__ == "__main__":
    main()
