"""Build a TensorRT engine from an exported ONNX model, with the fused FFTConv plugin.

What needs neither TensorRT nor a GPU (argument parsing, preparing the ONNX file for each
build variant, checking the parsed network for the plugin layers, writing the plan and
its Triton config atomically) is plain Python here and unit-tested on CPU hosts. The
TensorRT calls are confined to :func:`build_engine` and :func:`run_engine`, which import
``tensorrt`` lazily and raise :class:`TensorRTUnavailable` with a one-line reason when the
package, the GPU or the plugin library is missing.

Variants (``--fftconv``):

- ``plugin``: the FFTConv nodes keep ``plugin_namespace``/``plugin_version``, the plugin
  library is loaded, and the built network must contain one plugin layer per node —
  TensorRT's ONNX parser silently inlines the node's local function when the plugin is not
  registered, so this is checked, not assumed;
- ``native-dft``: the plain DFT function body, plugin attributes removed, parsed into
  TensorRT's own DFT layers (TensorRT >= 11.2; the baseline the plugin must beat);
- ``gemm``: the GEMM-lowered function body, plugin attributes removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx

from hyena_serve.contract import INPUT_NAME, ONNX_OP_DOMAIN, ONNX_OP_TYPE, OUTPUT_NAME

VARIANTS = ("plugin", "native-dft", "gemm")
#: The FFTConv function body each variant exports (``export_onnx(body=...)``).
VARIANT_BODY = {"plugin": "matmul", "native-dft": "dft", "gemm": "matmul"}
PLUGIN_ATTRIBUTES = ("plugin_namespace", "plugin_version")
PLUGIN_LIB_ENV = "HYENA_FFTCONV_PLUGIN"
DEFAULT_PLUGIN_LIB = Path("export/plugins/fftconv/build/libhyena_fftconv_plugin.so")


class TensorRTUnavailable(RuntimeError):
    """TensorRT, a CUDA GPU or the plugin library is not available on this host."""


class PluginLayersMissing(RuntimeError):
    """The parsed network does not contain the FFTConv plugin layers the ONNX file asks for."""


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

    def shapes(self, res: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, 3, res, res) for b in (self.min, self.opt, self.max))  # type: ignore[return-value]


def _is_fftconv(node: onnx.NodeProto) -> bool:
    """An FFTConv node, under its own name or a per-overload one (``FFTConv__<overload>``)."""
    return node.domain == ONNX_OP_DOMAIN and (node.op_type == ONNX_OP_TYPE or node.op_type.startswith(f"{ONNX_OP_TYPE}__"))


def fftconv_node_names(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if _is_fftconv(n)]


def prepare_onnx(model: onnx.ModelProto, variant: str) -> onnx.ModelProto:
    """The ONNX model TensorRT should parse for ``variant`` (a modified copy).

    For ``plugin`` every FFTConv node must carry the plugin attributes (the parser then
    tries the registered plugin first). For the other variants the attributes are removed
    so that the parser uses the node's local function body instead.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown FFTConv variant {variant!r}; expected one of {VARIANTS}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for n in out.graph.node if _is_fftconv(n)]
    if not nodes:
        raise ValueError("the ONNX model has no hyena::FFTConv node: not a hyena_serve export")
    for node in nodes:
        names = {a.name for a in node.attribute}
        if variant == "plugin":
            missing = [a for a in PLUGIN_ATTRIBUTES if a not in names]
            if missing:
                raise ValueError(f"FFTConv node {node.name!r} lacks {missing}: TensorRT would not pick the plugin")
        else:
            kept = [a for a in node.attribute if a.name not in PLUGIN_ATTRIBUTES]
            del node.attribute[:]
            node.attribute.extend(kept)
    if variant != "plugin":
        _unique_function_names(out)
    return out


def _unique_function_names(model: onnx.ModelProto) -> None:
    """Give every FFTConv function overload a name of its own (``FFTConv__<overload>``).

    The exporter tells the per-plan bodies apart by the IR-10 ``overload`` field; a parser
    that looks functions up by (domain, name) only would take one body for every node. With
    unique names the file means the same to every consumer.
    """
    for fn in model.functions:
        if fn.domain == ONNX_OP_DOMAIN and fn.name == ONNX_OP_TYPE and fn.overload:
            fn.name = f"{ONNX_OP_TYPE}__{fn.overload}"
            fn.overload = ""
    for node in model.graph.node:
        if node.domain == ONNX_OP_DOMAIN and node.op_type == ONNX_OP_TYPE and node.overload:
            node.op_type = f"{ONNX_OP_TYPE}__{node.overload}"
            node.overload = ""


