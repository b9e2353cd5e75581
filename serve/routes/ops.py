"""Operations: liveness, readiness (bundle loaded and warmed up) and Prometheus metrics (which
the settings may turn off, or open to some client addresses only)."""

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from serve.deps import ServiceDep, SettingsDep, client_address
from serve.forwarded import Networks
from serve.gate import KeyFirstRoute
from serve.openapi import problems
from serve.problems import NotFound

router = APIRouter(route_class=KeyFirstRoute)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "starting"]


@router.get("/readyz", summary="The bundle is loaded and warmed up", response_model=Readiness,
            responses={503: {"description": "The bundle is still loading",
                             "model": Readiness}})
async def readyz(svc: ServiceDep) -> JSONResponse:
    if not svc.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready"})


#: ``/metrics``, included only with ``metrics_enabled``.
metrics_router = APIRouter(route_class=KeyFirstRoute)


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                    responses={200: {"description": "Prometheus text format", "content": {
                        "text/plain": {"schema": {"type": "string"}}}}, **problems(404)})
async def metrics(request: Request, svc: ServiceDep, settings: SettingsDep) -> Response:
    allowed = Networks(settings.metrics_clients)
    if allowed and client_address(request) not in allowed:
        raise NotFound("no such route")  # as if it were not there
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
