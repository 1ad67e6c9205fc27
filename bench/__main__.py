"""``python -m bench [op|model|serving|all|gpu|mixers|precision]``: run benchmarks, write JSON + Markdown + PNG plots.

Examples::

    python -m bench all --quick                 # ~3 min on the loaded 2-core host, ONNX exports cached
    python -m bench op --threads 2              # all four S18 stages, 10 interleaved rounds
    python -m bench model --models hpx_former_s18 --res 224 --batches 1,8
    python -m bench serving --concurrency 1,4,16 --requests 64
    python -m bench gpu --help                  # the GPU benchmark (bench/gpu.py; CUDA GPU needed)
    python -m bench mixers --quick              # Hpx, Hb, GFNet, AFF, SASA, SepConv side by side (bench/mixers.py)
    python -m bench precision                   # fp32/fp16/bf16/int8: latency and accuracy (bench/precision.py)
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin, before torch is imported (see bench.timing).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.args import int_list, name_list

SECTIONS = ("op", "model", "serving")
#: Benchmarks with their own command line, run as ``python -m bench <name> [options]``.
OWN_OPTIONS = ("gpu", "mixers", "precision")


def build_parser() -> argparse.ArgumentParser:
    from bench.serving import ALL_TARGETS

    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of hyena_serve: the FFT-conv op, whole models and the serving stack. "
                    "Alternatives are timed interleaved in one run and reported as ratios against a named "
                    "baseline; every run writes results.json, report.md and PNG plots to --out.",
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", nargs="?", default="all", choices=(*SECTIONS, "all", *OWN_OPTIONS),
                   help="which benchmark to run (default: all, the CPU ones); gpu: the GPU benchmark, mixers: "
                        "the token mixers side by side, each with its own options (python -m bench gpu --help)")
    p.add_argument("--quick", action="store_true",
                   help="few rounds, batch 1, small resolution, no torch.compile, concurrency 1/4/16: about a "
                        "minute once the ONNX exports are cached")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke-test settings (tests/test_bench.py)
    p.add_argument("--out", type=Path, default=Path("bench/out"), help="output directory (default: bench/out)")
    p.add_argument("--cache", type=Path, default=Path("bench/out/cache"),
                   help="exported ONNX models and server logs are kept here (default: bench/out/cache)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="intra-op threads for torch, ONNX Runtime and the gateway (default: min(2, CPUs))")
    p.add_argument("--rounds", type=int, help="timed rounds per comparison (op/model)")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime alternatives (op/model)")
    p.add_argument("--bodies", type=name_list, help="ONNX FFTConv bodies to time (default: matmul,dft)")

    g = p.add_argument_group("op")
    g.add_argument("--op-stages", type=int_list, help="S18 stages to time, e.g. 0,3 (default: all; --quick: 0,3)")
    g.add_argument("--no-direct", action="store_true", help="skip the direct convolution (slow at stage 0)")

    g = p.add_argument_group("model")
    g.add_argument("--models", type=name_list, help="registry names (default: hpx_former_s18,hb_former_s18,convformer_s18)")
    g.add_argument("--res", type=int, help="input resolution (default 224; --quick 64)")
    g.add_argument("--batches", type=int_list, help="batch sizes (default 1,8; --quick 1)")
    g.add_argument("--no-compile", action="store_true", help="skip torch.compile (always skipped with --quick)")

    g = p.add_argument_group("serving")
    g.add_argument("--serve-model", help="model served (default hpx_former_s18; --quick hpx_former_s12)")
    g.add_argument("--serve-res", type=int, help="served resolution (default 224; --quick 64)")
    g.add_argument("--concurrency", type=int_list, help="client concurrency levels (default 1,2,4,8,16,32)")
    g.add_argument("--requests", type=int, help="most requests per level (default 256; --quick 48)")
    g.add_argument("--seconds", type=float, help="most seconds per level (default 60; --quick 6)")
    g.add_argument("--targets", type=name_list,
                   help=f"serving targets, comma-separated from: {', '.join(ALL_TARGETS)} (default: all but gateway/torch)")
    return p


def _settings(args: argparse.Namespace) -> dict:
    from bench import model, op, serving

    op_s = op.settings_for(args.quick, args.tiny, list(args.op_stages) if args.op_stages else None)
    if args.rounds:
        op_s.rounds = args.rounds
    op_s.ort = op_s.ort and not args.no_ort
    op_s.direct = not args.no_direct

    model_s = model.settings_for(args.quick, args.tiny)
    overrides = {k: v for k, v in {"models": args.models, "res": args.res, "batches": args.batches,
                                   "rounds": args.rounds, "bodies": args.bodies}.items() if v}
    model_s = replace(model_s, **overrides)
    if args.no_compile:
        model_s.compile = False
    if args.no_ort or args.tiny:  # --tiny: an S4 export takes ~40 s here; the op section covers ORT
        model_s.ort = False

    serve_s = serving.settings_for(args.quick, args.tiny)
    overrides = {k: v for k, v in {"model": args.serve_model, "res": args.serve_res, "concurrency": args.concurrency,
                                   "requests": args.requests, "seconds": args.seconds,
                                   "targets": args.targets}.items() if v}
    serve_s = replace(serve_s, **overrides)
    unknown = set(serve_s.targets) - set(serving.ALL_TARGETS)
    if unknown:
        raise SystemExit(f"unknown serving targets {sorted(unknown)}; choose from {', '.join(serving.ALL_TARGETS)}")
    return {"op": op_s, "model": model_s, "serving": serve_s}


def _bar(desc: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="round", leave=False, dynamic_ncols=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gpu"]:  # its own options, and none of the CPU sections' imports
        from bench import gpu

        return gpu.main(argv[1:])
    if argv[:1] == ["mixers"]:
        from bench import mixers

        return mixers.main(argv[1:])
    if argv[:1] == ["precision"]:
        from bench import precision

        return precision.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.what in OWN_OPTIONS:
        build_parser().error(f"put {args.what} first: python -m bench {args.what} [options] "
                             f"(see python -m bench {args.what} --help)")
    import torch

    from bench import report
    from bench.timing import environment, load_average, pin_threads

    threads = pin_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir: Path = args.cache
    settings = _settings(args)
    wanted = SECTIONS if args.what == "all" else (args.what,)
    argv_text = " ".join(shlex.quote(a) for a in argv)
    doc = {
        "command": f"python -m bench {argv_text}".strip(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(threads),
        "device": device,
        "settings": {k: asdict(v) for k, v in settings.items() if k in wanted},
        "sections": {},
        "skipped_sections": {},
    }
    doc["settings"].get("op", {}).pop("shapes", None)
    if "op" in doc["settings"]:
        doc["settings"]["op"]["shapes"] = [f"{s.label} [{m}]" for s, m in settings["op"].shapes]
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)

    for name in wanted:
        log(f"[bench] {name} ...")
        started = time.perf_counter()
        try:
            if name == "op":
                from bench import op

                s = settings["op"]
                with _bar("op", len(s.shapes) * s.rounds) as bar:
                    doc["sections"]["op"] = op.run(s, threads=threads, device=device, progress=bar.update)
            elif name == "model":
                from bench import model

                s = settings["model"]
                with _bar("model", model.rounds_total(s)) as bar:
                    doc["sections"]["model"] = model.run(s, cache_dir=cache_dir, threads=threads, device=device,
                                                         progress=bar.update, log=log)
            else:
                from bench import serving

                bars = []

                def factory(desc: str, total: int):
                    bar = _bar(desc, total)
                    bars.append(bar)
                    return bar.update

                try:
                    doc["sections"]["serving"] = serving.run(settings["serving"], cache_dir=cache_dir,
                                                             log_dir=cache_dir / "logs", threads=threads,
                                                             progress_factory=factory, log=log)
                finally:
                    for bar in bars:
                        bar.close()
        except Exception:  # one broken section is reported; the others still run
            doc["skipped_sections"][name] = "failed:\n```\n" + traceback.format_exc()[-2000:] + "```"
            log(f"[bench] {name} failed:\n{traceback.format_exc()}")
        log(f"[bench] {name} done in {time.perf_counter() - started:.0f} s")

    doc["seconds"] = time.perf_counter() - t0
    doc["load_average_end"] = load_average()
    paths = report.write_all(doc, out_dir)
    for line in doc["headline"]:
        print(line)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 1 if doc["skipped_sections"] else 0


if __name__ == "__main__":
    sys.exit(main())
