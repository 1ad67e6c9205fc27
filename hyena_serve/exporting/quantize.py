"""int8 export: ONNX Runtime dynamic quantization of an exported model, the FFTConv
constants kept float32.

:func:`quantize_int8` runs ``onnxruntime.quantization.quantize_dynamic`` on an exported
file in its function form: the weights of the MatMul nodes become int8 (symmetric, one
scale per output channel) and their activations are quantized to uint8 on every call
(``DynamicQuantizeLinear`` -> ``MatMulInteger``). Gemm counts as MatMul: in dynamic mode
``quantize_dynamic`` rewrites every Gemm as MatMul + Add before quantizing.

What stays float32, and why:

- the ``hyena::FFTConv`` nodes, their function bodies and their ``Kf``/``D`` inputs.
  ``quantize_dynamic`` walks ``graph.node`` (and If/Loop bodies with ``EnableSubgraph``),
  never ``model.functions``, so the bodies' DFT matrices (Constant nodes inside the
  function) are not seen; the FFTConv node is of no quantizable type, so its initializer
  inputs are left alone. Quantizing before ``--inline`` keeps it that way (inlined, the
  body MatMuls with constant operands would be quantized like any other). None of this is
  assumed: :func:`check_fftconv_untouched` compares every custom-domain node, its
  initializer inputs and every function with the source after each run.
- Conv. ONNX Runtime's ``ConvInteger`` is slower than its float Conv here: on a 2-core
  AVX-512 VNNI host, hpx_former_s18 at 224, batch 1, one loaded run: fp32 378 ms, MatMul
  only 340 ms, MatMul + 1×1 Conv 497 ms, MatMul + every Conv 828 ms. ``op_types`` takes
  ``("MatMul", "Conv")`` for the full set (``python -m bench precision`` times it).

Activations are quantized as uint8 against int8 weights; on x86 CPUs without VNNI the
u8×s8 multiply-add can saturate (ONNX Runtime's docs suggest ``reduce_range`` there).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

#: The default op types whose weights become int8 (see the module docstring for Conv).
INT8_OP_TYPES = ("MatMul",)
#: Integer ops ``quantize_dynamic`` writes in place of quantized nodes.
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")
#: ``quantize_dynamic`` logs this on the root logger for every model it was not asked to
#: pre-process (ONNX Runtime's shape-inference and graph-optimisation pass, which knows
#: nothing of the hyena domain); with it, an INFO line per tensor it does not quantize.
_PREPROCESS_HINT = "Please consider to run pre-processing before quantization"


class QuantizeError(RuntimeError):
    """Quantization failed or changed what must stay float32; the message says which."""


@dataclass(frozen=True)
class QuantizeReport:
    op_types: tuple[str, ...]
    per_channel: bool
    #: integer nodes in the result (MatMulInteger, ConvInteger)
    quantized_nodes: int
    #: custom-domain nodes whose initializer inputs and functions were checked unchanged
    fp32_nodes_checked: int
    fp32_tensors_checked: tuple[str, ...] = field(default=(), repr=False)

    def to_manifest(self) -> dict:
        """The manifest's record of how the int8 file was made."""
        return {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8 symmetric "
                + ("per output channel" if self.per_channel else "per tensor"), "activations": "uint8, per call",
                "op_types": list(self.op_types), "quantized_nodes": self.quantized_nodes,
                "fp32_kept": f"{self.fp32_nodes_checked} custom-domain nodes, their constants and functions"}


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    def drop(record: logging.LogRecord) -> bool:
        if record.name != "root":
            return True
        return record.levelno >= logging.WARNING and not str(record.msg).startswith(_PREPROCESS_HINT)

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def custom_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The initializers that feed custom-domain nodes (FFTConv's ``Kf`` and ``D``), by name."""
    init = {t.name: t for t in model.graph.initializer}
    names = {i for n in model.graph.node if n.domain not in ("", "ai.onnx") for i in n.input if i in init}
    return {name: numpy_helper.to_array(init[name]) for name in sorted(names)}


def check_fftconv_untouched(before: onnx.ModelProto, after: onnx.ModelProto) -> tuple[int, tuple[str, ...]]:
    """Raise :class:`QuantizeError` unless ``after`` holds the same custom-domain nodes
    (op, inputs, attributes), the same float32 values in their initializer inputs and the
    same model-local functions as ``before``. Returns (nodes, tensor names) checked."""

    def custom_nodes(m: onnx.ModelProto) -> list[bytes]:
        return [n.SerializeToString(deterministic=True) for n in m.graph.node if n.domain not in ("", "ai.onnx")]

    nodes_before, nodes_after = custom_nodes(before), custom_nodes(after)
    if nodes_before != nodes_after:
        raise QuantizeError(f"quantization changed the custom-domain nodes ({len(nodes_before)} before, "
                            f"{len(nodes_after)} after)")
    consts_before, consts_after = custom_constants(before), custom_constants(after)
    if consts_before.keys() != consts_after.keys():
        missing = sorted(consts_before.keys() ^ consts_after.keys())
        raise QuantizeError(f"quantization replaced FFTConv constants: {missing[:5]}")
    for name, value in consts_before.items():
        got = consts_after[name]
        if got.dtype != value.dtype or got.shape != value.shape or not np.array_equal(got, value):
            raise QuantizeError(f"quantization changed the FFTConv constant {name!r} "
                                f"({value.dtype}{list(value.shape)} -> {got.dtype}{list(got.shape)})")
    functions = lambda m: [f.SerializeToString(deterministic=True) for f in m.functions]  # noqa: E731
    if functions(before) != functions(after):
        raise QuantizeError("quantization changed the model-local functions (the FFTConv bodies)")
    return len(nodes_before), tuple(consts_before)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, *, op_types: Sequence[str] = INT8_OP_TYPES,
                  per_channel: bool = True) -> QuantizeReport:
    """Write the int8 form of the exported model ``src`` to ``dst`` (see the module doc).

    ``src`` must be in function form (not ``--inline``). Raises :class:`QuantizeError` if
    the result fails ``onnx.checker`` or changed anything that must stay float32; ``dst``
    is then removed.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    before = onnx.load(src)
    try:
        with _quiet_preprocess_hint():
            quantize_dynamic(src, dst, op_types_to_quantize=list(op_types), per_channel=per_channel,
                             weight_type=QuantType.QInt8)
        after = onnx.load(dst)
        onnx.checker.check_model(after)
        nodes, tensors = check_fftconv_untouched(before, after)
    except Exception as exc:
        dst.unlink(missing_ok=True)
        if isinstance(exc, QuantizeError):
            raise
        raise QuantizeError(f"int8 quantization of {src.name} failed: {type(exc).__name__}: {exc}") from exc
    quantized = sum(n.op_type in INTEGER_OPS for n in after.graph.node)
    return QuantizeReport(tuple(op_types), per_channel, quantized, nodes, tensors)


__all__ = ["INT8_OP_TYPES", "QuantizeError", "QuantizeReport", "check_fftconv_untouched", "custom_constants",
           "quantize_int8"]
