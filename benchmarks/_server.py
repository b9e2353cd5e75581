"""Start the real service in a subprocess on a free loopback port (for the load benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    def __init__(self, bundle: Path, **settings: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PHOTOGRADE_BUNDLE": str(bundle),
                    "PHOTOGRADE_PORT": str(self.port), "PHOTOGRADE_AUTH_REQUIRED": "false",
                    **{f"PHOTOGRADE_{k.upper()}": str(v) for k, v in settings.items()}}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "serve.app:app_from_env", "--factory", "--host",
             "127.0.0.1", "--port", str(self.port), "--log-level", "warning"], env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("the service exited during start-up")
            time.sleep(0.2)
        raise RuntimeError("the service did not become ready in 120 s")

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
