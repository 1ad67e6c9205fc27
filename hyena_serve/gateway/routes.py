"""HTTP routes. They only translate HTTP to calls on the shared
:class:`~hyena_serve.gateway.main.Gateway` and back."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
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
#: Strict base64 (RFC 4648 alphabet, padded, at least one byte), after an optional data:
#: URL prefix: what the server accepts, and the ``pattern`` the schema states.
BASE64_PATTERN = r"^(data:[^,]*,)?([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
_BASE64 = re.compile(BASE64_PATTERN, re.ASCII)

TopK = Annotated[int, Query(ge=1, description="number of classes to return per image, 1..num_classes (the "
                                               "schema states the served model's class count once it is loaded)")]


class Prediction(BaseModel):
    index: int = Field(ge=0, description="class index")
    label: str
    probability: float = Field(ge=0, le=1, description="softmax probability")


class ImageResult(BaseModel):
    predictions: list[Prediction] = Field(description="top-k classes, most probable first")


class ClassifyResponse(BaseModel):
    model: str
    backend: str
    pretrained: bool = Field(description="false when the model runs with random weights (no checkpoint)")
    results: list[ImageResult] = Field(description="one entry per image, in request order")


class ClassifyBatchRequest(BaseModel):
    images: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="base64-encoded images (a data: URL prefix is allowed); at most "
                                  "max_batch_images (HYENA_MAX_BATCH_IMAGES) per request")
    top_k: int | None = Field(None, ge=1, description="overrides the top_k query parameter; 1..num_classes")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: e.g. [\"query\", \"top_k\"] or [\"body\", \"images\", 0]")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error response of the gateway."""

    error: str = Field(description="short kind, e.g. 'invalid image', 'too many requests'")
    detail: str | list[ValidationIssue] | None = Field(
        None, description="the reason: a sentence, or one entry per problem for request validation errors")
    request_id: str | None = Field(None, description="the X-Request-ID of this response")


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="KServe v2 datatype, e.g. FP32")
    shape: list[int] = Field(description="-1 for the dynamic batch dimension")


class ModelMetadata(BaseModel):
    """Open Inference Protocol model metadata, with the preprocessing in ``parameters``."""

    name: str
    versions: list[str]
    platform: str
    backend: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(description="resolution, num_classes, pretrained, preprocess, weights, ...")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]
    models: list[str] = Field(description="the one model this gateway serves")


_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "empty body, not an image, or a truncated/corrupt image (no schema can say which bytes decode)",
        413: "body over max_body_bytes (HYENA_MAX_BODY_BYTES), or an image over max_image_pixels "
             "(HYENA_MAX_IMAGE_PIXELS) width*height",
        415: "unsupported content type or image format",
        422: "invalid JSON, base64, top_k, or more images than max_batch_images",
        429: "too many requests in progress and waiting (Retry-After)",
        503: "backend down, loading or timing out (Retry-After)",
    }.items()
}

#: Image content types documented for POST /v1/classify (all of RAW_IMAGE_TYPES but "").
_DOC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff",
                    "image/jpg", "image/pjpeg", "image/x-ms-bmp", "application/octet-stream")

_RAW_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "one image as the raw body (JPEG, PNG, WebP, GIF, BMP or TIFF; the format is read from the "
                       "bytes) or as the multipart/form-data field `file`. Limits: the body size "
                       "(HYENA_MAX_BODY_BYTES, 413) and the decoded pixel count (HYENA_MAX_IMAGE_PIXELS, 413).",
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary", "minLength": 1}} for t in _DOC_IMAGE_TYPES},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}}}
            },
        },
    }
}

classify = APIRouter(prefix="/v1", tags=["classify"], responses=_ERRORS)


