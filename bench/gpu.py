"""``python -m bench gpu``: the GPU benchmark (one CUDA GPU; TensorRT optional).

Op level, at the S18 stage shapes (hpx_former_s18: 2D filters K = 2H-1; hb_former_s18:
1D bidirectional filters K = 2L-1; gf_former_s18: circular filters the size of the map,
mode ``2d_circular``), per batch size:

- ``torch fft_conv fp32`` (the baseline) and ``fp16``: ``hyena::fft_conv`` on cuFFT;
- ``cuDNN direct conv fp32`` and ``fp16``: ``conv2d``/``conv1d`` with ``groups=C`` and the
  full filter (circularly padded for ``2d_circular``);
- ``plugin kernels fp32`` and ``fp16``: the FFTConv plugin's enqueue path without TensorRT,
  timed by its own check program (``fftconv_gpu_check --bench-json``, built by
  ``make gpu-check``) in a separate process, CUDA events and medians as here.

and the RFFT2 / IRFFT2 plugins at the aff_former_s18 stage maps (C real channels; IRFFT2
gets the planar spectrum of a real map): ``torch.fft rfft2/irfft2 fp32`` (the baseline,
``norm="ortho"``, complex layout), ``torch hyena.rfft2/irfft2 fp32`` and ``fp16`` (the
planar ops the AFF mixer runs; fp16 input is transformed in fp32, as the op does) and the
``plugin kernels fp32`` / ``fp16`` rows of the same check program.

Model level (hpx_former_s18, hb_former_s18 at 224; batch 1, 8, 64; filters frozen at the
resolution as served): ``eager fp32`` (the baseline), ``eager bf16`` and
``torch.compile fp32 (CUDA graphs)`` (``mode="reduce-overhead"``), and the TensorRT
engines through :mod:`bench.tensorrt_engines` where ``tensorrt`` imports (its plugin engine
must be built, checked and timed, else the run fails).

fp32 means fp32 here: TF32 is off for matmuls and cuDNN. Every alternative is checked
against the baseline before it is timed; the alternatives of one comparison are timed
interleaved, each call between two CUDA events after warm-ups, and reported as medians
and ratios (baseline median / alternative median, > 1: faster). Writes results.json,
report.md and PNG plots to ``--out`` (default bench/out/gpu). Results to keep go to
``bench/results/gpu/`` (docs/gpu.md). Without a CUDA GPU it prints one line and exits 3.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.args import int_list, name_list

NO_HOST = 3  # exit status: this host cannot run the benchmark
DEVICE = "cuda"
ROOT = Path(__file__).resolve().parents[1]
#: Where ``make gpu-check`` builds the plugin's check program, and the variable naming it.
DEFAULT_PLUGIN_EXE = ROOT / "build" / "gpu-check" / "fftconv" / "fftconv_gpu_check"
PLUGIN_EXE_ENV = "HYENA_FFTCONV_GPU_CHECK"

OP_BASELINE = "torch fft_conv fp32"
MODEL_BASELINE = "eager fp32"
EAGER_BF16 = "eager bf16"
COMPILED = "torch.compile fp32 (CUDA graphs)"
COMPILED_BF16 = "torch.compile bf16 (CUDA graphs)"
PLUGIN = "plugin kernels"
DIRECT = "cuDNN direct conv"
TORCH_FFT = "torch fft_conv"
#: The RFFT2 / IRFFT2 plugins (op names of :mod:`hyena_serve.contract`) and their torch rows.
SPECTRAL_OPS = ("RFFT2", "IRFFT2")
TORCH_SPECTRAL = "torch.fft"
TORCH_SPECTRAL_OP = "torch hyena"
#: The FFTConv rows of the check program (its other ops are SPECTRAL_OPS).
FFTCONV_OP = "FFTConv"
DTYPES = ("fp32", "fp16")
#: Relative error (max |a-b| / max |b|) above which an op alternative is wrong, not slow.
OP_TOL = {"fp32": 1e-4, "fp16": 5e-3}
#: Compiled fp32 vs eager fp32 logits (TF32 off on both sides).
COMPILE_TOL = 1e-3
PLOTS = {"op": "gpu_op_latency.png", "model": "gpu_model_latency_vs_batch.png"}


@dataclass
class GpuSettings:
    op_stages: tuple[int, ...] = (0, 1, 2, 3)
    op_batches: tuple[int, ...] = (1, 8)
    op_rounds: int = 50
    op_warmup: int = 10
    models: tuple[str, ...] = ("hpx_former_s18", "hb_former_s18")
    res: int = 224
    batches: tuple[int, ...] = (1, 8, 64)
    rounds: int = 30
    warmup: int = 5
    max_seconds: float = 30.0  # per comparison
    op_circular: bool = True  # FFTConv 2d_circular at the gf_former_s18 stage shapes
    op_spectral: bool = True  # RFFT2 / IRFFT2 at the aff_former_s18 stage maps
    bf16: bool = True
    compile: bool = True
    compile_bf16: bool = False
    tensorrt: bool = True
    plugin_exe: str | None = None
    plugin_timeout_s: float = 300.0


def settings_for(quick: bool = False) -> GpuSettings:
    if quick:
        return GpuSettings(op_stages=(0, 3), op_batches=(1,), op_rounds=20, op_warmup=5, batches=(1, 8),
                           rounds=10, warmup=3, max_seconds=10.0)
    return GpuSettings()


class Budget:
    """The time left for optional work (compiles): skipped, with the reason, once spent."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.compile_estimate = 60.0  # seconds; the last compile's time once one ran

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.monotonic() - self.started)

    def allows(self, estimate: float) -> bool:
        return self.left() > estimate


