"""Reference backend: the registry's torch model in eval mode, filters frozen at the
served resolution, run in-process through the micro-batcher."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from hyena_serve.runtime.base import ModelSpec
from hyena_serve.runtime.in_process import InProcessBackend

log = logging.getLogger(__name__)


def build_torch_model(spec: ModelSpec):
    """The eval-mode torch model ``spec`` describes, filters frozen at its resolution.

    Random weights come from ``spec.seed``, so every backend (and the exported ONNX) gets
    the same ones. Without a checkpoint the long filters are sized for the resolution;
    with one they keep the config's filter size (the checkpoint's shapes), as the
    exporter does.
    """
    import torch

    from hyena_serve.models import create_model
    from hyena_serve.models.frozen import freeze_filters

    kwargs = spec.model_kwargs()
    if spec.checkpoint is None:
        kwargs.setdefault("img_size", spec.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = create_model(spec.name, checkpoint_path=spec.checkpoint, **kwargs)
    model.eval()
    freeze_filters(model, spec.resolution)
    return model


class TorchBackend(InProcessBackend):
    kind = "torch"

    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        threads: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(spec, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, threads=threads,
                         on_batch=on_batch)
        self.info = spec.info("torch", "pytorch_torch")
        self._model = None

    def _load(self) -> None:
        import torch

        log.info("torch backend: building %s at %d px (%s)", self.spec.name, self.spec.resolution,
                 f"checkpoint {self.spec.checkpoint}" if self.spec.pretrained else f"random weights, seed {self.spec.seed}")
        if self._threads > 0:
            torch.set_num_threads(self._threads)
        self._model = build_torch_model(self.spec)

    def _unload(self) -> None:
        self._model = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).float().numpy()
