"""The Triton model repository: one config template and the step that fills it.

Layout (Triton's): ``<repo>/<entry>/config.pbtxt`` plus numbered version folders that
hold generated artifacts and are git-ignored. For a model ``M`` there are three entries:

- ``M_trt``:  TensorRT plan (``1/model.plan``, written by ``export/to_trt.py``), GPU only;
- ``M_onnx``: ONNX Runtime backend (``1/model.onnx``), CPU or GPU;
- ``M_cpu``:  Triton's Python backend running ``1/model.onnx`` with onnxruntime on the
  CPU; it is the entry the ``tritonserver`` from the ``nvidia-pytriton`` wheel can serve
  (that build has no ONNX Runtime or TensorRT backend).

The Python backend only looks for ``model.py`` inside the version folder (the config's
``default_model_filename`` is relative to it), and version folders are not committed.
So the committed source is ``hyena_serve/runtime/triton_python_model.py`` and
:func:`fill_repository` copies it to ``M_cpu/1/model.py`` next to the ONNX file.

Every ``config.pbtxt`` is produced by :func:`config_pbtxt`. Filled entries carry the
served model's manifest as the ``hyena_manifest`` parameter, so a gateway in front of
Triton learns preprocessing and labels from the model config. The committed configs are
the template's output for the defaults without a manifest (a test checks this): a
gateway refuses them until ``hyena-serve repo`` has filled the repository.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hyena_serve.artifact import Artifact
from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME, TRITON_MANIFEST_PARAMETER
from hyena_serve.manifest import Manifest, manifest_path_for

DEFAULT_MODEL = "hpx_former_s18"
DEFAULT_INPUT_SIZE = (3, 224, 224)
DEFAULT_NUM_CLASSES = 1000

MAX_BATCH_SIZE = 8
PREFERRED_BATCH_SIZES = (4, 8)
MAX_QUEUE_DELAY_US = 2000
VERSION = "1"

#: Source of the Python backend's ``model.py`` (copied into the version folder).
PYTHON_MODEL_SOURCE = Path(__file__).with_name("runtime") / "triton_python_model.py"
ONNX_FILENAME = "model.onnx"


@dataclass(frozen=True)
class Flavour:
    """One way of serving a model: how Triton runs it and where its artifact goes."""

    suffix: str
    runtime_line: str  # the ``platform:`` or ``backend:`` line
    instance_kind: str
    artifact: str  # file name inside the version folder
    parameters: tuple[tuple[str, str], ...] = ()


FLAVOURS: dict[str, Flavour] = {
    "trt": Flavour("trt", 'platform: "tensorrt_plan"', "KIND_GPU", "model.plan"),
    "onnx": Flavour("onnx", 'backend: "onnxruntime"', "KIND_AUTO", ONNX_FILENAME),
    # intra_op_num_threads "0" lets onnxruntime pick (one thread per core).
    "cpu": Flavour(
        "cpu", 'backend: "python"', "KIND_CPU", ONNX_FILENAME, (("intra_op_num_threads", "0"),)
    ),
}


def entry_name(model_name: str, flavour: str) -> str:
    """Folder (and Triton model) name of ``model_name`` served as ``flavour``."""
    return f"{model_name}_{FLAVOURS[flavour].suffix}"


def config_pbtxt(flavour: str = "cpu", manifest: Manifest | None = None, *, model_name: str = DEFAULT_MODEL) -> str:
    """Text of ``config.pbtxt`` for the model ``manifest`` describes, served as ``flavour``
    (without a manifest: the template for the default model, without the parameter).

    The batch dimension is left out of ``dims`` (``max_batch_size`` > 0 makes it ``-1``).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; expected one of {sorted(FLAVOURS)}")
    if manifest is not None:
        model_name, input_size, num_classes = manifest.model, manifest.preprocess.input_size, manifest.num_classes
    else:
        input_size, num_classes = DEFAULT_INPUT_SIZE, DEFAULT_NUM_CLASSES
    fl = FLAVOURS[flavour]
    preferred = ", ".join(str(b) for b in PREFERRED_BATCH_SIZES)
    lines = [
        f'name: "{entry_name(model_name, flavour)}"',
        fl.runtime_line,
        f"max_batch_size: {MAX_BATCH_SIZE}",
        "input [",
        "  {",
        f'    name: "{INPUT_NAME}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {', '.join(map(str, input_size))} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{OUTPUT_NAME}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {num_classes} ]",
        "  }",
        "]",
        "instance_group [",
        "  {",
        "    count: 1",
        f"    kind: {fl.instance_kind}",
        "  }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {preferred} ]",
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}",
        "}",
    ]
    parameters = list(fl.parameters)
    if manifest is not None:
        parameters.append((TRITON_MANIFEST_PARAMETER, manifest.to_json(indent=None)))
    for key, value in parameters:
        lines += [
            "parameters {",
            f'  key: "{key}"',
            f'  value: {{ string_value: "{_pbtxt_string(value)}" }}',
            "}",
        ]
    return "\n".join(lines) + "\n"


