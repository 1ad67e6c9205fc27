"""Export an eval-mode HyenaPixel-family torch model to ONNX with one ``hyena::FFTConv``
node per mixer.

``export_onnx(model, res, out)`` exports a module; turning a registry name, weights and a
resolution into that module, naming the file and writing its manifest is the artifact
builder's job (:mod:`hyena_serve.artifact`), the one place a served model is built.

1. the filters are frozen at ``res`` unless the model already is (``Kf``/``D`` buffers:
   constants for the exporter, the implicit-filter networks never enter the graph);
2. ``torch.onnx.export(dynamo=True)`` with the FFTConv translation; batch dim dynamic;
3. attach the ``hyena::FFTConv`` function overloads (``body="matmul"`` fast GEMM bodies or
   ``"dft"`` plain DFT bodies);
4. structural checks (one FFTConv per Hyena mixer, no filter-network weights, tensor names),
   write to a temporary file in the target directory, ``onnx.checker`` (full_check), the
   torch-vs-ORT parity check, and only then rename to ``out``. On any failure the
   temporary file is removed: no half-written artifact.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from hyena_serve.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME
from hyena_serve.exporting import fftconv_onnx, spectral_onnx
from hyena_serve.files import atomic_write


class ExportError(RuntimeError):
    """The export cannot proceed (bad arguments or a failed structural check)."""


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def step(self, msg: str):
        t = time.perf_counter()
        if self.enabled:
            print(f"[export] {msg} ...", file=sys.stderr, flush=True)
        yield
        if self.enabled:
            print(f"[export] {msg}: done in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)


def _filter_param_names(model: torch.nn.Module) -> set[str]:
    """Qualified names of every parameter/buffer of the implicit-filter networks."""
    from hyena_serve.models.frozen import hyena_mixers

    ids = set()
    for _, mixer in hyena_mixers(model):
        ids |= {id(t) for t in (*mixer.filter_module.parameters(), *mixer.filter_module.buffers())}
    return {n for n, t in (*model.named_parameters(), *model.named_buffers()) if id(t) in ids}


def structural_check(onnx_model: onnx.ModelProto, torch_model: torch.nn.Module, infos) -> None:
    """One FFTConv per Hyena mixer (with matching plans/Kf shapes), the function overloads
    present, no filter-network weights, contract tensor names."""
    nodes = fftconv_onnx.fftconv_nodes(onnx_model)
    if len(nodes) != len(infos):
        raise ExportError(f"expected {len(infos)} hyena::FFTConv nodes (one per Hyena mixer), found {len(nodes)}")
    init = {t.name: tuple(t.dims) for t in onnx_model.graph.initializer}
    overloads = {f.overload for f in onnx_model.functions if f.name == "FFTConv" and f.domain == "hyena"}
    for node, info in zip(nodes, infos):
        if fftconv_onnx.node_plan(node) != info.plan:
            raise ExportError(f"FFTConv node {node.name!r} has plan {fftconv_onnx.node_plan(node)}, "
                              f"mixer {info.name} expects {info.plan}")
        if init.get(node.input[1]) != (info.channels, *info.plan.spectrum_shape, 2):
            raise ExportError(f"FFTConv node {node.name!r}: Kf is not a ({info.channels}, "
                              f"{info.plan.spectrum_shape}, 2) initializer")
        if node.overload not in overloads:
            raise ExportError(f"FFTConv node {node.name!r}: no function for overload {node.overload!r}")
    filter_names = _filter_param_names(torch_model)
    leaked = sorted(n for n in init if n in filter_names)
    if leaked:
        raise ExportError(f"filter-network weights leaked into the ONNX file: {leaked[:5]}")
    if [i.name for i in onnx_model.graph.input] != [INPUT_NAME] or \
            [o.name for o in onnx_model.graph.output] != [OUTPUT_NAME]:
        raise ExportError("graph inputs/outputs are not named per the contract")


def inline_fftconv(onnx_model: onnx.ModelProto) -> onnx.ModelProto:
    """``onnx_model`` with its local functions expanded in place of their nodes; raises
    :class:`ExportError` if any node outside the default domain is left."""
    import onnx.inliner

    inlined = onnx.inliner.inline_local_functions(onnx_model)
    left = sorted({f"{n.domain}::{n.op_type}" for n in inlined.graph.node if n.domain not in ("", "ai.onnx")})
    if left or len(inlined.functions):
        raise ExportError(f"inlining left custom-domain nodes or functions: {left or list(inlined.functions)}")
    del inlined.opset_import[:]
    inlined.opset_import.extend(o for o in onnx_model.opset_import if o.domain in ("", "ai.onnx"))
    return inlined


def _to_half_keep_filters(model: torch.nn.Module) -> torch.nn.Module:
    from hyena_serve.models.frozen import hyena_mixers

    model = model.half()
    for _, mixer in hyena_mixers(model):  # the op contract: Kf and D stay float32
        mixer.frozen_kf = mixer.frozen_kf.float()
        mixer.frozen_d = mixer.frozen_d.float()
    return model


@dataclass(frozen=True)
class ExportResult:
    path: Path
    #: FFTConv node overload -> function body kind chosen for its plan
    overloads: dict[str, str]


def custom_translation_table() -> dict:
    """The dynamo exporter's translations of every hyena custom op: FFTConv and the
    RFFT2/IRFFT2 pair (AFF mixers)."""
    return {**fftconv_onnx.translation_table(), **spectral_onnx.translation_table()}


def attach_custom_functions(onnx_model: onnx.ModelProto, body: str) -> dict[str, str]:
    """Attach the function bodies of every hyena custom op node (in place); returns the
    FFTConv overloads' body kinds ({overload: strategy})."""
    kinds = fftconv_onnx.attach_functions(onnx_model, body)
    spectral_onnx.attach_functions(onnx_model, body)
    return kinds