@classify.post("/classify", response_model=ClassifyResponse, openapi_extra=_RAW_BODY_DOC, operation_id="classify",
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


@classify.post("/classify/batch", response_model=ClassifyResponse, operation_id="classify_batch",
               openapi_extra={"requestBody": {"required": True, "content": {
                   "application/json": {"schema": ClassifyBatchRequest.model_json_schema()}}}},
               summary="Classify base64-encoded images sent as JSON (application/json or any +json type)")
async def classify_batch(request: Request, gateway: GatewayDep, top_k: TopK = DEFAULT_TOP_K) -> dict:
    gateway.check_top_k(top_k)  # the query value must be valid even when the body overrides it
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
        raise GatewayError(422, "too many images", f"{len(body.images)} images; at most {limit} per request")
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
    m = _BASE64.fullmatch(text)
    if m is None:
        raise GatewayError(422, "invalid base64", f"images[{index}]: not padded base64 of at least one byte "
                                                  "(an optional data: URL prefix is allowed)")
    if m.group(1):
        text = text[len(m.group(1)):]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # not reached for text matching the pattern
        raise GatewayError(422, "invalid base64", f"images[{index}]: {exc}") from None


health = APIRouter(prefix="/v2", tags=["health"])


@health.get("/health/live", summary="The process is up", response_model=Live, operation_id="live")
async def live() -> dict:
    return {"live": True}


@health.get("/health/ready", summary="The backend can serve (503 while loading or when it is down)",
            response_model=Ready, operation_id="ready",
            responses={503: {"model": ErrorBody, "description": "loading, failed or backend down (Retry-After)"}})
async def ready(gateway: GatewayDep) -> Response:
    ok, reason = await gateway.readiness()
    if ok:
        return JSONResponse({"ready": True})
    return error_response(503, "not ready", reason, {"Retry-After": str(gateway.settings.retry_after_s)})


models = APIRouter(prefix="/v2", tags=["models"])
_NOT_FOUND = {404: {"model": ErrorBody, "description": "this gateway serves another model"}}
_UNAVAILABLE = {503: {"model": ErrorBody, "description": "model loading or backend down (Retry-After)"}}
#: OpenAPI links: the model name the server metadata lists is a valid {name}.
_MODEL_LINKS = {
    "ModelMetadata": {"operationId": "model_metadata", "parameters": {"name": "$response.body#/models/0"},
                      "description": "metadata of the served model"},
    "ModelReady": {"operationId": "model_ready", "parameters": {"name": "$response.body#/models/0"},
                   "description": "readiness of the served model"},
}


@models.get("", summary="Server metadata (Open Inference Protocol)", response_model=ServerMetadata,
            operation_id="server_metadata", responses={200: {"description": "server metadata", "links": _MODEL_LINKS}})
async def server_metadata(gateway: GatewayDep) -> dict:
    return {"name": "hyena_serve", "version": __version__, "extensions": [], "models": [gateway.model_name]}


ModelName = Annotated[str, Path(description="the served model's name (GET /v2 lists it)")]


@models.get("/models/{name}", summary="Model metadata (Open Inference Protocol)", response_model=ModelMetadata,
            operation_id="model_metadata", responses={**_NOT_FOUND, **_UNAVAILABLE})
async def model_metadata(name: ModelName, gateway: GatewayDep) -> dict:
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


@models.get("/models/{name}/ready", summary="Model readiness (Open Inference Protocol)", response_model=Ready,
            operation_id="model_ready", responses={**_NOT_FOUND, **_UNAVAILABLE})
async def model_ready(name: ModelName, gateway: GatewayDep) -> Response:
    _model(gateway, name)
    return await ready(gateway)


def _model(gateway, name: str) -> None:
    if name != gateway.model_name:
        raise GatewayError(404, "model not found", f"this gateway serves {gateway.model_name!r}, not {name!r}")


monitoring = APIRouter(tags=["monitoring"])


@monitoring.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response,
                operation_id="metrics",
                responses={200: {"description": "Prometheus text format",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)


def routers() -> list[APIRouter]:
    return [classify, health, models, monitoring]
