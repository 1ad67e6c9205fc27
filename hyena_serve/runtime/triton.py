"""Backend that forwards batches to a Triton Inference Server (tritonclient, HTTP or gRPC,
asyncio clients). Triton batches dynamically on its side, so requests go out as they come
(split into chunks of the model's ``max_batch_size``). Connection failures, timeouts and
server-side errors become :class:`BackendUnavailable`; the client reconnects on the next
call, so the gateway recovers by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
from hyena_serve.runtime.base import Backend, BackendUnavailable, ModelSpec, check_batch

log = logging.getLogger(__name__)

PROTOCOLS = ("http", "grpc")
#: Used until the server's model config says otherwise (hyena_serve.model_repo's value).
DEFAULT_MAX_BATCH_SIZE = 8
#: gRPC reconnects quickly instead of backing off for up to two minutes after an outage.
_GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


class TritonBackend(Backend):
    def __init__(
        self,
        spec: ModelSpec,
        url: str,
        *,
        protocol: str = "http",
        model: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"triton protocol must be one of {PROTOCOLS}, got {protocol!r}")
        for scheme in ("http://", "https://", "grpc://"):
            url = url.removeprefix(scheme)
        self.spec = spec
        self.url = url
        self.protocol = protocol
        self.model = model or f"{spec.name}_cpu"
        self.timeout_s = timeout_s
        self.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        self.info = spec.info("triton", "triton", triton_model=self.model, triton_url=url, triton_protocol=protocol)
        self._client = None
        self._module = None
        self._checked = False

    # --- client -------------------------------------------------------------------------

    def _get_client(self):
        if self._client is None:
            if self.protocol == "http":
                import tritonclient.http.aio as module

                self._client = module.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
            else:
                import tritonclient.grpc.aio as module

                self._client = module.InferenceServerClient(self.url, channel_args=_GRPC_CHANNEL_ARGS)
            self._module = module
        return self._client

    async def _reset_client(self) -> None:
        client, self._client = self._client, None
        self._checked = False
        if client is not None:
            try:
                await client.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass

    async def _check_model(self) -> None:
        """Once per connection: read max_batch_size and check the input shape."""
        client = self._get_client()
        if self.protocol == "http":
            config = await client.get_model_config(self.model)
        else:
            config = (await client.get_model_config(self.model, as_json=True))["config"]
        self.max_batch_size = int(config.get("max_batch_size", 0)) or DEFAULT_MAX_BATCH_SIZE
        for tensor in config.get("input", []):
            if tensor.get("name") == INPUT_NAME:
                dims = [int(d) for d in tensor.get("dims", [])]
                expected = [3, self.spec.resolution, self.spec.resolution]
                if dims != expected:
                    raise BackendUnavailable(
                        f"Triton model {self.model!r} takes {INPUT_NAME} of dims {dims}, the gateway sends {expected}"
                    )
        self._checked = True

    # --- Backend ------------------------------------------------------------------------

    async def start(self) -> None:
        self._get_client()
        if await self.ready():
            log.info("triton backend: %s at %s (%s) is ready", self.model, self.url, self.protocol)
        else:
            log.warning("triton backend: %s at %s (%s) is not ready yet; requests get 503 until it is",
                        self.model, self.url, self.protocol)

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(min(self.timeout_s, 5.0)):
                client = self._get_client()
                if not await client.is_model_ready(self.model):
                    return False
                if not self._checked:
                    await self._check_model()
                return True
        except Exception:  # readiness never raises: down, refused, timed out all mean "no"
            await self._reset_client()
            return False

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.spec.resolution)
        try:
            async with asyncio.timeout(self.timeout_s):
                if not self._checked:
                    await self._check_model()
                chunks = [batch[i : i + self.max_batch_size] for i in range(0, len(batch), self.max_batch_size)]
                parts = await asyncio.gather(*(self._infer_chunk(c) for c in chunks))
        except BackendUnavailable:
            raise
        except TimeoutError:
            await self._reset_client()
            raise BackendUnavailable(f"Triton at {self.url} did not answer within {self.timeout_s:g} s") from None
        except Exception as exc:
            if _connection_lost(exc):
                await self._reset_client()
            raise BackendUnavailable(f"Triton at {self.url} ({self.protocol}) failed: {_describe(exc)}") from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _infer_chunk(self, chunk: np.ndarray) -> np.ndarray:
        client, module = self._get_client(), self._module
        inp = module.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk)
        if self.protocol == "http":
            outputs = [module.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]
        else:
            outputs = [module.InferRequestedOutput(OUTPUT_NAME)]
        result = await client.infer(self.model, [inp], outputs=outputs)
        logits = result.as_numpy(OUTPUT_NAME)
        if logits is None or logits.shape[0] != chunk.shape[0]:
            raise RuntimeError(f"Triton returned {None if logits is None else logits.shape} for a batch of {len(chunk)}")
        return logits.astype(np.float32, copy=False)

    async def close(self) -> None:
        await self._reset_client()


def _connection_lost(exc: BaseException) -> bool:
    """True unless the server itself answered with an error (then the connection is fine)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return "UNAVAILABLE" in str(exc.status() or "")
    return True


def _describe(exc: BaseException) -> str:
    """A one-line reason (tritonclient's exceptions carry status and message)."""
    message = getattr(exc, "message", None)
    if callable(message):
        status = exc.status() if callable(getattr(exc, "status", None)) else None
        text = message() or type(exc).__name__
        return f"{status}: {text}" if status else text
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
