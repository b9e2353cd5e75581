"""RFC 9457 problem details (``application/problem+json``) for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An error answered as problem+json: status, a short title, a detail naming the field."""

    def __init__(self, status: int, kind: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.field = status, kind, detail, field
        self.headers, self.extra = headers or {}, extra

    def response(self, instance: str, request_id: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "type": f"https://photograde.dev/problems/{self.kind}",
            "title": self.kind.replace("-", " "),
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field:
            body["field"] = self.field
        if request_id:
            body["request_id"] = request_id
        body.update(self.extra)
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM,
                            headers=self.headers)