# --- the plugin's check program ---------------------------------------------------------------


def _dtype_name(value: object) -> str | None:
    v = str(value).lower().removeprefix("torch.")
    return {"fp32": "fp32", "float32": "fp32", "float": "fp32", "f32": "fp32",
            "fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16"}.get(v)


def _mode_name(value: object) -> str | None:
    from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, MODE_2D_CIRCULAR

    v = str(value).lower()
    if v in (MODE_2D, "2", "2d"):
        return MODE_2D
    if v in (MODE_1D_BIDIR, "1d", "1d_bidir", "1d-bidir", "bidir"):
        return MODE_1D_BIDIR
    if v in (MODE_2D_CIRCULAR, "2d-circular", "circular"):
        return MODE_2D_CIRCULAR
    return None


def _op_name(value: object) -> str | None:
    """``FFTConv`` / ``RFFT2`` / ``IRFFT2`` (any case); rows without an op are FFTConv rows."""
    if value is None:
        return FFTCONV_OP
    return {n.lower(): n for n in (FFTCONV_OP, *SPECTRAL_OPS)}.get(str(value).lower())


def _elements(spatial: object) -> int | None:
    """Number of positions of a feature map given as [H, W], [L] or L."""
    if isinstance(spatial, (int, float)):
        return int(spatial)
    if isinstance(spatial, (list, tuple)) and spatial and all(isinstance(s, (int, float)) for s in spatial):
        n = 1
        for s in spatial:
            n *= int(s)
        return n
    return None


