"""Build and check a TensorRT engine from an exported ONNX model, with the hyena plugins.

Nothing here imports torch: building a plan and checking it needs TensorRT, ONNX, ONNX
Runtime (CPU) and Polygraphy only, which is what the Triton image carries
(docs/tensorrt.md).

What needs neither TensorRT nor a GPU is plain Python and unit-tested on CPU hosts:
argument parsing, preparing the ONNX graph for each build variant, choosing the precision
recipe from the TensorRT version's capabilities, recognising the plugin layers of the hyena
custom ops (FFTConv, RFFT2, IRFFT2) in the parsed network, turning parser errors into their cause, the parity decision, and
writing the plan atomically. The TensorRT calls are confined to :func:`build_engine` and
:func:`run_engine`, which take the ``tensorrt`` module (and the CUDA buffer module) as
arguments so that tests can hand them fakes; they raise :class:`TensorRTUnavailable` with a
one-line reason when TensorRT, the GPU, Polygraphy or the plugin library is missing.

Device buffers: Polygraphy (``polygraphy.cuda.DeviceArray``/``Stream``), NVIDIA's own
TensorRT companion library. It is pure Python and loads whichever ``libcudart`` the host
has, so one wheel works in every NGC image and CUDA major without a version match; it is
what ``polygraphy run`` uses for the same job. (cuda-python would work too but must match
the CUDA major of the driver/image; torch would add gigabytes to the Triton image.)

Variants (``--fftconv``):

- ``plugin``: the custom-op nodes of the ``hyena`` domain (``FFTConv``, and ``RFFT2`` /
  ``IRFFT2`` where a model computes spectra at run time) keep ``plugin_namespace`` /
  ``plugin_version`` and their model-local functions are **removed** from the graph handed
  to the parser, so the parser has no body to inline and must take the registered IPluginV3
  plugin of the same name (TensorRT 10.0–10.6 prefer a local function over a plugin;
  10.7–10.14 check the plugin registry first; 10.15+ fall back to the function silently).
  Every TensorRT from 10.0 on then either builds the plugins or fails to import the node;
  the built network must contain one plugin layer of the right plugin per node — checked,
  not assumed. One library (export/plugins/fftconv) registers all three plugins;
- ``native-dft``: the plain DFT function body, plugin attributes removed, parsed into
  TensorRT's own DFT layers (TensorRT >= 11.2; the baseline the plugin must beat);
- ``gemm``: the GEMM-lowered function body, plugin attributes removed.

Precision: the fp32 plan is built with ``BuilderFlag.TF32`` cleared (TF32 is on by default
in TensorRT 10/11) unless ``tf32=True``. fp16 comes from ``BuilderFlag.FP16`` where the
TensorRT has it (10.x) and from an fp16-I/O ONNX export in a strongly typed network where
it does not (11.x); :func:`choose_precision` picks by capability. The engine's I/O stays
float32 either way (Cast nodes at the graph boundary), so the Triton config is the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from hyena_serve.contract import (
    INPUT_NAME,
    IRFFT2_PLUGIN_NAME,
    ONNX_OP_DOMAIN,
    ONNX_OP_TYPE,
    OUTPUT_NAME,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    RFFT2_PLUGIN_NAME,
)

VARIANTS = ("plugin", "native-dft", "gemm")
#: The FFTConv function body each variant exports (``export_onnx(body=...)``).
VARIANT_BODY = {"plugin": "matmul", "native-dft": "dft", "gemm": "matmul"}
PLUGIN_ATTRIBUTES = ("plugin_namespace", "plugin_version")
PLUGIN_LIB_ENV = "HYENA_FFTCONV_PLUGIN"
DEFAULT_PLUGIN_LIB = Path("export/plugins/fftconv/build/libhyena_fftconv_plugin.so")


def plugin_id(op_type: str) -> str:
    """``namespace::name/version`` of the plugin serving a ``hyena`` custom op, as its plugin
    layers report it: every custom op of the domain has a plugin of the same name."""
    return f"{PLUGIN_NAMESPACE}::{op_type}/{PLUGIN_VERSION}"


#: The FFTConv plugin's id.
PLUGIN_ID = plugin_id(PLUGIN_NAME)
#: Every plugin the library registers on load (one per hyena custom op); load_plugin checks each.
LIBRARY_PLUGINS = (PLUGIN_NAME, RFFT2_PLUGIN_NAME, IRFFT2_PLUGIN_NAME)

#: Lowest TensorRT for the plugin variant: IPluginV3 and the ONNX parser's fallback
#: importer that creates an IPluginV3 from the registry by (op_type, plugin_version,
#: plugin_namespace) both arrived in 10.0 (docs/tensorrt.md).
MIN_TENSORRT_PLUGIN = (10, 0)
#: Lowest TensorRT whose ONNX parser imports ``DFT`` (the native-dft variant).
MIN_TENSORRT_NATIVE_DFT = (11, 2)

#: Parity tolerances (max |logit diff| / max |reference logit|). fp32: the export's own
#: torch-vs-ONNX Runtime tolerance. fp16 and TF32 both round operands to 11 significant
#: bits (unit roundoff 2^-11 ~ 4.9e-4); 1e-2 (~20 roundoffs through the whole network) is
#: the export's fp16 tolerance, and TF32 (fp32 range and accumulation) is no worse.
TOL_FP32 = 1e-4
TOL_REDUCED = 1e-2


class TensorRTUnavailable(RuntimeError):
    """TensorRT, a CUDA GPU, Polygraphy or the plugin library is not available on this host."""


class PluginLayersMissing(RuntimeError):
    """The parsed network does not contain the plugin layers (FFTConv, RFFT2, IRFFT2) the ONNX file asks for."""


class EngineError(RuntimeError):
    """TensorRT refused an input shape, an address or an execution."""


# --- batch profile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile's batch sizes: ``min <= opt <= max``."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        """``"MIN:OPT:MAX"`` (or one number for all three) -> profile; ValueError otherwise."""
        parts = text.split(":")
        if len(parts) == 1:
            parts = parts * 3
        if len(parts) != 3:
            raise ValueError(f"batch profile {text!r}: expected MIN:OPT:MAX, e.g. 1:4:8")
        try:
            lo, opt, hi = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"batch profile {text!r}: sizes must be integers") from None
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch profile {text!r}: need 1 <= MIN <= OPT <= MAX")
        return cls(lo, opt, hi)

    def shapes(self, res: int, chw: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) input shapes: ``(B, 3, res, res)``, or ``(B, *chw)``."""
        chw = tuple(chw) if chw is not None else (3, res, res)
        return tuple((b, *chw) for b in (self.min, self.opt, self.max))

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


