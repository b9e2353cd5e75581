"""The scoring service on a real uvicorn server (loopback): routes, batching, bad requests."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from pathlib import Path

import httpx
import numpy as np
import pillow_heif
import pytest
from PIL import Image

from serve.app import create_app
from serve.grading import batching_enabled
from serve.settings import Settings
from tabular.schema import CHECKS
from tests.support import INFO, ThreadServer, none_imported, run_python
from training.manifest import load_manifest


@pytest.fixture(scope="module")
def server(bundle):
    settings = Settings(bundle=bundle, threads=1, max_upload_mb=1, max_pixels=4_000_000,
                        batching=True, max_wait_ms=20, max_batch_devices=4,
                        auth_required=False, database_url="sqlite://")
    with ThreadServer(create_app(settings)) as s:
        yield s


@pytest.fixture(scope="module")
def photos(synth_dir) -> tuple[bytes, bytes]:
    row = load_manifest(synth_dir / "manifest.csv").rows[0]
    return row.front_path.read_bytes(), row.back_path.read_bytes()


DEVICE = json.dumps(INFO)


def _post(url: str, front=None, back=None, device=DEVICE, **data) -> httpx.Response:
    files = {}
    if front is not None:
        files["front"] = ("front.jpg", front, "image/jpeg")
    if back is not None:
        files["back"] = ("back.jpg", back, "image/jpeg")
    form = {k: v for k, v in {"device": device, **data}.items() if v is not None}
    return httpx.post(url + "/v1/grade", files=files or None, data=form, timeout=30)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_grade_returns_the_full_answer(server, photos):
    r = _post(server.url, *photos, refurbisher_grade="excellent", heatmaps="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] and r.headers["x-request-id"] == body["request_id"]
    assert body["grade"] in ("excellent", "good", "fair", "broken")
    assert body["decision"] in ("validated", "suggestion", "justification_required")
    assert body["parts"]["screen"]["heatmap_png"]
    assert body["bundle_version"]
    assert sum(body["grade_probabilities"].values()) == pytest.approx(1, abs=1e-6)


def test_request_id_is_echoed_on_errors_too(server):
    r = httpx.post(server.url + "/v1/grade", headers={"x-request-id": "req-42"},
                   data={"device": "{"}, timeout=30)
    assert r.status_code == 422
    assert r.headers["x-request-id"] == "req-42" and r.json()["request_id"] == "req-42"


def test_model_health_ready_metrics(server, photos):
    m = httpx.get(server.url + "/v1/model").json()
    assert m["execution_provider"] == "CPUExecutionProvider" and m["threads"] == 1
    assert m["batching"]["enabled"] is True and m["batching"]["setting"] is True
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").status_code == 200
    _post(server.url, *photos, refurbisher_grade="good")
    text = httpx.get(server.url + "/metrics").text
    for name in ("photograde_request_seconds_bucket", "photograde_inference_batch_photos",
                 "photograde_queue_photos", "photograde_predicted_grade_total",
                 "photograde_decision_total"):
        assert name in text, name
    assert 'route="/v1/grade"' in text
    assert httpx.get(server.url + "/openapi.json").json()["paths"]["/v1/grade"]


def test_grade_answers_are_typed_in_openapi_and_keep_their_shape(server, photos):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"GradeResult", "GradeResponse", "BatchResponse", "EvaluationOut",
            "Prediction"} <= set(spec["components"]["schemas"])
    ok = spec["paths"]["/v1/grade"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/GradeResponse")
    body = _post(server.url, *photos).json()
    assert list(body) == ["request_id", "grade", "confidence", "grade_probabilities",
                          "sellable", "parts", "functional", "reasons", "return_risk",
                          "bundle_version"]  # no refurbisher grade: no decision fields
    assert list(body["parts"]["screen"]) == ["condition", "probability", "probabilities",
                                             "damage_box"]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "HEIC", "CMYK", "I;16", "RGBA", "EXIF"])
def test_photo_formats(server, photos, fmt):
    im = Image.open(io.BytesIO(photos[0]))
    if fmt == "HEIC":
        buf = io.BytesIO()
        pillow_heif.from_pillow(im).save(buf, quality=80)
        data = buf.getvalue()
    elif fmt == "CMYK":
        data = _encode(im.convert("CMYK"), "JPEG")
    elif fmt == "I;16":
        arr = (np.asarray(im.convert("L"), np.uint16) * 257)
        data = _encode(Image.fromarray(arr), "PNG")
    elif fmt == "RGBA":
        data = _encode(im.convert("RGBA"), "PNG")
    elif fmt == "EXIF":
        exif = Image.Exif()
        exif[0x0112] = 6
        data = _encode(im, "JPEG", exif=exif)
    else:
        data = _encode(im, fmt)
    r = _post(server.url, data, photos[1])
    assert r.status_code == 200, (fmt, r.text)


def _bomb() -> bytes:
    return _encode(Image.new("1", (6000, 6000)), "PNG")  # 36 MP, a few kB


def _bad_requests(photos: tuple[bytes, bytes]) -> list[tuple[str, dict, int, str]]:
    front, back = photos
    jpeg_truncated = front[: len(front) // 3]
    big = b"\xff\xd8\xff\xe0" + b"\0" * (1024 * 1024 + 10)
    cases = [
        ("missing front", dict(back=back), 422, "front"),
        ("missing back", dict(front=front), 422, "back"),
        ("missing device", dict(front=front, back=back, device=None), 422, "device"),
        ("device not JSON", dict(front=front, back=back, device="{oops"), 422, "device"),
        ("device is a list", dict(front=front, back=back, device="[1, 2]"), 422, "device"),
        ("unknown field", dict(front=front, back=back,
                               device=json.dumps({**INFO, "colour": "red"})), 422, "colour"),
        ("string storage", dict(front=front, back=back,
                                device=json.dumps({**INFO, "storage_gb": "128"})), 422,
         "storage_gb"),
        ("unknown check", dict(front=front, back=back, device=json.dumps(
            {**INFO, "checks": {**INFO["checks"], "nfc": True}})), 422, "checks.nfc"),
        ("missing check", dict(front=front, back=back, device=json.dumps(
            {**INFO, "checks": {c: True for c in CHECKS if c != "wifi"}})), 422,
         "checks.wifi"),
        ("battery 140", dict(front=front, back=back,
                             device=json.dumps({**INFO, "battery_health_pct": 140})), 422,
         "battery_health_pct"),
        ("check not bool", dict(front=front, back=back, device=json.dumps(
            {**INFO, "checks": {**INFO["checks"], "wifi": "yes"}})), 422, "checks.wifi"),
        ("text as front", dict(front=b"hello, I am not a photo", back=back), 415, "front"),
        ("empty front", dict(front=b"", back=back), 422, "front"),
        ("truncated front", dict(front=jpeg_truncated, back=back), 422, "front"),
        ("bomb front", dict(front=_bomb(), back=back), 413, "front"),
        ("huge front", dict(front=big, back=back), 413, "front"),
        ("unknown grade", dict(front=front, back=back, refurbisher_grade="mint"), 422,
         "refurbisher_grade"),
        ("pdf as back", dict(front=front, back=b"%PDF-1.4\n%\xe2\xe3\n1 0 obj"), 415, "back"),
        ("random bytes back", dict(front=front, back=bytes(range(256)) * 8), 415, "back"),
        ("svg as front", dict(front=b'<svg xmlns="http://www.w3.org/2000/svg"/>', back=back),
         415, "front"),
        ("html as back", dict(front=front, back=b"<html><body>hi</body></html>"), 415, "back"),
        ("gzip as front", dict(front=b"\x1f\x8b\x08\x00" + b"\0" * 50, back=back), 415,
         "front"),
        ("truncated png", dict(front=_encode(Image.new("RGB", (64, 64)), "PNG")[:60],
                               back=back), 422, "front"),
        ("bad heatmaps flag", dict(front=front, back=back, heatmaps="maybe"), 422, "heatmaps"),
        ("zero-size gif", dict(front=b"GIF89a\x00\x00\x00\x00\x00\x00\x00;", back=back), 415,
         "front"),
    ]
    return cases


def _send_chunked(port: int, total: int) -> str:
    """POST a multipart body of ``total`` bytes with chunked transfer encoding; the reply head."""
    chunk = b"\0" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/grade HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n")
        head = b'--b\r\nContent-Disposition: form-data; name="front"; filename="f.jpg"\r\n\r\n'
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            for _ in range(total // len(chunk)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the end: what we want
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.decode(errors="replace")


def test_bad_requests_are_4xx_problems_and_the_server_keeps_serving(server, photos):
    cases = _bad_requests(photos)
    for name, kw, status, field in cases:
        r = _post(server.url, **kw)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), name
        body = r.json()
        assert body["status"] == status and field in body["detail"], (name, body)
    raw = [
        ("json to grade", httpx.post(server.url + "/v1/grade", json=INFO), 422),
        ("GET grade", httpx.get(server.url + "/v1/grade"), 405),
        ("no such route", httpx.get(server.url + "/v2/grade"), 404),
        ("batch bad json", httpx.post(server.url + "/v1/grade/batch", content=b"{"), 422),
        ("batch empty", httpx.post(server.url + "/v1/grade/batch", json={"devices": []}), 422),
        ("batch too many", httpx.post(server.url + "/v1/grade/batch", json={"devices": [
            {"id": str(i), "front": "", "back": "", "device": INFO} for i in range(5)]}), 413),
    ]
    for name, r, status in raw:
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), name
    # a client announcing a 1 GB body is refused before anything is read
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/grade HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: 1000000000\r\n\r\n--b\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413") and "problem+json" in head
    # a chunked body announces no size: it is counted as it arrives and refused past the limit
    assert _send_chunked(server.port, 8 * 1024 * 1024).startswith("HTTP/1.1 413")
    assert len(cases) + len(raw) + 2 >= 25
    assert _post(server.url, *photos).status_code == 200
    errors = httpx.get(server.url + "/metrics").text
    assert 'photograde_errors_total{kind="unsupported-image"}' in errors


def test_batch_route_scores_many_and_reports_each_problem(server, photos):
    ok = {"front": base64.b64encode(photos[0]).decode(),
          "back": base64.b64encode(photos[1]).decode(), "device": INFO}
    r = httpx.post(server.url + "/v1/grade/batch", timeout=30, json={"devices": [
        {"id": "a", **ok, "refurbisher_grade": "good"},
        {"id": "b", **ok, "front": "not base64!"},
        {"id": "c", **ok, "device": {**INFO, "storage_gb": -1}},
        {"id": "d", **ok}]})
    assert r.status_code == 200, r.text
    res = {x["id"]: x for x in r.json()["results"]}
    assert res["a"]["ok"] and res["a"]["result"]["decision"]
    assert not res["b"]["ok"] and "devices[1].front" in res["b"]["problem"]["detail"]
    assert not res["c"]["ok"] and "storage_gb" in res["c"]["problem"]["detail"]
    assert res["d"]["ok"]


def test_concurrent_requests_share_inference_batches(server, photos):
    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            files = {"front": ("f.jpg", photos[0]), "back": ("b.jpg", photos[1])}
            rs = await asyncio.gather(*(client.post(server.url + "/v1/grade", files=files,
                                                    data={"device": json.dumps(INFO)})
                                        for _ in range(12)))
            return [r.status_code for r in rs]

    assert asyncio.run(run()) == [200] * 12
    text = httpx.get(server.url + "/metrics").text
    counts = {float(line.split('le="')[1].split('"')[0]): float(line.rsplit(" ", 1)[1])
              for line in text.splitlines()
              if line.startswith("photograde_inference_batch_photos_bucket") and "+Inf" not in
              line}
    assert counts[2.0] < max(counts.values()), counts  # some batches held more than 1 device


def test_full_queue_answers_503_with_retry_after(bundle, photos):
    settings = Settings(bundle=bundle, threads=1, queue_size=2, batching=True,
                        max_wait_ms=400, max_batch_size=16, auth_required=False, database_url="sqlite://")
    with ThreadServer(create_app(settings)) as s:
        async def run():
            async with httpx.AsyncClient(timeout=60) as client:
                files = {"front": ("f.jpg", photos[0]), "back": ("b.jpg", photos[1])}
                return await asyncio.gather(*(client.post(s.url + "/v1/grade", files=files,
                                                          data={"device": json.dumps(INFO)})
                                              for _ in range(4)))

        rs = asyncio.run(run())
        codes = sorted(r.status_code for r in rs)
        assert 200 in codes and 503 in codes, codes
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["type"].endswith("/overloaded")
        assert httpx.get(s.url + "/healthz").status_code == 200


def test_batching_auto_means_gpu_only(monkeypatch):
    assert Settings().batching == "auto"
    assert not batching_enabled("auto", "CPUExecutionProvider")
    assert batching_enabled("auto", "CUDAExecutionProvider")
    assert batching_enabled(True, "CPUExecutionProvider")
    monkeypatch.setenv("PHOTOGRADE_BATCHING", "false")
    assert Settings().batching is False
    monkeypatch.setenv("PHOTOGRADE_BATCHING", "sometimes")
    with pytest.raises(ValueError, match="batching"):
        Settings()


def test_settings_from_env_and_file(tmp_path, monkeypatch, bundle):
    f = tmp_path / "settings.toml"
    f.write_text(f'bundle = "{bundle}"\nmax_batch_size = 4\nport = 9001\n')
    monkeypatch.setenv("PHOTOGRADE_SETTINGS_FILE", str(f))
    monkeypatch.setenv("PHOTOGRADE_PORT", "9002")
    s = Settings()
    assert s.max_batch_size == 4 and s.port == 9002 and s.bundle == Path(bundle)
    monkeypatch.setenv("PHOTOGRADE_MAX_BATCH_SIZE", "zero")
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings()


def test_the_app_and_the_command_line_import_no_training_stack(tmp_path):
    """Every module of serve/ and photograde/, the app they make and the command line stay
    free of the [train] extra (a serving install has none of it; onnxruntime is not onnx)."""
    settings = (f"bundle={str(tmp_path / 'bundle')!r}, database_url='sqlite://', "
                f"photo_dir={str(tmp_path / 'photos')!r}")
    code = (
        "import importlib, pkgutil, sys\n"
        "import photograde, serve\n"
        "for pkg in (serve, photograde):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "from photograde.cli import build_parser\n"
        "from serve.app import create_app\n"
        "from serve.settings import Settings\n"
        f"create_app(Settings({settings}))\n"
        "build_parser()\n"
        + none_imported("torch", "torchvision", "timm", "sklearn", "skl2onnx", "onnx"))
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
