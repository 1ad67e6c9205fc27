"""The HyenaPixel model family: registry, configs, checkpoints, frozen filters."""

from hyena_serve.models.checkpoint import CheckpointMismatchError, load_checkpoint, resample_filters, save_checkpoint
from hyena_serve.variants import ModelConfig
from hyena_serve.models.frozen import (
    HyenaMixerInfo,
    freeze_filters,
    hyena_mixers,
    hyena_plans,
    unfreeze_filters,
)
from hyena_serve.models.metaformer import MetaFormer, stage_feature_sizes
from hyena_serve.models.registry import create_model, get_model_config, list_models, register_model

__all__ = [
    "CheckpointMismatchError",
    "HyenaMixerInfo",
    "MetaFormer",
    "ModelConfig",
    "create_model",
    "freeze_filters",
    "get_model_config",
    "hyena_mixers",
    "hyena_plans",
    "list_models",
    "load_checkpoint",
    "register_model",
    "resample_filters",
    "save_checkpoint",
    "stage_feature_sizes",
    "unfreeze_filters",
]
