"""A real tritonserver (from the nvidia-pytriton wheel) serving a tiny ONNX model through
Triton's Python backend, plus the repository layout and the backend model's batching.

Server tests skip only when the wheel is not installed. One module-scoped server serves
most tests; the lifecycle tests start their own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from hyena_serve.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, TRITON_MANIFEST_PARAMETER
from hyena_serve.manifest import Manifest
from hyena_serve.model_repo import (
    DEFAULT_MODEL,
    FLAVOURS,
    PYTHON_MODEL_SOURCE,
    config_pbtxt,
    entry_name,
    fill_repository,
    python_backend_models,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.triton

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None,
    reason="nvidia-pytriton wheel not installed (it bundles tritonserver): "
    "pip install nvidia-pytriton",
)

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_REPO = REPO_ROOT / "model_repository"
RES, NUM_CLASSES = 8, 10
MODEL = entry_name(DEFAULT_MODEL, "cpu")
TOL = dict(rtol=1e-5, atol=1e-5)


def make_tiny_onnx(path: Path, res: int = RES, num_classes: int = NUM_CLASSES) -> Path:
    """pixel_values [B,3,res,res] -> mean over H,W -> MatMul [3,num_classes] -> logits."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((3, num_classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", [INPUT_NAME, "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weight"], [OUTPUT_NAME]),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, res, res])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", num_classes])],
        [
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(weight, "weight"),
        ],
    )
    # IR 10: the newest onnxruntime 1.31 reads (onnx 1.23 would write 14 by default).
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], ir_version=10
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_manifest(onnx_path: Path, res: int = RES, num_classes: int = NUM_CLASSES) -> Manifest:
    from hyena_serve.files import sha256_file
    from hyena_serve.manifest import OnnxInfo, WeightsInfo
    from hyena_serve.preprocess import Preprocessing

    return Manifest(model=DEFAULT_MODEL, resolution=res, num_classes=num_classes,
                    preprocess=Preprocessing(input_size=(3, res, res)), weights=WeightsInfo("random", seed=0),
                    pretrained=False, onnx=OnnxInfo(onnx_path.name, sha256_file(onnx_path), ONNX_OPSET))


def tiny_artifact(onnx_path: Path):
    """The tiny ONNX file as a served-model artifact: its manifest written beside it."""
    from hyena_serve.artifact import Artifact
    from hyena_serve.manifest import manifest_path_for, write_manifest

    manifest = tiny_manifest(onnx_path)
    return Artifact(onnx_path, write_manifest(manifest_path_for(onnx_path), manifest), manifest)


