"""What the in-process backends (embedded ONNX Runtime, torch) share: load once off the
event loop, warm up, then serve through the micro-batcher."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable

import numpy as np

from hyena_serve.runtime.base import Backend, BackendUnavailable, check_batch
from hyena_serve.runtime.batching import MicroBatcher

log = logging.getLogger(__name__)


class InProcessBackend(Backend):
    """Subclasses implement :meth:`_load` (blocking: build the runner and set ``info``) and
    :meth:`_run` (blocking: one batch through it); both run in worker threads."""

    kind: str  # for log lines

    def __init__(self, *, max_batch_size: int, max_wait_ms: float, threads: int,
                 on_batch: Callable[[int], None] | None) -> None:
        self._threads = threads
        self._ready = False
        self._batcher = MicroBatcher(self._run, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                                     on_batch=on_batch, name=f"{self.kind}-infer")

    @abc.abstractmethod
    def _load(self) -> None:
        """Build what :meth:`_run` needs and set ``self.info`` (may take minutes: export,
        session creation)."""

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, R, R) -> float32 logits, blocking."""

    @abc.abstractmethod
    def _unload(self) -> None:
        """Drop what :meth:`_load` built."""

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._batcher.start()
        # One warm-up batch so the first client request does not pay for lazy initialisation.
        await self._batcher.submit(np.zeros((1, *self.info.preprocess.input_size), np.float32))
        self._ready = True
        log.info("%s backend ready: %s at %d px", self.kind, self.info.name, self.info.resolution)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        if not self._ready:
            raise BackendUnavailable("model is still loading")
        return await self._batcher.submit(check_batch(batch, self.info.preprocess.input_size))

    async def ready(self) -> bool:
        return self._ready

    async def close(self) -> None:
        self._ready = False
        await self._batcher.close()
        self._unload()
