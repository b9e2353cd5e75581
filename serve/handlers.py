"""The API's exception handlers: every error is answered as problem+json (serve/problems.py).

A domain error (:data:`~serve.problems.DOMAIN_ERRORS`) gets its status and type from the one
mapping, :data:`~serve.problems.PROBLEM_TYPES`; a request that fails validation is an
``invalid-request`` naming each field; Starlette's own HTTP errors (404 route, 405 method) keep
their status; anything else is logged with its traceback and answered 500 ``internal-error``,
with nothing of it in the body.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.gate import BodyTooLarge
from serve.headers import headers_for
from serve.openapi import allowed_methods
from serve.problems import (
    DOMAIN_ERRORS,
    InvalidRequest,
    ProblemDetails,
    RequestTooLarge,
    problem_of,
)
from tabular.schema import field_path

log = logging.getLogger("photograde.serve")
#: At most this many errors are listed in an ``invalid-request`` problem (a body with a million
#: bad items is not answered with a million errors).
MAX_ERRORS = 20


def problem_response(request: Request, p: ProblemDetails) -> JSONResponse:
    """Count the problem in the metrics and answer it."""
    request.app.state.service.metrics.errors.labels(p.kind).inc()
    return p.response(request.url.path, getattr(request.state, "request_id", None))


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, problem_of(exc))


async def on_validation(request: Request, err: RequestValidationError) -> JSONResponse:
    """An ``invalid-request`` listing the first :data:`MAX_ERRORS` errors (``error_count``:
    how many there were), each with its field, without the input."""
    found = err.errors()
    errors = []
    for e in found[:MAX_ERRORS]:
        loc = [x for x in e["loc"] if x not in ("body", "query", "form")]
        errors.append({"field": field_path(loc) or "body", "reason": e["msg"]})
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    if len(found) > MAX_ERRORS:
        detail += f"; and {len(found) - MAX_ERRORS} more errors"
    return await on_domain_error(request, InvalidRequest(
        detail, errors[0]["field"] if errors else None, errors=errors, error_count=len(found)))


async def on_body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    return await on_domain_error(request, RequestTooLarge(exc.detail))


async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405 and (allow := allowed_methods(request.app, request.url.path)):
        headers["Allow"] = allow  # every route's methods on the path
    return problem_response(request, ProblemDetails(
        exc.status_code, "http-error", str(exc.detail), headers=headers))


async def on_error(request: Request, exc: Exception) -> JSONResponse:
    """A 500, with the security headers: Starlette answers it outside the app's middleware."""
    log.exception("unexpected error on %s", request.url.path)
    response = problem_response(request, problem_of(exc))
    settings = getattr(request.app.state.workflow, "settings", None)
    hsts = settings.hsts_max_age if settings is not None else 0
    for name, value in headers_for(request.url.path, hsts).items():
        response.headers.setdefault(name, value)
    return response


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""
    for cls in DOMAIN_ERRORS:
        app.add_exception_handler(cls, on_domain_error)
    # Starlette types a handler as taking any Exception, though it only ever passes the class
    # it is registered for: a handler of a narrower class is refused.
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(BodyTooLarge, on_body_too_large)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_error)
