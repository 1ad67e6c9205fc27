"""HyenaPixel-family MetaFormers: Hpx / Hb / SepConv / attention token mixers in the
MetaFormer backbone.

Spravil et al., "HyenaPixel: Global Image Context with Convolutions" (arXiv 2402.19305);
Yu et al., "MetaFormer Baselines for Vision" (arXiv 2210.13452). The comparison mixers
of the HyenaPixel paper: local self-attention (SASA, Ramachandran et al. 2019,
``hyena_serve.layers.local_attention``) in ``sasa_former_*``; global filters (GFNet, Rao et
al. 2021, ``hyena_serve.layers.global_filter``) in ``gf_former_*``; adaptive frequency filters
(AFF, Huang et al. 2023, ``hyena_serve.layers.adaptive_filter``) in ``aff_former_*``.

The module tree follows the published checkpoints (sail-sg MetaFormer layout), so their
state dicts load with ``strict=True``: ``downsample_layers.i.{pre_norm,conv,post_norm}``,
``stages.i.j.{norm1,token_mixer,res_scale1,norm2,mlp,res_scale2}``, ``norm``,
``head.{fc1,norm,fc2}``.

Unlike the reference, the long filters' sizes are not hard-coded: every mixer is built for
the feature-map size its stage has at ``img_size`` (K = 2H-1 for Hpx, 2L-1 for Hb), which
at 224 gives exactly the published filters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import torch
from torch import nn

from hyena_serve.contract import to_pair
from hyena_serve.layers import (
    AdaptiveFrequencyFilter,
    Attention,
    DropPath,
    FFTLongConvMixer,
    GlobalFilter,
    HyenaBidirMixer,
    HyenaPixelMixer,
    LayerNormWithoutBias,
    LocalSelfAttention,
    Mlp,
    MlpHead,
    Scale,
    SepConv,
)
from hyena_serve.variants import DEFAULT_CFGS
from hyena_serve.models.registry import register_model

_NUM_STAGES = 4
_STEM = dict(kernel_size=7, stride=4, padding=2)
_DOWN = dict(kernel_size=3, stride=2, padding=1)


def _per_stage(value, n: int = _NUM_STAGES) -> list:
    """One value for all stages or one per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected one value or {n} per-stage values, got {value!r}")
        return list(value)
    return [value] * n


