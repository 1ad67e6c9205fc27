"""Model registry: ``create_model(name, **kwargs)``, ``list_models()``, ``get_model_config(name)``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from os import PathLike

from torch import nn

from hyena_serve.variants import DEFAULT_CFGS, ModelConfig

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a variant function under its own name (it must have a default config)."""
    if fn.__name__ not in DEFAULT_CFGS:
        raise ValueError(f"model {fn.__name__!r} has no entry in DEFAULT_CFGS")
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def _entrypoints() -> dict[str, Callable[..., nn.Module]]:
    # Filled when hyena_serve.models (whose __init__ imports the model modules) is imported.
    return _ENTRYPOINTS


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a glob pattern (``"hb_*"``)."""
    names = sorted(_entrypoints())
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _check_name(name: str) -> None:
    if name not in _entrypoints():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")


def get_model_config(name: str) -> ModelConfig:
    """The default :class:`ModelConfig` (preprocessing, num_classes, resolution) of ``name``."""
    _check_name(name)
    return DEFAULT_CFGS[name]


def create_model(name: str, *, pretrained: bool = False, checkpoint_path: str | PathLike | None = None,
                 **kwargs) -> nn.Module:
    """Build a registered model.

    Keyword arguments go to the variant (``num_classes``, ``img_size`` (int or (H, W): the
    input resolution that sets the long filters' sizes), ``drop_path_rate``, ``dims``,
    ``depths``, ``head_dropout``, ``in_chans``...). ``pretrained=True`` loads the variant's
    released checkpoint from the Hugging Face Hub (through its cache; see
    :mod:`hyena_serve.weights`); ``checkpoint_path`` loads a local file. Either is loaded
    strictly (``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin``).
    The model's config is ``model.pretrained_cfg`` (also ``model.config``).
    """
    _check_name(name)
    if pretrained and checkpoint_path is not None:
        raise ValueError("give pretrained=True or checkpoint_path, not both")
    if pretrained:
        from hyena_serve.weights import resolve_weights

        checkpoint_path = resolve_weights("pretrained", name).path
    model = _entrypoints()[name](**kwargs)
    if checkpoint_path is not None:
        from hyena_serve.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    return model