def parity_batches(samples: np.ndarray, batch: BatchProfile, *, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Inputs for the engine-vs-reference check, every one inside the profile.

    The sample photos go in batches of at most ``batch.max``; a batch smaller than
    ``batch.min`` is filled up with random normal images (an engine cannot run outside its
    profile), and one random batch of exactly ``batch.max`` is added so that the largest
    shape is exercised too.
    """
    if samples.ndim != 4 or len(samples) == 0:
        raise ValueError(f"expected a non-empty NCHW batch of sample images, got shape {samples.shape}")
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, len(samples), batch.max):
        chunk = samples[start : start + batch.max]
        name = f"photos[{start}:{start + len(chunk)}]"
        if len(chunk) < batch.min:
            fill = rng.standard_normal((batch.min - len(chunk), *samples.shape[1:])).astype(samples.dtype)
            chunk = np.concatenate([chunk, fill])
            name += f"+random[{len(fill)}]"
        out.append((name, np.ascontiguousarray(chunk)))
    out.append((f"random[{batch.max}]", rng.standard_normal((batch.max, *samples.shape[1:])).astype(samples.dtype)))
    return out


# --- the ONNX graph each variant parses -------------------------------------------------------


def _base_op(domain: str, name: str) -> str | None:
    """The custom op a ``hyena``-domain node or function stands for (``FFTConv__<overload>``
    -> ``FFTConv``), or None outside the domain."""
    if domain != ONNX_OP_DOMAIN:
        return None
    return name.split("__", 1)[0]


def _is_fftconv(node: onnx.NodeProto) -> bool:
    """An FFTConv node, under its own name or a per-overload one (``FFTConv__<overload>``)."""
    return _base_op(node.domain, node.op_type) == ONNX_OP_TYPE


def fftconv_node_names(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if _is_fftconv(n)]


def custom_op_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """``{node name: custom op}`` for every ``hyena``-domain node of the main graph: the nodes
    the plugin variant hands to plugins (FFTConv, RFFT2, IRFFT2, ...)."""
    return {n.name: op for n in model.graph.node if (op := _base_op(n.domain, n.op_type)) is not None}


def strip_custom_op_functions(model: onnx.ModelProto, ops: Iterable[str] | None = None) -> int:
    """Remove the model-local functions of the ``hyena`` custom ops (in place): those named
    after an op in ``ops`` (default: every op with a node in the main graph). Returns how
    many were removed; functions of other domains stay.

    Without a body to inline, TensorRT's ONNX parser can only import such a node through the
    registered plugin, whatever its version's preference between the two.
    """
    wanted = set(custom_op_nodes(model).values() if ops is None else ops)
    kept = [f for f in model.functions if _base_op(f.domain, f.name) not in wanted]
    removed = len(model.functions) - len(kept)
    del model.functions[:]
    model.functions.extend(kept)
    return removed


def strip_fftconv_functions(model: onnx.ModelProto) -> int:
    """Remove every model-local FFTConv function (in place); returns how many were removed."""
    return strip_custom_op_functions(model, [ONNX_OP_TYPE])


def _elem_type(value_info: onnx.ValueInfoProto) -> int:
    return value_info.type.tensor_type.elem_type


def input_is_fp16(model: onnx.ModelProto) -> bool:
    """Whether the graph's data input is float16: an fp16-I/O export."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    return bool(inputs) and _elem_type(inputs[0]) == onnx.TensorProto.FLOAT16


def cast_io_to_float32(model: onnx.ModelProto) -> bool:
    """Give an fp16-I/O graph float32 I/O (in place): ``Cast`` after the input and before
    the output, so a strongly typed fp16 engine keeps the float32 contract of the Triton
    config and the gateway. Returns False (and changes nothing) for a float32 graph."""
    graph = model.graph
    fp16 = onnx.TensorProto.FLOAT16
    inputs = [i for i in graph.input if _elem_type(i) == fp16]
    outputs = [o for o in graph.output if _elem_type(o) == fp16]
    if not inputs and not outputs:
        return False
    new_nodes = []
    for value in inputs:
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        new_nodes.append(onnx.helper.make_node("Cast", [value.name], [inner], to=fp16, name=f"{value.name}/cast_fp16"))
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    tail = []
    for value in outputs:
        inner = f"{value.name}__fp16"
        for node in graph.node:
            node.output[:] = [inner if name == value.name else name for name in node.output]
            node.input[:] = [inner if name == value.name else name for name in node.input]
        tail.append(onnx.helper.make_node("Cast", [inner], [value.name], to=onnx.TensorProto.FLOAT,
                                          name=f"{value.name}/cast_fp32"))
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    nodes = [*new_nodes, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    # value_info entries of the renamed tensors would now describe the wrong names.
    renamed = {v.name for v in (*inputs, *outputs)}
    kept = [v for v in graph.value_info if v.name not in renamed]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return True


def prepare_onnx(model: onnx.ModelProto, variant: str, *, float32_io: bool = True) -> onnx.ModelProto:
    """The ONNX model TensorRT should parse for ``variant`` (a modified copy).

    ``plugin``: every ``hyena`` custom-op node (FFTConv, RFFT2, IRFFT2) must carry the plugin
    attributes, and the functions of those ops are stripped (see
    :func:`strip_custom_op_functions`). Other variants: the attributes are removed and each
    function overload gets a unique name, so the parser inlines the body. ``float32_io``: an
    fp16-I/O export gets float32 I/O through Casts.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown FFTConv variant {variant!r}; expected one of {VARIANTS}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for n in out.graph.node if _base_op(n.domain, n.op_type) is not None]
    if not nodes:
        raise ValueError(f"the ONNX model has no {ONNX_OP_DOMAIN} custom-op node (hyena::FFTConv, hyena::RFFT2, "
                         "hyena::IRFFT2): not a hyena_serve export")
    for node in nodes:
        names = {a.name for a in node.attribute}
        op = _base_op(node.domain, node.op_type)
        if variant == "plugin":
            missing = [a for a in PLUGIN_ATTRIBUTES if a not in names]
            if missing:
                raise ValueError(f"{op} node {node.name!r} lacks {missing}: TensorRT would not pick the plugin")
            # The plugin is looked up by op_type: per-overload names must not reach the parser.
            node.op_type = op
            node.overload = ""
        else:
            kept = [a for a in node.attribute if a.name not in PLUGIN_ATTRIBUTES]
            del node.attribute[:]
            node.attribute.extend(kept)
    if variant == "plugin":
        strip_custom_op_functions(out)
    else:
        _unique_function_names(out)
    if float32_io:
        cast_io_to_float32(out)
    return out


def _unique_function_names(model: onnx.ModelProto) -> None:
    """Give every custom-op function overload a name of its own (``<op>__<overload>``, e.g.
    ``FFTConv__2d_c64_...``).

    The exporter tells the per-plan bodies apart by the IR-10 ``overload`` field; a parser
    that looks functions up by (domain, name) only would take one body for every node. With
    unique names the file means the same to every consumer.
    """
    for fn in model.functions:
        if fn.domain == ONNX_OP_DOMAIN and fn.overload:
            fn.name = f"{fn.name}__{fn.overload}"
            fn.overload = ""
    for node in model.graph.node:
        if node.domain == ONNX_OP_DOMAIN and node.overload:
            node.op_type = f"{node.op_type}__{node.overload}"
            node.overload = ""


# --- TensorRT version and precision recipe ---------------------------------------------------


def version_tuple(text: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)``; non-numeric tails are ignored."""
    parts = []
    for piece in str(text).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def check_tensorrt_version(trt, variant: str) -> tuple[int, ...]:
    """Raise :class:`TensorRTUnavailable` when this TensorRT cannot build ``variant``."""
    version = version_tuple(getattr(trt, "__version__", "0"))
    floor = MIN_TENSORRT_NATIVE_DFT if variant == "native-dft" else MIN_TENSORRT_PLUGIN
    if version[:2] < floor:
        what = "ONNX DFT import" if variant == "native-dft" else "IPluginV3 plugins through the ONNX parser"
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} is too old for the {variant} variant: {what} needs TensorRT "
            f">= {'.'.join(map(str, floor))}")
    return version


