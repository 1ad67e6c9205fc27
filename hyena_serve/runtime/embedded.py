"""Default backend: ONNX Runtime in-process, fed by the micro-batcher.

It serves an artifact (:mod:`hyena_serve.artifact`): the given ONNX file with its manifest,
or the cached export of the model spec at ``precision``, exported on first start (minutes
for a full-size model on a CPU). With an existing artifact nothing here imports torch.
An fp16 artifact gets its float32 batches cast to float16 and its logits cast back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hyena_serve.artifact import ArtifactError, ModelSpec, build_artifact, find_artifact, open_artifact
from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
from hyena_serve.precision import check_onnx
from hyena_serve.runtime.base import ModelInfo
from hyena_serve.runtime.in_process import InProcessBackend

log = logging.getLogger(__name__)


class EmbeddedBackend(InProcessBackend):
    kind = "embedded"

    def __init__(
        self,
        spec: ModelSpec | None = None,
        artifacts_dir: str | Path = "artifacts",
        *,
        onnx_path: str | Path | None = None,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        threads: int = 0,
        on_batch: Callable[[int], None] | None = None,
        precision: str | None = None,
    ) -> None:
        """``precision``: of the artifact built from ``spec`` (default fp32); with
        ``onnx_path``, the precision the file must have (default: whatever it has)."""
        super().__init__(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, threads=threads,
                         on_batch=on_batch)
        if spec is None and onnx_path is None:
            raise ValueError("the embedded backend needs a model spec or an ONNX file")
        self.precision = check_onnx(precision) if precision is not None else None  # bf16: a clear error now
        self._input_dtype = np.float32
        self.spec = spec
        self.artifacts_dir = Path(artifacts_dir)
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None
        self._session = None

    def _load(self) -> None:
        if self.onnx_path is not None:
            artifact = open_artifact(self.onnx_path)
            held = artifact.manifest.onnx.precision
            if self.precision is not None and held != self.precision:
                raise ArtifactError(f"{self.onnx_path} is a {held} export, not {self.precision}; export it with "
                                    f"--precision {self.precision} or leave the precision unset")
        else:
            precision = self.precision or "fp32"
            artifact = (find_artifact(self.spec, self.artifacts_dir, precision=precision)
                        or build_artifact(self.spec, self.artifacts_dir, precision=precision))
        log.info("embedded backend: loading %s (%s) into ONNX Runtime", artifact.onnx_path,
                 artifact.manifest.onnx.precision)
        self._session = self._open_session(artifact.onnx_path)
        self.onnx_path = artifact.onnx_path
        self.info = ModelInfo(artifact.manifest, "embedded", "onnxruntime_onnx",
                              extra={"precision": artifact.manifest.onnx.precision})

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
        input_type = session.get_inputs()[inputs.index(INPUT_NAME)].type
        self._input_dtype = np.float16 if input_type == "tensor(float16)" else np.float32
        return session

    def _run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch.astype(self._input_dtype, copy=False)})
        return logits.astype(np.float32, copy=False)
