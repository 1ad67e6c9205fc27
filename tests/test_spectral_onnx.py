"""hyena::RFFT2 / hyena::IRFFT2 in ONNX: both function bodies in ONNX Runtime against the torch
ops (odd, even, prime, 1×N sizes; non-Hermitian spectra), float16 I/O, and the dynamo export
of a module using both ops (custom nodes kept, functions attached, inlining)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from hyena_serve.contract import ONNX_IRFFT2_TYPE, ONNX_OP_DOMAIN, ONNX_RFFT2_TYPE
from hyena_serve.exporting import spectral_onnx
from hyena_serve.ops import irfft2, rfft2

ort = pytest.importorskip("onnxruntime")

SIZES = [(7, 7), (8, 6), (5, 13), (1, 1), (1, 9), (6, 1), (3, 2), (14, 11)]


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize("body", spectral_onnx.BODIES)
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_rfft2_bodies_match_torch(body, h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    got = _run(spectral_onnx.standalone_model(ONNX_RFFT2_TYPE, 3, (h, w), body), x.float().numpy())
    want = rfft2(x).numpy()
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-5  # float32 body vs the float64 op


@pytest.mark.parametrize("body", spectral_onnx.BODIES)
@pytest.mark.parametrize(("h", "w"), SIZES)
def test_irfft2_bodies_match_torch_on_non_hermitian_spectra(body, h, w):
    # random planar spectra: the imaginary parts irfft ignores must be ignored by the bodies too
    y = torch.randn(2, 6, h, w // 2 + 1, dtype=torch.float64)
    got = _run(spectral_onnx.standalone_model(ONNX_IRFFT2_TYPE, 3, (h, w), body), y.float().numpy())
    want = irfft2(y, w).numpy()
    assert got.shape == want.shape
    assert _rel(got, want) <= 1e-5


@pytest.mark.parametrize("op_type", spectral_onnx.OP_TYPES)
def test_float16_io(op_type):
    h, w = 6, 9
    shape = (1, 4, h, w) if op_type == ONNX_RFFT2_TYPE else (1, 8, h, w // 2 + 1)
    x = torch.randn(shape).half()
    got = _run(spectral_onnx.standalone_model(op_type, 4, (h, w), "matmul", fp16=True), x.numpy())
    assert got.dtype == np.float16
    want = rfft2(x.float()) if op_type == ONNX_RFFT2_TYPE else irfft2(x.float(), w)
    assert _rel(got.astype(np.float32), want.numpy()) <= 2e-3  # fp16 output rounding


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown spectral op"):
        spectral_onnx.build_function("FFT3", (4, 4), "matmul", 20)
    with pytest.raises(ValueError, match="unknown body"):
        spectral_onnx.build_function(ONNX_RFFT2_TYPE, (4, 4), "cufft", 20)


class _Filter(torch.nn.Module):
    """rfft2 → fixed planar mask → irfft2: both ops in one graph, two map sizes' worth of
    the same op type when called twice."""

    def __init__(self, c: int, h: int, w: int):
        super().__init__()
        self.mask = torch.nn.Parameter(torch.randn(2 * c, h, w // 2 + 1))

    def forward(self, x):
        y = irfft2(rfft2(x) * self.mask, x.shape[-1])
        return y + irfft2(rfft2(y[..., :-1, :-1]), x.shape[-1] - 1).sum()


@pytest.fixture(scope="module")
def exported_filter():
    torch.manual_seed(0)
    net = _Filter(3, 7, 9).eval()
    x = torch.randn(2, 3, 7, 9)
    prog = torch.onnx.export(net, (x,), dynamo=True, opset_version=20, verbose=False, optimize=True,
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
                             custom_translation_table=spectral_onnx.translation_table())
    with torch.inference_mode():
        want = net(x).numpy()
    return prog.model_proto, x.numpy(), want


def _run_graph(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("body", spectral_onnx.BODIES)
def test_dynamo_export_keeps_the_nodes_and_runs_in_ort(exported_filter, body):
    proto, x, want = exported_filter
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    nodes = spectral_onnx.spectral_nodes(model)
    assert sorted(n.op_type for n in nodes) == ["IRFFT2", "IRFFT2", "RFFT2", "RFFT2"]
    assert {tuple(spectral_onnx.node_spatial(n)) for n in nodes} == {(7, 9), (6, 8)}
    done = spectral_onnx.attach_functions(model, body)
    assert set(done) == {f"{op}:s{h}x{w}_{body}" for op in ("RFFT2", "IRFFT2") for h, w in ((7, 9), (6, 8))}
    assert all(n.domain == ONNX_OP_DOMAIN and n.overload for n in nodes)
    assert _rel(_run_graph(model, x), want) <= 1e-5


def test_inlined_export_has_standard_ops_only(exported_filter):
    from hyena_serve.exporting.onnx_export import inline_fftconv

    proto, x, want = exported_filter
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    spectral_onnx.attach_functions(model, "matmul")
    inlined = inline_fftconv(model)
    assert not spectral_onnx.spectral_nodes(inlined)
    assert _rel(_run_graph(inlined, x), want) <= 1e-5