def check_plugin_layers(expected_nodes: list[str], layers: Iterable[tuple[str, str]]) -> int:
    """Check the parsed network has one FFTConv plugin layer per FFTConv node.

    ``layers``: ``(layer name, layer type name)`` of every layer of the network (the type
    names of ``tensorrt.LayerType``, e.g. ``"PLUGIN_V3"``). Returns the number of plugin
    layers found; raises :class:`PluginLayersMissing` with what was found otherwise.
    """
    layers = list(layers)
    plugin_layers = [name for name, kind in layers if kind.startswith("PLUGIN")]
    if len(plugin_layers) == len(expected_nodes):
        return len(plugin_layers)
    kinds: dict[str, int] = {}
    for _, kind in layers:
        kinds[kind] = kinds.get(kind, 0) + 1
    raise PluginLayersMissing(
        f"expected {len(expected_nodes)} FFTConv plugin layers, the network has {len(plugin_layers)} "
        f"(layers by type: {dict(sorted(kinds.items()))}). TensorRT's ONNX parser inlines the "
        "node's function body when the plugin is not registered: check that the plugin library "
        "was built against this TensorRT version and registers FFTConv/hyena/1."
    )


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


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False): "
                                  "a TensorRT engine can only be built on the GPU that will run it")


def load_plugin(path: Path, trt) -> None:
    """Load the plugin library into this process; it registers its creator on load."""
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise TensorRTUnavailable(f"cannot load plugin library {path}: {exc}") from None
    registry = trt.get_plugin_registry()
    if registry.get_creator("FFTConv", "1", "hyena") is None:
        raise TensorRTUnavailable(f"{path} loaded but FFTConv/1 in namespace 'hyena' is not registered")


def _layer_records(network, trt) -> list[tuple[str, str]]:
    records = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        records.append((layer.name, str(layer.type).split(".")[-1]))
    return records


def build_engine(onnx_path: Path, *, variant: str, res: int, batch: BatchProfile, fp16: bool,
                 workspace_bytes: int, plugin_lib: Path | None, log=print) -> bytes:
    """Parse ``onnx_path`` for ``variant`` and build a serialized engine (needs TensorRT + GPU)."""
    trt = import_tensorrt()
    require_cuda()
    logger = trt.Logger(trt.Logger.WARNING)
    if variant == "plugin":
        load_plugin(find_plugin_library(plugin_lib), trt)
    model = prepare_onnx(onnx.load(str(onnx_path)), variant)
    expected = fftconv_node_names(model)

    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(prepared))
        if not parser.parse_from_file(str(prepared)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    layers = _layer_records(network, trt)
    if variant == "plugin":
        found = check_plugin_layers(expected, layers)
        log(f"[to_trt] network has {found} FFTConv plugin layers (one per hyena::FFTConv node)")
    else:
        log(f"[to_trt] {variant}: {len(layers)} layers, FFTConv bodies inlined")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise TensorRTUnavailable("this TensorRT builds strongly typed networks only: export with fp16 I/O "
                                      "instead of --fp16")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *batch.shapes(res))
    config.add_optimization_profile(profile)
    log(f"[to_trt] building engine (batch {batch.min}:{batch.opt}:{batch.max}, fp16={fp16}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(serialized)


def run_engine(plan: bytes, batch, plugin_lib: Path | None = None):
    """Run a serialized engine on a float32 NCHW numpy batch; returns float32 logits (GPU)."""
    import numpy as np
    import torch

    trt = import_tensorrt()
    require_cuda()
    if plugin_lib is not None:
        load_plugin(plugin_lib, trt)
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the engine")
    context = engine.create_execution_context()
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
    context.set_input_shape(INPUT_NAME, tuple(x.shape))
    out_shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
    y = torch.empty(out_shape, dtype=torch.float32, device="cuda")
    context.set_tensor_address(INPUT_NAME, x.data_ptr())
    context.set_tensor_address(OUTPUT_NAME, y.data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return y.cpu().numpy()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates the file 0600; give the artifact the usual umask-based mode so a
        # server running as another user (the Triton container) can read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
