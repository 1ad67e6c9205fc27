"""FastAPI gateway: ``create_app(settings)`` (:mod:`.main`), routes (:mod:`.routes`),
settings from ``HYENA_*`` variables (:mod:`.settings`), Prometheus metrics (:mod:`.metrics`)
and JSON errors (:mod:`.errors`). Run it with ``hyena-serve serve``."""

from hyena_serve.gateway.main import create_app
from hyena_serve.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
