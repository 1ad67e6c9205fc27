"""GFNet global filter mixer: against GFNet's own formula in plain torch.fft (ortho norm,
float64), gradients, the spectrum at other map sizes against a loop over tap offsets,
freezing, the gf_former variants, and the gf_former_s4 export through the artifact builder
with ONNX Runtime matching torch."""

from __future__ import annotations

import pytest
import torch

from hyena_serve.contract import MODE_2D_CIRCULAR
from hyena_serve.layers import GlobalFilter, resample_circular_spectrum
from hyena_serve.models import create_model, freeze_filters, hyena_plans, unfreeze_filters
from hyena_serve.ops import direct_circular_conv2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gfnet_reference(mixer: GlobalFilter, x: torch.Tensor) -> torch.Tensor:
    """GFNet's global filter as the paper writes it, on (B, H, W, C): rfft2 over (H, W) with
    norm="ortho", times the complex weight (laid out (H, W//2+1, C)), irfft2 with norm="ortho"."""
    _, h, w, _ = x.shape
    weight = torch.view_as_complex(mixer.global_filter.weight.permute(1, 2, 0, 3).contiguous())
    spec = torch.fft.rfft2(x, dim=(1, 2), norm="ortho") * weight
    return torch.fft.irfft2(spec, s=(h, w), dim=(1, 2), norm="ortho")


@pytest.mark.parametrize("h,w", [(7, 7), (6, 8), (13, 5), (1, 1), (1, 4), (14, 14)])
def test_matches_gfnet_formula_in_float64(h, w):
    torch.manual_seed(0)
    mixer = GlobalFilter(6, feature_size=(h, w)).double()
    x = torch.randn(2, h, w, 6, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), gfnet_reference(mixer, x), rtol=1e-12, atol=1e-12)


def test_float32_matches_float64_reference():
    torch.manual_seed(1)
    mixer = GlobalFilter(16, feature_size=(14, 14))
    x = torch.randn(3, 14, 14, 16)
    ref = gfnet_reference(mixer.double(), x.double())
    y = mixer.float()(x)
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() <= 1e-5


def test_weight_is_the_op_spectrum_and_initialised_as_in_gfnet():
    torch.manual_seed(2)
    mixer = GlobalFilter(64, feature_size=(28, 28))
    weight = mixer.global_filter.weight
    assert weight.shape == (64, 28, 15, 2)
    assert [n for n, _ in mixer.named_parameters()] == ["global_filter.weight"]
    assert abs(weight.std().item() - 0.02) < 0.001 and abs(weight.mean().item()) < 0.001
    plan = mixer.fft_plan(28, 28)
    kf, d = mixer._spectrum(plan, torch.empty(1, 64, 28, 28))
    assert kf is weight  # no cache, no copy: the parameter is Kf
    assert torch.equal(d, torch.zeros(64))
    assert plan.mode == MODE_2D_CIRCULAR and plan.kernel == plan.fft == plan.spatial == (28, 28)


def test_gradients_reach_the_weight_and_the_input():
    mixer = GlobalFilter(4, feature_size=(5, 6)).double()
    x = torch.randn(2, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: _mixer_with_weight(mixer, a, k),
                                    (x, mixer.global_filter.weight.detach().clone().requires_grad_()))
    mixer(x).square().sum().backward()
    assert mixer.global_filter.weight.grad is not None and mixer.global_filter.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _mixer_with_weight(mixer, x, weight):
    return torch.func.functional_call(mixer, {"global_filter.weight": weight}, (x,))


