"""The served OpenAPI document, built lazily so that it states every limit the server
enforces, including the one that depends on the model.

``top_k`` must lie in 1..num_classes, and the class count is known only once the backend
has described its model (after the start, or for Triton after the first contact). So
the document is generated per request of ``/openapi.json``: the static part (FastAPI's
schema plus the settings' limits) once, and the model's bounds patched into a copy as
soon as the model is known (cached from then on). Before that, ``top_k`` has no upper
bound in the document and its description says so; the gateway answers 503 to every
classify call then anyway. A static bound (1000, or a setting) would be wrong for any
model with another class count, so a schema-driven client would send values the server
rejects, which is exactly what the contract test must not find.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hyena_serve.gateway.auth import DOCS_PATHS, HEALTH_PATHS, METRICS_PATHS
from hyena_serve.gateway.routes import BASE64_PATTERN

if TYPE_CHECKING:
    from hyena_serve.gateway.main import Gateway

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_SECURITY = "bearerAuth"


def _example_png() -> str:
    """A real (16x16 grey) PNG in base64: the documented example of a batch request."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _description(gateway: Gateway) -> str:
    s = gateway.settings
    lines = [
        "Image classification with HyenaPixel models (FFT long convolutions).",
        "",
        "Limits: request body at most **{:,} bytes** (413), decoded image at most **{:,} pixels** width*height "
        "(413), at most **{}** images per `/v1/classify/batch` request (422), `top_k` from 1 to the model's class "
        "count (422), at most {} classify requests in progress and {} waiting (429 beyond, with Retry-After)."
        .format(s.max_body_bytes, s.max_image_pixels, s.max_batch_images, s.max_concurrency, s.max_queue),
        "",
        "Every response carries `X-Request-ID` (the client's own when it is 1-128 characters of "
        "`A-Za-z0-9._~:/+=@-`, a generated one otherwise); every error is an `ErrorBody` that repeats it.",
    ]
    if gateway.keys is not None:
        lines += ["", "Access: every route but `/v2/health/live` and `/v2/health/ready` needs "
                      "`Authorization: Bearer <API key>` (401 with `WWW-Authenticate: Bearer` otherwise)."]
    return "\n".join(lines)


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in schema.get("paths", {}).items()
            for method, op in item.items() if isinstance(op, dict) and "responses" in op]


def _static_schema(app: FastAPI, gateway: Gateway) -> dict:
    """FastAPI's document plus everything the settings decide."""
    s = gateway.settings
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                         description=_description(gateway), routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    headers = components.setdefault("headers", {})
    headers["RequestId"] = {"description": "the request id (the client's own if sane, else generated)",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 128}}
    headers["RetryAfter"] = {"description": "seconds to wait before retrying",
                             "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    headers["WWWAuthenticate"] = {"description": "Bearer challenge", "schema": {"type": "string"}}

    # the batch body: image count and the exact base64 the server accepts
    body = schemas.get("ClassifyBatchRequest")
    if body is None:  # inlined by openapi_extra: find it on the operation
        body = schema["paths"]["/v1/classify/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    images = body["properties"]["images"]
    images["maxItems"] = s.max_batch_images
    images["items"] = {"type": "string", "minLength": 1, "pattern": BASE64_PATTERN}
    body["example"] = {"images": [_example_png()], "top_k": 1}

    keys_on = gateway.keys is not None
    if keys_on:
        components.setdefault("securitySchemes", {})[_SECURITY] = {
            "type": "http", "scheme": "bearer", "description": "an API key (HYENA_API_KEYS / HYENA_API_KEYS_FILE)"}
    open_paths = set(HEALTH_PATHS)
    if s.auth_open_metrics:
        open_paths |= METRICS_PATHS
    if s.auth_open_docs:
        open_paths |= DOCS_PATHS

    for path, _method, op in _operations(schema):
        responses = op["responses"]
        for status, response in list(responses.items()):
            if status == "422":  # FastAPI's default validation error -> ours
                for media in response.get("content", {}).values():
                    media["schema"] = dict(_ERROR_REF)
            response.setdefault("headers", {})["X-Request-ID"] = {"$ref": "#/components/headers/RequestId"}
            if status in ("429", "503"):
                response["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
        if keys_on and path not in open_paths:
            op["security"] = [{_SECURITY: []}]
            responses["401"] = {
                "description": "missing or invalid API key",
                "headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"},
                            "X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": dict(_ERROR_REF)}},
            }
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema


def _with_model(schema: dict, gateway: Gateway) -> dict:
    """A copy of ``schema`` with the served model's bounds and name."""
    info = gateway.info
    out = copy.deepcopy(schema)
    name = gateway.model_name
    for path, _method, op in _operations(out):
        for param in op.get("parameters", []):
            if param.get("name") == "top_k" and param.get("in") == "query":
                param["schema"]["maximum"] = info.num_classes
            if param.get("name") == "name" and param.get("in") == "path":
                param["example"] = name
        if path == "/v1/classify/batch":
            body = op["requestBody"]["content"]["application/json"]["schema"]
            if "$ref" in body:
                body = out["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            top_k: dict[str, Any] = body["properties"]["top_k"]
            for alt in top_k.get("anyOf", [top_k]):
                if alt.get("type") == "integer":
                    alt["maximum"] = info.num_classes
    return out


def install_openapi(app: FastAPI, gateway: Gateway) -> None:
    """Serve the lazily completed document at /openapi.json (and to /docs)."""
    cache: dict[str, dict] = {}

    def openapi() -> dict:
        if "static" not in cache:
            cache["static"] = _static_schema(app, gateway)
        if gateway.info is None:
            return cache["static"]
        key = f"model:{gateway.info.name}:{gateway.info.num_classes}"
        if key not in cache:
            cache.pop(next((k for k in cache if k.startswith("model:")), ""), None)
            cache[key] = _with_model(cache["static"], gateway)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]
