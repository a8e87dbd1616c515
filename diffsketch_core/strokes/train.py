"""Train the stroke diffusion model on the QuickDraw folder; resumable across runs and sessions.

    python -m diffsketch_core.strokes.train --run runs/strokes --out checkpoints/stroke_diffusion --minutes 60

The run folder keeps the full training state (weights, EMA, AdamW moments, step) as safetensors + JSON; run the
same command again to continue. `--init-from` warm-starts a new run from a saved model (e.g. the shipped
checkpoint) when no run state exists. Every `--eval-every` steps the EMA model draws a few sketches per class
and the project's classifier scores them: recognition is what we watch, not only the loss. The EMA weights are
exported to `--out` as fp16 safetensors at each evaluation.

Augmentation that changes the sequence but not the drawing (`--permute`, `--reverse`: stroke order permutation and
stroke direction reversal, per sketch with that probability) comes on top of a random rotation / scale.
`--buckets K` groups the training sketches into K equal-sized length buckets and crops each batch to its bucket's
longest sketch (+1 END row), so short sketches do not pay for max_len points.

It runs under HF Accelerate (DDP across processes, each drawing its own batches; the main process evaluates and
saves), so a cluster run is one launch away:

    accelerate launch --multi_gpu --num_processes 2 -m diffsketch_core.strokes.train --run runs/ddp ...

(--multi_gpu works on CPU-only machines too: the processes then talk over gloo; `--cpu` would start one.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import cli
from ..checkpoints import save_fp16
from ..errors import BadInputError
from .data import load_split
from .diffusion import PEN_LOSS_WEIGHT, StrokeDiffusion, uniform_timesteps
from .format import (END, batch_fixed, fit_length, from_fixed, offset_scale, polylines_to_stroke3, stroke3_to_polylines,
                     validate_stroke3)
from .loaders import load_stroke_model
from .model import StrokeDenoiser


def prepare(split: str, max_len: int, scale: float | None = None):
    data = load_split(split)
    scale = scale or offset_scale(data.sketches)
    b = batch_fixed(data.sketches, max_len, scale)
    return data, scale, torch.from_numpy(b.offsets), torch.from_numpy(b.pen), torch.from_numpy(data.labels)


def augment(offsets: torch.Tensor, gen: torch.Generator, max_deg: float = 10.0, scale=(0.9, 1.1)) -> torch.Tensor:
    """Random rotation + anisotropic scale per sketch; padding (zero motion) stays zero."""
    b = offsets.shape[0]
    a = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(max_deg)
    s = scale[0] + torch.rand(b, 2, generator=gen) * (scale[1] - scale[0])
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], -1).view(b, 2, 2)
    m = rot * s[:, None, :]  # rot @ diag(s)
    return offsets @ m.transpose(1, 2)


def reorder(s: np.ndarray, rng: np.random.Generator, permute: float = 0.0, reverse: float = 0.0) -> np.ndarray:
    """The same drawing as another sequence: with probability `permute` its strokes in a random order, each stroke
    reversed with probability `reverse`. The first point stays at the origin (the data's convention)."""
    polys = stroke3_to_polylines(s)
    if len(polys) > 1 and rng.random() < permute:
        polys = [polys[i] for i in rng.permutation(len(polys))]
    polys = [p[::-1] if rng.random() < reverse else p for p in polys]
    out = polylines_to_stroke3(polys)
    out[0, :2] = 0
    return out


def length_buckets(lengths: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices split into k equal-sized groups of similar length (shortest first); picking a group uniformly and
    then a batch inside it keeps every sketch equally likely."""
    order = np.argsort(lengths, kind="stable")
    return [b for b in np.array_split(order, max(1, min(k, len(order)))) if len(b)]


@torch.no_grad()
def draw(model: StrokeDenoiser, labels: list[int], steps: int = 50, seed: int = 0, guidance: float = 4.0):
    diff = StrokeDiffusion(model.config.num_train_timesteps)
    res = diff.sample(model, torch.tensor(labels), uniform_timesteps(steps, diff.T), guidance=guidance, seed=seed)
    scale = model.config.offset_scale
    return [from_fixed(o, p, scale) for o, p in zip(res.offsets.numpy(), res.pen.numpy())]


def recognition(model: StrokeDenoiser, classifier, per_class: int = 3, seed: int = 0) -> float:
    labels = [k for k in range(model.num_classes) for _ in range(per_class)]
    sketches = draw(model, labels, seed=seed)
    probs, _ = classifier.predict(sketches)
    return float((probs.argmax(1) == np.array(labels)).mean())


def warm_start(source: StrokeDenoiser, **changes) -> StrokeDenoiser:
    """A model with `source`'s config plus `changes` (e.g. pen_channel=True, gelu_approximate="none"), initialised
    from `source`: every tensor copied, and where a shape grew (a new pen channel) the new input column and output
    row start at zero (the network begins as `source` did)."""
    model = StrokeDenoiser(**{**source.config, **changes})
    state = model.state_dict()
    for k, v in source.state_dict().items():
        target = state[k].zero_()
        overlap = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, v.shape))
        target[overlap] = v[overlap]
    model.load_state_dict(state)
    return model


class Trainer:
    def __init__(self, args):
        from accelerate import Accelerator

        self.args = args
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        self.main = self.acc.is_main_process
        self.run = Path(args.run)
        if self.main:
            self.run.mkdir(parents=True, exist_ok=True)
        state_json = self.run / "state.json"
        saved = json.loads(state_json.read_text()) if state_json.exists() else None
        max_len = saved["config"]["max_len"] if saved else args.max_len
        scale = saved["config"]["offset_scale"] if saved else None
        self.data, scale, self.offsets, self.pen, self.labels = prepare("train", max_len, scale)
        self.scale, self.max_len = scale, max_len
        self.lengths = (self.pen != END).sum(1).numpy()
        self.buckets = length_buckets(self.lengths, args.buckets) if args.buckets > 1 else None
        # the sketches as the model sees them (simplified to max_len once), for sequence augmentation
        self.fitted = [fit_length(validate_stroke3(s), max_len) for s in self.data.sketches] \
            if args.permute > 0 or args.reverse > 0 else None
        if saved:
            self.model = StrokeDenoiser(**saved["config"])
        elif args.init_from:
            self.model = warm_start(load_stroke_model(args.init_from), pen_channel=args.pen_channel)
        else:
            self.model = StrokeDenoiser(max_len=max_len, d_model=args.d_model, n_layers=args.layers,
                                        n_heads=args.heads, class_names=tuple(self.data.classes), offset_scale=scale,
                                        pen_channel=args.pen_channel, gelu_approximate="none")
        self.ema = StrokeDenoiser(**self.model.config)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False).eval()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=0.0)
        self.diffusion = StrokeDiffusion(self.model.config.num_train_timesteps)
        self.step, self.log_rows = 0, []
        if saved:
            self._load_state(saved)
            log_file = self.run / "log.jsonl"
            self.log_rows = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []
        # DDP: every process starts from the same weights and draws its own batches; gradients are averaged
        self.ddp, self.opt = self.acc.prepare(self.model, self.opt)
        seed = args.seed + self.step + 100_003 * self.acc.process_index
        self.gen = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.classifier = None

    # ------------------------------------------------------------ state
    def _save_state(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
        for i, p in enumerate(self.model.parameters()):
            st = self.opt.state.get(p)
            if st:
                tensors[f"opt.{i}.exp_avg"] = st["exp_avg"]
                tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"]
                tensors[f"opt.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(self.run / "state.safetensors"))
        meta = {"step": self.step, "config": dict(self.model.config)}
        (self.run / "state.json").write_text(json.dumps(meta, indent=1))

    def _load_state(self, saved: dict) -> None:
        t = load_file(str(self.run / "state.safetensors"))
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        self.ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")})
        for i, p in enumerate(self.model.parameters()):
            if f"opt.{i}.exp_avg" in t:
                self.opt.state[p] = {"exp_avg": t[f"opt.{i}.exp_avg"], "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"],
                                     "step": t[f"opt.{i}.step"].reshape(())}
        self.step = saved["step"]

    def export(self) -> None:
        """The EMA weights as fp16 safetensors, always with exact GELU: a tanh-trained network computes the same
        noise to 3e-4 RMS (below fp16 rounding) and the exact form is twice as fast on CPU."""
        out = Path(self.args.out)
        save_fp16(warm_start(self.ema, gelu_approximate="none"), out)
        a = self.args
        (out / "training.json").write_text(json.dumps({
            "steps": self.step, "batch": a.batch, "processes": self.acc.num_processes, "init_from": a.init_from,
            "augmentation": {"permute": a.permute, "reverse": a.reverse, "buckets": a.buckets},
            "history": self.log_rows[-50:]}, indent=1))

    # ------------------------------------------------------------ loop
    def lr_at(self, step: int, frac: float = 0.0) -> float:
        """Warmup over the first steps of the whole training, then (per run) a cosine from --lr to --lr-final
        over the run's time budget (`frac` = share of it used)."""
        final = self.args.lr if self.args.lr_final is None else self.args.lr_final
        cosine = final + (self.args.lr - final) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        return cosine * min(1.0, (step + 1) / self.args.warmup)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(offsets, pen, labels) of one training batch: from one length bucket (cropped to it) when bucketing,
        sequence- and then geometry-augmented."""
        if self.buckets is None:
            idx = torch.randint(0, len(self.offsets), (self.args.batch,), generator=self.gen)
        else:
            bucket = self.buckets[int(torch.randint(0, len(self.buckets), (1,), generator=self.gen))]
            idx = torch.from_numpy(bucket[torch.randint(0, len(bucket), (self.args.batch,), generator=self.gen).numpy()])
        if self.fitted is None:
            offsets, pen = self.offsets[idx], self.pen[idx]
        else:
            b = batch_fixed([reorder(self.fitted[i], self.rng, self.args.permute, self.args.reverse) for i in idx.tolist()],
                            self.max_len, self.scale)
            offsets, pen = torch.from_numpy(b.offsets), torch.from_numpy(b.pen)
        if self.buckets is not None:  # the longest sketch of the batch and one END row after it
            n = min(self.max_len, int(self.lengths[idx.numpy()].max()) + 1)
            offsets, pen = offsets[:, :n], pen[:, :n]
        return augment(offsets, self.gen), pen, self.labels[idx]

    def train_step(self, frac: float = 0.0) -> dict:
        offsets, pen, labels = self.batch()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step, frac)
        out = self.diffusion.training_loss(self.model, offsets, pen, labels, generator=self.gen,
                                           pen_weight=self.args.pen_weight, forward=self.ddp)
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(out["loss"])
        self.acc.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            decay = min(self.args.ema, (1 + self.step) / (10 + self.step))
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1 - decay)
        self.step += 1
        return {k: float(v.detach()) for k, v in out.items()}

    def evaluate(self) -> float | None:
        path = Path(self.args.classifier)
        if self.classifier is None and (path / "config.json").exists():
            from .classifier import load_classifier
            self.classifier = load_classifier(path)
        return recognition(self.ema, self.classifier, seed=self.step) if self.classifier is not None else None

    def _clock(self, began: float, deadline: float) -> tuple[float, bool]:
        """(share of the time budget used, whether to stop), the same on every process: the main process's clock
        decides, or the processes would disagree on the learning rate and one would wait forever for the other."""
        frac = (time.time() - began) / (deadline - began)
        if self.acc.num_processes > 1:
            t = torch.tensor([frac if self.main else 0.0])
            frac = float(self.acc.reduce(t.to(self.acc.device), "sum")[0])
        return frac, frac >= 1.0 or self.step >= self.args.max_steps

    def fit(self, log=print) -> None:
        began = time.time()
        deadline = began + self.args.minutes * 60
        start, losses = time.time(), []
        while True:
            frac, stop = self._clock(began, deadline)
            if stop:
                break
            losses.append(self.train_step(frac))
            if self.step % self.args.eval_every == 0 and self.main:
                rec = self.evaluate()
                row = {"step": self.step, "lr": self.opt.param_groups[0]["lr"],
                       "mse": float(np.mean([l["mse"] for l in losses])),
                       "ce": float(np.mean([l["ce"] for l in losses])), "recognition": rec,
                       "s_per_step": (time.time() - start) / len(losses)}
                self.log_rows.append(row)
                with open(self.run / "log.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                log(json.dumps(row))
                losses, start = [], time.time()
                self._save_state()
                self.export()
        self.acc.wait_for_everyone()
        if self.main:
            self._save_state()
            self.export()
        # all processes leave together and close the process group themselves: one that exited while the main
        # process was still saving could abort in gloo's teardown (seen once in CI: SIGABRT on rank 1)
        self.acc.wait_for_everyone()
        self.acc.end_training()


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("diffsketch_core.strokes.train", __doc__)
    p.add_argument("--run", default="runs/strokes", help="folder with the resumable training state")
    p.add_argument("--out", default="checkpoints/stroke_diffusion", help="where the fp16 EMA model is exported")
    p.add_argument("--init-from", default=None, help="warm start from a saved model when the run is new")
    p.add_argument("--classifier", default="checkpoints/sketch_classifier")
    p.add_argument("--minutes", type=cli.positive, default=60)
    p.add_argument("--max-steps", type=cli.at_least(1), default=10**9)
    p.add_argument("--batch", type=cli.at_least(1), default=32)
    p.add_argument("--lr", type=cli.positive, default=1e-3)
    p.add_argument("--lr-final", type=cli.non_negative, default=None,
                   help="cosine-decay to this over the run (default: constant)")
    p.add_argument("--pen-weight", type=cli.non_negative, default=PEN_LOSS_WEIGHT,
                   help="weight of the pen cross-entropy next to the noise MSE")
    p.add_argument("--pen-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="diffuse the pen signal beside (dx, dy) (new runs and --init-from)")
    p.add_argument("--warmup", type=cli.at_least(0), default=500)
    p.add_argument("--ema", type=cli.fraction, default=0.999)
    p.add_argument("--max-len", type=cli.at_least(8), default=96)
    p.add_argument("--d-model", type=cli.at_least(8), default=128)
    p.add_argument("--layers", type=cli.at_least(1), default=4)
    p.add_argument("--heads", type=cli.at_least(1), default=4)
    p.add_argument("--eval-every", type=cli.at_least(1), default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--permute", type=cli.fraction, default=0.0, help="probability of a random stroke order per sketch")
    p.add_argument("--reverse", type=cli.fraction, default=0.0, help="probability of reversing each stroke")
    p.add_argument("--buckets", type=cli.at_least(1), default=1,
                   help="length buckets (1: none; batches padded to --max-len)")
    return cli.run(p, _fit, argv)


def check_args(args: argparse.Namespace) -> None:
    """What the argparse types (each flag's own range) cannot see: flags that must agree."""
    if args.d_model % args.heads:
        raise BadInputError(f"--d-model ({args.d_model}) must be a multiple of --heads ({args.heads}).")


def _fit(args: argparse.Namespace) -> None:
    check_args(args)
    Trainer(args).fit()


if __name__ == "__main__":
    raise SystemExit(main())
