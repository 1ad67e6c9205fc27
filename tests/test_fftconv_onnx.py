"""hyena::FFTConv function bodies on ONNX Runtime vs the float64 FFT references.

Tolerances (max abs error relative to max |reference|): GEMM bodies and the Conv body
2e-6 (measured ~1-3e-7), the DFT body 5e-5 (ORT's DFT: ~3e-6-1e-5), float16 X 2e-3
(the output is rounded to float16; the body computes in float32).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from hyena_serve.contract import (  # noqa: E402
    MODE_1D_BIDIR,
    MODE_2D,
    MODE_2D_CIRCULAR,
    ONNX_OP_DOMAIN,
    ONNX_OP_TYPE,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    plan_fft,
)
from hyena_serve.exporting import fftconv_onnx, lowering_matmul  # noqa: E402
from hyena_serve.ops import (  # noqa: E402
    fft_conv,
    fft_conv1d_bidir_ref,
    fft_conv2d_circular_ref,
    fft_conv2d_ref,
    filter_spectrum,
)

TOL = {"matmul": 2e-6, "dft": 5e-5}

# (mode, C, H, W, K): odd, even, non-square, non-power-of-two, K > 2H (filter crop), K < H
CASES_2D = [
    (MODE_2D, 3, 7, 7, 13),        # odd square, K = 2H-1 (Hpx at 7x7)
    (MODE_2D, 2, 6, 8, (5, 7)),    # even, non-square, K < H (not global)
    (MODE_2D, 2, 10, 5, (21, 3)),  # K > 2H: FFT size set by the filter
    (MODE_2D, 2, 12, 12, 23),      # non-power-of-two, global
]
CASES_1D = [
    (MODE_1D_BIDIR, 3, 7, 7, 97),    # L=49, K=2L-1 (Hb at 7x7)
    (MODE_1D_BIDIR, 2, 6, 5, 59),    # L=30, N=60
    (MODE_1D_BIDIR, 2, 8, 8, 31),    # K < L
    (MODE_1D_BIDIR, 2, 4, 4, 63),    # L < L0: N = K = 63 (odd)
    (MODE_1D_BIDIR, 2, 14, 14, 391),  # L=196, N=392: the long-sequence path
    (MODE_1D_BIDIR, 2, 6, 5, 101),   # N = 101 (prime): matmul falls back to DFT
]
# Circular: the filter and the transform are the map (K = N = (H, W)).
CASES_CIRCULAR = [
    (MODE_2D_CIRCULAR, 3, 7, 7, None),    # odd square (a GFNet stage at 7x7)
    (MODE_2D_CIRCULAR, 2, 6, 8, None),    # even, non-square (Nyquist bins on both axes)
    (MODE_2D_CIRCULAR, 2, 13, 5, None),   # prime x odd
    (MODE_2D_CIRCULAR, 2, 14, 14, None),  # the S18 stage-2 size
    (MODE_2D_CIRCULAR, 2, 1, 1, None),    # a single pixel
    (MODE_2D_CIRCULAR, 2, 1, 6, None),    # a single row
]


def _case(mode, c, h, w, k, dtype=torch.float64):
    plan = plan_fft(mode, h, w, k)
    g = torch.Generator().manual_seed(h * 100 + w)
    kern = torch.randn(c, *plan.kernel, dtype=dtype, generator=g)
    d = torch.randn(c, dtype=dtype, generator=g)
    return plan, kern, d


def _reference(mode, x, kern, d):
    if mode == MODE_2D:
        return fft_conv2d_ref(x, kern, d)
    if mode == MODE_2D_CIRCULAR:
        return fft_conv2d_circular_ref(x, kern, d)
    return fft_conv1d_bidir_ref(x.flatten(-2), kern, d).reshape(x.shape)


def _session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(plan, kern, d, hw, x, body="matmul", strategy=None, fp16=False):
    kf = filter_spectrum(kern, plan).float().numpy()
    model = fftconv_onnx.standalone_model(plan, kf, d.float().numpy(), body=body, strategy=strategy,
                                          fp16=fp16, hw=hw)
    onnx.checker.check_model(model, full_check=True)
    xin = x.numpy().astype(np.float16 if fp16 else np.float32)
    (y,) = _session(model).run(None, {"X": xin})
    return model, y


def _strategies(plan):
    if plan.circular:
        return ["split2d", "dense2d"]  # never conv: a zero-padded Conv does not wrap around
    if plan.mode == MODE_2D:
        return ["split2d", "dense2d", "conv"]
    out = ["dense1d", "conv"]
    if _ct_ok(plan):
        out += ["ct1d", "ct1ds"]
    return out


def _ct_ok(plan):
    try:
        lowering_matmul.ct_factors(plan.spatial[0], plan.fft[0])
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("case", CASES_2D + CASES_1D + CASES_CIRCULAR,
                         ids=lambda c: f"{c[0]}-{c[2]}x{c[3]}-k{c[4]}")
@pytest.mark.parametrize("body", ["matmul", "dft"])
def test_body_matches_reference(case, body):
    mode, c, h, w, k = case
    plan, kern, d = _case(*case)
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    ref = _reference(mode, x, kern, d).numpy()
    with pytest.warns(UserWarning) if (body == "matmul" and not lowering_matmul.supports(plan)) else _nullctx():
        model, y = _run(plan, kern, d, (h, w), x, body=body)
    assert y.shape == ref.shape and y.dtype == np.float32
    err = np.abs(y - ref).max() / np.abs(ref).max()
    tol = TOL["dft"] if fftconv_onnx.resolve_body(plan, body) == "dft" else TOL["matmul"]
    assert err <= tol, f"{body}: relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("case", CASES_2D + CASES_1D[:-1] + CASES_CIRCULAR,
                         ids=lambda c: f"{c[0]}-{c[2]}x{c[3]}-k{c[4]}")
def test_every_strategy_matches_reference(case):
    mode, c, h, w, k = case
    plan, kern, d = _case(*case)
    x = torch.randn(1, c, h, w, dtype=torch.float64)
    ref = _reference(mode, x, kern, d).numpy()
    for strategy in _strategies(plan):
        _, y = _run(plan, kern, d, (h, w), x, strategy=strategy)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        assert err <= TOL["matmul"], f"{strategy}: relative error {err:.2e}"


@pytest.mark.parametrize("case", [CASES_2D[0], CASES_2D[3], CASES_1D[0], CASES_1D[4], CASES_CIRCULAR[1]],
                         ids=lambda c: f"{c[0]}-{c[2]}x{c[3]}")
@pytest.mark.parametrize("body", ["matmul", "dft"])
def test_float16_input(case, body):
    mode, c, h, w, k = case
    plan, kern, d = _case(*case)
    x = torch.randn(1, c, h, w, dtype=torch.float64).half().double()  # exactly representable
    ref = _reference(mode, x, kern, d).numpy()
    _, y = _run(plan, kern, d, (h, w), x, body=body, fp16=True)
    assert y.dtype == np.float16
    err = np.abs(y.astype(np.float64) - ref).max() / np.abs(ref).max()
    assert err <= 2e-3


@pytest.mark.parametrize("batch", [1, 5])
def test_dynamic_batch(batch):
    plan, kern, d = _case(*CASES_2D[3])
    x = torch.randn(batch, 2, 12, 12, dtype=torch.float64)
    _, y = _run(plan, kern, d, (12, 12), x)
    assert y.shape == (batch, 2, 12, 12)
    np.testing.assert_allclose(y, _reference(MODE_2D, x, kern, d).numpy(), atol=1e-5, rtol=0)


def test_node_and_function_shape():
    plan, kern, d = _case(*CASES_2D[0])
    model = fftconv_onnx.standalone_model(plan, filter_spectrum(kern, plan).float().numpy(), d.float().numpy())
    (node,) = model.graph.node
    assert (node.op_type, node.domain) == (ONNX_OP_TYPE, ONNX_OP_DOMAIN)
    assert list(node.input) == ["X", "Kf", "D"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert attrs["plugin_version"] == PLUGIN_VERSION.encode()
    assert attrs["mode"] == b"2d" and attrs["kernel_size"] == [13, 13] and attrs["fft_size"] == [14, 14]
    assert attrs["spatial_size"] == [7, 7]
    (fn,) = model.functions
    assert (fn.domain, fn.name, fn.overload) == (ONNX_OP_DOMAIN, ONNX_OP_TYPE, node.overload)
    assert list(fn.input) == ["X", "Kf", "D"] and list(fn.output) == ["Y"]
    assert model.ir_version >= 10


def test_without_function_ort_refuses():
    plan, kern, d = _case(*CASES_2D[0])
    model = fftconv_onnx.standalone_model(plan, filter_spectrum(kern, plan).float().numpy(), d.float().numpy())
    del model.functions[:]
    with pytest.raises(Exception, match="FFTConv"):
        _session(model)


def test_schema_registered_and_torch_export_keeps_one_node():
    from hyena_serve.ops import fft_conv

    fftconv_onnx.register_schema()
    fftconv_onnx.register_schema()  # idempotent
    assert onnx.defs.get_schema(ONNX_OP_TYPE, 1, ONNX_OP_DOMAIN).name == ONNX_OP_TYPE

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p2, self.p1 = plan_fft(MODE_2D, 6, 6, 11), plan_fft(MODE_1D_BIDIR, 6, 6, 71)
            self.register_buffer("kf2", filter_spectrum(torch.randn(3, 11, 11), self.p2))
            self.register_buffer("kf1", filter_spectrum(torch.randn(3, 71), self.p1))
            self.register_buffer("d", torch.randn(3))

        def forward(self, x):
            y = fft_conv(x, self.kf2, self.d, MODE_2D, list(self.p2.kernel), list(self.p2.fft))
            return fft_conv(y, self.kf1, self.d, MODE_1D_BIDIR, list(self.p1.kernel), list(self.p1.fft))

    toy = Toy().eval()
    x = torch.randn(2, 3, 6, 6)
    prog = torch.onnx.export(toy, (x,), dynamo=True, verbose=False,
                             custom_translation_table=fftconv_onnx.translation_table(),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    model = prog.model_proto
    nodes = fftconv_onnx.fftconv_nodes(model)
    assert len(nodes) == 2
    done = fftconv_onnx.attach_functions(model, "matmul")
    assert len(done) == 2 and len(model.functions) == 2
    onnx.checker.check_model(model, full_check=True)
    sess = _session(model)
    with torch.no_grad():
        ref = toy(x).numpy()
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(y, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("mode,size,expected", [
    (MODE_2D, 56, "split2d"), (MODE_2D, 28, "split2d"), (MODE_2D, 14, "split2d"), (MODE_2D, 7, "conv"),
    (MODE_1D_BIDIR, 56, "ct1ds"), (MODE_1D_BIDIR, 28, "ct1ds"), (MODE_1D_BIDIR, 14, "dense1d"),
    (MODE_1D_BIDIR, 7, "dense1d"),
])
def test_strategy_at_s18_stage_shapes(mode, size, expected):
    """The per-plan choice at the S18 stage shapes (global filters, K = 2H-1 / 2L-1), as
    the thresholds in lowering_matmul (measured by bench/onnx_vs_torch.py) decide it."""
    k = 2 * size - 1 if mode == MODE_2D else 2 * size * size - 1
    assert lowering_matmul.choose_strategy(plan_fft(mode, size, size, k)) == expected


# --- the circular mode ----------------------------------------------------------------------


def test_circular_never_chooses_conv_and_conv_refuses_it():
    for h, w in [(7, 7), (1, 1), (56, 56), (3, 5)]:
        assert lowering_matmul.choose_strategy(plan_fft(MODE_2D_CIRCULAR, h, w)) == "split2d"
    plan = plan_fft(MODE_2D_CIRCULAR, 7, 7)
    with pytest.raises(ValueError, match="conv strategy computes a linear convolution"):
        fftconv_onnx.build_function(plan, 3, "matmul", 20, strategy="conv")


def test_circular_node_attributes():
    plan, kern, d = _case(*CASES_CIRCULAR[1])
    model = fftconv_onnx.standalone_model(plan, filter_spectrum(kern, plan).float().numpy(), d.float().numpy())
    (node,) = model.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["mode"] == b"2d_circular"
    assert attrs["kernel_size"] == attrs["fft_size"] == attrs["spatial_size"] == [6, 8]
    assert (attrs["plugin_namespace"], attrs["plugin_version"]) == (PLUGIN_NAMESPACE.encode(), PLUGIN_VERSION.encode())
    assert node.overload == "2d_circular_c2_s6x8_k6x8_n6x8_split2d"
    assert fftconv_onnx.node_plan(node) == plan


@pytest.mark.parametrize("body", ["matmul", "dft"])
def test_circular_torch_export_matches_the_op(body):
    """torch.onnx.export of a circular fft_conv keeps one FFTConv node with the circular
    attributes, and ONNX Runtime runs its body to the op's result."""
    plan = plan_fft(MODE_2D_CIRCULAR, 5, 6)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("kf", torch.randn(3, *plan.spectrum_shape, 2))  # any Kf, not only Hermitian
            self.register_buffer("d", torch.randn(3))

        def forward(self, x):
            return fft_conv(x, self.kf, self.d, MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft))

    toy = Toy().eval()
    x = torch.randn(2, 3, 5, 6)
    prog = torch.onnx.export(toy, (x,), dynamo=True, verbose=False,
                             custom_translation_table=fftconv_onnx.translation_table(),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    model = prog.model_proto
    (node,) = fftconv_onnx.fftconv_nodes(model)
    assert fftconv_onnx.node_plan(node) == plan
    fftconv_onnx.attach_functions(model, body)
    onnx.checker.check_model(model, full_check=True)
    sess = _session(model)
    xb = torch.randn(4, 3, 5, 6, dtype=torch.float64)  # another batch size
    ref = fft_conv(xb, toy.kf.double(), toy.d.double(), MODE_2D_CIRCULAR, list(plan.kernel), list(plan.fft))
    (y,) = sess.run(None, {sess.get_inputs()[0].name: xb.float().numpy()})
    err = np.abs(y - ref.numpy()).max() / np.abs(ref.numpy()).max()
    assert err <= TOL[body], f"{body}: relative error {err:.2e}"
