#!/usr/bin/env python
"""Build a TensorRT engine of a HyenaPixel-family model with the fused FFTConv plugin.

Steps: get the ONNX export (--onnx, else an existing export of the same model, resolution,
weights, FFTConv body and precision is reused, else it is exported, which needs torch),
load the FFTConv plugin library, parse the ONNX graph with TensorRT (for the plugin
variant without the FFTConv function bodies, so the parser can only take the plugin),
check that the network holds one FFTConv plugin layer per hyena::FFTConv node, build a
dynamic-batch engine (fp32 with TF32 off unless --tf32), run it on sample photos and
random batches against ONNX Runtime (CPU) on the same ONNX file, and only then write
model_repository/<model>_trt/1/model.plan and its config.pbtxt.

Building and checking needs TensorRT, a GPU, Polygraphy, onnx and onnxruntime, not torch
(docs/tensorrt.md). The engine is specific to the GPU and TensorRT version it is built
with: build it on the serving host (the Dockerfile's triton entrypoint does). On a host
without TensorRT or a GPU the script leaves the ONNX file and exits with status 3 and a
one-line reason.

--fp16: TensorRT 10 builds the float32 export with BuilderFlag.FP16; TensorRT 11 (no such
flag, strongly typed networks) builds an fp16-I/O export (float16 activations, Kf/D and
the FFT in float32). The engine's I/O is float32 either way.

Variants for comparison (--fftconv):
  plugin      fused cuFFT plugin (default; TensorRT >= 10.0)
  native-dft  TensorRT's own DFT layers from the plain DFT function body (TensorRT >= 11.2)
  gemm        the GEMM-lowered function body, no plugin

Exit status: 0 plan written; 2 bad arguments or the ONNX export failed; 3 no TensorRT,
GPU, Polygraphy or plugin library here; 4 the build failed or the engine disagrees with
the reference (nothing written).

Examples:
  python export/to_trt.py --res 224
  python export/to_trt.py --res 224 --fp16 --batch 1:8:16 --plugin-lib build/libhyena_fftconv_plugin.so
  python export/to_trt.py --onnx model_repository/hpx_former_s18_onnx/1/model.onnx --res 224 --out /tmp/m.plan
  python export/to_trt.py --res 224 --fftconv native-dft --out /tmp/hpx_dft.plan
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyena_serve.cli_flags import one_line  # noqa: E402  (after the path set-up)

EXIT_EXPORT_FAILED = 2
EXIT_NO_TENSORRT = 3
EXIT_BUILD_FAILED = 4


class _Fail(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(prog="to_trt.py", description=doc[0], epilog="\n\n".join(doc[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from hyena_serve.cli_flags import add_model_flags

    add_model_flags(p.add_argument_group("model (default: HYENA_* environment, then built-in defaults; "
                                         "not needed with --onnx)"))
    p.add_argument("--checkpoint", dest="weights_file", default=None, help=argparse.SUPPRESS)  # old --weights PATH
    p.add_argument("--fp16", action="store_true",
                   help="float16 engine (TensorRT 10: BuilderFlag.FP16; TensorRT 11: the fp16-I/O export, "
                        "strongly typed); engine I/O stays float32, Kf/D and the FFT stay float32")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 math in float32 layers (off by default; parity tolerance 1e-2 instead of 1e-4)")
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
                   help="build from this exported ONNX file (float32 I/O) instead of exporting; its manifest "
                        "beside it, if any, gives the preprocessing and labels")
    p.add_argument("--onnx-fp16", default=None,
                   help="the fp16-I/O export to use when --fp16 needs one (TensorRT 11)")
    p.add_argument("--out", default=None,
                   help="engine path (default: <repository>/<model>_trt/1/model.plan, with config.pbtxt)")
    p.add_argument("--repository", default="model_repository", help="Triton model repository (default: %(default)s)")
    p.add_argument("--write-config", action="store_true",
                   help="with --out: also (re)write <repository>/<model>_trt/config.pbtxt from the export's manifest")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the export's and the engine's parity checks")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


# --- the ONNX file ------------------------------------------------------------------------------


def _manifest_beside(onnx_path: Path):
    """The manifest written next to an export, or None (an export without one)."""
    from hyena_serve.manifest import ManifestError, load_manifest, manifest_path_for

    path = manifest_path_for(onnx_path)
    if not path.is_file():
        return None
    try:
        return load_manifest(path)
    except ManifestError as exc:
        raise _Fail(EXIT_EXPORT_FAILED, one_line(exc)) from None


def _artifact(args, body: str, precision: str, log):
    """The cached export of this model/resolution/weights/body/precision, else a new one
    (hyena_serve.artifact; exporting needs torch, finding a cached one does not)."""
    try:
        from hyena_serve.artifact import ArtifactError, build_artifact, find_artifact
        from hyena_serve.cli_flags import settings_from_args

        settings = settings_from_args(args)
    except ImportError as exc:
        raise _Fail(EXIT_EXPORT_FAILED, f"finding or exporting the model needs the package's export extra ({exc}); "
                                        "or pass --onnx with an existing export") from None
    except ValueError as exc:  # the settings' validation
        raise _Fail(EXIT_EXPORT_FAILED, one_line(exc)) from None
    try:
        spec = settings.model_spec()
        cached = find_artifact(spec, settings.artifacts_dir, body=body, precision=precision)
        if cached is not None:
            log(f"[to_trt] reusing the export {cached.onnx_path} (same model, resolution, weights, body, precision)")
            return cached
        log(f"[to_trt] exporting {spec.model} ({body} body, {precision}); the result is cached")
        return build_artifact(spec, settings.artifacts_dir, body=body, precision=precision, check=args.check,
                              progress=not args.quiet)
    except ImportError as exc:
        raise _Fail(EXIT_EXPORT_FAILED, f"exporting needs torch and the export extra ({exc}); pass --onnx with an "
                                        "existing export instead") from None
    except (ArtifactError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise _Fail(EXIT_EXPORT_FAILED, f"export failed: {one_line(exc)}") from None


def obtain_onnx(args, body: str, fp16_onnx: bool, log):
    """(ONNX path, manifest or None) for this build."""
    given = args.onnx_fp16 if fp16_onnx and args.onnx_fp16 else args.onnx
    if given:
        import onnx

        from hyena_serve.exporting.tensorrt_build import input_is_fp16

        path = Path(given)
        if not path.is_file():
            raise _Fail(EXIT_EXPORT_FAILED, f"ONNX file not found: {path}")
        model = onnx.load(str(path), load_external_data=False)
        if input_is_fp16(model) != fp16_onnx:
            if fp16_onnx:
                raise _Fail(EXIT_EXPORT_FAILED,
                            f"--fp16 with this TensorRT (strongly typed, no BuilderFlag.FP16) needs an fp16-I/O "
                            f"export; {path} has float32 I/O: pass --onnx-fp16 (export --fp16), or omit --onnx")
            raise _Fail(EXIT_EXPORT_FAILED, f"{path} has float16 I/O: pass it as --onnx-fp16 with --fp16")
        return path, _manifest_beside(path)
    artifact = _artifact(args, body, "fp16" if fp16_onnx else "fp32", log)
    return artifact.onnx_path, artifact.manifest


# --- the parity check ---------------------------------------------------------------------------


def sample_images(preprocess, res: int):
    """scikit-image's photos preprocessed for the model, float32 NCHW; None without skimage."""
    import numpy as np

    from hyena_serve.preprocess import Preprocessing, preprocess_images

    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        return None
    config = (preprocess or Preprocessing()).at_resolution(res)
    images = []
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        arr = getattr(data, name)()
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        images.append(Image.fromarray(arr[..., :3].astype(np.uint8)))
    return preprocess_images(images, config).astype(np.float32)