def parse_plugin_rows(text: str) -> list[dict]:
    """Rows of ``fftconv_gpu_check --bench-json``: one JSON object per line with op (FFTConv
    when absent, RFFT2, IRFFT2), channels, spatial, batch, dtype and median_ms, and for
    FFTConv mode and kernel; other lines are ignored. Returned normalised: ``op``; ``mode``
    as in :mod:`hyena_serve.contract` (FFTConv) or None; ``kind`` = the FFTConv mode or the
    spectral op (the first part of :func:`plugin_key`); ``dtype`` fp32/fp16; ``elements`` = H·W."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("median_ms"), (int, float)):
            continue
        op, dtype, n = _op_name(obj.get("op")), _dtype_name(obj.get("dtype")), _elements(obj.get("spatial"))
        mode = _mode_name(obj.get("mode")) if op == FFTCONV_OP else None
        if op is None or (op == FFTCONV_OP and mode is None) or dtype is None or n is None \
                or "channels" not in obj or "batch" not in obj:
            continue
        rows.append({**obj, "op": op, "mode": mode, "kind": mode or op, "dtype": dtype, "elements": n,
                     "channels": int(obj["channels"]), "batch": int(obj["batch"]),
                     "median_ms": float(obj["median_ms"])})
    return rows


def plugin_key(kind: str, channels: int, elements: int, batch: int, dtype: str) -> tuple:
    """``kind``: an FFTConv mode, or ``RFFT2`` / ``IRFFT2``."""
    return (kind, channels, elements, batch, dtype)


def run_plugin_bench(exe: Path, timeout: float) -> tuple[list[dict], str]:
    """Rows of the check program's ``--bench-json`` run, and its output tail (for errors)."""
    proc = subprocess.run([str(exe), "--bench-json"], capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    if proc.returncode != 0:
        raise RuntimeError(f"{exe.name} --bench-json exited {proc.returncode}:\n{tail}")
    rows = parse_plugin_rows(proc.stdout)
    if not rows:
        raise RuntimeError(f"{exe.name} --bench-json printed no result rows:\n{tail}")
    return rows, tail


# --- op level -----------------------------------------------------------------------------


def _rel_err(a, b) -> float:
    b = b.double()
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _direct_fn(case, dtype) -> Callable[[], object]:
    """cuDNN depthwise convolution with the full (flipped) filter and "same" padding, + skip."""
    import torch.nn.functional as F

    from hyena_serve.contract import MODE_2D, MODE_2D_CIRCULAR

    x = case.x.to(dtype)
    d = case.d.to(dtype)
    if case.plan.mode == MODE_2D_CIRCULAR:
        # y[i, j] = sum k[p, q] x[(i-p) mod H, (j-q) mod W]: the flipped filter over x padded
        # circularly by H-1 rows and W-1 columns before it.
        c, kh, kw = case.k.shape
        w = case.k.flip((-2, -1)).reshape(c, 1, kh, kw).to(dtype)
        return lambda: F.conv2d(F.pad(x, (kw - 1, 0, kh - 1, 0), mode="circular"), w, groups=c) \
            + x * d.view(-1, 1, 1)
    if case.plan.mode == MODE_2D:
        c, kh, kw = case.k.shape
        w = case.k.flip((-2, -1)).reshape(c, 1, kh, kw).to(dtype)
        pad = (kh - 1 - kh // 2, kw - 1 - kw // 2)
        if kh % 2 and kw % 2:
            return lambda: F.conv2d(x, w, padding=pad, groups=c) + x * d.view(-1, 1, 1)
        return lambda: F.conv2d(F.pad(x, (pad[1], kw - 1 - pad[1], pad[0], kh - 1 - pad[0])), w, groups=c) \
            + x * d.view(-1, 1, 1)
    c, kk = case.k.shape
    w = case.k.flip(-1).reshape(c, 1, kk).to(dtype)
    x1 = x.flatten(-2)
    pad_l = kk - 1 - kk // 2
    if kk % 2:
        return lambda: F.conv1d(x1, w, padding=pad_l, groups=c) + x1 * d.view(-1, 1)
    return lambda: F.conv1d(F.pad(x1, (pad_l, kk - 1 - pad_l)), w, groups=c) + x1 * d.view(-1, 1)


def bench_op(shape, mode: str, batch: int, settings: GpuSettings, plugin: dict[tuple, dict]) -> dict:
    import torch

    from bench.op import make_case
    from bench.timing import compare

    case = make_case(shape, mode, batch, DEVICE)
    dt = {"fp32": torch.float32, "fp16": torch.float16}
    xs = {k: case.x.to(v) for k, v in dt.items()}
    alternatives: dict[str, Callable[[], object]] = {}
    for name in DTYPES:
        alternatives[f"{TORCH_FFT} {name}"] = (lambda x=xs[name]: case.fft(x))
    for name in DTYPES:
        alternatives[f"{DIRECT} {name}"] = _direct_fn(case, dt[name])
    checks, errors, wrong = {}, {}, {}
    with torch.inference_mode():
        ref = case.direct().reshape(case.x.shape).double()
        for name, fn in alternatives.items():
            y = fn()
            err = _rel_err(y.reshape(case.x.shape), ref)
            checks[name] = err
            if not err <= OP_TOL[name.rsplit(" ", 1)[1]]:
                wrong[name] = f"relative error {err:.2e} vs the direct fp32 convolution"
                if name.startswith(TORCH_FFT):  # our op is wrong: an error of the run
                    errors[name] = wrong[name]
        for name in wrong:  # a wrong result is never timed
            alternatives.pop(name)
        stats = compare(alternatives, rounds=settings.op_rounds, warmup=settings.op_warmup,
                        max_seconds=settings.max_seconds, cuda=True)
    stat_dicts = {k: s.as_dict() for k, s in stats.items()}
    notes = {}
    n = shape.size * shape.size
    for name in DTYPES:
        row = plugin.get(plugin_key(mode, shape.channels, n, batch, name))
        if row is not None:
            stat_dicts[f"{PLUGIN} {name}"] = {"median_ms": row["median_ms"],
                                              "source": "fftconv_gpu_check --bench-json (own process)"}
    speedup = {k: stat_dicts[OP_BASELINE]["median_ms"] / v["median_ms"] for k, v in stat_dicts.items()} \
        if OP_BASELINE in stat_dicts else {}
    side = {}
    for name in DTYPES:
        t, p, d = (stat_dicts.get(f"{TORCH_FFT} {name}"), stat_dicts.get(f"{PLUGIN} {name}"),
                   stat_dicts.get(f"{DIRECT} {name}"))
        side[name] = {
            "plugin_vs_torch_fft": t["median_ms"] / p["median_ms"] if t and p else None,
            "torch_fft_vs_direct": d["median_ms"] / t["median_ms"] if t and d else None,
            "plugin_vs_direct": d["median_ms"] / p["median_ms"] if p and d else None,
        }
    notes.update({k: f"not timed: {v}" for k, v in wrong.items()})
    return {
        "shape": shape.label, "model": shape.model, "stage": shape.stage, "channels": shape.channels,
        "size": shape.size, "mode": mode, "batch": batch, "kernel": list(case.plan.kernel),
        "fft": list(case.plan.fft), "baseline": OP_BASELINE, "stats": stat_dicts,
        "speedup_vs_baseline": speedup, "side_by_side": side, "rel_err_vs_direct_fp32": checks,
        "errors": errors, "notes": notes,
    }


def spectral_input(shape, op: str, batch: int, device: str = "cpu"):
    """Input of one RFFT2 / IRFFT2 benchmark, float32 with values exact in fp16: a real map
    (B, C, S, S), or for IRFFT2 the planar spectrum (B, 2C, S, S//2+1) of one (Hermitian, so
    every implementation computes the same thing; the check program covers other input)."""
    import torch

    from hyena_serve.ops.spectral import to_planar

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.channels, shape.size, shape.size, generator=gen)
    if op == "IRFFT2":
        x = to_planar(torch.fft.rfft2(x, norm="ortho"))
    return x.half().float().to(device)


def bench_spectral(shape, op: str, batch: int, settings: GpuSettings, plugin: dict[tuple, dict]) -> dict:
    """RFFT2 or IRFFT2 at one stage map: torch.fft (baseline), the torch ops and the plugin rows."""
    import torch

    from bench.timing import compare
    from hyena_serve.ops.spectral import irfft2, rfft2, to_complex, to_planar

    size = shape.size
    x32 = spectral_input(shape, op, batch, DEVICE)
    x16 = x32.half()
    name = op.lower()
    base = f"{TORCH_SPECTRAL} {name} fp32"
    if op == "RFFT2":
        alternatives = {base: lambda: torch.fft.rfft2(x32, norm="ortho"),
                        f"{TORCH_SPECTRAL_OP}.{name} fp32": lambda: rfft2(x32),
                        f"{TORCH_SPECTRAL_OP}.{name} fp16": lambda: rfft2(x16)}

        def planar(y):
            return to_planar(y) if y.is_complex() else y

        ref = to_planar(torch.fft.rfft2(x32.cpu().double(), norm="ortho"))
    else:
        z32 = to_complex(x32)  # torch.fft takes the complex layout; made once, not timed
        alternatives = {base: lambda: torch.fft.irfft2(z32, s=(size, size), norm="ortho"),
                        f"{TORCH_SPECTRAL_OP}.{name} fp32": lambda: irfft2(x32, size),
                        f"{TORCH_SPECTRAL_OP}.{name} fp16": lambda: irfft2(x16, size)}

        def planar(y):
            return y

        ref = torch.fft.irfft2(to_complex(x32.cpu().double()), s=(size, size), norm="ortho")
    checks, errors, wrong = {}, {}, {}
    with torch.inference_mode():
        for label, fn in alternatives.items():
            err = _rel_err(planar(fn()).cpu(), ref)
            checks[label] = err
            if not err <= OP_TOL[label.rsplit(" ", 1)[1]]:
                wrong[label] = errors[label] = f"relative error {err:.2e} vs float64 torch.fft on the CPU"
        for label in wrong:
            alternatives.pop(label)
        stats = compare(alternatives, rounds=settings.op_rounds, warmup=settings.op_warmup,
                        max_seconds=settings.max_seconds, cuda=True)
    stat_dicts = {k: s.as_dict() for k, s in stats.items()}
    for dtype in DTYPES:
        row = plugin.get(plugin_key(op, shape.channels, size * size, batch, dtype))
        if row is not None:
            stat_dicts[f"{PLUGIN} {dtype}"] = {"median_ms": row["median_ms"],
                                               "source": "fftconv_gpu_check --bench-json (own process)"}

    def ratio(num: str, den: str) -> float | None:
        a, b = stat_dicts.get(num), stat_dicts.get(den)
        return a["median_ms"] / b["median_ms"] if a and b else None

    side = {dtype: {"plugin_vs_torch_fft": ratio(base, f"{PLUGIN} {dtype}") if dtype == "fp32" else None,
                    "plugin_vs_torch_op": ratio(f"{TORCH_SPECTRAL_OP}.{name} {dtype}", f"{PLUGIN} {dtype}")}
            for dtype in DTYPES}
    speedup = {k: stat_dicts[base]["median_ms"] / v["median_ms"] for k, v in stat_dicts.items()} \
        if base in stat_dicts else {}
    return {
        "shape": shape.label, "model": shape.model, "stage": shape.stage, "channels": shape.channels,
        "size": size, "op": op, "batch": batch, "baseline": base, "stats": stat_dicts,
        "speedup_vs_baseline": speedup, "side_by_side": side, "rel_err_vs_float64": checks, "errors": errors,
        "notes": {k: f"not timed: {v}" for k, v in wrong.items()},
    }


def run_op(settings: GpuSettings, log: Callable[[str], None]) -> dict:
    from bench.op import AFF_S18_SHAPES, GF_S18_SHAPES, HB_S18_SHAPES, HPX_S18_SHAPES
    from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, MODE_2D_CIRCULAR

    section: dict = {"baseline": OP_BASELINE, "results": [], "skipped": {}, "errors": {},
                     "plugin_source": None}
    plugin: dict[tuple, dict] = {}
    exe = settings.plugin_exe
    if exe is None:
        section["skipped"][PLUGIN] = ("not timed: no check program (build it with make gpu-check, or pass "
                                      "--plugin-exe build/.../fftconv_gpu_check)")
    else:
        try:
            rows, _ = run_plugin_bench(Path(exe), settings.plugin_timeout_s)
            plugin = {plugin_key(r["kind"], r["channels"], r["elements"], r["batch"], r["dtype"]): r for r in rows}
            section["plugin_source"] = f"{Path(exe).name} --bench-json: {len(rows)} rows"
            section["plugin_rows"] = rows
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            section["errors"][PLUGIN] = str(exc)
    shapes = [(HPX_S18_SHAPES[i], MODE_2D) for i in settings.op_stages] + \
             [(HB_S18_SHAPES[i], MODE_1D_BIDIR) for i in settings.op_stages]
    if settings.op_circular:
        shapes += [(GF_S18_SHAPES[i], MODE_2D_CIRCULAR) for i in settings.op_stages]
    for shape, mode in shapes:
        for batch in settings.op_batches:
            log(f"  op {shape.label} [{mode}] batch {batch}")
            r = bench_op(shape, mode, batch, settings, plugin)
            for name, why in r["notes"].items():
                key = f"{shape.label} [{mode}] B={batch}: {name}"
                if name in r["errors"]:
                    section["errors"][key] = why
                else:  # cuDNN's own numerics at this shape: recorded, not our failure
                    section["skipped"][key] = why
            section["results"].append(r)
    section["spectral"] = []
    for shape in [AFF_S18_SHAPES[i] for i in settings.op_stages] if settings.op_spectral else []:
        for op in SPECTRAL_OPS:
            for batch in settings.op_batches:
                log(f"  op {shape.label} [{op}] batch {batch}")
                r = bench_spectral(shape, op, batch, settings, plugin)
                for name, why in r["errors"].items():  # torch's own transforms: an error of the run
                    section["errors"][f"{shape.label} [{op}] B={batch}: {name}"] = why
                section["spectral"].append(r)
    if not settings.op_spectral:
        section["skipped"]["RFFT2/IRFFT2"] = "not timed: op_spectral is off"
    matched = {plugin_key(r["mode"], r["channels"], r["size"] ** 2, r["batch"], d)
               for r in section["results"] for d in DTYPES}
    matched |= {plugin_key(r["op"], r["channels"], r["size"] ** 2, r["batch"], d)
                for r in section["spectral"] for d in DTYPES}
    extra = [r for k, r in plugin.items() if k not in matched]
    if extra:
        section["plugin_rows_without_torch_timing"] = extra
    if exe is not None and plugin:
        missing = [f"{r['shape']} [{r.get('mode') or r['op']}] B={r['batch']}"
                   for r in section["results"] + section["spectral"] if f"{PLUGIN} fp32" not in r["stats"]]
        if missing:
            section["skipped"]["plugin kernels at some shapes"] = ("the check program printed no fp32 row for: "
                                                                    + "; ".join(missing))
    return section


# --- model level ----------------------------------------------------------------------------


def _served(model, res: int, dtype, device: str):
    """A copy of ``model`` in ``dtype`` on ``device``, filters frozen at ``res`` (as served)."""
    from hyena_serve.models.frozen import freeze_filters

    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    freeze_filters(m, res)
    return m


class ModelRun:
    """One model at the model level: its fp32 and bf16 served copies, their compiled forms
    (one compile and CUDA graph per batch size) and its entry of the report."""

    def __init__(self, name: str, settings: GpuSettings) -> None:
        import torch

        from bench.model import build

        self.name, self.settings = name, settings
        self.entry: dict = {"model": name, "res": settings.res, "baseline": MODEL_BASELINE, "batches": [],
                            "notes": {}, "skipped": {}, "errors": {}}
        base = build(name, settings.res, {})
        self.entry["params_m"] = round(sum(p.numel() for p in base.parameters()) / 1e6, 2)
        self.models = {COMPILED: _served(base, settings.res, torch.float32, DEVICE)}
        if settings.bf16:
            self.models[COMPILED_BF16] = _served(base, settings.res, torch.bfloat16, DEVICE)
        self.compiled: dict[str, Callable] = {}

    def bench_batch(self, batch: int, budget: Budget, log) -> None:
        import torch

        from bench.model import example_input
        from bench.timing import compare, peak_memory, ratios

        s, entry = self.settings, self.entry
        m32, m16 = self.models[COMPILED], self.models.get(COMPILED_BF16)
        x = example_input(batch, s.res).to(DEVICE)
        xb = x.to(torch.bfloat16)
        alternatives: dict[str, Callable[[], object]] = {MODEL_BASELINE: lambda: m32(x)}
        notes: dict[str, str] = {}
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            ref = m32(x).float()
            refs = {COMPILED: ref}
            if m16 is not None:
                y16 = m16(xb).float()
                refs[COMPILED_BF16] = y16
                diff = (y16 - ref).abs().max().item()
                agree = (y16.argmax(-1) == ref.argmax(-1)).float().mean().item()
                notes[EAGER_BF16] = (f"max |logits - fp32 logits| {diff:.3g} (fp32 logits up to "
                                     f"{ref.abs().max().item():.3g}), top-1 agreement {agree:.0%}")
                alternatives[EAGER_BF16] = lambda: m16(xb)
            for label, wanted, inp in ((COMPILED, s.compile, x), (COMPILED_BF16, s.compile_bf16, xb)):
                if not wanted or label not in self.models:
                    continue
                if not budget.allows(budget.compile_estimate + 15):
                    entry["skipped"][f"{label} B={batch}"] = (
                        f"time budget: {max(budget.left(), 0):.0f} s left, a compile took "
                        f"~{budget.compile_estimate:.0f} s")
                    continue
                if label not in self.compiled:
                    self.compiled[label] = torch.compile(self.models[label], mode="reduce-overhead", dynamic=False)

                def call(fn=self.compiled[label], inp=inp):
                    torch.compiler.cudagraph_mark_step_begin()
                    return fn(inp)

                started = time.perf_counter()
                try:
                    for _ in range(3):  # compile, CUDA graph warm-up, record
                        y = call()
                    torch.cuda.synchronize()
                except Exception as exc:  # an error of the run; the other alternatives are still timed
                    entry["errors"][f"{label} B={batch}"] = (
                        f"torch.compile failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}")
                    continue
                seconds = time.perf_counter() - started
                budget.compile_estimate = max(seconds, 10.0)
                err = ((y.float() - refs[label]).abs().max() / refs[label].abs().max()).item()
                tol = COMPILE_TOL if label == COMPILED else 5e-2
                notes[label] = f"compiled + captured in {seconds:.1f} s; rel. error vs eager {err:.1e}"
                if not err <= tol:
                    entry["errors"][f"{label} B={batch}"] = f"relative error {err:.2e} vs eager: not timed"
                    continue
                alternatives[label] = call
            stats = compare(alternatives, rounds=s.rounds, warmup=s.warmup, max_seconds=s.max_seconds, cuda=True)
        entry["batches"].append({
            "batch": batch,
            "stats": {k: st.as_dict() for k, st in stats.items()},
            "speedup_vs_baseline": ratios(stats, MODEL_BASELINE),
            "throughput_img_s": {k: batch / (st.median_ms / 1e3) for k, st in stats.items()},
            "memory": peak_memory(cuda=True),
            "notes": notes,
        })
        log(f"  {self.name} B={batch}: " + ", ".join(f"{k} {st.median_ms:.2f} ms" for k, st in stats.items()))

    def finish(self, cache_dir: Path, log) -> dict:
        """Drop the torch models, then the TensorRT engines (their own process memory)."""
        import torch

        self.models.clear()
        self.compiled.clear()
        torch.cuda.empty_cache()
        entry = self.entry
        if self.settings.tensorrt:
            entry["tensorrt"] = tensorrt_section(self.name, self.settings, cache_dir, log)
            if "skipped" in entry["tensorrt"]:
                entry["skipped"]["TensorRT engines"] = entry["tensorrt"]["skipped"]
        else:
            entry["skipped"]["TensorRT engines"] = "--no-tensorrt"
        return entry


def tensorrt_status() -> str | None:
    """None when ``tensorrt`` imports, else why not (one line)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:
        return f"TensorRT is not installed here (import tensorrt: {type(exc).__name__}: {str(exc).splitlines()[0]})"
    return None


def tensorrt_section(name: str, settings: GpuSettings, cache_dir: Path, log=print) -> dict:
    """The TensorRT engines of :mod:`bench.tensorrt_engines` (plugin / native DFT / GEMM
    body, each checked against ONNX Runtime before it is timed), or why not. The plugin
    library comes from ``$HYENA_FFTCONV_PLUGIN`` (see that module)."""
    why = tensorrt_status()
    if why is not None:
        return {"skipped": why}
    from bench import tensorrt_engines

    try:
        # with_torch=False: torch eager and torch.compile at these batch sizes are timed above
        # in this run (a second set of compiles would only cost time)
        result = tensorrt_engines.run(name, settings.res, list(settings.batches), False, None, settings.rounds,
                                      cache_dir, with_torch=False, log=log)
    except Exception as exc:  # reported as an error of the run, with its reason
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    result.pop("environment", None)
    return result


def run_models(settings: GpuSettings, budget: Budget, cache_dir: Path, log) -> dict:
    """Batch-major (every model at batch 1, then at 8, ...), so a spent compile budget costs
    the largest batches of all models rather than every batch of the last model."""
    runs = []
    for name in settings.models:
        log(f"  model {name} @ {settings.res}")
        runs.append(ModelRun(name, settings))
    for batch in settings.batches:
        for run in runs:
            run.bench_batch(batch, budget, log)
    results, errors = [], {}
    for run in runs:
        entry = run.finish(cache_dir, log)
        results.append(entry)
        for key, why in entry["errors"].items():
            errors[f"{entry['model']} {key}"] = why
        if "error" in entry.get("tensorrt", {}):
            errors[f"{entry['model']} TensorRT engines"] = entry["tensorrt"]["error"]
    return {"baseline": MODEL_BASELINE, "res": settings.res, "batches": list(settings.batches),
            "results": results, "errors": errors,
            "filters": "frozen at the resolution (the served model); bf16: the model cast to bfloat16, then frozen",
            "compile": "torch.compile(mode='reduce-overhead', dynamic=False): one compile and CUDA graph per batch"}


# --- report -----------------------------------------------------------------------------------


def headline(doc: dict) -> list[str]:
    out = []
    op = doc.get("sections", {}).get("op")
    if op:
        b1 = [r for r in op["results"] if r["batch"] == 1]
        fp32 = [(r, r["side_by_side"]["fp32"]["plugin_vs_torch_fft"]) for r in b1]
        have = [(r, v) for r, v in fp32 if v is not None]
        if have:
            for r, v in have:
                if r["mode"] == "2d" and r["channels"] == 64 and r["size"] == 56:
                    out.append(f"plugin kernels vs torch cuFFT fft_conv at 64×56² (2D, B=1, fp32): {v:.2f}× "
                               f"(target ≥ 1.5×: {'met' if v >= 1.5 else 'NOT met'})")
            slower = [f"{r['shape']} [{r['mode']}]" for r, v in have if v <= 1.0]
            out.append(f"plugin kernels faster than torch cuFFT at {len(have) - len(slower)}/{len(have)} S18 "
                       f"stage shapes (B=1, fp32)" + (f"; not at: {', '.join(slower)}" if slower else ""))
        for r in b1:
            v = r["side_by_side"]["fp32"]["torch_fft_vs_direct"]
            if v is not None and r["channels"] == 64 and r["size"] == 56:
                out.append(f"torch cuFFT fft_conv vs cuDNN direct conv at 64×56² [{r['mode']}] (B=1, fp32): {v:.1f}×")
        for op_name in SPECTRAL_OPS:
            have = [(r, r["side_by_side"]["fp32"]["plugin_vs_torch_fft"]) for r in op.get("spectral", [])
                    if r["op"] == op_name and r["batch"] == 1]
            have = [(r, v) for r, v in have if v is not None]
            if have:
                out.append(f"{op_name} plugin kernels vs torch.fft.{op_name.lower()} (B=1, fp32): "
                           + ", ".join(f"{r['channels']}×{r['size']}² {v:.2f}×" for r, v in have))
    model = doc.get("sections", {}).get("model")
    if model:
        for entry in model["results"]:
            for b in entry["batches"]:
                sp = b["speedup_vs_baseline"]
                parts = [f"{k} {v:.2f}×" for k, v in sp.items() if k != MODEL_BASELINE]
                if parts:
                    out.append(f"{entry['model']} @{entry['res']} B={b['batch']} vs eager fp32 "
                               f"({b['stats'][MODEL_BASELINE]['median_ms']:.2f} ms): " + ", ".join(parts))
    return out


def _op_md(section: dict) -> list[str]:
    from bench.report import _table

    lines = ["## Op level: plugin kernels vs torch cuFFT `fft_conv` vs cuDNN direct conv", "",
             "Medians in ms. `plugin×` = torch fft_conv median / plugin median, `FFT×` = direct conv median / "
             "torch fft_conv median (> 1: faster). Plugin kernels timed by "
             f"`{section.get('plugin_source') or 'fftconv_gpu_check --bench-json'}` in its own process.", ""]
    rows = []
    for r in section["results"]:
        s, side = r["stats"], r["side_by_side"]

        def ms(name, s=s):
            return s.get(name, {}).get("median_ms")

        rows.append([r["shape"], r["mode"], r["batch"],
                     ms(f"{TORCH_FFT} fp32"), ms(f"{PLUGIN} fp32"), side["fp32"]["plugin_vs_torch_fft"],
                     ms(f"{TORCH_FFT} fp16"), ms(f"{PLUGIN} fp16"), side["fp16"]["plugin_vs_torch_fft"],
                     ms(f"{DIRECT} fp32"), side["fp32"]["torch_fft_vs_direct"], ms(f"{DIRECT} fp16")])
    lines += _table(["shape", "mode", "B", "torch FFT fp32", "plugin fp32", "plugin×", "torch FFT fp16",
                     "plugin fp16", "plugin×", "cuDNN direct fp32", "FFT×", "cuDNN direct fp16"], rows)
    notes = [f"- {r['shape']} [{r['mode']}] B={r['batch']}: {k}: {v}" for r in section["results"]
             for k, v in r["notes"].items()]
    lines += notes + ([""] if notes else [])
    spectral = section.get("spectral") or []
    if spectral:
        lines += ["## Op level: RFFT2 / IRFFT2 plugin kernels vs torch.fft and the torch ops", "",
                  "Medians in ms at the aff_former_s18 stage maps (C real channels). `plugin×` = torch.fft median / "
                  "plugin median (fp32); `vs op×` = torch hyena op median / plugin median of the same dtype (the op "
                  "transforms fp16 input in fp32).", ""]
        rows = []
        for r in spectral:
            s, side, name = r["stats"], r["side_by_side"], r["op"].lower()

            def ms(label, s=s):
                return s.get(label, {}).get("median_ms")

            rows.append([r["shape"], r["op"], r["batch"], ms(f"{TORCH_SPECTRAL} {name} fp32"),
                         ms(f"{TORCH_SPECTRAL_OP}.{name} fp32"), ms(f"{PLUGIN} fp32"),
                         side["fp32"]["plugin_vs_torch_fft"], side["fp32"]["plugin_vs_torch_op"],
                         ms(f"{TORCH_SPECTRAL_OP}.{name} fp16"), ms(f"{PLUGIN} fp16"), side["fp16"]["plugin_vs_torch_op"]])
        lines += _table(["shape", "op", "B", "torch.fft fp32", "torch op fp32", "plugin fp32", "plugin×", "vs op×",
                         "torch op fp16", "plugin fp16", "vs op×"], rows)
        notes = [f"- {r['shape']} [{r['op']}] B={r['batch']}: {k}: {v}" for r in spectral for k, v in r["notes"].items()]
        lines += notes + ([""] if notes else [])
    return lines


def _model_md(section: dict) -> list[str]:
    from bench.report import _table

    lines = ["## Models", "", f"Baseline `{MODEL_BASELINE}`; filters {section['filters']}; {section['compile']}.", ""]
    rows = []
    for entry in section["results"]:
        for b in entry["batches"]:
            for name, s in b["stats"].items():
                rows.append([f"{entry['model']} @{entry['res']}", b["batch"], name, s["median_ms"], s["p90_ms"],
                             s["p99_ms"], b["throughput_img_s"][name], b["speedup_vs_baseline"][name],
                             b["memory"].get("cuda_max_allocated_mb")])
    lines += _table(["model", "batch", "alternative", "p50 ms", "p90 ms", "p99 ms", "img/s", "× vs eager fp32",
                     "peak CUDA MB"], rows)
    notes = []
    for entry in section["results"]:
        for b in entry["batches"]:
            notes += [f"- {entry['model']} B={b['batch']}: {k}: {v}" for k, v in b["notes"].items()]
    lines += notes + ([""] if notes else [])
    trt_rows, trt_notes = [], []
    for entry in section["results"]:
        trt = entry.get("tensorrt") or {}
        eager = {b["batch"]: b["stats"][MODEL_BASELINE]["median_ms"] for b in entry["batches"]
                 if MODEL_BASELINE in b["stats"]}
        for row in trt.get("rows") or []:
            for name, st in row.get("stats", {}).items():
                base = eager.get(row["batch"])
                trt_rows.append([f"{entry['model']} @{entry['res']}", row["batch"], name, st.get("median_ms"),
                                 st.get("p99_ms"), (row.get("time_vs_plugin") or {}).get(name),
                                 base / st["median_ms"] if base and st.get("median_ms") else None])
        for key in ("engine_errors", "engine_skipped"):
            for variant, why in (trt.get(key) or {}).items():
                trt_notes.append(f"- {entry['model']}: TensorRT {variant}: {key.removeprefix('engine_')}: {why}")
        if trt.get("error"):
            trt_notes.append(f"- {entry['model']}: TensorRT engines: ERROR: {trt['error']}")
    if trt_rows:
        lines += ["### TensorRT engines (bench.tensorrt_engines, each checked against ONNX Runtime first)", ""]
        lines += _table(["model", "batch", "engine", "p50 ms", "p99 ms", "time / plugin engine",
                         "× vs eager fp32 (above)"], trt_rows)
    lines += trt_notes + ([""] if trt_notes else [])
    return lines


def write_report(doc: dict, out_dir: Path) -> dict[str, Path]:
    """results.json, report.md and the PNG plots (the CPU reports' helpers)."""
    from bench import report

    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    op = doc["sections"].get("op")
    if op:
        b1 = [r for r in op["results"] if r["batch"] == min(r2["batch"] for r2 in op["results"])]
        if report.plot_op({"baseline": op["baseline"], "results": b1}, out_dir / PLOTS["op"]):
            plots["op"] = PLOTS["op"]
    model = doc["sections"].get("model")
    if model and report.plot_model(model, out_dir / PLOTS["model"]):
        plots["model"] = PLOTS["model"]
    doc["plots"] = plots
    doc["headline"] = headline(doc)
    env, gpu = doc["environment"], doc.get("gpu", {})
    lines = ["# hyena_serve GPU benchmark", "", f"Command: `{doc['command']}`  ",
             f"Started {doc['started']}, took {doc.get('seconds', 0):.0f} s.", "",
             f"GPU: {gpu.get('name')} (compute capability {gpu.get('capability')}), torch {env.get('torch')} "
             f"(CUDA {gpu.get('cuda')}, cuDNN {gpu.get('cudnn')}), TF32 {'on' if gpu.get('tf32') else 'off'}; "
             f"CPU {env.get('cpu')} ({env.get('cpu_count')} CPUs). Revision {env.get('git_revision')}.", "",
             "Each call timed between two CUDA events after warm-ups; alternatives of one comparison "
             "interleaved; medians.", ""]
    if doc["headline"]:
        lines += ["## Headline", ""] + [f"- {h}" for h in doc["headline"]] + [""]
    if op:
        lines += _op_md(op)
        if "op" in plots:
            lines += [f"![op latency]({plots['op']})", ""]
    if model:
        lines += _model_md(model)
        if "model" in plots:
            lines += [f"![latency vs batch]({plots['model']})", ""]
    if doc.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {k}: {v}" for k, v in doc["skipped"].items()] + [""]
    if doc.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in doc["errors"].items()] + [""]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines))
    paths = {"json": report.write_json(doc, out_dir), "markdown": md}
    paths.update({k: out_dir / v for k, v in plots.items()})
    return paths


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.split("\n\n")[0],
                                epilog="Details: docs/gpu.md.")
    p.add_argument("--out", type=Path, default=Path("bench/out/gpu"), help="output directory (default bench/out/gpu)")
    p.add_argument("--cache", type=Path, default=Path("bench/out/cache"),
                   help="ONNX exports for the TensorRT engines (default bench/out/cache)")
    p.add_argument("--quick", action="store_true", help="stages 0 and 3, batch 1 (op) / 1 and 8 (models), fewer rounds")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--plugin-exe", help=f"the plugin's check program (default ${PLUGIN_EXE_ENV}, else "
                                        "build/gpu-check/fftconv/fftconv_gpu_check if built)")
    g.add_argument("--no-plugin", action="store_true", help="do not time the plugin kernels")
    p.add_argument("--op-stages", type=int_list, help="S18 stages at op level (default 0,1,2,3)")
    p.add_argument("--op-batches", type=int_list, help="op batch sizes (default 1,8)")
    p.add_argument("--models", type=name_list, help="registry names (default hpx_former_s18,hb_former_s18)")
    p.add_argument("--res", type=int, help="input resolution (default 224)")
    p.add_argument("--batches", type=int_list, help="model batch sizes (default 1,8,64)")
    p.add_argument("--rounds", type=int, help="timed rounds per comparison (default 50 op, 30 model)")
    p.add_argument("--no-op", action="store_true", help="skip the op level")
    p.add_argument("--no-models", action="store_true", help="skip the model level")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-bf16", action="store_true", help="also torch.compile the bf16 model")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT engines")
    p.add_argument("--budget-s", type=float, help="seconds after which no further torch.compile is started "
                                                  "(recorded as skipped; make gpu-check passes its remaining time)")
    return p


