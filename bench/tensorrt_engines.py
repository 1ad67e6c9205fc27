"""TensorRT engines on one GPU: the fused FFTConv plugin vs TensorRT's native DFT vs the
GEMM-lowered body (and, when torch with CUDA is importable, torch eager / torch.compile).

    python -m bench.tensorrt_engines --model hpx_former_s18 --res 224 --batch 1 8 [--fp16]

Every engine is built with the project's own code (hyena_serve.exporting.tensorrt_build),
then CHECKED against ONNX Runtime (CPU) on the float32 export before it is timed; an engine
that disagrees is reported as an error and never timed. Timing: CUDA events recorded on the
engine's stream through the CUDA runtime Polygraphy loads (no torch), medians after
warm-ups; ratios against the plugin engine. Writes JSON to bench/out/.

Exit status: 0 every engine built, checked and timed; 1 the plugin engine is missing or
wrong, or no engine at all could be built (torch rows alone never make a passing run);
3 nothing measurable here (no TensorRT, GPU, Polygraphy or plugin library; recorded as
``skipped``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path

import numpy as np

from bench.timing import Stats, environment

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3


class CudaEvents:
    """cudaEvent timing on a stream, through the CUDA runtime library Polygraphy has loaded."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.rt = cuda.wrapper().handle
        self.start, self.end = ctypes.c_void_p(), ctypes.c_void_p()
        self._check(self.rt.cudaEventCreate(ctypes.byref(self.start)), "cudaEventCreate")
        self._check(self.rt.cudaEventCreate(ctypes.byref(self.end)), "cudaEventCreate")

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what} failed with CUDA error {status}")

    def time(self, launch, stream_ptr: int, reps: int, warmup: int) -> Stats:
        stream = ctypes.c_void_p(stream_ptr)
        for _ in range(warmup):
            launch()
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        samples = []
        ms = ctypes.c_float()
        for _ in range(reps):
            self._check(self.rt.cudaEventRecord(self.start, stream), "cudaEventRecord")
            launch()
            self._check(self.rt.cudaEventRecord(self.end, stream), "cudaEventRecord")
            self._check(self.rt.cudaEventSynchronize(self.end), "cudaEventSynchronize")
            self._check(self.rt.cudaEventElapsedTime(ctypes.byref(ms), self.start, self.end), "cudaEventElapsedTime")
            samples.append(ms.value / 1e3)
        return Stats.of(samples)

    def close(self) -> None:
        for ev in (self.start, self.end):
            self.rt.cudaEventDestroy(ev)


