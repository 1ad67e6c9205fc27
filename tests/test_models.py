"""Model family: every registered variant builds, runs, trains; registry and configs;
per-stage filter facts and parameter counts of the released sizes (docs/design.md §3)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyena_serve.layers import Attention, HyenaBidirMixer, HyenaPixelMixer, SepConv
from hyena_serve.models import ModelConfig, create_model, get_model_config, list_models, stage_feature_sizes

ALL = list_models()
RELEASED = ["hpx_former_s18", "hpx_former_s18_384", "hpx_former_b36", "hpx_a_former_s18", "c_hpx_former_s18",
            "hb_former_s18", "hb_former_b36", "hb_a_former_s18"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small(name: str, **kw):
    """The variant with one narrow block per stage (mixer layout unchanged)."""
    return create_model(name, depths=(1, 1, 1, 1), dims=(32, 64, 64, 96), num_classes=7, **kw)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_model(name):
    model = _small(name, img_size=64).train()
    x = torch.randn(2, 3, 64, 64)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, no_grad
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 48, 80))  # another, non-square resolution
    assert y.shape == (1, 7) and torch.isfinite(y).all()


def test_released_names_registered():
    assert set(RELEASED + ["convformer_s18", "hpx_former_s4", "hb_former_s4", "hpx_former_s12"]) <= set(ALL)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="unknown model 'nope'.*hpx_former_s18"):
        create_model("nope")
    with pytest.raises(ValueError, match="available"):
        get_model_config("nope")


def test_tiny_digits_model():
    model = create_model("hpx_former_s4", num_classes=10, img_size=32, dims=(32, 64, 96, 128)).eval()
    with torch.no_grad():
        y = model(torch.randn(4, 3, 32, 32))
    assert y.shape == (4, 10)
    cfg = model.pretrained_cfg
    assert model.config is cfg
    assert cfg.preprocess.input_size == (3, 32, 32) and cfg.num_classes == 10 and cfg.filter_size == (32, 32)
    assert cfg.hf_hub_id == ""  # another head: the released weights do not apply
    kernels = [m.kernel_size for _, _, m in model.hyena_mixers()]
    assert kernels == [(15, 15), (7, 7), (3, 3), (1, 1)]


def test_model_config():
    cfg = get_model_config("hpx_former_s18")
    assert isinstance(cfg, ModelConfig)
    p = cfg.preprocess
    assert (p.input_size, p.crop_pct, p.interpolation, cfg.num_classes) == ((3, 224, 224), 1.0, "bicubic", 1000)
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225) and p.channels == "rgb"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_classes = 3
    cfg384 = get_model_config("hpx_former_s18_384")
    assert cfg384.preprocess.input_size == (3, 384, 384) and cfg384.filter_size == (224, 224)
    assert all(get_model_config(n).hf_hub_id.startswith("Spravil/") for n in RELEASED)
    assert get_model_config("hpx_former_s18").hf_hub_id == "Spravil/hpx_former_s18.westai_in1k"


def test_stage_feature_sizes():
    assert stage_feature_sizes(224) == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert stage_feature_sizes(384) == [(96, 96), (48, 48), (24, 24), (12, 12)]
    assert stage_feature_sizes((32, 64)) == [(8, 16), (4, 8), (2, 4), (1, 2)]


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def _stage_mixers(model):
    return [stage[0].token_mixer for stage in model.stages]


def test_hpx_s18_stage_facts():
    mixers = _stage_mixers(_meta("hpx_former_s18"))
    assert [m.long_conv.z.shape for m in mixers] == [(1, 32, 111, 111), (1, 32, 55, 55), (1, 48, 27, 27),
                                                    (1, 64, 13, 13)]
    assert [m.long_conv.implicit_filter[0].out_channels for m in mixers] == [64, 64, 96, 128]
    assert all(m.use_layernorm and isinstance(m.out_proj, torch.nn.Linear) for m in mixers)
    # hpx_former_s18_384 keeps the 224 filters; img_size=384 gives the enlarged ones.
    assert [m.kernel_size[0] for m in _stage_mixers(_meta("hpx_former_s18_384"))] == [111, 55, 27, 13]
    assert [m.kernel_size[0] for m in _stage_mixers(_meta("hpx_former_s18", img_size=384))] == [191, 95, 47, 23]


def test_hb_s18_stage_facts():
    mixers = _stage_mixers(_meta("hb_former_s18"))
    assert [m.kernel_size for m in mixers] == [(6271,), (1567,), (391,), (97,)]
    assert [m.filter_fn.pos_emb.z.shape[-1] for m in mixers] == [33, 33, 49, 65]
    assert [m.filter_fn.implicit_filter[0].out_features for m in mixers] == [64, 64, 96, 128]
    assert not any(m.use_layernorm for m in mixers)
    assert all(m.use_layernorm for m in _stage_mixers(_meta("hb_former_b36")))


@pytest.mark.parametrize("name, kinds", [
    ("hpx_a_former_s18", [HyenaPixelMixer, HyenaPixelMixer, Attention, Attention]),
    ("c_hpx_former_s18", [SepConv, SepConv, HyenaPixelMixer, HyenaPixelMixer]),
    ("hb_a_former_s18", [HyenaBidirMixer, HyenaBidirMixer, Attention, Attention]),
    ("convformer_s18", [SepConv] * 4),
])
def test_mixer_layouts(name, kinds):
    model = _meta(name)
    assert [type(m) for m in _stage_mixers(model)] == kinds
    assert not any(m.use_layernorm for m in _stage_mixers(model) if isinstance(m, HyenaPixelMixer))
    assert [len(s) for s in model.stages] == [3, 3, 9, 3]


# docs/design.md §3 / the paper: parameters in millions (1% tolerance).
PARAMS = {"hpx_former_s18": 29.3, "hpx_a_former_s18": 27.9, "c_hpx_former_s18": 27.8, "hb_former_s18": 28.3,
          "hb_a_former_s18": 27.2, "convformer_s18": 26.8}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    count = sum(p.numel() for p in _meta(name).parameters()) / 1e6
    assert count == pytest.approx(PARAMS[name], rel=0.01)


def test_block_structure_and_init():
    model = create_model("hpx_former_s4", dims=(32, 64, 96, 128), img_size=32)
    blocks = [s[0] for s in model.stages]
    assert [hasattr(b.res_scale1, "scale") for b in blocks] == [False, False, True, True]
    assert all(isinstance(b.layer_scale1, torch.nn.Identity) for b in blocks)
    assert blocks[0].norm1.eps == 1e-6 and blocks[0].norm1.__dict__.get("bias") is None
    assert model.downsample_layers[0].conv.kernel_size == (7, 7) and model.downsample_layers[0].conv.stride == (4, 4)
    assert model.downsample_layers[1].conv.kernel_size == (3, 3)
    assert model.head.fc1.out_features == 4 * 128 and model.norm.eps == 1e-6
    w = model.head.fc1.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.1) and w.abs().max() <= 2.0
    assert (model.head.fc1.bias == 0).all() and (model.downsample_layers[0].conv.bias == 0).all()


def test_drop_path_rate():
    model = create_model("hpx_former_s4", dims=(32, 64, 96, 128), img_size=32, drop_path_rate=0.3)
    rates = [s[0].drop_path1.drop_prob if hasattr(s[0].drop_path1, "drop_prob") else 0.0 for s in model.stages]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18"])
def test_released_size_at_224(name):
    from hyena_serve.models.frozen import freeze_filters

    model = create_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
        freeze_filters(model, 224)
        torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-5)
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
