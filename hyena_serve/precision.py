"""The numeric precisions a model is exported and served in, and what this host can run.

- ``fp32``: the reference; every other precision is measured against it
  (``python -m bench precision``, docs/performance.md).
- ``fp16``: an ONNX export with float16 weights and I/O (``Kf``, ``D`` and the FFT stay
  float32, docs/design.md §4); made for TensorRT (``export/to_trt.py --fp16``). ONNX
  Runtime runs it on a CPU too; the embedded backend casts its float32 batches.
- ``int8``: ONNX Runtime dynamic quantization of the MatMul/Gemm weights
  (:mod:`hyena_serve.exporting.quantize`): int8 weights, activations quantized to uint8 at
  run time; the ``hyena::FFTConv`` nodes, their function bodies and their ``Kf``/``D``
  stay float32. ONNX only: the embedded backend and Triton serve it.
- ``bf16``: the torch backend only (the model in bfloat16, ``Kf``/``D`` and the FFT in
  float32), on a CUDA device or a CPU with bf16 instructions (``avx512_bf16``,
  ``amx_bf16``, Arm ``bf16``): elsewhere torch emulates bf16 and is slower than fp32.
  There is no bf16 ONNX export: ONNX Runtime's CPU provider has no bfloat16 kernel for
  MatMul, Gemm, Add or Mul (1.32; :func:`ort_bf16_problem` asks the installed version).

Torch-free: the gateway checks a choice before it loads anything.
"""

from __future__ import annotations

import functools

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Precisions the artifact builder exports to ONNX.
ONNX_PRECISIONS = ("fp32", "fp16", "int8")
#: Precisions the torch backend runs.
TORCH_PRECISIONS = ("fp32", "fp16", "bf16")
#: CPU flags (``/proc/cpuinfo``) of native bf16 arithmetic: x86 AVX-512 BF16 and AMX, Arm BF16.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


class PrecisionError(ValueError):
    """A precision this backend or host cannot run; the message says why, in one line."""


def check_known(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return precision


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (x86 ``flags``, Arm ``Features``);
    empty where ``/proc/cpuinfo`` cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_flags(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The native-bf16 flags this CPU has (empty: bf16 would be emulated)."""
    flags = cpu_flags() if flags is None else flags
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


@functools.cache
def ort_bf16_problem() -> str | None:
    """Why ONNX Runtime's CPU provider cannot run a bfloat16 MatMul, or None if it can.

    Asks the installed onnxruntime with a one-node model instead of assuming: the answer is
    ONNX Runtime's own error line (1.32: ``NOT_IMPLEMENTED : Could not find an
    implementation for MatMul(13)``)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    bf16 = TensorProto.BFLOAT16
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "bf16_probe",
        [helper.make_tensor_value_info("a", bf16, [2, 4]), helper.make_tensor_value_info("b", bf16, [4, 3])],
        [helper.make_tensor_value_info("y", bf16, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (any refusal is the answer)
        text = str(exc).strip().splitlines()
        return f"onnxruntime {ort.__version__}: {text[0] if text else type(exc).__name__}"
    return None


def check_onnx(precision: str) -> str:
    """``precision`` if the artifact builder can export it; else :class:`PrecisionError`."""
    check_known(precision)
    if precision == "bf16":
        problem = ort_bf16_problem()
        why = (f"ONNX Runtime's CPU provider has no bfloat16 MatMul kernel ({problem})" if problem
               else "the exporter writes no bfloat16 graph")
        raise PrecisionError(f"no bf16 ONNX export: {why}; serve bf16 with the torch backend "
                             "(--backend torch --precision bf16)")
    return precision


def check_torch(precision: str, device: str = "cpu", flags: frozenset[str] | None = None) -> str:
    """``precision`` if the torch backend runs it on ``device`` here; else :class:`PrecisionError`."""
    check_known(precision)
    if precision == "int8":
        raise PrecisionError("int8 is ONNX Runtime dynamic quantization of the exported model; serve it with the "
                             "embedded backend (--backend embedded --precision int8) or a Triton repository built "
                             "with hyena-serve repo --precision int8")
    if precision == "bf16" and device.startswith("cpu") and not cpu_bf16_flags(flags):
        raise PrecisionError(f"bf16 on this CPU would be emulated (none of the bf16 instruction flags "
                             f"{', '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo) and slower than fp32; use fp32 or int8")
    return precision


__all__ = ["BF16_CPU_FLAGS", "ONNX_PRECISIONS", "PRECISIONS", "PrecisionError", "TORCH_PRECISIONS", "check_known",
           "check_onnx", "check_torch", "cpu_bf16_flags", "cpu_flags", "ort_bf16_problem"]
