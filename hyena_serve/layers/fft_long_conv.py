"""Shared machinery of the Hyena token mixers: one ``hyena::fft_conv`` call per forward,
fed by the filter's spectrum ``Kf`` from one of three sources.

- **training** (``module.training``): the implicit filter runs and is transformed every
  forward, so gradients reach the filter network through ``filter_spectrum``;
- **eval**: ``Kf`` is computed once under ``no_grad`` and reused while its key holds:
  the FFT plan (resolution), the input dtype and device, and for every tensor of the
  filter module its storage, view (offset, shape, strides), dtype, device and version
  counter. The cache entry keeps those storages alive, so a storage it was computed from
  is never freed while the entry exists and no new tensor can take its place at the same
  address: ``.to(bf16).to(fp32)``, a ``.cuda()``/``.cpu()`` round trip or
  ``load_state_dict(..., assign=True)`` always give a new key (a bare address would not:
  freed addresses are reused). In-place optimizer steps and ``load_state_dict`` bump the
  version counter; ``train()`` and ``.to()``/``.cuda()``/``.half()`` on the mixer drop the
  cache. (Writes through ``param.data`` bypass the version counter: call
  :meth:`invalidate_filter_cache`.) The cache is a plain attribute, never a buffer, and
  holds no autograd history. In eval the filter network gets no gradient; the skip ``D``
  still does. Under ``torch.compile`` the cache is not consulted (no graph break, no
  guard on Python state): ``Kf`` comes from the frozen buffers, or the filter network is
  traced into the graph.
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
        self._kf_cache: tuple[tuple, torch.Tensor, tuple] | None = None  # (key, Kf, pinned storages)
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

    def _filter_tensors(self) -> list[torch.Tensor]:
        return [*self.filter_module.parameters(), *self.filter_module.buffers()]

    def _cache_key(self, plan: FFTPlan, x: torch.Tensor) -> tuple | None:
        """The key of a cached ``Kf``; ``None`` when it cannot be told (inference tensors
        have no version counter). The storages in the key are held by the cache entry
        (see :meth:`_cache_pins`), which is what makes their identity a safe key."""
        state = []
        for t in self._filter_tensors():
            if t.is_inference():
                return None
            st = t.untyped_storage()
            state.append((st.data_ptr(), st.nbytes(), t.storage_offset(), tuple(t.shape), t.stride(),
                          t.dtype, t.device, t._version))
        return (plan, x.dtype, x.device, tuple(state))

    def _cache_pins(self) -> tuple:
        """The filter tensors' storages, kept alive by the cache entry so that none of
        them can be freed and its memory reused by a new tensor while the key is held."""
        return tuple(t.untyped_storage() for t in self._filter_tensors())

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
        if torch.compiler.is_compiling():
            # Traced: no Python-side cache (its key would break the graph); the filter
            # network becomes part of the compiled graph.
            with torch.no_grad():
                kf = filter_spectrum(self.filter_module.filter(), plan)
            return kf, self.filter_module.skip()
        key = self._cache_key(plan, x)
        if key is not None and self._kf_cache is not None and self._kf_cache[0] == key:
            kf = self._kf_cache[1]
        else:
            # Outside inference mode so a cache filled under inference_mode stays usable later.
            with torch.inference_mode(False), torch.no_grad():
                kf = filter_spectrum(self.filter_module.filter(), plan)
            self._kf_cache = None if key is None else (key, kf, self._cache_pins())
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

    def _apply(self, fn, recurse: bool = True):
        # .to()/.cuda()/.half()/... replace the tensors (the key would change anyway);
        # dropping the entry also releases the storages it pins.
        self._kf_cache = None
        return super()._apply(fn, recurse)

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
