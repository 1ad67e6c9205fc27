"""Reference backend: the registry's torch model in eval mode, filters frozen at the
served resolution, run in-process through the micro-batcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from hyena_serve.runtime.base import Backend, BackendUnavailable, ModelSpec, check_batch
from hyena_serve.runtime.batching import MicroBatcher

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


class TorchBackend(Backend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        threads: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.info = spec.info("torch", "pytorch_torch")
        self._threads = threads
        self._model = None
        self._ready = False
        self._batcher = MicroBatcher(
            self._run, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, on_batch=on_batch, name="torch-infer"
        )

    async def start(self) -> None:
        log.info("torch backend: building %s at %d px (%s)", self.spec.name, self.spec.resolution,
                 f"checkpoint {self.spec.checkpoint}" if self.spec.pretrained else f"random weights, seed {self.spec.seed}")
        self._model = await asyncio.to_thread(self._load)
        self._batcher.start()
        await self._batcher.submit(np.zeros((1, 3, self.spec.resolution, self.spec.resolution), np.float32))
        self._ready = True
        log.info("torch backend ready")

    def _load(self):
        import torch

        if self._threads > 0:
            torch.set_num_threads(self._threads)
        return build_torch_model(self.spec)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).float().numpy()

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        if not self._ready:
            raise BackendUnavailable("model is still loading")
        return await self._batcher.submit(check_batch(batch, self.spec.resolution))

    async def ready(self) -> bool:
        return self._ready

    async def close(self) -> None:
        self._ready = False
        await self._batcher.close()
        self._model = None
