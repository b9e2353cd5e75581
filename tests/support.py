"""What the tests (and the benchmarks) share: the checklist they send, database URLs (SQLite,
PostgreSQL), distinct photos, and a real server on loopback (in a thread or its own process)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tabular.schema import CHECKS

#: The repository root (the working directory of the sub-processes that import its packages).
ROOT = Path(__file__).resolve().parents[1]
PG_ENV = "PHOTOGRADE_TEST_POSTGRES_URL"
#: A valid checklist (device facts and checks) that passes every check.
INFO = {"brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": True,
        "battery_health_pct": 91, "checks": dict.fromkeys(CHECKS, True)}
#: Database kinds every storage test runs on; PostgreSQL only when PHOTOGRADE_TEST_POSTGRES_URL
#: names a server (CI starts one: scripts/test-postgres).
DB_KINDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(
                not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set"))]

S3_ENV = "PHOTOGRADE_TEST_S3_URL"  # scripts/test-s3 start prints it (and the endpoint, keys)
STORE_KINDS = [pytest.param("local", id="local"),
               pytest.param("s3", id="s3", marks=pytest.mark.skipif(
                   not os.environ.get(S3_ENV), reason=f"{S3_ENV} is not set"))]
# the database kinds, and SQLite with the photos in S3 (see world_url)
WORLDS = [*DB_KINDS, pytest.param("sqlite+s3", id="sqlite+s3", marks=pytest.mark.skipif(
    not os.environ.get(S3_ENV), reason=f"{S3_ENV} is not set"))]


def s3_settings() -> dict[str, str]:
    """Settings for a fresh prefix on the test S3 server (scripts/test-s3): photo_store and
    s3_endpoint_url; the keys come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    return {"photo_store": f"{os.environ[S3_ENV].rstrip('/')}/{uuid.uuid4().hex[:12]}",
            "s3_endpoint_url": os.environ["PHOTOGRADE_TEST_S3_ENDPOINT"]}

REDIS_ENV = "PHOTOGRADE_TEST_REDIS_URL"  # scripts/test-redis start prints it
LIMITER_KINDS = [pytest.param("memory", id="memory"),
                 pytest.param("redis", id="redis", marks=pytest.mark.skipif(
                     not os.environ.get(REDIS_ENV), reason=f"{REDIS_ENV} is not set"))]


