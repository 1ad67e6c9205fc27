"""The HyenaPixel model family: registry, configs, checkpoints, frozen filters."""

from hyena_serve.models.configs import ModelConfig
from hyena_serve.models.metaformer import MetaFormer, stage_feature_sizes
from hyena_serve.models.registry import create_model, get_model_config, list_models, register_model

__all__ = [
    "MetaFormer",
    "ModelConfig",
    "create_model",
    "get_model_config",
    "list_models",
    "register_model",
    "stage_feature_sizes",
]
