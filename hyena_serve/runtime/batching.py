"""Micro-batching for in-process backends: requests arriving together share one inference.

Callers ``await batcher.submit(x)`` with an ``(n, ...)`` array. One worker task takes the
oldest waiting request, keeps collecting others until the batch holds ``max_batch_size``
rows or ``max_wait_ms`` has passed since it started collecting, then runs the blocking
``run`` function on the concatenation in a dedicated thread (the event loop stays free)
and hands each caller its rows back. While a batch runs, new requests pile up and form the
next batch, so under load batches fill without waiting. A request larger than
``max_batch_size`` is split into chunks. A caller that gives up (timeout, disconnect) is
dropped from its batch if that batch has not started yet.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._name = name
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches_run = 0

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is not None:
            return
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._task = asyncio.get_running_loop().create_task(self._worker(), name=self._name)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the batcher was closed"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Run ``x`` (``(n, ...)``) as part of a batch; returns ``run``'s rows for it."""
        if self._task is None or self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self._task.done():
            raise RuntimeError("the batcher's worker has stopped")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(x), self.max_batch_size):
            future = loop.create_future()
            self._pending.append(_Pending(x[start : start + self.max_batch_size], future))
            futures.append(future)
        self._arrived.set()
        try:
            parts = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()  # not started yet: the worker skips it
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _collect(self) -> list[_Pending]:
        """Wait for the first request, then gather more until full or ``max_wait`` passed."""
        assert self._arrived is not None
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        batch = [self._pending.popleft()]
        rows = len(batch[0].rows)
        while rows < self.max_batch_size:
            if self._pending:
                if rows + len(self._pending[0].rows) > self.max_batch_size:
                    break  # the next request starts the next batch
                item = self._pending.popleft()
                batch.append(item)
                rows += len(item.rows)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return [item for item in batch if not item.future.done()]

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            x = batch[0].rows if len(batch) == 1 else np.concatenate([item.rows for item in batch])
            try:
                out = await loop.run_in_executor(self._executor, self._run, x)
                if len(out) != len(x):
                    raise RuntimeError(f"inference returned {len(out)} rows for a batch of {len(x)}")
            except Exception as exc:  # every caller of this batch gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            self.batches_run += 1
            if self._on_batch is not None:
                self._on_batch(len(x))
            start = 0
            for item in batch:
                n = len(item.rows)
                if not item.future.done():
                    item.future.set_result(out[start : start + n])
                start += n
