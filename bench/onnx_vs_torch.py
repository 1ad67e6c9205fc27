#!/usr/bin/env python
"""Exported models on ONNX Runtime (CPU) vs torch eager with cached (frozen) filters.

Method: torch and ORT each run in their own child process (docs/design.md §6: in one process
torch's FFT slows ~2×); the parent drives them in interleaved blocks (torch block, ORT
block, torch block, ...) so only one computes at a time and slow drifts of a shared,
noisy machine hit both alike. Reported: per-call medians (and p10/p90) over all blocks,
ratio = ORT / torch (≤ 1.0 means ORT is at least as fast). Same thread count on both.

Parts:
  models  hpx_former_s18 / hb_former_s18 @ --res (random weights, filters sized for
          --res, frozen) exported with export_onnx (--body), batch 1 and 8;
  ops     one FFTConv per stage shape (the 224 stage shapes of both models): torch
          fft_conv vs the single-node ONNX model, for the chosen body strategy and the
          alternatives (--all-strategies).

JSON goes to bench/out/onnx_vs_torch_<timestamp>.json (git-ignored).

  python bench/onnx_vs_torch.py                 # models + ops, 224, batch 1 and 8
  python bench/onnx_vs_torch.py --part ops --all-strategies --batches 1
  python bench/onnx_vs_torch.py --part ops --strategies dense2d     # the chosen body vs dense2d
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OP_SHAPES = [  # (mode, C, H, W, K) of hpx_former_s18 / hb_former_s18 at 224
    ("2d", 64, 56, 56, 111), ("2d", 128, 28, 28, 55), ("2d", 320, 14, 14, 27), ("2d", 512, 7, 7, 13),
    ("1d_bidir", 64, 56, 56, 6271), ("1d_bidir", 128, 28, 28, 1567), ("1d_bidir", 320, 14, 14, 391),
    ("1d_bidir", 512, 7, 7, 97),
]


# -- child process ---------------------------------------------------------------------------

def _worker(conn, spec: dict) -> None:
    """Build one callable from ``spec``, then answer ("run", batch, n) with n timings."""
    os.environ.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    try:
        fns = _build(spec, np, torch)
        conn.send(("ready", None))
    except Exception as e:  # noqa: BLE001
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        _, batch, n = msg
        fn = fns[batch]
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        conn.send(("times", times))


def _build(spec, np, torch):
    rng = np.random.default_rng(0)
    fns = {}
    if spec["part"] == "models":
        if spec["backend"] == "torch":
            from hyena_serve.artifact import ModelSpec, build_served_model

            model, _ = build_served_model(ModelSpec.of(spec["model"], spec["res"], "random", seed=0))
            for b in spec["batches"]:
                x = torch.from_numpy(rng.standard_normal((b, 3, spec["res"], spec["res"])).astype(np.float32))

                def run(x=x):
                    with torch.inference_mode():
                        model(x)
                fns[b] = run
        elif spec["backend"] == "openvino":
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(core.read_model(spec["onnx"]), "CPU", {
                "INFERENCE_NUM_THREADS": spec["threads"], "INFERENCE_PRECISION_HINT": "f32"})
            for b in spec["batches"]:
                x = rng.standard_normal((b, 3, spec["res"], spec["res"])).astype(np.float32)
                request = compiled.create_infer_request()
                fns[b] = lambda x=x, r=request: r.infer([x])
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = spec["threads"]
            t = time.perf_counter()
            sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
            spec["session_s"] = time.perf_counter() - t
            name = sess.get_inputs()[0].name
            for b in spec["batches"]:
                x = rng.standard_normal((b, 3, spec["res"], spec["res"])).astype(np.float32)
                fns[b] = lambda x=x: sess.run(None, {name: x})
        return fns
    # single op
    from hyena_serve.contract import plan_fft
    from hyena_serve.ops import fft_conv, filter_spectrum

    mode, c, h, w, k = spec["shape"]
    plan = plan_fft(mode, h, w, k)
    torch.manual_seed(0)
    kf = filter_spectrum(torch.randn(c, *plan.kernel), plan)
    d = torch.randn(c)
    if spec["backend"] == "torch":
        for b in spec["batches"]:
            x = torch.randn(b, c, h, w)

            def run(x=x):
                with torch.inference_mode():
                    fft_conv(x, kf, d, mode, list(plan.kernel), list(plan.fft))
            fns[b] = run
    else:
        import onnxruntime as ort

        from hyena_serve.exporting.fftconv_onnx import standalone_model

        model = standalone_model(plan, kf.numpy(), d.numpy(), strategy=spec["strategy"], hw=(h, w))
        so = ort.SessionOptions()
        so.intra_op_num_threads = spec["threads"]
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for b in spec["batches"]:
            x = rng.standard_normal((b, c, h, w)).astype(np.float32)
            fns[b] = lambda x=x: sess.run(None, {"X": x})
    return fns


class Child:
    def __init__(self, spec: dict):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
        self.proc.start()
        kind, payload = self.conn.recv()
        if kind == "error":
            self.close()
            raise RuntimeError(payload)

    def run(self, batch: int, n: int) -> list[float]:
        self.conn.send(("run", batch, n))
        return self.conn.recv()[1]

    def close(self):
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)


def interleaved(children: dict[str, Child], batch: int, blocks: int, per_block: int, warmup: int) -> dict:
    import numpy as np

    for ch in children.values():
        ch.run(batch, warmup)
        time.sleep(0.15)
    times = {k: [] for k in children}
    for i in range(blocks):
        order = list(children) if i % 2 == 0 else list(children)[::-1]
        for k in order:
            time.sleep(0.15)  # let the other process's idle threads stop spinning
            times[k] += children[k].run(batch, per_block)
    out = {}
    for k, ts in times.items():
        a = np.asarray(ts) * 1e3
        out[k] = dict(median_ms=float(np.median(a)), min_ms=float(a.min()), p10_ms=float(np.percentile(a, 10)),
                      p90_ms=float(np.percentile(a, 90)), n=len(a))
    return out


# -- parts -----------------------------------------------------------------------------------

def bench_models(args) -> list[dict]:
    from hyena_serve.artifact import ModelSpec, build_artifact

    rows = []
    for name in args.models:
        path = build_artifact(ModelSpec.of(name, args.res, "random", seed=0), args.cache, body=args.body,
                              check=not args.no_check, force=args.reexport).onnx_path
        base = dict(part="models", model=name, res=args.res, batches=args.batches, threads=args.threads)
        t0 = time.perf_counter()
        ort_child = Child({**base, "backend": "ort", "onnx": str(path)})
        session_s = time.perf_counter() - t0
        children = {"torch": Child({**base, "backend": "torch"}), "ort": ort_child}
        if args.openvino:
            inlined = build_artifact(ModelSpec.of(name, args.res, "random", seed=0), args.cache, body=args.body,
                                     check=not args.no_check, force=args.reexport, inline=True).onnx_path
            children["openvino"] = Child({**base, "backend": "openvino", "onnx": str(inlined)})
        try:
            for b in args.batches:
                res = interleaved(children, b, args.blocks, args.per_block, args.warmup)
                t = res["torch"]["median_ms"]
                ratio = res["ort"]["median_ms"] / t
                row = dict(model=name, res=args.res, batch=b, body=args.body, torch=res["torch"],
                           ort=res["ort"], ratio=ratio, ort_session_create_s=session_s)
                line = (f"{name:16s} B={b:<2d} torch {t:8.2f} ms   ORT {res['ort']['median_ms']:8.2f} ms   "
                        f"ratio {ratio:5.2f}")
                if "openvino" in res:
                    row["openvino"] = res["openvino"]
                    row["openvino_ratio"] = res["openvino"]["median_ms"] / t
                    line += f"   OpenVINO (inlined) {res['openvino']['median_ms']:8.2f} ms   ratio {row['openvino_ratio']:5.2f}"
                rows.append(row)
                print(line, flush=True)
        finally:
            for ch in children.values():
                ch.close()
    return rows


def bench_ops(args) -> list[dict]:
    from hyena_serve.contract import plan_fft
    from hyena_serve.exporting import lowering_matmul

    rows = []
    for shape in OP_SHAPES:
        mode, c, h, w, k = shape
        plan = plan_fft(mode, h, w, k)
        chosen = lowering_matmul.choose_strategy(plan)
        strategies = [chosen]
        if args.strategies:
            from hyena_serve.exporting.lowering_matmul import STRATEGIES

            unknown = set(args.strategies) - set(STRATEGIES)
            if unknown:
                raise SystemExit(f"unknown strategies {sorted(unknown)}; expected some of {STRATEGIES}")
            fits = {"2d": ("split2d", "dense2d", "conv"), "1d_bidir": ("ct1ds", "ct1d", "dense1d", "conv")}[mode]
            strategies += [s for s in args.strategies if s in fits and s != chosen]
        if args.all_strategies:
            cands = ["split2d", "dense2d", "conv"] if mode == "2d" else ["ct1ds", "ct1d", "dense1d", "conv"]
            if plan.fft[0] > 2048:
                cands = [s for s in cands if s != "dense1d"]
            strategies += [s for s in cands if s != chosen]
        if args.with_dft:
            strategies.append("dft")
        base = dict(part="ops", shape=shape, batches=args.batches, threads=args.threads)
        children = {"torch": Child({**base, "backend": "torch"})}
        for s in strategies:
            children[s] = Child({**base, "backend": "ort", "strategy": s})
        try:
            for b in args.batches:
                res = interleaved(children, b, args.blocks, args.per_block, args.warmup)
                t = res["torch"]["median_ms"]
                row = dict(shape=list(shape), batch=b, chosen=chosen, torch=res["torch"],
                           ort={s: res[s] for s in strategies},
                           ratio={s: res[s]["median_ms"] / t for s in strategies})
                rows.append(row)
                alts = "  ".join(f"{s} {res[s]['median_ms']:7.3f} ({res[s]['median_ms'] / t:4.2f}x)" for s in strategies)
                print(f"{mode:8s} C={c:<3d} {h}x{w} K={k:<5d} B={b}: torch {t:7.3f} ms | {alts}", flush=True)
        finally:
            for ch in children.values():
                ch.close()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("models", "ops", "all"), default="all")
    p.add_argument("--models", nargs="+", default=["hpx_former_s18", "hb_former_s18"])
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--body", choices=("matmul", "dft"), default="matmul")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=6, help="interleaved blocks per backend")
    p.add_argument("--per-block", type=int, default=5, help="calls per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--all-strategies", action="store_true", help="ops: time every applicable body strategy")
    p.add_argument("--strategies", type=lambda v: [x for x in v.split(",") if x], default=[],
                   help="ops: also time these body strategies where they apply, e.g. dense2d,ct1d")
    p.add_argument("--openvino", action="store_true",
                   help="models: also time OpenVINO on the --inline export (needs the openvino wheel)")
    p.add_argument("--with-dft", action="store_true", help="ops: also time the plain DFT body")
    p.add_argument("--cache", default=str(REPO / "bench" / "out" / "artifacts"),
                   help="artifact cache (exports land in its onnx/ folder)")
    p.add_argument("--reexport", action="store_true")
    p.add_argument("--no-check", action="store_true", help="skip the parity check when exporting")
    args = p.parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    shown = dict(vars(args))
    cache = Path(args.cache).resolve()
    if cache.is_relative_to(REPO):  # no machine paths in results that get committed
        shown["cache"] = str(cache.relative_to(REPO))
    result = dict(args=shown, method="separate processes per backend, interleaved blocks, medians",
                  host=dict(cpus=os.cpu_count(), load=os.getloadavg()))
    if args.part in ("ops", "all"):
        result["ops"] = bench_ops(args)
    if args.part in ("models", "all"):
        result["models"] = bench_models(args)
    result["host"]["load_after"] = os.getloadavg()
    out = REPO / "bench" / "out" / f"onnx_vs_torch_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