@dataclass(frozen=True)
class Precision:
    """How to build at the requested precision with this TensorRT.

    ``mode``: ``"fp32"``, ``"fp16-flag"`` (weakly typed network + ``BuilderFlag.FP16``,
    TensorRT 10) or ``"fp16-strongly-typed"`` (an fp16-I/O ONNX export in a strongly typed
    network, TensorRT 11 where the flag no longer exists). ``network_flags``: the bit mask
    for ``create_network``; ``set_flags``/``clear_flags``: ``BuilderFlag`` member names.
    """

    mode: str
    network_flags: int
    fp16_onnx: bool
    set_flags: tuple[str, ...] = ()
    clear_flags: tuple[str, ...] = ()
    tf32: bool = False
    tolerance: float = TOL_FP32

    @property
    def fp16(self) -> bool:
        return self.mode != "fp32"


def choose_precision(trt, *, fp16: bool, tf32: bool = False) -> Precision:
    """The precision recipe for this TensorRT, chosen by capability, not by version number."""
    flags_enum = trt.BuilderFlag
    has_fp16_flag = hasattr(flags_enum, "FP16")
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    strongly_typed = getattr(creation, "STRONGLY_TYPED", None) if creation is not None else None
    clear = () if tf32 or not hasattr(flags_enum, "TF32") else ("TF32",)
    set_tf32 = ("TF32",) if tf32 and hasattr(flags_enum, "TF32") else ()
    # Without BuilderFlag.FP16 every network is strongly typed (TensorRT 11); say so
    # explicitly where the creation flag still exists.
    typed_flags = (1 << int(strongly_typed)) if (strongly_typed is not None and not has_fp16_flag) else 0
    reduced = TOL_REDUCED
    if not fp16:
        return Precision("fp32", typed_flags, False, set_tf32, clear, tf32, reduced if tf32 else TOL_FP32)
    if has_fp16_flag:
        return Precision("fp16-flag", 0, False, ("FP16", *set_tf32), clear, tf32, reduced)
    return Precision("fp16-strongly-typed", typed_flags, True, set_tf32, clear, tf32, reduced)


