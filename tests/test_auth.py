"""Optional bearer-token auth: off by default; keys from HYENA_API_KEYS or a key file
(plain keys or sha256: digests); 401 + WWW-Authenticate for missing or wrong keys;
health open; /metrics and docs openable by setting; keys never logged; the CLI sends
its key. A fake backend stands in for the model (auth happens before any inference)."""

from __future__ import annotations

import hashlib
import io
import json
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hyena_serve.gateway import GatewaySettings, create_app
from hyena_serve.gateway.auth import AuthConfigError, KeyRing, bearer_token
from hyena_serve.runtime.base import Backend

TINY = dict(model="hpx_former_s4", resolution=32, weights="random",
            model_kwargs={"dims": [8, 16, 32, 32], "num_classes": 10})
KEY, OTHER = "k3y-alpha-0123456789", "second-key-abcdef"


class FakeBackend(Backend):
    def __init__(self, settings: GatewaySettings):
        from hyena_serve.artifact import plan_manifest
        from hyena_serve.runtime.base import ModelInfo

        self.info = ModelInfo(plan_manifest(settings.model_spec()), "fake", "test")

    async def start(self) -> None:
        pass

    async def infer(self, batch):
        return np.zeros((len(batch), self.info.num_classes), np.float32)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def client_for(**overrides) -> TestClient:
    settings = GatewaySettings(backend="torch", **TINY, **overrides)
    return TestClient(create_app(settings, backend=FakeBackend(settings)))


def classify(client, key: str | None = None, scheme: str = "Bearer"):
    headers = {"content-type": "image/png"}
    if key is not None:
        headers["authorization"] = f"{scheme} {key}"
    return client.post("/v1/classify", content=png(), headers=headers)


def assert_401(r, invalid: bool) -> None:
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid
    body = r.json()
    assert body["error"] == "unauthorized" and body["request_id"] == r.headers["x-request-id"]


def test_off_by_default():
    with client_for() as client:
        assert classify(client).status_code == 200
        assert client.get("/metrics").status_code == 200 and client.get("/openapi.json").status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


def test_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("HYENA_API_KEYS", f" {KEY} ,{OTHER},")
    settings = GatewaySettings(backend="torch", **TINY)
    with TestClient(create_app(settings, backend=FakeBackend(settings))) as client:
        assert classify(client, KEY).status_code == 200
        assert classify(client, OTHER).status_code == 200
        assert_401(classify(client), invalid=False)  # missing
        assert_401(classify(client, "nope"), invalid=True)  # wrong
        assert_401(classify(client, KEY[:-1]), invalid=True)  # a prefix of a key
        assert_401(classify(client, KEY + "x"), invalid=True)
        assert_401(classify(client, KEY, scheme="Basic"), invalid=True)  # another scheme
        assert_401(classify(client, ""), invalid=True)  # "Bearer " and nothing
        assert classify(client, KEY, scheme="bearer").status_code == 200  # the scheme is case-insensitive


