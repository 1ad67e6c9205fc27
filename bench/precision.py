"""``python -m bench precision``: every precision against fp32, speed and accuracy side by
side in one run.

Rows (each against the fp32 of its own runtime; docs/performance.md "Reduced precision"):

- ``ORT fp32`` (the served default), ``ORT fp16`` (float16 weights and I/O), ``ORT int8``
  (dynamic quantization of the MatMul/Gemm weights, as served: --precision int8) and
  ``ORT int8 +Conv`` (Conv weights quantized too: not a served option, timed to show why);
- ``torch fp32`` and ``torch bf16`` (the torch backend's bf16: the model cast to
  bfloat16, ``Kf``/``D`` and the FFT float32), when this CPU has bf16 instructions.

Measured:

- latency of the ImageNet-size model (default hpx_former_s18 @224, seeded random weights:
  speed does not depend on the values) at each batch size, interleaved rounds with ONNX
  Runtime in its own processes (:mod:`bench.timing`), as a ratio to fp32;
- agreement with torch fp32 on the same model: top-1 on the photos (the scikit-image
  photos the export's parity check uses) and on random normal inputs, and the largest
  |logit difference|. Random weights give small top-1 margins, so these count how often
  the rounding flips a near-tie; the trained model below is the accuracy that matters;
- accuracy of the trained digits model (``python -m hyena_serve.train``; the run is made
  once into ``--digits-run`` if missing and reused) over the validation split its trainer
  held out (split seed, fraction, resolution and subset read back from the run's
  ``last.pt``), and the drop in points from fp32. A precision that drops more than
  :data:`MAX_DROP_POINTS` is reported as such.

Writes ``precision.json`` and ``precision.md`` to ``--out`` (default bench/out/precision).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.args import int_list, name_list

REPO = Path(__file__).resolve().parents[1]
SEED = 0
#: The issue's accuracy budget: a precision may lose at most this many points of held-out accuracy.
MAX_DROP_POINTS = 0.5
#: Rows: (name, runtime, precision, served). The fp32 row of each runtime is its baseline.
ROWS = (
    ("ORT fp32", "ORT", "fp32", True),
    ("ORT fp16", "ORT", "fp16", True),
    ("ORT int8", "ORT", "int8", True),
    ("ORT int8 +Conv", "ORT", "int8+conv", False),
    ("torch fp32", "torch", "fp32", True),
    ("torch bf16", "torch", "bf16", True),
)
BASELINES = {"ORT": "ORT fp32", "torch": "torch fp32"}
#: The reference every row's agreement and accuracy is measured against.
REFERENCE = "torch fp32"
TINY_KWARGS = {"dims": [8, 16, 16, 16], "num_classes": 10}
DIGITS_DIR = Path("bench/out/precision/digits_run")


@dataclass
class PrecisionSettings:
    model: str = "hpx_former_s18"
    res: int = 224
    model_kwargs: dict = field(default_factory=dict)
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 10
    warmup: int = 2
    max_seconds: float = 240.0
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "int8+conv")
    random_inputs: int = 32
    digits_run: str = str(DIGITS_DIR)
    #: arguments of the digits training when the run is missing (default schedule: ~1 min on 1 core)
    digits_train: tuple[str, ...] = ()


def settings_for(quick: bool = False, tiny: bool = False) -> PrecisionSettings:
    if tiny:  # smoke test: a narrow S4 at 32 px and a digits run of one short epoch
        return PrecisionSettings(model="hpx_former_s4", res=32, model_kwargs=dict(TINY_KWARGS), batches=(1,),
                                 rounds=2, warmup=1, max_seconds=10.0, random_inputs=4,
                                 digits_train=("--epochs", "1", "--subset", "120", "--dims", "8,16,16,16"))
    if quick:
        return PrecisionSettings(model="hpx_former_s12", res=64, batches=(1,), rounds=3, warmup=1, max_seconds=30.0,
                                 random_inputs=8)
    return PrecisionSettings()


def _rows(settings: PrecisionSettings) -> list[tuple[str, str, str, bool]]:
    wanted = set(settings.precisions) | {"fp32"}
    return [r for r in ROWS if r[2] in wanted]


def _shown(path) -> str:
    """A path as the results show it: repo-relative where it can be (no machine paths)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


# --- artifacts (built in a child process: the export's memory never counts here) ---------------


def _spec(model: str, res: int | None, weights: str, model_kwargs: dict):
    from hyena_serve.artifact import ModelSpec

    return ModelSpec.of(model, res, weights, SEED, model_kwargs)