def _conv_out(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def stage_feature_sizes(img_size: int | Sequence[int], num_stages: int = _NUM_STAGES) -> list[tuple[int, int]]:
    """Feature-map (H, W) of every stage for an input of ``img_size``: 224 → 56, 28, 14, 7."""
    h, w = to_pair(img_size)
    sizes = []
    for i in range(num_stages):
        geo = _STEM if i == 0 else _DOWN
        h, w = _conv_out(h, **geo), _conv_out(w, **geo)
        sizes.append((h, w))
    return sizes


class Downsampling(nn.Module):
    """[norm] → conv → [norm]. The stem takes (B, C, H, W) images, the later ones (B, H, W, C);
    all return (B, H, W, C)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int,
                 pre_norm: Callable | None = None, post_norm: Callable | None = None):
        super().__init__()
        self.channels_last_input = pre_norm is not None
        self.pre_norm = pre_norm(in_chs) if pre_norm else nn.Identity()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        self.post_norm = post_norm(out_chs) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        if self.channels_last_input:
            x = x.permute(0, 3, 1, 2)
        return self.post_norm(self.conv(x).permute(0, 2, 3, 1))


class MetaFormerBlock(nn.Module):
    """``x = rs1(x) + drop(ls1(mixer(norm1(x))))``; ``x = rs2(x) + drop(ls2(mlp(norm2(x))))``."""

    def __init__(self, dim: int, token_mixer: Callable[..., nn.Module] = nn.Identity, mlp=Mlp,
                 norm_layer=partial(LayerNormWithoutBias, eps=1e-6), drop_path: float = 0.0,
                 layer_scale_init_value: float | None = None, res_scale_init_value: float | None = None,
                 feature_size: tuple[int, int] = (56, 56)):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.token_mixer = token_mixer(dim=dim, feature_size=feature_size)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale1 = Scale(dim, layer_scale_init_value) if layer_scale_init_value else nn.Identity()
        self.res_scale1 = Scale(dim, res_scale_init_value) if res_scale_init_value else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = mlp(dim=dim)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale2 = Scale(dim, layer_scale_init_value) if layer_scale_init_value else nn.Identity()
        self.res_scale2 = Scale(dim, res_scale_init_value) if res_scale_init_value else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path1(self.layer_scale1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.drop_path2(self.layer_scale2(self.mlp(self.norm2(x))))


class MetaFormer(nn.Module):
    """Four-stage MetaFormer; images (B, in_chans, H, W) → logits (B, num_classes).

    ``token_mixers``, ``mlps``, ``norm_layers``, ``layer_scale_init_values`` and
    ``res_scale_init_values`` take one value or one per stage. Token mixers are built as
    ``mixer(dim=..., feature_size=(h, w))`` with the stage's feature size at ``img_size``.
    """

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, depths: Sequence[int] = (2, 2, 6, 2),
                 dims: Sequence[int] = (64, 128, 320, 512), token_mixers=nn.Identity, mlps=Mlp,
                 norm_layers=partial(LayerNormWithoutBias, eps=1e-6), drop_path_rate: float = 0.0,
                 head_dropout: float = 0.0, layer_scale_init_values=None,
                 res_scale_init_values=(None, None, 1.0, 1.0), output_norm=partial(nn.LayerNorm, eps=1e-6),
                 head_fn=MlpHead, img_size: int | Sequence[int] = 224):
        super().__init__()
        depths, dims = _per_stage(depths), _per_stage(dims)
        token_mixers, mlps, norm_layers = _per_stage(token_mixers), _per_stage(mlps), _per_stage(norm_layers)
        layer_scales, res_scales = _per_stage(layer_scale_init_values), _per_stage(res_scale_init_values)
        self.num_classes = num_classes
        self.dims = dims
        self.num_features = dims[-1]
        self.img_size = to_pair(img_size)
        feature_sizes = stage_feature_sizes(self.img_size)

        down_norm = partial(LayerNormWithoutBias, eps=1e-6)
        self.downsample_layers = nn.ModuleList(
            [Downsampling(in_chans, dims[0], **_STEM, post_norm=down_norm)]
            + [Downsampling(dims[i - 1], dims[i], **_DOWN, pre_norm=down_norm) for i in range(1, _NUM_STAGES)]
        )
        total = sum(depths)
        dp_rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(_NUM_STAGES):
            self.stages.append(nn.Sequential(*[
                MetaFormerBlock(dims[i], token_mixers[i], mlps[i], norm_layers[i], dp_rates[cur + j],
                                layer_scales[i], res_scales[i], feature_sizes[i])
                for j in range(depths[i])
            ]))
            cur += depths[i]
        self.norm = output_norm(dims[-1])
        self.head = head_fn(dims[-1], num_classes, head_dropout=head_dropout)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def config(self):
        return self.pretrained_cfg

    def feature_sizes(self, img_size: int | Sequence[int]) -> list[tuple[int, int]]:
        """Per-stage feature-map (H, W) for an input of ``img_size``."""
        return stage_feature_sizes(img_size)

    def hyena_mixers(self) -> list[tuple[str, int, FFTLongConvMixer]]:
        """(qualified name, stage index, mixer) of every FFT-conv mixer (Hpx, Hb, global
        filter), in forward order."""
        return [(f"stages.{i}.{name}", i, m) for i, stage in enumerate(self.stages)
                for name, m in stage.named_modules() if isinstance(m, FFTLongConvMixer)]

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"norm"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean((1, 2)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_metaformer(variant: str, img_size: int | Sequence[int] | None = None, **kwargs) -> MetaFormer:
    cfg = DEFAULT_CFGS[variant]
    filter_size = to_pair(img_size) if img_size is not None else cfg.filter_size
    model = MetaFormer(img_size=filter_size, **kwargs)
    input_size = (kwargs.get("in_chans", 3), *(filter_size if img_size is not None else cfg.img_size))
    changes = dict(preprocess=replace(cfg.preprocess, input_size=input_size), filter_size=filter_size,
                   num_classes=model.num_classes)
    if model.num_classes != cfg.num_classes:
        changes.update(dataset="", hf_hub_id="")
    model.pretrained_cfg = replace(cfg, **changes)
    return model


# --- variants -------------------------------------------------------------------------

S4 = dict(depths=(1, 1, 1, 1), dims=(64, 128, 320, 512))
S12 = dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512))
S18 = dict(depths=(3, 3, 9, 3), dims=(64, 128, 320, 512))
B36 = dict(depths=(3, 12, 18, 3), dims=(128, 256, 512, 768))

# Filter embedding E per stage (O = 2E for Hpx; O given for Hb).
_HPX_EMB = (32, 32, 48, 64)
_HB_EMB, _HB_ORDER = (33, 33, 49, 65), (64, 64, 96, 128)


def _hpx(**kwargs) -> list:
    return [partial(HyenaPixelMixer, filter_emb_dim=e, **kwargs) for e in _HPX_EMB]


def _hb(**kwargs) -> list:
    return [partial(HyenaBidirMixer, filter_emb_dim=e, filter_order=o, **kwargs) for e, o in zip(_HB_EMB, _HB_ORDER)]


def _build(variant: str, size: dict, token_mixers: list, kwargs: dict) -> MetaFormer:
    return _create_metaformer(variant, **{**size, "token_mixers": token_mixers, **kwargs})


@register_model
def hpx_former_s18(**kwargs) -> MetaFormer:
    return _build("hpx_former_s18", S18, _hpx(use_layernorm=True), kwargs)


@register_model
def hpx_former_s18_384(**kwargs) -> MetaFormer:
    """The 224 filters fine-tuned at 384 (as released); for filters resampled to the 384
    feature maps build ``hpx_former_s18`` with ``img_size=384`` and see
    ``hyena_serve.models.checkpoint.resample_filters``."""
    return _build("hpx_former_s18_384", S18, _hpx(use_layernorm=True), kwargs)


@register_model
def hpx_former_b36(**kwargs) -> MetaFormer:
    return _build("hpx_former_b36", B36, _hpx(use_layernorm=True), kwargs)


@register_model
def hpx_a_former_s18(**kwargs) -> MetaFormer:
    return _build("hpx_a_former_s18", S18, _hpx()[:2] + [Attention, Attention], kwargs)


@register_model
def c_hpx_former_s18(**kwargs) -> MetaFormer:
    return _build("c_hpx_former_s18", S18, [SepConv, SepConv] + _hpx()[2:], kwargs)


@register_model
def hb_former_s18(**kwargs) -> MetaFormer:
    return _build("hb_former_s18", S18, _hb(), kwargs)


@register_model
def hb_former_b36(**kwargs) -> MetaFormer:
    return _build("hb_former_b36", B36, _hb(use_layernorm=True), kwargs)


@register_model
def hb_a_former_s18(**kwargs) -> MetaFormer:
    return _build("hb_a_former_s18", S18, _hb()[:2] + [Attention, Attention], kwargs)


@register_model
def sasa_former_s18(**kwargs) -> MetaFormer:
    """hpx_former_s18's layout with 7×7 local self-attention where Hpx sits (no released weights)."""
    return _build("sasa_former_s18", S18, LocalSelfAttention, kwargs)


@register_model
def aff_former_s18(**kwargs) -> MetaFormer:
    """hpx_former_s18's layout with the AFF adaptive frequency filter where Hpx sits (no released weights)."""
    return _build("aff_former_s18", S18, AdaptiveFrequencyFilter, kwargs)


@register_model
def gf_former_s18(**kwargs) -> MetaFormer:
    """hpx_former_s18's layout with the GFNet global filter where Hpx sits (no released weights)."""
    return _build("gf_former_s18", S18, GlobalFilter, kwargs)


@register_model
def convformer_s18(**kwargs) -> MetaFormer:
    return _build("convformer_s18", S18, SepConv, kwargs)


# Small sizes for tests, examples and quick experiments (no released weights).

@register_model
def hpx_former_s4(**kwargs) -> MetaFormer:
    return _build("hpx_former_s4", S4, _hpx(use_layernorm=True), kwargs)


@register_model
def hpx_former_s12(**kwargs) -> MetaFormer:
    return _build("hpx_former_s12", S12, _hpx(use_layernorm=True), kwargs)


@register_model
def hb_former_s4(**kwargs) -> MetaFormer:
    return _build("hb_former_s4", S4, _hb(), kwargs)


@register_model
def hb_former_s12(**kwargs) -> MetaFormer:
    return _build("hb_former_s12", S12, _hb(), kwargs)


@register_model
def hpx_a_former_s4(**kwargs) -> MetaFormer:
    return _build("hpx_a_former_s4", S4, _hpx()[:2] + [Attention, Attention], kwargs)


@register_model
def c_hpx_former_s4(**kwargs) -> MetaFormer:
    return _build("c_hpx_former_s4", S4, [SepConv, SepConv] + _hpx()[2:], kwargs)


@register_model
def hb_a_former_s4(**kwargs) -> MetaFormer:
    return _build("hb_a_former_s4", S4, _hb()[:2] + [Attention, Attention], kwargs)


@register_model
def sasa_former_s4(**kwargs) -> MetaFormer:
    return _build("sasa_former_s4", S4, LocalSelfAttention, kwargs)


@register_model
def aff_former_s4(**kwargs) -> MetaFormer:
    return _build("aff_former_s4", S4, AdaptiveFrequencyFilter, kwargs)


@register_model
def gf_former_s4(**kwargs) -> MetaFormer:
    return _build("gf_former_s4", S4, GlobalFilter, kwargs)


@register_model
def convformer_s4(**kwargs) -> MetaFormer:
    return _build("convformer_s4", S4, SepConv, kwargs)
