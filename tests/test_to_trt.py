"""export/to_trt.py and its CPU-side logic (the TensorRT build itself needs a GPU: see
tests/test_tensorrt_gpu.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from hyena_serve.contract import MODE_2D, PLUGIN_NAMESPACE, PLUGIN_VERSION, plan_fft
from hyena_serve.exporting import tensorrt_build as trtb
from hyena_serve.exporting.fftconv_onnx import standalone_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "export" / "to_trt.py"


def _tiny_fftconv_model() -> onnx.ModelProto:
    plan = plan_fft(MODE_2D, 5, 6, (3, 5))
    kf = np.random.default_rng(0).standard_normal((2, *plan.spectrum_shape, 2)).astype(np.float32)
    return standalone_model(plan, kf, np.ones(2, np.float32))


@pytest.mark.parametrize(("text", "expected"), [("1:4:8", (1, 4, 8)), ("3", (3, 3, 3)), ("1:1:16", (1, 1, 16))])
def test_batch_profile_parses(text, expected):
    profile = trtb.BatchProfile.parse(text)
    assert (profile.min, profile.opt, profile.max) == expected
    assert profile.shapes(32)[2] == (expected[2], 3, 32, 32)


@pytest.mark.parametrize("text", ["4:2:8", "0:1:2", "1:2", "a:b:c", "1:2:3:4"])
def test_batch_profile_rejects_bad_text(text):
    with pytest.raises(ValueError, match="batch profile"):
        trtb.BatchProfile.parse(text)


def _attrs(model: onnx.ModelProto) -> dict[str, object]:
    (node,) = [n for n in model.graph.node if n.op_type.startswith("FFTConv")]
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_plugin_variant_keeps_the_attributes_the_parser_needs():
    model = _tiny_fftconv_model()
    attrs = _attrs(trtb.prepare_onnx(model, "plugin"))
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert attrs["plugin_version"] == PLUGIN_VERSION.encode()
    assert attrs["mode"] == b"2d" and list(attrs["kernel_size"]) == [3, 5]


@pytest.mark.parametrize("variant", ["native-dft", "gemm"])
def test_function_body_variants_drop_the_plugin_attributes_only(variant):
    model = _tiny_fftconv_model()
    prepared = trtb.prepare_onnx(model, variant)
    attrs = _attrs(prepared)
    assert "plugin_namespace" not in attrs and "plugin_version" not in attrs
    assert list(attrs["fft_size"]) == [10, 12]
    assert len(prepared.functions) == 1
    assert "plugin_namespace" in _attrs(model), "the input model must not be modified"


def test_function_body_variants_name_each_overload_and_still_run():
    # Two plans in one graph: each node must reach its own body under a unique name, and
    # ONNX Runtime must still compute the same result as with the overloads.
    ort = pytest.importorskip("onnxruntime")
    plan_a, plan_b = plan_fft(MODE_2D, 5, 6, (3, 5)), plan_fft(MODE_2D, 5, 6, (5, 7))
    rng = np.random.default_rng(0)
    kf_a = rng.standard_normal((2, *plan_a.spectrum_shape, 2)).astype(np.float32)
    kf_b = rng.standard_normal((2, *plan_b.spectrum_shape, 2)).astype(np.float32)
    chained = standalone_model(plan_a, kf_a, np.ones(2, np.float32), body="matmul")
    second = standalone_model(plan_b, kf_b, np.ones(2, np.float32), body="matmul")
    # Y = FFTConv_b(FFTConv_a(X)): the second node reads the first's output.
    node = second.graph.node[0]
    node.input[:] = ["Y", "Kf_b", "D_b"]
    node.output[:] = ["Z"]
    for init in second.graph.initializer:
        init.name += "_b"
    chained.graph.node.append(node)
    chained.graph.initializer.extend(second.graph.initializer)
    chained.functions.extend(second.functions)
    chained.graph.output[0].name = "Z"
    prepared = trtb.prepare_onnx(chained, "gemm")
    names = sorted(f.name for f in prepared.functions)
    assert len(set(names)) == 2 and all(n.startswith("FFTConv__") for n in names)
    assert not any(f.overload for f in prepared.functions) and not any(n.overload for n in prepared.graph.node)
    onnx.checker.check_model(prepared, full_check=True)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"X": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(prepared), run(chained), rtol=1e-6, atol=1e-6)


def test_prepare_rejects_models_without_fftconv_and_plugin_nodes_without_attributes():
    model = _tiny_fftconv_model()
    empty = onnx.ModelProto()
    empty.CopyFrom(model)
    del empty.graph.node[:]
    with pytest.raises(ValueError, match="no hyena::FFTConv node"):
        trtb.prepare_onnx(empty, "plugin")
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    node = stripped.graph.node[0]
    kept = [a for a in node.attribute if a.name != "plugin_namespace"]
    del node.attribute[:]
    node.attribute.extend(kept)
    with pytest.raises(ValueError, match="would not pick the plugin"):
        trtb.prepare_onnx(stripped, "plugin")
    with pytest.raises(ValueError, match="unknown FFTConv variant"):
        trtb.prepare_onnx(model, "cudnn")


def test_plugin_layer_check_counts_plugin_layers():
    nodes = ["fft0", "fft1"]
    layers = [("stem", "CONVOLUTION"), ("fft0", "PLUGIN_V3"), ("mlp", "MATRIX_MULTIPLY"), ("fft1", "PLUGIN_V3")]
    assert trtb.check_plugin_layers(nodes, layers) == 2


def test_plugin_layer_check_fails_loudly_when_the_parser_inlined_the_function():
    # What the network looks like when the plugin is not registered: the function body's
    # MatMuls in place of the plugin layers.
    layers = [("stem", "CONVOLUTION")] + [(f"fft0/matmul{i}", "MATRIX_MULTIPLY") for i in range(4)]
    with pytest.raises(trtb.PluginLayersMissing, match="expected 1 FFTConv plugin layers, the network has 0"):
        trtb.check_plugin_layers(["fft0"], layers)


def test_missing_plugin_library_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(trtb.PLUGIN_LIB_ENV, raising=False)
    missing = tmp_path / "libnope.so"
    with pytest.raises(trtb.TensorRTUnavailable, match=str(missing)):
        trtb.find_plugin_library(missing)


def test_write_atomically_leaves_a_readable_file_and_no_temporaries(tmp_path):
    target = tmp_path / "m" / "1" / "model.plan"
    trtb.write_atomically(target, b"plan-bytes")
    assert target.read_bytes() == b"plan-bytes"
    assert os.stat(target).st_mode & 0o044, "the artifact must be readable by the serving user"
    assert [p.name for p in target.parent.iterdir()] == ["model.plan"]


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--checkpoint", "--res", "--fp16", "--batch", "--plugin-lib", "--workspace",
                   "--out", "--fftconv", "native-dft", "gemm"):
        assert option in out


@pytest.mark.slow
def test_without_tensorrt_the_onnx_is_written_and_the_reason_is_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: the no-TensorRT path cannot be observed")
    onnx_out = tmp_path / "tiny.onnx"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "hpx_former_s4", "--res", "32", "--onnx-out", str(onnx_out),
         "--repository", str(tmp_path / "repo"), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 3, proc.stderr
    assert onnx_out.is_file()
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "TensorRT" in error_lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "repo").exists(), "no plan or config may be written without an engine"
