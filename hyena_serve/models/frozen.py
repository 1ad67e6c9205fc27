"""Frozen filters for export, and the list of a model's Hyena mixers with their FFT plans.

The eval-time cache itself lives with the mixers (``hyena_serve.layers.fft_long_conv``,
re-exported here as :class:`FFTLongConvMixer`); this module works on whole models.

``freeze_filters(model, resolution)`` computes ``Kf`` (C, *spectrum, 2) float32 and ``D``
(C,) of every Hyena mixer for an input of ``resolution`` and stores them in the
non-persistent buffers ``mixer.frozen_kf`` / ``mixer.frozen_d`` (plan in
``mixer.frozen_plan``). Frozen mixers use them in every mode and raise at any other
resolution; ``torch.onnx.export`` sees them as constant initializers and the implicit
filter networks never enter the graph. ``state_dict()`` is unchanged.

"Hyena mixer" here means every :class:`FFTLongConvMixer`, i.e. every mixer that makes one
``hyena::fft_conv`` call: Hpx and Hb, and the GFNet global filter (circular mode), whose
``Kf`` is its weight (freezing copies it, resampled if the resolution differs from the one
it was built for).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from hyena_serve.contract import FFTPlan, to_pair
from hyena_serve.layers.fft_long_conv import FFTLongConvMixer

__all__ = [
    "FFTLongConvMixer",
    "HyenaMixerInfo",
    "freeze_filters",
    "frozen_resolution",
    "hyena_mixers",
    "hyena_plans",
    "unfreeze_filters",
]


@dataclass(frozen=True)
class HyenaMixerInfo:
    """One Hyena mixer of a model: qualified module name, stage, channels and FFT plan."""

    name: str
    stage: int
    channels: int
    plan: FFTPlan

    @property
    def mode(self) -> str:
        return self.plan.mode


def hyena_mixers(model: nn.Module) -> list[tuple[str, FFTLongConvMixer]]:
    """(qualified name, mixer) of every Hyena (Hpx/Hb) or global-filter mixer, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, FFTLongConvMixer)]


def hyena_plans(model: nn.Module, resolution: int | Sequence[int]) -> list[HyenaMixerInfo]:
    """The FFT plan of every Hyena mixer for an input image of ``resolution`` (H, W).

    One entry per ``hyena::fft_conv`` call of a forward, so an exported graph holds
    ``len(hyena_plans(model, res))`` FFTConv nodes.
    """
    if not hasattr(model, "hyena_mixers") or not hasattr(model, "feature_sizes"):
        raise TypeError(f"{type(model).__name__} does not describe its stages "
                        "(needs hyena_mixers() and feature_sizes(), as MetaFormer has)")
    sizes = model.feature_sizes(to_pair(resolution))
    return [HyenaMixerInfo(name, stage, mixer.dim, mixer.fft_plan(*sizes[stage]))
            for name, stage, mixer in model.hyena_mixers()]


def freeze_filters(model: nn.Module, resolution: int | Sequence[int]) -> list[HyenaMixerInfo]:
    """Precompute and store ``Kf``/``D`` of every Hyena mixer for inputs of ``resolution``.

    Returns the mixers' infos. Freezing again at another resolution replaces the buffers.
    The frozen values are a snapshot: later parameter updates do not reach them.
    """
    infos = hyena_plans(model, resolution)
    sizes = model.feature_sizes(to_pair(resolution))
    for _, stage, mixer in model.hyena_mixers():
        mixer.freeze(*sizes[stage])
    return infos


def unfreeze_filters(model: nn.Module) -> None:
    """Drop the frozen buffers; mixers go back to computing (and caching) their filters."""
    for _, mixer in hyena_mixers(model):
        mixer.unfreeze()


def frozen_resolution(model: nn.Module) -> list[FFTPlan | None]:
    """The frozen plan of every Hyena mixer (None where not frozen)."""
    return [mixer.frozen_plan for _, mixer in hyena_mixers(model)]
