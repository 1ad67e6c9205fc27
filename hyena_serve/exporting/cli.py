"""Export a HyenaPixel-family model to ONNX with one hyena::FFTConv node per Hyena mixer.

The file carries the model-local function hyena::FFTConv (standard ONNX ops, one
overload per FFT plan), so ONNX Runtime runs it with no custom library, while TensorRT
can pick the FFTConv plugin (plugin_namespace="hyena", plugin_version="1"). A manifest
(<name>.manifest.json: model, weights, preprocessing, labels, FFTConv bodies, sha256)
is written beside it; that pair is what every backend serves.

Steps: resolve --weights, build the model, freeze its filters at --res, torch.onnx.export
(dynamo), attach the function bodies, write to a temporary file, onnx.checker
(full_check), parity torch vs ONNX Runtime on skimage photos and random batches
(--check), then rename and write the manifest. On failure nothing is written. An
artifact of the same model, weights, resolution, body and precision is reused (--force
rebuilds).

--precision: fp32 (default); fp16 (float16 weights and I/O, Kf/D and the FFT float32:
for TensorRT; --fp16 is the same); int8 (ONNX Runtime dynamic quantization of the
MatMul/Gemm weights, the FFTConv nodes and constants kept float32; made from the cached
fp32 export when there is one). bf16 has no ONNX form (ONNX Runtime's CPU provider has
no bfloat16 MatMul): the torch backend serves it. Measured accuracy and speed:
docs/performance.md (python -m bench precision).

Examples:
  python export/to_onnx.py --res 224                      # released weights if reachable, else random
  python export/to_onnx.py --weights runs/digits          # the digits model trained by hyena_serve.train
  python export/to_onnx.py --model hb_former_s18 --res 224 --weights random --body dft --no-check
  python export/to_onnx.py --res 224 --inline                # standard ops only (OpenVINO)
  python export/to_onnx.py --weights runs/digits --precision int8
"""

from __future__ import annotations

import argparse
import logging
import sys

from hyena_serve.cli_flags import add_model_flags, add_precision_flag, one_line, settings_from_args


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="to_onnx.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p.add_argument_group("model (default: HYENA_* environment, then built-in defaults)"))
    p.add_argument("--out", default=None,
                   help="output path (default: <artifacts-dir>/onnx/<model>_<res>_<weights>_<body>_<precision>.onnx)")
    add_precision_flag(p)
    p.add_argument("--fp16", action="store_true", help="same as --precision fp16: float16 weights and I/O (Kf, D "
                                                       "and the FFT stay float32)")
    p.add_argument("--body", choices=("matmul", "dft"), default="matmul",
                   help="FFTConv function body: 'matmul' = fast DFT-as-GEMM / depthwise Conv (default), "
                        "'dft' = plain ONNX DFT ops (50-100x slower on ORT CPU; for comparison)")
    p.add_argument("--inline", action="store_true",
                   help="expand the hyena::FFTConv functions into standard ONNX ops (for runtimes such as "
                        "OpenVINO that do not expand model-local functions; no FFTConv node for TensorRT); "
                        "the file name ends in _inline")
    p.add_argument("--check", dest="check", action="store_true", default=True,
                   help="run the torch vs ONNX Runtime parity check before writing (default)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    p.add_argument("--force", action="store_true", help="export even if the artifact exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    from hyena_serve.artifact import ArtifactError, build_artifact
    from hyena_serve.exporting.onnx_export import ExportError
    from hyena_serve.exporting.parity import ParityError

    try:
        if args.fp16:
            if args.precision not in (None, "fp16"):
                raise ValueError(f"--fp16 and --precision {args.precision} disagree; give one of them")
            args.precision = "fp16"
        settings = settings_from_args(args)
        artifact = build_artifact(settings.model_spec(), settings.artifacts_dir, body=args.body,
                                  precision=settings.precision, check=args.check,
                                  progress=not args.quiet, out=args.out, force=args.force,
                                  inline=args.inline)
    except (ArtifactError, ExportError, ParityError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  (one line, no traceback, for the CLI user)
        print(f"error: export failed: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return 1
    print(artifact.onnx_path)
    return 0
