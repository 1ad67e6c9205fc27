"""A trained model answers real requests, through a gateway that never imports torch.

``python -m hyena_serve.train`` trains the small HyenaPixel on scikit-learn's digits and
writes weights + manifest; ``hyena-serve repo --weights RUN`` builds the served artifact
(ONNX + manifest) and fills a Triton repository. Then gateways run as users start them
(``hyena-serve serve`` in their own process) with torch made unimportable, and the
held-out digits, rendered as PNG files, are sent over HTTP:

- embedded ONNX Runtime on the exported file (``--onnx``) and on the cached artifact
  found from ``--weights RUN``;
- a real local Triton (Python-backend entry), the gateway learning preprocessing and
  labels from the manifest in the model's config.

Each must classify at least 95% of the held-out digits correctly with labels "0"…"9".
Waits poll with deadlines.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")

from hyena_serve.triton_local import free_port  # noqa: E402
from tests.digits_http import (  # noqa: E402
    MIN_ACCURACY,
    REPO_ROOT,
    accuracy,
    cli,
    gateway,
    held_out_pngs,
    torch_blocked_env,
    train,
)

pytestmark = pytest.mark.slow

needs_triton = pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                                  reason="nvidia-pytriton is not installed (it bundles tritonserver)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Train, then build the artifact and the Triton repository from the run folder."""
    root = tmp_path_factory.mktemp("digits")
    run = root / "run"
    summary = train(run)
    r = cli("repo", "--weights", str(run), "--artifacts-dir", str(root / "artifacts"),
            "--repository", str(root / "repo"))
    assert r.returncode == 0, r.stderr[-3000:]
    (onnx_path,) = (root / "artifacts" / "onnx").glob("*.onnx")
    return {"root": root, "run": run, "onnx": onnx_path, "repo": root / "repo", "summary": summary}


@pytest.fixture(scope="module")
def held_out() -> list[tuple[bytes, str]]:
    return held_out_pngs()


def test_training_run_writes_a_servable_manifest(trained):
    manifest = json.loads((trained["run"] / "manifest.json").read_text())
    assert manifest["labels"] == [str(i) for i in range(10)] and manifest["num_classes"] == 10
    assert manifest["preprocess"]["channels"] == "grayscale" and manifest["preprocess"]["input_size"] == [3, 32, 32]
    assert manifest["weights"]["source"] == "file:model_best.safetensors" and manifest["pretrained"] is True
    assert trained["summary"]["best_val_acc"] >= MIN_ACCURACY


def test_embedded_gateway_without_torch_classifies_held_out_digits(trained, held_out, tmp_path):
    env, marker = torch_blocked_env(tmp_path, HYENA_ONNX_PATH=str(trained["onnx"]))
    with gateway(env, tmp_path / "gateway.log") as url:
        acc, body = accuracy(url, held_out)
        meta = httpx.get(url + "/v2/models/hpx_former_s4").json()
    assert not marker.exists(), f"the gateway imported torch:\n{marker.read_text()}"
    assert body["pretrained"] is True and body["backend"] == "embedded"
    assert meta["parameters"]["preprocess"]["channels"] == "grayscale"
    assert acc >= MIN_ACCURACY, f"{acc:.3f} of {len(held_out)} held-out digits over HTTP"
    print(f"\nembedded, no torch: {acc:.4f} of {len(held_out)} held-out digits (training val "
          f"{trained['summary']['best_val_acc']:.4f})")


def test_cached_artifact_is_found_without_torch(trained, held_out, tmp_path):
    env, marker = torch_blocked_env(tmp_path)
    args = ("--weights", str(trained["run"]), "--artifacts-dir", str(trained["root"] / "artifacts"))
    with gateway(env, tmp_path / "gateway.log", *args) as url:
        acc, _ = accuracy(url, held_out[:40])
    assert not marker.exists(), f"the gateway imported torch:\n{marker.read_text()}"
    assert acc >= MIN_ACCURACY


def test_missing_artifact_without_torch_is_a_clear_start_error(trained, tmp_path):
    env, marker = torch_blocked_env(tmp_path)
    args = ("--weights", str(trained["run"]), "--artifacts-dir", str(tmp_path / "empty"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hyena_serve.cli", "serve", "--port", str(port), *args],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
                if r.status_code == 503 and "failed to start" in r.json()["detail"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        assert "torch" in r.json()["detail"]  # building the artifact is what needs torch
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.triton
@needs_triton
def test_triton_gateway_without_torch_classifies_held_out_digits(trained, held_out, tmp_path):
    from hyena_serve.model_repo import entry_name
    from hyena_serve.triton_local import LocalTriton

    server = LocalTriton(trained["repo"], models=[entry_name("hpx_former_s4", "cpu")])
    server.start(timeout=120)
    try:
        env, marker = torch_blocked_env(tmp_path, HYENA_BACKEND="triton", HYENA_TRITON_URL=server.http_url,
                                        HYENA_TRITON_MODEL=entry_name("hpx_former_s4", "cpu"))
        with gateway(env, tmp_path / "gateway.log") as url:
            acc, body = accuracy(url, held_out)
    finally:
        server.stop()
    assert not marker.exists(), f"the gateway imported torch:\n{marker.read_text()}"
    assert body["backend"] == "triton" and body["model"] == "hpx_former_s4"
    assert acc >= MIN_ACCURACY, f"{acc:.3f} of {len(held_out)} held-out digits through Triton"
    print(f"\ntriton, no torch: {acc:.4f} of {len(held_out)} held-out digits")
