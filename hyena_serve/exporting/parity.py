"""Torch vs ONNX Runtime parity of an exported classifier.

Inputs: real photos shipped with scikit-image (``skimage.data``: chelsea, coffee,
astronaut, rocket, ...) preprocessed with the model's own config
(``hyena_serve.preprocess``), plus random normal batches. Criteria (issue #3):
max |logit diff| ≤ ``rtol`` × logit scale (scale = max |torch logit| of the batch;
``rtol`` = 1e-4 in float32) and the same top-1 class. A top-1 flip counts as a tie, not a
failure, only when torch's own top-2 margin is within twice the allowed difference
(untrained models can produce near-equal logits); the report says how many.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
from hyena_serve.preprocess import Preprocessing

SKIMAGE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")


class ParityError(RuntimeError):
    """The ONNX model's outputs disagree with torch beyond the tolerance."""


@dataclass
class ParityReport:
    batches: list[dict] = field(default_factory=list)

    @property
    def max_rel_diff(self) -> float:
        return max((b["max_abs_diff"] / b["scale"] for b in self.batches), default=0.0)

    @property
    def top1_agreement(self) -> float:
        n = sum(b["n"] for b in self.batches)
        return sum(b["top1_same"] for b in self.batches) / max(n, 1)

    def summary(self) -> str:
        parts = [f"{b['name']}: max|Δ|={b['max_abs_diff']:.2e} (scale {b['scale']:.3g}), "
                 f"top-1 {b['top1_same']}/{b['n']}" + (f" ({b['ties']} ties)" if b["ties"] else "")
                 for b in self.batches]
        return "; ".join(parts)


def skimage_images(names=SKIMAGE_IMAGES):
    """PIL RGB images from ``skimage.data`` (shipped with the package, no download)."""
    from PIL import Image
    from skimage import data

    out = []
    for name in names:
        arr = getattr(data, name)()
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        out.append(Image.fromarray(arr[..., :3].astype(np.uint8)))
    return out


def real_batch(config, names=SKIMAGE_IMAGES) -> np.ndarray:
    from hyena_serve.preprocess import preprocess_images

    return preprocess_images(skimage_images(names), config).astype(np.float32)


def compare(name: str, torch_logits: np.ndarray, ort_logits: np.ndarray, rtol: float) -> dict:
    t = torch_logits.astype(np.float64)
    o = ort_logits.astype(np.float64)
    diff = float(np.abs(t - o).max())
    scale = max(float(np.abs(t).max()), 1e-12)
    allowed = rtol * scale
    top_t, top_o = t.argmax(-1), o.argmax(-1)
    same = top_t == top_o
    srt = np.sort(t, axis=-1)
    margin = srt[:, -1] - srt[:, -2] if t.shape[-1] > 1 else np.full(len(t), np.inf)
    ties = int(np.sum(~same & (margin <= 2 * allowed)))
    return dict(name=name, n=int(len(t)), max_abs_diff=diff, scale=scale, allowed=allowed,
                top1_same=int(same.sum()), ties=ties, ok=bool(diff <= allowed and (same.sum() + ties) == len(t)))


def check_parity(model: torch.nn.Module, onnx_path, config: Preprocessing | None, *, res: int, rtol: float = 1e-4,
                 random_batches: tuple[int, ...] = (1, 5), fp16: bool = False, seed: int = 0,
                 session=None, raise_on_fail: bool = True) -> ParityReport:
    """Run torch ``model`` and the ONNX model on real images and random batches."""
    import onnxruntime as ort

    if session is None:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batches = []
    if config is not None:
        batches.append(("skimage", real_batch(config.at_resolution(res))))
    gen = np.random.default_rng(seed)
    for b in random_batches:
        batches.append((f"random[{b}]", gen.standard_normal((b, 3, res, res)).astype(np.float32)))
    dtype = torch.float16 if fp16 else torch.float32
    report = ParityReport()
    for name, x in batches:
        with torch.inference_mode():
            t = model(torch.from_numpy(x).to(dtype)).float().numpy()
        feed = x.astype(np.float16) if fp16 else x
        (o,) = session.run([OUTPUT_NAME], {INPUT_NAME: feed})
        report.batches.append(compare(name, t, o.astype(np.float32), rtol))
    if raise_on_fail and not all(b["ok"] for b in report.batches):
        bad = [b for b in report.batches if not b["ok"]]
        b = bad[0]
        raise ParityError(f"ONNX Runtime disagrees with torch on {b['name']}: max |logit diff| "
                          f"{b['max_abs_diff']:.3g} > {rtol:g} x scale {b['scale']:.3g}, top-1 "
                          f"{b['top1_same']}/{b['n']} identical")
    return report