@contextmanager
def world_url(world: str, tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """(database URL, photo-store settings) for one of WORLDS: ``kind`` or ``kind+s3``."""
    kind, _, photos = world.partition("+")
    with database_url(kind, tmp) as url:
        yield url, s3_settings() if photos == "s3" else {}


def photo_store(kind: str, tmp: Path):
    """An empty photo store of ``kind``: a folder under ``tmp``, or a new prefix in the test
    S3 bucket."""
    from serve.photostore import LocalPhotoStore, open_photo_store
    from serve.settings import Settings

    if kind == "local":
        return LocalPhotoStore(tmp / "photos")
    return open_photo_store(Settings(**s3_settings()))  # type: ignore[arg-type]



@contextmanager
def database_url(kind: str, tmp: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file under ``tmp``, or a new PostgreSQL database
    (created on the server of PHOTOGRADE_TEST_POSTGRES_URL, dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'photograde.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(os.environ[PG_ENV])
    name = f"photograde_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def small_photos(synth_dir: Path, n: int, size: int = 160) -> list[tuple[bytes, bytes]]:
    """``n`` distinct (front, back) JPEG pairs from the synthetic set, ``size`` px, each
    stamped with its index so that no two requests share a photo."""
    from training.manifest import load_manifest

    rows = load_manifest(synth_dir / "manifest.csv").rows
    bases: list[list[Image.Image]] = []
    for row in rows:
        images = []
        for path in (row.front_path, row.back_path):
            assert path is not None, f"{row.device_id}: a synthetic device has both photos"
            im = Image.open(path).convert("RGB")
            im.thumbnail((size, size))
            images.append(im)
        bases.append(images)
    out = []
    for i in range(n):
        encoded = []
        for k, base in enumerate(bases[i % len(bases)]):
            im = base.copy()
            for bit in range(16):  # the index, as a row of black/white pixels
                im.putpixel((bit, k), (255, 255, 255) if (i >> bit) & 1 else (0, 0, 0))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            encoded.append(buf.getvalue())
        out.append((encoded[0], encoded[1]))
    return out


def grade_at_gap(grades: list[str] | tuple[str, ...], predicted: str, gap: int) -> str:
    """A refurbisher grade ``gap`` steps from ``predicted`` (worse if possible, else better)."""
    i = grades.index(predicted)
    return grades[i + gap] if i + gap < len(grades) else grades[i - gap]


def run_python(code: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter (this one's, from the repository root), its output
    captured as text; ``check``: raise if it fails."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, check=check)


def none_imported(*modules: str) -> str:
    """Code for :func:`run_python` that fails, naming them, if any of ``modules`` is loaded."""
    return (f"import sys\nbad = [m for m in {modules!r} if m in sys.modules]\n"
            "assert not bad, bad\n")


# -- the workflow API under test ------------------------------------------------------------
@dataclass
class World:
    """A workflow API under test: its client, grade scale, a key per role, distinct photos."""

    client: Any  # fastapi.testclient.TestClient
    grades: list[str]
    keys: dict[str, str]
    pairs: list[tuple[bytes, bytes]]
    ids: dict[str, str] = field(default_factory=dict)
    used: int = 0

    def h(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}

    def pair(self) -> tuple[bytes, bytes]:
        self.used += 1
        return self.pairs[self.used - 1]

    def submit(self, who: str, gap: int | None = None, grade: str | None = None,
               pair: tuple[bytes, bytes] | None = None, headers: dict | None = None,
               **form: Any) -> httpx.Response:
        front, back = pair or self.pair()
        if grade is None:
            predicted = self.client.post("/v1/grade", headers=self.h("platform"), files={
                "front": ("f.jpg", front), "back": ("b.jpg", back)},
                data={"device": json.dumps(INFO)}).json()["grade"]
            grade = grade_at_gap(self.grades, predicted, gap or 0)
        data = {"device": json.dumps(INFO), "refurbisher_grade": grade, **form}
        return self.client.post("/v1/evaluations", headers={**self.h(who), **(headers or {})},
                                files={"front": ("f.jpg", front), "back": ("b.jpg", back)},
                                data={k: v for k, v in data.items() if v is not None})

    def review(self, evaluation: dict[str, Any], action: str, comment: str = "ok"
               ) -> tuple[httpx.Response, str]:
        """The reviewer approves the refurbisher's grade or overrides it one step worse;
        returns the response and the final grade the case should have."""
        url = f"/v1/evaluations/{evaluation['id']}"
        if action == "approve":
            return (self.client.post(f"{url}/approve", headers=self.h("reviewer"),
                                     json={"comment": comment}),
                    evaluation["refurbisher_grade"])
        final = grade_at_gap(self.grades, evaluation["refurbisher_grade"], 1)
        return (self.client.post(f"{url}/override", headers=self.h("reviewer"),
                                 json={"grade": final}), final)


def role_keys(db: Any, refurbisher_id: str = "R001") -> dict[str, str]:
    """A new API key per role of the UI (refurbisher ``refurbisher_id``, platform, reviewer)."""
    from serve.auth import create_key

    return {"refurbisher": create_key(db, "refurbisher", refurbisher_id)[1],
            **{role: create_key(db, role)[1] for role in ("platform", "reviewer")}}


def workflow_app(url: str, tmp: Path, grader: Any, **kw: Any) -> Any:
    """The service with the workflow on database ``url``, photos under ``tmp``, no rate limit
    unless ``rate_limit_per_minute`` is given (nor on failed authentications, unless
    ``auth_failures_per_minute`` is), no photo check unless ``photo_check=True`` (the
    synthetic test photos are small, often soft, and reused across devices)."""
    from serve.app import create_app
    from serve.settings import Settings

    settings = Settings(bundle=grader.dir, threads=1, database_url=url,
                        photo_dir=tmp / "photos", max_upload_mb=1,
                        rate_limit_per_minute=kw.pop("rate_limit_per_minute", 100_000),
                        auth_failures_per_minute=kw.pop("auth_failures_per_minute", 0),
                        photo_check=kw.pop("photo_check", False), **kw)
    return create_app(settings, grader)


def ui_session(client: Any, key: str) -> dict[str, str]:
    """Sign in to the UI with ``key`` (a TestClient or an httpx client on the server); the
    headers that carry the session cookie. (By hand: a cookie jar keeps the default Secure
    cookie away from a plain-http test server, as a browser does away from a plain-http site.)"""
    r = client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].split(";")[0]
    assert cookie.startswith(("__Host-photograde_session=", "photograde_session=")), cookie
    return {"Cookie": cookie}


# -- a real server on loopback ---------------------------------------------------------------
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 120, *, exited: Callable[[], str | None] = lambda: None,
               timeout: float = 2) -> None:
    """Poll ``url``/readyz until it answers 200; ``exited()`` returns why the server is gone
    (then this raises at once), or None while it runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (why := exited()) is not None:
            raise RuntimeError(f"the server exited during start-up: {why}")
        try:
            if httpx.get(url + "/readyz", timeout=timeout).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready in {seconds:.0f} s")


class ThreadServer:
    """An ASGI app on a real uvicorn server in a daemon thread of this process."""

    def __init__(self, app: Any):
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.url, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


#: ``photograde serve`` (the console script's module); add ``--bundle`` and other options.
PHOTOGRADE_SERVE = [sys.executable, "-m", "photograde.cli", "serve"]
#: The app factory on uvicorn directly, configured by PHOTOGRADE_* variables, quiet logs.
UVICORN_FROM_ENV = [sys.executable, "-m", "uvicorn", "serve.app:app_from_env", "--factory",
                    "--host", "127.0.0.1", "--log-level", "warning"]


class ServerProcess:
    """The service in its own process (``argv`` + ``--port`` on a free loopback port).

    ``start()`` waits for /readyz and may be called again after ``kill()`` (a new port);
    as a context manager it starts and, at the end, terminates the process."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None,
                 log: Path | None = None):
        self.argv, self.env, self.log = argv, dict(env or os.environ), log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port, self.url = 0, ""

    def start(self) -> str:
        """Start the server and return its URL once it is ready."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        out = self.log.open("ab") if self.log else None
        self.proc = proc = subprocess.Popen([*self.argv, "--port", str(self.port)], env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT if out else None)
        wait_ready(self.url, exited=lambda: None if proc.poll() is None else self._log_tail())
        return self.url

    def _log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log else "see its output above"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(30)

    def stop(self) -> None:
        """Terminate gracefully (15 s), then kill."""
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def rss_mb(self) -> float:
        """The server's resident memory in MiB (Linux)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
