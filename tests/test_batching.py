"""The micro-batcher (hyena_serve/runtime/batching.py) with distinct inputs submitted
concurrently: each caller gets its own rows back, oversize requests are split and
reassembled, an error reaches every caller of its batch (and only them), callers that
gave up are dropped, and a dead or closed worker fails its callers instead of leaving
them waiting. Batches are made deterministic by holding ``run`` on an event while
requests queue; waits poll with deadlines."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from hyena_serve.runtime.batching import MicroBatcher, batch_sizes_sink

TIMEOUT = 30.0  # a deadline for waits that must end; hangs fail instead of blocking the suite


def rows(caller: int, n: int) -> np.ndarray:
    """Rows that say who sent them: (caller, row index, 0)."""
    return np.array([[caller, i, 0.0] for i in range(n)], np.float32)


def model(x: np.ndarray) -> np.ndarray:
    """A per-row function, so a row's answer depends only on that row."""
    return np.stack([x[:, 0] * 1000 + x[:, 1], -x[:, 0]], axis=1)


class Recorder:
    """``run`` that records every batch and can be held (gate) or made to fail."""

    def __init__(self, fail_when=None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_when = fail_when

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.copy())
        self.entered.set()
        if not self.gate.wait(TIMEOUT):
            raise TimeoutError("gate never opened")
        if self.fail_when is not None and self.fail_when(x):
            raise ValueError(f"bad batch of {len(x)}")
        return model(x)


async def until(check, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)  # poll interval; the deadline bounds the wait


async def hold_first_batch(batcher: MicroBatcher, run: Recorder) -> asyncio.Task:
    """Start a batch of one row (caller 999) and keep it running until run.gate opens."""
    run.gate.clear()
    run.entered.clear()
    task = asyncio.create_task(batcher.submit(rows(999, 1)))
    await until(run.entered.is_set, "the first batch to start")
    return task


def test_concurrent_callers_get_their_own_rows():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        sizes = [1 + (i * 7) % 5 for i in range(60)]  # 1..5 rows each
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(batcher.submit(rows(i, n)) for i, n in enumerate(sizes))), TIMEOUT)
        finally:
            await batcher.close()
        for i, (n, out) in enumerate(zip(sizes, results)):
            np.testing.assert_array_equal(out, model(rows(i, n)))
        assert all(1 <= len(b) <= 8 for b in run.batches)
        assert sum(len(b) for b in run.batches) == sum(sizes)
        assert len(run.batches) < len(sizes)  # requests arriving together shared batches

    asyncio.run(main())


def test_oversize_request_is_split_and_reassembled():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=4, max_wait_ms=1)
        batcher.start()
        try:
            big, small = await asyncio.wait_for(
                asyncio.gather(batcher.submit(rows(1, 11)), batcher.submit(rows(2, 2))), TIMEOUT)
        finally:
            await batcher.close()
        np.testing.assert_array_equal(big, model(rows(1, 11)))
        np.testing.assert_array_equal(small, model(rows(2, 2)))
        assert max(len(b) for b in run.batches) <= 4
        assert sum(len(b) for b in run.batches) == 13

    asyncio.run(main())


def test_an_error_reaches_every_caller_of_its_batch_only():
    async def main():
        run = Recorder(fail_when=lambda x: 7 in x[:, 0])  # the batch holding caller 7 fails
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        try:
            first = await hold_first_batch(batcher, run)
            failing = [asyncio.create_task(batcher.submit(rows(c, 2))) for c in (5, 6, 7)]  # one batch of 6
            await until(lambda: len(batcher._pending) == 3, "three queued requests")
            run.gate.set()
            np.testing.assert_array_equal(await asyncio.wait_for(first, TIMEOUT), model(rows(999, 1)))
            outcomes = await asyncio.wait_for(asyncio.gather(*failing, return_exceptions=True), TIMEOUT)
            assert all(isinstance(o, ValueError) and "bad batch of 6" in str(o) for o in outcomes), outcomes
            # the worker lives on: the next caller is served
            after = await asyncio.wait_for(batcher.submit(rows(8, 3)), TIMEOUT)
            np.testing.assert_array_equal(after, model(rows(8, 3)))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_cancelled_callers_are_dropped_from_their_batch():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        try:
            first = await hold_first_batch(batcher, run)
            gone = asyncio.create_task(batcher.submit(rows(1, 3)))
            kept = asyncio.create_task(batcher.submit(rows(2, 2)))
            await until(lambda: len(batcher._pending) == 2, "two queued requests")
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            run.gate.set()
            await asyncio.wait_for(first, TIMEOUT)
            np.testing.assert_array_equal(await asyncio.wait_for(kept, TIMEOUT), model(rows(2, 2)))
        finally:
            await batcher.close()
        ran_callers = {int(c) for b in run.batches for c in b[:, 0]}
        assert 1 not in ran_callers and 2 in ran_callers  # the cancelled rows never ran

    asyncio.run(main())


