"""Triton Python-backend model: runs ``model.onnx`` from its version folder with
onnxruntime on the CPU.

``hyena_serve.model_repo.fill_repository`` copies this file to
``<repo>/<model>_cpu/1/model.py``. It runs inside Triton's backend stub, so it imports
only numpy, onnxruntime and ``triton_python_backend_utils`` (never hyena_serve), and it
reads tensor names, dtypes and dims from ``config.pbtxt`` instead of repeating them.

``execute`` gets every request the dynamic batcher gathered: the valid ones are run as
one batch, the result is split back, and each request gets exactly one response; a bad
request gets an error response of its own without failing the others.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILENAME = "model.onnx"
THREADS_PARAMETER = "intra_op_num_threads"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = args["model_name"]
        if len(config["input"]) != 1 or len(config["output"]) != 1:
            raise pb_utils.TritonModelException(
                f"{name}: expected one input and one output in config.pbtxt"
            )
        if int(config.get("max_batch_size", 0)) <= 0:
            raise pb_utils.TritonModelException(f"{name}: needs max_batch_size > 0")
        in_cfg, out_cfg = config["input"][0], config["output"][0]
        self.input_name = in_cfg["name"]
        self.output_name = out_cfg["name"]
        self.input_dtype = np.dtype(pb_utils.triton_string_to_numpy(in_cfg["data_type"]))
        self.output_dtype = np.dtype(pb_utils.triton_string_to_numpy(out_cfg["data_type"]))
        self.input_dims = tuple(int(d) for d in in_cfg["dims"])
        self.output_dims = tuple(int(d) for d in out_cfg["dims"])

        threads = config.get("parameters", {}).get(THREADS_PARAMETER, {}).get("string_value", "0")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILENAME)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{name}: ONNX model not found at {path}")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        onnx_inputs = [i.name for i in self.session.get_inputs()]
        onnx_outputs = [o.name for o in self.session.get_outputs()]
        if self.input_name not in onnx_inputs or self.output_name not in onnx_outputs:
            raise pb_utils.TritonModelException(
                f"{name}: config names {self.input_name!r} -> {self.output_name!r} do not "
                f"match the ONNX graph's inputs {onnx_inputs} / outputs {onnx_outputs}"
            )

    def execute(self, requests):
        responses = [None] * len(requests)
        owners, arrays = [], []
        for i, request in enumerate(requests):
            try:
                arrays.append(self._read_input(request))
                owners.append(i)
            except ValueError as exc:
                responses[i] = _error(str(exc), pb_utils.TritonError.INVALID_ARG)
            except Exception as exc:  # one broken request must not fail the others
                responses[i] = _error(f"reading {self.input_name!r} failed: {exc}")
        if not arrays:
            return responses

        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        try:
            (result,) = self.session.run([self.output_name], {self.input_name: batch})
            if result.shape != (len(batch), *self.output_dims):
                raise RuntimeError(
                    f"model returned {self.output_name!r} of shape {list(result.shape)}, "
                    f"config says [{len(batch)}, {', '.join(map(str, self.output_dims))}]"
                )
        except Exception as exc:
            for i in owners:
                responses[i] = _error(f"inference failed: {exc}")
            return responses

        result = result.astype(self.output_dtype, copy=False)
        start = 0
        for i, x in zip(owners, arrays):
            part = np.ascontiguousarray(result[start : start + len(x)])
            start += len(x)
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.output_name, part)]
            )
        return responses

    def finalize(self):
        self.session = None

    def _read_input(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise ValueError(f"missing input {self.input_name!r}")
        x = tensor.as_numpy()
        if x.dtype != self.input_dtype:
            raise ValueError(
                f"input {self.input_name!r} has dtype {x.dtype}, expected {self.input_dtype}"
            )
        if x.ndim != len(self.input_dims) + 1 or tuple(x.shape[1:]) != self.input_dims:
            expected = ", ".join(map(str, self.input_dims))
            raise ValueError(
                f"input {self.input_name!r} has shape {list(x.shape)}, "
                f"expected [batch, {expected}]"
            )
        return x


def _error(message, code=None):
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)
