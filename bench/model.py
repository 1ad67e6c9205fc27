"""Whole-model latency: torch eager (cached vs recomputed filters), torch.compile and ONNX
Runtime (each hyena::FFTConv body) across batch sizes.

Alternatives per (model, batch), timed interleaved call by call:

- ``eager cached Kf`` (baseline): eval mode, the mixers' frequency-domain filter cache warm;
- ``eager recomputed filters``: eval mode, every mixer's cache cleared before each forward,
  so the implicit filter networks and their FFTs run every time (the cost training pays);
- ``torch.compile``: a copy of the model with its filters frozen at the resolution (as the
  torch backend serves it) through ``torch.compile`` (inductor, static shapes); the compile
  time (first call) is recorded per batch size;
- ``ORT <body>``: the exported ONNX model in ONNX Runtime, one child process per body
  (torch and ORT in one process slow torch's FFT, docs/design.md §6); only one process computes
  at a time, so the rounds stay interleaved;
- TensorRT engines: on a GPU, through :mod:`bench.tensorrt_engines` (recorded as skipped otherwise).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.timing import Subprocess, SubprocessError, compare, ort_file_runner, peak_memory, ratios, reset_peak_rss
from hyena_serve.contract import INPUT_NAME

BASELINE = "eager cached Kf"
RECOMPUTED = "eager recomputed filters"
COMPILED = "torch.compile"
DEFAULT_MODELS = ("hpx_former_s18", "hb_former_s18", "convformer_s18")
SEED = 0


@dataclass
class ModelSettings:
    models: tuple[str, ...] = DEFAULT_MODELS
    res: int = 224
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 10
    warmup: int = 2
    max_seconds: float = 120.0
    compile: bool = True
    ort: bool = True
    bodies: tuple[str, ...] = ("matmul", "dft")
    model_kwargs: dict = field(default_factory=dict)
    #: also time eval with the filter cache cleared before each forward (the cost training pays)
    recomputed: bool = True


def settings_for(quick: bool = False, tiny: bool = False) -> ModelSettings:
    if tiny:
        return ModelSettings(models=("hpx_former_s4", "hb_former_s4"), res=32, batches=(1, 2), rounds=2, warmup=1,
                             max_seconds=5.0, compile=False, bodies=("matmul",),
                             model_kwargs={"dims": [8, 16, 16, 16], "num_classes": 10})
    if quick:
        return ModelSettings(res=64, batches=(1,), rounds=3, warmup=1, max_seconds=10.0, compile=False)
    return ModelSettings()


def model_spec(name: str, res: int, model_kwargs: dict):
    """The benchmark's model as the artifact builder names it: seeded random weights."""
    from hyena_serve.artifact import ModelSpec

    return ModelSpec.of(name, res, "random", SEED, model_kwargs)


def build(name: str, res: int, model_kwargs: dict) -> torch.nn.Module:
    """The served model of :func:`model_spec` with its filters unfrozen again, so the eval
    cache (and, for the recomputed alternative, the filter networks) is what runs."""
    from hyena_serve.artifact import build_served_model
    from hyena_serve.models.frozen import unfreeze_filters

    model, _ = build_served_model(model_spec(name, res, model_kwargs))
    unfreeze_filters(model)
    return model


def example_input(batch: int, res: int) -> torch.Tensor:
    return torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(SEED))


def onnx_cache_path(cache_dir: Path, name: str, res: int, body: str, model_kwargs: dict) -> Path:
    """Where the artifact builder keeps the benchmark model's export under ``cache_dir``."""
    from hyena_serve.artifact import artifact_name, plan_manifest

    manifest = plan_manifest(model_spec(name, res, model_kwargs))
    return Path(cache_dir) / "onnx" / f"{artifact_name(manifest, body)}.onnx"


def export_for_bench(name: str, res: int, body: str, cache_dir: str, model_kwargs: dict) -> Callable[[], None]:
    """Subprocess factory: build the benchmark model's artifact (if missing), then idle.
    Runs in its own process so the export's memory never counts against the timed ones."""
    from hyena_serve.artifact import build_artifact

    build_artifact(model_spec(name, res, model_kwargs), cache_dir, body=body, check=False, progress=False)
    return lambda: None


def export_status() -> str | None:
    try:
        from hyena_serve.exporting.onnx_export import export_onnx  # noqa: F401
    except ImportError as exc:
        return f"skipped: hyena_serve.exporting.onnx_export.export_onnx is not available ({exc})"
    return None


def tensorrt_engines(name: str, settings: ModelSettings, cache_dir: Path) -> dict:
    """TensorRT engines (plugin / native DFT / GEMM body) vs torch, via
    :mod:`bench.tensorrt_engines` (CUDA-event timing); it records why it skipped without a
    GPU or TensorRT. Its ratios are within its own run, against its fused-plugin engine."""
    try:
        from bench import tensorrt_engines
    except ImportError as exc:
        return {"skipped": f"skipped: bench.tensorrt_engines unavailable: {exc}"}
    try:
        result = tensorrt_engines.run(name, settings.res, list(settings.batches), False,
                                      os.environ.get("HYENA_TRT_PLUGIN"), settings.rounds, cache_dir)
    except ImportError as exc:
        return {"skipped": f"skipped: {exc}"}
    if "skipped" in result and not str(result["skipped"]).startswith("skipped"):
        result["skipped"] = f"skipped: {result['skipped']}"
    result.pop("environment", None)
    return result