def _taps_by_offset(taps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The filter with the same signed-offset taps on a ``size`` map, by a loop over offsets."""
    h0, w0 = taps.shape[-2:]
    h, w = size
    out = torch.zeros(*taps.shape[:-2], h, w, dtype=taps.dtype)
    for oy in range(-(h0 // 2), h0 - h0 // 2):
        for ox in range(-(w0 // 2), w0 - w0 // 2):
            if -(h // 2) <= oy <= h - 1 - h // 2 and -(w // 2) <= ox <= w - 1 - w // 2:
                out[..., oy % h, ox % w] = taps[..., oy % h0, ox % w0]
    return out


@pytest.mark.parametrize("built,run", [((5, 6), (9, 11)), ((7, 7), (4, 3)), ((6, 4), (6, 9)), ((4, 4), (1, 1)),
                                       ((3, 5), (3, 5))])
def test_other_map_sizes_keep_the_spatial_taps(built, run):
    torch.manual_seed(3)
    mixer = GlobalFilter(3, feature_size=built).double()
    taps = mixer.global_filter.filter()  # (C, *built), the circular impulse response
    x = torch.randn(2, *run, 3, dtype=torch.float64)
    expected = direct_circular_conv2d(x.permute(0, 3, 1, 2), _taps_by_offset(taps, run)).permute(0, 2, 3, 1)
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_resampling_round_trip_and_shape_check():
    torch.manual_seed(4)
    kf = torch.randn(2, 5, 4, 2, dtype=torch.float64)  # a 5x6 map
    big = resample_circular_spectrum(kf, (5, 6), (11, 13))
    back = resample_circular_spectrum(big, (11, 13), (5, 6))
    # Growing and cutting back loses nothing; what comes back is the Hermitian part of Kf
    # (the spectrum of a real filter), which is what the op uses of any Kf.
    torch.testing.assert_close(back, resample_circular_spectrum(kf, (5, 6), (5, 6)), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not the half spectrum of a 5x8 map"):
        resample_circular_spectrum(kf, (5, 8), (5, 8))


def test_freeze_copies_the_weight_and_holds_the_resolution():
    torch.manual_seed(5)
    mixer = GlobalFilter(4, feature_size=(6, 6)).eval()
    x = torch.randn(1, 6, 6, 4)
    expected = mixer(x)
    plan = mixer.freeze(6, 6)
    assert torch.equal(mixer.frozen_kf, mixer.global_filter.weight) and mixer.frozen_kf is not mixer.global_filter.weight
    assert mixer.frozen_kf.dtype == torch.float32 and torch.equal(mixer.frozen_d, torch.zeros(4))
    assert plan == mixer.frozen_plan and not mixer.frozen_kf.requires_grad
    torch.testing.assert_close(mixer(x), expected, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match=r"frozen for a \(6, 6\) feature map"):
        mixer(torch.randn(1, 7, 6, 4))
    mixer.freeze(8, 10)  # another resolution: the resampled spectrum
    assert mixer.frozen_kf.shape == (4, 8, 6, 2)
    unfrozen = GlobalFilter(4, feature_size=(6, 6))
    unfrozen.load_state_dict(mixer.state_dict())
    x2 = torch.randn(1, 8, 10, 4)
    torch.testing.assert_close(mixer(x2), unfrozen(x2), rtol=1e-6, atol=1e-7)


def test_compiles_without_graph_breaks():
    mixer = GlobalFilter(4, feature_size=(5, 7)).eval()
    x = torch.randn(2, 5, 7, 4)
    compiled = torch.compile(mixer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), mixer(x))


# --- the variants ------------------------------------------------------------------------------


def _stage_mixers(model):
    return [stage[0].token_mixer for stage in model.stages]


def test_gf_former_s18_layout_at_224():
    with torch.device("meta"):
        model = create_model("gf_former_s18")
    assert all(isinstance(m, GlobalFilter) for s in model.stages for m in (b.token_mixer for b in s))
    assert [len(s) for s in model.stages] == [3, 3, 9, 3]
    assert [m.global_filter.weight.shape for m in _stage_mixers(model)] == [
        (64, 56, 29, 2), (128, 28, 15, 2), (320, 14, 8, 2), (512, 7, 4, 2)]
    infos = hyena_plans(model, 224)
    assert len(infos) == 18 and {i.mode for i in infos} == {MODE_2D_CIRCULAR}


@pytest.mark.parametrize("res", [224, 40])
def test_gf_former_s4_runs_and_trains(res):
    model = create_model("gf_former_s4", num_classes=10, img_size=res).train()
    x = torch.randn(2, 3, res, res)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    filters = [m.global_filter.weight.grad for m in _stage_mixers(model)]
    assert all(g.abs().sum() > 0 for g in filters)


def test_freeze_filters_on_a_gf_model():
    model = create_model("gf_former_s4", num_classes=5, img_size=32, dims=(16, 32, 48, 64)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    keys = set(model.state_dict())
    infos = freeze_filters(model, 32)
    assert [i.plan.spatial for i in infos] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert set(model.state_dict()) == keys  # the frozen buffers are non-persistent
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    unfreeze_filters(model)
    assert all(m.frozen_kf is None for m in _stage_mixers(model))


@pytest.mark.slow
def test_gf_former_exports_through_the_artifact_builder(tmp_path):
    """ONNX Runtime vs torch parity (photos + random batches, 1e-4 of the logit scale) is
    checked inside build_artifact; here the artifact is also inspected and run directly."""
    import onnx

    from hyena_serve.artifact import ModelSpec, build_artifact
    from hyena_serve.exporting import fftconv_onnx
    from tests.served_parity import ort_relative_error

    spec = ModelSpec.of("gf_former_s4", 32, "random", model_kwargs={"dims": [16, 32, 48, 64], "num_classes": 10})
    artifact = build_artifact(spec, tmp_path, progress=False)
    assert artifact.manifest.model == "gf_former_s4"
    assert set(artifact.manifest.onnx.fftconv_plans.values()) == {"split2d"}
    proto = onnx.load(str(artifact.onnx_path))
    nodes = fftconv_onnx.fftconv_nodes(proto)
    assert [fftconv_onnx.node_plan(n).spatial for n in nodes] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["mode"] == b"2d_circular"
        assert attrs["kernel_size"] == attrs["fft_size"] == attrs["spatial_size"]
    assert ort_relative_error(spec, artifact.onnx_path) <= 1e-4