def no_gpu_reason() -> str | None:
    try:
        import torch
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"bench gpu: torch is not importable ({type(exc).__name__}: {first}); it needs CUDA torch"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        available = torch.cuda.is_available()
    if not available:
        return ("bench gpu: no CUDA GPU visible (torch.cuda.is_available() is False); the GPU benchmark needs one "
                "(python -m bench runs the CPU benchmarks)")
    return None


def _settings(args: argparse.Namespace) -> GpuSettings:
    s = settings_for(args.quick)
    for attr, value in (("op_stages", args.op_stages), ("op_batches", args.op_batches), ("models", args.models),
                        ("res", args.res), ("batches", args.batches)):
        if value:
            setattr(s, attr, value)
    if args.rounds:
        s.op_rounds = s.rounds = args.rounds
    s.compile = not args.no_compile
    s.compile_bf16 = args.compile_bf16
    s.tensorrt = not args.no_tensorrt
    if not args.no_plugin:
        exe = args.plugin_exe or os.environ.get(PLUGIN_EXE_ENV)
        if exe is None and DEFAULT_PLUGIN_EXE.is_file():
            exe = str(DEFAULT_PLUGIN_EXE)
        s.plugin_exe = exe
    return s


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    reason = no_gpu_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return NO_HOST
    import torch

    from bench.timing import environment

    settings = _settings(args)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    budget = Budget(args.budget_s)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    props = torch.cuda.get_device_properties(0)
    doc: dict = {
        "command": "python -m bench gpu " + " ".join(shlex.quote(a) for a in argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "device": DEVICE,
        "gpu": {"name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "tf32": False, "cudnn_benchmark": True},
        "settings": asdict(settings),
        "sections": {},
        "skipped": {},
        "errors": {},
    }
    t0 = time.perf_counter()
    wanted = [n for n, off in (("op", args.no_op), ("model", args.no_models)) if not off]
    for name in wanted:
        log(f"[bench gpu] {name} ...")
        try:
            if name == "op":
                section = run_op(settings, log)
            else:
                section = run_models(settings, budget, args.cache, log)
        except Exception:  # one broken section is reported; the other still runs
            doc["errors"][name] = traceback.format_exc()[-3000:]
            log(f"[bench gpu] {name} failed:\n{traceback.format_exc()}")
            continue
        doc["sections"][name] = section
        doc["errors"].update({f"{name}: {k}": v for k, v in section.get("errors", {}).items()})
        doc["skipped"].update({f"{name}: {k}": v for k, v in section.get("skipped", {}).items()})
        for entry in section.get("results", []) if name == "model" else []:
            doc["skipped"].update({f"model: {entry['model']} {k}": v for k, v in entry.get("skipped", {}).items()})
    doc["seconds"] = time.perf_counter() - t0
    paths = write_report(doc, args.out)
    for line in doc["headline"]:
        print(line)
    for key, why in doc["skipped"].items():
        print(f"skipped: {key}: {why}")
    for key in doc["errors"]:
        print(f"ERROR: {key} (see report.md)")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
