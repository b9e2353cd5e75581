"""Limits on what a caller may store, one definition for the JSON API and the UI: the API's
request models declare them (a 422 naming the field before any work), and the workflow's
service functions check them again (serve/workflow.py), so that the UI's forms, which go
through those functions, cannot store what the API refuses."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BeforeValidator

from serve.problems import InvalidRequest

#: A justification's text, a review's comment, a return's comment (characters).
TEXT_MAX = 4000
#: The platform's own reference of a device (``device_ref``; characters).
DEVICE_REF_MAX = 128


def _not_a_number(value: Any) -> Any:
    """An ISO 8601 date-time only: pydantic would take a number (or a numeric string) as Unix
    time, which the OpenAPI's ``date-time`` does not allow."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("expected an ISO 8601 date-time")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: A date-time as the OpenAPI's ``date-time`` format writes it (ISO 8601), never Unix time.
IsoDatetime = Annotated[dt.datetime, BeforeValidator(_not_a_number)]


def check_length(value: str | None, field: str, limit: int) -> None:
    """InvalidRequest naming ``field`` when ``value`` is longer than ``limit`` characters."""
    if value is not None and len(value) > limit:
        raise InvalidRequest(f"{field}: at most {limit} characters (this one has "
                             f"{len(value)})", field)