def onnx_paths(model: str, res: int | None, weights: str, model_kwargs: dict, cache_dir: str,
               precisions: Sequence[str]) -> dict[str, str]:
    """Where the artifact builder keeps each ONNX precision's file (torch-free)."""
    from hyena_serve.artifact import artifact_name, plan_manifest

    manifest = plan_manifest(_spec(model, res, weights, model_kwargs))
    onnx_dir = Path(cache_dir) / "onnx"
    out = {}
    for p in precisions:
        if p == "int8+conv":
            out[p] = str(onnx_dir / f"{artifact_name(manifest, precision='int8')}_conv.onnx")
        elif p != "bf16":
            out[p] = str(onnx_dir / f"{artifact_name(manifest, precision=p)}.onnx")
    return out


def build_onnx(model: str, res: int | None, weights: str, model_kwargs: dict, cache_dir: str,
               precisions: Sequence[str]) -> dict[str, str]:
    """Build (or find) every ONNX precision's artifact; ``int8+conv`` is quantized here
    from the fp32 file with the Conv weights too (not a served option)."""
    from hyena_serve.artifact import build_artifact
    from hyena_serve.exporting.quantize import quantize_int8

    spec = _spec(model, res, weights, model_kwargs)
    paths = onnx_paths(model, res, weights, model_kwargs, cache_dir, precisions)
    for p in ("fp32", *[p for p in precisions if p not in ("fp32", "int8+conv", "bf16")]):
        build_artifact(spec, cache_dir, precision=p, check=False, progress=False)
    if "int8+conv" in paths and not Path(paths["int8+conv"]).is_file():
        quantize_int8(paths["fp32"], paths["int8+conv"], op_types=("MatMul", "Conv"))
    return paths


