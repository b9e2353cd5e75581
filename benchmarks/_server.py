"""The real service in a subprocess on a free loopback port, for the load benchmarks: the app
factory on uvicorn (quiet logs), configured by PHOTOGRADE_* variables; the harness itself is
the tests' (:class:`tests.support.ServerProcess`)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import UVICORN_FROM_ENV, ServerProcess

#: :mod:`benchmarks._sink` on the service's uvicorn settings (a body read, nothing else).
SINK = [*UVICORN_FROM_ENV[:3], "benchmarks._sink:app", *UVICORN_FROM_ENV[5:]]


def service_process(bundle: Path, **settings: object) -> ServerProcess:
    """The service of ``bundle`` without auth, on an in-memory database unless
    PHOTOGRADE_DATABASE_URL is set; ``settings`` become PHOTOGRADE_* variables."""
    env = {"PHOTOGRADE_DATABASE_URL": "sqlite://",  # no file left behind, unless one is set
           **os.environ, "PHOTOGRADE_BUNDLE": str(bundle), "PHOTOGRADE_AUTH_REQUIRED": "false",
           **{f"PHOTOGRADE_{k.upper()}": str(v) for k, v in settings.items()}}
    return ServerProcess(UVICORN_FROM_ENV, env)


def sink_process() -> ServerProcess:
    """:data:`SINK` on a free loopback port: the upload floor of the service's server."""
    return ServerProcess(SINK, {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
