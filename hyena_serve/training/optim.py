"""AdamW parameter groups and the per-step warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def _is_no_decay(name: str, param: nn.Parameter, skip: Iterable[str]) -> bool:
    # Norm weights, biases, res-scales, StarReLU's scalars and the filters' per-channel
    # (1, C, 1, 1) decays/shifts/frequencies all have at most one non-singleton dimension:
    # shrinking them towards 0 changes what the layer computes rather than regularising it.
    if sum(s > 1 for s in param.shape) <= 1 or name.endswith(".bias"):
        return True
    return any(name == s or name.startswith(s + ".") for s in skip)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices/kernels and the undecayed rest.

    A model may name more undecayed parameters (or module prefixes) through timm's
    ``no_weight_decay()`` convention.
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if _is_no_decay(name, p, skip) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class WarmupCosine:
    """LR multiplier at optimizer step ``s`` (0-based): linear warmup from 1/warmup to 1
    over ``warmup_steps``, then a half cosine down to ``floor`` at ``total_steps``.

    A plain object (not a lambda) so ``LambdaLR.state_dict()`` can store it.
    """

    def __init__(self, warmup_steps: int, total_steps: int, floor: float = 0.0):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps})"
                             " and total_steps >= 1")
        self.warmup_steps, self.total_steps, self.floor = warmup_steps, total_steps, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(warmup_steps, total_steps, floor=min_lr / base if base > 0 else 0.0))
