"""Gateway settings: one pydantic-settings class read from ``HYENA_*`` environment
variables (``HYENA_BACKEND=triton``, ``HYENA_CHECKPOINT=/path/w.safetensors`` ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyena_serve.preprocess import DEFAULT_MAX_PIXELS
from hyena_serve.runtime.base import ModelSpec


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYENA_", extra="ignore", protected_namespaces=())

    # --- what to serve ----------------------------------------------------------------
    backend: Literal["embedded", "triton", "torch"] = Field(
        "embedded", description="embedded: ONNX Runtime in-process; triton: a Triton server; torch: the reference model")
    model: str = Field("hpx_former_s18", description="registry model name (hyena_serve.models.list_models())")
    resolution: int = Field(224, ge=16, le=1024, description="input resolution (square)")
    checkpoint: Path | None = Field(
        None, description="weights to load; without them the model has random weights (responses say pretrained: false)")
    seed: int = Field(0, description="seed of the random weights when no checkpoint is given")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description='extra create_model arguments as JSON, e.g. {"dims": [8, 16, 32, 32]}')
    artifacts_dir: Path = Field(Path("artifacts"), description="cache of exported ONNX models (embedded backend)")
    onnx_path: Path | None = Field(None, description="serve this ONNX file instead of the cached export (embedded)")
    threads: int = Field(0, ge=0, description="intra-op threads of the in-process backends (0 = runtime default)")

    # --- Triton -----------------------------------------------------------------------
    triton_url: str = Field("127.0.0.1:8000", description="host:port of Triton's HTTP (or gRPC: 8001) endpoint")
    triton_protocol: Literal["http", "grpc"] = "http"
    triton_model: str | None = Field(None, description="Triton model name (default: <model>_cpu)")

    # --- limits -----------------------------------------------------------------------
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest request body accepted (413 beyond)")
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest decoded image, width*height (413 beyond)")
    max_batch_images: int = Field(32, ge=1, description="most images in one /v1/classify/batch request")
    request_timeout_s: float = Field(30.0, gt=0, description="time allowed for inference (503 beyond)")
    max_concurrency: int = Field(32, ge=1, description="classify requests processed at once")
    max_queue: int = Field(256, ge=0, description="classify requests waiting for a slot; more get 429")
    retry_after_s: int = Field(2, ge=1, description="Retry-After seconds sent with 429/503")

    # --- micro-batching (in-process backends; Triton batches on its own) ---------------
    batch_max_size: int = Field(8, ge=1, description="largest batch run at once")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits for more requests")

    # --- HTTP server ------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_level: str = "info"

    @model_validator(mode="after")
    def _known_model(self) -> GatewaySettings:
        from hyena_serve.models import list_models

        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(list_models())}")
        return self

    def model_spec(self) -> ModelSpec:
        return ModelSpec(
            name=self.model,
            resolution=self.resolution,
            checkpoint=str(self.checkpoint) if self.checkpoint is not None else None,
            seed=self.seed,
            kwargs=tuple(sorted((k, _freeze(v)) for k, v in self.model_kwargs.items())),
        )


def _freeze(value: Any) -> Any:
    """JSON lists -> tuples so the spec is hashable and create_model gets sequences."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value
