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

Every ``config.pbtxt`` is produced by :func:`config_pbtxt`; the committed ones are its
output for the defaults (a test checks this), so edit the template, not the files.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

DEFAULT_MODEL = "hpx_former_s18"
DEFAULT_RES = 224
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


def config_pbtxt(
    model_name: str = DEFAULT_MODEL,
    flavour: str = "cpu",
    res: int = DEFAULT_RES,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> str:
    """Text of ``config.pbtxt`` for ``model_name`` served as ``flavour``.

    The batch dimension is left out of ``dims`` (``max_batch_size`` > 0 makes it ``-1``).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; expected one of {sorted(FLAVOURS)}")
    if res < 1 or num_classes < 1:
        raise ValueError(f"res and num_classes must be positive, got {res}, {num_classes}")
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
        f"    dims: [ 3, {res}, {res} ]",
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
    for key, value in fl.parameters:
        lines += [
            "parameters {",
            f'  key: "{key}"',
            f'  value: {{ string_value: "{value}" }}',
            "}",
        ]
    return "\n".join(lines) + "\n"


def write_configs(
    repo_dir: str | Path,
    model_name: str = DEFAULT_MODEL,
    res: int = DEFAULT_RES,
    num_classes: int = DEFAULT_NUM_CLASSES,
) -> dict[str, Path]:
    """(Re)write ``config.pbtxt`` of every flavour; returns ``{flavour: entry dir}``."""
    repo = Path(repo_dir)
    entries = {}
    for flavour in FLAVOURS:
        entry = repo / entry_name(model_name, flavour)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "config.pbtxt").write_text(config_pbtxt(model_name, flavour, res, num_classes))
        entries[flavour] = entry
    return entries


def fill_repository(
    repo_dir: str | Path,
    onnx_path: str | Path,
    model_name: str = DEFAULT_MODEL,
    res: int = DEFAULT_RES,
    num_classes: int = DEFAULT_NUM_CLASSES,
    *,
    link: bool = False,
) -> dict[str, Path]:
    """Put an exported ONNX model into the repository and make the configs match it.

    Copies (or, with ``link=True``, symlinks) ``onnx_path`` and its external-data files to
    ``<model>_onnx/1/`` and ``<model>_cpu/1/``, copies the Python backend's ``model.py``
    into ``<model>_cpu/1/``, and rewrites every entry's ``config.pbtxt`` for ``res`` and
    ``num_classes``. The TensorRT entry's plan is written by ``export/to_trt.py``.
    Returns ``{flavour: entry dir}``.
    """
    onnx_path = Path(onnx_path).resolve()
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    extra_files = _check_onnx(onnx_path, res, num_classes)

    entries = write_configs(repo_dir, model_name, res, num_classes)
    for flavour in ("onnx", "cpu"):
        version_dir = entries[flavour] / VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        _place(onnx_path, version_dir / ONNX_FILENAME, link)
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


def _check_onnx(onnx_path: Path, res: int, num_classes: int) -> list[str]:
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
    if inputs[INPUT_NAME][1:] not in ([3, res, res], []):
        raise ValueError(
            f"{onnx_path}: input {INPUT_NAME!r} has dims {inputs[INPUT_NAME]}, "
            f"expected [batch, 3, {res}, {res}]"
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


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=fill_repository.__doc__.split("\n")[0])
    parser.add_argument("onnx_path", nargs="?", help="exported model; omit to only write configs")
    parser.add_argument("--repo", default="model_repository")
    parser.add_argument("--model-name", default=DEFAULT_MODEL)
    parser.add_argument("--res", type=int, default=DEFAULT_RES)
    parser.add_argument("--num-classes", type=int, default=DEFAULT_NUM_CLASSES)
    parser.add_argument("--link", action="store_true", help="symlink the ONNX file")
    a = parser.parse_args()
    if a.onnx_path:
        out = fill_repository(a.repo, a.onnx_path, a.model_name, a.res, a.num_classes, link=a.link)
    else:
        out = write_configs(a.repo, a.model_name, a.res, a.num_classes)
    for flavour, path in out.items():
        print(f"{flavour:5s} {path}")