def _torch_cuda():
    """torch, if a CUDA build with a visible GPU is importable; else None (rows are optional)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _torch_rows(model_name: str, res: int, batches: list[int], fp16: bool, reps: int, spec) -> dict:
    """torch eager and torch.compile on the served model (CUDA events of torch itself)."""
    torch = _torch_cuda()
    if torch is None:
        return {"skipped": "torch with CUDA is not importable here"}
    from hyena_serve.artifact import build_served_model

    model, _ = build_served_model(spec)
    model = model.cuda().eval()
    if fp16:
        model = model.half()
    compiled = torch.compile(model)
    out = {}
    for batch in batches:
        x = torch.randn(batch, 3, res, res, device="cuda", dtype=torch.float16 if fp16 else torch.float32)
        for name, fn in (("torch_eager", model), ("torch_compile", compiled)):
            with torch.inference_mode():
                for _ in range(5):
                    fn(x)
                torch.cuda.synchronize()
                samples = []
                for _ in range(reps):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn(x)
                    end.record()
                    end.synchronize()
                    samples.append(start.elapsed_time(end) / 1e3)
            out.setdefault(batch, {})[name] = Stats.of(samples)
    return out


def run(model_name: str, res: int, batches: list[int], fp16: bool, plugin_lib: str | None, reps: int,
        out_dir: Path, *, weights: str = "random", seed: int = 0, with_torch: bool = True, log=print) -> dict:
    """Build, check and time the engines; the result says ``skipped`` (nothing measurable
    here), or lists ``engine_errors`` and sets ``error`` when the plugin engine is missing or
    wrong or no engine was built."""
    from hyena_serve.exporting import tensorrt_build as trtb

    result: dict = {"benchmark": "tensorrt_engines", "model": model_name, "res": res, "fp16": fp16,
                    "weights": weights, "environment": environment(), "timer": "cuda-events (Polygraphy's libcudart)"}
    try:
        trt = trtb.import_tensorrt()
        cuda = trtb.import_cuda()
        trtb.require_cuda(cuda)
        lib = trtb.find_plugin_library(plugin_lib)
    except trtb.TensorRTUnavailable as exc:
        result["skipped"] = str(exc)
        return result
    result["tensorrt"] = trt.__version__
    from hyena_serve.artifact import ArtifactError, ModelSpec, build_artifact

    profile = trtb.BatchProfile(min(batches), max(batches), max(batches))
    engine_errors: dict[str, str] = {}
    engine_skipped: dict[str, str] = {}
    engines: dict[str, tuple[bytes, object]] = {}
    try:
        spec = ModelSpec.of(model_name, res, weights, seed)
        reference = build_artifact(spec, out_dir / "artifacts", body="matmul", precision="fp32", progress=False)
    except (ArtifactError, ImportError, ValueError, RuntimeError) as exc:
        result["error"] = f"the float32 export (the reference) failed: {exc}"
        return result
    for variant in trtb.VARIANTS:
        try:
            precision = trtb.choose_precision(trt, fp16=fp16)
            artifact = build_artifact(spec, out_dir / "artifacts", body=trtb.VARIANT_BODY[variant],
                                      precision="fp16" if precision.fp16_onnx else "fp32", progress=False)
            plan = trtb.build_engine(artifact.onnx_path, variant=variant, res=res, batch=profile, precision=precision,
                                     workspace_bytes=2 << 30, plugin_lib=lib if variant == "plugin" else None,
                                     log=log, trt=trt, cuda=cuda)
            engines[variant] = (plan, precision)
        except trtb.TensorRTUnavailable as exc:  # e.g. native DFT on TensorRT < 11.2
            engine_skipped[variant] = str(exc)
        except (RuntimeError, ValueError) as exc:
            engine_errors[variant] = f"build: {exc}"
    session = trtb.onnx_reference_session(reference.onnx_path)
    events = CudaEvents(cuda)
    rows = []
    rng = np.random.default_rng(0)
    try:
        for batch in batches:
            x = rng.standard_normal((batch, 3, res, res)).astype(np.float32)
            want = trtb.onnx_reference(session, x)
            stats: dict[str, Stats] = {}
            checks: dict[str, str] = {}
            for variant, (plan, precision) in engines.items():
                key = f"trt_{variant}"
                if variant in engine_errors:
                    continue  # wrong once: never timed
                try:
                    with trtb.EngineRunner(plan, trt=trt, cuda=cuda) as runner:
                        check = trtb.parity_decision(want, runner(x), precision.tolerance, name=f"{key} B={batch}")
                        checks[key] = check.summary()
                        if not check.ok:
                            engine_errors[variant] = f"check: {check.summary()}"
                            continue
                        runner.prepare(x)
                        stats[key] = events.time(runner.enqueue, runner.stream.ptr, reps, warmup=10)
                except (trtb.EngineError, RuntimeError) as exc:
                    engine_errors[variant] = f"run: {exc}"
            rows.append({"batch": batch, "checks": checks, "stats": {k: s.as_dict() for k, s in stats.items()}})
    finally:
        events.close()
    if with_torch:
        torch_rows = _torch_rows(model_name, res, batches, fp16, reps, spec)
        if "skipped" in torch_rows:
            result["torch_skipped"] = torch_rows["skipped"]
        else:
            for row in rows:
                row["stats"].update({k: s.as_dict() for k, s in torch_rows.get(row["batch"], {}).items()})
    for row in rows:
        base = row["stats"].get("trt_plugin")
        row["time_vs_plugin"] = ({k: s["median_ms"] / base["median_ms"] for k, s in row["stats"].items()}
                                 if base else None)
        for name, s in row["stats"].items():
            log(f"B={row['batch']:3d} {name:18s} {s['median_ms']:8.3f} ms  p99 {s['p99_ms']:8.3f}")
    result["rows"] = rows
    if engine_errors:
        result["engine_errors"] = engine_errors
    if engine_skipped:
        result["engine_skipped"] = engine_skipped
    timed = {k.removeprefix("trt_") for row in rows for k in row["stats"] if k.startswith("trt_")}
    error = verdict(engine_errors, timed)
    if error:
        result["error"] = error
    return result


def verdict(engine_errors: dict[str, str], timed: set[str]) -> str | None:
    """Why the run failed, or None: the plugin engine must have been built, checked and
    timed; rows of other engines or of torch alone never make a passing run."""
    if "plugin" in engine_errors:
        return f"the plugin engine is wrong or failed: {engine_errors['plugin']}"
    if "plugin" not in timed:
        return "the plugin engine is missing (not built, checked and timed)"
    return None


def exit_status(result: dict) -> int:
    if "skipped" in result:
        return EXIT_UNAVAILABLE
    return EXIT_FAILED if "error" in result else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hpx_former_s18")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--weights", default="random", help="random|PATH|pretrained|hf-hub:ORG/REPO (default: random)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--plugin-lib", default=None)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--no-torch", dest="with_torch", action="store_false", help="no torch rows")
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args.model, args.res, args.batch, args.fp16, args.plugin_lib, args.reps, args.out,
                 weights=args.weights, seed=args.seed, with_torch=args.with_torch)
    path = args.out / f"tensorrt_engines_{int(time.time())}.json"
    path.write_text(json.dumps(result, indent=2, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    print(f"wrote {path}")
    if "skipped" in result:
        print(f"skipped: {result['skipped']}")
    for variant, why in result.get("engine_errors", {}).items():
        print(f"error: {variant}: {why}")
    if "error" in result:
        print(f"error: {result['error']}")
    return exit_status(result)


if __name__ == "__main__":
    raise SystemExit(main())
