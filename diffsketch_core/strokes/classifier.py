"""A QuickDraw sketch classifier on 64x64 renders: the judge of recognizability (SketchKnitter's r_t), of
generated sketches (recognition accuracy, Frechet distance of its features) and of rectification.

Train:  python -m diffsketch_core.strokes.classifier --out checkpoints/sketch_classifier

A second, independent judge (other seed, input size, line width and depth) checks that a gain made by guiding
with the first is real rather than adversarial:
        python -m diffsketch_core.strokes.classifier --out checkpoints/sketch_classifier_eval --seed 1 \
            --image-size 48 --line-width 1.2 --widths 32 64 128 192
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .. import cli
from ..checkpoints import load_saved, save_fp16
from ..errors import BadInputError
from .format import random_affine
from .raster import render_ink


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SketchClassifier(ModelMixin, ConfigMixin):
    """Strided stem, then stages of two 3x3 convs (BN, ReLU) with max-pooling between; global average pool;
    a 256-d embedding; a linear head. About 0.3 M parameters: ~1 s per batch of 128 to train on one CPU core."""

    @register_to_config
    def __init__(self, class_names: tuple[str, ...] = (), image_size: int = 64, line_width: float = 1.5,
                 widths: tuple[int, ...] = (32, 64, 128), feature_dim: int = 256):
        super().__init__()
        layers, cin = [_conv(1, widths[0], stride=2)], widths[0]
        for i, w in enumerate(widths):
            layers += [_conv(cin, w), _conv(w, w)] if i else [_conv(cin, w)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(cin, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(feature_dim, len(class_names)))

    def features(self, ink: torch.Tensor) -> torch.Tensor:
        """ink (B, 1, S, S) in [0, 1] -> (B, feature_dim) penultimate features (for Frechet distances)."""
        return self.embed(self.body(ink).mean(dim=(2, 3)))

    def forward(self, ink: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(ink))

    def render(self, sketches: list[np.ndarray]) -> torch.Tensor:
        ink = render_ink(sketches, self.config.image_size, self.config.line_width)
        return torch.from_numpy(ink).unsqueeze(1).to(self.device)

    @torch.no_grad()
    def predict(self, sketches: list[np.ndarray], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, classes), features (n, feature_dim)) for stroke-3 sketches."""
        self.eval()
        probs, feats = [], []
        for i in range(0, len(sketches), batch):
            f = self.features(self.render(sketches[i:i + batch]))
            feats.append(f.cpu())
            probs.append(self.head(f).softmax(-1).cpu())
        return torch.cat(probs).numpy(), torch.cat(feats).numpy()

    def class_index(self, name: str) -> int:
        names = list(self.config.class_names)
        if name not in names:
            raise BadInputError(f"Unknown class {name!r}; known classes: {', '.join(names)}.")
        return names.index(name)


def load_classifier(path: str | Path) -> SketchClassifier:
    return load_saved(SketchClassifier, path, "sketch-classifier").eval()


def accuracy(model: SketchClassifier, sketches: list[np.ndarray], labels: np.ndarray) -> float:
    probs, _ = model.predict(sketches)
    return float((probs.argmax(1) == labels).mean())


def train(out: Path, epochs: int = 12, batch: int = 128, lr: float = 2e-3, seed: int = 0, image_size: int = 64,
          line_width: float = 1.5, widths: tuple[int, ...] = (32, 64, 128), log=print) -> dict:
    from .data import load_split

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_set, valid_set, test_set = (load_split(s) for s in ("train", "valid", "test"))
    model = SketchClassifier(class_names=tuple(train_set.classes), image_size=image_size, line_width=line_width,
                             widths=tuple(widths))
    jitter = (line_width * 2 / 3, line_width * 22 / 15)  # 1.0..2.2 around the default 1.5
    steps = epochs * (len(train_set) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    start, step = time.time(), 0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_set))
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            sketches = [random_affine(train_set.sketches[j], rng) for j in idx]
            ink = torch.from_numpy(render_ink(sketches, model.config.image_size,
                                              rng.uniform(*jitter))).unsqueeze(1)
            loss = F.cross_entropy(model(ink), torch.from_numpy(train_set.labels[idx]), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        val = accuracy(model, valid_set.sketches, valid_set.labels)
        log(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f} valid acc {val:.3f} ({time.time() - start:.0f} s)")
    test = accuracy(model, test_set.sketches, test_set.labels)
    report = {"test_accuracy": test, "valid_accuracy": val, "epochs": epochs, "steps": step, "batch": batch, "seed": seed,
              "train_sketches": len(train_set), "seconds": round(time.time() - start), "threads": torch.get_num_threads()}
    save_fp16(model, out)
    (out / "training.json").write_text(json.dumps(report, indent=2))
    log(f"test accuracy {test:.3f}; saved to {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("diffsketch_core.strokes.classifier", __doc__)
    p.add_argument("--out", type=Path, default=Path("checkpoints/sketch_classifier"))
    p.add_argument("--epochs", type=cli.at_least(1), default=12)
    p.add_argument("--batch", type=cli.at_least(1), default=128)
    p.add_argument("--lr", type=cli.positive, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=cli.at_least(16), default=64)
    p.add_argument("--line-width", type=cli.positive, default=1.5)
    p.add_argument("--widths", type=cli.at_least(1), nargs="+", default=[32, 64, 128])
    return cli.run(p, _train, argv)


def _train(args: argparse.Namespace) -> None:
    train(args.out, args.epochs, args.batch, args.lr, args.seed, args.image_size, args.line_width, tuple(args.widths))


if __name__ == "__main__":
    raise SystemExit(main())
