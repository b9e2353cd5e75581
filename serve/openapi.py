"""The OpenAPI's error answers: every status a route can answer, as ``application/problem+json``
with the :class:`ProblemOut` schema.

A route's statuses come from its dependencies (:func:`derived_statuses`, applied by the route
class, serve/gate.py): 401, 403 and 429 for a route that needs a key, 413 and 422 for a body,
422 for parameters; each route adds its own (404 for an id, 409 for a transition, 503 while the
bundle loads). Each status's description lists its problem types, from
:data:`~serve.problems.PROBLEM_TYPES`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from serve.problems import PROBLEM, PROBLEM_TYPES, TYPE_BASE

REF = "#/components/schemas/{model}"
#: Headers some problems carry, by status (never required: not every problem of it has one).
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds (overloaded)", "schema": {"type": "string"}}},
}


class FieldReason(BaseModel):
    field: str
    reason: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details: ``type`` names the problem, ``field`` the request field it is
    about (``devices[3].device``), ``detail`` tells a person what to fix."""

    model_config = ConfigDict(title="Problem", extra="allow")
    type: str = Field(pattern=f"^{TYPE_BASE.replace('.', '[.]')}[a-z0-9-]+$",
                      description=f"{TYPE_BASE}<kind>")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="the request's path")
    field: str | None = None
    request_id: str | None = None
    errors: list[FieldReason] | None = Field(None, description="invalid-request: each field")
    error_count: int | None = Field(None, description="invalid-request: how many errors")
    reason: str | None = Field(None, description="photo-rejected: the photo check's reason")


def kinds(status: int) -> list[str]:
    """The problem types answered with ``status``."""
    return [kind for s, kind in PROBLEM_TYPES.values() if s == status]


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for ``statuses``: problem+json, the :class:`ProblemOut` schema,
    the status's problem types in its description."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": "Problem: " + ", ".join(kinds(status) or ["http-error"]),
            "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}}}
        if status in HEADERS:
            response["headers"] = HEADERS[status]
        out[status] = response
    return out


#: Request bodies a route reads itself (declared with :func:`request_body`): their schemas go
#: into the components.
BODIES: dict[str, type[BaseModel]] = {}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """A route's ``openapi_extra`` declaring a JSON body of ``model`` that the route reads
    itself (the batch route counts devices before it parses them, serve/jsonscan.py)."""
    BODIES[model.__name__] = model
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": REF.format(model=model.__name__)}}}}}


def derived_statuses(*, keyed: bool, body: bool, params: bool) -> list[int]:
    """The statuses a route answers by its dependencies: a key (401, 403, 429), a body (400 when
    it cannot be parsed, 413, 422), parameters (422)."""
    out = [401, 403, 429] if keyed else []
    if body:
        out += [400, 413]
    if body or params:
        out.append(422)
    return out


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """The ``Allow`` header of a 405 on ``path``: the methods of every API route on it (Starlette
    names only the first route's), HEAD with GET; None for a path outside the API."""
    for template, ops in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods = {m.upper() for m in ops} | ({"HEAD"} if "get" in ops else set())
            return ", ".join(sorted(methods))
    return None


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` with the :class:`ProblemOut` schema and the :data:`BODIES` among its
    components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = FastAPI.openapi(app)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            models: dict[str, type[BaseModel]] = {**BODIES, "Problem": ProblemOut}
            for name, model in models.items():
                schema = model.model_json_schema(ref_template=REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
