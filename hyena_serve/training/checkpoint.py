"""Training checkpoints (everything needed to continue exactly) and serving weights.

``last.pt`` holds model, optimizer, scheduler, grad-scaler, epoch, best accuracy, every
process's RNG state and the run's arguments. The model weights are also written as
``.safetensors`` (last and best epoch) so serving never has to unpickle a training file.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from hyena_serve.files import atomic_write
from hyena_serve.training.distributed import DistContext

LAST = "last.pt"
WEIGHTS_LAST = "model.safetensors"
WEIGHTS_BEST = "model_best.safetensors"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(ctx: DistContext) -> list[dict[str, Any]]:
    """Every process's RNG state, in rank order (drop-path draws differ per process)."""
    if not ctx.enabled:
        return [rng_state()]
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, rng_state())
    return states


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Model weights as safetensors; ``metadata`` values are stored JSON-encoded."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})


def save_training_state(path: Path, *, model: nn.Module, optimizer, scheduler, scaler, epoch: int,
                        best_val_acc: float, best_epoch: int, rng_states: list, args: dict,
                        extra: dict[str, Any]) -> None:
    _atomic_torch_save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": epoch,
        "best_val_acc": best_val_acc,
        "best_epoch": best_epoch,
        "rng": rng_states,
        "args": args,
        **extra,
    }, path)


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    # weights_only=False: the file holds RNG states (numpy arrays, python tuples) that the
    # safe unpickler rejects. Only resume from checkpoints you wrote.
    return torch.load(path, map_location="cpu", weights_only=False)
