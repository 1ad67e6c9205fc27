"""The ``digits`` dataset: scikit-learn's 1,797 8×8 handwritten digits as small RGB images.

The images (16 grey levels) are scaled to [0, 1], upsampled bilinearly to ``img_size``
once, and kept in memory as one-channel tensors; batches are augmented on the fly with a
random affine warp, replicated to three channels and normalised. The train/val split is
stratified and depends only on ``seed``, so every process of a distributed run and every
resumed run sees the same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NUM_CLASSES = 10
#: Class names: the digit each class is.
DIGITS_LABELS = tuple(str(i) for i in range(NUM_CLASSES))
#: Fixed normalisation (the upsampled images have mean ≈ 0.31, std ≈ 0.32): fixed numbers
#: keep preprocessing identical across seeds, subsets and serving; they are saved with the
#: weights.
DIGITS_MEAN = (0.30, 0.30, 0.30)
DIGITS_STD = (0.40, 0.40, 0.40)


@dataclass
class Split:
    """One-channel images in [0, 1] (N, 1, S, S) and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.numel()


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class shuffled split: ``val_fraction`` of every class goes to val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _subset(indices: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(indices):
        return indices
    return np.sort(np.random.default_rng(seed + 1).permutation(indices)[:n])


def load_digits_splits(img_size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                       subset: int | None = None) -> tuple[Split, Split]:
    """Train and val splits of scikit-learn's digits at ``img_size``×``img_size``.

    ``subset`` caps both splits (a random, seed-determined choice) for quick runs and tests.
    """
    from sklearn.datasets import load_digits  # optional dependency, only needed here

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = images.clamp_(0.0, 1.0)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, val_idx = stratified_split(digits.target, val_fraction, seed)
    train_idx, val_idx = _subset(train_idx, subset, seed), _subset(val_idx, subset, seed)
    return (Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx]))


def random_affine(x: torch.Tensor, generator: torch.Generator, max_rotate: float = 10.0,
                  scale: tuple[float, float] = (0.9, 1.1), max_shift: float = 0.1) -> torch.Tensor:
    """Warp each image by its own random rotation (degrees), scale and shift (fraction of
    the side); uncovered pixels become 0, the digits' background."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-max_rotate, max_rotate) * (math.pi / 180.0)
    s = uniform(*scale)
    # affine_grid maps output to input coordinates in [-1, 1], so a shift of f·side is 2f.
    tx, ty = uniform(-2 * max_shift, 2 * max_shift), uniform(-2 * max_shift, 2 * max_shift)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_model_input(x: torch.Tensor, mean=DIGITS_MEAN, std=DIGITS_STD) -> torch.Tensor:
    """(N, 1, S, S) in [0, 1] → normalised (N, 3, S, S)."""
    x = x.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