def ort_logits(path: str, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of an ONNX file in ONNX Runtime (run in a child process)."""
    import onnxruntime as ort

    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    outs = [session.run([OUTPUT_NAME], {INPUT_NAME: batch[i:i + 64].astype(dtype)})[0]
            for i in range(0, len(batch), 64)]
    return np.concatenate(outs).astype(np.float32)


def _in_child(fn, *args):
    """``fn(*args)`` in a fresh spawned process (keeps ONNX Runtime and exports out of this one)."""
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- torch -----------------------------------------------------------------------------------


def torch_models(spec, precisions: Sequence[str]) -> tuple[dict, dict, object]:
    """The served torch model in fp32 and, where asked and runnable here, bf16: (models,
    skipped reasons, manifest)."""
    from hyena_serve.artifact import build_served_model, cast_keep_filters
    from hyena_serve.precision import PrecisionError, check_torch

    model, manifest = build_served_model(spec)
    models, skipped = {"torch fp32": model}, {}
    if "bf16" in precisions:
        try:
            check_torch("bf16", "cpu")
            import copy

            models["torch bf16"] = cast_keep_filters(copy.deepcopy(model), "bfloat16")
        except PrecisionError as exc:
            skipped["torch bf16"] = f"skipped: {exc}"
    return models, skipped, manifest


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        outs = [model(torch.from_numpy(x[i:i + 64]).to(dtype)).float().numpy() for i in range(0, len(x), 64)]
    return np.concatenate(outs)


# --- accuracy ----------------------------------------------------------------------------------


def agreement(reference: np.ndarray, logits: np.ndarray) -> dict:
    """Top-1 agreement with the reference, the largest |logit difference| and, to tell a
    flipped near-tie from real damage, the reference's top-2 margins: their median over
    all inputs and the largest among the inputs whose top-1 changed."""
    same = reference.argmax(-1) == logits.argmax(-1)
    top2 = np.sort(reference.astype(np.float64), axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return {"n": len(reference), "top1_same": int(same.sum()),
            "max_abs_diff": float(np.abs(reference.astype(np.float64) - logits).max()),
            "logit_scale": float(np.abs(reference).max()),
            "median_top2_margin": float(np.median(margin)),
            "largest_flipped_margin": float(margin[~same].max()) if (~same).any() else None}


def digits_run(settings: PrecisionSettings, log=print) -> Path:
    """The trained digits run: reused if ``settings.digits_run`` holds one, else trained there once."""
    run = Path(settings.digits_run)
    if (run / "manifest.json").is_file() and (run / "last.pt").is_file():
        return run
    log(f"  training the digits model into {_shown(run)} (once; reused by later runs) ...")
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hyena_serve.train", "--out", str(run), "--no-progress",
                        "--threads", "1", *settings.digits_train], capture_output=True, text=True, cwd=REPO,
                       check=False)
    if r.returncode != 0:
        raise RuntimeError(f"digits training failed: {r.stderr.strip()[-500:]}")
    log(f"  trained in {time.perf_counter() - started:.0f} s")
    return run


def held_out_split(run: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The validation images the trainer of ``run`` held out (as model inputs) and their labels."""
    from hyena_serve.training.checkpoint import load_training_state
    from hyena_serve.training.data import load_digits_splits, to_model_input

    args = load_training_state(run / "last.pt")["args"]
    split = {k: args[k] for k in ("img_size", "val_fraction", "seed", "subset")}
    _, val = load_digits_splits(split["img_size"], split["val_fraction"], split["seed"], split["subset"])
    return to_model_input(val.images).numpy(), val.labels.numpy(), split


# --- the run -----------------------------------------------------------------------------------


def run(settings: PrecisionSettings, *, cache_dir: Path, threads: int | None, progress=None, log=print) -> dict:
    import torch

    from bench.timing import Subprocess, compare, ort_file_runner, ratios
    from hyena_serve.contract import INPUT_NAME
    from hyena_serve.exporting.parity import SKIMAGE_IMAGES, real_batch

    rows = _rows(settings)
    precisions = list(dict.fromkeys(r[2] for r in rows))
    section: dict = {"model": settings.model, "res": settings.res, "reference": REFERENCE,
                     "rows": {name: {"runtime": rt, "precision": p, "served": served,
                                     "baseline": BASELINES[rt]} for name, rt, p, served in rows},
                     "skipped": {}}

    # 1. the model at full size: artifacts, then latency
    log(f"[precision] {settings.model} @{settings.res}: ONNX artifacts ({', '.join(p for p in precisions if p != 'bf16')})")
    started = time.perf_counter()
    paths = _in_child(build_onnx, settings.model, settings.res, "random", settings.model_kwargs, str(cache_dir),
                      precisions)
    log(f"  ready in {time.perf_counter() - started:.0f} s")
    section["onnx"] = {p: _shown(v) for p, v in paths.items()}
    spec = _spec(settings.model, settings.res, "random", settings.model_kwargs)
    models, skipped, manifest = torch_models(spec, precisions)
    section["skipped"].update(skipped)
    ort_rows = {name: p for name, rt, p, _ in rows if rt == "ORT"}
    timed = []
    for batch in settings.batches:
        x = np.random.default_rng(SEED).standard_normal((batch, 3, settings.res, settings.res)).astype(np.float32)
        alternatives: dict = {}
        for name, model in models.items():
            dtype = next(model.parameters()).dtype
            xt = torch.from_numpy(x).to(dtype)
            alternatives[name] = lambda m=model, xt=xt: m(xt)
        children = {}
        try:
            for name, p in ort_rows.items():
                feed = x.astype(np.float16) if p == "fp16" else x
                children[name] = Subprocess(ort_file_runner, paths[p], INPUT_NAME, feed, threads, threads=threads)
            alternatives.update(children)
            with torch.inference_mode():
                stats = compare(alternatives, rounds=settings.rounds, warmup=settings.warmup,
                                max_seconds=settings.max_seconds, progress=progress)
        finally:
            for child in children.values():
                child.close()
        timed.append({"batch": batch, "stats": {k: s.as_dict() for k, s in stats.items()},
                      "vs_fp32": {k: stats[k].median_ms / stats[section["rows"][k]["baseline"]].median_ms
                                  for k in stats if section["rows"][k]["baseline"] in stats},
                      "vs_ORT_fp32": {k: 1 / v for k, v in ratios(stats, "ORT fp32").items()}})
        log(f"  B={batch}: " + ", ".join(f"{k} {s.median_ms:.1f} ms" for k, s in stats.items()))
    section["latency"] = timed

    # 2. agreement with torch fp32 on photos and random inputs (same model, same weights)
    inputs = {"photos": real_batch(manifest.preprocess),
              "random": np.random.default_rng(SEED + 1).standard_normal(
                  (settings.random_inputs, 3, settings.res, settings.res)).astype(np.float32)}
    section["photos"] = list(SKIMAGE_IMAGES)
    section["agreement"] = _agreement(inputs, models, ort_rows, paths, threads)

    # 3. the trained digits model over its held-out split
    run_dir = digits_run(settings, log)
    x_val, y_val, split = held_out_split(run_dir)
    log(f"[precision] digits: {len(y_val)} held-out images ({split})")
    from hyena_serve.manifest import RUN_MANIFEST, load_manifest

    dmodel = load_manifest(run_dir / RUN_MANIFEST).model
    dspec = _spec(dmodel, None, str(run_dir), {})
    dpaths = _in_child(build_onnx, dmodel, None, str(run_dir), {}, str(cache_dir), precisions)
    dmodels, _, dmanifest = torch_models(dspec, precisions)
    logits = {name: torch_logits(m, x_val) for name, m in dmodels.items()}
    for name, p in ort_rows.items():
        logits[name] = _in_child(ort_logits, dpaths[p], x_val, threads)
    base_acc = float((logits[REFERENCE].argmax(-1) == y_val).mean())
    digits = {"run": _shown(run_dir), "split": split, "n": len(y_val), "trainer_reported": dmanifest.variant,
              "accuracy": {}, "drop_points": {}, "agreement": {}}
    for name, lg in logits.items():
        acc = float((lg.argmax(-1) == y_val).mean())
        digits["accuracy"][name] = acc
        digits["drop_points"][name] = 100 * (base_acc - acc)
        digits["agreement"][name] = agreement(logits[REFERENCE], lg)
    section["digits"] = digits
    section["verdict"] = {name: _verdict(name, section) for name in section["rows"] if name in logits}
    return section


def _agreement(inputs: dict, models: dict, ort_rows: dict, paths: dict, threads) -> dict:
    out: dict = {}
    reference = {label: torch_logits(models[REFERENCE], x) for label, x in inputs.items()}
    for name, model in models.items():
        out[name] = {label: agreement(reference[label], torch_logits(model, x)) for label, x in inputs.items()}
    for name, p in ort_rows.items():
        out[name] = {label: agreement(reference[label], _in_child(ort_logits, paths[p], x, threads))
                     for label, x in inputs.items()}
    return out


def _verdict(name: str, section: dict) -> str:
    drop = section["digits"]["drop_points"][name]
    row = section["rows"][name]
    if drop > MAX_DROP_POINTS:
        return f"loses {drop:.2f} points of held-out accuracy (> {MAX_DROP_POINTS}): not a default"
    return "within the accuracy budget" + ("" if row["served"] else " (not a served option)")


# --- report ------------------------------------------------------------------------------------


def table_rows(section: dict) -> list[list]:
    rows = []
    lat = section["latency"]
    for name, row in section["rows"].items():
        if name not in section["digits"]["accuracy"]:
            continue
        cells = [row["precision"], row["runtime"] + ("" if row["served"] else " (experiment)")]
        for b in lat:
            s = b["stats"].get(name)
            cells += [s["median_ms"] if s else None, b["vs_fp32"].get(name)]
        ag = section["agreement"][name]
        worst = max(a["max_abs_diff"] for a in ag.values())
        scale = max(a["logit_scale"] for a in ag.values())
        cells += [f"{ag['photos']['top1_same']}/{ag['photos']['n']}", f"{ag['random']['top1_same']}/{ag['random']['n']}",
                  f"{worst:.3g} ({scale:.3g})"]
        d = section["digits"]
        dg = d["agreement"][name]
        cells += [f"{dg['top1_same']}/{dg['n']}", f"{100 * d['accuracy'][name]:.2f}", f"{d['drop_points'][name]:+.2f}"]
        rows.append(cells)
    return rows


def write_markdown(doc: dict, out_dir: Path) -> Path:
    from bench.report import _table

    s = doc["precision"]
    env = doc["environment"]
    header = ["precision", "runtime"]
    for b in s["latency"]:
        header += [f"B={b['batch']} ms", f"× fp32 B={b['batch']}"]
    header += ["photos top-1 = fp32", "random top-1 = fp32", "max abs Δlogit (logit scale)",
               "digits top-1 = fp32", f"digits acc % (n={s['digits']['n']})", "drop vs fp32 (points)"]
    lines = [f"# Precision vs fp32: {s['model']} @{s['res']} and the trained digits model", "",
             f"`{doc['command']}` — {doc['started']}, {env['cpu']}, {env['torch_threads']} threads, load "
             f"{env['load_average_1_5_15min']} at start, {doc.get('load_average_end')} at end; onnxruntime "
             f"{env.get('onnxruntime')}, torch {env['torch']}; CPU bf16 flags: {', '.join(doc['cpu_bf16']) or 'none'}.",
             "",
             "Latency: medians of interleaved rounds (ONNX Runtime in its own processes, random weights); × fp32 is "
             "the median over the fp32 row of the same runtime (< 1: faster). Agreement and max |Δlogit| are against "
             f"torch fp32 on the same weights ({len(s['photos'])} photos and "
             f"{s['agreement'][REFERENCE]['random']['n']} random inputs; random weights have small top-2 margins, so "
             "fp32's margins on the inputs whose top-1 changed are listed below). Digits: the trained run's held-out split "
             f"({s['digits']['split']}), trainer's own record: {s['digits']['trainer_reported']}; a drop above "
             f"{MAX_DROP_POINTS} point fails the budget (one image = {100 / s['digits']['n']:.2f} points).", ""]
    lines += _table(header, table_rows(s))
    lines += ["## Verdict", ""] + [f"- {k}: {v}" for k, v in s["verdict"].items()] + [""]
    flips = []
    for name, ag in s["agreement"].items():
        for label, a in ag.items():
            if a["top1_same"] < a["n"] and a.get("largest_flipped_margin") is not None:
                flips.append(f"- {name}, {label}: {a['n'] - a['top1_same']} of {a['n']} flipped; fp32's top-2 margin "
                             f"was at most {a['largest_flipped_margin']:.3g} on those (median over all "
                             f"{a['n']}: {a['median_top2_margin']:.3g}; max |Δlogit| {a['max_abs_diff']:.3g})")
    if flips:
        lines += ["## Top-1 changes and fp32's margins (random weights)", ""] + flips + [""]
    if s["skipped"]:
        lines += ["## Skipped", ""] + [f"- {k}: {v}" for k, v in s["skipped"].items()] + [""]
    path = out_dir / "precision.md"
    path.write_text("\n".join(lines))
    return path


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench precision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--quick", action="store_true", help="hpx_former_s12 @64, batch 1, 3 rounds, 8 random inputs")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test (tests/test_bench.py)
    p.add_argument("--model", help="registry model timed and compared (default hpx_former_s18)")
    p.add_argument("--res", type=int, help="its resolution (default 224)")
    p.add_argument("--batches", type=int_list, help="batch sizes timed (default 1,8)")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (default 10)")
    p.add_argument("--precisions", type=name_list,
                   help="precisions besides fp32 (default fp16,bf16,int8,int8+conv)")
    p.add_argument("--random-inputs", type=int, help="random inputs for the agreement (default 32)")
    p.add_argument("--digits-run", help=f"trained digits run (default {DIGITS_DIR}; trained there if missing)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="intra-op threads")
    p.add_argument("--out", type=Path, default=Path("bench/out/precision"), help="output directory")
    p.add_argument("--cache", type=Path, default=Path("bench/out/cache"), help="exported ONNX models are kept here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import shlex

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    settings = settings_for(args.quick, args.tiny)
    overrides = {k: v for k, v in {"model": args.model, "res": args.res, "batches": args.batches,
                                   "rounds": args.rounds, "random_inputs": args.random_inputs,
                                   "digits_run": args.digits_run}.items() if v}
    if args.precisions:
        unknown = set(args.precisions) - {r[2] for r in ROWS}
        if unknown:
            build_parser().error(f"unknown precisions {sorted(unknown)}; choose from fp16, bf16, int8, int8+conv")
        overrides["precisions"] = ("fp32", *args.precisions)
    if args.tiny and not args.digits_run:
        overrides["digits_run"] = str(args.cache / "digits_tiny")
    settings = replace(settings, **overrides)
    from tqdm import tqdm

    from bench.timing import environment, load_average, pin_threads
    from hyena_serve.precision import cpu_bf16_flags

    threads = pin_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    shown = {**asdict(settings), "digits_run": _shown(settings.digits_run)}
    doc = {"command": "python -m bench precision " + " ".join(shlex.quote(a) for a in argv),
           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "environment": environment(threads), "cpu_bf16": list(cpu_bf16_flags()), "settings": shown}
    started = time.perf_counter()
    total = len(settings.batches) * settings.rounds
    with tqdm(total=total, desc="precision", unit="round", leave=False, dynamic_ncols=True) as bar:
        doc["precision"] = run(settings, cache_dir=args.cache, threads=threads, progress=bar.update,
                               log=lambda msg: tqdm.write(msg, file=sys.stderr))
    doc["seconds"] = time.perf_counter() - started
    doc["load_average_end"] = load_average()
    from bench import report

    (args.out / "precision.json").write_text(report.json.dumps(doc, indent=1, default=str) + "\n")
    md = write_markdown(doc, args.out)
    print(md.read_text())
    print(f"wrote {args.out / 'precision.json'}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
