"""Abuse limits against a real server (``photograde serve`` in its own process, raw sockets):
the key is checked before a body is read, each route's body limit, the batch route's device
count before parsing and its cost in rate-limit tokens, failed authentications limited per
client address, forwarded headers believed from trusted proxies only, the server's header
limit and timeout; and the settings that turn off /metrics and the API docs."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.auth import create_key
from serve.db import Database
from serve.settings import Settings
from tests.support import INFO, PHOTOGRADE_SERVE, ServerProcess

MB = 1024 * 1024
PROXY = "127.0.0.2"  # the trusted reverse proxy (any 127/8 address reaches the server)
BAD_KEY = "pgk_000000000000_" + "A" * 43


@dataclass
class Served:
    server: ServerProcess
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            transport=httpx.HTTPTransport(local_address=source))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    tmp = tmp_path_factory.mktemp("limits")
    url = f"sqlite:///{tmp / 'photograde.db'}"
    db = Database(url)
    db.migrate()
    keys = {role: create_key(db, role, "R1" if role == "refurbisher" else None)[1]
            for role in ("platform", "refurbisher", "reviewer")}
    keys["batcher"] = create_key(db, "platform", name="batch tokens")[1]
    db.dispose()
    env = {**os.environ, "PHOTOGRADE_DATABASE_URL": url, "PHOTOGRADE_PHOTO_DIR": str(tmp / "p"),
           "PHOTOGRADE_MAX_UPLOAD_MB": "1", "PHOTOGRADE_RATE_LIMIT_PER_MINUTE": "1",
           "PHOTOGRADE_RATE_LIMIT_BURST": "40", "PHOTOGRADE_AUTH_FAILURES_PER_MINUTE": "10",
           "PHOTOGRADE_RATE_LIMITS": "{}",  # platform keys under the default limit too
           "PHOTOGRADE_TRUSTED_PROXIES": json.dumps([PROXY]),
           "PHOTOGRADE_METRICS_CLIENTS": json.dumps([PROXY]),
           "PHOTOGRADE_TIMEOUT_HEADERS": "1", "PHOTOGRADE_MAX_BATCH_MB": "8"}
    with ServerProcess([*PHOTOGRADE_SERVE, "--threads", "1"], env, tmp / "server.log") as server:
        yield Served(server, keys)


@dataclass
class Raw:
    """One response read from a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it

    def json(self) -> dict:
        return json.loads(self.body)


