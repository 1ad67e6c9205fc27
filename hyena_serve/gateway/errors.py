"""Every error leaves the gateway as JSON ``{"error": <short kind>, "detail": <reason>,
"request_id": <the X-Request-ID>}`` with the right status; 429/503 carry ``Retry-After``
(the schema: :class:`hyena_serve.gateway.routes.ErrorBody`)."""

from __future__ import annotations

import http
import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hyena_serve.gateway.tracing import current_request_id
from hyena_serve.preprocess import ImageError
from hyena_serve.runtime.base import BackendUnavailable

log = logging.getLogger(__name__)


class GatewayError(StarletteHTTPException):
    """An error with a JSON body. It subclasses Starlette's HTTPException so that FastAPI
    passes it through unchanged when raised while it parses a request body."""

    def __init__(self, status: int, error: str, detail: object = None, *, retry_after: int | None = None):
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.error = error


class BodyTooLarge(GatewayError):
    def __init__(self, limit: int, size: int | None = None):
        got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        super().__init__(413, "request body too large", f"got {got}; the limit is {limit} bytes")


def error_response(status: int, error: str, detail: object = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": error, "detail": jsonable_encoder(detail), "request_id": current_request_id()}
    return JSONResponse(body, status_code=status, headers=headers)


def unavailable(reason: str, retry_after: int) -> GatewayError:
    return GatewayError(503, "backend unavailable", reason, retry_after=retry_after)


_IMAGE_ERRORS = {400: "invalid image", 413: "image too large", 415: "unsupported image format"}


def install_error_handlers(app: FastAPI, retry_after: int) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = getattr(exc, "error", None) or _phrase(exc.status_code)
        detail = exc.detail if exc.detail != _phrase(exc.status_code) else None
        return error_response(exc.status_code, error, detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return error_response(422, "invalid request", detail)

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
        return error_response(exc.status, _IMAGE_ERRORS.get(exc.status, "invalid image"), exc.reason)

    @app.exception_handler(BackendUnavailable)
    async def _backend_down(request: Request, exc: BackendUnavailable) -> JSONResponse:
        return error_response(503, "backend unavailable", exc.reason, {"Retry-After": str(retry_after)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path, current_request_id())
        return error_response(500, "internal error", "unexpected server error; see the server log")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"
