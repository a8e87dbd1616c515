"""Run a trained network (weights no longer changing) through ONNX Runtime on a CPU.

The module is exported in memory (no file is written) with its batch and spatial sizes left free, then run by an
ONNX Runtime session with a fixed thread count. On this 2-core CPU it is faster than PyTorch for the
convolutional networks this project ships: the Fast student at 512x512 0.064 s against 0.17 s on 1 thread
(benchmarks/student.py); a CPU style's whole apply path for a 512x512 photo (VGG16 at 256, its generator at 512,
PIL in and out) 0.42 s against 0.50 s on 2 threads and 0.74 against 0.92 on 1 (interleaved A/B on the quiet
machine, 2026-12-06). Exporting costs 1-2.5 s, once.

`onnx` (the exporter) and `onnxruntime` are optional dependencies: without them, with DIFFSKETCH_RUNTIME=torch,
or when an export fails (with a warning), `try_onnx` returns None and the caller runs PyTorch.
"""

from __future__ import annotations

import importlib.util
import io
import os
import warnings
from typing import Sequence

import torch
from torch import nn

RUNTIME_ENV = "DIFFSKETCH_RUNTIME"  # "torch" forces PyTorch; default: ONNX Runtime where it is installed


def wanted() -> bool:
    """ONNX Runtime is installed (with the exporter) and not switched off."""
    if os.environ.get(RUNTIME_ENV, "").strip().lower() == "torch":
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


class OnnxModule:
    """`module(*inputs)` -> one tensor, run by ONNX Runtime. `free` names each input's and the output's free axes
    (e.g. {"x": {0: "batch", 2: "h", 3: "w"}}); `examples` are inputs of the right rank to trace with."""

    def __init__(self, module: nn.Module, examples: Sequence[torch.Tensor], names: Sequence[str],
                 free: dict[str, dict[int, str]], threads: int):
        import onnxruntime as ort

        buf = io.BytesIO()
        module = module.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape branches and constant folding, every time
            torch.onnx.export(module, tuple(examples), buf, input_names=list(names), output_names=["out"],
                              dynamic_axes=free, opset_version=17, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.names = list(names)
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {n: x.detach().float().contiguous().cpu().numpy() for n, x in zip(self.names, inputs)}
        return torch.from_numpy(self.session.run(None, feed)[0])


def try_onnx(module: nn.Module, examples: Sequence[torch.Tensor], names: Sequence[str],
             free: dict[str, dict[int, str]], threads: int, what: str) -> OnnxModule | None:
    """An OnnxModule, or None when ONNX Runtime is not wanted or cannot run `what` (then it warns once)."""
    if not wanted():
        return None
    try:
        return OnnxModule(module, examples, names, free, threads)
    except Exception as exc:  # an export problem must not take the feature down: PyTorch runs the same network
        warnings.warn(f"ONNX Runtime could not run {what} ({type(exc).__name__}: {exc}); using PyTorch.")
        return None
