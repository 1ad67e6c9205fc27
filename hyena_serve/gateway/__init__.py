"""FastAPI gateway: ``create_app(settings)`` (:mod:`.main`), routes (:mod:`.routes`),
settings from ``HYENA_*`` variables (:mod:`.settings`), Prometheus metrics (:mod:`.metrics`),
JSON errors (:mod:`.errors`), the lazily completed OpenAPI document (:mod:`.openapi`),
optional bearer-token auth (:mod:`.auth`), request ids and access logs (:mod:`.tracing`).
Run it with ``hyena-serve serve``; the contract is described in docs/gateway.md."""

from hyena_serve.gateway.main import create_app
from hyena_serve.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
