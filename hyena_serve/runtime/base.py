"""The interface every inference backend implements, and what it says about its model.

A backend takes a float32 NCHW batch (already preprocessed) and returns float32 logits
``(N, num_classes)``. It is opened once (``start``), can be asked whether it can serve
right now (``ready``) and is closed once (``close``). Failures that a client should retry
later (server down, model loading, timeouts) are :class:`BackendUnavailable`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME


class BackendUnavailable(RuntimeError):
    """The backend cannot serve now; ``reason`` is safe to show a client, who may retry."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PreprocessSpec:
    """The preprocessing numbers of a model at the served resolution
    (satisfies :class:`hyena_serve.preprocess.PreprocessConfig`)."""

    input_size: tuple[int, int, int]
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2 datatype name
    shape: tuple[int, ...]  # -1 for the dynamic batch dimension


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway publishes about the served model (and needs to preprocess for it)."""

    name: str
    resolution: int
    num_classes: int
    pretrained: bool
    preprocess: PreprocessSpec
    backend: str  # embedded | triton | torch
    platform: str  # KServe "platform": onnxruntime_onnx, pytorch_torch, triton_python ...
    versions: tuple[str, ...] = ("1",)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(INPUT_NAME, "FP32", (-1, 3, self.resolution, self.resolution)),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(OUTPUT_NAME, "FP32", (-1, self.num_classes)),)


class Backend(abc.ABC):
    """One way of running the model; see the module docstring for the contract."""

    info: ModelInfo

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model (may take long: export, session creation, warm-up)."""

    @abc.abstractmethod
    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 3, R, R)`` -> float32 logits ``(N, num_classes)``."""

    @abc.abstractmethod
    async def ready(self) -> bool:
        """Whether ``infer`` can succeed right now (never raises)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything ``start`` acquired; safe to call more than once."""

    @property
    def metadata(self) -> ModelInfo:
        return self.info


def check_batch(batch: np.ndarray, resolution: int) -> np.ndarray:
    """Validate a backend input and return it as contiguous float32."""
    if batch.ndim != 4 or batch.shape[1:] != (3, resolution, resolution) or batch.shape[0] < 1:
        raise ValueError(f"expected a float32 batch (N, 3, {resolution}, {resolution}), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to serve: a registry model at a resolution, from a checkpoint or
    (without one) randomly initialised from ``seed`` so every backend gets the same ones.
    ``kwargs`` go to ``create_model`` (e.g. smaller dims for tests)."""

    name: str
    resolution: int
    checkpoint: str | None = None
    seed: int = 0
    kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def pretrained(self) -> bool:
        return self.checkpoint is not None

    def model_kwargs(self) -> dict[str, object]:
        return dict(self.kwargs)

    def num_classes(self) -> int:
        kwargs = self.model_kwargs()
        if "num_classes" in kwargs:
            return int(kwargs["num_classes"])
        from hyena_serve.models import get_model_config

        return int(get_model_config(self.name).num_classes)

    def preprocess(self) -> PreprocessSpec:
        from hyena_serve.models import get_model_config

        cfg = get_model_config(self.name)
        return PreprocessSpec(
            input_size=(3, self.resolution, self.resolution),
            crop_pct=float(cfg.crop_pct),
            interpolation=str(cfg.interpolation),
            mean=tuple(float(v) for v in cfg.mean),
            std=tuple(float(v) for v in cfg.std),
        )

    def info(self, backend: str, platform: str, **extra: str) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            resolution=self.resolution,
            num_classes=self.num_classes(),
            pretrained=self.pretrained,
            preprocess=self.preprocess(),
            backend=backend,
            platform=platform,
            extra=dict(extra),
        )
