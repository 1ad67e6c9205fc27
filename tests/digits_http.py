"""Shared by the digits tests: train with ``python -m hyena_serve.train`` as a user would, the
held-out split as 8×8 PNG files, a gateway (``hyena-serve serve``) in its own process with
torch made unimportable, and accuracy over HTTP. Waits poll with deadlines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from hyena_serve.triton_local import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8  # the default schedule's first epochs above 95% come early; 8 keeps CI short
MIN_ACCURACY = 0.95


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyena_serve.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT, env=env)


def train(run: Path, *args: str, epochs: int = EPOCHS) -> dict:
    """Train into ``run``; returns the trainer's closing JSON summary."""
    r = subprocess.run([sys.executable, "-m", "hyena_serve.train", "--epochs", str(epochs), "--out", str(run),
                        "--no-progress", *args], capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def held_out_pngs() -> list[tuple[bytes, str]]:
    """The validation split of a run (same seed and fraction as training), as 8×8 PNGs."""
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
