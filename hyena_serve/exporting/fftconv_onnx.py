"""``torch.ops.hyena.fft_conv`` → one ONNX ``hyena::FFTConv`` node + its model-local function.

The node (docs/design.md §4, issue #3)::

    Y = hyena::FFTConv(X, Kf, D)   # opset hyena v1, overload "<mode>_c<C>_s<..>_k<..>_n<..>_<body>"
        mode="2d" | "1d_bidir" | "2d_circular", kernel_size=[..], fft_size=[..],
        spatial_size=[..] (the input's spatial size: (H, W) in the 2d modes, (L,) in 1d),
        plugin_namespace="hyena", plugin_version="1"

``2d_circular`` is the circular convolution over (H, W) (GFNet's global filter):
``kernel_size == fft_size == spatial_size == [H, W]``, no padding, no crop.

``Kf`` (C, *spectrum, 2) float32 and ``D`` (C,) float32 are initializers; ``X``/``Y`` are
float32 or float16 (the body computes in float32).

How the node survives the dynamo exporter (docs/design.md §6): an ``onnx.defs.OpSchema`` for
hyena::FFTConv is registered, and the custom translation emits that op; the exporter then
keeps the node as is. The function bodies are attached afterwards by
:func:`attach_functions`.

Size-dependent bodies: every FFTConv node carries a function *overload* (IR ≥ 10:
``NodeProto.overload`` ↔ ``FunctionProto.overload``) named after its plan, and the file
holds one ``hyena::FFTConv`` function per distinct plan, each with its DFT matrices as
``Constant`` nodes (a few hundred kB per plan). The work that depends only on Kf and D
(re-layout, the skip and crop folded into the spectrum, taps for the Conv strategy) is in
the body as nodes on the initializers, so ONNX Runtime constant-folds it when the session
is created; the node still takes exactly X, Kf, D, which is what the TensorRT plugin
consumes.
"""

from __future__ import annotations

import warnings

import onnx
from onnx import defs

from hyena_serve.contract import (
    MODES_2D,
    ONNX_OP_DOMAIN,
    ONNX_OP_TYPE,
    ONNX_OP_VERSION,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    FFTPlan,
    FFTCONV_BODIES,
)
from hyena_serve.exporting import lowering_dft, lowering_matmul
from hyena_serve.exporting.lowering_common import BodyBuilder, make_function

BODIES = FFTCONV_BODIES
ATTRIBUTES = ("mode", "kernel_size", "fft_size", "spatial_size", "plugin_namespace", "plugin_version")


# -- the schema ------------------------------------------------------------------------------

def _schema() -> defs.OpSchema:
    S = defs.OpSchema
    a = S.AttrType
    return S(
        ONNX_OP_TYPE, ONNX_OP_DOMAIN, ONNX_OP_VERSION,
        "FFT long convolution (HyenaPixel, GFNet): Y = crop(irfftn(rfftn(X, fft_size) * Kf)) + D*X; "
        "in mode '2d_circular' fft_size = kernel_size = (H, W) and nothing is padded or cropped.",
        inputs=[S.FormalParameter("X", "T", "input (N, C, H, W)"),
                S.FormalParameter("Kf", "tensor(float)", "half spectrum (C, *spectrum, 2)"),
                S.FormalParameter("D", "tensor(float)", "skip (C,)")],
        outputs=[S.FormalParameter("Y", "T", "output, shape and dtype of X")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "X and Y")],
        attributes=[S.Attribute("mode", a.STRING, "'2d', '1d_bidir' or '2d_circular'"),
                    S.Attribute("kernel_size", a.INTS, "filter size per transformed dim"),
                    S.Attribute("fft_size", a.INTS, "FFT size per transformed dim"),
                    S.Attribute("spatial_size", a.INTS, "signal size per transformed dim", required=False),
                    S.Attribute("plugin_namespace", a.STRING, "TensorRT plugin namespace", required=False),
                    S.Attribute("plugin_version", a.STRING, "TensorRT plugin version", required=False)],
    )


def register_schema() -> None:
    """Register hyena::FFTConv v1 with onnx (idempotent)."""
    try:
        defs.get_schema(ONNX_OP_TYPE, ONNX_OP_VERSION, ONNX_OP_DOMAIN)
        return
    except defs.SchemaError:
        pass
    defs.register_schema(_schema())


# -- torch -> ONNX translation ---------------------------------------------------------------

def translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``."""
    import onnxscript
    import torch

    import hyena_serve.ops  # noqa: F401  (registers torch.ops.hyena.fft_conv)

    register_schema()
    hyena = onnxscript.values.Opset(ONNX_OP_DOMAIN, ONNX_OP_VERSION)

    def fft_conv(x, kf, d, mode: str, kernel_size, fft_size):
        shape = list(x.shape)
        h, w = int(shape[-2]), int(shape[-1])
        spatial = [h, w] if mode in MODES_2D else [h * w]
        return hyena.FFTConv(x, kf, d, mode=mode, kernel_size=[int(k) for k in kernel_size],
                             fft_size=[int(n) for n in fft_size], spatial_size=spatial,
                             plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION)

    return {torch.ops.hyena.fft_conv.default: fft_conv}


# -- function bodies -------------------------------------------------------------------------

def _attr(node: onnx.NodeProto, name: str):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    raise ValueError(f"FFTConv node {node.name!r} has no attribute {name!r}")


def node_plan(node: onnx.NodeProto) -> FFTPlan:
    mode = _attr(node, "mode")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    return FFTPlan(mode, tuple(_attr(node, "spatial_size")), tuple(_attr(node, "kernel_size")),
                   tuple(_attr(node, "fft_size")))


def _dims(v) -> str:
    return "x".join(str(int(i)) for i in v)


def overload_name(plan: FFTPlan, channels: int, body: str) -> str:
    return (f"{plan.mode}_c{channels}_s{_dims(plan.spatial)}_k{_dims(plan.kernel)}"
            f"_n{_dims(plan.fft)}_{body}")


def resolve_body(plan: FFTPlan, body: str) -> str:
    """The body actually used for ``plan``: the matmul lowering falls back to the DFT body
    for plans it cannot factorise (with a warning)."""
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; expected one of {BODIES}")
    if body == "matmul" and not lowering_matmul.supports(plan):
        warnings.warn(f"FFTConv plan {plan} has no fast GEMM factorisation; using the DFT body", stacklevel=2)
        return "dft"
    if body == "matmul":
        return lowering_matmul.choose_strategy(plan)
    return "dft"


def build_function(plan: FFTPlan, channels: int, body: str, opset: int,
                   strategy: str | None = None) -> onnx.FunctionProto:
    """The hyena::FFTConv function (overload named after the plan) for ``body``."""
    kind = strategy or resolve_body(plan, body)
    fb = BodyBuilder()
    if kind == "dft":
        lowering_dft.build_body(fb, plan, channels)
    else:
        lowering_matmul.build_body(fb, plan, channels, kind)
    return make_function(fb.nodes, ONNX_OP_DOMAIN, ONNX_OP_TYPE, overload_name(plan, channels, kind), opset,
                         list(ATTRIBUTES), doc=f"FFTConv {plan} via the {kind} body")


def _initializer_dims(model: onnx.ModelProto) -> dict[str, list[int]]:
    return {t.name: list(t.dims) for t in model.graph.initializer}


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    raise ValueError("model has no default-domain opset")


def fftconv_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == ONNX_OP_TYPE and n.domain == ONNX_OP_DOMAIN]


def attach_functions(model: onnx.ModelProto, body: str = "matmul") -> dict[str, str]:
    """Set each FFTConv node's overload and append one function per distinct plan.
    Returns {overload: strategy}. Modifies ``model`` in place (IR version raised to ≥ 10)."""
    opset = _opset(model)
    dims = _initializer_dims(model)
    done: dict[str, str] = {}
    for node in fftconv_nodes(model):
        plan = node_plan(node)
        kf = node.input[1]
        if kf not in dims:
            raise ValueError(f"FFTConv node {node.name!r}: Kf {kf!r} is not an initializer")
        channels = dims[kf][0]
        kind = resolve_body(plan, body)
        name = overload_name(plan, channels, kind)
        node.overload = name
        if name not in done:
            model.functions.append(build_function(plan, channels, body, opset, strategy=kind))
            done[name] = kind
    if not any(o.domain == ONNX_OP_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(ONNX_OP_DOMAIN, ONNX_OP_VERSION))
    model.ir_version = max(model.ir_version, 10)
    return done


def standalone_model(plan: FFTPlan, kf, d, body: str = "matmul", opset: int = 20,
                     strategy: str | None = None, fp16: bool = False,
                     hw: tuple[int, int] | None = None) -> onnx.ModelProto:
    """A one-node model ``Y = FFTConv(X, Kf, D)`` (dynamic batch) for tests and benchmarks.
    ``kf``/``d``: numpy float32 arrays; ``hw``: the (H, W) of X (1d default (1, L))."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    channels = int(kf.shape[0])
    if hw is None:
        hw = plan.spatial if plan.mode in MODES_2D else (1, plan.spatial[0])
    h, w = hw
    kind = strategy or resolve_body(plan, body)
    fn = build_function(plan, channels, body, opset, strategy=kind)
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    node = helper.make_node(ONNX_OP_TYPE, ["X", "Kf", "D"], ["Y"], domain=ONNX_OP_DOMAIN, mode=plan.mode,
                            kernel_size=list(plan.kernel), fft_size=list(plan.fft),
                            spatial_size=list(plan.spatial), plugin_namespace=PLUGIN_NAMESPACE,
                            plugin_version=PLUGIN_VERSION)
    graph = helper.make_graph(
        [node], "fftconv",
        [helper.make_tensor_value_info("X", elem, ["N", channels, h, w])],
        [helper.make_tensor_value_info("Y", elem, ["N", channels, h, w])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(kf, dtype=np.float32), "Kf"),
                     numpy_helper.from_array(np.ascontiguousarray(d, dtype=np.float32), "D")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(ONNX_OP_DOMAIN, ONNX_OP_VERSION)],
                              ir_version=10)
    model.graph.node[0].overload = fn.overload
    model.functions.append(fn)
    return model
