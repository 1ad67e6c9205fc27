"""The served OpenAPI document is the contract: a property-based run of schemathesis (all
checks, bounded examples) against a live uvicorn gateway on the embedded backend finds
no failure and causes no 5xx, and the document states the limits the server enforces.

The model is a tiny hpx_former_s4 (32 px, 10 classes, random weights) built once into a
temp artifacts dir by the artifact builder, as the gateway's first start would.

Two statuses are declared as acceptable answers to schema-valid requests, because no
JSON/OpenAPI schema can express them: 400 (bytes that match ``format: binary`` or valid
base64 but do not decode as an image) and 413 (an image whose decoded width*height is over
the pixel limit). Everything else the schema allows must get 2xx.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest

from hyena_serve.gateway import GatewaySettings, create_app
from tests.live_server import ServerThread, poll

pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("schemathesis")

TINY = dict(model="hpx_former_s4", resolution=32, weights="random",
            model_kwargs={"dims": [8, 16, 32, 32], "num_classes": 10})
MAX_EXAMPLES = 30
SCHEMATHESIS_CONFIG = """
[checks.positive_data_acceptance]
# 400: bytes the schema allows that are not an image; 413: an image over the pixel limit
expected-statuses = ["2xx", "400", "404", "413"]
"""


def server_errors(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("hyena_requests_total{") and 'status="5' in line:
            total += float(line.rpartition(" ")[2])
    return total


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from hyena_serve.artifact import build_artifact

    directory = tmp_path_factory.mktemp("artifacts")
    build_artifact(GatewaySettings(**TINY).model_spec(), directory, progress=False)
    return directory


API_KEY = "contract-test-key"


@contextlib.contextmanager
def serve(artifacts, **overrides):
    settings = GatewaySettings(backend="embedded", artifacts_dir=artifacts, **TINY, max_batch_images=4,
                               max_body_bytes=200_000, max_image_pixels=4_000_000, access_log=False, **overrides)
    with ServerThread(create_app(settings)) as server:
        poll(lambda: httpx.get(server.url + "/v2/health/ready").status_code == 200, 120, "readiness")
        yield server


@pytest.fixture(scope="module")
def live(artifacts):
    with serve(artifacts) as server:
        yield server


def test_schema_states_the_limits(live):
    schema = httpx.get(live.url + "/openapi.json").json()
    ops = schema["paths"]
    top_k = {p["name"]: p for p in ops["/v1/classify"]["post"]["parameters"]}["top_k"]["schema"]
    assert top_k["minimum"] == 1 and top_k["maximum"] == 10  # the served model's class count
    body = ops["/v1/classify/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    images = body["properties"]["images"]
    assert images["minItems"] == 1 and images["maxItems"] == 4
    assert images["items"]["minLength"] == 1 and images["items"]["pattern"].startswith("^")
    assert [a.get("maximum") for a in body["properties"]["top_k"]["anyOf"] if a.get("type") == "integer"] == [10]
    raw = ops["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "image/webp", "multipart/form-data"} <= set(raw)
    for path, item in ops.items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                assert "X-Request-ID" in response.get("headers", {}), (path, method, status)
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, method, status)
                if status in ("429", "503"):
                    assert "Retry-After" in response["headers"]
    assert "200,000 bytes" in schema["info"]["description"] and "4,000,000 pixels" in schema["info"]["description"]
    links = ops["/v2"]["get"]["responses"]["200"]["links"]
    assert {link["operationId"] for link in links.values()} == {"model_metadata", "model_ready"}
    name = {p["name"]: p for p in ops["/v2/models/{name}"]["get"]["parameters"]}["name"]
    assert name["example"] == "hpx_former_s4"
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# hypothesis describes lambdas with ast.parse, which schemathesis reaches from more than one
# thread even with one worker; CPython 3.11.7 keeps the AST converter's recursion depth
# per process, so concurrent parses fail with "SystemError: AST constructor recursion depth
# mismatch" (seen in this suite: an error of the tool, not a finding about the API). The
# driver serialises ast.parse; results are unchanged.
SCHEMATHESIS_DRIVER = """
import ast, threading
_lock, _parse = threading.Lock(), ast.parse
def _serialised_parse(*args, **kwargs):
    with _lock:
        return _parse(*args, **kwargs)
ast.parse = _serialised_parse
from schemathesis.cli import schemathesis
schemathesis()
"""


def run_schemathesis(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    cmd = [sys.executable, "-c", SCHEMATHESIS_DRIVER,
           "--config-file", str(config), "run", url + "/openapi.json",
           "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "12", "--workers", "1",
           "--request-timeout", "30", "--no-shrink", "--report", "json", "--report-json-path",
           str(tmp_path / "report.json"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_schemathesis_finds_nothing(live, tmp_path):
    report = tmp_path / "report.json"
    before = httpx.get(live.url + "/metrics").text
    proc = run_schemathesis(live.url, tmp_path)
    after = httpx.get(live.url + "/metrics").text
    output = proc.stdout + proc.stderr
    print(output[-3000:])
    assert proc.returncode == 0, output[-6000:]
    assert server_errors(after) - server_errors(before) == 0, "the fuzzer caused 5xx responses"
    if report.is_file():  # the run did test something
        text = report.read_text()
        assert text.strip(), "empty schemathesis report"
        json.loads(text)


def test_request_id_on_every_answer(live):
    r = httpx.get(live.url + "/v2/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    for bad in ("x" * 129, "bad id", "ünï", ""):
        r = httpx.get(live.url + "/v2/health/live", headers={"X-Request-ID": bad.encode("utf-8")})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32
    r = httpx.post(live.url + "/v1/classify", content=b"", headers={"content-type": "image/png", "x-request-id": "t-1"})
    assert r.status_code == 400 and r.headers["x-request-id"] == "t-1" and r.json()["request_id"] == "t-1"
    r = httpx.put(live.url + "/v1/classify")
    assert r.status_code == 405 and r.json()["request_id"] == r.headers["x-request-id"]
    r = httpx.get(live.url + "/nowhere")
    assert r.status_code == 404 and r.json()["request_id"] == r.headers["x-request-id"]


def test_schemathesis_with_auth_on(artifacts, tmp_path):
    """The same run against a gateway with a key: the document declares bearer auth, and
    the ignored_auth check sends requests without and with wrong credentials (401)."""
    with serve(artifacts, api_keys=API_KEY) as server:
        headers = {"authorization": f"Bearer {API_KEY}"}
        before = httpx.get(server.url + "/metrics", headers=headers).text
        proc = run_schemathesis(server.url, tmp_path, "-H", f"Authorization: Bearer {API_KEY}")
        after = httpx.get(server.url + "/metrics", headers=headers).text
    output = proc.stdout + proc.stderr
    print(output[-2000:])
    assert proc.returncode == 0, output[-6000:]
    assert server_errors(after) - server_errors(before) == 0
    assert API_KEY not in after
