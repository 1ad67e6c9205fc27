"""The FastAPI gateway on a tiny torch model: the three request forms agree, every kind of
bad input gets its status with a JSON reason (and breaks nothing), readiness, model
metadata, metrics, and the 503/429 paths with a controllable backend.

The app runs through ``TestClient`` as a context manager, so its lifespan opens and
closes the backend. Waits poll with deadlines; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hyena_serve.gateway import GatewaySettings, create_app
from hyena_serve.runtime.base import Backend, BackendUnavailable

skdata = pytest.importorskip("skimage.data")

TINY = dict(model="hpx_former_s4", resolution=32, weights="random",
            model_kwargs={"dims": [8, 16, 32, 32], "num_classes": 10})
MAX_BODY = 1_000_000
MAX_PIXELS = 1_000_000


def encode(array: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` (valid CRCs, a few bytes of
    pixel data): what a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def wait_ready(client: TestClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (r := client.get("/v2/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"gateway not ready within {timeout} s: {r.json()}"
        time.sleep(0.05)  # poll interval; the deadline bounds the wait


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def assert_error(response, status: int, name: str = "") -> dict:
    assert response.status_code == status, (name, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"} and body["error"] and body["detail"], body
    assert body["request_id"] == response.headers["x-request-id"], (body, response.headers)
    return body


@pytest.fixture(scope="module")
def client():
    settings = GatewaySettings(backend="torch", **TINY, max_body_bytes=MAX_BODY, max_image_pixels=MAX_PIXELS)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {
        "chelsea.png": encode(skdata.chelsea()),
        "coffee.jpg": encode(skdata.coffee(), "JPEG", quality=90),
        "astronaut.webp": encode(skdata.astronaut(), "WEBP", quality=90),
        "rocket.jpg": encode(skdata.rocket(), "JPEG", quality=90),
    }


CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


# --- happy paths -----------------------------------------------------------------------------


def test_health_and_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/hpx_former_s4").json()
    assert meta["name"] == "hpx_former_s4" and meta["platform"] == "pytorch_torch"
    assert meta["inputs"] == [{"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["parameters"]["pretrained"] is False
    assert client.get("/v2/models/hpx_former_s4/ready").status_code == 200
    assert_error(client.get("/v2/models/resnet50"), 404)
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/classify", "/v1/classify/batch"}
    assert client.get("/docs").status_code == 200


def test_multipart_raw_and_batch_agree(client, photos):
    b64 = [base64.b64encode(data).decode() for data in photos.values()]
    batch = client.post("/v1/classify/batch", json={"images": b64, "top_k": 3})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model"] == "hpx_former_s4" and body["pretrained"] is False and body["backend"] == "torch"
    assert len(body["results"]) == len(photos)
    for (name, data), from_batch in zip(photos.items(), body["results"]):
        ctype = CONTENT_TYPES[name.rsplit(".", 1)[1]]
        raw = client.post("/v1/classify", params={"top_k": 3}, content=data, headers={"content-type": ctype})
        multi = client.post("/v1/classify?top_k=3", files={"file": (name, data, ctype)})
        for r in (raw, multi):
            assert r.status_code == 200, r.text
            (result,) = r.json()["results"]
            preds = result["predictions"]
            assert [p["index"] for p in preds] == [p["index"] for p in from_batch["predictions"]]
            # batched and single inference may differ in the last float bits
            np.testing.assert_allclose([p["probability"] for p in preds],
                                       [p["probability"] for p in from_batch["predictions"]], rtol=1e-4)
            assert [p["label"] for p in preds] == [f"class_{p['index']}" for p in preds]
            probs = [p["probability"] for p in preds]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9


def test_top_k_default_and_data_url(client, photos):
    data = photos["chelsea.png"]
    r = client.post("/v1/classify", content=data, headers={"content-type": "image/png"})
    assert len(r.json()["results"][0]["predictions"]) == 5
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    r = client.post("/v1/classify/batch?top_k=10", json={"images": [url]})
    preds = r.json()["results"][0]["predictions"]
    assert len(preds) == 10 and abs(sum(p["probability"] for p in preds) - 1) < 1e-6


# --- bad input ----------------------------------------------------------------------------------


def _bad_requests(photos):
    jpeg, png = photos["coffee.jpg"], photos["chelsea.png"]
    big = encode(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 MP > MAX_PIXELS, tiny file
    ppm = encode(skdata.chelsea()[:64, :64], "PPM")
    return {
        "empty body": (400, dict(content=b"", headers={"content-type": "image/png"})),
        "not an image": (400, dict(content=b"hello, world" * 10, headers={"content-type": "image/jpeg"})),
        "truncated jpeg": (400, dict(content=jpeg[: len(jpeg) // 2], headers={"content-type": "image/jpeg"})),
        "truncated png": (400, dict(content=png[: len(png) // 2], headers={"content-type": "image/png"})),
        "cut png header": (400, dict(content=png[:20], headers={"content-type": "image/png"})),
        "multipart without file": (400, dict(data={"image": "x"}, files={"other": ("a.png", png, "image/png")})),
        "pixel cap": (413, dict(content=big, headers={"content-type": "image/png"})),
        "decompression bomb": (413, dict(content=png_header(100_000, 100_000), headers={"content-type": "image/png"})),
        "huge dimensions": (413, dict(content=png_header(60_000, 20), headers={"content-type": "image/png"})),
        "unsupported format": (415, dict(content=ppm, headers={"content-type": "application/octet-stream"})),
        "unsupported image type": (415, dict(content=png, headers={"content-type": "image/svg+xml"})),
        "wrong content type": (415, dict(content=png, headers={"content-type": "text/plain"})),
        "json to single": (415, dict(json={"images": []})),
        "over content-length": (413, dict(content=b"\xff" * (MAX_BODY + 1), headers={"content-type": "image/jpeg"})),
        "top_k zero": (422, dict(params={"top_k": 0}, content=png, headers={"content-type": "image/png"})),
        "top_k over classes": (422, dict(params={"top_k": 11}, content=png, headers={"content-type": "image/png"})),
        "top_k not a number": (422, dict(params={"top_k": "many"}, content=png, headers={"content-type": "image/png"})),
    }


def test_bad_input(client, photos):
    for name, (status, kwargs) in _bad_requests(photos).items():
        body = assert_error(client.post("/v1/classify", **kwargs), status, name)
        assert isinstance(body["detail"], (str, list)), name
    # nothing broke: a good request still works
    r = client.post("/v1/classify", content=photos["coffee.jpg"], headers={"content-type": "image/jpeg"})
    assert r.status_code == 200


def test_body_limit_while_streaming(client):
    """No Content-Length (chunked upload): the limit is enforced while reading."""
    sent = []

    def chunks():
        for _ in range(40):
            sent.append(1)
            yield b"\x00" * 50_000  # 2 MB in all, the limit is 1 MB

    body = assert_error(client.post("/v1/classify", content=chunks(), headers={"content-type": "image/png"}), 413)
    assert "limit" in body["detail"]
    multipart = b"\x00" * (MAX_BODY + 10)
    assert_error(client.post("/v1/classify", files={"file": ("big.png", multipart, "image/png")}), 413)


def test_bad_batch_requests(client, photos):
    good = base64.b64encode(photos["chelsea.png"]).decode()
    json_headers = {"content-type": "application/json"}
    assert_error(client.post("/v1/classify/batch", content=b'{"images": [', headers=json_headers), 422)
    assert_error(client.post("/v1/classify/batch", content=b"not json", headers=json_headers), 422)
    assert_error(client.post("/v1/classify/batch", json={"images": "abc"}), 422)
    assert_error(client.post("/v1/classify/batch", json={"images": []}), 422)
    assert_error(client.post("/v1/classify/batch", json={"pictures": [good]}), 422)
    body = assert_error(client.post("/v1/classify/batch", json={"images": [good, "@@not base64@@"]}), 422)
    assert "images[1]" in body["detail"]
    assert_error(client.post("/v1/classify/batch", json={"images": [good], "top_k": 0}), 422)
    assert_error(client.post("/v1/classify/batch", json={"images": [good], "top_k": 11}), 422)
    assert_error(client.post("/v1/classify/batch", json={"images": [good]}, params={"top_k": -1}), 422)
    assert_error(client.post("/v1/classify/batch", content=b"{}", headers={"content-type": "text/plain"}), 415)
    body = assert_error(client.post("/v1/classify/batch", json={"images": [good, base64.b64encode(b"nope").decode()]}), 400)
    assert body["detail"].startswith("image 1:")
    small = base64.b64encode(encode(np.zeros((8, 8, 3), np.uint8))).decode()
    body = assert_error(client.post("/v1/classify/batch", json={"images": [small] * 33}), 422)
    assert body["error"] == "too many images"
    for bad in ("", "QQ", "QQ=", "Q===", "====", "QQ==QQ==", "data:image/png;base64,", " QQ==", "QQ==\n"):
        body = assert_error(client.post("/v1/classify/batch", json={"images": [bad]}), 422, bad)
        assert "images[0]" in str(body["detail"]) or body["detail"][0]["loc"] == ["body", "images", 0], bad


def test_metrics_count_requests_and_stages(client, photos):
    before = client.get("/metrics").text
    for _ in range(3):
        client.post("/v1/classify", content=photos["chelsea.png"], headers={"content-type": "image/png"})
    client.post("/v1/classify", content=b"", headers={"content-type": "image/png"})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    route = dict(route="/v1/classify", method="POST")
    assert metric(text, "hyena_requests_total", **route, status="200") - metric(before, "hyena_requests_total", **route, status="200") == 3
    assert metric(text, "hyena_requests_total", **route, status="400") - metric(before, "hyena_requests_total", **route, status="400") == 1
    for stage in ("decode", "preprocess", "inference", "total"):
        grown = metric(text, "hyena_stage_seconds_count", stage=stage) - metric(before, "hyena_stage_seconds_count", stage=stage)
        assert grown >= 3, stage
        assert metric(text, "hyena_stage_seconds_sum", stage=stage) > 0
    assert metric(text, "hyena_inference_batch_size_count") >= 3


# --- backend trouble, with a backend the test controls ------------------------------------------


class ControlledBackend(Backend):
    """Deterministic fake model (logits = channel means x weights); can be made slow, down,
    or held in start()."""

    def __init__(self, settings: GatewaySettings):
        from hyena_serve.artifact import plan_manifest
        from hyena_serve.runtime.base import ModelInfo

        self.info = self.known_info = ModelInfo(plan_manifest(settings.model_spec()), "controlled", "test")
        self.weights = np.random.default_rng(0).standard_normal((3, self.info.num_classes)).astype(np.float32)
        self.down = False
        self.delay = 0.0
        self.release_start = threading.Event()
        self.release_start.set()
        self.calls = 0

    async def start(self) -> None:
        while not self.release_start.is_set():
            await asyncio.sleep(0.01)  # poll the test's switch
        self.info = self.known_info  # like Triton's: learnt at start

    async def infer(self, batch):
        self.calls += 1
        if self.down:
            raise BackendUnavailable("connection refused (test)")
        if self.delay:
            await asyncio.sleep(self.delay)
        return batch.mean(axis=(2, 3)) @ self.weights

    async def ready(self) -> bool:
        return not self.down

    async def close(self) -> None:
        pass


def _controlled(**overrides):
    settings = GatewaySettings(backend="torch", **TINY, **overrides)
    backend = ControlledBackend(settings)
    return TestClient(create_app(settings, backend=backend)), backend


def _top_k_schema(client) -> dict:
    params = client.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]["parameters"]
    return next(p for p in params if p["name"] == "top_k")["schema"]


def test_loading_then_ready(photos):
    client, backend = _controlled()
    backend.release_start.clear()
    backend.info = None
    with client:
        r = client.get("/v2/health/ready")
        assert_error(r, 503)
        assert r.json()["detail"] == "model is loading"
        r = client.post("/v1/classify", content=photos["chelsea.png"], headers={"content-type": "image/png"})
        assert_error(r, 503)
        assert r.headers["retry-after"] == "2"
        assert client.get("/v2/health/live").status_code == 200
        assert "maximum" not in _top_k_schema(client)  # the class count is not known yet
        backend.release_start.set()
        wait_ready(client, 10)
        assert _top_k_schema(client)["maximum"] == 10  # now the schema states it
        assert client.post("/v1/classify", content=photos["chelsea.png"], headers={"content-type": "image/png"}).status_code == 200


def test_backend_down_timeout_and_recovery(photos):
    client, backend = _controlled(request_timeout_s=0.3, retry_after_s=3)
    send = lambda: client.post("/v1/classify", content=photos["coffee.jpg"], headers={"content-type": "image/jpeg"})  # noqa: E731
    with client:
        wait_ready(client, 10)
        assert send().status_code == 200
        backend.down = True
        r = send()
        body = assert_error(r, 503)
        assert r.headers["retry-after"] == "3" and "connection refused" in body["detail"]
        assert_error(client.get("/v2/health/ready"), 503)
        backend.down, backend.delay = False, 5.0
        r = send()
        assert_error(r, 503)
        assert "0.3 s" in r.json()["detail"] and r.headers["retry-after"] == "3"
        backend.delay = 0.0
        assert send().status_code == 200  # recovered without a restart
        text = client.get("/metrics").text
        assert metric(text, "hyena_rejected_total", reason="backend_unavailable") == 1
        assert metric(text, "hyena_rejected_total", reason="timeout") == 1
        assert metric(text, "hyena_requests_total", route="/v1/classify", method="POST", status="503") == 2


def test_overload_is_refused_not_queued(photos):
    client, backend = _controlled(max_concurrency=2, max_queue=2, retry_after_s=1)
    backend.delay = 0.5
    data = photos["chelsea.png"]
    results = []
    with client:
        wait_ready(client, 10)

        def one():
            r = client.post("/v1/classify", content=data, headers={"content-type": "image/png"})
            results.append((r.status_code, r.headers.get("retry-after"), r.json()))

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    statuses = sorted(s for s, _, _ in results)
    assert len(results) == 10
    assert statuses.count(200) >= 4, statuses  # 2 running + 2 queued at least
    assert set(statuses) <= {200, 429}, statuses
    assert 429 in statuses, statuses
    for status, retry_after, body in results:
        if status == 429:
            assert retry_after == "1" and body["error"] == "too many requests"


def test_labels_are_imagenet_for_1000_classes():
    from hyena_serve.labels import class_names, imagenet_classes

    names = imagenet_classes()
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[281] == "tabby" and names[967] == "espresso" and names[999] == "toilet tissue"
    assert class_names(3) == ("class_0", "class_1", "class_2")
