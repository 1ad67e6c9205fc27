"""The served-model manifest: everything a server needs to know about a model besides its
graph, as one JSON document next to the weights or the exported file.

A manifest travels with every artifact this project writes: the training run
(``runs/digits/manifest.json`` beside its weights), the exported ONNX file
(``<name>.onnx`` + ``<name>.manifest.json``) and the Triton repository (the manifest is a
``config.pbtxt`` parameter, so a gateway in front of Triton reads it from the model
config). The gateway builds its preprocessing, labels and metadata from it alone; that is
why this module, like the gateway, never imports torch. Field reference: docs/artifacts.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from hyena_serve import __version__
from hyena_serve.files import atomic_write
from hyena_serve.labels import class_names, named_labels
from hyena_serve.preprocess import Preprocessing

SCHEMA_VERSION = 1
#: A training run's manifest, inside the run folder.
RUN_MANIFEST = "manifest.json"
#: An exported file's manifest: ``model.onnx`` -> ``model.manifest.json``.
MANIFEST_SUFFIX = ".manifest.json"


class ManifestError(ValueError):
    """A manifest is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from: ``source`` is ``"random"``, ``"file:<name>"`` or
    ``"hf-hub:<org>/<repo>@<revision>/<file>"``; ``sha256`` of the weights file, or the
    ``seed`` of random weights."""

    source: str
    sha256: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.sha256 is None) == (self.seed is None):
            raise ValueError(f"weights {self.source!r}: give exactly one of sha256 and seed")

    @property
    def fingerprint(self) -> str:
        """Short name of these exact weights, for file names."""
        return f"seed{self.seed}" if self.seed is not None else f"w{self.sha256[:12]}"

    def describe(self) -> str:
        return f"random weights (seed {self.seed})" if self.seed is not None else f"{self.source} (sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class OnnxInfo:
    """The exported graph: file name (relative to the manifest), its sha256, the opset,
    precision (``fp32``, ``fp16``: float16 weights and I/O, ``int8``: dynamically quantized
    weights, float32 I/O; see hyena_serve.precision), the FFTConv function body chosen for
    each FFT plan, the version of the lowering that wrote them (0: unknown, before it was
    recorded), whether the FFTConv functions were expanded into standard ops (``inline``)
    and, for int8, how it was quantized (``quantization``)."""

    file: str
    sha256: str
    opset: int
    precision: str = "fp32"
    fftconv_body: str = "matmul"
    fftconv_plans: dict[str, str] = field(default_factory=dict)
    lowering: int = 0
    inline: bool = False
    quantization: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """One served model. ``labels`` is a tuple of class names or the name of a shipped
    list (``"imagenet-1k"``); ``model_kwargs`` are the ``create_model`` arguments that
    rebuild the architecture (e.g. the digits model's dims)."""

    model: str
    resolution: int
    num_classes: int
    preprocess: Preprocessing
    weights: WeightsInfo
    pretrained: bool
    labels: tuple[str, ...] | str = ()
    variant: str = ""
    model_kwargs: dict = field(default_factory=dict)
    onnx: OnnxInfo | None = None
    package_version: str = __version__
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # One canonical form (JSON's), so a manifest read back compares equal to the one written.
        object.__setattr__(self, "model_kwargs", _jsonable(self.model_kwargs))
        if not isinstance(self.labels, str):
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.resolution < 1 or self.num_classes < 1:
            raise ValueError(f"resolution and num_classes must be positive, got {self.resolution}, {self.num_classes}")
        if self.preprocess.input_size[1:] != (self.resolution, self.resolution):
            raise ValueError(f"preprocess input_size {self.preprocess.input_size} does not match resolution "
                             f"{self.resolution}")
        if not isinstance(self.labels, str) and self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes")

    def class_names(self) -> tuple[str, ...]:
        """One name per class index."""
        if isinstance(self.labels, str):
            names = named_labels(self.labels)
            if len(names) != self.num_classes:
                raise ValueError(f"label list {self.labels!r} has {len(names)} names for {self.num_classes} classes")
            return names
        return tuple(self.labels) if self.labels else class_names(self.num_classes)

    def with_onnx(self, onnx: OnnxInfo) -> Manifest:
        return replace(self, onnx=onnx)

    # --- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {
            "schema": self.schema,
            "model": self.model,
            "variant": self.variant,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "labels": self.labels if isinstance(self.labels, str) else list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "weights": {"source": self.weights.source, "sha256": self.weights.sha256, "seed": self.weights.seed},
            "pretrained": self.pretrained,
            "model_kwargs": _jsonable(self.model_kwargs),
            "package_version": self.package_version,
        }
        if self.onnx is not None:
            d["onnx"] = {k: getattr(self.onnx, k) for k in OnnxInfo.__dataclass_fields__}
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> Manifest:
        if not isinstance(d, Mapping):
            raise ValueError("a manifest is a JSON object")
        schema = int(d.get("schema", 0))
        if schema != SCHEMA_VERSION:
            raise ValueError(f"manifest schema {schema} is not supported (this version reads {SCHEMA_VERSION})")
        try:
            w = d["weights"]
            labels = d.get("labels", ())
            onnx = d.get("onnx")
            return cls(
                model=str(d["model"]),
                variant=str(d.get("variant", "")),
                resolution=int(d["resolution"]),
                num_classes=int(d["num_classes"]),
                labels=labels if isinstance(labels, str) else tuple(str(v) for v in labels),
                preprocess=Preprocessing.from_dict(d["preprocess"]),
                weights=WeightsInfo(str(w["source"]), w.get("sha256"), w.get("seed")),
                pretrained=bool(d["pretrained"]),
                model_kwargs=dict(d.get("model_kwargs", {})),
                onnx=OnnxInfo(**onnx) if onnx is not None else None,
                package_version=str(d.get("package_version", "")),
                schema=schema,
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def from_json(cls, text: str, origin: str = "manifest") -> Manifest:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, ValueError) as exc:
            raise ManifestError(f"{origin}: not a valid hyena_serve manifest: {exc}") from None


def manifest_path_for(artifact: str | os.PathLike) -> Path:
    """Where the manifest of an exported file lives: ``x.onnx`` -> ``x.manifest.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + MANIFEST_SUFFIX)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest file; :class:`ManifestError` naming the path if it is missing or bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    return Manifest.from_json(text, origin=str(path))


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(manifest.to_json() + "\n", encoding="utf-8")
    return Path(path)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
