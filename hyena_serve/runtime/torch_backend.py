"""Reference backend: the served torch model (:func:`hyena_serve.artifact.build_served_model`:
weights loaded, eval mode, filters frozen at the served resolution), run in-process
through the micro-batcher, on the CPU or a CUDA device."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from hyena_serve.artifact import ModelSpec
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
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, threads=threads,
                         on_batch=on_batch)
        self.spec = spec
        self.device = device
        self._model = None

    def _load(self) -> None:
        import torch

        from hyena_serve.artifact import build_served_model

        if self._threads > 0:
            torch.set_num_threads(self._threads)
        model, manifest = build_served_model(self.spec)
        log.info("torch backend: %s at %d px (%s) on %s", manifest.model, manifest.resolution,
                 manifest.weights.describe(), self.device)
        self._model = model.to(self.device)
        self.info = ModelInfo(manifest, "torch", "pytorch_torch")

    def _unload(self) -> None:
        self._model = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
