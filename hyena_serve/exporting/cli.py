"""Export a HyenaPixel-family model to ONNX with one hyena::FFTConv node per Hyena mixer.

The file carries the model-local function hyena::FFTConv (standard ONNX ops, one
overload per FFT plan), so ONNX Runtime runs it with no custom library, while TensorRT
can pick the FFTConv plugin (plugin_namespace="hyena", plugin_version="1").

Steps: build the model (optionally loading --checkpoint), freeze its filters at --res,
torch.onnx.export (dynamo), attach the function bodies, write to a temporary file next
to --out, onnx.checker (full_check), parity torch vs ONNX Runtime on skimage photos and
random batches (--check), then rename. On failure nothing is written.

Examples:
  python export/to_onnx.py --res 224
  python export/to_onnx.py --model hb_former_s18 --res 224 --body dft --no-check
"""

from __future__ import annotations

import argparse
import sys



def _parser() -> argparse.ArgumentParser:
    from hyena_serve.contract import ONNX_OPSET

    p = argparse.ArgumentParser(
        prog="to_onnx.py", description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hpx_former_s18", help="registry name (default: %(default)s)")
    p.add_argument("--checkpoint", default=None,
                   help="weights to load strictly (.safetensors/.pth/.pt/.bin); without it the model is "
                        "randomly initialised with filters sized for --res")
    p.add_argument("--res", type=int, default=224, help="input resolution H=W (default: %(default)s)")
    p.add_argument("--out", default=None, help="output path (default: artifacts/onnx/<model>_<res>.onnx)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help="default-domain opset (default: %(default)s)")
    p.add_argument("--fp16", action="store_true", help="float16 model I/O (Kf, D and the FFT stay float32)")
    p.add_argument("--body", choices=("matmul", "dft"), default="matmul",
                   help="FFTConv function body: 'matmul' = fast DFT-as-GEMM / depthwise Conv (default), "
                        "'dft' = plain ONNX DFT ops (50-100x slower on ORT CPU; for comparison)")
    p.add_argument("--check", dest="check", action="store_true", default=True,
                   help="run the torch vs ONNX Runtime parity check before writing (default)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the parity check")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hyena_serve.exporting.onnx_export import ExportError, default_output, export_onnx
    from hyena_serve.exporting.parity import ParityError

    out = args.out or default_output(args.model, args.res)
    try:
        path = export_onnx(args.model, args.res, out, checkpoint=args.checkpoint, opset=args.opset,
                           fp16=args.fp16, body=args.body, check=args.check, progress=not args.quiet)
    except (ExportError, ParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  (one line, no traceback, for the CLI user)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"error: export failed: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    print(path)
    return 0

