"""The checklist schema: device facts and the 10 functional checks of the evaluation form.

One pydantic model, :class:`DeviceInfo`, whose JSON form is used everywhere (CLI files, API
bodies, manifests)::

    {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": true,
     "battery_health_pct": 91, "checks": {"power_charging": true, "sim_tray": true, ...}}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model

from vision.errors import PhotogradeError

#: The functional checks of the form, in form order, with their labels (true = works).
CHECK_LABELS: dict[str, str] = {
    "power_charging": "Power on/off and charging",
    "sim_tray": "SIM tray present",
    "front_camera": "Front camera",
    "rear_camera": "Rear camera",
    "speakers": "Speakers",
    "microphones": "Microphones",
    "biometrics": "Touch ID / Face ID",
    "wifi": "Wi-Fi",
    "bluetooth": "Bluetooth",
    "buttons": "Buttons",
}
CHECKS: tuple[str, ...] = tuple(CHECK_LABELS)
FACTS: tuple[str, ...] = ("brand", "model", "storage_gb", "unlocked", "battery_health_pct")
#: Why a listed device came back (a return or a claim): the reasons the service accepts.
RETURN_REASONS: tuple[str, ...] = (
    "cosmetic_worse_than_described", "functional_fault", "battery", "changed_mind",
    "not_as_described", "damaged_in_transit", "other")
#: The return window: ``returned`` (the return-risk model's target) is a return within this many
#: days of the listing, and a listing's return record is complete once they have passed.
RETURN_WINDOW_DAYS = 30

_STRICT = ConfigDict(extra="forbid", strict=True)

Checks = create_model(  # type: ignore[call-overload]
    "Checks",
    __config__=_STRICT,
    __doc__="The functional checklist: every check is required, true = works.",
    **{name: (StrictBool, Field(description=label)) for name, label in CHECK_LABELS.items()},
)


class DeviceInfo(BaseModel):
    """Device facts and functional checks, as filled in the evaluation form."""

    model_config = _STRICT

    brand: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    storage_gb: int = Field(ge=1, le=4096)
    unlocked: bool
    battery_health_pct: int | None = Field(default=None, ge=0, le=100)
    checks: Checks

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that did not pass, in form order."""
        return [name for name in CHECKS if not getattr(self.checks, name)]


class ChecklistError(PhotogradeError):
    """Device info (facts and checks) is not valid; the message names each bad field
    (``errors``: one message per field)."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("invalid device info: " + "; ".join(self.errors))

    def __reduce__(self):  # picklable (worker processes): rebuilt from ``errors``
        return type(self), (self.errors,)


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A pydantic error's location as the API writes a field: ``devices[3].device``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def describe_errors(err: ValidationError) -> list[str]:
    """Readable one-line messages for a pydantic error, each naming the field
    (:func:`field_path`)."""
    out = []
    for e in err.errors():
        loc = field_path(e["loc"]) or "(body)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{loc}: {msg}")
    return out


def parse_device_info(data: str | bytes | dict) -> DeviceInfo:
    """Validate device info from JSON text or a dict; raises ChecklistError naming each bad
    field."""
    try:
        if isinstance(data, dict):
            return DeviceInfo.model_validate(data)
        return DeviceInfo.model_validate_json(data)
    except ValidationError as err:
        raise ChecklistError(describe_errors(err)) from None
