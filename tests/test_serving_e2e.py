"""End to end: real photos through the gateway on every backend, with the same weights.

One tiny model (hpx_former_s4 at 64 px, small dims, the 1000-class ImageNet head with
random weights from seed 0) is built once by the artifact builder (ONNX + manifest) into a
temp artifacts dir. Then:

- torch (reference), embedded ONNX Runtime, and a real local Triton (Python-backend entry
  ``<model>_cpu`` filled by ``fill_repository``, over HTTP and gRPC) give the same top-5
  for scikit-image's chelsea, coffee, astronaut and rocket;
- 200 concurrent requests against a real uvicorn all succeed (no 5xx, none lost);
- Triton SIGKILLed under load gives 503 + Retry-After, and the same gateway recovers
  after ``LocalTriton.restart()``; /metrics counts what happened.

Waits poll with deadlines.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import signal
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hyena_serve.gateway import GatewaySettings, create_app
from tests.live_server import ServerThread, poll

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

MODEL, RES = "hpx_former_s4", 64
TINY = dict(model=MODEL, resolution=RES, weights="random", model_kwargs={"dims": [16, 16, 32, 32]})
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None,
    reason="nvidia-pytriton is not installed (it bundles tritonserver): pip install nvidia-pytriton",
)


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def wait_ready(client, timeout: float = 120.0) -> None:
    poll(lambda: client.get("/v2/health/ready").status_code == 200, timeout, "gateway readiness")


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
    return total


def top5(client, photos: dict[str, bytes]) -> dict[str, list[int]]:
    out = {}
    for name, data in photos.items():
        r = client.post("/v1/classify", content=data, headers={"content-type": "image/jpeg"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == MODEL and body["pretrained"] is False
        preds = body["results"][0]["predictions"]
        assert all(p["label"] and not p["label"].startswith("class_") for p in preds)  # ImageNet names
        out[name] = [p["index"] for p in preds]
    return out


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {name: jpeg(getattr(skdata, name)()) for name in PHOTOS}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The served-model artifact (the gateway's own first-start build)."""
    from hyena_serve.artifact import build_artifact

    directory = tmp_path_factory.mktemp("artifacts")
    return directory, build_artifact(GatewaySettings(**TINY).model_spec(), directory, progress=False)


