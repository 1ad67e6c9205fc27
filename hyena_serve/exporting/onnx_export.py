"""Export a HyenaPixel-family classifier to ONNX with one ``hyena::FFTConv`` node per mixer.

``export_onnx(model_name_or_model, res, out)``:

1. build the model (from the registry, optionally loading a checkpoint), ``eval()``;
2. freeze its filters at ``res`` (``Kf``/``D`` buffers: constants for the exporter, the
   implicit-filter networks never enter the graph);
3. ``torch.onnx.export(dynamo=True)`` with the FFTConv translation; batch dim dynamic;
4. attach the ``hyena::FFTConv`` function overloads (``body="matmul"`` fast GEMM bodies or
   ``"dft"`` plain DFT bodies);
5. structural checks (one FFTConv per Hyena mixer, no filter-network weights, tensor names),
   write to a temporary file in the target directory, ``onnx.checker`` (full_check), the
   torch-vs-ORT parity check, and only then rename to ``out``. On any failure the
   temporary file is removed: no half-written artifact.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnx
import torch

from hyena_serve.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME
from hyena_serve.exporting import fftconv_onnx

MIN_RES, MAX_RES = 32, 2048


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


def default_output(model_name: str, res: int) -> Path:
    return Path("artifacts") / "onnx" / f"{model_name}_{res}.onnx"


def check_resolution(res: int) -> None:
    if not isinstance(res, int) or not (MIN_RES <= res <= MAX_RES):
        raise ExportError(f"unsupported resolution {res!r}: expected an integer in [{MIN_RES}, {MAX_RES}]")


def build_model(model: str | torch.nn.Module, res: int, checkpoint=None,
                filter_size: int | None = None) -> torch.nn.Module:
    """The eval-mode model to export. From a name: without a checkpoint the long filters
    are sized for ``res`` (unless ``filter_size``); with one, for the config's filter size
    (the checkpoint's parameter shapes)."""
    if isinstance(model, torch.nn.Module):
        return model.eval()
    from hyena_serve.models import create_model, list_models

    if model not in list_models():
        raise ExportError(f"unknown model {model!r}; available: {', '.join(list_models())}")
    kwargs = {}
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ExportError(f"checkpoint not found: {checkpoint}")
        if filter_size is not None:
            kwargs["img_size"] = filter_size
        return create_model(model, checkpoint_path=checkpoint, **kwargs).eval()
    kwargs["img_size"] = filter_size or res
    return create_model(model, **kwargs).eval()


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


def _to_half_keep_filters(model: torch.nn.Module) -> torch.nn.Module:
    from hyena_serve.models.frozen import hyena_mixers

    model = model.half()
    for _, mixer in hyena_mixers(model):  # the op contract: Kf and D stay float32
        mixer.frozen_kf = mixer.frozen_kf.float()
        mixer.frozen_d = mixer.frozen_d.float()
    return model


def export_onnx(model: str | torch.nn.Module, res: int = 224, out: str | os.PathLike | None = None,
                checkpoint: str | os.PathLike | None = None, opset: int = ONNX_OPSET, fp16: bool = False,
                body: str = "matmul", check: bool = True, progress: bool = True,
                filter_size: int | None = None) -> Path:
    """Export ``model`` (registry name or module) at ``res``×``res`` to ``out``; returns the path.

    Raises :class:`ExportError` for bad arguments / structure, ``ParityError`` when ORT
    disagrees with torch; in every failure case nothing is left at ``out``.
    """
    from hyena_serve.exporting.parity import check_parity
    from hyena_serve.models.frozen import freeze_filters

    check_resolution(res)
    if body not in fftconv_onnx.BODIES:
        raise ExportError(f"unknown body {body!r}; expected one of {fftconv_onnx.BODIES}")
    name = model if isinstance(model, str) else type(model).__name__
    out = Path(out) if out is not None else default_output(name, res)
    prog = _Progress(progress)

    with prog.step(f"build {name}"):
        net = build_model(model, res, checkpoint, filter_size)
    config = getattr(net, "pretrained_cfg", None)
    with prog.step(f"freeze filters at {res}x{res}"):
        try:
            infos = freeze_filters(net, res)
        except (ValueError, RuntimeError) as e:
            raise ExportError(f"unsupported resolution {res} for {name}: {e}") from e
    if fp16:
        net = _to_half_keep_filters(net)
    dtype = torch.float16 if fp16 else torch.float32
    dummy = torch.randn(2, 3, res, res, dtype=dtype)

    with prog.step("torch.onnx.export (dynamo)"):
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            exported = torch.onnx.export(
                net, (dummy,), dynamo=True, opset_version=opset, verbose=False, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                custom_translation_table=fftconv_onnx.translation_table())
        onnx_model = exported.model_proto
    with prog.step(f"attach hyena::FFTConv functions (body={body})"):
        kinds = fftconv_onnx.attach_functions(onnx_model, body)
        structural_check(onnx_model, net, infos)
    if progress:
        print(f"[export] {len(infos)} FFTConv nodes, overloads: "
              + ", ".join(f"{k.split('_n')[0]}->{v}" for k, v in kinds.items()), file=sys.stderr)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with prog.step(f"write + onnx.checker (full_check) {out}"):
            onnx.save_model(onnx_model, tmp)
            onnx.checker.check_model(tmp, full_check=True)
        if check:
            with prog.step("parity: torch vs ONNX Runtime (skimage photos + random batches)"):
                report = check_parity(net, tmp, config, res=res, fp16=fp16, rtol=1e-2 if fp16 else 1e-4)
            if progress:
                print(f"[export] parity ok: {report.summary()}", file=sys.stderr)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; artifacts are shared files
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if progress:
        print(f"[export] wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - prog.t0:.1f}s", file=sys.stderr)
    return out
