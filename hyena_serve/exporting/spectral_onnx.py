"""``torch.ops.hyena.rfft2`` / ``irfft2`` → ONNX ``hyena::RFFT2`` / ``hyena::IRFFT2`` nodes +
their model-local functions (docs/design.md §4)::

    Y = hyena::RFFT2(X)    # X (N, C, H, W) → Y (N, 2C, H, W//2+1), planar re | im
    Y = hyena::IRFFT2(X)   # X (N, 2C, H, W//2+1) → Y (N, C, H, W)
        spatial_size=[H, W] (the real signal's size), plugin_namespace="hyena",
        plugin_version="1"; opset hyena v1, overload "s<H>x<W>_<body>"

X/Y are float32 or float16; the bodies compute in float32. The nodes are kept through the
dynamo exporter the way FFTConv's are (:mod:`hyena_serve.exporting.fftconv_onnx`): an
``onnx.defs.OpSchema`` is registered and the custom translation emits the op; the function
bodies (one per distinct op, size and body) are attached afterwards by
:func:`attach_functions`. The channel count is not part of a body (its GEMMs broadcast
over batch and channels), so one function serves every mixer of a stage size.
"""

from __future__ import annotations

import onnx
from onnx import defs, helper

from hyena_serve.contract import (
    ONNX_IRFFT2_TYPE,
    ONNX_OP_DOMAIN,
    ONNX_OP_VERSION,
    ONNX_RFFT2_TYPE,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SPECTRAL_BODIES,
)
from hyena_serve.exporting import lowering_spectral
from hyena_serve.exporting.lowering_common import BodyBuilder

BODIES = SPECTRAL_BODIES
OP_TYPES = (ONNX_RFFT2_TYPE, ONNX_IRFFT2_TYPE)
ATTRIBUTES = ("spatial_size", "plugin_namespace", "plugin_version")


# -- the schemas -----------------------------------------------------------------------------

def _schema(op_type: str) -> defs.OpSchema:
    S = defs.OpSchema
    a = S.AttrType
    if op_type == ONNX_RFFT2_TYPE:
        doc = ("Orthonormal 2D real FFT over the last two axes, planar output: "
               "Y[:, :C] = Re rfft2(X), Y[:, C:] = Im rfft2(X).")
        x_doc, y_doc = "real signal (N, C, H, W)", "planar half spectrum (N, 2C, H, W//2+1)"
    else:
        doc = ("Orthonormal inverse 2D real FFT of a planar half spectrum: "
               "Y = irfft2(X[:, :C] + i X[:, C:], s=spatial_size).")
        x_doc, y_doc = "planar half spectrum (N, 2C, H, W//2+1)", "real signal (N, C, H, W)"
    return S(
        op_type, ONNX_OP_DOMAIN, ONNX_OP_VERSION, doc,
        inputs=[S.FormalParameter("X", "T", x_doc)],
        outputs=[S.FormalParameter("Y", "T", y_doc)],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "X and Y")],
        attributes=[S.Attribute("spatial_size", a.INTS, "[H, W] of the real signal"),
                    S.Attribute("plugin_namespace", a.STRING, "TensorRT plugin namespace", required=False),
                    S.Attribute("plugin_version", a.STRING, "TensorRT plugin version", required=False)],
    )


def register_schemas() -> None:
    """Register hyena::RFFT2 and hyena::IRFFT2 v1 with onnx (idempotent)."""
    for op_type in OP_TYPES:
        try:
            defs.get_schema(op_type, ONNX_OP_VERSION, ONNX_OP_DOMAIN)
        except defs.SchemaError:
            defs.register_schema(_schema(op_type))


# -- torch -> ONNX translation ---------------------------------------------------------------

def translation_table() -> dict:
    """``custom_translation_table`` entries for ``torch.onnx.export(..., dynamo=True)``."""
    import onnxscript
    import torch

    import hyena_serve.ops  # noqa: F401  (registers torch.ops.hyena.rfft2 / irfft2)

    register_schemas()
    hyena = onnxscript.values.Opset(ONNX_OP_DOMAIN, ONNX_OP_VERSION)

    def rfft2(x):
        h, w = (int(n) for n in list(x.shape)[-2:])
        return hyena.RFFT2(x, spatial_size=[h, w], plugin_namespace=PLUGIN_NAMESPACE,
                           plugin_version=PLUGIN_VERSION)

    def irfft2(y, width: int):
        h = int(list(y.shape)[-2])
        return hyena.IRFFT2(y, spatial_size=[h, int(width)], plugin_namespace=PLUGIN_NAMESPACE,
                            plugin_version=PLUGIN_VERSION)

    return {torch.ops.hyena.rfft2.default: rfft2, torch.ops.hyena.irfft2.default: irfft2}


