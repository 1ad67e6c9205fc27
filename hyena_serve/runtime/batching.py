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
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


#: A caller may set this to a list: :meth:`MicroBatcher.submit` then appends the size of
#: each batch its rows ran in (the gateway's access log reports it per request).
batch_sizes_sink: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("batch_sizes_sink", default=None)


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future
    batch_rows: int = 0  # set by the worker: rows of the batch this ran in


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batcher",
        idle_dispatch: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.idle_dispatch = idle_dispatch
        self._on_batch = on_batch
        self._name = name
        self._pending: collections.deque[_Pending] = collections.deque()
        self._in_hand: list[_Pending] = []  # taken off the queue by the worker, not answered yet
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
        self._task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task) -> None:
        """The worker ended (closed, or died): nobody may wait for it any longer."""
        if task.cancelled():
            reason = RuntimeError("the batcher was closed")
        else:
            exc = task.exception()
            log.error("%s: the batch worker died: %r", self._name, exc)
            reason = RuntimeError(f"the batcher's worker has stopped: {exc!r}")
        self._fail_pending(reason)

    def _fail_pending(self, exc: BaseException) -> None:
        in_hand, self._in_hand = self._in_hand, []
        for item in in_hand:
            if not item.future.done():
                item.future.set_exception(exc)
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(exc)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # it had died already; _worker_done reported it
                pass
        self._fail_pending(RuntimeError("the batcher was closed"))
        executor, self._executor = self._executor, None
        if executor is not None:  # waits for a batch still running, without blocking the event loop
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Run ``x`` (``(n, ...)``, n >= 1) as part of a batch; returns ``run``'s rows for it."""
        if self._task is None or self._arrived is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self._task.done():
            raise RuntimeError("the batcher's worker has stopped")
        if len(x) < 1:
            raise ValueError("submit() needs at least one row")
        loop = asyncio.get_running_loop()
        items = []
        for start in range(0, len(x), self.max_batch_size):
            item = _Pending(x[start : start + self.max_batch_size], loop.create_future())
            self._pending.append(item)
            items.append(item)
        self._arrived.set()
        try:
            parts = await asyncio.gather(*(item.future for item in items))
        except BaseException:
            for item in items:
                item.future.cancel()  # not started yet: the worker skips it
            raise
        sink = batch_sizes_sink.get()
        if sink is not None:
            sink.extend(item.batch_rows for item in items)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _pop_live(self) -> _Pending | None:
        """The oldest pending request whose caller still waits (given-up ones are dropped)."""
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                return item
        return None

    async def _collect(self) -> list[_Pending]:
        """Wait for the first request, then gather more until full or ``max_wait`` passed.

        With ``idle_dispatch``, a request that finds the batcher idle (nothing was queued
        when the worker looked for work) is not held back for ``max_wait``: it goes as
        soon as the requests that arrived in the same event-loop turn have joined it.
        Under load, requests queue while a batch runs, and the next batch is collected
        with the wait as before."""
        assert self._arrived is not None
        idle = False
        while True:
            first = self._pop_live()
            if first is not None:
                break
            idle = True
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        batch = self._in_hand = [first]
        rows = len(first.rows)
        yielded = False
        while rows < self.max_batch_size:
            if self._pending:
                head = self._pending[0]
                if head.future.done():
                    self._pending.popleft()  # its caller gave up
                    continue
                if rows + len(head.rows) > self.max_batch_size:
                    break  # the next request starts the next batch
                batch.append(self._pending.popleft())
                rows += len(head.rows)
                continue
            if idle and self.idle_dispatch:
                if yielded:
                    break
                yielded = True
                await asyncio.sleep(0)  # let requests of this same loop turn join
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
                self._in_hand = []
                continue
            try:
                x = batch[0].rows if len(batch) == 1 else np.concatenate([item.rows for item in batch])
                out = await loop.run_in_executor(self._executor, self._run, x)
                if not hasattr(out, "__len__") or len(out) != len(x):
                    got = len(out) if hasattr(out, "__len__") else type(out).__name__
                    raise RuntimeError(f"inference returned {got} rows for a batch of {len(x)}")
            except Exception as exc:  # every caller of this batch gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                self._in_hand = []
                continue
            self.batches_run += 1
            start = 0
            for item in batch:
                n = len(item.rows)
                item.batch_rows = len(x)
                if not item.future.done():
                    item.future.set_result(out[start : start + n])
                start += n
            self._in_hand = []
            if self._on_batch is not None:
                try:
                    self._on_batch(len(x))
                except Exception:  # a metrics hook must not stop the worker
                    log.exception("%s: on_batch hook failed", self._name)
