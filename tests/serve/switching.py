"""A load generator and the waits of a bundle switch under load, shared by the switch test
(tests/serve/test_bundle_switch.py) and the production loop's end-to-end test
(tests/photograde/test_production_chain.py)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from photograde.cli import main
from serve.db import Database
from tests.support import INFO

CLIENTS = 3
CONSECUTIVE = 24  # answers in a row from the new bundle: both workers switched


@dataclass
class Load:
    """Clients posting /v1/grade until stopped: every answer's (time, bundle) or failure."""

    url: str
    pairs: list[tuple[bytes, bytes]]
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, k: int) -> None:
        # a connection per request: the workers share the listening socket, and a kept-alive
        # connection would stay with one worker
        with httpx.Client(timeout=60, headers={"Connection": "close"}) as http:
            i = k
            while not self.stop.is_set():
                front, back = self.pairs[i % len(self.pairs)]
                i += CLIENTS
                try:
                    r = http.post(self.url + "/v1/grade", data={"device": json.dumps(INFO)},
                                  files={"front": ("f.jpg", front), "back": ("b.jpg", back)})
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.answers.append((time.monotonic(), r.json()["bundle_version"]))

    def switched_to(self, version: str, since: float) -> float | None:
        """When the answers after ``since`` became ``version`` for good (CONSECUTIVE in a
        row, to the last one), or None."""
        after = [(t, v) for t, v in self.answers if t > since]
        tail = 0
        for _, v in reversed(after):
            if v != version:
                break
            tail += 1
        return after[-tail][0] if tail >= CONSECUTIVE else None


def metrics_show(url: str, version: str) -> bool:
    text = httpx.get(url + "/metrics", timeout=10).text
    return f'photograde_bundle_info{{role="active",version="{version}"}} 1.0' in text


def switch(load: Load, url: str, version: str, argv: list[str]) -> float:
    """Run the command, wait until every answer, /v1/model and /metrics show ``version``;
    the seconds it took."""
    t0 = time.monotonic()
    assert main(argv) == 0
    deadline = t0 + 45
    while time.monotonic() < deadline:
        done = load.switched_to(version, t0)
        if (done and httpx.get(url + "/v1/model", timeout=10).json()["bundle_version"] == version
                and metrics_show(url, version)):
            return done - t0
        time.sleep(0.2)
    raise AssertionError(f"not switched to {version} in 45 s: "
                         f"{Counter(v for t, v in load.answers if t > t0)}")


def bundles(d: Database) -> list[Any]:
    from sqlalchemy import select

    from serve.models import Bundle

    with d.read() as s:
        return list(s.scalars(select(Bundle)))
