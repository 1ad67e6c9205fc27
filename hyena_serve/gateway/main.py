"""The gateway app: ``create_app(settings)`` builds a FastAPI app whose lifespan opens
the inference backend once; routes live in :mod:`hyena_serve.gateway.routes`.

Request path: body (size-limited while it streams in) -> decode + preprocess in the
threadpool -> backend (micro-batched in-process, or Triton) -> softmax top-k -> JSON.
The backend is started in the background, so the server answers liveness (and 503 for
readiness) while a first start exports the model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hyena_serve.gateway import routes, tracing
from hyena_serve.gateway.auth import AuthMiddleware, KeyRing
from hyena_serve.gateway.errors import BodyTooLarge, GatewayError, error_response, install_error_handlers, unavailable
from hyena_serve.gateway.metrics import GatewayMetrics, MetricsMiddleware
from hyena_serve.gateway.openapi import install_openapi
from hyena_serve.gateway.settings import GatewaySettings
from hyena_serve.manifest import Manifest
from hyena_serve.preprocess import ImageError, decode_image, preprocess_image
from hyena_serve.runtime.base import Backend, BackendUnavailable, ModelInfo
from hyena_serve.runtime.batching import batch_sizes_sink

log = logging.getLogger("hyena_serve.gateway")


def build_backend(settings: GatewaySettings, metrics: GatewayMetrics | None = None) -> Backend:
    """The backend ``settings.backend`` names, not started yet."""
    on_batch = metrics.observe_batch if metrics is not None else None
    batching = dict(max_batch_size=settings.batch_max_size, max_wait_ms=settings.batch_max_wait_ms, on_batch=on_batch)
    if settings.backend == "embedded":
        from hyena_serve.runtime.embedded import EmbeddedBackend

        spec = settings.model_spec() if settings.onnx_path is None else None
        # A given file has its own precision; checked against the setting only when one was set.
        precision = settings.precision if settings.onnx_path is None or "precision" in settings.model_fields_set else None
        return EmbeddedBackend(spec, settings.artifacts_dir, onnx_path=settings.onnx_path, threads=settings.threads,
                               precision=precision, **batching)
    if settings.backend == "torch":
        from hyena_serve.runtime.torch_backend import TorchBackend

        return TorchBackend(settings.model_spec(), threads=settings.threads, device=settings.device,
                            compile=settings.torch_compile, precision=settings.precision, **batching)
    from hyena_serve.runtime.triton import TritonBackend

    return TritonBackend(settings.triton_url, settings.triton_model or f"{settings.model}_cpu",
                         protocol=settings.triton_protocol, timeout_s=settings.request_timeout_s)


class Admission:
    """At most ``limit`` classify requests run at once and ``max_queue`` wait for a slot;
    more are refused at once (429) instead of queueing without bound."""

    def __init__(self, limit: int, max_queue: int, metrics: GatewayMetrics, retry_after: int, wait_timeout: float):
        self.limit = limit
        self.max_queue = max_queue
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)
        self._metrics = metrics
        self._retry_after = retry_after
        self._wait_timeout = wait_timeout

    @asynccontextmanager
    async def slot(self):
        if self._slots.locked() and self.waiting >= self.max_queue:
            self._metrics.rejected.labels("overloaded").inc()
            raise GatewayError(429, "too many requests",
                               f"{self.limit} requests in progress and {self.waiting} waiting; retry later",
                               retry_after=self._retry_after)
        self.waiting += 1
        self._metrics.queued.inc()
        try:
            async with asyncio.timeout(self._wait_timeout):
                await self._slots.acquire()
        except TimeoutError:
            self._metrics.rejected.labels("queue_timeout").inc()
            raise GatewayError(503, "overloaded", f"no slot within {self._wait_timeout:g} s",
                               retry_after=self._retry_after) from None
        finally:
            self.waiting -= 1
            self._metrics.queued.dec()
        self._metrics.in_flight.inc()
        try:
            yield
        finally:
            self._metrics.in_flight.dec()
            self._slots.release()


class Gateway:
    """What the routes share: settings, the backend, labels, metrics and the limits."""

    def __init__(self, settings: GatewaySettings, backend: Backend | None = None) -> None:
        self.settings = settings
        secret = settings.api_keys.get_secret_value() if settings.api_keys is not None else None
        self.keys = KeyRing.load(secret, settings.api_keys_file)  # None: auth off
        self.metrics = GatewayMetrics()
        self.backend = backend if backend is not None else build_backend(settings, self.metrics)
        batcher = getattr(self.backend, "_batcher", None)  # in-process backends share the micro-batcher
        if batcher is not None and hasattr(batcher, "idle_dispatch"):
            batcher.idle_dispatch = settings.batch_idle_dispatch
        self._pool: ThreadPoolExecutor | None = None
        self._labels: tuple[Manifest, tuple[str, ...]] | None = None
        self.admission: Admission | None = None
        self.start_error: str | None = None
        self._start_task: asyncio.Task | None = None
        self._started = False

    @property
    def info(self) -> ModelInfo | None:
        """The served model, once the backend knows it (after start, or for Triton after
        the first contact with the server); None before."""
        return self.backend.info

    @property
    def model_name(self) -> str:
        return self.info.name if self.info is not None else self.settings.model

    def labels(self, manifest: Manifest) -> tuple[str, ...]:
        if self._labels is None or self._labels[0] is not manifest:
            self._labels = (manifest, manifest.class_names())
        return self._labels[1]

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        self.admission = Admission(s.max_concurrency, s.max_queue, self.metrics, s.retry_after_s, s.request_timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=s.preprocess_threads or os.cpu_count() or 1,
                                        thread_name_prefix="preprocess")
        log.info("starting the %s backend", s.backend)
        self._start_task = asyncio.create_task(self._start_backend(), name="backend-start")

    async def _start_backend(self) -> None:
        started = time.perf_counter()
        try:
            await self.backend.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"
            log.exception("the %s backend failed to start", self.settings.backend)
            return
        self._started = True
        log.info("%s backend started in %.1f s", self.settings.backend, time.perf_counter() - started)
        if self.info is not None:
            m = self.info.manifest
            log.info("serving %s at %d px, %d classes, %s%s", m.model, m.resolution, m.num_classes,
                     m.weights.describe(), "" if m.pretrained else
                     " — RANDOM WEIGHTS: predictions are meaningless (see --weights)")

    async def close(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            try:
                await self._start_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.backend.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def wait_started(self, timeout: float | None = None) -> None:
        """Wait until the backend has started; raises RuntimeError if it failed."""
        if self._start_task is None:
            raise RuntimeError("Gateway.open() was not called")
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._start_task)
        if self.start_error is not None:
            raise RuntimeError(f"the {self.settings.backend} backend failed to start: {self.start_error}")

    async def readiness(self) -> tuple[bool, str]:
        if self.start_error is not None:
            return False, f"backend failed to start: {self.start_error}"
        if not self._started:
            return False, "model is loading"
        if not await self.backend.ready():
            return False, f"{self.settings.backend} backend is not ready"
        return True, "ready"

    # --- classification ------------------------------------------------------------------

    def check_top_k(self, top_k: int) -> int:
        """422 unless 1 <= top_k <= the class count (checked again once the model is known)."""
        limit = self.info.num_classes if self.info is not None else None
        if top_k < 1 or (limit is not None and top_k > limit):
            raise GatewayError(422, "invalid request", f"top_k must be between 1 and {limit}, got {top_k}")
        return top_k

    async def served_model(self) -> ModelInfo:
        """The model to classify with, or 503 while it is loading or unreachable."""
        if self.start_error is not None:
            raise unavailable(f"backend failed to start: {self.start_error}", self.settings.retry_after_s)
        if not self._started:
            raise unavailable("model is loading", self.settings.retry_after_s)
        if self.info is None:  # Triton: the manifest comes with the first contact
            await self.backend.ready()
        if self.info is None:
            raise unavailable(f"the {self.settings.backend} backend has not described its model yet",
                              self.settings.retry_after_s)
        return self.info

    async def classify(self, images: list[bytes], top_k: int) -> dict:
        """Decode, preprocess, infer and rank ``images``; the response body of classify."""
        self.check_top_k(top_k)
        info = await self.served_model()
        self.check_top_k(top_k)
        assert self.admission is not None
        ctx = tracing.current()
        if ctx is not None:
            ctx.images = len(images)
        with self.metrics.stage("total"):
            async with self.admission.slot():
                arrays = await asyncio.gather(*(self._prepare(i, data, info, many=len(images) > 1)
                                                for i, data in enumerate(images)))
                logits = await self._infer(np.stack(arrays))
        self.metrics.images.inc(len(images))
        labels = self.labels(info.manifest)
        return {
            "model": info.name,
            "backend": info.backend,
            "pretrained": info.pretrained,
            "results": [{"predictions": self._top_k(row, top_k, labels)} for row in logits],
        }

    async def _prepare(self, index: int, data: bytes, info: ModelInfo, many: bool) -> np.ndarray:
        try:
            if self._pool is not None:
                loop = asyncio.get_running_loop()
                array, decode_s, preprocess_s = await loop.run_in_executor(self._pool, self._prepare_sync, data, info)
            else:  # not opened (tests that drive classify directly)
                array, decode_s, preprocess_s = await run_in_threadpool(self._prepare_sync, data, info)
        except ImageError as exc:
            if many:
                raise ImageError(f"image {index}: {exc.reason}", status=exc.status) from None
            raise
        self.metrics.stage_seconds.labels("decode").observe(decode_s)
        self.metrics.stage_seconds.labels("preprocess").observe(preprocess_s)
        ctx = tracing.current()
        if ctx is not None:
            ctx.add_stage("decode", decode_s)
            ctx.add_stage("preprocess", preprocess_s)
        return array

    def _prepare_sync(self, data: bytes, info: ModelInfo) -> tuple[np.ndarray, float, float]:
        t0 = time.perf_counter()
        draft_for = info.preprocess if self.settings.jpeg_draft else None
        image = decode_image(data, max_pixels=self.settings.max_image_pixels, draft_for=draft_for)
        t1 = time.perf_counter()
        array = preprocess_image(image, info.preprocess)
        return array, t1 - t0, time.perf_counter() - t1

    async def _infer(self, batch: np.ndarray) -> np.ndarray:
        timeout = self.settings.request_timeout_s
        sizes: list[int] = []
        token = batch_sizes_sink.set(sizes)
        try:
            with self.metrics.stage("inference"):
                async with asyncio.timeout(timeout):
                    logits = await self.backend.infer(batch)
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise unavailable(f"inference did not finish within {timeout:g} s", self.settings.retry_after_s) from None
        except BackendUnavailable as exc:
            self.metrics.rejected.labels("backend_unavailable").inc()
            raise unavailable(exc.reason, self.settings.retry_after_s) from None
        finally:
            batch_sizes_sink.reset(token)
            ctx = tracing.current()
            if ctx is not None:
                ctx.batch_rows = (sizes[0] if len(sizes) == 1 else sizes) if sizes else None
        return logits

    @staticmethod
    def _top_k(logits: np.ndarray, k: int, labels: tuple[str, ...]) -> list[dict]:
        z = logits.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.lexsort((np.arange(len(p)), -p))[:k]  # by probability, ties by index
        return [{"index": int(i), "label": labels[i], "probability": float(p[i])} for i in order]


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``: at once from ``Content-Length``, and while the
    body streams in (chunked uploads or a lying header), before it is all in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await error_response(400, "bad request", "invalid Content-Length header")(scope, receive, send)
                return
            if size > self.max_bytes:
                exc = BodyTooLarge(self.max_bytes, size)
                await error_response(413, exc.error, exc.detail, {"Connection": "close"})(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def create_app(settings: GatewaySettings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """The gateway for ``settings`` (default: from the environment). ``backend`` replaces
    the one the settings describe (tests inject a controllable one)."""
    settings = settings or GatewaySettings()
    gateway = Gateway(settings, backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.open()
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="hyena_serve gateway",
        summary="Image classification with HyenaPixel models (FFT long convolutions)",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app, settings.retry_after_s)
    for router in routes.routers():
        app.include_router(router)
    install_openapi(app, gateway)
    # add_middleware wraps: the last one added runs first. Request id (and access log) ->
    # metrics -> auth -> body limit -> routes, so every response, a 401 or a 413 too,
    # carries the request id and is counted.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if gateway.keys is not None:
        app.add_middleware(AuthMiddleware, keys=gateway.keys, open_metrics=settings.auth_open_metrics,
                           open_docs=settings.auth_open_docs)
        log.info("API key auth on (%d keys); open without a key: health%s%s", len(gateway.keys),
                 ", /metrics" if settings.auth_open_metrics else "", ", docs" if settings.auth_open_docs else "")
    app.add_middleware(MetricsMiddleware, metrics=gateway.metrics)
    app.add_middleware(tracing.RequestIdMiddleware, access=settings.access_log, json_lines=settings.access_log_json)
    return app