# --- the parsed network ----------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRecord:
    """One layer of the parsed network: its name, ``tensorrt.LayerType`` name and, for a
    plugin layer whose plugin could be asked, ``namespace::name/version`` of the plugin."""

    name: str
    kind: str
    plugin: str | None = None


def check_plugin_layers(expected_nodes: Sequence[str] | Mapping[str, str],
                        layers: Iterable[LayerRecord | tuple]) -> int:
    """Check the parsed network has one plugin layer of the right plugin per custom-op node.

    ``expected_nodes``: ``{node name: custom op}`` (:func:`custom_op_nodes`), or a list of
    FFTConv node names. A layer counts for op ``X`` when it is a plugin layer (``PLUGIN*``)
    and either its plugin reports :func:`plugin_id` of ``X``, or, where the plugin could not
    be asked, the layer carries the name of an ``X`` node (the parser names a node's layer
    after the node). Other plugins do not count, and one op's layers never stand in for
    another's. Returns the total; raises :class:`PluginLayersMissing` naming what was found.
    """
    records = [r if isinstance(r, LayerRecord) else LayerRecord(*r) for r in layers]
    expected = (dict(expected_nodes) if isinstance(expected_nodes, Mapping)
                else dict.fromkeys(expected_nodes, ONNX_OP_TYPE))
    ops = sorted(set(expected.values()))
    ids = {plugin_id(op): op for op in ops}

    def op_of(r: LayerRecord) -> str | None:
        if not r.kind.startswith("PLUGIN"):
            return None
        if r.plugin is not None:
            return ids.get(r.plugin)
        return expected.get(r.name)

    want = {op: sum(1 for v in expected.values() if v == op) for op in ops}
    got = {op: 0 for op in ops}
    for r in records:
        op = op_of(r)
        if op is not None:
            got[op] += 1
    if got == want:
        return sum(got.values())
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    others = sorted({r.plugin or r.name for r in records if r.kind.startswith("PLUGIN") and op_of(r) is None})
    cause = (
        "TensorRT's ONNX parser imported the custom-op nodes without the plugin: it inlines a "
        "model-local function when one is present (use the plugin variant, which strips them)"
    )
    if others:
        cause += f"; other plugin layers found: {others[:5]}"
    counts = "; ".join(f"expected {want[op]} {op} plugin layers ({plugin_id(op)}), the network has {got[op]}"
                       for op in ops)
    raise PluginLayersMissing(f"{counts} (layers by type: {dict(sorted(kinds.items()))}). {cause}.")


