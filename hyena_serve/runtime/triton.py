"""Backend that forwards batches to a Triton Inference Server (tritonclient, HTTP or gRPC,
asyncio clients). Triton batches dynamically on its side, so requests go out as they come
(split into chunks of the model's ``max_batch_size``). Connection failures, timeouts and
server-side errors become :class:`BackendUnavailable`; the client reconnects on the next
call, so the gateway recovers by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import numpy as np

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME, TRITON_MANIFEST_PARAMETER
from hyena_serve.manifest import Manifest, ManifestError
from hyena_serve.runtime.base import Backend, BackendUnavailable, ModelInfo, check_batch

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
    # With a DNS name that resolves to several Triton replicas (a Kubernetes headless
    # Service), spread calls over all of them instead of pinning the one channel to the
    # first address; with a single address this changes nothing.
    ("grpc.lb_policy_name", "round_robin"),
]


class TritonBackend(Backend):
    """Serves Triton model ``model``; what it is (preprocessing, labels, resolution) comes
    from the manifest in its ``config.pbtxt``, read on the first successful contact."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        protocol: str = "http",
        timeout_s: float = 30.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"triton protocol must be one of {PROTOCOLS}, got {protocol!r}")
        for scheme in ("http://", "https://", "grpc://"):
            url = url.removeprefix(scheme)
        self.url = url
        self.protocol = protocol
        self.model = model
        self.timeout_s = timeout_s
        self.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        self.info = None
        self._conn: _Connection | None = None
        self._checked = False

    # --- connection ---------------------------------------------------------------------
    # A failed connection is retired: new calls get a fresh client, and the old one is
    # closed only when its last in-flight call is done (closing a gRPC channel under a
    # running call would cancel that call).

    def _connect(self) -> _Connection:
        if self._conn is None:
            if self.protocol == "http":
                import tritonclient.http.aio as module

                client = module.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
            else:
                import tritonclient.grpc.aio as module

                client = module.InferenceServerClient(self.url, channel_args=_GRPC_CHANNEL_ARGS)
            self._conn = _Connection(client, module)
        return self._conn

    @asynccontextmanager
    async def _using(self):
        conn = self._connect()
        conn.users += 1
        try:
            yield conn
        except (Exception, asyncio.CancelledError) as exc:
            if _connection_lost(exc):
                self._retire(conn)
            raise
        finally:
            conn.users -= 1
            if conn.retired and conn.users == 0:
                await conn.close()

    def _retire(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None
            self._checked = False
        conn.retired = True

    async def _check_model(self, conn: _Connection) -> None:
        """Once per connection: read the manifest and max_batch_size from the model config
        and check the input shape against the manifest."""
        if self.protocol == "http":
            config = await conn.client.get_model_config(self.model)
        else:
            config = (await conn.client.get_model_config(self.model, as_json=True))["config"]
        self.max_batch_size = int(config.get("max_batch_size", 0)) or DEFAULT_MAX_BATCH_SIZE
        text = config.get("parameters", {}).get(TRITON_MANIFEST_PARAMETER, {}).get("string_value")
        if not text:
            raise BackendUnavailable(f"Triton model {self.model!r} carries no {TRITON_MANIFEST_PARAMETER!r} parameter "
                                     "in its config.pbtxt: fill the repository with `hyena-serve repo`")
        try:
            manifest = Manifest.from_json(text, origin=f"Triton model {self.model!r}")
        except ManifestError as exc:
            raise BackendUnavailable(str(exc)) from None
        for tensor in config.get("input", []):
            if tensor.get("name") == INPUT_NAME:
                dims = [int(d) for d in tensor.get("dims", [])]
                if dims != list(manifest.preprocess.input_size):
                    raise BackendUnavailable(f"Triton model {self.model!r} takes {INPUT_NAME} of dims {dims}, its "
                                             f"manifest says {list(manifest.preprocess.input_size)}")
        self.info = ModelInfo(manifest, "triton", "triton", extra={
            "triton_model": self.model, "triton_url": self.url, "triton_protocol": self.protocol})
        self._checked = True

    # --- Backend ------------------------------------------------------------------------

    async def start(self) -> None:
        if await self.ready():
            log.info("triton backend: %s at %s (%s) is ready", self.model, self.url, self.protocol)
        else:
            log.warning("triton backend: %s at %s (%s) is not ready yet; requests get 503 until it is",
                        self.model, self.url, self.protocol)

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(min(self.timeout_s, 5.0)), self._using() as conn:
                if not await conn.client.is_model_ready(self.model):
                    return False
                if not self._checked:
                    await self._check_model(conn)
                return True
        except asyncio.CancelledError:
            if _really_cancelled():
                raise
            return False
        except Exception:  # readiness never raises: down, refused, timed out all mean "no"
            return False

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            async with asyncio.timeout(self.timeout_s), self._using() as conn:
                if not self._checked:
                    await self._check_model(conn)
                batch = check_batch(batch, self.info.preprocess.input_size)
                step = self.max_batch_size
                chunks = [batch[i : i + step] for i in range(0, len(batch), step)]
                parts = await asyncio.gather(*(self._infer_chunk(conn, c) for c in chunks))
        except BackendUnavailable:
            raise
        except TimeoutError:
            raise BackendUnavailable(f"Triton at {self.url} did not answer within {self.timeout_s:g} s") from None
        except asyncio.CancelledError:
            if _really_cancelled():
                raise
            raise BackendUnavailable(f"Triton at {self.url} ({self.protocol}): the call was cancelled") from None
        except Exception as exc:
            raise BackendUnavailable(f"Triton at {self.url} ({self.protocol}) failed: {_describe(exc)}") from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _infer_chunk(self, conn: _Connection, chunk: np.ndarray) -> np.ndarray:
        module = conn.module
        inp = module.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
        inp.set_data_from_numpy(chunk)
        if self.protocol == "http":
            outputs = [module.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]
        else:
            outputs = [module.InferRequestedOutput(OUTPUT_NAME)]
        result = await conn.client.infer(self.model, [inp], outputs=outputs, request_id=_request_id())
        logits = result.as_numpy(OUTPUT_NAME)
        if logits is None or logits.shape[0] != chunk.shape[0]:
            raise RuntimeError(f"Triton returned {None if logits is None else logits.shape} for a batch of {len(chunk)}")
        return logits.astype(np.float32, copy=False)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class _Connection:
    """One tritonclient client and the calls currently using it."""

    def __init__(self, client, module) -> None:
        self.client = client
        self.module = module
        self.users = 0
        self.retired = False
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.client.close()
        except Exception:  # closing a broken connection may fail; it is gone either way
            pass


def _request_id() -> str:
    """The gateway request's X-Request-ID, passed on as Triton's request id ('' outside
    a gateway request). The HTTP client already sends tensors in the binary extension."""
    from hyena_serve.gateway.tracing import current_request_id  # the gateway sets it per request

    return current_request_id() or ""


def _really_cancelled() -> bool:
    """Whether the current task is being cancelled (rather than a CancelledError that a
    closed gRPC channel raised inside a call)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _connection_lost(exc: BaseException) -> bool:
    """True unless the server itself answered with an error (then the connection is fine)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, BackendUnavailable):
        return False
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
