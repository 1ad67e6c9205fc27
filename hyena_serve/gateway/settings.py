"""Gateway settings: one pydantic-settings class read from ``HYENA_*`` environment
variables (``HYENA_BACKEND=triton``, ``HYENA_WEIGHTS=runs/digits`` ...). Torch-free: the
gateway in front of Triton, or given an exported artifact, never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hyena_serve.artifact import ModelSpec
from hyena_serve.preprocess import DEFAULT_MAX_PIXELS
from hyena_serve.variants import DEFAULT_CFGS
from hyena_serve.weights import HELP as WEIGHTS_HELP


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYENA_", extra="ignore", protected_namespaces=())

    # --- what to serve ----------------------------------------------------------------
    backend: Literal["embedded", "triton", "torch"] = Field(
        "embedded", description="embedded: ONNX Runtime in-process; triton: a Triton server; torch: the reference model")
    model: str = Field("hpx_former_s18", description="registry model name (hyena_serve.models.list_models())")
    resolution: int | None = Field(
        None, ge=16, le=2048, description="input resolution (square); default: the weights' own, else the variant's")
    weights: str = Field(
        "auto", description=f"{WEIGHTS_HELP}; auto = released weights when cached or reachable, else random "
                            "weights with a warning (responses then say pretrained: false)")
    weights_revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin")
    seed: int = Field(0, description="seed of random weights")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description='extra create_model arguments as JSON, e.g. {"dims": [8, 16, 32, 32]}')
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field(
        "fp32", description="numeric precision of the served model (hyena_serve.precision): int8 = ONNX Runtime "
                            "dynamic quantization (embedded backend; Triton: hyena-serve repo --precision int8), bf16 = "
                            "torch backend on a CPU with bf16 instructions or a GPU; each precision has its own artifact")
    artifacts_dir: Path = Field(Path("artifacts"), description="cache of exported ONNX models (embedded backend)")
    onnx_path: Path | None = Field(
        None, description="serve this exported ONNX file (with its .manifest.json beside it) instead of building "
                          "one from model/weights (embedded backend)")
    threads: int = Field(0, ge=0, description="intra-op threads of the in-process backends (0 = runtime default)")
    device: str = Field("cpu", description="torch backend device: cpu, cuda, cuda:N")
    torch_compile: bool = Field(False, description="torch backend: torch.compile the served model at load "
                                                   "(compile time logged; docs/performance.md)")

    # --- Triton -----------------------------------------------------------------------
    triton_url: str = Field("127.0.0.1:8000", description="host:port of Triton's HTTP (or gRPC: 8001) endpoint")
    triton_protocol: Literal["http", "grpc"] = "http"
    triton_model: str | None = Field(None, description="Triton model name (default: <model>_cpu)")

    # --- limits -----------------------------------------------------------------------
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest request body accepted (413 beyond)")
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest decoded image, width*height (413 beyond)")
    jpeg_draft: bool = Field(
        False, description="decode large JPEGs in libjpeg draft mode (1/2-1/8 scale) before resizing: ~5x faster "
                           "for 12 MP photos; the model input then differs slightly (mean ~0.5 grey level)")
    max_batch_images: int = Field(32, ge=1, description="most images in one /v1/classify/batch request")
    request_timeout_s: float = Field(30.0, gt=0, description="time allowed for inference (503 beyond)")
    max_concurrency: int = Field(32, ge=1, description="classify requests processed at once")
    max_queue: int = Field(256, ge=0, description="classify requests waiting for a slot; more get 429")
    retry_after_s: int = Field(2, ge=1, description="Retry-After seconds sent with 429/503")

    # --- micro-batching (in-process backends; Triton batches on its own) ---------------
    batch_max_size: int = Field(8, ge=1, description="largest batch run at once")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits for more requests")
    batch_idle_dispatch: bool = Field(
        True, description="a request that finds the batcher idle runs at once instead of waiting batch_max_wait_ms "
                          "for company (under load batches still fill while the previous one runs)")
    preprocess_threads: int = Field(0, ge=0, description="threads that decode and preprocess images (0 = one per "
                                                         "CPU core)")

    # --- access control (off unless keys are given) -------------------------------------
    api_keys: SecretStr | None = Field(
        None, description="comma-separated API keys (or sha256:<hex> digests of keys); when set, every route but "
                          "/v2/health/live and /v2/health/ready needs 'Authorization: Bearer <key>'")
    api_keys_file: Path | None = Field(
        None, description="file with one API key, or one sha256:<hex> digest of a key, per line (# comments); "
                          "adds to api_keys")
    auth_open_metrics: bool = Field(False, description="serve /metrics without a key when auth is on")
    auth_open_docs: bool = Field(False, description="serve /docs and /openapi.json without a key when auth is on")

    # --- HTTP server ------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_level: str = "info"
    keep_alive_s: int = Field(
        75, ge=1, description="idle keep-alive connections are closed after this many seconds; longer than the "
                              "idle timeout of a load balancer or client pool in front (60 s is common), so the "
                              "server never closes a connection the client is about to reuse")
    access_log: bool = Field(True, description="one log line per request (logger hyena_serve.access)")
    access_log_json: bool = Field(False, description="access log lines as JSON objects instead of text")

    @model_validator(mode="after")
    def _known_model(self) -> GatewaySettings:
        if self.model not in DEFAULT_CFGS:
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(sorted(DEFAULT_CFGS))}")
        return self

    def model_spec(self) -> ModelSpec:
        return ModelSpec.of(self.model, self.resolution, self.weights, self.seed, self.model_kwargs,
                            self.weights_revision)