def parse_failure(errors: Sequence[str], *, variant: str, onnx_path: os.PathLike | str,
                  plugin_lib: os.PathLike | str | None = None, trt_version: str = "?",
                  ops: Sequence[str] = (ONNX_OP_TYPE,)) -> RuntimeError:
    """The exception for a failed parse, its one-line message naming the real cause.

    With the custom-op functions stripped (plugin variant), a missing plugin shows up as the
    parser failing to import one of the ``ops`` nodes ("Plugin not found" / "No importer
    registered" / "Could not create the plugin"): the plugin is not registered (library not
    loaded, it registered nothing, or it predates that op), or it was built against another
    TensorRT version. That case is a :class:`PluginLayersMissing` naming the plugins the
    parser mentions; anything else a plain RuntimeError.
    """
    text = "; ".join(e.strip() for e in errors if e and e.strip()) or "no error reported"
    named = [op for op in ops if op in text]
    if variant == "plugin" and (named or "plugin" in text.lower()):
        lib = f" {plugin_lib}" if plugin_lib else ""
        wanted = ", ".join(plugin_id(op) for op in (named or ops))
        return PluginLayersMissing(
            f"TensorRT {trt_version}'s ONNX parser could not import the {'/'.join(named or ops)} nodes through "
            f"the plugin(s) {wanted}: not registered (the library{lib} was not loaded, or registered no "
            f"creator for {wanted}: an older build?), or the library was built against another TensorRT version "
            f"than {trt_version} (rebuild export/plugins/fftconv against it). Parser: {text}"
        )
    if variant == "native-dft" and "DFT" in text:
        return RuntimeError(f"TensorRT {trt_version} cannot import ONNX DFT (native-dft needs TensorRT >= "
                            f"{'.'.join(map(str, MIN_TENSORRT_NATIVE_DFT))}). Parser: {text}")
    return RuntimeError(f"TensorRT {trt_version} could not parse {onnx_path}: {text}")


# --- host and library checks ----------------------------------------------------------------


def find_plugin_library(path: str | os.PathLike | None) -> Path:
    """``path``, else ``$HYENA_FFTCONV_PLUGIN``, else the CMake build folder's library."""
    candidate = Path(path or os.environ.get(PLUGIN_LIB_ENV) or DEFAULT_PLUGIN_LIB)
    if not candidate.is_file():
        raise TensorRTUnavailable(
            f"FFTConv plugin library not found: {candidate} (build export/plugins/fftconv with CMake "
            f"or pass --plugin-lib / set {PLUGIN_LIB_ENV})"
        )
    return candidate


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415  (optional dependency, GPU hosts only)
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not installed ({exc}); install NVIDIA's tensorrt wheel on a GPU host "
            "or use the Dockerfile's triton stage"
        ) from None
    return trt


def import_cuda():
    """``polygraphy.cuda`` (device buffers and streams); TensorRTUnavailable without it."""
    try:
        from polygraphy import cuda  # noqa: PLC0415  (optional dependency, GPU hosts only)
    except ImportError as exc:
        raise TensorRTUnavailable(f"Polygraphy is not installed ({exc}); pip install polygraphy") from None
    return cuda