def raw(port: int, head: str, body: bytes = b"", source: str = "127.0.0.1",
        until_closed: bool = True) -> Raw:
    """Send a request's ``head`` and the first bytes of its body, then read the answer without
    sending the rest (and, ``until_closed``, wait for the server to close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=(source, 0)) as s:
        s.sendall(head.encode("latin-1") + body)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        top, _, rest = data.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
        while len(rest) < int(headers.get("content-length", 0)) and (chunk := s.recv(65536)):
            rest += chunk
        return Raw(int(lines[0].split()[1]), headers, rest, until_closed and s.recv(1) == b"")


def post(path: str, length: int, *extra: str, kind: str = "application/json") -> str:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: x", f"Content-Type: {kind}",
                         f"Content-Length: {length}", *extra, "", ""])


def test_a_body_without_a_key_is_refused_before_it_is_read(served):
    port, before = served.server.port, served.server.rss_mb()
    form = "multipart/form-data; boundary=b"
    for path, kind, start in (("/v1/evaluations", form, b"--b\r\n"),
                              ("/v1/evaluations/e1/justification", form, b"--b\r\n"),
                              ("/v1/grade/batch", "application/json", b'{"devices": ['),
                              ("/v1/returns", "application/json", b'[{"evaluation_id": "')):
        r = raw(port, post(path, 20 * MB, kind=kind), start)  # 20 MB announced, 5 bytes sent
        assert r.status == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["type"].endswith("/unauthorized")
        # the connection is closed rather than drained: the other 20 MB are never read
        assert r.headers["connection"] == "close" and r.closed
    wrong_role = raw(port, post("/v1/returns", 20 * MB,
                                f"Authorization: Bearer {served.keys['refurbisher']}"), b"[")
    assert wrong_role.status == 403 and wrong_role.closed
    # a UI form checks its login first too (within its route's limit: two photos)
    ui = raw(port, post("/ui/evaluations", int(1.5 * MB), kind=form), b"--b\r\n",
             until_closed=False)
    assert ui.status == 303 and ui.headers["location"] == "/ui/login"
    assert served.server.rss_mb() < before + 15


def test_a_body_over_its_route_limit_is_refused_before_it_is_read(served):
    port, keys = served.server.port, served.keys
    json_limit, form = 64 * 1024, 128 * 1024
    cases = [("/v1/returns", "platform", json_limit + 1, json_limit),
             ("/v1/evaluations/e1/approve", "reviewer", MB, json_limit),
             ("/v1/evaluations", "refurbisher", 20 * MB, 2 * MB + form),
             ("/v1/evaluations/e1/justification", "refurbisher", 20 * MB, 6 * MB + form),
             ("/v1/grade/batch", "platform", 2000 * MB, 8 * MB),  # max_batch_mb
             ("/v1/grade/batch", "platform", 8 * MB + 1, 8 * MB)]
    for path, who, length, limit in cases:
        r = raw(port, post(path, length, f"X-API-Key: {keys[who]}"), b"{")
        assert r.status == 413, (path, r.status, r.body)
        problem = r.json()
        assert problem["type"].endswith("/request-too-large") and r.closed, path
        assert limit is None or f"limit of {limit} bytes" in problem["detail"], problem
    # within its limit, the key's answer comes as before
    r = httpx.post(f"{served.url}/v1/returns", json={"evaluation_id": "nope", "reason": "x"},
                   headers={"X-API-Key": keys["platform"]})
    assert r.status_code in (404, 422), r.text
    # a chunked body announces no size: counted as it arrives, refused once past the limit
    with httpx.Client(base_url=served.url, timeout=30) as c:
        r = c.post("/v1/returns", headers={"X-API-Key": keys["platform"]},
                   content=(b"x" * 16384 for _ in range(8)))
    assert r.status_code == 413 and r.json()["type"].endswith("/request-too-large")


def test_a_batch_over_its_device_limit_is_refused_before_parsing(served):
    key = {"X-API-Key": served.keys["platform"]}
    before = served.server.rss_mb()
    # 33 devices, then a body that is not even JSON: counted, not parsed (not a 422)
    body = b'{"devices": [' + b"{}, " * 33 + b"not json at all"
    r = httpx.post(f"{served.url}/v1/grade/batch", content=body, headers=key)
    assert r.status_code == 413 and r.json()["type"].endswith("/batch-too-large"), r.text
    assert "limit of 32 devices" in r.json()["detail"]
    # 200,000 tiny devices (the validation of which took half a gigabyte)
    many = json.dumps({"devices": [{"id": "x"}] * 200_000}).encode()
    r = httpx.post(f"{served.url}/v1/grade/batch", content=many, headers=key)
    assert r.status_code == 413 and r.json()["type"].endswith("/batch-too-large")
    assert served.server.rss_mb() < before + 100


def test_each_batch_device_costs_a_rate_limit_token(served):
    # the key's bucket: 40 tokens, refilled at 1 a minute
    key = {"X-API-Key": served.keys["batcher"]}

    def batch(n: int) -> httpx.Response:  # devices whose photos are not base64: no grading
        return httpx.post(f"{served.url}/v1/grade/batch", headers=key, timeout=30, json={
            "devices": [{"id": str(i), "front": "!", "back": "!", "device": INFO}
                        for i in range(n)]})

    first = batch(32)
    assert first.status_code == 200, first.text
    assert [x["problem"]["type"] for x in first.json()["results"]] == [
        "https://photograde.dev/problems/invalid-base64"] * 32
    second = batch(32)  # 8 tokens left
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert "a batch of 32 devices costs 32" in second.json()["detail"]
    assert httpx.get(f"{served.url}/v1/me", headers=key).status_code == 200  # one request
    assert batch(8).status_code == 429  # 8 devices: 8 requests, more than are left


def test_failed_authentications_are_limited_per_client_address(served):
    bad = {"Authorization": f"Bearer {BAD_KEY}"}
    with served.client(PROXY) as proxy, served.client() as direct:
        attacker = {**bad, "X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
        codes = [proxy.get("/v1/me", headers=attacker).status_code for _ in range(20)]
        assert codes == [401] * 10 + [429] * 10
        r = proxy.get("/v1/me", headers={"X-Forwarded-For": "198.51.100.7",
                                         "X-API-Key": served.keys["reviewer"]})
        assert r.status_code == 429 and r.json()["type"].endswith("/too-many-auth-failures")
        assert int(r.headers["retry-after"]) >= 1
        # another client behind the proxy is not held back
        assert proxy.get("/v1/me", headers={**bad, "X-Forwarded-For": "198.51.100.8"}
                         ).status_code == 401
        # X-Forwarded-For from a client that is not a trusted proxy is ignored: this one is
        # 127.0.0.1, whatever it claims
        assert direct.get("/v1/me", headers={**bad, "X-Forwarded-For": "198.51.100.7"}
                          ).status_code == 401
        # failed logins in the UI count alike
        login = {"X-Forwarded-For": "198.51.100.9"}
        codes = [proxy.post("/ui/login", data={"key": BAD_KEY}, headers=login).status_code
                 for _ in range(20)]
        assert codes == [401] * 10 + [429] * 10


def test_forwarded_host_is_believed_from_a_trusted_proxy_only(served):
    # the UI's same-origin check accepts a proxy's X-Forwarded-Host, not a client's
    forged = {"Origin": "http://grading.example", "X-Forwarded-Host": "grading.example",
              "X-Forwarded-For": "198.51.100.20"}
    with served.client(PROXY) as proxy, served.client() as direct:
        r = direct.post("/ui/login", data={"key": ""}, headers=forged)
        assert r.status_code == 403 and "another site" in r.text
        assert proxy.post("/ui/login", data={"key": ""}, headers=forged).status_code == 401


def test_header_size_limit_and_header_timeout(served):
    port = served.server.port
    big = raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + "a" * 20_000 + "\r\n\r\n")
    assert big.status == 431 and big.closed  # over max_header_kb (16)
    # headers that never end: answered 408 once timeout_headers (1 s here) has passed
    slow = raw(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert slow.status == 408 and slow.closed
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:  # nothing sent
        assert s.recv(1024).startswith(b"HTTP/1.1 408") and s.recv(1024) == b""
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_metrics_restricted_to_its_clients(served):
    with served.client(PROXY) as proxy, served.client() as direct:
        assert proxy.get("/metrics").status_code == 200
        assert "photograde_errors_total" in proxy.get("/metrics").text
        assert direct.get("/metrics").status_code == 404  # 127.0.0.1 is not among them
        assert direct.get("/docs").status_code == 200
        assert direct.get("/openapi.json").status_code == 200


def test_metrics_and_docs_can_be_turned_off():
    app = create_app(Settings(database_url="sqlite://", metrics_enabled=False,
                              docs_enabled=False))
    client = TestClient(app)  # no lifespan: these routes need no model
    for path in ("/metrics", "/docs", "/docs/init.js", "/redoc", "/openapi.json",
                 "/docs/assets/swagger-ui.css"):
        assert client.get(path).status_code == 404, path
    assert client.get("/healthz").status_code == 200


def test_every_router_checks_the_key_before_the_body():
    from serve.gate import KeyFirstRoute
    from serve.routes import ROUTERS, ops
    from serve.ui import ROUTERS as UI_ROUTERS

    for router in (*ROUTERS, ops.metrics_router, *UI_ROUTERS):
        assert router.route_class is KeyFirstRoute
        assert all(isinstance(route, KeyFirstRoute) for route in router.routes), router.routes


def test_the_images_lock_pins_every_serving_dependency_with_hashes():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from tests.support import ROOT

    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for lock, swap in (("serve.lock", {}), ("serve-gpu.lock", {"onnxruntime": "onnxruntime-gpu"})):
        text = (ROOT / "requirements" / lock).read_text()
        pins = dict(line.split(" ")[0].lower().split("==") for line in text.splitlines()
                    if line[:1].isalpha())
        assert text.count("--hash=sha256:") > len(pins), lock
        for line in wanted:
            req = Requirement(line)
            base = canonicalize_name(req.name)  # "Babel" is pinned as babel
            name = swap.get(base, base)
            assert name in pins, f"{lock}: {name} missing: run scripts/lock"
            if name == base:
                assert req.specifier.contains(pins[name]), f"{lock}: {name}=={pins[name]} " \
                    f"does not satisfy {req.specifier}: run scripts/lock"
