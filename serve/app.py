"""The scoring service: FastAPI on ONNX Runtime, with dynamic batching and hardened uploads.

    POST /v1/grade          multipart: front, back (photos), device (JSON), refurbisher_grade,
                            heatmaps -> predicted grade, probabilities, parts, reasons, decision
    POST /v1/grade/batch    JSON: many devices (base64 photos) in one call
    GET  /v1/model          bundle metadata, execution provider, threads, batching, versions
    GET  /healthz           alive
    GET  /readyz            bundle loaded and warmed up
    GET  /metrics           Prometheus (metrics_enabled, metrics_clients)
    /v1/evaluations, /v1/returns, /v1/dashboard/..., /v1/keys: the refurbisher workflow
    /v1/admin/bundles       model versions: promote, shadow, retire, rollback
    /ui                     the web UI

Every request passes four plain ASGI middlewares: ``SecurityHeaders`` (``serve/headers.py``),
``Observe`` (request id, latency), ``Forwarded`` (forwarded headers from trusted proxies only)
and ``Gate`` (body limits); every route is a ``KeyFirstRoute``: its key is checked before its
body is read (``serve/gate.py``). Routers by resource: ``serve/routes/`` (API), ``serve/ui/``
(pages); their shared dependencies in ``serve/deps.py``; the grading service in
``serve/grading.py``; the workflow's service functions in ``serve/workflow.py``. Every error is
an RFC 9457 problem+json naming the field and the reason (``serve/problems.py``,
``serve/handlers.py``); no bad input is answered with a 5xx.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.formparsers import MultiPartParser

from serve.forwarded import Forwarded
from serve.gate import Gate, body_limits
from serve.grading import Service
from serve.handlers import install_handlers
from serve.headers import SecurityHeaders
from serve.observe import Observe
from serve.openapi import install_openapi
from serve.routes import ROUTERS
from serve.routes.docs import mount_docs
from serve.routes.ops import metrics_router
from serve.runtime import Grader
from serve.settings import Settings
from serve.ui import mount_ui
from serve.versions import Versions
from serve.workflow import Workflow


def create_app(settings: Settings | None = None, grader: Grader | None = None) -> FastAPI:
    """The app: its grading service and workflow (``app.state``), the request middleware, the
    problem+json handlers, the API's routers and the UI. ``grader``: an already loaded bundle
    (else ``settings.bundle`` is loaded at startup); the registry's active bundle is served
    if it is another (:mod:`serve.versions`)."""
    settings = settings or Settings()
    # Photos are read into memory right after parsing, and the body size is capped (Gate):
    # spooling each part to a temporary file first (Starlette's default above 1 MB) only adds
    # a disk write and a read per photo (~8 ms per request for two 12-MP JPEGs here).
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size,
                                         settings.max_upload_bytes)
    svc = Service(settings, grader)
    workflow = Workflow(settings, svc)
    versions = Versions(settings, svc, workflow.db)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await workflow.start()  # the database first: it says which bundle to serve
        await versions.start()
        await workflow.watch_outcomes()
        yield
        await versions.stop()
        await svc.stop()
        await workflow.stop()

    app = FastAPI(title="photograde", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json" if settings.docs_enabled else None,
                  description="A second opinion on the grade of a refurbished phone.")
    app.state.service, app.state.workflow = svc, workflow
    app.state.body_limit = body_limits(settings)  # per route (KeyFirstRoute, serve/gate.py)
    # Outermost last: the security headers on every answer, then request id and latency, then
    # the client's address (trusted proxies), then the body count.
    app.add_middleware(Gate, default=settings.max_body_kb * 1024)
    app.add_middleware(Forwarded, trusted=settings.trusted_proxies)
    app.add_middleware(Observe, metrics=svc.metrics)
    app.add_middleware(SecurityHeaders, hsts_max_age=settings.hsts_max_age)
    install_handlers(app)
    install_openapi(app)  # the problem+json schema of every error answer
    for router in ROUTERS:
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    mount_ui(app)  # the web UI under /ui (serve/ui/)
    if settings.docs_enabled:
        mount_docs(app)  # /docs from local assets (works offline)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from the environment. A
    worker process does not inherit the command's logging: without a handler of its own, the
    service's messages (ready, bundle switches) go to stderr, with the worker's process id."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING,
                            format="%(levelname)s %(name)s [%(process)d]: %(message)s")
        logging.getLogger("photograde").setLevel(logging.INFO)
    return create_app(Settings())
