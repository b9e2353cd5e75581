"""Service settings: environment variables ``PHOTOGRADE_*`` and an optional TOML file.

Precedence: constructor arguments (the CLI), then environment, then the settings file named by
``PHOTOGRADE_SETTINGS_FILE``, then the defaults below.
"""

from __future__ import annotations

import os
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from fusion.bundle import BASE_MODEL
from tabular.schema import RETURN_REASONS
from vision.errors import PhotogradeError
from vision.photocheck import PhotoCheckConfig

# The base model shipped with the project (a source checkout or an editable install has it;
# the Docker image copies it to /models/bundle).
SHIPPED_BUNDLE = Path(__file__).resolve().parents[1] / "models" / BASE_MODEL

class SettingsError(PhotogradeError):
    """A setting (argument, environment variable or settings file) is invalid."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOTOGRADE_", extra="forbid",
                                      env_nested_delimiter="__")

    bundle: Path = Field(SHIPPED_BUNDLE, description="model bundle directory (default: the "
                         "shipped base model, models/photograde-base)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    threads: int = Field(0, ge=0, description="ONNX Runtime threads per worker (0: CPU quota)")
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="the vision model served: auto (int8 when the bundle measured "
        "every int8 accuracy change within 0.5 point, else fp32; /v1/model says which and "
        "why), fp32 or int8")
    ort_spinning: bool = Field(False, description="let ONNX Runtime's idle threads busy-wait "
                               "(off: they leave the cores to photo decoding)")
    max_batch_size: int = Field(16, ge=1, description="photos per inference call")
    max_wait_ms: float = Field(4.0, ge=0, description="wait for more requests to batch")
    batching: bool | Literal["auto"] = Field(
        "auto", description="dynamic batching: true, false (one call per request) or auto (on "
        "with the CUDA provider, off on CPU, where it measured no gain)")
    queue_size: int = Field(64, ge=1, description="photos waiting; beyond: 503 + Retry-After")
    max_upload_mb: float = Field(20.0, gt=0, description="per photo")
    max_pixels: int = Field(50_000_000, ge=1, description="per photo, against decompression "
                            "bombs")
    max_batch_devices: int = Field(32, ge=1, description="devices per /v1/grade/batch call")
    max_batch_mb: float = Field(256, gt=0, description="body limit of /v1/grade/batch (MB), "
                                "under the max_batch_devices x 2 full-size base64 photos "
                                "(about 1.7 GB with the defaults); send large photos in "
                                "several batches")
    photo_check: bool = Field(True, description="check every photo before grading "
                              "(vision.photocheck); a platform key may skip it per request "
                              "with quality_check=false")
    photo_check_thresholds: PhotoCheckConfig = Field(
        default_factory=PhotoCheckConfig, description="the photo check's thresholds; in the "
        "environment e.g. PHOTOGRADE_PHOTO_CHECK_THRESHOLDS__MIN_SIDE_PX=120")
    decode_threads: int = Field(0, ge=0, description="photo decoding threads (0: CPU quota)")
    # -- model versions: the bundle registry (serve/registry.py, serve/versions.py) ---------
    bundle_poll_seconds: float = Field(5.0, gt=0, description="each worker reads the active "
                                       "and shadow bundles from the database this often and "
                                       "switches when they change")
    shadow_queue_size: int = Field(16, ge=1, description="graded requests waiting for the "
                                   "shadow bundle; beyond, they are not shadow-scored")
    # -- refurbisher workflow: storage, auth, decisions (serve/workflow.py) -----------------
    database_url: str = Field("sqlite:///./photograde.db", description="SQLAlchemy URL: a "
                              "SQLite file, postgresql+psycopg://..., or sqlite:// (memory)")
    photo_dir: Path = Field(Path("photos"), description="content-addressed photo store "
                            "(a local folder; unused when photo_store is set)")
    photo_store: str = Field("", description="s3://bucket/prefix: keep photos in S3-compatible "
                             "object storage instead of photo_dir (docs/service.md, Storage)")
    s3_endpoint_url: str | None = Field(None, description="the S3 server, e.g. "
                                        "http://seaweedfs:8333 (default: AWS)")
    s3_region: str | None = Field(None, description="S3 region (default: AWS_DEFAULT_REGION)")
    s3_access_key_id: str | None = Field(None, description="default: AWS_ACCESS_KEY_ID, "
                                         "~/.aws or an instance role")
    s3_secret_access_key: SecretStr | None = Field(None, description="default: "
                                                   "AWS_SECRET_ACCESS_KEY")
    auth_required: bool = Field(True, description="API keys on every /v1 route")
    rate_limit_per_minute: float = Field(120, ge=0, description="requests per API key and "
                                         "minute (0: no limit)")
    rate_limit_burst: int = Field(0, ge=0, description="token bucket size (0: one minute's "
                                  "worth)")
    rate_limits: dict[str, float] = Field(
        default_factory=lambda: {"platform": 6000.0},
        description="per-role overrides of rate_limit_per_minute (default: platform keys "
        "6000 a minute, above what one server grades, so that a platform back end scoring "
        "every listing is never throttled by default), e.g. "
        '{"platform": 6000} or PHOTOGRADE_RATE_LIMITS__PLATFORM=6000 (0: no limit)')
    redis_url: str | None = Field(None, description="redis://host:6379/0: the rate limits "
                                  "(per key, failed authentications) shared by every process "
                                  "and replica; unset: each process counts its own")
    validated_max_gap: int | None = Field(None, ge=0, description="override the grading "
                                          "config's [decision] threshold")
    suggestion_max_gap: int | None = Field(None, ge=0, description="override the grading "
                                           "config's [decision] threshold")
    justification_min_chars: int = Field(10, ge=1, description="justification text length")
    justification_max_photos: int = Field(6, ge=1, description="photos per justification")
    return_reasons: list[str] = Field(
        list(RETURN_REASONS), min_length=1, description="reasons accepted by POST /v1/returns")
    # -- the UI's sessions and the security headers (serve/sessions.py, serve/headers.py) ----
    session_cookie_secure: bool = Field(True, description="the UI's session cookie is "
                                        "__Host-photograde_session, Secure (https only); false "
                                        "for plain-http development: photograde_session, not "
                                        "Secure")
    session_idle_minutes: float = Field(30, gt=0, description="a UI session ends after this "
                                        "long without a request")
    session_max_hours: float = Field(12, gt=0, description="a UI session ends this long after "
                                     "signing in, however active")
    hsts_max_age: int = Field(0, ge=0, description="Strict-Transport-Security max-age in "
                              "seconds on every response (0: not sent); only behind TLS")
    # -- abuse limits, proxies, operations endpoints (serve/gate.py, serve/server.py) -------
    max_body_kb: int = Field(64, ge=1, description="request body limit of the routes without "
                             "photos (JSON, forms); photo routes: max_upload_mb per photo")
    auth_failures_per_minute: float = Field(10, ge=0, description="failed authentications "
                                            "(bad keys, failed logins) per client address and "
                                            "minute; beyond: 429 (0: no limit)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or networks (CIDR) of the reverse proxies "
        "whose X-Forwarded-For/-Proto/-Host headers are believed; from anyone else those "
        "headers are dropped")
    max_header_kb: int = Field(16, ge=1, description="request line and headers; beyond: 431")
    timeout_headers: float = Field(10, gt=0, description="seconds for a request's headers to "
                                   "arrive, from the connection or its first byte; then 408")
    timeout_keep_alive: int = Field(5, ge=1, description="seconds an idle keep-alive "
                                    "connection stays open")
    metrics_enabled: bool = Field(True, description="serve GET /metrics")
    metrics_clients: list[str] = Field(
        default_factory=list, description="addresses or networks allowed to read /metrics "
        "(empty: anyone); others get 404")
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json")

    @field_validator("photo_store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value and not value.startswith("s3://"):
            raise ValueError("expected s3://bucket[/prefix] (or empty: the local photo_dir)")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _role_limits(cls, value: dict[str, float]) -> dict[str, float]:
        from serve.models import ROLES
        for role, limit in value.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
            if limit < 0:
                raise ValueError(f"{role}: a rate limit is >= 0")
        return value

    @field_validator("trusted_proxies", "metrics_clients")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ip_network(item, strict=False)  # ValueError: not an address or network
        return value
    # -- monitoring (serve/drift.py, serve/model_health.py; docs/service.md "Monitoring") --
    drift_window: int = Field(500, ge=1, description="graded devices (and photo checks) in the "
                              "sliding window of the drift gauges; a bundle without a reference "
                              "distribution takes its first drift_window grades as one")
    drift_min_devices: int = Field(100, ge=1, description="the window's gauges are published "
                                   "once it holds this many")
    monitor_outcome_days: int = Field(30, ge=1, le=366, description="outcome gauges "
                                      "(disagreement, false positives and negatives): the "
                                      "evaluations submitted in the last N days")
    monitor_refresh_s: float = Field(60, gt=0, description="seconds between two computations "
                                     "of the outcome gauges from the database")

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes: the size limit of one photo."""
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        sources = [init_settings, env_settings]
        path = os.environ.get("PHOTOGRADE_SETTINGS_FILE")
        if path:
            if not Path(path).is_file():
                raise SettingsError(f"PHOTOGRADE_SETTINGS_FILE={path}: file not found")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings with ``overrides`` (the command line's) over the environment and the settings
    file; an invalid value raises SettingsError with pydantic's message."""
    try:
        return Settings(**overrides)
    except SettingsError:
        raise
    except ValueError as e:  # pydantic's ValidationError, a settings file's TOMLDecodeError
        raise SettingsError(str(e)) from None