def export_onnx(model: torch.nn.Module, res: int, out: str | os.PathLike, *, preprocess=None,
                opset: int = ONNX_OPSET, fp16: bool = False, body: str = "matmul", check: bool = True,
                progress: bool = True, inline: bool = False) -> ExportResult:
    """Export eval-mode ``model`` at ``res``×``res`` to ``out``.

    ``preprocess`` (a :class:`~hyena_serve.preprocess.Preprocessing`) adds real photos to
    the parity check. Raises :class:`ExportError` for bad arguments / structure,
    ``ParityError`` when ORT disagrees with torch; in every failure case nothing is left
    at ``out``.

    ``inline`` expands every hyena::FFTConv node into its function body
    (``onnx.inliner.inline_local_functions``): a file of standard ONNX ops only, for
    runtimes that do not expand model-local functions of a custom domain (OpenVINO); the
    rest of the graph is unchanged. Such a file has no FFTConv node for a TensorRT plugin.
    """
    from hyena_serve.exporting.parity import check_parity
    from hyena_serve.models.frozen import freeze_filters, frozen_resolution, hyena_plans

    if body not in fftconv_onnx.BODIES:
        raise ExportError(f"unknown body {body!r}; expected one of {fftconv_onnx.BODIES}")
    name = getattr(getattr(model, "pretrained_cfg", None), "architecture", type(model).__name__)
    out = Path(out)
    prog = _Progress(progress)
    net = model.eval()
    try:
        infos = hyena_plans(net, res)
        if frozen_resolution(net) != [info.plan for info in infos]:
            with prog.step(f"freeze filters at {res}x{res}"):
                infos = freeze_filters(net, res)
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"unsupported resolution {res} for {name}: {e}") from e
    if fp16:
        net = _to_half_keep_filters(net)
    dtype = torch.float16 if fp16 else torch.float32
    dummy = torch.randn(2, 3, res, res, dtype=dtype)

    with prog.step(f"torch.onnx.export {name} (dynamo)"):
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            exported = torch.onnx.export(
                net, (dummy,), dynamo=True, opset_version=opset, verbose=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                custom_translation_table=custom_translation_table())
        onnx_model = exported.model_proto
    with prog.step(f"attach hyena::FFTConv functions (body={body})"):
        kinds = attach_custom_functions(onnx_model, body)
        structural_check(onnx_model, net, infos)
    if progress:
        print(f"[export] {len(infos)} FFTConv nodes, overloads: "
              + ", ".join(f"{k.split('_n')[0]}->{v}" for k, v in kinds.items()), file=sys.stderr)
    if inline:
        with prog.step("inline the hyena::FFTConv functions (standard ops only)"):
            onnx_model = inline_fftconv(onnx_model)

    with atomic_write(out) as tmp:
        with prog.step(f"write + onnx.checker (full_check) {out}"):
            onnx.save_model(onnx_model, tmp)
            onnx.checker.check_model(tmp, full_check=True)
        if check:
            with prog.step("parity: torch vs ONNX Runtime (skimage photos + random batches)"):
                report = check_parity(net, tmp, preprocess, res=res, fp16=fp16, rtol=1e-2 if fp16 else 1e-4)
            if progress:
                print(f"[export] parity ok: {report.summary()}", file=sys.stderr)
    if progress:
        print(f"[export] wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - prog.t0:.1f}s", file=sys.stderr)
    return ExportResult(out, dict(kinds))
