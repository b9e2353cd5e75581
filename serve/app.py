"""The scoring service: FastAPI on ONNX Runtime, with dynamic batching and hardened uploads.

    POST /v1/grade          multipart: front, back (photos), device (JSON), refurbisher_grade,
                            heatmaps -> predicted grade, probabilities, parts, reasons, decision
    POST /v1/grade/batch    JSON: many devices (base64 photos) in one call
    GET  /v1/model          bundle metadata, execution provider, threads, batching
    GET  /healthz           alive
    GET  /readyz            bundle loaded and warmed up
    GET  /metrics           Prometheus
    /v1/evaluations, /v1/returns, /v1/dashboard/..., /v1/keys: the refurbisher workflow
                            (storage, API keys, decisions: serve/workflow_api.py)

Every error is an RFC 9457 problem+json naming the field and the reason; no bad input is
answered with a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from fusion.grade import GradeResult
from serve.batcher import Batcher, QueueFull
from serve.metrics import Metrics
from serve.observe import BodyTooLarge, Observe
from serve.problems import Problem
from serve.responses import BatchItem, BatchProblem, BatchResponse, GradeResponse
from serve.runtime import Grader, Photo
from serve.settings import Settings
from serve.workflow_api import Workflow
from tabular.schema import DeviceInfo, describe_errors, parse_device_info
from vision.preprocess import ImageError

log = logging.getLogger("photograde.serve")


# -- request parsing -----------------------------------------------------------------------
def image_problem(field: str, err: ImageError) -> Problem:
    text = str(err)
    if text.startswith("image too large"):
        return Problem(413, "image-too-large", f"{field}: {text}", field)
    if text.startswith("not an image"):
        return Problem(415, "unsupported-image", f"{field}: {text}", field)
    return Problem(422, "unreadable-image", f"{field}: {text}", field)


def parse_device(text: str | bytes | dict, field: str = "device") -> DeviceInfo:
    try:
        return parse_device_info(text)
    except ValueError as e:
        raise Problem(422, "invalid-device", f"{field}: {e}", field) from None


class BatchDevice(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    front: str = Field(description="front photo, base64")
    back: str = Field(description="back photo, base64")
    device: dict[str, Any]
    refurbisher_grade: str | None = None


class BatchRequest(BaseModel):
    devices: list[BatchDevice] = Field(min_length=1)


def batching_enabled(setting: bool | str, provider: str) -> bool:
    """``auto``: batch on GPUs only. On CPU, ONNX Runtime's time per photo is flat from batch 1
    to 16 for this model (benchmarks/serve_load.py), so waiting to batch only adds latency."""
    return provider == "CUDAExecutionProvider" if setting == "auto" else bool(setting)


class Service:
    """What the routes share: the grader, the batcher, the decode pool, metrics, settings."""

    def __init__(self, settings: Settings, grader: Grader | None = None):
        self.settings = settings
        self.grader = grader
        self.metrics = Metrics()
        self.batcher: Batcher | None = None
        self.ready = False
        self.decode_pool: ThreadPoolExecutor | None = None
        self.batching = False

    async def start(self) -> None:
        s = self.settings
        if self.grader is None:
            self.grader = await asyncio.to_thread(
                Grader, s.bundle, threads=s.threads or None, int8=s.int8,
                max_pixels=s.max_pixels)
        g = self.grader
        self.decode_pool = ThreadPoolExecutor(s.decode_threads or g.threads,
                                              thread_name_prefix="decode")
        self.batching = batching_enabled(s.batching, g.provider)
        self.batcher = Batcher(g.run_vision, max_batch=s.max_batch_size,
                               max_wait_ms=s.max_wait_ms, queue_size=s.queue_size,
                               enabled=self.batching, on_batch=self.metrics.batch_size.observe)
        self.batcher.start()
        size = g.pre.img_size  # warm-up: the first ONNX Runtime calls are slow
        for n in (1, 2, min(s.max_batch_size, 8)):
            await asyncio.to_thread(g.run_vision, np.zeros((n, 3, size, size), np.float32))
        self.ready = True
        log.info("ready: bundle %s, %s, %d thread(s), batching %s", g.manifest.bundle_version,
                 g.provider, g.threads, "on" if self.batching else "off")

    async def stop(self) -> None:
        self.ready = False
        if self.batcher:
            await self.batcher.stop()
        if self.decode_pool:
            self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def decode(self, field: str, data: bytes) -> Photo:
        limit = int(self.settings.max_upload_mb * 1024 * 1024)
        if len(data) > limit:
            raise Problem(413, "photo-too-large", f"{field}: {len(data)} bytes exceeds the "
                          f"limit of {limit} bytes", field)
        if not data:
            raise Problem(422, "unreadable-image", f"{field}: empty file", field)
        loop = asyncio.get_running_loop()
        assert self.grader is not None
        try:
            return await loop.run_in_executor(self.decode_pool, self.grader.decode, data)
        except ImageError as e:
            raise image_problem(field, e) from None

    async def grade(self, front: bytes, back: bytes, info: DeviceInfo,
                    refurbisher_grade: str | None, heatmaps: bool,
                    prefix: str = "") -> GradeResult:
        g = self.grader
        assert g is not None and self.batcher is not None
        if refurbisher_grade is not None and refurbisher_grade not in g.policy.grades:
            raise Problem(422, "unknown-grade", f"{prefix}refurbisher_grade: unknown grade "
                          f"{refurbisher_grade!r}; this scale has {', '.join(g.policy.grades)}",
                          f"{prefix}refurbisher_grade")
        photos = await asyncio.gather(self.decode(f"{prefix}front", front),
                                      self.decode(f"{prefix}back", back))
        self.metrics.queue_depth.set(self.batcher.pending)
        try:
            screen, shell, features = await self.batcher.infer(np.stack([p.x for p in photos]))
        except QueueFull:
            raise Problem(503, "overloaded", "the inference queue is full; retry shortly",
                          headers={"Retry-After": "1"}) from None
        finally:
            self.metrics.queue_depth.set(self.batcher.pending)
        result = await asyncio.to_thread(g.fuse, list(photos), screen[0], shell[1], features,
                                         info, refurbisher_grade, heatmaps)
        self.metrics.count(result)
        return result


def create_app(settings: Settings | None = None, grader: Grader | None = None) -> FastAPI:
    settings = settings or Settings()
    # Photos are read into memory right after parsing, and the body size is capped (below):
    # spooling each part to a temporary file first (Starlette's default above 1 MB) only adds
    # a disk write and a read per photo (~8 ms per request for two 12-MP JPEGs here).
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size,
                                         int(settings.max_upload_mb * 1024 * 1024))
    svc = Service(settings, grader)
    workflow = Workflow(settings, svc)  # storage, auth, evaluations (serve/workflow_api.py)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await svc.start()
        await workflow.start()
        yield
        await svc.stop()
        await workflow.stop()

    app = FastAPI(title="photograde", version="1", lifespan=lifespan,
                  description="A second opinion on the grade of a refurbished phone.")
    app.state.service = svc
    app.state.workflow = workflow

    def body_limit(path: str) -> int:
        limit = int(settings.max_upload_mb * 1024 * 1024) * 2 + 1024 * 1024
        if path == "/v1/grade/batch":
            return limit * settings.max_batch_devices
        if path.endswith("/justification"):
            return limit // 2 * settings.justification_max_photos + 1024 * 1024
        return limit

    app.add_middleware(Observe, limit_for=body_limit, metrics=svc.metrics)

    def problem_response(request: Request, p: Problem) -> JSONResponse:
        svc.metrics.errors.labels(p.kind).inc()
        return p.response(request.url.path, getattr(request.state, "request_id", None))

    @app.exception_handler(Problem)
    async def on_problem(request: Request, p: Problem):
        return problem_response(request, p)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, err: RequestValidationError):
        errors = []
        for e in err.errors():
            loc = [str(x) for x in e["loc"] if x not in ("body", "query", "form")]
            errors.append({"field": ".".join(loc) or "body", "reason": e["msg"]})
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem_response(request, Problem(422, "invalid-request", detail,
                                                 errors[0]["field"] if errors else None,
                                                 errors=errors))

    @app.exception_handler(BodyTooLarge)
    async def on_body_too_large(request: Request, exc: BodyTooLarge):
        return problem_response(request, Problem(413, "request-too-large", exc.detail))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        return problem_response(request, Problem(exc.status_code, "http-error", str(exc.detail),
                                                 headers=getattr(exc, "headers", None)))

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(request, Problem(500, "internal-error",
                                                 "unexpected error (logged on the server)"))

    @app.post("/v1/grade", summary="Grade one device from its photos and checklist",
              dependencies=[workflow.scoring])
    async def grade(
        request: Request,
        front: Annotated[UploadFile, File(description="front photo (JPEG, PNG, WebP, HEIC)")],
        back: Annotated[UploadFile, File(description="back photo")],
        device: Annotated[str, Form(description="device facts and checks, JSON")],
        refurbisher_grade: Annotated[str | None, Form()] = None,
        heatmaps: Annotated[bool, Form(description="include damage heatmaps (PNG)")] = False,
    ) -> GradeResponse:
        info = parse_device(device)
        front_b, back_b = await _read(front, "front", settings), await _read(back, "back",
                                                                            settings)
        result = await svc.grade(front_b, back_b, info, refurbisher_grade or None, heatmaps)
        return GradeResponse(request_id=request.state.request_id, **dict(result))

    @app.post("/v1/grade/batch", summary="Grade many devices in one call (base64 photos)",
              dependencies=[workflow.scoring])
    async def grade_batch(request: Request) -> BatchResponse:
        try:
            body = BatchRequest.model_validate_json(await request.body())
        except ValidationError as e:
            errors = describe_errors(e)
            raise Problem(422, "invalid-request", "; ".join(errors[:10]),
                          errors[0].split(":")[0]) from None
        if len(body.devices) > settings.max_batch_devices:
            raise Problem(413, "batch-too-large", f"devices: {len(body.devices)} exceeds the "
                          f"limit of {settings.max_batch_devices}", "devices")

        async def one(i: int, item: BatchDevice) -> BatchItem:
            prefix = f"devices[{i}]."
            try:
                info = parse_device(item.device, f"{prefix}device")
                photos = []
                for name in ("front", "back"):
                    try:
                        photos.append(base64.b64decode(getattr(item, name), validate=True))
                    except (binascii.Error, ValueError):
                        raise Problem(422, "invalid-base64", f"{prefix}{name}: not valid "
                                      "base64", f"{prefix}{name}") from None
                result = await svc.grade(photos[0], photos[1], info, item.refurbisher_grade,
                                         False, prefix)
                return BatchItem(id=item.id, ok=True, result=result)
            except Problem as p:
                if p.status == 503:
                    raise
                svc.metrics.errors.labels(p.kind).inc()
                return BatchItem(id=item.id, ok=False, problem=BatchProblem(
                    status=p.status, type=p.kind, detail=p.detail, field=p.field))

        results = await asyncio.gather(*(one(i, d) for i, d in enumerate(body.devices)))
        return BatchResponse(request_id=request.state.request_id, results=list(results))

    @app.get("/v1/model", summary="Bundle metadata, execution provider, thread settings")
    async def model() -> dict[str, Any]:
        if svc.grader is None:
            raise Problem(503, "not-ready", "the model bundle is still loading")
        return {**svc.grader.info(),
                "batching": {"enabled": svc.batching, "setting": settings.batching,
                             "max_batch_size":
                             settings.max_batch_size, "max_wait_ms": settings.max_wait_ms,
                             "queue_size": settings.queue_size},
                "limits": {"max_upload_mb": settings.max_upload_mb,
                           "max_pixels": settings.max_pixels}}

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The bundle is loaded and warmed up")
    async def readyz() -> JSONResponse:
        if not svc.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(workflow.router)
    from serve.ui import mount_ui  # the web UI under /ui (serve/ui.py)

    mount_ui(app, workflow)
    return app


async def _read(upload: UploadFile, field: str, settings: Settings) -> bytes:
    """Read an uploaded photo, refusing it as soon as it passes the size limit."""
    limit = int(settings.max_upload_mb * 1024 * 1024)
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "photo-too-large", f"{field}: larger than the limit of {limit} bytes",
                      field)
    return data


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from the environment."""
    return create_app(Settings())