def parse_config(path: Path):
    """config.pbtxt parsed with Triton's own ModelConfig schema (unknown fields fail)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, onnx_file) -> Path:
    repo_dir = tmp_path_factory.mktemp("model_repository")
    fill_repository(repo_dir, tiny_artifact(onnx_file))
    return repo_dir


@pytest.fixture(scope="module")
def reference(onnx_file):
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


@pytest.fixture(scope="module")
def triton(repo):
    from hyena_serve.triton_local import LocalTriton

    server = LocalTriton(repo)
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, RES, RES)).astype(np.float32)


# --- repository ---------------------------------------------------------------------------


def test_committed_configs_match_template():
    for flavour in FLAVOURS:
        path = COMMITTED_REPO / entry_name(DEFAULT_MODEL, flavour) / "config.pbtxt"
        assert path.read_text() == config_pbtxt(flavour), (
            f"{path} differs from model_repo.config_pbtxt({flavour!r}); regenerate it from that function"
        )


@pytest.mark.parametrize("which", ["committed", "filled"])
def test_every_config_uses_contract_names(which, repo):
    root = COMMITTED_REPO if which == "committed" else repo
    configs = sorted(root.glob("*/config.pbtxt"))
    assert len(configs) == len(FLAVOURS)
    res, classes = (224, 1000) if which == "committed" else (RES, NUM_CLASSES)
    for path in configs:
        cfg = parse_config(path)
        assert cfg.name == path.parent.name
        assert cfg.max_batch_size > 0
        assert [i.name for i in cfg.input] == [INPUT_NAME]
        assert [o.name for o in cfg.output] == [OUTPUT_NAME]
        assert list(cfg.input[0].dims) == [3, res, res]
        assert list(cfg.output[0].dims) == [classes]
        assert cfg.HasField("dynamic_batching")
        assert list(cfg.dynamic_batching.preferred_batch_size)
        assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
        carried = cfg.parameters.get(TRITON_MANIFEST_PARAMETER)
        if which == "committed":  # a template: a gateway refuses it until `hyena-serve repo` fills it
            assert carried is None
        else:  # the manifest survives pbtxt escaping and Triton's own parser
            manifest = Manifest.from_json(carried.string_value)
            assert (manifest.resolution, manifest.num_classes) == (RES, NUM_CLASSES)


def test_fill_repository_layout(repo, onnx_file):
    for flavour in ("onnx", "cpu"):
        placed = repo / entry_name(DEFAULT_MODEL, flavour) / "1" / "model.onnx"
        assert placed.read_bytes() == onnx_file.read_bytes()
        assert (placed.parent / "model.manifest.json").is_file()
    model_py = repo / MODEL / "1" / "model.py"
    assert model_py.read_text() == PYTHON_MODEL_SOURCE.read_text()
    assert python_backend_models(repo) == [MODEL]
    assert python_backend_models(COMMITTED_REPO) == [MODEL]


def test_fill_repository_rejects_mismatched_model(tmp_path, onnx_file):
    from dataclasses import replace

    artifact = tiny_artifact(onnx_file)
    with pytest.raises(ValueError, match=r"expected \[batch, 3, 16, 16\]"):
        fill_repository(tmp_path, replace(artifact, manifest=tiny_manifest(onnx_file, res=16)))
    with pytest.raises(ValueError, match=r"expected \[batch, 7\]"):
        fill_repository(tmp_path, replace(artifact, manifest=tiny_manifest(onnx_file, num_classes=7)))


# --- the Python backend model, with a stand-in for triton_python_backend_utils -------------


def fake_pb_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, array

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class TritonError:
        INTERNAL, INVALID_ARG = "INTERNAL", "INVALID_ARG"

        def __init__(self, message, code="INTERNAL"):
            self.msg, self.code = message, code

        def message(self):
            return self.msg

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error = list(output_tensors), error

    pb.Tensor, pb.TritonError, pb.InferenceResponse = Tensor, TritonError, InferenceResponse
    pb.TritonModelException = type("TritonModelException", (Exception,), {})
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    pb.triton_string_to_numpy = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}.__getitem__
    return pb


def test_python_model_batches_requests_and_isolates_errors(monkeypatch, repo, reference):
    from google.protobuf import json_format

    pb = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    spec = importlib.util.spec_from_file_location("hyena_triton_model", PYTHON_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    config = json_format.MessageToDict(
        parse_config(repo / MODEL / "config.pbtxt"), preserving_proto_field_name=True
    )
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_name": MODEL,
            "model_repository": str(repo / MODEL),
            "model_version": "1",
        }
    )
    good_a, good_b = images(2, seed=1), images(1, seed=2)
    requests = [
        {INPUT_NAME: pb.Tensor(INPUT_NAME, good_a)},
        {INPUT_NAME: pb.Tensor(INPUT_NAME, images(1)[:, :, :4])},  # wrong H
        {INPUT_NAME: pb.Tensor(INPUT_NAME, good_b)},
        {INPUT_NAME: pb.Tensor(INPUT_NAME, good_b.astype(np.float16))},  # wrong dtype
        {},  # missing input
    ]
    responses = model.execute(requests)
    assert len(responses) == len(requests)

    for index, x in ((0, good_a), (2, good_b)):
        assert responses[index].error is None
        (out,) = responses[index].output_tensors
        assert out.name() == OUTPUT_NAME
        np.testing.assert_allclose(out.as_numpy(), reference(x), **TOL)
    shape_error, dtype_error, missing = (responses[i].error for i in (1, 3, 4))
    assert shape_error.code == pb.TritonError.INVALID_ARG
    assert f"expected [batch, 3, {RES}, {RES}]" in shape_error.message()
    assert "float16" in dtype_error.message() and INPUT_NAME in dtype_error.message()
    assert "missing input" in missing.message()
    model.finalize()


# --- the real server ---------------------------------------------------------------------


@needs_wheel
def test_ready_and_metadata_report_contract_names(triton):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http = httpclient.InferenceServerClient(triton.http_url)
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(MODEL)
    meta = http.get_model_metadata(MODEL)
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        (INPUT_NAME, "FP32", [-1, 3, RES, RES])
    ]
    assert [(t["name"], t["shape"]) for t in meta["outputs"]] == [(OUTPUT_NAME, [-1, NUM_CLASSES])]
    http.close()

    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    assert grpc.is_server_ready() and grpc.is_model_ready(MODEL)
    gmeta = grpc.get_model_metadata(MODEL)
    assert [t.name for t in gmeta.inputs] == [INPUT_NAME]
    assert [t.name for t in gmeta.outputs] == [OUTPUT_NAME]
    grpc.close()

    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(triton.metrics_url, timeout=5) as response:
        assert response.status == 200
        assert b"nv_inference_request_success" in response.read()


@needs_wheel
@pytest.mark.parametrize("batch", [1, 3])
def test_http_infer_matches_onnxruntime(triton, reference, batch):
    import tritonclient.http as httpclient

    x = images(batch, seed=batch)
    client = httpclient.InferenceServerClient(triton.http_url)
    inp = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    out = httpclient.InferRequestedOutput(OUTPUT_NAME, binary_data=True)
    result = client.infer(MODEL, [inp], outputs=[out])
    client.close()
    logits = result.as_numpy(OUTPUT_NAME)
    assert logits.shape == (batch, NUM_CLASSES) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference(x), **TOL)


@needs_wheel
@pytest.mark.parametrize("batch", [1, 3])
def test_grpc_infer_matches_onnxruntime(triton, reference, batch):
    import tritonclient.grpc as grpcclient

    x = images(batch, seed=10 + batch)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(MODEL, [inp], outputs=[grpcclient.InferRequestedOutput(OUTPUT_NAME)])
    client.close()
    logits = result.as_numpy(OUTPUT_NAME)
    assert logits.shape == (batch, NUM_CLASSES)
    np.testing.assert_allclose(logits, reference(x), **TOL)


@needs_wheel
def test_concurrent_requests_each_get_their_own_answer(triton, reference):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton.http_url, concurrency=6)
    batches = [images(1 + i % 3, seed=100 + i) for i in range(12)]
    pending = []
    for x in batches:
        inp = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        pending.append(client.async_infer(MODEL, [inp]))
    for x, request in zip(batches, pending):
        np.testing.assert_allclose(request.get_result().as_numpy(OUTPUT_NAME), reference(x), **TOL)
    client.close()


@needs_wheel
def test_wrong_shape_is_rejected_with_a_clear_error(triton):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    x = np.zeros((1, 3, RES + 1, RES), np.float32)
    client = httpclient.InferenceServerClient(triton.http_url)
    inp = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=INPUT_NAME):
        client.infer(MODEL, [inp])
    assert client.is_server_ready()  # one bad request does not hurt the server
    client.close()


# --- lifecycle -----------------------------------------------------------------------------


def http_logits(server, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    try:
        return client.infer(MODEL, [inp]).as_numpy(OUTPUT_NAME)
    finally:
        client.close()


def assert_nothing_left(server_pid: int, server) -> None:
    from hyena_serve.triton_local import group_members

    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)  # the server itself is gone (and reaped)
    assert not group_members(server_pid), "backend stubs of the server still alive"
    assert server.shm_files() == []
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))


@needs_wheel
def test_restart_after_sigkill_then_stop_leaves_nothing(repo, reference):
    from hyena_serve.triton_local import LocalTriton

    server = LocalTriton(repo)
    try:
        server.start(timeout=120)
        first = server.processes()
        first_pid = server.pid
        assert first_pid in first and len(first) >= 2  # server + one backend stub
        assert server.shm_files(), "the Python backend should have created its shm region"
        urls = (server.http_url, server.grpc_url, server.metrics_url)

        os.kill(server.pid, signal.SIGKILL)
        wait_until(lambda: not server.is_alive(), 10, "the killed server to exit")
        assert not server.is_ready()

        server.restart(timeout=120)
        assert (server.http_url, server.grpc_url, server.metrics_url) == urls
        x = images(2, seed=7)
        np.testing.assert_allclose(http_logits(server, x), reference(x), **TOL)
        for pid in first:  # the old server's stub did not survive the restart
            assert pid not in server.processes()
        second_pid = server.pid
    finally:
        server.stop()
    assert_nothing_left(second_pid, server)
    assert_nothing_left(first_pid, server)


@needs_wheel
def test_context_manager_stop_leaves_nothing(repo, reference):
    from hyena_serve.triton_local import LocalTriton

    with LocalTriton(repo) as server:
        pid = server.pid
        x = images(1, seed=3)
        np.testing.assert_allclose(http_logits(server, x), reference(x), **TOL)
    assert_nothing_left(pid, server)
    assert server.log_path is None  # temp dir (backend links + log) removed


@needs_wheel
def test_failed_start_raises_with_log_tail_and_cleans_up(tmp_path, onnx_file):
    from hyena_serve.triton_local import LocalTriton, TritonStartError

    fill_repository(tmp_path, tiny_artifact(onnx_file))
    (tmp_path / MODEL / "1" / "model.onnx").unlink()
    server = LocalTriton(tmp_path)
    with pytest.raises(TritonStartError, match="ONNX model not found"):
        server.start(timeout=60)
    assert server.pid is None and server.shm_files() == []