def test_bad_output_and_mismatched_inputs_fail_their_batch_not_the_worker():
    async def main():
        calls = []

        def run(x):
            calls.append(len(x))
            return model(x)[:-1] if len(calls) == 1 else model(x)  # first batch: one row short

        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="returned 1 rows for a batch of 2"):
                await asyncio.wait_for(batcher.submit(rows(1, 2)), TIMEOUT)
            np.testing.assert_array_equal(await asyncio.wait_for(batcher.submit(rows(2, 2)), TIMEOUT),
                                          model(rows(2, 2)))
            with pytest.raises(ValueError, match="at least one row"):
                await batcher.submit(rows(3, 0))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_mismatched_shapes_in_one_batch_fail_those_callers():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        try:
            first = await hold_first_batch(batcher, run)
            a = asyncio.create_task(batcher.submit(rows(1, 1)))
            b = asyncio.create_task(batcher.submit(np.zeros((1, 5), np.float32)))
            await until(lambda: len(batcher._pending) == 2, "two queued requests")
            run.gate.set()
            await asyncio.wait_for(first, TIMEOUT)
            outcomes = await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), TIMEOUT)
            assert all(isinstance(o, ValueError) for o in outcomes), outcomes
            np.testing.assert_array_equal(await asyncio.wait_for(batcher.submit(rows(4, 1)), TIMEOUT),
                                          model(rows(4, 1)))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_a_dead_worker_fails_waiting_and_new_callers():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=8, max_wait_ms=1)
        batcher.start()
        try:
            first = await hold_first_batch(batcher, run)
            waiting = asyncio.create_task(batcher.submit(rows(1, 2)))
            await until(lambda: len(batcher._pending) == 1, "a queued request")

            def broken():
                raise MemoryError("worker bug (test)")

            batcher._pop_live = broken  # the worker's next step dies
            run.gate.set()
            np.testing.assert_array_equal(await asyncio.wait_for(first, TIMEOUT), model(rows(999, 1)))
            with pytest.raises(RuntimeError, match="worker has stopped"):
                await asyncio.wait_for(waiting, TIMEOUT)
            with pytest.raises(RuntimeError, match="worker has stopped"):
                await batcher.submit(rows(2, 1))
        finally:
            await batcher.close()

    asyncio.run(main())


def test_close_fails_running_and_queued_callers():
    async def main():
        run = Recorder()
        batcher = MicroBatcher(run, max_batch_size=2, max_wait_ms=1)
        batcher.start()
        running = await hold_first_batch(batcher, run)
        queued = asyncio.create_task(batcher.submit(rows(1, 2)))
        await until(lambda: len(batcher._pending) == 1, "a queued request")
        closing = asyncio.create_task(batcher.close())
        await until(lambda: running.done() and queued.done(), "callers to be answered")
        run.gate.set()  # let the executor thread finish so close() can return
        await asyncio.wait_for(closing, TIMEOUT)
        for task in (running, queued):
            with pytest.raises(RuntimeError, match="closed"):
                task.result()

    asyncio.run(main())


def test_hooks_and_sink():
    async def main():
        seen = []

        def on_batch(n):
            seen.append(n)
            raise RuntimeError("metrics hook broke (test)")

        batcher = MicroBatcher(model, max_batch_size=4, max_wait_ms=1, on_batch=on_batch)
        batcher.start()
        try:
            sink: list[int] = []
            token = batch_sizes_sink.set(sink)
            try:
                out = await asyncio.wait_for(batcher.submit(rows(1, 6)), TIMEOUT)
            finally:
                batch_sizes_sink.reset(token)
            np.testing.assert_array_equal(out, model(rows(1, 6)))
            assert sink == [4, 2]  # the sizes of the two batches its rows ran in
            # a failing hook did not stop the worker
            np.testing.assert_array_equal(await asyncio.wait_for(batcher.submit(rows(2, 1)), TIMEOUT),
                                          model(rows(2, 1)))
            assert seen == [4, 2, 1]
        finally:
            await batcher.close()

    asyncio.run(main())


def test_idle_batcher_dispatches_at_once():
    """A lone request on an idle batcher is not held for max_wait (here 10 minutes: the
    test would hit its deadline instead of passing)."""

    async def main():
        batcher = MicroBatcher(model, max_batch_size=8, max_wait_ms=600_000)
        batcher.start()
        try:
            out = await asyncio.wait_for(batcher.submit(rows(1, 2)), TIMEOUT)
            np.testing.assert_array_equal(out, model(rows(1, 2)))
            # requests of the same event-loop turn still share the batch
            both = await asyncio.wait_for(asyncio.gather(batcher.submit(rows(2, 1)), batcher.submit(rows(3, 1))),
                                          TIMEOUT)
            np.testing.assert_array_equal(both[1], model(rows(3, 1)))
            assert batcher.batches_run == 2
        finally:
            await batcher.close()

    asyncio.run(main())
