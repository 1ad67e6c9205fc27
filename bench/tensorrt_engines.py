"""TensorRT engines on one GPU: the fused FFTConv plugin vs TensorRT's native DFT vs the
GEMM-lowered body, against torch eager (cached filters) and torch.compile.

    python -m bench.tensorrt_engines --model hpx_former_s18 --res 224 --batch 1 8 [--fp16]

Times with CUDA events after warm-ups; prints medians and ratios against the plugin and
writes JSON to bench/out/. On a host without a GPU or TensorRT it records why it skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.timing import Stats, environment


def _cuda_time(fn, reps: int, warmup: int) -> Stats:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return Stats.of(samples)


def _engine_runner(trt, plan: bytes, x: torch.Tensor):
    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    context.set_input_shape(INPUT_NAME, tuple(x.shape))
    y = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), device="cuda")
    context.set_tensor_address(INPUT_NAME, x.data_ptr())
    context.set_tensor_address(OUTPUT_NAME, y.data_ptr())
    stream = torch.cuda.current_stream().cuda_stream
    return lambda: context.execute_async_v3(stream)


def run(model_name: str, res: int, batches: list[int], fp16: bool, plugin_lib: str | None,
        reps: int, out_dir: Path) -> dict:
    from hyena_serve.exporting import tensorrt_build as trtb
    from hyena_serve.exporting.onnx_export import build_model, export_onnx

    result: dict = {"benchmark": "tensorrt_engines", "model": model_name, "res": res, "fp16": fp16,
                    "environment": environment()}
    try:
        trt = trtb.import_tensorrt()
        trtb.require_cuda()
    except trtb.TensorRTUnavailable as exc:
        result["skipped"] = str(exc)
        return result
    torch.manual_seed(0)
    model = build_model(model_name, res)
    engines = {}
    for variant in trtb.VARIANTS:
        onnx_path = out_dir / f"{model_name}_{res}_{trtb.VARIANT_BODY[variant]}.onnx"
        if not onnx_path.exists():
            export_onnx(model, res, onnx_path, body=trtb.VARIANT_BODY[variant], check=False, progress=False)
        try:
            engines[variant] = trtb.build_engine(
                onnx_path, variant=variant, res=res, batch=trtb.BatchProfile(1, max(batches), max(batches)),
                fp16=fp16, workspace_bytes=2 << 30, plugin_lib=plugin_lib, log=print)
        except (RuntimeError, trtb.TensorRTUnavailable) as exc:
            result.setdefault("engine_errors", {})[variant] = str(exc)
    gpu_model = model.cuda().eval()
    if fp16:
        gpu_model = gpu_model.half()
    compiled = torch.compile(gpu_model)
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, res, res, device="cuda")
        xm = x.half() if fp16 else x
        alternatives = {f"trt_{v}": _engine_runner(trt, plan, x) for v, plan in engines.items()}
        with torch.inference_mode():
            alternatives["torch_eager_cached"] = lambda: gpu_model(xm)
            alternatives["torch_compile"] = lambda: compiled(xm)
            stats = {name: _cuda_time(fn, reps, warmup=5) for name, fn in alternatives.items()}
        base = stats.get("trt_plugin")
        rows.append({
            "batch": batch,
            "stats": {k: s.as_dict() for k, s in stats.items()},
            "speedup_of_plugin": ({k: s.median_ms / base.median_ms for k, s in stats.items()} if base else None),
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
        })
        for name, s in stats.items():
            print(f"B={batch:3d} {name:22s} {s.median_ms:8.3f} ms  p99 {s.p99_ms:8.3f}")
    result["rows"] = rows
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hpx_former_s18")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--plugin-lib", default=None)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args.model, args.res, args.batch, args.fp16, args.plugin_lib, args.reps, args.out)
    path = args.out / f"tensorrt_engines_{int(time.time())}.json"
    path.write_text(json.dumps(result, indent=2, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    if "skipped" in result:
        print(f"skipped: {result['skipped']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
