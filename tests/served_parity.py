"""Shared by the mixer export tests: an exported artifact in ONNX Runtime against the served
torch model of the same spec, on one random batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_relative_error(spec, onnx_path: Path, batch: int = 3, seed: int = 0) -> float:
    """max |ORT − torch| / max |torch| over the logits of a random ``batch`` at the spec's size."""
    import onnxruntime as ort
    import torch

    from hyena_serve.artifact import build_served_model
    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

    model, _ = build_served_model(spec)
    res = spec.resolution
    x = np.random.default_rng(seed).standard_normal((batch, 3, res, res)).astype(np.float32)
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())