def cuda_device_count(cuda=None) -> int:
    """Number of CUDA devices through the CUDA runtime Polygraphy loads (no torch)."""
    cuda = cuda or import_cuda()
    try:
        runtime = cuda.wrapper().handle
    except Exception as exc:  # noqa: BLE001  (OSError, PolygraphyException: no libcudart)
        raise TensorRTUnavailable(f"the CUDA runtime library (libcudart) cannot be loaded: {exc}") from None
    count = ctypes.c_int(0)
    status = runtime.cudaGetDeviceCount(ctypes.byref(count))
    if status != 0:
        # 35: driver older than the runtime; 100: no device; 999: unknown (e.g. no driver).
        raise TensorRTUnavailable(f"no usable CUDA GPU (cudaGetDeviceCount returned error {status})")
    return int(count.value)


def require_cuda(cuda=None) -> None:
    if cuda_device_count(cuda) < 1:
        raise TensorRTUnavailable("no CUDA GPU is visible: a TensorRT engine can only be built on the GPU "
                                  "that will run it")


def missing_plugin_creators(registry) -> list[str]:
    """Ids of the library's plugins (:data:`LIBRARY_PLUGINS`) that ``registry``
    (``trt.get_plugin_registry()``) has no creator for, asked with
    ``get_creator(name, version, namespace)`` as the ONNX parser asks."""
    return [plugin_id(name) for name in LIBRARY_PLUGINS
            if registry.get_creator(name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None]


def load_plugin(path: Path, trt) -> None:
    """Load the plugin library into this process; it registers one creator per hyena custom
    op (FFTConv, RFFT2, IRFFT2) on load, and each must then be in TensorRT's registry."""
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise TensorRTUnavailable(f"cannot load plugin library {path} (a dependency such as libcufft or "
                                  f"libnvinfer does not resolve?): {exc}") from None
    missing = missing_plugin_creators(trt.get_plugin_registry())
    if not missing:
        return
    version = getattr(trt, "__version__", "?")
    if len(missing) == len(LIBRARY_PLUGINS):
        raise TensorRTUnavailable(
            f"{path} loaded but registered no creator for {', '.join(missing)} in this TensorRT ({version}): "
            "was it built against another TensorRT version?")
    raise TensorRTUnavailable(
        f"{path} loaded but registered no creator for {', '.join(missing)} in this TensorRT ({version}) "
        f"(the others are registered): a build older than that op? Rebuild export/plugins/fftconv.")


def _plugin_id(layer, trt) -> str | None:
    """``namespace::name/version`` of a V3 plugin layer's plugin, or None if it cannot be asked."""
    with contextlib.suppress(Exception):
        layer_class = getattr(trt, "IPluginV3Layer", None)
        if layer_class is not None:
            layer.__class__ = layer_class  # the Python bindings' documented down-cast
        plugin = layer.plugin
        core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
        name = getattr(core, "plugin_name", None) or getattr(plugin, "plugin_type", None)
        namespace = getattr(core, "plugin_namespace", None)
        if namespace is None:
            namespace = getattr(plugin, "plugin_namespace", None)
        version = getattr(core, "plugin_version", None) or getattr(plugin, "plugin_version", None)
        if name is not None and namespace is not None and version is not None:
            return f"{namespace}::{name}/{version}"
    return None


def _enum_name(value) -> str:
    """``LayerType.PLUGIN_V3`` -> ``"PLUGIN_V3"`` (pybind11 enums have ``.name``)."""
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value).split(".")[-1]


def layer_records(network, trt) -> list[LayerRecord]:
    records = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = _enum_name(layer.type)
        plugin = _plugin_id(layer, trt) if kind == "PLUGIN_V3" else None
        records.append(LayerRecord(layer.name, kind, plugin))
    return records


# --- build -----------------------------------------------------------------------------------


