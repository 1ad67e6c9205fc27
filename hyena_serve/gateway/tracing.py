"""Request ids and access logs.

Every response carries ``X-Request-ID``: the client's own when it sent a sane one (1 to
128 characters of ``A-Z a-z 0-9 . _ ~ : / + = @ -``), a fresh random one otherwise.
Error bodies repeat it as ``request_id``, and the Triton backend passes it on as the
inference request id. The middleware also writes one access-log line per request
(logger ``hyena_serve.access``; text or JSON lines) with the route template, status,
duration, the per-stage timings of a classify call and the rows of its inference batch.

The current request's :class:`RequestContext` is in a context variable, so code the
request runs (the gateway's classify path, the backend call) reaches it without passing
it around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")

access_log = logging.getLogger("hyena_serve.access")
log = logging.getLogger("hyena_serve.gateway")


@dataclass
class RequestContext:
    request_id: str
    stages_ms: dict[str, float] = field(default_factory=dict)
    images: int | None = None
    batch_rows: int | None = None

    def add_stage(self, name: str, seconds: float) -> None:
        self.stages_ms[name] = round(self.stages_ms.get(name, 0.0) + seconds * 1e3, 3)


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("hyena_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    ctx = _current.get()
    return ctx.request_id if ctx is not None else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def sane_request_id(value: str | None) -> str | None:
    """``value`` if it is usable as a request id, else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            try:
                return sane_request_id(value.decode("ascii"))
            except UnicodeDecodeError:
                return None
    return None


class RequestIdMiddleware:
    """Outermost middleware: request id in, ``X-Request-ID`` out, one access-log line, and
    a JSON 500 (with the id) for anything the app lets escape."""

    def __init__(self, app: ASGIApp, *, access: bool = True, json_lines: bool = False) -> None:
        self.app = app
        self.access = access
        self.json_lines = json_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(_incoming_id(scope) or new_request_id())
        scope.setdefault("state", {})["request_id"] = ctx.request_id
        token = _current.set(ctx)
        header = (_HEADER_KEY, ctx.request_id.encode("ascii"))
        status = 500
        started = False
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", scope.get("method"), scope.get("path"),
                          ctx.request_id)
            if started:
                raise
            from hyena_serve.gateway.errors import error_response

            status = 500
            await error_response(500, "internal error", "unexpected server error; see the server log")(
                scope, receive, send_with_id)
        finally:
            if self.access:
                self._log(scope, ctx, status, time.perf_counter() - t0)
            _current.reset(token)

    def _log(self, scope: Scope, ctx: RequestContext, status: int, seconds: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        client = scope.get("client")
        record = {
            "request_id": ctx.request_id,
            "method": scope.get("method", ""),
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1e3, 3),
            "client": client[0] if client else None,
        }
        if ctx.images is not None:
            record["images"] = ctx.images
        if ctx.batch_rows is not None:
            record["batch_rows"] = ctx.batch_rows
        if ctx.stages_ms:
            record["stages_ms"] = ctx.stages_ms
        if self.json_lines:
            access_log.info(json.dumps(record, separators=(",", ":")))
        else:
            stages = " ".join(f"{k}={v:.2f}ms" for k, v in ctx.stages_ms.items())
            extra = "".join(f" {k}={record[k]}" for k in ("images", "batch_rows") if k in record)
            access_log.info('%s "%s %s" %d %.2fms request_id=%s%s%s', record["client"] or "-", record["method"], route,
                            status, record["duration_ms"], ctx.request_id, extra, f" {stages}" if stages else "")


def configure_access_log(json_lines: bool) -> None:
    """JSON access lines go to stdout as bare JSON objects (one per line, no prefix), so a
    log shipper can parse them; text lines use the process's logging format."""
    if not json_lines:
        return
    import sys

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [handler]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
