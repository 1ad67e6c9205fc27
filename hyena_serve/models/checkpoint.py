"""Load and save weights in the published key layout; resample Hpx filters to a new size.

Our module tree has the key layout of the released checkpoints (see ``metaformer.py``), so
no key mapping is needed beyond unwrapping the usual containers (``{"state_dict": ...}``,
``{"model": ...}``) and a DistributedDataParallel ``module.`` prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hyena_serve.layers.implicit_filter import centre_distance

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_SHOW = 10  # keys listed per category in error messages


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes do not fit the model."""


def _unwrap(obj) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict (mapping of tensors), got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``) on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix not in _TORCH_SUFFIXES:
        raise ValueError(f"{path}: unknown checkpoint format; expected .safetensors or one of {_TORCH_SUFFIXES}")
    return _unwrap(torch.load(path, map_location="cpu", weights_only=True))


def _listing(title: str, items: list[str]) -> str:
    more = f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return f"{title} ({len(items)}): {', '.join(items[:_SHOW])}{more}"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                     source: str = "state dict") -> None:
    """Raise :class:`CheckpointMismatchError` naming missing / unexpected keys (when
    ``strict``) and every shape mismatch, with ``source`` (the path) in the message."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    problems = []
    if strict and missing:
        problems.append(_listing("missing keys", missing))
    if strict and unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if shapes:
        problems.append(_listing("shape mismatches", shapes))
    if problems:
        arch = getattr(getattr(model, "pretrained_cfg", None), "architecture", type(model).__name__)
        raise CheckpointMismatchError(f"{source} does not fit model {arch}:\n  " + "\n  ".join(problems))


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                    resample: bool = False) -> nn.Module:
    """Load weights from ``path`` into ``model`` (in place) and return it.

    ``resample=True`` first adapts Hpx filters of another size (:func:`resample_filters`),
    e.g. 224 weights into ``create_model("hpx_former_s18", img_size=384)``.
    Raises FileNotFoundError, or CheckpointMismatchError listing the offending keys.
    """
    state = load_state_dict(path)
    if resample:
        state = resample_filters(state, model)
    check_state_dict(model, state, strict=strict, source=str(path))
    model.load_state_dict(state, strict=strict)
    return model


def save_checkpoint(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write the state dict as ``.safetensors`` (by suffix) or with ``torch.save``."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def resample_filters(state_dict: Mapping[str, torch.Tensor], model: nn.Module, *,
                     reference_distance_scale: bool = False) -> dict[str, torch.Tensor]:
    """Adapt the Hpx implicit filters of ``state_dict`` to the filter sizes of ``model``.

    For every ``…long_conv.z`` (1, E, Kh, Kw) whose size differs from the model's, ``z`` is
    resized bicubically (antialiased) to the new size, so the filter is the old one stretched
    by ``K_new/K_old``; ``…long_conv.distance_map`` is recomputed for the new size and scaled
    by ``K_old/K_new`` per dim so the learned decay stretches with it.
    ``reference_distance_scale=True`` instead divides by ``(K_new/2)/K_old`` (last dim), the
    scaling the reference implementation's ``_384_interpolate`` model applies. Other keys
    pass through unchanged. Typical use: 224 weights of ``hpx_former_s18`` into
    ``create_model("hpx_former_s18", img_size=384)`` (K 111/55/27/13 → 191/95/47/23).
    """
    target = model.state_dict()
    out = dict(state_dict)
    for key, z in state_dict.items():
        if not key.endswith("long_conv.z") or key not in target or target[key].shape == z.shape:
            continue
        new_hw = tuple(target[key].shape[-2:])
        old_hw = tuple(z.shape[-2:])
        out[key] = F.interpolate(z.float(), size=new_hw, mode="bicubic", align_corners=False,
                                 antialias=True).to(z.dtype)
        dist_key = key[: -len("z")] + "distance_map"
        if dist_key in state_dict:
            dist = state_dict[dist_key]
            if reference_distance_scale:
                new = centre_distance(*new_hw) / ((new_hw[-1] / 2) / old_hw[-1])
            else:
                rows = (torch.arange(new_hw[0]) + 0.5 - new_hw[0] / 2) * (old_hw[0] / new_hw[0])
                cols = (torch.arange(new_hw[1]) + 0.5 - new_hw[1] / 2) * (old_hw[1] / new_hw[1])
                new = torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
            out[dist_key] = new[None, None].to(dist.dtype)
    return out
