"""API keys: the calling key, and the admin's key management.

    GET  /v1/me                                       any key
    POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{id} admin
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field

from serve.auth import (
    REFURBISHER_ID_RE,
    ApiKeyError,
    check_refurbisher_id,
    create_key,
    list_keys,
    revoke_key,
)
from serve.deps import Admin, AnyKey, WorkflowDep
from serve.gate import KeyFirstRoute
from serve.models import ROLES
from serve.openapi import problems
from serve.problems import InvalidRequest, NotFound
from serve.routes.bodies import StrictBody

router = APIRouter(prefix="/v1", tags=["keys"], route_class=KeyFirstRoute)


class KeyBody(StrictBody):
    role: Literal[ROLES]  # type: ignore[valid-type]
    refurbisher_id: str | None = Field(None, pattern=REFURBISHER_ID_RE.pattern,
                                       description="required for a refurbisher key, refused "
                                       "for any other")
    name: str | None = Field(None, max_length=200)


@router.get("/me", summary="The calling key: role and refurbisher")
def me(who: AnyKey, wf: WorkflowDep) -> dict[str, Any]:
    return {"key_id": who.key_id, "role": who.role, "refurbisher_id": who.refurbisher_id,
            "name": who.name, "auth_required": wf.settings.auth_required}


@router.post("/keys", status_code=201, summary="Create an API key (the key is shown once)")
def new_key(who: Admin, wf: WorkflowDep, body: KeyBody) -> dict[str, Any]:
    if body.refurbisher_id is not None:  # "" too: it was stored, against no refurbisher (500)
        check_refurbisher_id(body.refurbisher_id)
    try:
        record, key = create_key(wf.db, body.role, body.refurbisher_id, body.name)
    except ApiKeyError as e:
        raise InvalidRequest(str(e).replace("refurbisher:", "refurbisher_id:", 1),
                             "refurbisher_id") from None
    return {**record, "key": key}


@router.get("/keys", summary="API keys (never their secrets)")
def keys(who: Admin, wf: WorkflowDep) -> dict[str, Any]:
    return {"items": list_keys(wf.db)}


@router.delete("/keys/{key_id}", summary="Revoke an API key", responses=problems(404))
def revoke(who: Admin, wf: WorkflowDep,
           key_id: Annotated[str, Path(max_length=32)]) -> dict[str, Any]:
    record = revoke_key(wf.db, key_id)
    if record is None:
        raise NotFound(f"key {key_id!r} not found", "key_id")
    return record
