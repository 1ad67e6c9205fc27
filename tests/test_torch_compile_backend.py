"""The torch backend's ``compile=True``: compiled before ready, same logits as eager,
no recompile when the micro-batcher forms other batch sizes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from hyena_serve.artifact import ModelSpec
from hyena_serve.runtime.torch_backend import TorchBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # inductor compiles the model twice (minutes on a 2-core host)
def test_compiled_backend_matches_eager_and_does_not_recompile():
    from torch._dynamo.utils import counters

    spec = ModelSpec.of("hpx_former_s4", 32, "random", seed=0)
    eager = TorchBackend(spec, max_batch_size=4)
    compiled = TorchBackend(spec, max_batch_size=4, compile=True)
    torch._dynamo.reset()
    counters.clear()
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)

    async def go():
        await eager.start()
        await compiled.start()
        try:
            assert compiled.compile_seconds is not None and compiled.compile_seconds > 0
            frames = counters["stats"]["unique_graphs"]
            outs = [await compiled.infer(x[:n]) for n in (3, 1, 2, 3)]
            assert frames >= 1 and counters["stats"]["unique_graphs"] == frames  # no recompile for batch 3
            refs = [await eager.infer(x[:n]) for n in (3, 1, 2, 3)]
        finally:
            await compiled.close()
            await eager.close()
        return outs, refs

    outs, refs = asyncio.run(go())
    for o, r in zip(outs, refs):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()
