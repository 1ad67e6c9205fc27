"""The ``hyena-serve`` command line: help texts, ``classify`` in-process and against a real
``serve`` subprocess, ``repo`` filling a Triton repository, forwarded subcommands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyena_serve.cli import main

skdata = pytest.importorskip("skimage.data")
httpx = pytest.importorskip("httpx")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--backend", "torch", "--model", "hpx_former_s4", "--res", "32"]
TINY_KWARGS = json.dumps({"dims": [8, 16, 32, 32], "num_classes": 10})


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "chelsea.jpg"
    Image.fromarray(skdata.chelsea()).save(path, quality=90)
    return path


@pytest.fixture
def tiny_env(monkeypatch):
    monkeypatch.setenv("HYENA_MODEL_KWARGS", TINY_KWARGS)


@pytest.mark.parametrize("argv", [[], ["serve"], ["classify"], ["repo"], ["triton"], ["export"], ["train"]])
def test_help(argv, capsys):
    if argv and argv[0] == "train":
        pytest.importorskip("hyena_serve.train")
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    expected = {
        (): ["serve", "classify", "repo", "triton", "train", "export"],
        ("serve",): ["--port", "--backend", "--weights", "--res", "--seed", "--artifacts-dir", "HYENA_"],
        ("classify",): ["--url", "--in-process", "--top-k"],
        ("repo",): ["--res", "--model", "--weights", "--seed", "--artifacts-dir", "--repository", "HYENA_"],
        ("triton",): ["--model-repository"],
        ("export",): ["--res", "--model", "--weights", "--seed", "--artifacts-dir", "--out"],
        ("train",): [],
    }[tuple(argv)]
    for word in expected:
        assert word in out, (argv, word)


def test_classify_in_process(image, tiny_env, capsys, tmp_path):
    assert main(["classify", str(image), "--in-process", "--top-k", "3", *TINY_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "chelsea.jpg" in out and "random weights" in out
    ranked = [line for line in out.splitlines() if line.strip()[:2].strip().rstrip(".").isdigit()]
    assert len(ranked) == 3

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(image.read_bytes()[:100])
    assert main(["classify", str(image), str(broken), "--in-process", "--json", *TINY_FLAGS]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["status"] for r in results] == [200, 400]
    assert len(results[0]["results"][0]["predictions"]) == 5


def test_serve_then_classify_url(image, tmp_path, capsys):
    from hyena_serve.triton_local import free_port

    port = free_port()
    env = {**os.environ, "HYENA_MODEL_KWARGS": TINY_KWARGS, "PYTHONPATH": str(REPO_ROOT)}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyena_serve.cli", "serve", "--port", str(port), *TINY_FLAGS],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)  # poll interval; the deadline bounds the wait
        assert main(["classify", str(image), "--url", url, "--json", "--top-k", "2"]) == 0
        (result,) = json.loads(capsys.readouterr().out)
        assert result["status"] == 200 and result["backend"] == "torch"
        assert len(result["results"][0]["predictions"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()


def test_classify_url_unreachable(image, capsys):
    from hyena_serve.triton_local import free_port

    assert main(["classify", str(image), "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "5"]) == 1
    assert "connection failed" in capsys.readouterr().err


def _tiny_onnx(path: Path, res: int, num_classes: int) -> Path:
    """pixel_values [B,3,res,res] -> mean -> MatMul -> logits (stands in for an export)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from hyena_serve.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME

    weight = np.random.default_rng(0).standard_normal((3, num_classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [INPUT_NAME, "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "weight"], [OUTPUT_NAME])],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, res, res])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", num_classes])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(weight, "weight")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=10), str(path))
    return path


def test_repo_builds_the_artifact_from_hyena_settings(tmp_path, capsys, monkeypatch):
    """`repo` names the model like `serve` does: flags first, then HYENA_* variables."""
    monkeypatch.setenv("HYENA_MODEL", "hpx_former_s4")
    monkeypatch.setenv("HYENA_WEIGHTS", "random")
    monkeypatch.setenv("HYENA_MODEL_KWARGS", '{"dims": [8, 16, 24, 32], "num_classes": 10}')
    repo = tmp_path / "repo"
    argv = ["repo", "--res", "32", "--artifacts-dir", str(tmp_path / "artifacts"), "--repository", str(repo)]
    assert main(argv) == 0
    assert "hpx_former_s4_cpu" in capsys.readouterr().out
    cpu = repo / "hpx_former_s4_cpu"
    exported = sorted((tmp_path / "artifacts" / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and "_32_seed0_" in exported[0].name
    assert (cpu / "1" / "model.onnx").read_bytes() == exported[0].read_bytes()
    assert (cpu / "1" / "model.manifest.json").is_file() and (cpu / "1" / "model.py").is_file()
    config = (cpu / "config.pbtxt").read_text()
    assert "dims: [ 3, 32, 32 ]" in config and "dims: [ 10 ]" in config and "hyena_manifest" in config
    assert (repo / "hpx_former_s4_onnx" / "1" / "model.onnx").is_file()
    assert (repo / "hpx_former_s4_trt" / "config.pbtxt").is_file()


def test_repo_rejects_an_onnx_file_without_or_against_its_manifest(tmp_path, capsys):
    from hyena_serve.manifest import Manifest, OnnxInfo, WeightsInfo, manifest_path_for, write_manifest
    from hyena_serve.preprocess import Preprocessing

    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx", 32, 1000)
    argv = ["repo", "--repository", str(tmp_path / "r"), "--onnx", str(onnx_path)]
    assert main(argv) == 2
    assert "manifest not found" in capsys.readouterr().err
    write_manifest(manifest_path_for(onnx_path), Manifest(
        model="hpx_former_s4", resolution=64, num_classes=1000, preprocess=Preprocessing(input_size=(3, 64, 64)),
        weights=WeightsInfo("random", seed=0), pretrained=False, onnx=OnnxInfo("tiny.onnx", "0" * 64, 20)))
    assert main(argv) == 2
    assert "expected [batch, 3, 64, 64]" in capsys.readouterr().err
    assert main([*argv[:-1], str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_serve_flags_override_environment(monkeypatch):
    from hyena_serve.cli import build_parser, settings_from_args

    monkeypatch.setenv("HYENA_PORT", "9999")
    monkeypatch.setenv("HYENA_BACKEND", "triton")
    monkeypatch.setenv("HYENA_TRITON_PROTOCOL", "grpc")
    args = build_parser().parse_args(["serve", "--port", "8123", "--backend", "torch", "--model", "hpx_former_s4"])
    settings = settings_from_args(args)
    assert (settings.port, settings.backend, settings.model) == (8123, "torch", "hpx_former_s4")
    assert settings.triton_protocol == "grpc"  # from the environment, no flag given
    assert settings.host == "127.0.0.1" and settings.resolution is None and settings.weights == "auto"


def test_torch_compile_flag_reaches_the_torch_backend(monkeypatch):
    from hyena_serve.cli import build_parser, settings_from_args
    from hyena_serve.gateway.main import build_backend

    monkeypatch.setenv("HYENA_BACKEND", "torch")
    args = build_parser().parse_args(["serve", "--model", "hpx_former_s4", "--weights", "random", "--torch-compile"])
    backend = build_backend(settings_from_args(args))
    assert backend.compile is True
    monkeypatch.setenv("HYENA_TORCH_COMPILE", "0")
    assert build_backend(settings_from_args(build_parser().parse_args(["serve"]))).compile is False
