"""The served model as one artifact: the only place a model to serve or export is built
and named.

A :class:`ModelSpec` says what to serve (registry model, resolution, ``--weights``, seed,
extra ``create_model`` arguments). From it:

- :func:`plan_manifest` resolves the weights and describes the model (class count,
  labels, preprocessing) without torch, so a cached artifact is found torch-free;
- :func:`build_served_model` builds the eval-mode torch model with the weights loaded and
  the filters frozen once at the resolution (the torch backend serves exactly this);
- :func:`build_artifact` exports that model to ONNX under a name derived from (model,
  resolution, weights fingerprint, extra arguments, FFTConv body, precision) and writes
  the manifest beside it; an artifact of the same name is reused, not rebuilt.

Precisions (:mod:`hyena_serve.precision`): ``fp32``; ``fp16`` (float16 weights and I/O,
``Kf``/``D`` float32); ``int8``: the fp32 export (the cached one when there is one)
through ONNX Runtime dynamic quantization (:mod:`hyena_serve.exporting.quantize`), the
FFTConv constants kept float32. ``bf16`` has no ONNX form (the torch backend serves it:
``build_served_model(..., precision="bf16")``).

Layout: ``<artifacts>/onnx/<name>.onnx`` + ``<name>.manifest.json``; the manifest is
written last, so its presence marks a complete artifact. See docs/artifacts.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from hyena_serve.contract import FFTCONV_BODIES, FFTCONV_LOWERING_VERSION, ONNX_OPSET
from hyena_serve.files import sha256_file
from hyena_serve.manifest import Manifest, ManifestError, OnnxInfo, load_manifest, manifest_path_for, write_manifest
from hyena_serve.precision import ONNX_PRECISIONS, PrecisionError, check_onnx
from hyena_serve.weights import ResolvedWeights, WeightsError, resolve_weights

log = logging.getLogger(__name__)

#: Precisions the artifact builder exports (bf16: see hyena_serve.precision).
PRECISIONS = ONNX_PRECISIONS
DEFAULT_ARTIFACTS_DIR = Path("artifacts")
MIN_RES, MAX_RES = 16, 2048


class ArtifactError(RuntimeError):
    """The artifact cannot be built or opened; the message is one line for the user."""


@dataclass(frozen=True)
class ModelSpec:
    """What to serve. ``weights``: see :mod:`hyena_serve.weights`; ``seed`` seeds random
    weights; ``model_kwargs`` (sorted (key, value) pairs) go to ``create_model``."""

    model: str
    resolution: int | None = None  # None: the weights' own (a run's) or the variant's
    weights: str = "random"
    seed: int = 0
    model_kwargs: tuple[tuple[str, object], ...] = ()
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.resolution is not None and (not isinstance(self.resolution, int)
                                            or not MIN_RES <= self.resolution <= MAX_RES):
            raise ArtifactError(f"unsupported resolution {self.resolution!r}: expected an integer in "
                                f"[{MIN_RES}, {MAX_RES}]")

    @classmethod
    def of(cls, model: str, resolution: int | None = None, weights: str | os.PathLike = "random", seed: int = 0,
           model_kwargs: dict | None = None, revision: str | None = None) -> ModelSpec:
        kwargs = tuple(sorted((k, _freeze(v)) for k, v in (model_kwargs or {}).items()))
        return cls(model, None if resolution is None else int(resolution), str(weights), seed, kwargs, revision)

    @cached_property
    def resolved(self) -> ResolvedWeights:
        """The weights, found and fingerprinted once (a Hub lookup for auto/pretrained)."""
        return resolve_weights(self.weights, self.model, seed=self.seed, revision=self.revision)


@dataclass(frozen=True)
class Artifact:
    onnx_path: Path
    manifest_path: Path
    manifest: Manifest = field(repr=False)


def plan_manifest(spec: ModelSpec) -> Manifest:
    """The manifest of ``spec``'s model, without the ONNX part (torch-free).

    A training run's manifest (``--weights runs/digits``) supplies the model, its arguments,
    preprocessing and labels; otherwise they come from the registry's variant config.
    """
    from hyena_serve.variants import DEFAULT_CFGS

    try:
        resolved = spec.resolved
    except WeightsError as exc:
        raise ArtifactError(str(exc)) from None
    if resolved.run is not None:
        run = resolved.run
        kwargs = {**run.model_kwargs, **dict(spec.model_kwargs)}
        preprocess, labels, num_classes, model = run.preprocess, run.labels, run.num_classes, run.model
    else:
        if spec.model not in DEFAULT_CFGS:
            raise ArtifactError(f"unknown model {spec.model!r}; available: {', '.join(sorted(DEFAULT_CFGS))}")
        cfg = DEFAULT_CFGS[spec.model]
        kwargs = dict(spec.model_kwargs)
        num_classes = int(kwargs.get("num_classes", cfg.num_classes))
        preprocess, model = cfg.preprocess, spec.model
        labels = "imagenet-1k" if cfg.dataset == "imagenet-1k" and num_classes == cfg.num_classes else ()
    res = spec.resolution or (run.resolution if resolved.run is not None else preprocess.input_size[1])
    return Manifest(model=model, resolution=res, num_classes=num_classes,
                    preprocess=preprocess.at_resolution(res), weights=resolved.info,
                    pretrained=resolved.pretrained, labels=labels, variant=resolved.variant,
                    model_kwargs=kwargs)


def artifact_name(manifest: Manifest, body: str = "matmul", precision: str = "fp32", inline: bool = False) -> str:
    """File stem of an export: model, resolution, weights fingerprint, extra arguments,
    FFTConv body and precision — everything that changes the file's content — and
    ``_inline`` for a file with the FFTConv functions expanded (standard ops only)."""
    name = f"{manifest.model}_{manifest.resolution}_{manifest.weights.fingerprint}"
    if manifest.model_kwargs:
        blob = json.dumps(manifest.model_kwargs, sort_keys=True, default=str)
        name += "_k" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return f"{name}_{body}_{precision}" + ("_inline" if inline else "")


def build_served_model(spec: ModelSpec, manifest: Manifest | None = None, precision: str = "fp32"):
    """The eval-mode torch model ``spec`` describes: weights loaded strictly, filters frozen
    once at the resolution. Random weights come from ``spec.seed``, so every backend and
    every export of the same spec holds the same numbers. ``precision`` ``bf16``/``fp16``
    casts the model, ``Kf``/``D`` kept float32 (the FFT runs in float32, docs/design.md §4);
    its input must then be of that dtype. Returns (model, manifest)."""
    import torch

    if precision not in TORCH_DTYPES:  # the torch backend checks the host first (hyena_serve.precision)
        raise ArtifactError(f"the torch model runs in {', '.join(TORCH_DTYPES)}, not {precision!r}")

    from hyena_serve.models import create_model, load_checkpoint
    from hyena_serve.models.checkpoint import CheckpointMismatchError
    from hyena_serve.models.frozen import freeze_filters

    manifest = manifest or plan_manifest(spec)
    kwargs = dict(manifest.model_kwargs)
    resolved = spec.resolved
    if resolved.path is None:
        # Random weights: the long filters are sized for the served resolution.
        kwargs.setdefault("img_size", manifest.resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = create_model(manifest.model, **kwargs)
    if resolved.path is not None:
        try:
            load_checkpoint(model, resolved.path)
        except (CheckpointMismatchError, ValueError, TypeError, RuntimeError) as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise ArtifactError(f"{resolved.info.source}: {detail[:600]}") from None
    model.eval()
    try:
        freeze_filters(model, manifest.resolution)
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"unsupported resolution {manifest.resolution} for {manifest.model}: {exc}") from None
    if precision != "fp32":
        model = cast_keep_filters(model, TORCH_DTYPES[precision])
    return model, manifest


#: torch dtype of each precision the torch backend runs
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cast_keep_filters(model, dtype):
    """``model`` cast to ``dtype`` (a torch dtype or its name), its frozen ``Kf``/``D``
    left float32 as the op contract asks."""
    import torch

    from hyena_serve.models.frozen import hyena_mixers

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = model.to(dtype)
    for _, mixer in hyena_mixers(model):
        if mixer.frozen_kf is not None:
            mixer.frozen_kf = mixer.frozen_kf.float()
            mixer.frozen_d = mixer.frozen_d.float()
    return model


def find_artifact(spec: ModelSpec, artifacts_dir: str | os.PathLike = DEFAULT_ARTIFACTS_DIR, *,
                  body: str = "matmul", precision: str = "fp32", inline: bool = False) -> Artifact | None:
    """The complete cached artifact of ``spec`` as it would be exported now, or None
    (torch-free)."""
    _check_precision(precision)
    manifest = plan_manifest(spec)
    target = Path(artifacts_dir) / "onnx" / f"{artifact_name(manifest, body, precision, inline)}.onnx"
    return _cached(target, manifest, body, precision, inline)


def _cached(target: Path, manifest: Manifest, body: str, precision: str, inline: bool) -> Artifact | None:
    if not target.is_file() or not manifest_path_for(target).is_file():
        return None
    cached = open_artifact(target)
    return cached if _same_model(cached.manifest, manifest, body, precision, inline) else None


def open_artifact(onnx_path: str | os.PathLike) -> Artifact:
    """An exported file with the manifest beside it (torch-free)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ArtifactError(f"ONNX file not found: {onnx_path}")
    manifest_path = manifest_path_for(onnx_path)
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        raise ArtifactError(f"{exc} (every export writes one beside the .onnx file: export it with "
                            "export/to_onnx.py or hyena-serve export)") from None
    if manifest.onnx is None:
        raise ArtifactError(f"{manifest_path} describes no ONNX file")
    return Artifact(onnx_path, manifest_path, manifest)


