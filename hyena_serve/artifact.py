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
from hyena_serve.weights import ResolvedWeights, WeightsError, resolve_weights

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
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


def build_served_model(spec: ModelSpec, manifest: Manifest | None = None):
    """The eval-mode torch model ``spec`` describes: weights loaded strictly, filters frozen
    once at the resolution. Random weights come from ``spec.seed``, so every backend and
    every export of the same spec holds the same numbers. Returns (model, manifest)."""
    import torch

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
    return model, manifest


def find_artifact(spec: ModelSpec, artifacts_dir: str | os.PathLike = DEFAULT_ARTIFACTS_DIR, *,
                  body: str = "matmul", precision: str = "fp32", inline: bool = False) -> Artifact | None:
    """The complete cached artifact of ``spec`` as it would be exported now, or None
    (torch-free)."""
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
    if precision not in PRECISIONS:
        raise ArtifactError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    manifest = plan_manifest(spec)
    name = artifact_name(manifest, body, precision, inline)
    target = Path(out) if out is not None else Path(artifacts_dir) / "onnx" / f"{name}.onnx"
    cached = None if force else _cached(target, manifest, body, precision, inline)
    if cached is not None:
        log.info("using the cached artifact %s", target)
        return cached
    return _export(spec, manifest, target, body, precision, check, progress, inline)


def _same_model(cached: Manifest, wanted: Manifest, body: str, precision: str, inline: bool) -> bool:
    """Whether a cached artifact is what would be exported now (same weights, model and
    options, written by the current lowering)."""
    return (cached.weights == wanted.weights and cached.model == wanted.model
            and cached.resolution == wanted.resolution and cached.model_kwargs == wanted.model_kwargs
            and cached.onnx is not None and cached.onnx.fftconv_body == body and cached.onnx.precision == precision
            and cached.onnx.inline == inline and cached.onnx.lowering == FFTCONV_LOWERING_VERSION)


def _export(spec: ModelSpec, manifest: Manifest, target: Path, body: str, precision: str, check: bool,
            progress: bool, inline: bool = False) -> Artifact:
    from hyena_serve.exporting.onnx_export import export_onnx

    if progress:
        log.warning("exporting %s at %d px (%s) to %s; this takes a while for full-size models, the result is "
                    "cached", manifest.model, manifest.resolution, manifest.weights.describe(), target)
    model, manifest = build_served_model(spec, manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        result = export_onnx(model, manifest.resolution, tmp / target.name, preprocess=manifest.preprocess,
                             fp16=precision == "fp16", body=body, check=check, progress=progress, inline=inline)
        full = manifest.with_onnx(OnnxInfo(file=target.name, sha256=sha256_file(result.path), opset=ONNX_OPSET,
                                           precision=precision, fftconv_body=body,
                                           fftconv_plans=result.overloads, lowering=FFTCONV_LOWERING_VERSION,
                                           inline=inline))
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


def _freeze(value):
    """JSON lists -> tuples so a spec is hashable; create_model takes either."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


__all__ = ["Artifact", "ArtifactError", "ModelSpec", "build_artifact", "build_served_model",
           "find_artifact", "open_artifact", "plan_manifest"]
