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
import io
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")

from hyena_serve.triton_local import free_port  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8  # the default schedule's first epochs above 95% come early; 8 keeps CI short
MIN_ACCURACY = 0.95

pytestmark = pytest.mark.slow

needs_triton = pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                                  reason="nvidia-pytriton is not installed (it bundles tritonserver)")


def _cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyena_serve.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Train, then build the artifact and the Triton repository from the run folder."""
    root = tmp_path_factory.mktemp("digits")
    run = root / "run"
    r = subprocess.run([sys.executable, "-m", "hyena_serve.train", "--epochs", str(EPOCHS), "--out", str(run),
                        "--no-progress"], capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    r = _cli("repo", "--weights", str(run), "--artifacts-dir", str(root / "artifacts"),
             "--repository", str(root / "repo"))
    assert r.returncode == 0, r.stderr[-3000:]
    (onnx_path,) = (root / "artifacts" / "onnx").glob("*.onnx")
    return {"root": root, "run": run, "onnx": onnx_path, "repo": root / "repo", "summary": summary}


@pytest.fixture(scope="module")
def held_out() -> list[tuple[bytes, str]]:
    """The validation split of the run (same seed and fraction as training), as 8×8 PNGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from hyena_serve.training.data import stratified_split

    digits = load_digits()
    _, val_idx = stratified_split(digits.target, 0.2, seed=0)
    out = []
    for i in val_idx:
        pixels = np.round(digits.images[i] / 16.0 * 255.0).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="PNG")
        out.append((buf.getvalue(), str(digits.target[i])))
    return out


def torch_blocked_env(tmp_path: Path, **settings: str) -> tuple[dict, Path]:
    """An environment where ``import torch`` fails and leaves a marker file behind."""
    blocker = tmp_path / "no-torch" / "torch"
    blocker.mkdir(parents=True, exist_ok=True)
    marker = tmp_path / "torch-imported.txt"
    (blocker / "__init__.py").write_text(
        "import os, traceback\n"
        "with open(os.environ['TORCH_IMPORT_MARKER'], 'a') as f:\n"
        "    f.write(''.join(traceback.format_stack()))\n"
        "raise ImportError('torch is blocked in this test: the gateway must not import it')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYENA_")}
    env.update({"PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO_ROOT)]),
                "TORCH_IMPORT_MARKER": str(marker), "HF_HUB_OFFLINE": "1", **settings})
    return env, marker


@contextmanager
def gateway(env: dict, log: Path, *args: str):
    """``hyena-serve serve`` in its own process; yields its URL once ready."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hyena_serve.cli", "serve", "--port", str(port), *args],
                                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"gateway exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"gateway not ready: {log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def accuracy(url: str, images: list[tuple[bytes, str]]) -> tuple[float, dict]:
    correct, first = 0, None
    with httpx.Client(base_url=url, timeout=60) as client:
        for data, label in images:
            r = client.post("/v1/classify", params={"top_k": 1}, files={"file": ("digit.png", data, "image/png")})
            assert r.status_code == 200, r.text
            body = r.json()
            first = first or body
            correct += body["results"][0]["predictions"][0]["label"] == label
    return correct / len(images), first


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