def check_engine(plan: bytes, onnx_path: Path, *, batch, res: int, tolerance: float, plugin_lib, preprocess,
                 log, trtb) -> list:
    """Run the engine on sample photos + random batches against ONNX Runtime; raise _Fail on disagreement."""
    import numpy as np

    samples = sample_images(preprocess, res)
    if samples is None:
        log("[to_trt] scikit-image is not installed: checking on random batches only")
        samples = np.random.default_rng(1).standard_normal((4, 3, res, res)).astype(np.float32)
    batches = trtb.parity_batches(samples, batch)
    session = trtb.onnx_reference_session(onnx_path)
    results = []
    with trtb.EngineRunner(plan, plugin_lib=plugin_lib) as runner:
        for name, x in batches:
            got = runner(x)
            want = trtb.onnx_reference(session, x)
            result = trtb.parity_decision(want, got, tolerance, name=name)
            log(f"[to_trt] parity vs ONNX Runtime: {result.summary()}")
            results.append(result)
    bad = [r for r in results if not r.ok]
    if bad:
        raise _Fail(EXIT_BUILD_FAILED, f"the TensorRT engine disagrees with ONNX Runtime on {bad[0].summary()}; "
                                       "nothing written")
    return results


# --- main ---------------------------------------------------------------------------------------


