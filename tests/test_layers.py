"""Layers: the Hyena mixers tied to the reference convolutions, filters, small blocks."""

from __future__ import annotations

import math

import pytest
import torch

from hyena_serve.layers import (
    Attention,
    DropPath,
    HyenaBidirMixer,
    HyenaPixelMixer,
    SepConv,
    SquaredReLU,
    StarReLU,
    centre_distance,
    sincos_pos_emb_2d,
)
from hyena_serve.ops import direct_conv1d_bidir, direct_conv2d


def _hpx(**kw):
    return HyenaPixelMixer(8, feature_size=5, filter_emb_dim=8, **kw).double()


def _hb(**kw):
    return HyenaBidirMixer(8, feature_size=(2, 3), filter_emb_dim=7, filter_order=12, **kw).double()


def _with_direct_conv(mixer, direct):
    """The mixer's forward with its long convolution replaced by the direct reference on
    the mixer's own filter; 1d_bidir sequences are the raster flattening of (H, W)."""
    def long_conv(u):
        k, d = mixer.long_filter()
        if direct is direct_conv2d:
            return direct(u, k, d)
        return direct(u.flatten(-2), k, d).reshape(u.shape)
    mixer.fft_long_conv = long_conv
    return mixer


@pytest.mark.parametrize("use_layernorm", [False, True])
@pytest.mark.parametrize("hw", [(5, 5), (3, 7), (9, 6)])  # build size, smaller, larger than (K+1)/2
@pytest.mark.parametrize("train", [True, False])
def test_hpx_matches_direct_conv2d(use_layernorm, hw, train):
    mixer = _hpx(use_layernorm=use_layernorm).train(train)
    x = torch.randn(2, *hw, 8, dtype=torch.float64)
    y = mixer(x)
    ref = _with_direct_conv(_hpx(use_layernorm=use_layernorm), direct_conv2d)
    ref.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(y, ref(x), rtol=1e-9, atol=1e-9)
    assert mixer.kernel_size == (9, 9)


@pytest.mark.parametrize("use_layernorm", [False, True])
@pytest.mark.parametrize("hw", [(2, 3), (1, 4), (3, 4)])  # L = L0, L < L0, L > L0
@pytest.mark.parametrize("train", [True, False])
def test_hb_matches_direct_conv1d_bidir(use_layernorm, hw, train):
    mixer = _hb(use_layernorm=use_layernorm).train(train)
    x = torch.randn(2, *hw, 8, dtype=torch.float64)
    y = mixer(x)
    ref = _with_direct_conv(_hb(use_layernorm=use_layernorm), direct_conv1d_bidir)
    ref.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(y, ref(x), rtol=1e-9, atol=1e-9)
    assert mixer.kernel_size == (11,)


@pytest.mark.parametrize("make", [_hpx, _hb])
def test_mixer_every_parameter_gets_a_gradient(make):
    mixer = make(use_layernorm=True).train()
    mixer(torch.randn(2, 2, 3, 8, dtype=torch.float64)).square().sum().backward()
    missing = [n for n, p in mixer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_hpx_filter_facts():
    mixer = HyenaPixelMixer(6, feature_size=4, filter_emb_dim=8)
    f = mixer.long_conv
    assert f.z.shape == (1, 8, 7, 7) and f.distance_map.shape == (1, 1, 7, 7)
    assert f.distance_map[0, 0, 3, 3] == 0 and torch.isclose(f.distance_map[0, 0, 0, 0], torch.tensor(3 * 2**0.5))
    expected = torch.linspace(math.log(0.01) / 1.5, math.log(0.01) / 0.3, 6) / 7
    torch.testing.assert_close(f.deltas.flatten(), expected)
    assert (f.shift == 0).all() and f.bias.shape == (1, 6, 1, 1)
    assert [m.freq.shape for m in f.implicit_filter if hasattr(m, "freq")] == [(1, 16, 1, 1)] * 2
    assert f.implicit_filter[4].bias is None
    assert "distance_map" not in dict(f.named_parameters())
    assert mixer.long_filter()[0].shape == (6, 7, 7)


def test_sincos_pos_emb_2d_by_definition():
    dim, h, w = 8, 3, 5
    pe = sincos_pos_emb_2d(dim, h, w)
    half = dim // 2
    for c in range(dim):
        pos = torch.arange(w).expand(h, w) if c < half else torch.arange(h)[:, None].expand(h, w)
        i = (c % half) // 2
        f = 10000 ** (-2 * i / half)
        fn = torch.sin if c % 2 == 0 else torch.cos
        torch.testing.assert_close(pe[c], fn(pos * f).float(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_emb_2d(6, 3, 3)


def test_centre_distance_is_symmetric():
    d = centre_distance(5, 3)
    assert d[2, 1] == 0 and torch.equal(d, d.flip(0)) and torch.equal(d, d.flip(1))


def test_hb_filter_facts():
    mixer = HyenaBidirMixer(4, feature_size=(2, 2), filter_emb_dim=5, filter_order=6)
    f = mixer.filter_fn
    z, t = f.pos_emb.z, f.pos_emb.t
    assert z.shape == (1, 7, 5) and t.shape == (1, 7, 1)
    tri = z[0, :, 0]
    torch.testing.assert_close(tri, torch.tensor([0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0]))
    torch.testing.assert_close(t[0, :, 0], 1 - tri)
    w = 2 * math.pi * torch.arange(7.0) / 7
    torch.testing.assert_close(z[0, :, 1], torch.cos(1e-4 * w))
    torch.testing.assert_close(z[0, :, 4], -torch.sin(1.0 * w))
    torch.testing.assert_close(f.modulation.deltas.flatten(), torch.linspace(-3.0701, -15.3506, 4), atol=1e-4, rtol=0)
    assert "modulation.deltas" not in dict(f.named_parameters())
    assert mixer.long_filter()[0].shape == (4, 7)


def test_activations():
    x = torch.tensor([-2.0, 0.5, 3.0])
    torch.testing.assert_close(SquaredReLU()(x), torch.tensor([0.0, 0.25, 9.0]))
    act = StarReLU(2.0, -1.0)
    torch.testing.assert_close(act(x), torch.tensor([-1.0, -0.5, 17.0]))


def test_sepconv_and_attention():
    x = torch.randn(2, 3, 5, 32)
    sep = SepConv(32)
    assert sep(x).shape == x.shape and sep.dwconv.weight.shape == (64, 1, 7, 7) and sep.dwconv.bias is None
    attn = Attention(64)
    x = torch.randn(2, 3, 5, 64)
    qkv = attn.qkv(x).reshape(2, 15, 3, 2, 32).permute(2, 0, 3, 1, 4)
    q, k, v = qkv
    ref = ((q @ k.transpose(-2, -1)) * 32**-0.5).softmax(-1) @ v
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 3, 5, 64))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)
    assert attn.qkv.bias is None and attn.proj.bias is None and attn.num_heads == 2


def test_drop_path():
    x = torch.randn(64, 3)
    dp = DropPath(0.5)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    kept = (y != 0).all(1)
    torch.testing.assert_close(y[kept], 2 * x[kept])
