"""Small helpers shared by the FFTConv function bodies.

A body is built with :class:`BodyBuilder`: it records ONNX nodes whose inputs are the
function's formal inputs ``X``, ``Kf``, ``D`` and whose last output is ``Y``; constants are
``Constant`` nodes inside the body (so a body is self-contained and the node keeps exactly
the three inputs the TensorRT plugin consumes).

Phases are computed from integer index products reduced mod N in float64 and only then
cast to float32 (``cis``), which keeps the matrices accurate to ~1e-16 before the cast.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


def cis(a, b, n: int, sign: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """``exp(sign·2πi·a·b/n)`` as (cos, sin) float64 arrays; ``a``, ``b`` integer arrays
    (broadcast); the product is reduced mod ``n`` before the float conversion."""
    prod = np.mod(np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64), n)
    ang = sign * 2.0 * np.pi * prod.astype(np.float64) / n
    return np.cos(ang), np.sin(ang)


def cis_frac(frac: np.ndarray, sign: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """``exp(sign·2πi·frac)`` for a float64 fraction array (already reduced to [0, 1))."""
    ang = sign * 2.0 * np.pi * frac
    return np.cos(ang), np.sin(ang)


def left_block(mr: np.ndarray, mi: np.ndarray) -> np.ndarray:
    """Real form of a complex matrix M (R×S) that multiplies from the left a complex
    operand stored with real/imag interleaved along the rows (row 2s+0 real, 2s+1 imag).
    Returns (2R, 2S) with the output interleaved the same way."""
    r, s = mr.shape
    out = np.empty((2 * r, 2 * s), dtype=np.float64)
    out[0::2, 0::2] = mr
    out[0::2, 1::2] = -mi
    out[1::2, 0::2] = mi
    out[1::2, 1::2] = mr
    return out


def right_block(mr: np.ndarray, mi: np.ndarray) -> np.ndarray:
    """Real form of a complex matrix M (S×K, input index × output index) that multiplies
    from the right a complex row stored as ``[real block | imag block]`` (length 2S).
    Returns (2S, 2K); the output is ``[real block | imag block]`` too."""
    return np.block([[mr, mi], [-mi, mr]])


class BodyBuilder:
    """Records the nodes of one function body."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0
        self._prefix = prefix

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{self._prefix}{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        out = self._name(hint)
        self.nodes.append(helper.make_node("Constant", [], [out], value=numpy_helper.from_array(arr, out)))
        return out

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, hint: str | None = None,
           outputs: list[str] | None = None, **attrs) -> str | list[str]:
        outs = outputs or [self._name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if len(outs) == 1 else outs

    # -- frequently used patterns ----------------------------------------------------
    def matmul(self, a: str, b: str, hint: str = "mm") -> str:
        return self.op("MatMul", [a, b], hint=hint)

    def reshape(self, x: str, shape) -> str:
        return self.op("Reshape", [x, self.ints(shape)], hint="rs")

    def split2(self, x: str, axis: int) -> tuple[str, str]:
        a, b = self.op("Split", [x], n_out=2, axis=axis, num_outputs=2, hint="sp")
        return a, b

    def cmul_split(self, re: str, im: str, a: str, b: str) -> str:
        """``re·A + im·B``: complex multiply where the operand is split into broadcastable
        real/imag parts (…,1,M) and A=[Kr;Ki], B=[-Ki;Kr] are stacked on that axis."""
        return self.op("Add", [self.op("Mul", [re, a]), self.op("Mul", [im, b])], hint="cm")

    def cmul_swap(self, z: str, axis: int, a: str, b: str) -> str:
        """Complex multiply of ``z`` whose real/imag parts sit on ``axis`` (size 2):
        ``z·A + swap(z)·B`` with A=[Wr; Wr], B=[-Wi; Wi] shaped like z's trailing dims.
        The swap is a reversing Slice (a cheap copy) so both Muls broadcast over leading
        dims only, ORT's fast path (a Split + mid-axis broadcast was ~2x slower)."""
        swapped = self.op("Slice", [z, self.ints([1]), self.ints([-3]), self.ints([axis]), self.ints([-1])],
                          hint="swap")
        return self.op("Add", [self.op("Mul", [z, a]), self.op("Mul", [swapped, b])], hint="cm")

    def finish(self, out: str, like: str = "X") -> None:
        """Cast the float32 result back to the dtype of ``X`` into the formal output ``Y``."""
        self.op("CastLike", [out, like], outputs=["Y"])


def make_function(nodes, domain: str, name: str, overload: str, opset: int,
                  attributes: list[str], doc: str = "") -> onnx.FunctionProto:
    fn = helper.make_function(domain, name, ["X", "Kf", "D"], ["Y"], nodes,
                              [helper.make_opsetid("", opset)], attributes=attributes,
                              doc_string=doc, overload=overload)
    return fn
