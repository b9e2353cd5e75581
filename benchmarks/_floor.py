"""The floor of one grade on this machine: the two photos decoded at once by the fastest
decoder available, plus raw ONNX Runtime on the decoded tensors; and the project's grade as
the service runs it, in-process (:class:`serve.grading.Service`, no HTTP) and, in turn with
it, over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import httpx
import numpy as np
from PIL import Image

from benchmarks._common import amedian_ms, amedians_in_turn, median_ms
from benchmarks.serve_load import grade_request
from serve.grading import Service
from serve.runtime import PARTS, Grader
from serve.settings import Settings
from tabular.schema import DeviceInfo
from vision.preprocess import PreprocessConfig, normalize, resize_rgb

Decoder = Callable[[bytes], np.ndarray]


@contextlib.contextmanager
def pinned(cores: int) -> Iterator[None]:
    """Run on ``cores`` CPUs only (the threads started meanwhile inherit it), so that "1
    thread" means one core for the floor and the grade alike, as in a 1-CPU container."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:cores])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _input(rgb: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    size = pre.img_size
    small = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    return normalize(small, pre)


def decoders(g: Grader) -> dict[str, Decoder]:
    """The decoders to the model input this machine has: the project's first (Pillow's draft
    pixels, decoded by simplejpeg for colour JPEGs), then OpenCV's and simplejpeg's fast
    DCT-scaled decoding when installed."""
    pre = g.pre
    found: dict[str, Decoder] = {"project (Pillow's draft pixels)": lambda b: g.decode(b).x}
    try:
        import cv2

        def opencv(b: bytes) -> np.ndarray:
            buf = np.frombuffer(b, np.uint8)
            grey = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)  # header-cheap
            if grey is None:
                raise ValueError("OpenCV cannot decode this photo")
            factor = 8 if min(grey.shape) >= pre.img_size else 4
            flag = cv2.IMREAD_REDUCED_COLOR_8 if factor == 8 else cv2.IMREAD_REDUCED_COLOR_4
            bgr = cv2.imdecode(buf, flag)
            assert bgr is not None  # the same bytes decoded just above
            small = cv2.resize(bgr, (pre.img_size, pre.img_size), interpolation=cv2.INTER_AREA)
            return normalize(small[..., ::-1], pre)

        found["opencv reduced"] = opencv
    except ImportError:
        pass
    try:
        import simplejpeg

        found["simplejpeg"] = lambda b: _input(simplejpeg.decode_jpeg(
            b, min_height=pre.img_size, min_width=pre.img_size, fastdct=True,
            fastupsample=True), pre)
    except ImportError:
        pass
    return found


def _all(pool: ThreadPoolExecutor, decode: Decoder, photos: list[bytes]) -> list[np.ndarray]:
    return list(pool.map(decode, photos))


def fastest_decoder(g: Grader, photos: list[bytes], pool: ThreadPoolExecutor, repeat: int
                    ) -> tuple[str, float]:
    """The fastest decoder of both photos at once on ``pool``, and its median ms."""
    times = {name: median_ms(partial(_all, pool, d, photos), repeat)
             for name, d in decoders(g).items()}
    best = min(times, key=times.__getitem__)
    return best, times[best]


def localiser_input(g: Grader, photos: list[bytes]) -> np.ndarray | None:
    """The localiser's input for the photos the bundle crops (None: it crops none)."""
    if g.localiser is None or g.crop is None:
        return None
    pre = g.localiser.pre
    return np.stack([normalize(resize_rgb(g.decode(photo).image, pre), pre)
                     for photo, (_part, view) in zip(photos, PARTS, strict=True)
                     if view in g.crop.views])


def run_models(g: Grader, x: np.ndarray, located: np.ndarray | None = None) -> None:
    """Every model a grade runs on the decoded tensors: vision and the photo check's, and the
    localiser's on ``located`` (:func:`localiser_input`) when the bundle crops."""
    g.run_vision(x)
    if g.photocheck is not None:
        pc = g.photocheck
        pc.run(None, {pc.get_inputs()[0].name: x})
    if g.localiser is not None and located is not None:
        g.localiser.run(located)


@dataclass
class Paired:
    """One setting's figures: the floor and the full grade (medians, sampled alternately),
    the fastest decoder and the floor's parts timed apart (decoding both photos at once, the
    models on the decoded tensors)."""

    floor: float
    full: float
    decoder: str
    decode: float
    infer: float


@contextlib.asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    """The service started on ``settings`` (in-process), stopped at the end."""
    svc = Service(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def paired_ms(settings: Settings, photos: list[bytes], info: DeviceInfo, threads: int,
              repeat: int) -> Paired:
    """The floor and the full grade sampled alternately (:func:`amedians_in_turn`) on the
    service's own ONNX Runtime sessions: the floor is the fastest decoder on both photos at
    once (on ``threads`` threads), then :func:`run_models`; the full grade is the service's
    in-process: decode pool, photo check, vision, fusion, decision (what ``/v1/grade`` runs,
    without HTTP)."""
    async def run() -> Paired:
        async with service(settings) as svc:
            g = svc.loaded
            with ThreadPoolExecutor(threads) as pool:
                best, decode_ms = fastest_decoder(g, photos, pool, repeat)
                x = np.stack([g.decode(p).x for p in photos])
                located = localiser_input(g, photos)
                infer_ms = median_ms(lambda: run_models(g, x, located), repeat)
                decode = decoders(g)[best]

                async def floor() -> None:
                    run_models(g, np.stack(list(pool.map(decode, photos))), located)

                floor_ms, full_ms = await amedians_in_turn(
                    floor, lambda: svc.grade(photos[0], photos[1], info, "good", False), repeat)
            return Paired(floor_ms, full_ms, best, decode_ms, infer_ms)
    return asyncio.run(run())


async def _post_ms(client: httpx.AsyncClient, url: str, body: bytes,
                   headers: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = await client.post(url, content=body, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:300]}")
    return (time.perf_counter() - t0) * 1000


def paired_http_ms(settings: Settings, url: str, photos: list[bytes], info: DeviceInfo,
                   repeat: int) -> tuple[float, float]:
    """Medians (in-process grade, the same grade over HTTP at ``url``), sampled in turn
    (:func:`amedians_in_turn`); one client, kept alive, the multipart body encoded once (what
    a client sends)."""
    body, headers = grade_request(photos)

    async def run() -> tuple[float, float]:
        async with service(settings) as svc, httpx.AsyncClient(timeout=120) as client:
            return await amedians_in_turn(
                lambda: svc.grade(photos[0], photos[1], info, "good", False),
                lambda: _post_ms(client, url + "/v1/grade", body, headers), repeat)
    return asyncio.run(run())


def upload_ms(url: str, photos: list[bytes], repeat: int) -> float:
    """Median ms of posting the grade's multipart body to ``url`` (a server that only reads
    it, :mod:`benchmarks._sink`): the upload's own cost on this server."""
    body, headers = grade_request(photos)

    async def run() -> float:
        async with httpx.AsyncClient(timeout=120) as client:
            return await amedian_ms(lambda: _post_ms(client, url + "/", body, headers), repeat)
    return asyncio.run(run())