def build_artifact(spec: ModelSpec, artifacts_dir: str | os.PathLike = DEFAULT_ARTIFACTS_DIR, *,
                   body: str = "matmul", precision: str = "fp32", check: bool = True, progress: bool = True,
                   out: str | os.PathLike | None = None, force: bool = False, inline: bool = False) -> Artifact:
    """The ONNX artifact of ``spec``: the cached one, or exported now (see the module doc).

    ``out`` writes to that path instead of the cache (its manifest beside it). On any
    failure nothing is left at the target: the export goes to a temporary folder first.
    ``inline``: expand the hyena::FFTConv functions (standard ONNX ops only, for runtimes
    such as OpenVINO that do not expand model-local functions; no FFTConv node for TensorRT).
    """
    if body not in FFTCONV_BODIES:
        raise ArtifactError(f"unknown FFTConv body {body!r}; expected one of {FFTCONV_BODIES}")
    _check_precision(precision)
    manifest = plan_manifest(spec)
    name = artifact_name(manifest, body, precision, inline)
    target = Path(out) if out is not None else Path(artifacts_dir) / "onnx" / f"{name}.onnx"
    cached = None if force else _cached(target, manifest, body, precision, inline)
    if cached is not None:
        log.info("using the cached artifact %s", target)
        return cached
    source = None
    if precision == "int8" and out is None and not force:  # quantize the cached fp32 export if there is one
        source = _cached(Path(artifacts_dir) / "onnx" / f"{artifact_name(manifest, body)}.onnx", manifest, body,
                         "fp32", False)
    return _export(spec, manifest, target, body, precision, check, progress, inline, fp32_source=source)


