"""FastAPI dependencies shared by the API's routers: the app's grading service and workflow,
the settings, the calling key's role, path and header parameters, and reading uploads.

    who: Submitter          a refurbisher or platform key (401, 403, 429 otherwise)
    wf: WorkflowDep         the app's Workflow (storage, auth, settings)

Route signatures are evaluated eagerly (no ``from __future__ import annotations``), as FastAPI
reads the ``Annotated`` dependencies.
"""

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve.auth import OPEN, Principal
from serve.grading import Service
from serve.models import ROLES
from serve.problems import Forbidden, InvalidRequest, PhotoTooLarge
from serve.settings import Settings
from serve.workflow import Workflow


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
# for an attribute read
async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_workflow(request: Request) -> Workflow:
    return request.app.state.workflow


async def get_settings(request: Request) -> Settings:
    return request.app.state.workflow.settings


ServiceDep = Annotated[Service, Depends(get_service)]
WorkflowDep = Annotated[Workflow, Depends(get_workflow)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


def client_address(request: Request) -> str | None:
    """The client's address: the connection's peer, or the one a trusted proxy forwarded
    (serve/forwarded.py)."""
    return request.client.host if request.client else None


class KeyCheck:
    """The dependency of :func:`require`: the calling key's principal, with one of ``roles``.
    The request gate (serve/gate.py) finds it on a route and checks the key before the body is
    read, leaving the principal in ``request.state.principal``; a request that did not pass
    the gate is checked here."""

    def __init__(self, roles: tuple[str, ...]):
        self.roles = roles

    def verify(self, who: Principal) -> Principal:
        """``who``, or Forbidden if its role may not use this route."""
        if not who.has(*self.roles):
            raise Forbidden(f"this route needs a {' or '.join(self.roles)} key; this key is a "
                            f"{who.role} key")
        return who

    async def __call__(
        self, request: Request, wf: WorkflowDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> Principal:
        if not wf.settings.auth_required:
            return OPEN
        who = getattr(request.state, "principal", None)
        if who is None:
            key = header or (bearer.credentials if bearer else None)
            who = await wf.identify(key, client_address(request))
        return self.verify(who)


def require(*roles: str):
    """A dependency: the calling key's principal, with one of ``roles`` (Unauthorized,
    Forbidden, RateLimited otherwise); every route is open when auth is off."""
    return Depends(KeyCheck(roles))


Submitter = Annotated[Principal, require("refurbisher", "platform")]
Reader = Annotated[Principal, require("refurbisher", "platform", "reviewer")]
RefurbisherKey = Annotated[Principal, require("refurbisher")]
Reviewer = Annotated[Principal, require("reviewer")]
Platform = Annotated[Principal, require("platform")]
Staff = Annotated[Principal, require("platform", "reviewer")]
Admin = Annotated[Principal, require("admin")]
AnyKey = Annotated[Principal, require(*ROLES)]

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                              max_length=255)]
EvaluationId = Annotated[str, Path(min_length=1, max_length=64)]
Days = Annotated[int, Query(ge=1, le=366, description="window: the last N days")]


#: The checklist as a form field or a file part (``-F "device=<d.json"`` or ``-F device=@d.json``).
DEVICE_FORM_HELP = ("device facts and checks, JSON: a text field or a JSON file part (curl "
                    "-F device=@device.json)")
MAX_DEVICE_BYTES = 64 * 1024


async def form_json_text(value: str | UploadFile, field: str,
                         limit: int = MAX_DEVICE_BYTES) -> str:
    """A JSON form value sent as text or as a file part, as text; InvalidRequest naming
    ``field`` for a part over ``limit`` bytes or not UTF-8."""
    if isinstance(value, str):
        return value
    data = await value.read(limit + 1)
    if len(data) > limit:
        raise InvalidRequest(f"{field}: larger than the limit of {limit} bytes", field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{field}: not UTF-8 text (expected JSON)", field) from None


async def read_upload(upload: UploadFile, field: str, limit: int) -> bytes:
    """An uploaded photo's bytes, refused (PhotoTooLarge) as soon as it passes ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PhotoTooLarge(f"{field}: larger than the limit of {limit} bytes", field)
    return data
