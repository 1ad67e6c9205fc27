"""Local self-attention (SASA) mixer: the vectorised forward against the loop-over-pixels
reference (float64, odd sizes, borders, a window larger than the map), gradients, and the
sasa_former export through the artifact builder with ONNX Runtime matching torch."""

from __future__ import annotations

import pytest
import torch

from hyena_serve.layers import LocalSelfAttention, local_attention_reference


@pytest.mark.parametrize("h,w,k,dim,head_dim", [
    (5, 7, 3, 8, 4),    # odd, non-square map, two heads
    (3, 3, 7, 8, 8),    # window larger than the map: every pixel sees all others
    (6, 4, 5, 12, 4),   # three heads, even map
    (1, 1, 3, 4, 4),    # a single pixel attends to itself
])
def test_matches_the_loop_reference(h, w, k, dim, head_dim):
    torch.manual_seed(0)
    mixer = LocalSelfAttention(dim, kernel_size=k, head_dim=head_dim, qkv_bias=True).double()
    with torch.no_grad():  # non-trivial relative embeddings, so a wrong offset shows
        mixer.rel_rows.normal_()
        mixer.rel_cols.normal_()
    x = torch.randn(2, h, w, dim, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), local_attention_reference(mixer, x), rtol=1e-10, atol=1e-10)


def test_border_pixels_ignore_positions_outside_the_map():
    """Masking, not zero padding: a corner pixel's output does not change when the map is
    embedded in a larger one whose extra pixels are far from it (outside its window)."""
    torch.manual_seed(1)
    mixer = LocalSelfAttention(8, kernel_size=3, head_dim=4).double()
    x = torch.randn(1, 6, 6, 8, dtype=torch.float64)
    corner = mixer(x)[0, 0, 0]
    torch.testing.assert_close(corner, mixer(x[:, :3, :3])[0, 0, 0], rtol=1e-12, atol=1e-12)


def test_every_parameter_gets_a_gradient_and_bad_sizes_are_refused():
    mixer = LocalSelfAttention(16, kernel_size=3, head_dim=8)
    mixer(torch.randn(2, 4, 5, 16)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixer.parameters())
    with pytest.raises(ValueError, match="odd"):
        LocalSelfAttention(16, kernel_size=4)
    with pytest.raises(ValueError, match="even size"):
        LocalSelfAttention(6, head_dim=3)  # two heads of 3: no even row/column split


@pytest.mark.slow
def test_sasa_former_exports_and_serves_through_the_artifact_builder(tmp_path):
    """ONNX Runtime vs torch parity (photos + random batches, 1e-4 of the logit scale) is
    checked inside build_artifact; here the artifact is also run directly."""
    from hyena_serve.artifact import ModelSpec, build_artifact
    from tests.served_parity import ort_relative_error

    spec = ModelSpec.of("sasa_former_s4", 32, "random", model_kwargs={"dims": [16, 32, 48, 64], "num_classes": 10})
    artifact = build_artifact(spec, tmp_path, progress=False)
    assert artifact.manifest.model == "sasa_former_s4" and artifact.manifest.onnx.fftconv_plans == {}
    assert ort_relative_error(spec, artifact.onnx_path) <= 1e-4
