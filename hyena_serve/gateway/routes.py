"""HTTP routes. They only translate HTTP to calls on the shared
:class:`~hyena_serve.gateway.main.Gateway` and back."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from hyena_serve import __version__
from hyena_serve.gateway.errors import GatewayError, error_response
from hyena_serve.gateway.deps import GatewayDep

#: Raw-body content types accepted by POST /v1/classify (the format is sniffed from the
#: bytes; an octet-stream or missing type is fine too).
RAW_IMAGE_TYPES = frozenset({
    "image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/webp", "image/gif",
    "image/bmp", "image/x-ms-bmp", "image/tiff", "application/octet-stream", "",
})
DEFAULT_TOP_K = 5

TopK = Annotated[int, Query(ge=1, description="number of classes to return per image (1..num_classes)")]


class Prediction(BaseModel):
    index: int = Field(description="class index")
    label: str
    probability: float = Field(description="softmax probability")


class ImageResult(BaseModel):
    predictions: list[Prediction] = Field(description="top-k classes, most probable first")


class ClassifyResponse(BaseModel):
    model: str
    backend: str
    pretrained: bool = Field(description="false when the model runs with random weights (no checkpoint)")
    results: list[ImageResult] = Field(description="one entry per image, in request order")


class ClassifyBatchRequest(BaseModel):
    images: list[str] = Field(min_length=1, description="base64-encoded images (a data: URL prefix is allowed)")
    top_k: int | None = Field(None, ge=1, description="overrides the top_k query parameter")


class ErrorBody(BaseModel):
    error: str
    detail: object = None


_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "empty body, not an image, or a truncated/corrupt image",
        413: "body over the size limit, or an image over the pixel limit",
        415: "unsupported content type or image format",
        422: "invalid JSON, base64 or top_k",
        429: "too many requests in progress (Retry-After)",
        503: "backend down, loading or timing out (Retry-After)",
    }.items()
}

_RAW_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "an image as the raw body (image/jpeg, image/png, image/webp, ...) or as the "
                       "multipart/form-data field `file`",
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png", "image/webp")},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}

classify = APIRouter(prefix="/v1", tags=["classify"], responses=_ERRORS)


@classify.post("/classify", response_model=ClassifyResponse, openapi_extra=_RAW_BODY_DOC,
               summary="Classify one image (raw body or multipart field `file`)")
async def classify_one(request: Request, gateway: GatewayDep, top_k: TopK = DEFAULT_TOP_K) -> dict:
    gateway.check_top_k(top_k)
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        data = await _read_upload(request)
    elif media_type in RAW_IMAGE_TYPES:
        data = await request.body()
    elif media_type.startswith("image/"):
        raise GatewayError(415, "unsupported media type",
                           f"{media_type} is not supported; send JPEG, PNG, WebP, GIF, BMP or TIFF")
    else:
        raise GatewayError(415, "unsupported media type",
                           f"Content-Type {media_type} is not accepted; send the image as the raw body with an "
                           "image/* type, or as multipart/form-data field 'file'")
    return await gateway.classify([data], top_k)


@classify.post("/classify/batch", response_model=ClassifyResponse,
               openapi_extra={"requestBody": {"required": True, "content": {
                   "application/json": {"schema": ClassifyBatchRequest.model_json_schema()}}}},
               summary="Classify base64-encoded images sent as JSON")
async def classify_batch(request: Request, gateway: GatewayDep, top_k: TopK = DEFAULT_TOP_K) -> dict:
    media_type = _media_type(request)
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise GatewayError(415, "unsupported media type", f"expected application/json, got {media_type or 'none'}")
    try:
        body = ClassifyBatchRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise GatewayError(422, "invalid request", detail) from None
    limit = gateway.settings.max_batch_images
    if len(body.images) > limit:
        raise GatewayError(413, "too many images", f"{len(body.images)} images; at most {limit} per request")
    images = [_b64decode(i, text) for i, text in enumerate(body.images)]
    return await gateway.classify(images, body.top_k if body.top_k is not None else top_k)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_upload(request: Request) -> bytes:
    form = await request.form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise GatewayError(400, "invalid request", "multipart body needs a file field named 'file'")
        return await upload.read()
    finally:
        await form.close()


def _b64decode(index: int, text: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GatewayError(422, "invalid base64", f"images[{index}]: {exc}") from None


health = APIRouter(prefix="/v2", tags=["health"])


@health.get("/health/live", summary="The process is up")
async def live() -> dict:
    return {"live": True}


@health.get("/health/ready", summary="The backend can serve (503 while loading or when it is down)",
            responses={503: {"model": ErrorBody}})
async def ready(gateway: GatewayDep) -> Response:
    ok, reason = await gateway.readiness()
    if ok:
        return JSONResponse({"ready": True})
    return error_response(503, "not ready", reason, {"Retry-After": str(gateway.settings.retry_after_s)})


models = APIRouter(prefix="/v2", tags=["models"], responses={404: {"model": ErrorBody}})


@models.get("", summary="Server metadata (Open Inference Protocol)")
async def server_metadata(gateway: GatewayDep) -> dict:
    return {"name": "hyena_serve", "version": __version__, "extensions": [], "models": [gateway.model_name]}


@models.get("/models/{name}", summary="Model metadata (Open Inference Protocol)")
async def model_metadata(name: str, gateway: GatewayDep) -> dict:
    _model(gateway, name)
    info = await gateway.served_model()
    tensors = lambda specs: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]  # noqa: E731
    return {
        "name": info.name,
        "versions": list(info.versions),
        "platform": info.platform,
        "backend": info.backend,
        "inputs": tensors(info.inputs),
        "outputs": tensors(info.outputs),
        "parameters": {
            "resolution": info.resolution,
            "num_classes": info.num_classes,
            "pretrained": info.pretrained,
            "preprocess": info.preprocess.to_dict(),
            "weights": info.manifest.weights.describe(),
            **info.extra,
        },
    }


@models.get("/models/{name}/ready", summary="Model readiness (Open Inference Protocol)")
async def model_ready(name: str, gateway: GatewayDep) -> Response:
    _model(gateway, name)
    return await ready(gateway)


def _model(gateway, name: str) -> None:
    if name != gateway.model_name:
        raise GatewayError(404, "model not found", f"this gateway serves {gateway.model_name!r}, not {name!r}")


monitoring = APIRouter(tags=["monitoring"])


@monitoring.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)


def routers() -> list[APIRouter]:
    return [classify, health, models, monitoring]
