"""The service's domain errors and their one mapping to RFC 9457 problem details.

Each error the caller can fix is a class: :class:`Problem` (a :class:`PhotogradeError`) and its
subclasses here, plus the lower layers' own (:class:`~vision.preprocess.ImageError` and its
kinds, :class:`~tabular.schema.ChecklistError`). :data:`PROBLEM_TYPES` maps each class to its
HTTP status and problem type, once: the API's exception handlers, the batch route's per-device
problems and the UI's error pages all read it (:func:`problem_of`). Anything else (a programming
bug, a server-side failure) is a 500 ``internal-error`` whose detail says nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from tabular.schema import ChecklistError
from vision.errors import PhotogradeError
from vision.preprocess import ImageError, ImageTooLarge, NotAnImage

PROBLEM = "application/problem+json"
TYPE_BASE = "https://photograde.dev/problems/"
INTERNAL = (500, "internal-error")
INTERNAL_DETAIL = "unexpected error (logged on the server)"


class Problem(PhotogradeError):
    """A request the service refuses and the caller can fix. ``detail`` names the field first
    (``"front: ..."``); ``headers`` go on the response, ``extra`` into its body. The HTTP
    status and problem type are the class's, in :data:`PROBLEM_TYPES`."""

    def __init__(self, detail: str, field: str | None = None, *,
                 headers: Mapping[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail, self.field = detail, field
        self.headers, self.extra = dict(headers or {}), extra

    @property
    def status(self) -> int:
        return problem_type(self)[0]

    @property
    def kind(self) -> str:
        return problem_type(self)[1]

    def response(self, instance: str, request_id: str | None = None) -> JSONResponse:
        return problem_of(self).response(instance, request_id)


class FieldError(Problem):
    """A lower layer's domain error (a photo's :class:`ImageError`, the checklist's
    :class:`ChecklistError`) about one field of the request: answered as that error."""

    def __init__(self, field: str, error: PhotogradeError):
        super().__init__(f"{field}: {error}", field)
        self.error = error


class InvalidRequest(Problem):
    """A malformed request: a missing or invalid field."""


class Unauthorized(Problem):
    """No API key, or an unknown or revoked one."""


class Forbidden(Problem):
    """The key's role may not use this route, or act for that refurbisher."""


class CrossOrigin(Forbidden):
    """A UI form sent from another site's page."""


class NotFound(Problem):
    """No such resource, or one the key may not see (another refurbisher's)."""


class InvalidTransition(Problem):
    """The evaluation's status does not allow this action."""


class NotListed(Problem):
    """A return or claim on an evaluation that is not listed."""


class AlreadyReturned(Problem):
    """A second return of the same device."""


class IdempotencyKeyReused(Problem):
    """An Idempotency-Key already used for a different request."""


class UnknownGrade(Problem):
    """A grade that is not on the bundle's scale."""


class UnknownCondition(Problem):
    """A declared part condition that the part does not have."""


class UnknownReason(Problem):
    """A return reason that the settings do not list."""


class InvalidRefurbisherId(Problem):
    """A refurbisher id with characters outside ``[A-Za-z0-9_.-]`` or too long."""


class InvalidBase64(Problem):
    """A batch photo that is not valid base64."""


class PhotoTooLarge(Problem):
    """An uploaded photo over the size limit (bytes)."""


class PhotoRejected(Problem):
    """A photo the photo check refuses (:mod:`vision.photocheck`); ``extra`` carries its
    ``reason`` code, ``detail`` tells a person how to retake it."""


class BatchTooLarge(Problem):
    """More devices in one batch than allowed."""


class RequestTooLarge(Problem):
    """A request body over the route's limit."""


class RateLimited(Problem):
    """Too many requests for one API key."""


class TooManyAuthFailures(RateLimited):
    """Too many failed authentications (wrong keys, failed logins) from one client address."""


class NotReady(Problem):
    """The model bundle is still loading."""


class Overloaded(Problem):
    """The inference queue is full."""


class StorageUnavailable(Problem):
    """The photo store failed (full disk, S3 server error): nothing was stored."""


#: Exception class -> (HTTP status, problem type). A class not here (nor a base of it) is a 500.
PROBLEM_TYPES: dict[type[Exception], tuple[int, str]] = {
    InvalidRequest: (422, "invalid-request"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    CrossOrigin: (403, "cross-origin-request"),
    NotFound: (404, "not-found"),
    InvalidTransition: (409, "invalid-transition"),
    NotListed: (409, "not-listed"),
    AlreadyReturned: (409, "already-returned"),
    IdempotencyKeyReused: (422, "idempotency-key-reused"),
    UnknownGrade: (422, "unknown-grade"),
    UnknownCondition: (422, "unknown-condition"),
    UnknownReason: (422, "unknown-reason"),
    InvalidRefurbisherId: (422, "invalid-refurbisher-id"),
    InvalidBase64: (422, "invalid-base64"),
    PhotoTooLarge: (413, "photo-too-large"),
    PhotoRejected: (422, "photo-rejected"),
    BatchTooLarge: (413, "batch-too-large"),
    RequestTooLarge: (413, "request-too-large"),
    RateLimited: (429, "rate-limited"),
    TooManyAuthFailures: (429, "too-many-auth-failures"),
    NotReady: (503, "not-ready"),
    Overloaded: (503, "overloaded"),
    StorageUnavailable: (503, "storage-unavailable"),
    ImageTooLarge: (413, "image-too-large"),
    NotAnImage: (415, "unsupported-image"),
    ImageError: (422, "unreadable-image"),
    ChecklistError: (422, "invalid-device"),
}


#: The classes whose errors are answered as problems (exception handlers register these).
DOMAIN_ERRORS: tuple[type[Exception], ...] = (Problem, *PROBLEM_TYPES)


def problem_type(exc: BaseException) -> tuple[int, str]:
    """(status, problem type) of an exception: its nearest class in :data:`PROBLEM_TYPES`
    (a :class:`FieldError` is typed as the error it carries); :data:`INTERNAL` otherwise."""
    if isinstance(exc, FieldError):
        exc = exc.error
    for cls in type(exc).__mro__:
        if cls in PROBLEM_TYPES:
            return PROBLEM_TYPES[cls]
    return INTERNAL


@dataclasses.dataclass(frozen=True)
class ProblemDetails:
    """One problem+json answer."""

    status: int
    kind: str
    detail: str
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def body(self, instance: str, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_BASE + self.kind,
                                "title": self.kind.replace("-", " "), "status": self.status,
                                "detail": self.detail, "instance": instance}
        if self.field:
            body["field"] = self.field
        if request_id:
            body["request_id"] = request_id
        body.update(self.extra)
        return body

    def response(self, instance: str, request_id: str | None = None) -> JSONResponse:
        return JSONResponse(self.body(instance, request_id), status_code=self.status,
                            media_type=PROBLEM, headers=self.headers)


def problem_of(exc: BaseException) -> ProblemDetails:
    """The problem details of any exception, by :data:`PROBLEM_TYPES`: a domain error's own
    detail, field, headers and extra members; a 500 with a generic detail for anything else
    (the traceback stays in the server's log)."""
    status, kind = problem_type(exc)
    if (status, kind) == INTERNAL:
        return ProblemDetails(status, kind, INTERNAL_DETAIL)
    if isinstance(exc, Problem):
        return ProblemDetails(status, kind, exc.detail, exc.field, exc.headers, exc.extra)
    return ProblemDetails(status, kind, str(exc))
