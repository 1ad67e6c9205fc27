"""The command-line flags every hyena_serve command shares, defined once.

``hyena-serve serve|classify|repo``, ``hyena-serve export`` (= ``export/to_onnx.py``) and
``export/to_trt.py`` name the model the same way (``--model``, ``--res``, ``--weights``,
``--seed``, ``--artifacts-dir``) and fall back to the same ``HYENA_*`` environment settings
(:class:`hyena_serve.gateway.settings.GatewaySettings`) for every flag not given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hyena_serve.weights import HELP as WEIGHTS_HELP

#: flag dest -> settings field, for every flag that maps onto a setting
_SETTING_FLAGS = ("backend", "model", "resolution", "weights", "weights_revision", "seed", "model_kwargs",
                  "precision", "artifacts_dir", "onnx_path", "threads", "device", "torch_compile", "triton_url", "triton_protocol",
                  "triton_model",
                  "host", "port", "max_body_bytes", "max_concurrency", "request_timeout_s", "log_level")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"dims\": [8, 16, 32, 32]}'")
    return value


def add_model_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What to serve or export (defaults: HYENA_* environment, then built-in defaults)."""
    p.add_argument("--model", help="registry model name (HYENA_MODEL, default hpx_former_s18)")
    p.add_argument("--res", dest="resolution", type=int,
                   help="input resolution H=W (HYENA_RESOLUTION; default: the weights' own, else the variant's, "
                        "224 for the ImageNet models)")
    p.add_argument("--weights", help=f"{WEIGHTS_HELP} (HYENA_WEIGHTS, default auto: the released weights when "
                                     "cached or reachable, else random weights with a warning)")
    p.add_argument("--weights-revision", metavar="REV", help="Hub revision to pin (HYENA_WEIGHTS_REVISION)")
    p.add_argument("--seed", type=int, help="seed of random weights (HYENA_SEED, default 0)")
    p.add_argument("--model-kwargs", type=_json_object, metavar="JSON",
                   help="extra create_model arguments (HYENA_MODEL_KWARGS), e.g. '{\"dims\": [8, 16, 32, 32]}'")
    p.add_argument("--artifacts-dir", type=Path, help="artifact cache (HYENA_ARTIFACTS_DIR, default ./artifacts)")


def add_precision_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The precision of the exported or served model (hyena_serve.precision)."""
    from hyena_serve.precision import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS,
                   help="numeric precision (HYENA_PRECISION, default fp32): int8 = ONNX Runtime dynamic quantization "
                        "of the MatMul/Gemm weights (embedded backend, Triton); bf16 = torch backend on a CPU with bf16 "
                        "instructions or a GPU; fp16 = float16 weights and I/O (TensorRT, GPU). Each has its own "
                        "artifact; measured accuracy: docs/performance.md")


def add_backend_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How to run it (the gateway's backends)."""
    p.add_argument("--backend", choices=("embedded", "triton", "torch"), help="inference backend (HYENA_BACKEND)")
    add_precision_flag(p)
    p.add_argument("--onnx", dest="onnx_path", type=Path,
                   help="serve this exported ONNX file and the manifest beside it (embedded backend)")
    p.add_argument("--threads", type=int, help="intra-op threads of in-process backends (0 = default)")
    p.add_argument("--device", help="torch backend device: cpu, cuda, cuda:N (HYENA_DEVICE)")
    p.add_argument("--torch-compile", action="store_true", default=None,
                   help="torch backend: torch.compile the model at load (HYENA_TORCH_COMPILE)")
    p.add_argument("--triton-url", help="Triton host:port (HYENA_TRITON_URL)")
    p.add_argument("--triton-protocol", choices=("http", "grpc"), help="HYENA_TRITON_PROTOCOL")
    p.add_argument("--triton-model", help="Triton model name (default <model>_cpu)")


def settings_from_args(args: argparse.Namespace):
    """The ``HYENA_*`` environment settings with the flags that were given on top."""
    from pydantic import ValidationError

    from hyena_serve.gateway.settings import GatewaySettings

    overrides = {k: getattr(args, k) for k in _SETTING_FLAGS if getattr(args, k, None) is not None}
    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:  # one line per problem, named by its flag/variable
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid settings: {problems}") from None


def one_line(exc: BaseException) -> str:
    """An exception as one line for a CLI user (no traceback)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
