"""Request ids and access logs: X-Request-ID on every response (the client's own when
sane, generated otherwise), in error bodies, in the access log with route, status,
per-stage timings and batch size (text or JSON lines), and passed to Triton as the
request id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hyena_serve.gateway import GatewaySettings, create_app
from hyena_serve.gateway import tracing

TINY = dict(model="hpx_former_s4", resolution=32, weights="random",
            model_kwargs={"dims": [8, 16, 32, 32], "num_classes": 10})


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def wait_ready(client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "gateway not ready"
        time.sleep(0.05)  # poll interval; the deadline bounds the wait


@pytest.fixture(scope="module", params=[False, True], ids=["text", "json"])
def client(request):
    settings = GatewaySettings(backend="torch", **TINY, access_log_json=request.param)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c, request.param


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hyena_serve.access"]


def test_sane_ids_kept_others_replaced():
    assert tracing.sane_request_id("abc-123_X.y:z/w+q=@~") == "abc-123_X.y:z/w+q=@~"
    for bad in ("", "x" * 129, "has space", "new\nline", "ü", "a;b", "<script>"):
        assert tracing.sane_request_id(bad) is None, bad
    assert re.fullmatch(r"[0-9a-f]{32}", tracing.new_request_id())


def test_every_response_has_an_id_and_errors_repeat_it(client):
    c, _ = client
    r = c.get("/v2/health/live", headers={"x-request-id": "trace-7"})
    assert r.headers["x-request-id"] == "trace-7"
    ids = {c.get("/v2/health/live").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3  # fresh ones
    r = c.get("/v2/health/live", headers={"x-request-id": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    for response in (
        c.post("/v1/classify", content=b"not an image", headers={"content-type": "image/png", "x-request-id": "e-1"}),
        c.post("/v1/classify?top_k=0", content=png(), headers={"content-type": "image/png", "x-request-id": "e-1"}),
        c.get("/v2/models/nope", headers={"x-request-id": "e-1"}),
        c.delete("/v1/classify", headers={"x-request-id": "e-1"}),
    ):
        assert response.status_code >= 400
        assert response.headers["x-request-id"] == "e-1" and response.json()["request_id"] == "e-1"
    ok = c.post("/v1/classify", content=png(), headers={"content-type": "image/png", "x-request-id": "ok-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "ok-1"


def test_access_log_lines(client, caplog):
    c, json_lines = client
    with caplog.at_level(logging.INFO, logger="hyena_serve.access"):
        c.post("/v1/classify?top_k=2", content=png(), headers={"content-type": "image/png", "x-request-id": "log-1"})
        c.post("/v1/classify", content=b"", headers={"content-type": "image/png", "x-request-id": "log-2"})
        c.get("/v2/models/hpx_former_s4", headers={"x-request-id": "log-3"})
    lines = access_lines(caplog)
    assert len(lines) == 3, lines
    if json_lines:
        records = [json.loads(line) for line in lines]
        ok, bad, meta = records
        assert ok["request_id"] == "log-1" and ok["route"] == "/v1/classify" and ok["status"] == 200
        assert ok["method"] == "POST" and ok["images"] == 1 and ok["batch_rows"] == 1
        assert set(ok["stages_ms"]) == {"decode", "preprocess", "inference", "total"}
        assert all(v >= 0 for v in ok["stages_ms"].values()) and ok["duration_ms"] > 0
        assert bad["request_id"] == "log-2" and bad["status"] == 400
        assert meta["route"] == "/v2/models/{name}" and meta["status"] == 200 and "stages_ms" not in meta
    else:
        ok, bad, meta = lines
        assert '"POST /v1/classify" 200' in ok and "request_id=log-1" in ok and "batch_rows=1" in ok
        assert all(f"{s}=" in ok for s in ("decode", "preprocess", "inference", "total"))
        assert '"POST /v1/classify" 400' in bad and "request_id=log-2" in bad
        assert '"GET /v2/models/{name}" 200' in meta


def test_batch_request_logs_image_count(client, caplog):
    import base64

    c, json_lines = client
    if not json_lines:
        pytest.skip("checked in JSON form")
    b64 = base64.b64encode(png()).decode()
    with caplog.at_level(logging.INFO, logger="hyena_serve.access"):
        r = c.post("/v1/classify/batch", json={"images": [b64] * 3}, headers={"x-request-id": "many"})
    assert r.status_code == 200
    (record,) = [json.loads(line) for line in access_lines(caplog)]
    assert record["images"] == 3 and record["batch_rows"] == 3


def test_access_log_can_be_turned_off(caplog):
    settings = GatewaySettings(backend="torch", **TINY, access_log=False)
    with TestClient(create_app(settings)) as c, caplog.at_level(logging.INFO, logger="hyena_serve.access"):
        c.get("/v2/health/live")
    assert access_lines(caplog) == []


def test_json_lines_go_to_stdout_without_a_prefix(capsys):
    logger = logging.getLogger("hyena_serve.access")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        tracing.configure_access_log(True)
        logger.info(json.dumps({"a": 1}))
        assert capsys.readouterr().out == '{"a": 1}\n'
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_triton_gets_the_request_id():
    pytest.importorskip("tritonclient.http.aio")
    import tritonclient.http.aio as module

    from hyena_serve.artifact import plan_manifest
    from hyena_serve.runtime.base import ModelInfo
    from hyena_serve.runtime.triton import TritonBackend, _Connection

    info = ModelInfo(plan_manifest(GatewaySettings(**TINY).model_spec()), "triton", "triton")
    seen = []

    class FakeResult:
        def __init__(self, n):
            self.n = n

        def as_numpy(self, name):
            return np.zeros((self.n, 10), np.float32)

    class FakeClient:
        async def infer(self, model, inputs, outputs=None, request_id=""):
            seen.append(request_id)
            return FakeResult(inputs[0].shape()[0])

        async def close(self):
            pass

    backend = TritonBackend("127.0.0.1:1", "m_cpu")
    backend.info, backend._checked = info, True
    backend._conn = _Connection(FakeClient(), module)
    batch = np.zeros((2, 3, 32, 32), np.float32)

    async def call(request_id):
        token = tracing._current.set(tracing.RequestContext(request_id) if request_id else None)
        try:
            return await backend.infer(batch)
        finally:
            tracing._current.reset(token)

    assert asyncio.run(call("req-42")).shape == (2, 10)
    asyncio.run(call(None))
    assert seen == ["req-42", ""]