def _check_precision(precision: str) -> None:
    try:
        check_onnx(precision)
    except PrecisionError as exc:
        raise ArtifactError(str(exc)) from None


def _same_model(cached: Manifest, wanted: Manifest, body: str, precision: str, inline: bool) -> bool:
    """Whether a cached artifact is what would be exported now (same weights, model and
    options, written by the current lowering)."""
    return (cached.weights == wanted.weights and cached.model == wanted.model
            and cached.resolution == wanted.resolution and cached.model_kwargs == wanted.model_kwargs
            and cached.onnx is not None and cached.onnx.fftconv_body == body and cached.onnx.precision == precision
            and cached.onnx.inline == inline and cached.onnx.lowering == FFTCONV_LOWERING_VERSION)


def _export(spec: ModelSpec, manifest: Manifest, target: Path, body: str, precision: str, check: bool,
            progress: bool, inline: bool = False, fp32_source: Artifact | None = None) -> Artifact:
    from hyena_serve.exporting.onnx_export import export_onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        if precision == "int8":
            overloads, quantization = _export_int8(spec, manifest, tmp, target.name, body, check, progress, inline,
                                                   fp32_source)
        else:
            if progress:
                log.warning("exporting %s at %d px (%s) to %s; this takes a while for full-size models, the "
                            "result is cached", manifest.model, manifest.resolution, manifest.weights.describe(),
                            target)
            model, manifest = build_served_model(spec, manifest)
            result = export_onnx(model, manifest.resolution, tmp / target.name, preprocess=manifest.preprocess,
                                 fp16=precision == "fp16", body=body, check=check, progress=progress, inline=inline)
            overloads, quantization = result.overloads, {}
        full = manifest.with_onnx(OnnxInfo(file=target.name, sha256=sha256_file(tmp / target.name),
                                           opset=ONNX_OPSET, precision=precision, fftconv_body=body,
                                           fftconv_plans=overloads, lowering=FFTCONV_LOWERING_VERSION,
                                           inline=inline, quantization=quantization))
        # external-data files first, then the model; the manifest last marks completion
        manifest_path_for(target).unlink(missing_ok=True)
        for path in sorted(tmp.iterdir()):
            if path.name != target.name:
                path.replace(target.parent / path.name)
        (tmp / target.name).replace(target)
        manifest_path = write_manifest(manifest_path_for(target), full)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Artifact(target, manifest_path, full)