def test_health_open_everything_else_closed():
    with client_for(api_keys=KEY) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        for path in ("/metrics", "/docs", "/openapi.json", "/v2", "/v2/models/hpx_former_s4",
                     "/v2/models/hpx_former_s4/ready", "/nowhere"):
            assert_401(client.get(path), invalid=False)
            assert client.get(path, headers={"authorization": f"Bearer {KEY}"}).status_code in (200, 404), path
        r = client.post("/v1/classify/batch", json={"images": ["QQ=="]})
        assert_401(r, invalid=False)
        # refused before the body is read: a body over the limit gets 401, not 413
        r = client.post("/v1/classify", content=b"\0" * (30 * 1024 * 1024), headers={"content-type": "image/png"})
        assert_401(r, invalid=False)
        schema = client.get("/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()
        assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        classify_op = schema["paths"]["/v1/classify"]["post"]
        assert classify_op["security"] == [{"bearerAuth": []}] and "401" in classify_op["responses"]
        assert "security" not in schema["paths"]["/v2/health/live"]["get"]


def test_metrics_and_docs_can_be_opened():
    with client_for(api_keys=KEY, auth_open_metrics=True) as client:
        assert client.get("/metrics").status_code == 200
        assert_401(client.get("/docs"), invalid=False)
        assert_401(classify(client), invalid=False)
    with client_for(api_keys=KEY, auth_open_docs=True) as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert "security" not in schema["paths"]["/openapi.json"]["get"] if "/openapi.json" in schema["paths"] else True
        assert_401(client.get("/metrics"), invalid=False)
        assert_401(classify(client), invalid=False)


def test_key_file_with_keys_hashes_and_comments(tmp_path):
    digest = hashlib.sha256(OTHER.encode()).hexdigest()
    path = tmp_path / "keys"
    path.write_text(f"# gateway keys\n\n{KEY}\nsha256:{digest}\n  \n")
    with client_for(api_keys_file=path) as client:
        assert classify(client, KEY).status_code == 200
        assert classify(client, OTHER).status_code == 200  # matched by its digest
        assert_401(classify(client, f"sha256:{digest}"), invalid=True)  # the digest itself is no key
        assert_401(classify(client), invalid=False)


def test_environment_and_file_together(tmp_path):
    path = tmp_path / "keys"
    path.write_text(OTHER + "\n")
    with client_for(api_keys=KEY, api_keys_file=path) as client:
        assert classify(client, KEY).status_code == 200 and classify(client, OTHER).status_code == 200


def test_bad_configurations_refuse_to_start(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n")
    with pytest.raises(AuthConfigError, match="no key"):
        client_for(api_keys_file=empty)
    with pytest.raises(AuthConfigError, match="no key"):
        client_for(api_keys=" , ")
    with pytest.raises(AuthConfigError, match="cannot read"):
        client_for(api_keys_file=tmp_path / "missing")
    with pytest.raises(AuthConfigError, match="64 hex"):
        KeyRing.load("sha256:abc", None)
    with pytest.raises(AuthConfigError, match="whitespace"):
        KeyRing.load("two words", None)


def test_keys_are_never_logged_or_shown(tmp_path, caplog):
    path = tmp_path / "keys"
    path.write_text(OTHER + "\n")
    settings = GatewaySettings(backend="torch", **TINY, api_keys=KEY, api_keys_file=path)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    ring = KeyRing.load(KEY, path)
    assert KEY not in repr(ring) and hashlib.sha256(KEY.encode()).hexdigest() not in repr(ring)
    with caplog.at_level(logging.DEBUG):
        with TestClient(create_app(settings, backend=FakeBackend(settings))) as client:
            classify(client, KEY)
            classify(client, KEY + "-wrong")
            classify(client)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "API key auth on (2 keys)" in text
    assert KEY not in text and OTHER not in text and hashlib.sha256(KEY.encode()).hexdigest() not in text


def test_constant_time_compare_over_digests(monkeypatch):
    """Every stored digest is compared with hmac.compare_digest, matched or not."""
    import hyena_serve.gateway.auth as auth

    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    ring = KeyRing.load(f"{KEY},{OTHER},third", None)
    assert ring.accepts(KEY) and not ring.accepts("x")
    assert calls == [(32, 32)] * 6  # three digests each time, no early exit


def test_bearer_header_parsing():
    assert bearer_token([]) is None
    assert bearer_token([(b"authorization", b"Bearer abc")]) == "abc"
    assert bearer_token([(b"authorization", b"  bearer   abc  ")]) == "abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) == ""
    assert bearer_token([(b"authorization", b"Bearer")]) == ""


def test_cli_classify_sends_the_key(monkeypatch, tmp_path, capsys):
    """`hyena-serve classify --url` with --api-key, or HYENA_API_KEY, against a live gateway."""
    from hyena_serve import cli
    import httpx

    from tests.live_server import ServerThread, poll

    settings = GatewaySettings(backend="torch", **TINY, api_keys=KEY, access_log=False)
    image = tmp_path / "x.png"
    image.write_bytes(png())
    with ServerThread(create_app(settings, backend=FakeBackend(settings))) as server:
        poll(lambda: httpx.get(server.url + "/v2/health/ready").status_code == 200, 30, "readiness")
        monkeypatch.delenv("HYENA_API_KEY", raising=False)
        assert cli.main(["classify", str(image), "--url", server.url, "--json"]) == 1
        assert json.loads(capsys.readouterr().out)[0]["status"] == 401
        assert cli.main(["classify", str(image), "--url", server.url, "--api-key", KEY, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["status"] == 200
        monkeypatch.setenv("HYENA_API_KEY", KEY)
        assert cli.main(["classify", str(image), "--url", server.url, "--json"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)[0]["status"] == 200 and KEY not in out.out + out.err
