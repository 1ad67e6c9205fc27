"""Default backend: ONNX Runtime in-process, fed by the micro-batcher.

The ONNX file for a model spec lives in ``<artifacts>/onnx/`` under a name that identifies
the weights (model, resolution, checkpoint fingerprint or random seed, extra kwargs). If
it is missing, the first start exports it with :func:`hyena_serve.exporting.export_onnx`
(minutes for the full-size model on a CPU) into a temporary folder and moves it in place
only when complete, so an interrupted export never leaves a broken cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
from hyena_serve.runtime.base import ModelSpec
from hyena_serve.runtime.in_process import InProcessBackend

log = logging.getLogger(__name__)


def artifact_name(spec: ModelSpec) -> str:
    """File name (under ``<artifacts>/onnx/``) of the exported model for ``spec``."""
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint).resolve()
        stat = path.stat()
        key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
        weights = "ckpt-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    else:
        weights = f"random-seed{spec.seed}"
    name = f"{spec.name}_{spec.resolution}_{weights}"
    if spec.kwargs:
        blob = json.dumps(spec.model_kwargs(), sort_keys=True, default=str)
        name += "_" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return name + ".onnx"


def export_model(spec: ModelSpec, out: Path) -> Path:
    """Export ``spec`` to ONNX at ``out`` from the same torch model the torch backend runs
    (the exporter checks torch-vs-ONNX Runtime parity before it writes the file)."""
    from hyena_serve.exporting.onnx_export import export_onnx
    from hyena_serve.runtime.torch_backend import build_torch_model

    return Path(export_onnx(build_torch_model(spec), spec.resolution, out, check=True, progress=True))


def ensure_onnx(spec: ModelSpec, artifacts_dir: str | Path, exporter: Callable[[ModelSpec, Path], Path] = export_model) -> Path:
    """The cached ONNX file for ``spec``, exported first if it is not there yet."""
    artifacts = Path(artifacts_dir) / "onnx"
    target = artifacts / artifact_name(spec)
    if target.is_file():
        log.info("embedded backend: using cached %s", target)
        return target
    artifacts.mkdir(parents=True, exist_ok=True)
    log.warning(
        "embedded backend: %s not found; exporting %s at %d px to ONNX now (first start only; "
        "this takes a while for full-size models, the result is cached)", target, spec.name, spec.resolution,
    )
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=artifacts))
    try:
        exporter(spec, tmp / target.name)
        produced = sorted(tmp.iterdir())
        if not (tmp / target.name).is_file():
            raise RuntimeError(f"the exporter did not write {target.name} (found {[p.name for p in produced]})")
        # external-data files first, the model last: the model's presence marks completion
        for path in produced:
            if path.name != target.name:
                path.replace(artifacts / path.name)
        (tmp / target.name).replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.warning("embedded backend: exported %s in %.1f s", target, time.perf_counter() - started)
    return target


class EmbeddedBackend(InProcessBackend):
    kind = "embedded"

    def __init__(
        self,
        spec: ModelSpec,
        artifacts_dir: str | Path = "artifacts",
        *,
        onnx_path: str | Path | None = None,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        threads: int = 0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(spec, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, threads=threads,
                         on_batch=on_batch)
        self.artifacts_dir = Path(artifacts_dir)
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None
        self.info = spec.info("embedded", "onnxruntime_onnx")
        self._session = None

    def _load(self) -> None:
        if self.onnx_path is None:
            self.onnx_path = ensure_onnx(self.spec, self.artifacts_dir)
        log.info("embedded backend: loading %s into ONNX Runtime", self.onnx_path)
        self._session = self._open_session(self.onnx_path)

    def _unload(self) -> None:
        self._session = None

    def _open_session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        # Idle ORT worker threads spin by default; in a server process they then take the
        # cores the event loop and the decode/preprocess threads need between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise RuntimeError(f"{path}: expected {INPUT_NAME!r} -> {OUTPUT_NAME!r}, graph has {inputs} -> {outputs}")
        return session

    def _run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return logits