def _export_int8(spec: ModelSpec, manifest: Manifest, tmp: Path, name: str, body: str, check: bool, progress: bool,
                 inline: bool, fp32_source: Artifact | None) -> tuple[dict[str, str], dict]:
    """Write the int8 file ``tmp/name`` from the fp32 export (the cached ``fp32_source``,
    or a fresh one, parity-checked against torch when ``check``), quantized in function
    form and inlined afterwards if asked. Returns (FFTConv overloads, the manifest's
    quantization record)."""
    import onnx

    from hyena_serve.exporting.onnx_export import export_onnx, inline_fftconv
    from hyena_serve.exporting.quantize import QuantizeError, quantize_int8

    if fp32_source is not None:
        source, overloads = fp32_source.onnx_path, dict(fp32_source.manifest.onnx.fftconv_plans)
        log.info("int8: quantizing the cached fp32 export %s", source)
    else:
        if progress:
            log.warning("exporting %s at %d px (%s) in fp32 to quantize it to int8; this takes a while for "
                        "full-size models, the result is cached", manifest.model, manifest.resolution,
                        manifest.weights.describe())
        model, _ = build_served_model(spec, manifest)
        (tmp / "fp32").mkdir()
        source = tmp / "fp32" / name
        overloads = export_onnx(model, manifest.resolution, source, preprocess=manifest.preprocess, body=body,
                                check=check, progress=progress).overloads
    try:
        report = quantize_int8(source, tmp / name)
        if check:
            log.info("int8 vs fp32 in ONNX Runtime: %s", _int8_agreement(source, tmp / name, manifest))
    except QuantizeError as exc:
        raise ArtifactError(str(exc)) from None
    if inline:
        onnx.save_model(inline_fftconv(onnx.load(tmp / name)), tmp / name)
    shutil.rmtree(tmp / "fp32", ignore_errors=True)
    if progress:
        log.warning("int8: %d MatMul weights quantized; %d FFTConv nodes, their constants and functions "
                    "checked float32 and unchanged", report.quantized_nodes, report.fp32_nodes_checked)
    return overloads, report.to_manifest()


def _int8_agreement(fp32_path: Path, int8_path: Path, manifest: Manifest) -> str:
    """The int8 file against its fp32 source on the photos and a random batch: a report,
    not a pass/fail test (int8 is judged by ``python -m bench precision``), except that
    non-finite logits fail the export."""
    import numpy as np
    import onnxruntime as ort

    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
    from hyena_serve.exporting.parity import compare, real_batch
    from hyena_serve.exporting.quantize import QuantizeError

    res = manifest.resolution
    batches = {"photos": real_batch(manifest.preprocess),
               "random[4]": np.random.default_rng(0).standard_normal((4, 3, res, res)).astype(np.float32)}
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32_path, int8_path)]
    parts = []
    for label, x in batches.items():
        ref, got = (s.run([OUTPUT_NAME], {INPUT_NAME: x})[0] for s in sessions)
        if not np.isfinite(got).all():
            raise QuantizeError(f"the int8 model gives non-finite logits on {label}")
        r = compare(label, ref, got, rtol=1.0)
        parts.append(f"{label}: top-1 {r['top1_same']}/{r['n']}, max|Δ| {r['max_abs_diff']:.3g} (scale {r['scale']:.3g})")
    return "; ".join(parts)


def _freeze(value):
    """JSON lists -> tuples so a spec is hashable; create_model takes either."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


__all__ = ["Artifact", "ArtifactError", "ModelSpec", "build_artifact", "build_served_model",
           "find_artifact", "open_artifact", "plan_manifest"]
