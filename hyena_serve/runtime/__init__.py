"""Inference backends behind one interface (:class:`~hyena_serve.runtime.base.Backend`):

- ``embedded``: ONNX Runtime in-process (:mod:`hyena_serve.runtime.embedded`), the default;
- ``triton``: a Triton server over HTTP or gRPC (:mod:`hyena_serve.runtime.triton`);
- ``torch``: the torch reference model (:mod:`hyena_serve.runtime.torch_backend`);

plus the micro-batcher the in-process ones share (:mod:`hyena_serve.runtime.batching`).
Backend modules import their heavy dependencies (onnxruntime, tritonclient, torch) only
when used. ``triton_python_model.py`` is not a backend here: it runs inside Triton.
"""

from hyena_serve.runtime.base import Backend, BackendUnavailable, ModelInfo, TensorSpec

__all__ = ["Backend", "BackendUnavailable", "ModelInfo", "TensorSpec"]
