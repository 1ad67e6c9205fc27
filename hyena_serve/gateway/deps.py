"""FastAPI dependencies of the routes: the shared :class:`~hyena_serve.gateway.main.Gateway`
is put on ``app.state`` by ``create_app`` and handed to each route from there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:  # the app module imports the routes; the routes only need the type
    from hyena_serve.gateway.main import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async on purpose: FastAPI runs a plain def dependency in its thread pool, a thread
    # hop per request for an attribute lookup
    return request.app.state.gateway


GatewayDep = Annotated["Gateway", Depends(get_gateway)]