def test_export_cache_is_atomic_and_reused(tmp_path, monkeypatch):
    from hyena_serve.artifact import build_artifact, find_artifact
    from hyena_serve.exporting import onnx_export

    spec = GatewaySettings(**TINY).model_spec()
    calls = []
    real_export = onnx_export.export_onnx

    def failing(model, res, out, **kw):
        out.write_bytes(b"half an export")
        raise RuntimeError("export interrupted")

    def counting(model, res, out, **kw):
        calls.append(out)
        return real_export(model, res, out, **{**kw, "check": False})

    monkeypatch.setattr(onnx_export, "export_onnx", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_artifact(spec, tmp_path, progress=False)
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a failed export left files behind"
    assert find_artifact(spec, tmp_path) is None
    monkeypatch.setattr(onnx_export, "export_onnx", counting)
    artifact = build_artifact(spec, tmp_path, progress=False)
    assert artifact.onnx_path.is_file() and artifact.manifest_path.is_file()
    assert build_artifact(spec, tmp_path, progress=False).onnx_path == artifact.onnx_path and len(calls) == 1
    assert find_artifact(spec, tmp_path).manifest == artifact.manifest
    other = GatewaySettings(**{**TINY, "seed": 1}).model_spec()
    assert build_artifact(other, tmp_path, progress=False).onnx_path != artifact.onnx_path  # other weights
    assert len(calls) == 2


@pytest.fixture(scope="module")
def reference(photos):
    with TestClient(create_app(GatewaySettings(backend="torch", **TINY))) as client:
        wait_ready(client)
        return top5(client, photos)


def embedded_settings(artifacts, **overrides) -> GatewaySettings:
    return GatewaySettings(backend="embedded", artifacts_dir=artifacts[0], **TINY, **overrides)


def test_embedded_matches_torch(artifacts, photos, reference):
    mtime = artifacts[1].onnx_path.stat().st_mtime_ns
    with TestClient(create_app(embedded_settings(artifacts))) as client:
        wait_ready(client)
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["outputs"][0]["shape"] == [-1, 1000]
        # random weights, same seed: ORT and torch agree to ~1e-6, far below the gaps here
        assert top5(client, photos) == reference
    assert artifacts[1].onnx_path.stat().st_mtime_ns == mtime, "the cached export was redone"


def test_200_concurrent_requests_real_uvicorn(artifacts, photos, reference):
    """Every response is the answer for the image that request sent: top-5 classes equal
    to the torch reference for that photo, and probabilities equal (to float noise) to that
    photo's answer when sent alone, which tells the four photos apart."""
    app = create_app(embedded_settings(artifacts, batch_max_size=8, batch_max_wait_ms=5))
    names = list(photos)
    data = list(photos.values())
    n = 200

    async def load(url: str):
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            async def one(i: int):
                if i % 2:
                    return await client.post("/v1/classify", content=data[i % 4], headers={"content-type": "image/jpeg"})
                return await client.post("/v1/classify", files={"file": (f"{i}.jpg", data[i % 4], "image/jpeg")})

            started = time.perf_counter()
            responses = await asyncio.gather(*(one(i) for i in range(n)))
            return responses, time.perf_counter() - started

    def answer(response) -> tuple[list[int], np.ndarray]:
        preds = response.json()["results"][0]["predictions"]
        return [p["index"] for p in preds], np.array([p["probability"] for p in preds])

    with ServerThread(app, limit_concurrency=1000, backlog=512) as server:
        poll(lambda: httpx.get(server.url + "/v2/health/ready").status_code == 200, 120, "readiness")
        alone = {name: answer(httpx.post(server.url + "/v1/classify", content=photos[name],
                                         headers={"content-type": "image/jpeg"})) for name in names}
        before = httpx.get(server.url + "/metrics").text
        responses, elapsed = asyncio.run(load(server.url))
        after = httpx.get(server.url + "/metrics").text

    statuses = [r.status_code for r in responses]
    assert len(responses) == n and statuses.count(200) == n, sorted(set(statuses))
    # the four photos' answers differ by far more than the batched-vs-alone float noise
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert alone[a][0] != alone[b][0] or not np.allclose(alone[a][1], alone[b][1], rtol=1e-3), (a, b)
    for i, r in enumerate(responses):
        name = names[i % 4]
        indices, probs = answer(r)
        assert indices == reference[name] == alone[name][0], (i, name, indices)
        np.testing.assert_allclose(probs, alone[name][1], rtol=1e-4, err_msg=f"request {i} ({name})")
    counted = metric(after, "hyena_requests_total", route="/v1/classify", status="200") - metric(
        before, "hyena_requests_total", route="/v1/classify", status="200")
    assert counted == n
    batches = metric(after, "hyena_inference_batch_size_count") - metric(before, "hyena_inference_batch_size_count")
    rows = metric(after, "hyena_inference_batch_size_sum") - metric(before, "hyena_inference_batch_size_sum")
    assert rows == n and batches < n, (rows, batches)  # requests arriving together shared inferences
    print(f"\n200 concurrent requests: {elapsed:.2f} s, {n / elapsed:.0f} req/s, "
          f"{batches:.0f} batches (mean {rows / batches:.1f} rows), no 5xx")


# --- Triton -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(artifacts, tmp_path_factory):
    from hyena_serve.model_repo import entry_name, fill_repository
    from hyena_serve.triton_local import LocalTriton

    repo = tmp_path_factory.mktemp("model_repository")
    fill_repository(repo, artifacts[1])
    server = LocalTriton(repo, models=[entry_name(MODEL, "cpu")])
    server.start(timeout=120)
    yield server
    server.stop()


def triton_settings(server, protocol: str, **overrides) -> GatewaySettings:
    url = server.http_url if protocol == "http" else server.grpc_url
    return GatewaySettings(backend="triton", triton_url=url, triton_protocol=protocol, **TINY, **overrides)


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_matches_torch(triton, protocol, photos, reference):
    with TestClient(create_app(triton_settings(triton, protocol))) as client:
        wait_ready(client, 30)
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert meta["backend"] == "triton" and meta["parameters"]["triton_model"] == f"{MODEL}_cpu"
        assert top5(client, photos) == reference
        # a batch larger than Triton's max_batch_size (8) is split and reassembled
        import base64

        images = [base64.b64encode(photos[name]).decode() for name in PHOTOS] * 3
        r = client.post("/v1/classify/batch", json={"images": images})
        assert r.status_code == 200, r.text
        got = [[p["index"] for p in res["predictions"]] for res in r.json()["results"]]
        assert got == [reference[name] for name in PHOTOS] * 3


@pytest.mark.triton
@needs_triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_killed_then_restarted(triton, protocol, photos):
    data = photos["chelsea"]
    settings = triton_settings(triton, protocol, request_timeout_s=10, retry_after_s=3)
    with TestClient(create_app(settings)) as client:
        wait_ready(client, 30)
        results: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def load():  # steady traffic from another thread while Triton dies and comes back
            while not stop.is_set():
                r = client.post("/v1/classify", content=data, headers={"content-type": "image/jpeg"})
                results.append((r.status_code, r.headers.get("retry-after")))

        worker = threading.Thread(target=load)
        worker.start()
        try:
            poll(lambda: any(s == 200 for s, _ in results), 30, "first success")
            os.kill(triton.pid, signal.SIGKILL)
            poll(lambda: any(s == 503 for s, _ in results), 30, "503 after SIGKILL")
            body = client.get("/v2/health/ready")
            assert body.status_code == 503 and body.json()["error"] == "not ready"
            down_at = len(results)
            triton.restart(timeout=120)
            poll(lambda: any(s == 200 for s, _ in results[down_at:]), 60, "recovery after restart")
        finally:
            stop.set()
            worker.join(60)
        assert client.get("/v2/health/ready").status_code == 200
        statuses = {s for s, _ in results}
        assert statuses <= {200, 503}, statuses  # nothing but success or "retry later"
        assert all(retry == "3" for s, retry in results if s == 503)
        text = client.get("/metrics").text
        assert metric(text, "hyena_requests_total", route="/v1/classify", status="503") == sum(s == 503 for s, _ in results)
        assert metric(text, "hyena_rejected_total", reason="backend_unavailable") >= 1
        assert metric(text, "hyena_stage_seconds_count", stage="inference") >= len(results) - 1
    print(f"\n{protocol}: {sum(s == 200 for s, _ in results)} x 200, {sum(s == 503 for s, _ in results)} x 503 "
          "around the SIGKILL + restart")
