#!/usr/bin/env python
"""Build a TensorRT engine of a HyenaPixel-family model with the fused FFTConv plugin.

Steps: export the ONNX model (export/to_onnx.py's export, with its ONNX Runtime parity
check), load the FFTConv plugin library, parse the ONNX file with TensorRT, check that
the network holds one plugin layer per hyena::FFTConv node (the parser silently inlines
the node's function body when the plugin is not registered), build a serialized engine
with a dynamic-batch optimisation profile, compare it with torch on the GPU, then write
model_repository/<model>_trt/1/model.plan and its config.pbtxt.

The engine is specific to the GPU and TensorRT version it is built with: build it on the
serving host (the Dockerfile's triton entrypoint does). On a host without TensorRT or a
GPU the script writes the ONNX file and exits with status 3 and a one-line reason.

Variants for comparison (--fftconv):
  plugin      fused cuFFT plugin (default)
  native-dft  TensorRT's own DFT layers from the plain DFT function body (TensorRT >= 11.2)
  gemm        the GEMM-lowered function body, no plugin

Examples:
  python export/to_trt.py --res 224
  python export/to_trt.py --res 224 --fp16 --batch 1:8:16 --plugin-lib build/libhyena_fftconv_plugin.so
  python export/to_trt.py --res 224 --fftconv native-dft --out /tmp/hpx_dft.plan
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXIT_EXPORT_FAILED = 2
EXIT_NO_TENSORRT = 3
EXIT_BUILD_FAILED = 4


def _parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(prog="to_trt.py", description=doc[0], epilog="\n\n".join(doc[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hpx_former_s18", help="registry name (default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="weights to load strictly (.safetensors/.pth); "
                   "without it the model is randomly initialised (seed 0)")
    p.add_argument("--res", type=int, default=224, help="input resolution H=W (default: %(default)s)")
    p.add_argument("--fp16", action="store_true",
                   help="let TensorRT run layers (and the plugin's I/O) in float16; I/O stays float32, "
                        "the FFT math stays float32")
    p.add_argument("--batch", default="1:4:8", metavar="MIN:OPT:MAX",
                   help="batch sizes of the optimisation profile (default: %(default)s; Triton's "
                        "max_batch_size in config.pbtxt is 8)")
    p.add_argument("--plugin-lib", default=None,
                   help="libhyena_fftconv_plugin.so (default: $HYENA_FFTCONV_PLUGIN, else "
                        "export/plugins/fftconv/build/libhyena_fftconv_plugin.so)")
    p.add_argument("--workspace", type=int, default=1024, metavar="MiB",
                   help="builder workspace limit in MiB (default: %(default)s)")
    p.add_argument("--fftconv", choices=("plugin", "native-dft", "gemm"), default="plugin",
                   help="how FFTConv runs in the engine (default: %(default)s)")
    p.add_argument("--onnx", default=None,
                   help="use this exported ONNX file instead of exporting (it must come from "
                        "export/to_onnx.py; the GPU parity check is skipped since the weights are unknown)")
    p.add_argument("--onnx-out", default=None,
                   help="where the exported ONNX goes (default: artifacts/onnx/<model>_<res>[_dft].onnx)")
    p.add_argument("--out", default=None,
                   help="engine path (default: model_repository/<model>_trt/1/model.plan, with config.pbtxt)")
    p.add_argument("--repository", default="model_repository", help="Triton model repository (default: %(default)s)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX Runtime and GPU parity checks")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import numpy as np
    import torch

    from hyena_serve.exporting import tensorrt_build as trtb
    from hyena_serve.exporting.onnx_export import ExportError, build_model, export_onnx
    from hyena_serve.exporting.parity import ParityError, real_batch
    from hyena_serve.model_repo import FLAVOURS, VERSION, config_pbtxt, entry_name

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        batch = trtb.BatchProfile.parse(args.batch)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EXPORT_FAILED

    body = trtb.VARIANT_BODY[args.fftconv]
    model = None
    if args.onnx:
        onnx_path = Path(args.onnx)
        if not onnx_path.is_file():
            print(f"error: ONNX file not found: {onnx_path}", file=sys.stderr)
            return EXIT_EXPORT_FAILED
    else:
        suffix = "" if body == "matmul" else f"_{body}"
        onnx_path = Path(args.onnx_out or f"artifacts/onnx/{args.model}_{args.res}{suffix}.onnx")
        try:
            torch.manual_seed(0)
            model = build_model(args.model, args.res, args.checkpoint)
            export_onnx(model, args.res, onnx_path, body=body, check=args.check, progress=not args.quiet)
        except (ExportError, ParityError, FileNotFoundError, ValueError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_EXPORT_FAILED
        log(f"[to_trt] ONNX written: {onnx_path}")

    num_classes = model.pretrained_cfg.num_classes if model is not None else 1000
    out = Path(args.out) if args.out else (
        Path(args.repository) / entry_name(args.model, "trt") / VERSION / FLAVOURS["trt"].artifact)
    try:
        plan = trtb.build_engine(onnx_path, variant=args.fftconv, res=args.res, batch=batch, fp16=args.fp16,
                                 workspace_bytes=args.workspace << 20,
                                 plugin_lib=Path(args.plugin_lib) if args.plugin_lib else None, log=log)
    except trtb.TensorRTUnavailable as exc:
        print(f"error: cannot build a TensorRT engine here: {_one_line(exc)} (the ONNX file {onnx_path} "
              "was written)", file=sys.stderr)
        return EXIT_NO_TENSORRT
    except (trtb.PluginLayersMissing, RuntimeError, ValueError) as exc:
        print(f"error: TensorRT build failed: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BUILD_FAILED

    if args.check and model is not None:
        images = real_batch(model.pretrained_cfg)[: batch.max]
        plugin = trtb.find_plugin_library(args.plugin_lib) if args.fftconv == "plugin" else None
        got = trtb.run_engine(plan, images, plugin)
        with torch.inference_mode():
            want = model.float()(torch.from_numpy(images)).numpy()
        rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
        top1 = bool((got.argmax(1) == want.argmax(1)).all())
        tol = 1e-2 if args.fp16 else 1e-4
        log(f"[to_trt] GPU parity vs torch: max rel diff {rel:.2e} (tol {tol:g}), top-1 identical: {top1}")
        if rel > tol or not top1:
            print(f"error: TensorRT engine disagrees with torch (max rel diff {rel:.2e}, top-1 identical "
                  f"{top1}); nothing written", file=sys.stderr)
            return EXIT_BUILD_FAILED

    trtb.write_atomically(out, plan)
    if not args.out:
        config = config_pbtxt(args.model, "trt", args.res, num_classes)
        trtb.write_atomically(out.parent.parent / "config.pbtxt", config.encode())
    log(f"[to_trt] wrote {out} ({len(plan) / 1e6:.1f} MB)")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
