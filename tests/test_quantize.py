"""int8 export: ONNX Runtime dynamic quantization keeps the FFTConv nodes, their float32
constants and their function bodies exactly as exported, quantizes the MatMul/Gemm
weights, and stays close to fp32 (tolerance reasoned below)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import numpy_helper  # noqa: E402

from hyena_serve.artifact import ModelSpec, build_artifact  # noqa: E402
from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME  # noqa: E402
from hyena_serve.exporting.quantize import (  # noqa: E402
    QuantizeError,
    check_fftconv_untouched,
    custom_constants,
    quantize_int8,
)

KWARGS = {"dims": [8, 16, 16, 16], "num_classes": 10}
#: 40 px: feature maps 10, 5, 3, 2 (odd sizes: the FFT plans pad and crop unevenly)
RES = 40


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    spec = ModelSpec.of("hpx_former_s4", RES, "random", 0, KWARGS)
    return build_artifact(spec, root, check=False, progress=False), spec, root


@pytest.fixture(scope="module")
def quantized(fp32_export, tmp_path_factory):
    artifact, _, _ = fp32_export
    out = tmp_path_factory.mktemp("q") / "model_int8.onnx"
    report = quantize_int8(artifact.onnx_path, out)
    return out, report


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def test_int8_leaves_fftconv_nodes_constants_and_functions_float32(fp32_export, quantized):
    artifact, _, _ = fp32_export
    out, report = quantized
    before, after = onnx.load(artifact.onnx_path), onnx.load(out)
    fft_before = [n for n in before.graph.node if n.op_type == "FFTConv"]
    fft_after = [n for n in after.graph.node if n.op_type == "FFTConv"]
    assert len(fft_after) == len(fft_before) == 4
    # every FFTConv input that is an initializer (Kf, D) is the same float32 array as exported
    init_after = {t.name: t for t in after.graph.initializer}
    consts = custom_constants(before)
    assert len(consts) == 2 * len(fft_before)
    for node in fft_after:
        for name in node.input[1:]:
            tensor = init_after[name]
            assert tensor.data_type == onnx.TensorProto.FLOAT
            np.testing.assert_array_equal(numpy_helper.to_array(tensor), consts[name])
    # the function bodies (DFT matrices as Constant nodes) are byte-identical
    assert [f.SerializeToString() for f in after.functions] == [f.SerializeToString() for f in before.functions]
    assert report.fp32_nodes_checked == 4 and sorted(report.fp32_tensors_checked) == sorted(consts)


def test_int8_quantizes_every_matmul_and_gemm_weight_and_no_conv(fp32_export, quantized):
    artifact, _, _ = fp32_export
    out, report = quantized
    before, after = onnx.load(artifact.onnx_path), onnx.load(out)
    count = lambda m, op: sum(n.op_type == op for n in m.graph.node)  # noqa: E731
    weights = {t.name for t in before.graph.initializer}
    matmuls = sum(n.op_type in ("MatMul", "Gemm") and n.input[1] in weights for n in before.graph.node)
    assert matmuls > 0 and count(after, "MatMulInteger") == matmuls == report.quantized_nodes
    assert count(after, "MatMul") == count(after, "Gemm") == 0  # Gemm became MatMul, then MatMulInteger
    assert count(after, "Conv") == count(before, "Conv") and count(after, "ConvInteger") == 0
    int8 = [t for t in after.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8) == matmuls  # one int8 weight matrix per MatMul/Gemm (besides its 1-D zero points)
    assert report.to_manifest()["op_types"] == ["MatMul"]


def test_int8_logits_are_close_to_fp32(fp32_export, quantized):
    """Tolerance: symmetric int8 weights round each weight by at most 1/254 of its output
    channel's largest |w| and the uint8 activations by 1/510 of the tensor's range, so one
    quantized MatMul is off by ≲ 0.6% of its output scale. This model chains 14 of them
    through residual adds; their errors have random signs, so ≈ √14 · 0.6% ≈ 2.2% of the
    logit scale is typical and 5% leaves room without hiding a broken quantization (a wrong
    scale or zero point gives errors of the order of the logits themselves)."""
    artifact, _, _ = fp32_export
    out, _ = quantized
    x = np.random.default_rng(0).standard_normal((16, 3, RES, RES)).astype(np.float32)
    ref, got = _run(artifact.onnx_path, x), _run(out, x)
    scale = np.abs(ref).max()
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() <= 0.05 * scale, (np.abs(got - ref).max(), scale)
    # top-1 must agree wherever fp32's own top-2 margin exceeds twice the allowed error
    top2 = np.sort(ref, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * 0.05 * scale
    assert (ref.argmax(-1) == got.argmax(-1))[clear].all()


def test_a_changed_fftconv_constant_or_body_is_caught(fp32_export):
    artifact, _, _ = fp32_export
    before = onnx.load(artifact.onnx_path)
    kf_name = next(n for n in before.graph.node if n.op_type == "FFTConv").input[1]

    changed = onnx.load(artifact.onnx_path)
    tensor = next(t for t in changed.graph.initializer if t.name == kf_name)
    value = numpy_helper.to_array(tensor).copy()
    value.flat[0] += 1e-3
    tensor.CopyFrom(numpy_helper.from_array(value, kf_name))
    with pytest.raises(QuantizeError, match=kf_name):
        check_fftconv_untouched(before, changed)

    changed = onnx.load(artifact.onnx_path)
    tensor = next(t for t in changed.graph.initializer if t.name == kf_name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), kf_name))
    with pytest.raises(QuantizeError, match="float16"):
        check_fftconv_untouched(before, changed)

    changed = onnx.load(artifact.onnx_path)
    changed.functions[0].node[0].name = "tampered"
    with pytest.raises(QuantizeError, match="functions"):
        check_fftconv_untouched(before, changed)
    assert check_fftconv_untouched(before, onnx.load(artifact.onnx_path))[0] == 4


def test_int8_artifact_from_the_cache_and_inlined_after_quantizing(fp32_export):
    """build_artifact(precision="int8") quantizes the cached fp32 export; --inline expands
    the FFTConv functions after quantizing and computes the same logits."""
    artifact, spec, root = fp32_export
    int8 = build_artifact(spec, root, precision="int8", check=False, progress=False)
    assert int8.onnx_path.name.endswith("_int8.onnx") and int8.manifest.onnx.precision == "int8"
    assert int8.manifest.onnx.quantization["quantized_nodes"] > 0
    assert int8.manifest.onnx.fftconv_plans == artifact.manifest.onnx.fftconv_plans
    inlined = build_artifact(spec, root, precision="int8", inline=True, check=False, progress=False)
    assert inlined.onnx_path.name.endswith("_int8_inline.onnx")
    model = onnx.load(inlined.onnx_path)
    assert not model.functions and all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == int8.manifest.onnx.quantization[
        "quantized_nodes"]  # the inlined FFT MatMuls stayed float
    x = np.random.default_rng(1).standard_normal((3, 3, RES, RES)).astype(np.float32)
    np.testing.assert_allclose(_run(inlined.onnx_path, x), _run(int8.onnx_path, x), rtol=0, atol=1e-5)
    # nothing but the three artifacts (and their manifests) in the cache: no fp32 temporaries left behind
    assert sorted(p.name for p in (root / "onnx").iterdir() if p.suffix == ".onnx") == sorted(
        p.onnx_path.name for p in (artifact, int8, inlined))


def test_a_failed_int8_check_is_an_artifact_error_and_leaves_nothing(fp32_export, tmp_path, monkeypatch):
    from hyena_serve.artifact import ArtifactError
    from hyena_serve.exporting import quantize

    artifact, spec, root = fp32_export
    cache = tmp_path / "cache"
    (cache / "onnx").mkdir(parents=True)
    for path in (artifact.onnx_path, artifact.manifest_path):  # the fp32 export, cached
        (cache / "onnx" / path.name).write_bytes(path.read_bytes())

    def changed(before, after):
        raise QuantizeError("quantization changed the FFTConv constant 'kf' (float32[1] -> int8[1])")

    monkeypatch.setattr(quantize, "check_fftconv_untouched", changed)
    with pytest.raises(ArtifactError, match="changed the FFTConv constant"):
        build_artifact(spec, cache, precision="int8", check=False, progress=False)
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == sorted(
        p.name for p in (artifact.onnx_path, artifact.manifest_path))
