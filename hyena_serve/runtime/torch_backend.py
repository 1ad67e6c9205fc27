"""Reference backend: the served torch model (:func:`hyena_serve.artifact.build_served_model`:
weights loaded, eval mode, filters frozen at the served resolution), run in-process
through the micro-batcher, on the CPU or a CUDA device.

``precision`` ``bf16`` (or ``fp16``) runs the model cast to that dtype with ``Kf``/``D``
and the FFT in float32 (:func:`hyena_serve.artifact.cast_keep_filters`); the batch is
cast on the way in and the logits back to float32. bf16 on a CPU needs bf16
instructions (:func:`hyena_serve.precision.check_torch` refuses it otherwise, at
construction). Its accuracy against fp32: docs/performance.md.

``compile=True`` runs the model through ``torch.compile`` (inductor). The compile happens
in :meth:`_load`, before the backend reports ready: one call at batch 1 and one at batch 2
(the second batch size makes dynamo recompile once with a dynamic batch dimension, which
then serves every batch size the micro-batcher forms; batch 1 keeps its own graph). The
filters are frozen, so the graph holds them as constants and the Kf cache never runs.
``compile_seconds`` records how long that took. Eager mode also pays a one-off delay
on the first call (``torch.library.custom_op`` imports ``torch._dynamo`` when the
FFT-conv op first runs, ~1-2 s on a 2-core host); the warm-up batch every in-process
backend runs before it reports ready absorbs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from hyena_serve.artifact import TORCH_DTYPES, ModelSpec
from hyena_serve.precision import check_torch
from hyena_serve.runtime.base import ModelInfo
from hyena_serve.runtime.in_process import InProcessBackend

log = logging.getLogger(__name__)


class TorchBackend(InProcessBackend):
    kind = "torch"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        threads: int = 0,
        device: str = "cpu",
        on_batch: Callable[[int], None] | None = None,
        compile: bool = False,
        precision: str = "fp32",
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, threads=threads,
                         on_batch=on_batch)
        self.precision = check_torch(precision, device)  # int8, or bf16 on a CPU without it: a clear error now
        self.spec = spec
        self.device = device
        self.compile = compile
        self.compile_seconds: float | None = None
        self._model = None

    def _load(self) -> None:
        import torch

        from hyena_serve.artifact import build_served_model

        if self._threads > 0:
            torch.set_num_threads(self._threads)
        model, manifest = build_served_model(self.spec, precision=self.precision)
        log.info("torch backend: %s at %d px (%s) on %s in %s", manifest.model, manifest.resolution,
                 manifest.weights.describe(), self.device, self.precision)
        self._dtype = getattr(torch, TORCH_DTYPES[self.precision])
        model = model.to(self.device)
        if self.compile:
            model = self._compiled(model, tuple(manifest.preprocess.input_size))
        self._model = model
        self.info = ModelInfo(manifest, "torch", "pytorch_torch", extra={"precision": self.precision})

    def _compiled(self, model, input_size: tuple[int, int, int]):
        import time

        import torch

        compiled = torch.compile(model)
        started = time.perf_counter()
        with torch.inference_mode():
            for batch in (1, 2):
                compiled(torch.zeros(batch, *input_size, device=self.device, dtype=self._dtype))
        self.compile_seconds = time.perf_counter() - started
        log.info("torch backend: torch.compile done in %.1f s", self.compile_seconds)
        return compiled

    def _unload(self) -> None:
        self._model = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch).to(self.device, self._dtype)).float().cpu().numpy()
