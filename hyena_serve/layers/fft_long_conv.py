"""Shared machinery of the Hyena token mixers: one ``hyena::fft_conv`` call per forward,
fed by the filter's spectrum ``Kf`` from one of three sources.

- **training** (``module.training``): the implicit filter runs and is transformed every
  forward, so gradients reach the filter network through ``filter_spectrum``;
- **eval**: ``Kf`` is computed once under ``no_grad`` and reused while its key holds:
  the FFT plan (resolution), the input dtype and device, and the ``(data_ptr, _version)``
  of every tensor of the filter module. In-place optimizer steps, ``load_state_dict``,
  ``.to()`` all change that key; ``train()`` drops the cache. (Writes through
  ``param.data`` bypass the version counter: call :meth:`invalidate_filter_cache`.)
  The cache is a plain attribute, never a buffer, and holds no autograd history. In eval
  the filter network gets no gradient; the skip ``D`` still does.
- **frozen** (:meth:`freeze` / ``hyena_serve.models.frozen.freeze_filters``): ``Kf`` and
  ``D`` for one resolution live in the non-persistent buffers ``frozen_kf`` /
  ``frozen_d`` and are used in every mode, so ``torch.onnx.export`` sees constant
  initializers and never traces the filter network. Any other resolution raises.
"""

from __future__ import annotations

import torch
from torch import nn

from hyena_serve.contract import FFTPlan, plan_fft
from hyena_serve.ops import fft_conv, filter_spectrum


class FFTLongConvMixer(nn.Module):
    """Base class of the Hyena mixers. Subclasses set ``fft_mode`` and ``filter_module``
    (a module with ``kernel_size``, ``filter()`` → k (C, *kernel) and ``skip()`` → D (C,))."""

    fft_mode: str

    def __init__(self):
        super().__init__()
        self._kf_cache: tuple[tuple, torch.Tensor] | None = None
        self.frozen_plan: FFTPlan | None = None
        self.register_buffer("frozen_kf", None, persistent=False)
        self.register_buffer("frozen_d", None, persistent=False)

    @property
    def filter_module(self) -> nn.Module:
        raise NotImplementedError

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.filter_module.kernel_size

    def fft_plan(self, height: int, width: int) -> FFTPlan:
        """The FFT plan of this mixer's long convolution on an (height, width) feature map."""
        return plan_fft(self.fft_mode, height, width, self.kernel_size)

    def long_filter(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial filter k (C, *kernel) and skip D (C,), differentiable."""
        return self.filter_module.filter(), self.filter_module.skip()

    @property
    def is_frozen(self) -> bool:
        return self.frozen_kf is not None

    # --- the three sources of Kf -----------------------------------------------------

    def _cache_key(self, plan: FFTPlan, x: torch.Tensor) -> tuple | None:
        state = []
        for t in (*self.filter_module.parameters(), *self.filter_module.buffers()):
            if t.is_inference():
                return None  # no version counter: cannot tell when it changes
            state.append((t.data_ptr(), t._version))
        return (plan, x.dtype, x.device, tuple(state))

    def _spectrum(self, plan: FFTPlan, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen_kf is not None:
            if plan != self.frozen_plan:
                raise RuntimeError(
                    f"{type(self).__name__}: filters are frozen for a {self.frozen_plan.spatial} feature map "
                    f"but the input gives {plan.spatial}; run at the frozen resolution or call "
                    f"unfreeze_filters(model) / freeze_filters(model, new_resolution)")
            return self.frozen_kf, self.frozen_d
        if self.training:
            k, d = self.long_filter()
            return filter_spectrum(k, plan), d
        key = self._cache_key(plan, x)
        if key is not None and self._kf_cache is not None and self._kf_cache[0] == key:
            kf = self._kf_cache[1]
        else:
            # Outside inference mode so a cache filled under inference_mode stays usable later.
            with torch.inference_mode(False), torch.no_grad():
                kf = filter_spectrum(self.filter_module.filter(), plan)
            self._kf_cache = None if key is None else (key, kf)
        return kf, self.filter_module.skip()

    def fft_long_conv(self, u: torch.Tensor) -> torch.Tensor:
        """The long convolution of ``u`` (B, C, H, W) through ``hyena::fft_conv``."""
        plan = self.fft_plan(u.shape[-2], u.shape[-1])
        kf, d = self._spectrum(plan, u)
        return fft_conv(u, kf, d, plan.mode, list(plan.kernel), list(plan.fft))

    # --- cache and freeze control ------------------------------------------------------

    def invalidate_filter_cache(self) -> None:
        self._kf_cache = None

    def train(self, mode: bool = True):
        self._kf_cache = None
        return super().train(mode)

    @torch.no_grad()
    def freeze(self, height: int, width: int) -> FFTPlan:
        """Store ``Kf``/``D`` for an (height, width) feature map in ``frozen_kf``/``frozen_d``."""
        plan = self.fft_plan(height, width)
        k, d = self.long_filter()
        self.frozen_kf = filter_spectrum(k, plan).detach().clone()
        self.frozen_d = d.detach().reshape(-1).clone()
        self.frozen_plan = plan
        self._kf_cache = None
        return plan

    def unfreeze(self) -> None:
        self.frozen_kf = None
        self.frozen_d = None
        self.frozen_plan = None
