"""AFF adaptive frequency filter mixer: against the paper's torch.fft / complex-einsum
formulation (float64, odd and non-square maps), gradients, the aff_former variants, and the
aff_former_s4 export through the artifact builder with ONNX Runtime matching torch."""

from __future__ import annotations

import pytest
import torch

from hyena_serve.layers import AdaptiveFrequencyFilter, adaptive_filter_reference
from hyena_serve.models import create_model


def _mixer(dim: int, **kwargs) -> AdaptiveFrequencyFilter:
    # a large init scale so the mask network is far from zero and every term matters
    return AdaptiveFrequencyFilter(dim, init_scale=0.5, **kwargs).double()


@pytest.mark.parametrize(("h", "w", "dim", "groups", "ratio"), [
    (5, 7, 16, 8, 1),   # odd, non-square map
    (8, 6, 12, 3, 2),   # even map, wider hidden layer
    (1, 1, 8, 8, 1),    # a single pixel
    (1, 9, 8, 2, 1),    # one row
    (13, 4, 24, 1, 1),  # one group: a dense complex layer
])
def test_matches_the_paper_formulation(h, w, dim, groups, ratio):
    torch.manual_seed(0)
    mixer = _mixer(dim, num_groups=groups, hidden_ratio=ratio)
    x = torch.randn(2, h, w, dim, dtype=torch.float64)
    y = mixer(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, adaptive_filter_reference(mixer, x), rtol=1e-10, atol=1e-10)


def test_the_mask_is_adaptive_and_shrinks():
    """The filter depends on the input (not a fixed global filter), and a large threshold
    shrinks the whole mask to zero, leaving the inner skip alone."""
    torch.manual_seed(1)
    mixer = _mixer(8, num_groups=2)
    x = torch.randn(2, 6, 5, 8, dtype=torch.float64)
    spec = torch.ops.hyena.rfft2(x.permute(0, 3, 1, 2))
    m0, m1 = mixer.mask(spec)
    assert (m0 - m1).abs().max() > 1e-3
    mixer.sparsity_threshold = 1e9
    torch.testing.assert_close(mixer(x), x, rtol=0, atol=1e-12)


def test_float32_matches_float64():
    torch.manual_seed(2)
    mixer = _mixer(16)
    x = torch.randn(2, 7, 7, 16, dtype=torch.float64)
    want = mixer(x)
    got = mixer.float()(x.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_gradients_match_the_reference_and_reach_every_parameter():
    torch.manual_seed(3)
    mixer = _mixer(8, num_groups=4)
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64, requires_grad=True)
    params = [x, *mixer.parameters()]
    ours = torch.autograd.grad(mixer(x).square().sum(), params)
    ref = torch.autograd.grad(adaptive_filter_reference(mixer, x).square().sum(), params)
    for a, b in zip(ours, ref):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_gradcheck_tiny():
    torch.manual_seed(4)
    mixer = _mixer(4, num_groups=2)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mixer, (x,))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="channel groups"):
        AdaptiveFrequencyFilter(12, num_groups=8)
    with pytest.raises(ValueError, match="hidden_ratio"):
        AdaptiveFrequencyFilter(16, hidden_ratio=0)
    with pytest.raises(ValueError, match="sparsity_threshold"):
        AdaptiveFrequencyFilter(16, sparsity_threshold=-1.0)


@pytest.mark.parametrize("name", ["aff_former_s4", "aff_former_s18"])
def test_variants_build_and_run(name):
    kwargs = {"dims": [16, 32, 48, 64]} if name.endswith("s4") else {}
    net = create_model(name, num_classes=10, img_size=64, **kwargs)
    mixers = [m for m in net.modules() if isinstance(m, AdaptiveFrequencyFilter)]
    assert len(mixers) == (4 if name.endswith("s4") else 18)
    assert net.pretrained_cfg.architecture == name and net.pretrained_cfg.hf_hub_id == ""
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_model_compiles_fullgraph():
    torch.manual_seed(5)
    net = create_model("aff_former_s4", dims=[16, 32, 48, 64], num_classes=10, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(torch.compile(net, backend="eager", fullgraph=True)(x), net(x))


@pytest.mark.slow
def test_aff_former_exports_and_serves_through_the_artifact_builder(tmp_path):
    """ONNX Runtime vs torch parity (photos + random batches, 1e-4 of the logit scale) is
    checked inside build_artifact; here the artifact is also run directly and its graph is
    checked to hold the spectral ops and otherwise standard ONNX ops only."""
    import onnx

    from hyena_serve.artifact import ModelSpec, build_artifact
    from tests.served_parity import ort_relative_error

    spec = ModelSpec.of("aff_former_s4", 32, "random", model_kwargs={"dims": [16, 32, 48, 64], "num_classes": 10})
    artifact = build_artifact(spec, tmp_path, progress=False)
    assert artifact.manifest.model == "aff_former_s4" and artifact.manifest.onnx.fftconv_plans == {}
    proto = onnx.load(str(artifact.onnx_path))
    custom = sorted(f"{n.domain}::{n.op_type}" for n in proto.graph.node if n.domain not in ("", "ai.onnx"))
    assert custom == ["hyena::IRFFT2"] * 4 + ["hyena::RFFT2"] * 4  # one pair per mixer, stage sizes 8, 4, 2, 1
    assert {f.overload for f in proto.functions} == {f"s{n}x{n}_matmul" for n in (8, 4, 2, 1)}
    assert ort_relative_error(spec, artifact.onnx_path) <= 1e-4