def build_engine(onnx_path: Path, *, variant: str, res: int, batch: BatchProfile, precision: Precision | None = None,
                 fp16: bool = False, tf32: bool = False, workspace_bytes: int = 1 << 30,
                 plugin_lib: Path | str | None = None, log=print, trt=None, cuda=None,
                 input_name: str = INPUT_NAME, chw: tuple[int, ...] | None = None) -> bytes:
    """Parse ``onnx_path`` for ``variant`` and build a serialized engine (needs TensorRT + GPU).

    ``precision`` (default: :func:`choose_precision` for ``fp16``/``tf32``) must match the
    file: a strongly typed fp16 build needs an fp16-I/O export. ``input_name``/``chw``: for
    graphs other than a classifier export (the op-level tests' one-node models).
    """
    trt = trt or import_tensorrt()
    check_tensorrt_version(trt, variant)
    require_cuda(cuda)
    precision = precision or choose_precision(trt, fp16=fp16, tf32=tf32)
    lib = None
    if variant == "plugin":
        lib = find_plugin_library(plugin_lib)
        load_plugin(lib, trt)
    source = onnx.load(str(onnx_path))
    if precision.fp16_onnx != input_is_fp16(source):
        want = "an fp16-I/O export (export --fp16)" if precision.fp16_onnx else "a float32 export"
        raise ValueError(f"{onnx_path}: the {precision.mode} build needs {want}")
    model = prepare_onnx(source, variant)
    expected = custom_op_nodes(model)
    ops = sorted(set(expected.values()))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise TensorRTUnavailable("TensorRT could not create a builder (no usable GPU?)")
    network = builder.create_network(precision.network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise parse_failure(errors, variant=variant, onnx_path=onnx_path, plugin_lib=lib,
                            trt_version=getattr(trt, "__version__", "?"), ops=ops)
    layers = layer_records(network, trt)
    if variant == "plugin":
        found = check_plugin_layers(expected, layers)
        per_op = ", ".join(f"{sum(1 for v in expected.values() if v == op)} {op} plugin layers ({plugin_id(op)})"
                           for op in ops)
        log(f"[to_trt] network has {per_op}: {found} in all, one per hyena custom-op node")
    else:
        log(f"[to_trt] {variant}: {len(layers)} layers, custom-op bodies inlined")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in precision.clear_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    for name in precision.set_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *batch.shapes(res, chw))
    config.add_optimization_profile(profile)
    log(f"[to_trt] building engine (batch {batch}, {precision.mode}, TF32 {'on' if precision.tf32 else 'off'}); "
        "this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(serialized)


# --- run -------------------------------------------------------------------------------------

_NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "BF16": None, "INT32": np.int32, "INT64": np.int64}