def _write_config(repository: str, manifest) -> None:
    from hyena_serve.model_repo import write_entry_config

    write_entry_config(repository, manifest, "trt")


def run(args, log) -> Path:
    from hyena_serve.exporting import tensorrt_build as trtb
    from hyena_serve.files import write_bytes_atomically
    from hyena_serve.model_repo import FLAVOURS, VERSION, entry_name

    if args.weights_file and not args.weights:
        args.weights = args.weights_file
    try:
        batch = trtb.BatchProfile.parse(args.batch)
    except ValueError as exc:
        raise _Fail(EXIT_EXPORT_FAILED, str(exc)) from None

    try:
        trt = trtb.import_tensorrt()
        unavailable = None
    except trtb.TensorRTUnavailable as exc:
        trt, unavailable = None, exc
    # Which export the build needs depends on this TensorRT's capabilities (fp16 on 11.x:
    # an fp16-I/O export); without TensorRT, export the float32 file (the one a later
    # build on a GPU host with TensorRT 10, or any fp32 build, uses).
    precision = trtb.choose_precision(trt, fp16=args.fp16, tf32=args.tf32) if trt is not None else None
    fp16_onnx = bool(precision and precision.fp16_onnx)
    body = trtb.VARIANT_BODY[args.fftconv]
    onnx_path, manifest = obtain_onnx(args, body, fp16_onnx, log)
    if unavailable is not None:
        raise _Fail(EXIT_NO_TENSORRT, f"cannot build a TensorRT engine here: {one_line(unavailable)} "
                                      f"(the ONNX file {onnx_path} is ready)")
    res = manifest.resolution if manifest is not None else args.resolution
    if res is None:
        raise _Fail(EXIT_EXPORT_FAILED, f"{onnx_path} has no manifest beside it: pass --res")
    if args.resolution is not None and args.resolution != res:
        raise _Fail(EXIT_EXPORT_FAILED, f"--res {args.resolution} but {onnx_path} is the {res} px export")
    model_name = manifest.model if manifest is not None else args.model
    if (not args.out or args.write_config) and manifest is None:
        raise _Fail(EXIT_EXPORT_FAILED, f"{onnx_path} has no manifest beside it, so its Triton config cannot be "
                                        "written: pass --out for the plan alone")

    out = Path(args.out) if args.out else (
        Path(args.repository) / entry_name(model_name, "trt") / VERSION / FLAVOURS["trt"].artifact)
    plugin_lib = None
    try:
        if args.fftconv == "plugin":
            plugin_lib = trtb.find_plugin_library(args.plugin_lib)
        plan = trtb.build_engine(onnx_path, variant=args.fftconv, res=res, batch=batch, precision=precision,
                                 workspace_bytes=args.workspace << 20, plugin_lib=plugin_lib, log=log, trt=trt)
    except trtb.TensorRTUnavailable as exc:
        raise _Fail(EXIT_NO_TENSORRT, f"cannot build a TensorRT engine here: {one_line(exc)} (the ONNX file "
                                      f"{onnx_path} is ready)") from None
    except (trtb.PluginLayersMissing, RuntimeError, ValueError) as exc:
        raise _Fail(EXIT_BUILD_FAILED, f"TensorRT build failed: {one_line(exc)}") from None

    if args.check:
        try:
            check_engine(plan, onnx_path, batch=batch, res=res, tolerance=precision.tolerance,
                         plugin_lib=None, preprocess=getattr(manifest, "preprocess", None), log=log, trtb=trtb)
        except (trtb.EngineError, trtb.TensorRTUnavailable, ValueError) as exc:
            raise _Fail(EXIT_BUILD_FAILED, f"the engine could not be checked: {one_line(exc)}; nothing written") \
                from None

    write_bytes_atomically(out, plan)
    if not args.out or args.write_config:
        _write_config(args.repository, manifest)
    log(f"[to_trt] wrote {out} ({len(plan) / 1e6:.1f} MB)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        out = run(args, log)
    except _Fail as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
