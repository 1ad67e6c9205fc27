"""``python -m bench mixers``: the token mixers side by side, so a user can choose a backbone.

Two parts, each timed with the project's one method (:mod:`bench.timing`: interleaved
rounds, medians and ratios from one run). Torch and ONNX Runtime each run in their own
child process (in one process they slow each other down, docs/design.md §6), torch with
OpenMP's default wait policy: the ``PASSIVE`` policy ``python -m bench`` sets for its
in-process torch made hpx_former_s18 @224 1.6× slower here (188 vs 118 ms, batch 1).

- **per mixer** at the S18 stage shapes at 224 (64×56², 128×28², 320×14², 512×7²): the
  token mixer of each variant's first block of that stage, in eval mode with its filters
  frozen as served, in torch eager (the baseline) and exported alone to ONNX (the same
  custom ops and function bodies as the whole-model export) in ONNX Runtime. The ORT
  output is checked against torch before it is timed;
- **per model** at 224, batch 1 and 8: the served S18 variant in torch eager and its
  exported artifact in ONNX Runtime (checked against torch the same way), with its
  parameters and FLOPs.

FLOPs are counted by ``torch.utils.flop_counter`` on the served (frozen) model at batch 1:
2 per multiply-add for GEMMs and convolutions. The FFT ops get a formula (:mod:`bench.flops`):
a real transform of N points counts 2.5·N·log2(N) (half the usual 5·N·log2(N) of a complex
one), plus the spectral products. Element-wise ops (norms, activations, softmax) are not
counted, as flop_counter does not count them.

Writes ``mixers.json``, ``mixers.md`` and ``mixers.png`` to ``--out`` (default bench/out/mixers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bench.args import int_list, name_list
from bench.model import SEED

#: Short name -> the S18 variant whose mixer it is (hpx_former_s18's layout everywhere).
MIXER_MODELS = {
    "hpx": "hpx_former_s18",
    "hb": "hb_former_s18",
    "gf": "gf_former_s18",
    "aff": "aff_former_s18",
    "sasa": "sasa_former_s18",
    "sepconv": "convformer_s18",
}
#: Smoke-test variants (``--tiny``): S4 sizes, narrow, at 32×32.
TINY_MODELS = {name: model.replace("_s18", "_s4") for name, model in MIXER_MODELS.items()}
TINY_KWARGS = {"dims": [8, 16, 16, 16], "num_classes": 10}
BASELINE = "torch eager"
ORT = "ORT"


@dataclass
class MixerSettings:
    mixers: tuple[str, ...] = tuple(MIXER_MODELS)
    res: int = 224
    stages: tuple[int, ...] = (0, 1, 2, 3)
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 10
    warmup: int = 2
    max_seconds: float = 60.0
    models: bool = True
    ort: bool = True
    tiny: bool = False

    def variant(self, mixer: str) -> str:
        return (TINY_MODELS if self.tiny else MIXER_MODELS)[mixer]

    @property
    def model_kwargs(self) -> dict:
        return dict(TINY_KWARGS) if self.tiny else {}


def settings_for(quick: bool = False, tiny: bool = False) -> MixerSettings:
    if tiny:
        return MixerSettings(res=32, stages=(0, 3), batches=(1,), rounds=2, warmup=1, max_seconds=5.0, tiny=True)
    if quick:
        return MixerSettings(stages=(0, 3), batches=(1,), rounds=3, warmup=1, max_seconds=10.0)
    return MixerSettings()


# --- building ---------------------------------------------------------------------------------


def served_model(variant: str, res: int, model_kwargs: dict):
    """The variant as the artifact builder serves it: seeded random weights, filters frozen."""
    from bench.model import model_spec
    from hyena_serve.artifact import build_served_model

    model, _ = build_served_model(model_spec(variant, res, model_kwargs))
    return model


def stage_mixer(model, stage: int):
    """The token mixer of the first block of ``stage`` and its input shape (B=1, H, W, C)."""
    from hyena_serve.models.metaformer import stage_feature_sizes

    block = model.stages[stage][0]
    h, w = stage_feature_sizes(model.img_size)[stage]
    return block.token_mixer, (h, w, model.dims[stage])


def parameter_count(module) -> int:
    """Trainable parameters as trained (the filter networks of Hpx/Hb included)."""
    return sum(p.numel() for p in module.parameters())


def export_mixer(mixer, example) -> bytes:
    """``mixer`` alone as ONNX: input ``X`` (dynamic batch) -> ``Y``, the hyena custom ops kept
    as nodes with their function bodies attached, exactly as in a whole-model export."""
    import contextlib
    import io
    import warnings

    import torch

    from hyena_serve.exporting import onnx_export

    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        exported = torch.onnx.export(
            mixer, (example,), dynamo=True, verbose=False, optimize=True, input_names=["X"], output_names=["Y"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            custom_translation_table=onnx_export.custom_translation_table())
    model = exported.model_proto
    onnx_export.attach_custom_functions(model, "matmul")
    return model.SerializeToString()


# --- what the child processes run -------------------------------------------------------------

#: Torch's child keeps OpenMP's default wait policy (see the module docstring).
TORCH_CHILD_ENV = {"OMP_WAIT_POLICY": None}
_MODELS: dict = {}  # per child process: the served model of each (variant, res, kwargs)


def _cached_model(variant: str, res: int, model_kwargs: dict):
    key = (variant, res, repr(sorted(model_kwargs.items())))
    if key not in _MODELS:
        _MODELS.clear()  # one model at a time in a child
        _MODELS[key] = served_model(variant, res, model_kwargs)
    return _MODELS[key]


def torch_runner(variant: str, res: int, model_kwargs: dict, stage: int | None, batch: int):
    """Child-process factory: the served model (``stage=None``) or one stage's mixer at
    ``batch``, as a no-argument callable in inference mode."""
    import torch

    model = _cached_model(variant, res, model_kwargs)
    gen = torch.Generator().manual_seed(SEED)
    if stage is None:
        module, x = model, torch.randn(batch, 3, res, res, generator=gen)
    else:
        module, (h, w, c) = stage_mixer(model, stage)
        x = torch.randn(batch, h, w, c, generator=gen)

    def run():
        with torch.inference_mode():
            return module(x)
    return run


def checked_ort_runner(model: bytes | str, input_name: str, x, want, threads: int | None, rtol: float = 1e-4):
    """Child-process factory: :func:`bench.timing.ort_runner` on ``model`` (bytes or a file),
    after checking that its output on ``x`` matches torch's ``want`` to ``rtol`` relative
    (max error over max magnitude); a mismatch fails the factory, so nothing wrong is timed."""
    import numpy as np

    from bench.timing import ort_runner

    if isinstance(model, str):
        with open(model, "rb") as f:
            model = f.read()
    run = ort_runner(model, {input_name: x}, threads)
    (got,) = run()
    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))
    if not err <= rtol:
        raise ValueError(f"ONNX Runtime differs from torch by {err:.2e} (relative), above {rtol:.0e}")
    return run


# --- the two parts ------------------------------------------------------------------------------


def _time_pair(torch_child, ort_child, torch_args: tuple, ort_args: tuple | None, settings: MixerSettings,
               notes: dict, label: str, progress=None) -> dict:
    """Load one case into the two children and time them interleaved; ORT is left out (with
    the reason in ``notes``) when it has no model or its check fails."""
    from bench.timing import SubprocessError, compare, ratios

    torch_child.load(torch_runner, *torch_args)
    alternatives = {BASELINE: torch_child}
    if ort_child is not None and ort_args is not None:
        try:
            ort_child.load(checked_ort_runner, *ort_args)
            alternatives[ORT] = ort_child
        except SubprocessError as exc:
            notes[f"{ORT} {label}"] = f"skipped: {exc}"
    stats = compare(alternatives, rounds=settings.rounds, warmup=settings.warmup, max_seconds=settings.max_seconds,
                    progress=progress)
    return {"stats": {k: v.as_dict() for k, v in stats.items()}, "speedup_vs_baseline": ratios(stats, BASELINE)}


def bench_mixer_stage(name: str, model, stage: int, settings: MixerSettings, children: tuple, *, flops_of,
                      threads: int | None, progress=None) -> dict:
    import torch

    torch_child, ort_child = children
    mixer, (h, w, c) = stage_mixer(model, stage)
    entry = {"mixer": name, "variant": type(mixer).__name__, "stage": stage, "shape": f"{c}x{h}x{w}",
             "params": parameter_count(mixer), "flops_b1": flops_of(mixer, torch.randn(1, h, w, c)),
             "batches": [], "notes": {}}
    model_bytes = None
    if ort_child is not None:
        started = time.perf_counter()
        try:
            model_bytes = export_mixer(mixer, torch.randn(2, h, w, c))
            entry["notes"][ORT] = (f"exported in {time.perf_counter() - started:.1f} s; checked against torch "
                                   f"(≤ 1e-4 relative) before timing")
        except Exception as exc:  # an export that fails is a result to report
            entry["notes"][ORT] = f"skipped: {type(exc).__name__}: {str(exc)[:300]}"
    for batch in settings.batches:
        x = torch.randn(batch, h, w, c, generator=torch.Generator().manual_seed(SEED))
        with torch.inference_mode():
            want = mixer(x).numpy()
        ort_args = (model_bytes, "X", x.numpy(), want, threads) if model_bytes is not None else None
        timed = _time_pair(torch_child, ort_child, (settings.variant(name), settings.res, settings.model_kwargs,
                                                    stage, batch), ort_args, settings, entry["notes"],
                           f"B={batch}", progress)
        entry["batches"].append({"batch": batch, **timed})
    return entry


def bench_whole_model(name: str, model, settings: MixerSettings, children: tuple, *, cache_dir: Path,
                      flops_of, threads: int | None, progress=None, log=print) -> dict:
    import torch

    from bench import model as model_bench
    from bench.timing import Subprocess, SubprocessError
    from hyena_serve.contract import INPUT_NAME

    torch_child, ort_child = children
    variant = settings.variant(name)
    x1 = torch.randn(1, 3, settings.res, settings.res)
    entry = {"mixer": name, "model": variant, "params_m": parameter_count(model) / 1e6,
             "gflops_b1": flops_of(model, x1) / 1e9, "batches": [], "notes": {}}
    path = None
    if ort_child is not None:
        path = model_bench.onnx_cache_path(cache_dir, variant, settings.res, "matmul", settings.model_kwargs)
        started = time.perf_counter()
        try:
            if not path.is_file():
                Subprocess(model_bench.export_for_bench, variant, settings.res, "matmul", str(cache_dir),
                           settings.model_kwargs, threads=threads).close()
            log(f"[mixers] {variant}: ONNX ready in {time.perf_counter() - started:.0f} s")
        except SubprocessError as exc:
            entry["notes"][ORT] = f"skipped: export failed: {exc}"
            path = None
    for batch in settings.batches:
        x = torch.randn(batch, 3, settings.res, settings.res, generator=torch.Generator().manual_seed(SEED))
        with torch.inference_mode():
            want = model(x).numpy()
        ort_args = (str(path), INPUT_NAME, x.numpy(), want, threads) if path is not None else None
        timed = _time_pair(torch_child, ort_child, (variant, settings.res, settings.model_kwargs, None, batch),
                           ort_args, settings, entry["notes"], f"B={batch}", progress)
        entry["batches"].append({"batch": batch, **timed})
    return entry


def run(settings: MixerSettings, *, cache_dir: Path, threads: int | None = None, progress=None, log=print) -> dict:
    from bench import flops
    from bench.timing import Subprocess, idle

    stages, models, skipped = [], [], {}
    for name in settings.mixers:
        variant = settings.variant(name)
        started = time.perf_counter()
        try:
            model = served_model(variant, settings.res, settings.model_kwargs)
        except Exception as exc:
            skipped[name] = f"{variant} could not be built: {type(exc).__name__}: {exc}"
            log(f"[mixers] {name}: {skipped[name]}")
            continue
        log(f"[mixers] {name}: {variant} built in {time.perf_counter() - started:.0f} s")
        torch_child = Subprocess(idle, threads=threads, env_overrides=TORCH_CHILD_ENV)
        ort_child = Subprocess(idle, threads=threads) if settings.ort else None
        children = (torch_child, ort_child)
        try:
            for stage in settings.stages:
                stages.append(bench_mixer_stage(name, model, stage, settings, children, flops_of=flops.count,
                                                threads=threads, progress=progress))
            if settings.models:
                models.append(bench_whole_model(name, model, settings, children, cache_dir=cache_dir,
                                                flops_of=flops.count, threads=threads, progress=progress, log=log))
        finally:
            for child in children:
                if child is not None:
                    child.close()
    return {"res": settings.res, "baseline": BASELINE, "stages": stages, "models": models, "skipped": skipped,
            "placement": "torch and ONNX Runtime each in their own child process, interleaved call by call; "
                         "torch with OpenMP's default wait policy, ORT without spinning"}


# --- report ---------------------------------------------------------------------------------------


def _median(batch_entry: dict, name: str) -> float | None:
    s = batch_entry["stats"].get(name)
    return s["median_ms"] if s else None


def model_rows(section: dict) -> list[list]:
    rows = []
    for m in section["models"]:
        row = [m["mixer"], m["model"], round(m["params_m"], 2), round(m["gflops_b1"], 2)]
        for b in m["batches"]:
            row += [_median(b, BASELINE), _median(b, ORT)]
        rows.append(row)
    return rows


def stage_rows(section: dict) -> list[list]:
    rows = []
    for s in section["stages"]:
        row = [s["mixer"], s["stage"], s["shape"], s["params"] / 1e3, s["flops_b1"] / 1e6]
        for b in s["batches"]:
            row += [_median(b, BASELINE), _median(b, ORT)]
        rows.append(row)
    return rows


def write_markdown(doc: dict, out_dir: Path, plot: Path | None) -> Path:
    from bench.report import _table

    section = doc["mixers"]
    batches = doc["settings"]["batches"]
    timed = [f"{who} B={b} ms" for b in batches for who in ("torch", "ORT")]
    lines = [f"# Token mixers side by side @{section['res']}", "",
             (f"`{doc['command']}` — {doc['started']}, {doc['environment']['cpu']}, "
              f"{doc['environment']['torch_threads']} threads, load {doc['environment']['load_average_1_5_15min']}."),
             ("Medians of interleaved rounds; torch and ONNX Runtime each in their own process (torch with OpenMP's "
              "default wait policy); ORT checked against torch before timing; random weights (latency does not "
              "depend on them). FLOPs: GEMM/conv 2 per multiply-add, a real FFT of N points 2.5·N·log2(N)."),
             ""]
    if section["models"]:
        lines += ["## Whole models (S18 layout, the mixer where Hpx sits)", ""]
        lines += _table(["mixer", "model", "params (M)", "GFLOPs B=1", *timed], model_rows(section))
    if plot is not None:
        lines += [f"![latency vs FLOPs]({plot.name})", ""]
    if section["stages"]:
        lines += ["## One mixer at each S18 stage shape", ""]
        lines += _table(["mixer", "stage", "C×H×W", "params (k)", "MFLOPs B=1", *timed], stage_rows(section))
    notes = [f"- {s['mixer']} stage {s['stage']}: {k}: {v}" for s in section["stages"] for k, v in s["notes"].items()]
    notes += [f"- {m['model']}: {k}: {v}" for m in section["models"] for k, v in m["notes"].items()]
    notes += [f"- {k}: {v}" for k, v in section["skipped"].items()]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    path = out_dir / "mixers.md"
    path.write_text("\n".join(lines))
    return path


def plot(section: dict, path: Path) -> Path | None:
    """Latency (ORT and torch, batch 1) against FLOPs per model: the choice at a glance."""
    if not section["models"]:
        return None
    from bench.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in section["models"]:
        b1 = m["batches"][0]
        for label, marker in ((BASELINE, "o"), (ORT, "s")):
            ms = _median(b1, label)
            if ms is None:
                continue
            ax.scatter(m["gflops_b1"], ms, marker=marker, color="C0" if marker == "o" else "C1")
            ax.annotate(m["mixer"], (m["gflops_b1"], ms), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.scatter([], [], marker="o", color="C0", label="torch eager")
    ax.scatter([], [], marker="s", color="C1", label="ONNX Runtime")
    ax.set_yscale("log")  # SASA (windows gathered with unfold) is 5-15x slower than the rest
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel(f"latency at batch {section['models'][0]['batches'][0]['batch']} (ms)")
    ax.set_title(f"S18 models @{section['res']}: latency vs FLOPs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench mixers", description=__doc__.split("\n\n", 1)[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixers", type=name_list, default=tuple(MIXER_MODELS),
                   help=f"comma-separated from {', '.join(MIXER_MODELS)} (default: all)")
    p.add_argument("--stages", type=int_list, help="S18 stages for the per-mixer part (default 0,1,2,3; --quick 0,3)")
    p.add_argument("--batches", type=int_list, help="batch sizes (default 1,8; --quick 1)")
    p.add_argument("--rounds", type=int, help="timed rounds per comparison (default 10; --quick 3)")
    p.add_argument("--no-models", action="store_true", help="only the per-mixer part")
    p.add_argument("--no-ort", action="store_true", help="torch only (no ONNX export)")
    p.add_argument("--quick", action="store_true", help="stages 0 and 3, batch 1, 3 rounds")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test (tests/test_bench.py)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="intra-op threads for torch and ONNX Runtime (default: min(2, CPUs))")
    p.add_argument("--out", type=Path, default=Path("bench/out/mixers"), help="output directory")
    p.add_argument("--cache", type=Path, default=Path("bench/out/cache"), help="exported whole models are kept here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import shlex

    args = build_parser().parse_args(argv)
    unknown = set(args.mixers) - set(MIXER_MODELS)
    if unknown:
        build_parser().error(f"unknown mixers {sorted(unknown)}; choose from {', '.join(MIXER_MODELS)}")
    settings = settings_for(args.quick, args.tiny)
    overrides = {k: v for k, v in {"stages": args.stages, "batches": args.batches, "rounds": args.rounds}.items() if v}
    settings = replace(settings, mixers=tuple(args.mixers), models=not args.no_models, ort=not args.no_ort,
                       **overrides)
    from tqdm import tqdm

    from bench import report
    from bench.timing import environment, load_average, pin_threads

    threads = pin_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python -m bench mixers " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "environment": environment(threads), "settings": asdict(settings)}
    total = len(settings.mixers) * len(settings.batches) * settings.rounds * (len(settings.stages) + settings.models)
    with tqdm(total=total, desc="mixers", unit="round", leave=False, dynamic_ncols=True) as bar:
        doc["mixers"] = run(settings, cache_dir=args.cache, threads=threads, progress=bar.update,
                            log=lambda msg: tqdm.write(msg, file=sys.stderr))
    doc["load_average_end"] = load_average()
    (args.out / "mixers.json").write_text(report.json.dumps(doc, indent=1, default=str) + "\n")
    png = plot(doc["mixers"], args.out / "mixers.png")
    md = write_markdown(doc, args.out, png)
    print(md.read_text())
    print(f"wrote {args.out / 'mixers.json'}, {md}" + (f", {png}" if png else ""))
    return 1 if doc["mixers"]["skipped"] else 0