# -- function bodies -------------------------------------------------------------------------

def spectral_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in OP_TYPES and n.domain == ONNX_OP_DOMAIN]


def node_spatial(node: onnx.NodeProto) -> tuple[int, int]:
    for a in node.attribute:
        if a.name == "spatial_size":
            size = tuple(int(v) for v in helper.get_attribute_value(a))
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{node.op_type} node {node.name!r}: spatial_size {list(size)} is not [H, W]")
            return size
    raise ValueError(f"{node.op_type} node {node.name!r} has no attribute 'spatial_size'")


def overload_name(spatial: tuple[int, int], body: str) -> str:
    return f"s{spatial[0]}x{spatial[1]}_{body}"


def build_function(op_type: str, spatial: tuple[int, int], body: str, opset: int) -> onnx.FunctionProto:
    """The hyena::``op_type`` function (overload named after the size and body)."""
    if op_type not in OP_TYPES:
        raise ValueError(f"unknown spectral op {op_type!r}; expected one of {OP_TYPES}")
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; expected one of {BODIES}")
    h, w = spatial
    fb = BodyBuilder()
    lowering_spectral.build_body(fb, op_type, h, w, body)
    return helper.make_function(ONNX_OP_DOMAIN, op_type, ["X"], ["Y"], fb.nodes,
                                [helper.make_opsetid("", opset)], attributes=list(ATTRIBUTES),
                                doc_string=f"{op_type} of a {h}x{w} signal via the {body} body",
                                overload=overload_name(spatial, body))


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    raise ValueError("model has no default-domain opset")


def attach_functions(model: onnx.ModelProto, body: str = "matmul") -> dict[str, str]:
    """Set each RFFT2/IRFFT2 node's overload and append one function per distinct (op, size).
    Returns {"<op>:<overload>": body}; modifies ``model`` in place (IR version raised to
    ≥ 10). A model without spectral nodes is left as it is."""
    nodes = spectral_nodes(model)
    if not nodes:
        return {}
    opset = _opset(model)
    done: dict[str, str] = {}
    for node in nodes:
        spatial = node_spatial(node)
        node.overload = overload_name(spatial, body)
        key = f"{node.op_type}:{node.overload}"
        if key not in done:
            model.functions.append(build_function(node.op_type, spatial, body, opset))
            done[key] = body
    if not any(o.domain == ONNX_OP_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ONNX_OP_DOMAIN, ONNX_OP_VERSION))
    model.ir_version = max(model.ir_version, 10)
    return done


def standalone_model(op_type: str, channels: int, spatial: tuple[int, int], body: str = "matmul",
                     opset: int = 20, fp16: bool = False) -> onnx.ModelProto:
    """A one-node model ``Y = op_type(X)`` (dynamic batch) for tests and benchmarks;
    ``spatial`` is the real signal's (H, W)."""
    from onnx import TensorProto

    h, w = spatial
    m = w // 2 + 1
    fn = build_function(op_type, spatial, body, opset)
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    signal, spectrum = ["N", channels, h, w], ["N", 2 * channels, h, m]
    x_shape, y_shape = (signal, spectrum) if op_type == ONNX_RFFT2_TYPE else (spectrum, signal)
    node = helper.make_node(op_type, ["X"], ["Y"], domain=ONNX_OP_DOMAIN, spatial_size=[h, w],
                            plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION)
    node.overload = fn.overload
    graph = helper.make_graph([node], op_type.lower(), [helper.make_tensor_value_info("X", elem, x_shape)],
                              [helper.make_tensor_value_info("Y", elem, y_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(ONNX_OP_DOMAIN, ONNX_OP_VERSION)],
                              ir_version=10)
    model.functions.append(fn)
    return model