def _recomputing(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from hyena_serve.models.frozen import hyena_mixers

    mixers = [m for _, m in hyena_mixers(model)]

    def forward(x: torch.Tensor) -> torch.Tensor:
        for m in mixers:
            m.invalidate_filter_cache()
        return model(x)

    return forward


def bench_model(name: str, settings: ModelSettings, *, cache_dir: Path, threads: int | None = None,
                device: str = "cpu", progress=None, log=print) -> dict:
    """All batch sizes of one model; returns its entry of the model section."""
    from hyena_serve.models.frozen import hyena_mixers

    reset_peak_rss()
    model = build(name, settings.res, settings.model_kwargs).to(device)
    has_hyena = bool(hyena_mixers(model))
    entry: dict = {"model": name, "res": settings.res, "baseline": BASELINE, "batches": [], "notes": {},
                   "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if not has_hyena:
        entry["notes"][RECOMPUTED] = "skipped: no Hyena mixers (nothing to cache)"
    recompute_too = has_hyena and settings.recomputed

    compiled = None
    if settings.compile:
        import copy

        from hyena_serve.models.frozen import freeze_filters

        served = copy.deepcopy(model)
        if has_hyena:
            freeze_filters(served, settings.res)
        compiled = torch.compile(served, dynamic=False)
    else:
        entry["notes"][COMPILED] = "skipped: --quick / --no-compile"

    onnx_paths: dict[str, Path] = {}
    if settings.ort:
        why = export_status()
        bodies = settings.bodies
        if not has_hyena and len(bodies) > 1:  # no FFTConv node: every body gives the same graph
            entry["notes"]["ORT bodies"] = f"no FFTConv nodes, so only the {bodies[0]} export is timed"
            bodies = bodies[:1]
        for body in bodies:
            if why is not None:
                entry["notes"][f"ORT {body}"] = why
                continue
            path = onnx_cache_path(cache_dir, name, settings.res, body, settings.model_kwargs)
            started = time.perf_counter()
            try:
                if not path.is_file():
                    Subprocess(export_for_bench, name, settings.res, body, str(cache_dir), settings.model_kwargs,
                               threads=threads).close()
            except SubprocessError as exc:
                entry["notes"][f"ORT {body}"] = f"skipped: export failed: {exc}"
                continue
            log(f"  {name}: ONNX ({body}) ready in {time.perf_counter() - started:.0f} s: {path}")
            onnx_paths[body] = path
    else:
        entry["notes"]["ORT"] = "skipped: --no-ort"
    if device != "cuda":
        entry["notes"]["TensorRT"] = "skipped: no CUDA GPU on this host (TensorRT engines need one)"

    for batch in settings.batches:
        x = example_input(batch, settings.res).to(device)
        alternatives: dict[str, object] = {BASELINE: lambda: model(x)}
        if recompute_too:
            recompute = _recomputing(model)
            alternatives[RECOMPUTED] = lambda: recompute(x)
        notes = {}
        if compiled is not None:
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    compiled(x)
                notes[COMPILED] = f"compiled in {time.perf_counter() - started:.1f} s"
                alternatives[COMPILED] = lambda: compiled(x)
            except Exception as exc:  # a compile failure is a result to report, not a crash
                notes[COMPILED] = f"skipped: torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}"
        children: dict[str, Subprocess] = {}
        try:
            for body, path in onnx_paths.items():
                try:
                    children[f"ORT {body}"] = Subprocess(ort_file_runner, str(path), INPUT_NAME, x.cpu().numpy(),
                                                         threads, threads=threads)
                except SubprocessError as exc:
                    notes[f"ORT {body}"] = f"skipped: {exc}"
            alternatives.update(children)
            sync = torch.cuda.synchronize if device == "cuda" else None
            with torch.inference_mode():
                stats = compare(alternatives, rounds=settings.rounds, warmup=settings.warmup,
                                max_seconds=settings.max_seconds, sync=sync, progress=progress)
            memory = {"torch (this process)": peak_memory(device == "cuda")}
            for label, child in children.items():
                memory[label] = child.memory()
        finally:
            for child in children.values():
                child.close()
        entry["batches"].append({
            "batch": batch,
            "stats": {k: s.as_dict() for k, s in stats.items()},
            "speedup_vs_baseline": ratios(stats, BASELINE),
            "throughput_img_s": {k: batch / (s.median_ms / 1e3) for k, s in stats.items()},
            "memory": memory,
            "notes": notes,
        })
    if device == "cuda":
        entry["tensorrt"] = tensorrt_engines(name, settings, cache_dir)
        if "skipped" in entry["tensorrt"]:
            entry["notes"]["TensorRT"] = entry["tensorrt"]["skipped"]
    return entry


def run(settings: ModelSettings, *, cache_dir: Path, threads: int | None = None, device: str = "cpu",
        progress=None, log=print) -> dict:
    results = [bench_model(name, settings, cache_dir=cache_dir, threads=threads, device=device,
                           progress=progress, log=log)
               for name in settings.models]
    return {
        "baseline": BASELINE,
        "res": settings.res,
        "batches": list(settings.batches),
        "ort_placement": "each ORT body in its own process, interleaved call by call with torch in this one",
        "recomputed_means": "eval mode with every mixer's Kf cache cleared before each forward",
        "results": results,
    }


def rounds_total(settings: ModelSettings) -> int:
    return len(settings.models) * len(settings.batches) * settings.rounds
