"""One training epoch and one evaluation pass over in-memory splits."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from hyena_serve.training.data import Split, random_affine, to_model_input
from hyena_serve.training.distributed import DistContext, all_reduce_sum


@dataclass
class EpochStats:
    loss: float
    acc: float
    count: int


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU, fp16 on CUDA (paired with a GradScaler)."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def steps_per_epoch(n_train: int, batch_size: int, ctx: DistContext) -> int:
    per_rank = math.ceil(n_train / ctx.world_size)
    return math.ceil(per_rank / (batch_size // ctx.world_size))


def make_sampler(n_train: int, seed: int, ctx: DistContext) -> DistributedSampler:
    # Also used without a process group (1 replica): the order depends only on (seed,
    # epoch), which is what makes a resumed run see the same batches.
    return DistributedSampler(range(n_train), num_replicas=ctx.world_size, rank=ctx.rank,
                              shuffle=True, seed=seed, drop_last=False)


def train_one_epoch(model: nn.Module, split: Split, sampler: DistributedSampler, *, epoch: int,
                    batch_size: int, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler,
                    scaler: torch.amp.GradScaler, criterion: nn.Module, device: torch.device,
                    amp: bool, clip_grad: float, augment: bool, seed: int, ctx: DistContext,
                    progress: bool, desc: str) -> EpochStats:
    model.train()
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    per_rank = batch_size // ctx.world_size
    aug_gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1_009 + ctx.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum, correct, count = 0.0, 0, 0
    n_steps = math.ceil(len(order) / per_rank)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False, dynamic_ncols=True,
               file=sys.stderr)
    for start in range(0, len(order), per_rank):
        idx = order[start:start + per_rank]
        x, y = split.images[idx], split.labels[idx]
        if augment:
            x = random_affine(x, aug_gen)
        x, y = to_model_input(x).to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n = y.numel()
        loss_sum += loss.item() * n
        correct += (logits.argmax(1) == y).sum().item()
        count += n
        bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}",
                        lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
        bar.update()
    bar.close()
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], device, ctx)
    return EpochStats(loss_sum / count, correct / count, int(count))


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, batch_size: int, device: torch.device, amp: bool,
             ctx: DistContext) -> EpochStats:
    """Plain cross-entropy and accuracy, each process on every ``world_size``-th sample."""
    model.eval()
    idx_all = torch.arange(ctx.rank, len(split), ctx.world_size)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(idx_all), batch_size):
        idx = idx_all[start:start + batch_size]
        x, y = to_model_input(split.images[idx]).to(device), split.labels[idx].to(device)
        with autocast(device, amp):
            logits = model(x).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, len(idx_all)], device, ctx)
    return EpochStats(loss_sum / max(count, 1), correct / max(count, 1), int(count))