def _pbtxt_string(text: str) -> str:
    """Escape for a protobuf text-format string literal (JSON here is ASCII, one line)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def write_entry_config(repo_dir: str | Path, manifest: Manifest, flavour: str) -> Path:
    """(Re)write ``<repo>/<model>_<flavour>/config.pbtxt`` for ``manifest``; returns the entry dir."""
    from hyena_serve.files import atomic_write

    entry = Path(repo_dir) / entry_name(manifest.model, flavour)
    with atomic_write(entry / "config.pbtxt") as tmp:
        tmp.write_text(config_pbtxt(flavour, manifest))
    return entry


def fill_repository(repo_dir: str | Path, artifact: Artifact, *, link: bool = False) -> dict[str, Path]:
    """Put an exported artifact into the repository and make every config match it.

    Copies (or, with ``link=True``, symlinks) the ONNX file, its external-data files and its
    manifest to ``<model>_onnx/1/`` and ``<model>_cpu/1/``, copies the Python backend's
    ``model.py`` into ``<model>_cpu/1/``, and writes every entry's ``config.pbtxt`` with the
    manifest. The TensorRT entry's plan is written by ``export/to_trt.py``.
    Returns ``{flavour: entry dir}``.
    """
    onnx_path = artifact.onnx_path.resolve()
    manifest = artifact.manifest
    extra_files = _check_onnx(onnx_path, manifest.preprocess.input_size, manifest.num_classes)
    entries = {flavour: write_entry_config(repo_dir, manifest, flavour) for flavour in FLAVOURS}
    for flavour in ("onnx", "cpu"):
        version_dir = entries[flavour] / VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        _place(onnx_path, version_dir / ONNX_FILENAME, link)
        _place(artifact.manifest_path.resolve(), manifest_path_for(version_dir / ONNX_FILENAME), link)
        for extra in extra_files:
            _place(onnx_path.parent / extra, version_dir / extra, link)
    shutil.copyfile(PYTHON_MODEL_SOURCE, entries["cpu"] / VERSION / "model.py")
    (entries["trt"] / VERSION).mkdir(exist_ok=True)
    return entries


def python_backend_models(repo_dir: str | Path) -> list[str]:
    """Names of the repository's entries served by Triton's Python backend."""
    pattern = re.compile(r'^\s*backend:\s*"python"\s*$', re.MULTILINE)
    return sorted(
        cfg.parent.name
        for cfg in Path(repo_dir).glob("*/config.pbtxt")
        if pattern.search(cfg.read_text())
    )


def _place(src: Path, dst: Path, link: bool) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if link:
        dst.symlink_to(src)
    else:
        shutil.copyfile(src, dst)


def _check_onnx(onnx_path: Path, input_size: tuple[int, int, int], num_classes: int) -> list[str]:
    """Check the graph's I/O against the contract; return its external-data file names.

    Skipped (returns ``[]``) when the ``onnx`` package is not installed.
    """
    try:
        import onnx
    except ImportError:
        return []
    model = onnx.load(str(onnx_path), load_external_data=False)

    def dims(value_info) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise ValueError(
            f"{onnx_path}: graph inputs {sorted(inputs)} / outputs {sorted(outputs)} must "
            f"include {INPUT_NAME!r} / {OUTPUT_NAME!r} (hyena_serve.contract)"
        )
    for name, shape in ((INPUT_NAME, inputs[INPUT_NAME]), (OUTPUT_NAME, outputs[OUTPUT_NAME])):
        if shape and isinstance(shape[0], int) and shape[0] > 0:
            raise ValueError(
                f"{onnx_path}: {name!r} has a fixed batch dimension {shape[0]}; Triton "
                f"batches up to {MAX_BATCH_SIZE}, so export with a dynamic batch dim"
            )
    if inputs[INPUT_NAME][1:] not in (list(input_size), []):
        raise ValueError(
            f"{onnx_path}: input {INPUT_NAME!r} has dims {inputs[INPUT_NAME]}, "
            f"expected [batch, {', '.join(map(str, input_size))}]"
        )
    if outputs[OUTPUT_NAME][1:] not in ([num_classes], []):
        raise ValueError(
            f"{onnx_path}: output {OUTPUT_NAME!r} has dims {outputs[OUTPUT_NAME]}, "
            f"expected [batch, {num_classes}]"
        )
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(locations)
