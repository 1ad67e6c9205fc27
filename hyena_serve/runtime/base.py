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
from hyena_serve.manifest import Manifest
from hyena_serve.preprocess import Preprocessing


class BackendUnavailable(RuntimeError):
    """The backend cannot serve now; ``reason`` is safe to show a client, who may retry."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe v2 datatype name
    shape: tuple[int, ...]  # -1 for the dynamic batch dimension


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway publishes about the served model and needs to serve it: the
    model's :class:`~hyena_serve.manifest.Manifest` and how this backend runs it."""

    manifest: Manifest
    backend: str  # embedded | triton | torch
    platform: str  # KServe "platform": onnxruntime_onnx, pytorch_torch, triton_python ...
    versions: tuple[str, ...] = ("1",)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest.model

    @property
    def resolution(self) -> int:
        return self.manifest.resolution

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def pretrained(self) -> bool:
        return self.manifest.pretrained

    @property
    def preprocess(self) -> Preprocessing:
        return self.manifest.preprocess

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(INPUT_NAME, "FP32", (-1, *self.preprocess.input_size)),)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(OUTPUT_NAME, "FP32", (-1, self.num_classes)),)


class Backend(abc.ABC):
    """One way of running the model; see the module docstring for the contract."""

    #: None until :meth:`start` has learnt it (a Triton backend reads it from the server).
    info: ModelInfo | None = None

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



def check_batch(batch: np.ndarray, input_size: tuple[int, int, int]) -> np.ndarray:
    """Validate a backend input (N, *input_size) and return it as contiguous float32."""
    if batch.ndim != 4 or batch.shape[1:] != tuple(input_size) or batch.shape[0] < 1:
        raise ValueError(f"expected a float32 batch (N, {', '.join(map(str, input_size))}), got {batch.shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)
