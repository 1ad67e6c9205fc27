"""``--inline`` exports: the hyena::FFTConv functions expanded into standard ONNX ops, the
same logits in ONNX Runtime as the function form, and (where the openvino wheel is
installed) the same logits in OpenVINO, which refuses the function form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")

from hyena_serve.artifact import ModelSpec, build_artifact
from hyena_serve.contract import INPUT_NAME

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KW = {"dims": [16, 32, 48, 64]}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("artifacts")
    for name in ("hpx_former_s4", "hb_former_s4"):
        spec = ModelSpec.of(name, 32, "random", 0, KW)
        plain = build_artifact(spec, root, progress=False)
        inlined = build_artifact(spec, root, progress=False, inline=True)  # parity vs torch checked
        out[name] = plain.onnx_path, inlined.onnx_path
    return out


def _ort(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]


def _x(batch=3):
    return np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
def test_inline_has_standard_ops_only_and_same_logits(exports, name):
    plain, inlined = exports[name]
    assert inlined.stem.endswith("_inline") and inlined != plain
    m = onnx.load(str(inlined), load_external_data=False)
    assert not m.functions
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}
    p = onnx.load(str(plain), load_external_data=False)
    assert any(n.domain == "hyena" for n in p.graph.node)
    x = _x()
    np.testing.assert_allclose(_ort(inlined, x), _ort(plain, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
def test_inline_runs_in_openvino(exports, name):
    ov = pytest.importorskip("openvino")
    plain, inlined = exports[name]
    core = ov.Core()
    # f32: on CPUs with bf16/AMX units OpenVINO otherwise computes in bf16 (~1% logit error here)
    compiled = core.compile_model(core.read_model(str(inlined)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = _x()
    y = compiled({INPUT_NAME: x})[compiled.output(0)]
    ref = _ort(plain, x)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
