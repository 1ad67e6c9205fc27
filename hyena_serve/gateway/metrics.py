"""Prometheus metrics of one gateway app (its own registry, so apps in one process do
not share counters): requests by route and status, per-stage latency, batches, load."""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hyena_serve.gateway import tracing

STAGES = ("decode", "preprocess", "inference", "total")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hyena_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.request_seconds = Histogram(
            "hyena_request_duration_seconds", "HTTP request latency by route template",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram(
            "hyena_stage_seconds", "classify latency per stage, per image (decode, preprocess) or per request "
            "(inference, total)", ["stage"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("hyena_images_classified", "images classified", registry=self.registry)
        self.batch_size = Histogram(
            "hyena_inference_batch_size", "rows per inference run by an in-process backend",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.in_flight = Gauge("hyena_classify_in_flight", "classify requests being processed", registry=self.registry)
        self.queued = Gauge("hyena_classify_queued", "classify requests waiting for a slot", registry=self.registry)
        self.rejected = Counter(
            "hyena_rejected", "classify requests refused before inference, by reason", ["reason"], registry=self.registry)
        for stage in STAGES:  # export every stage from the start, with zero samples
            self.stage_seconds.labels(stage)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.stage_seconds.labels(name).observe(elapsed)
            ctx = tracing.current()
            if ctx is not None:
                ctx.add_stage(name, elapsed)

    def observe_batch(self, rows: int) -> None:
        self.batch_size.observe(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (``/v2/models/{name}``, not the
    raw path, so the label set stays small) and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()
            self.metrics.request_seconds.labels(template).observe(time.perf_counter() - start)