def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy dtype of a ``tensorrt.DataType`` (float32 and float16 are what engines here use)."""
    name = _enum_name(trt_dtype)
    dtype = _NUMPY_DTYPES.get(name)
    if dtype is None:
        raise EngineError(f"engine I/O of type {name} is not supported here (float32 or float16 expected)")
    return np.dtype(dtype)


class EngineRunner:
    """One deserialized engine + execution context with Polygraphy device buffers.

    ``__call__(x)`` copies a numpy NCHW batch in, runs, copies the output back as float32.
    ``enqueue()`` only launches (for timing, after ``prepare(x)``). Every TensorRT call whose
    result says whether it worked is checked.
    """

    def __init__(self, plan: bytes, *, plugin_lib: Path | str | None = None, trt=None, cuda=None,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME):
        self.input_name, self.output_name = input_name, output_name
        self.trt = trt = trt or import_tensorrt()
        self.cuda = cuda = cuda or import_cuda()
        if plugin_lib is not None:
            load_plugin(Path(plugin_lib), trt)
        self.logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime and engine
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError("TensorRT could not deserialize the engine (another TensorRT version or GPU, "
                              "or the plugin library is not loaded)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if input_name not in names or output_name not in names:
            raise EngineError(f"engine I/O tensors are {names}, expected {input_name!r} and {output_name!r}")
        self.in_dtype = numpy_dtype(self.engine.get_tensor_dtype(input_name))
        self.out_dtype = numpy_dtype(self.engine.get_tensor_dtype(output_name))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError("TensorRT could not create an execution context (out of device memory?)")
        self.stream = cuda.Stream()
        self.x = cuda.DeviceArray(shape=(0,), dtype=self.in_dtype)
        self.y = cuda.DeviceArray(shape=(0,), dtype=self.out_dtype)
        self.out_shape: tuple[int, ...] = ()

    def prepare(self, batch: np.ndarray) -> None:
        host = np.ascontiguousarray(batch, dtype=self.in_dtype)
        shape = tuple(int(d) for d in host.shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise EngineError(f"TensorRT refused input shape {shape} for {self.input_name!r}: outside the engine's "
                              "optimisation profile?")
        self.out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        if any(d < 0 for d in self.out_shape):
            raise EngineError(f"output shape {self.out_shape} is unresolved after setting the input shape")
        self.x.resize(shape)
        self.y.resize(self.out_shape)
        self._host = host  # alive until the (asynchronous) copy has surely happened
        self.x.copy_from(host, stream=self.stream)
        for name, buf in ((self.input_name, self.x), (self.output_name, self.y)):
            if not self.context.set_tensor_address(name, buf.ptr):
                raise EngineError(f"TensorRT refused the device address of {name!r}")

    def enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def fetch(self) -> np.ndarray:
        host = np.empty(self.out_shape, dtype=self.out_dtype)
        self.y.copy_to(host, stream=self.stream)
        self.stream.synchronize()
        return host.astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.prepare(batch)
        self.enqueue()
        return self.fetch()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.synchronize()
        # Context before engine before runtime, then the buffers the context pointed at.
        for attr in ("context", "engine", "runtime"):
            self.__dict__.pop(attr, None)
        for buf in (self.x, self.y):
            with contextlib.suppress(Exception):
                buf.free()
        with contextlib.suppress(Exception):
            self.stream.free()

    def __enter__(self) -> EngineRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_engine(plan: bytes, batch: np.ndarray, plugin_lib: Path | str | None = None, *, trt=None,
               cuda=None, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> np.ndarray:
    """Run a serialized engine on a float32 NCHW numpy batch; returns float32 logits (GPU).

    fp16-I/O engines get the batch cast to float16 and their output cast back.
    """
    with EngineRunner(plan, plugin_lib=plugin_lib, trt=trt, cuda=cuda, input_name=input_name,
                      output_name=output_name) as runner:
        return runner(batch)


# --- the reference and the decision ----------------------------------------------------------


def onnx_reference_session(onnx_path: os.PathLike | str, threads: int = 0):
    """An ONNX Runtime CPU session on the exported file (function bodies and all)."""
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def onnx_reference(session, batch: np.ndarray) -> np.ndarray:
    """Logits of ``session`` for a float32 batch (cast to the file's input type), as float32."""
    (inp,) = session.get_inputs()
    feed = batch.astype(np.float16) if inp.type == "tensor(float16)" else batch.astype(np.float32)
    (out,) = session.run([session.get_outputs()[0].name], {inp.name: feed})
    return out.astype(np.float32)


@dataclass
class ParityResult:
    """Engine vs reference on one batch (see :func:`parity_decision`)."""

    name: str
    n: int
    max_abs_diff: float
    scale: float
    tolerance: float
    top1_checked: int
    top1_mismatches: int
    near_ties: int
    finite: bool = True
    ok: bool = field(default=False)

    @property
    def max_rel_diff(self) -> float:
        return self.max_abs_diff / self.scale

    def summary(self) -> str:
        return (f"{self.name}: max rel diff {self.max_rel_diff:.2e} (tol {self.tolerance:g}), top-1 "
                f"{self.top1_checked - self.top1_mismatches}/{self.top1_checked} identical"
                + (f", {self.near_ties} near-ties not compared" if self.near_ties else "")
                + ("" if self.finite else ", NON-FINITE outputs"))


def parity_decision(reference: np.ndarray, got: np.ndarray, tolerance: float, name: str = "batch") -> ParityResult:
    """Whether engine logits ``got`` agree with ``reference`` logits (pure; CPU-tested).

    Allowed difference: ``tolerance`` × max |reference logit| (the batch's logit scale).
    Top-1 must match on every row whose reference top-2 margin exceeds twice the allowed
    difference; on the other rows (near-ties, common with random weights) two logits may
    each move by the allowed amount and legitimately swap, so top-1 is not compared there.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(got, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"{name}: engine output shape {out.shape} != reference shape {ref.shape}")
    finite = bool(np.isfinite(out).all())
    scale = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-12)
    diff = float(np.abs(out - ref).max()) if finite and ref.size else float("inf")
    allowed = tolerance * scale
    if ref.shape[-1] > 1:
        top2 = np.sort(ref, axis=-1)[..., -2:]
        margin = top2[..., 1] - top2[..., 0]
    else:
        margin = np.full(ref.shape[:-1], np.inf)
    decisive = margin > 2 * allowed
    mismatch = (ref.argmax(-1) != out.argmax(-1)) & decisive
    result = ParityResult(name=name, n=int(ref.shape[0]), max_abs_diff=diff, scale=scale, tolerance=tolerance,
                          top1_checked=int(decisive.sum()), top1_mismatches=int(mismatch.sum()),
                          near_ties=int((~decisive).sum()), finite=finite)
    result.ok = finite and diff <= allowed and result.top1_mismatches == 0
    return result


# --- files -----------------------------------------------------------------------------------
