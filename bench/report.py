"""Reports of a benchmark run: the JSON document, a Markdown summary and PNG plots
(matplotlib, Agg backend) written next to each other in the output directory."""

from __future__ import annotations

import json
from pathlib import Path

PLOTS = {
    "op": "op_latency.png",
    "model": "model_latency_vs_batch.png",
    "serving_throughput": "serving_throughput_vs_concurrency.png",
    "serving_latency": "serving_latency_vs_concurrency.png",
    "serving_stages": "serving_gateway_stages.png",
}


def write_json(doc: dict, out_dir: Path) -> Path:
    path = out_dir / "results.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


# --- plots ---------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_op(section: dict, path: Path) -> Path | None:
    results = section.get("results") or []
    if not results:
        return None
    plt = _pyplot()
    names = sorted({n for r in results for n in r["stats"]}, key=lambda n: (n != section["baseline"], n))
    labels = [f"{r['model'].split('_')[0]} s{r['stage']}\n{r['channels']}x{r['size']}²" for r in results]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(results)), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(results))]
        ys = [r["stats"].get(name, {}).get("median_ms", float("nan")) for r in results]
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log)")
    ax.set_title(f"FFT conv vs direct conv (batch {results[0]['batch']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_model(section: dict, path: Path) -> Path | None:
    results = section.get("results") or []
    if not results:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.5), squeeze=False)
    for ax, entry in zip(axes[0], results):
        names = sorted({n for b in entry["batches"] for n in b["stats"]})
        for name in names:
            pts = [(b["batch"], b["stats"][name]["median_ms"]) for b in entry["batches"] if name in b["stats"]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("median latency (ms)")
        ax.set_title(f"{entry['model']} @ {entry['res']}", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_serving(section: dict, out_dir: Path) -> dict[str, Path]:
    targets = {n: t for n, t in (section.get("targets") or {}).items() if t.get("levels")}
    if not targets:
        return {}
    plt = _pyplot()
    written = {}
    for key, ylabel, get in (
        ("serving_throughput", "throughput (img/s)", lambda lv: lv["throughput_img_s"]),
        ("serving_latency", "latency p50 (solid) / p99 (dashed), ms", None),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, t in targets.items():
            cs = [lv["concurrency"] for lv in t["levels"]]
            if get is not None:
                ax.plot(cs, [get(lv) for lv in t["levels"]], marker="o", label=name)
            else:
                line, = ax.plot(cs, [lv["latency"]["p50_ms"] for lv in t["levels"]], marker="o", label=name)
                ax.plot(cs, [lv["latency"]["p99_ms"] for lv in t["levels"]], ls="--", color=line.get_color())
        ax.set_xscale("log", base=2)
        if get is None:
            ax.set_yscale("log")
        ax.set_xlabel("client concurrency")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{section['model']} @ {section['res']} px", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / PLOTS[key]
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written[key] = path

    gateways = {n: t for n, t in targets.items() if n.startswith("gateway/")}
    if gateways:
        fig, axes = plt.subplots(1, len(gateways), figsize=(4.5 * len(gateways), 3.5), squeeze=False)
        for ax, (name, t) in zip(axes[0], gateways.items()):
            levels = [lv for lv in t["levels"] if lv.get("stages")]
            xs = range(len(levels))
            bottom = [0.0] * len(levels)
            for stage in ("decode", "preprocess", "inference"):
                ys = [lv["stages"].get(stage, {}).get("mean_ms", 0.0) for lv in levels]
                ax.bar(xs, ys, bottom=bottom, label=stage)
                bottom = [b + y for b, y in zip(bottom, ys)]
            rest = [max(lv["stages"].get("total", {}).get("mean_ms", 0.0) - b, 0.0) for lv, b in zip(levels, bottom)]
            ax.bar(xs, rest, bottom=bottom, label="other (queue, top-k)")
            ax.plot(xs, [lv["latency"]["mean_ms"] for lv in levels], "k_", markersize=20, label="client mean")
            ax.set_xticks(list(xs), [str(lv["concurrency"]) for lv in levels])
            ax.set_xlabel("client concurrency")
            ax.set_ylabel("mean ms per request")
            ax.set_title(name, fontsize=9)
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / PLOTS["serving_stages"]
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written["serving_stages"] = path
    return written


# --- markdown ------------------------------------------------------------------------------


def _op_md(section: dict, plot: Path | None) -> list[str]:
    lines = ["## Op: FFT conv vs direct conv", "",
             f"Baseline: `{section['baseline']}`; ratio = baseline median / alternative median (> 1: faster). "
             f"ONNX Runtime: {section['ort_placement']}.", ""]
    rows = []
    for r in section["results"]:
        for name, s in r["stats"].items():
            rows.append([r["shape"], r["mode"], name, s["median_ms"], s["p90_ms"], s["p99_ms"],
                         r["speedup_vs_baseline"][name]])
    lines += _table(["shape", "mode", "alternative", "p50 ms", "p90 ms", "p99 ms", "× vs baseline"], rows)
    notes = {k: v for r in section["results"] for k, v in r["notes"].items() if v.startswith("skipped")}
    notes.update(section.get("skipped", {}))
    lines += [f"- {k}: {v}" for k, v in notes.items()] + ([""] if notes else [])
    if plot:
        lines += [f"![op latency]({plot.name})", ""]
    return lines


def _model_md(section: dict, plot: Path | None) -> list[str]:
    lines = ["## Models", "",
             f"Baseline: `{section['baseline']}`. Recomputed filters: {section['recomputed_means']}. "
             f"ONNX Runtime: {section['ort_placement']}.", ""]
    rows = []
    for entry in section["results"]:
        for b in entry["batches"]:
            for name, s in b["stats"].items():
                mem = b["memory"].get(name if name.startswith("ORT") else "torch (this process)", {})
                rows.append([f"{entry['model']} @{entry['res']}", b["batch"], name, s["median_ms"], s["p90_ms"],
                             s["p99_ms"], b["throughput_img_s"][name], b["speedup_vs_baseline"][name],
                             mem.get("peak_rss_mb")])
    lines += _table(["model", "batch", "alternative", "p50 ms", "p90 ms", "p99 ms", "img/s", "× vs baseline",
                     "peak RSS MB"], rows)
    notes = []
    for entry in section["results"]:
        notes += [f"- {entry['model']}: {k}: {v}" for k, v in entry["notes"].items()]
        for b in entry["batches"]:
            notes += [f"- {entry['model']} batch {b['batch']}: {k}: {v}" for k, v in b["notes"].items()]
    lines += notes + ([""] if notes else [])
    if plot:
        lines += [f"![latency vs batch]({plot.name})", ""]
    return lines


def _serving_md(section: dict, plots: dict[str, Path]) -> list[str]:
    lines = ["## Serving", "",
             f"Model `{section['model']}` @ {section['res']} px (ONNX body `{section['onnx_body']}`), "
             f"a {section['image_bytes']} B JPEG per request; per level at most "
             f"{section['requests_per_level_max']} requests / {section['seconds_per_level_max']} s after "
             f"{section['warmup_requests']} warm-up requests.", ""]
    rows, stage_rows, skipped = [], [], []
    for name, t in section["targets"].items():
        if "levels" not in t:
            skipped.append(f"- {name}: {t.get('skipped')}")
            continue
        for lv in t["levels"]:
            lat = lv["latency"]
            rows.append([name, lv["concurrency"], lv["requests"], lv["errors"], lv["throughput_img_s"],
                         lat["p50_ms"], lat["p90_ms"], lat["p99_ms"]])
            st = lv.get("stages")
            if st:
                stage_rows.append([name, lv["concurrency"]] + [st.get(s, {}).get("mean_ms") for s in
                                                               ("decode", "preprocess", "inference", "total")]
                                  + [st.get("mean_inference_batch")])
    lines += _table(["target", "concurrency", "requests", "errors", "img/s", "p50 ms", "p90 ms", "p99 ms"], rows)
    lines += skipped + ([""] if skipped else [])
    if stage_rows:
        lines += ["Gateway per-stage means from its Prometheus histograms (`hyena_stage_seconds`; decode and "
                  "preprocess per image, inference includes the micro-batcher's wait):", ""]
        lines += _table(["gateway", "concurrency", "decode ms", "preprocess ms", "inference ms", "total ms",
                         "mean batch"], stage_rows)
    for key, text in section.get("notes", {}).items():
        lines.append(f"- {key}: {text}")
    lines.append("")
    for key, alt in (("serving_throughput", "throughput vs concurrency"), ("serving_latency", "latency"),
                     ("serving_stages", "gateway stages")):
        if key in plots:
            lines += [f"![{alt}]({plots[key].name})", ""]
    return lines


def headline(doc: dict) -> list[str]:
    """The numbers the issue asks for, where this run measured them."""
    out = []
    op = doc.get("sections", {}).get("op")
    if op:
        for r in op["results"]:
            if r["mode"] == "2d" and r["channels"] == 64 and r["size"] == 56 and r.get("fft_speedup_over_direct"):
                out.append(f"FFT conv vs direct conv at 64×56² (2D, K=111): {r['fft_speedup_over_direct']:.1f}× faster")
            if r["mode"] == "1d_bidir" and r["channels"] == 64 and r["size"] == 56 and r.get("fft_speedup_over_direct"):
                out.append(f"FFT conv vs direct conv at 64×3136 (1D, K=6271): {r['fft_speedup_over_direct']:.1f}× faster")
    model = doc.get("sections", {}).get("model")
    if model:
        for entry in model["results"]:
            for b in entry["batches"]:
                sp = b["speedup_vs_baseline"]
                if "eager recomputed filters" in sp:
                    out.append(f"{entry['model']} @{entry['res']} B={b['batch']}: cached Kf vs recomputed filters: "
                               f"{1 / sp['eager recomputed filters']:.2f}× (> 1: cached faster)")
                for name, v in sp.items():
                    if name.startswith("ORT") or name == "torch.compile":
                        out.append(f"{entry['model']} @{entry['res']} B={b['batch']}: {name} vs torch eager "
                                   f"(cached): {v:.2f}× ({'faster' if v > 1 else 'slower'})")
    serving = doc.get("sections", {}).get("serving")
    if serving:
        for name, o in serving["overhead_at_c1"].items():
            out.append(f"{name} at concurrency 1: +{o['overhead_ms']:.1f} ms p50 ({o['ratio']:.2f}×)")
        for name, s in serving["scaling_16_vs_1"].items():
            out.append(f"{name}: throughput at concurrency 16 vs 1: {s['ratio']:.2f}× "
                       f"({s['c1_img_s']:.1f} → {s['c16_img_s']:.1f} img/s)")
    return out


def write_markdown(doc: dict, out_dir: Path) -> Path:
    sections = doc.get("sections", {})
    env = doc["environment"]
    lines = ["# hyena_serve benchmark", "",
             f"Command: `{doc['command']}`  ", f"Started {doc['started']}, took {doc['seconds']:.0f} s.", "",
             f"Machine: {env.get('cpu')} ({env.get('cpu_count')} CPUs), load average (1/5/15 min) at start "
             f"{env.get('load_average_1_5_15min')}, at end {doc.get('load_average_end')}; torch {env.get('torch')}, "
             f"onnxruntime {env.get('onnxruntime')}, {env.get('torch_threads')} intra-op threads "
             f"({env.get('thread_env')}), GPU: {env.get('gpu') or 'none'}. Revision {env.get('git_revision')}.", "",
             "CPU numbers mean something only as ratios of alternatives timed interleaved in the same run "
             "(docs/design.md §5).", ""]
    head = headline(doc)
    if head:
        lines += ["## Headline", ""] + [f"- {h}" for h in head] + [""]
    if "op" in sections:
        lines += _op_md(sections["op"], out_dir / PLOTS["op"] if doc["plots"].get("op") else None)
    if "model" in sections:
        lines += _model_md(sections["model"], out_dir / PLOTS["model"] if doc["plots"].get("model") else None)
    if "serving" in sections:
        plots = {k: out_dir / PLOTS[k] for k in doc["plots"] if k.startswith("serving")}
        lines += _serving_md(sections["serving"], plots)
    for name, why in doc.get("skipped_sections", {}).items():
        lines += [f"## {name}", "", why, ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_plots(doc: dict, out_dir: Path) -> dict[str, str]:
    sections = doc.get("sections", {})
    written: dict[str, Path] = {}
    if sections.get("op"):
        p = plot_op(sections["op"], out_dir / PLOTS["op"])
        if p:
            written["op"] = p
    if sections.get("model"):
        p = plot_model(sections["model"], out_dir / PLOTS["model"])
        if p:
            written["model"] = p
    if sections.get("serving"):
        written.update(plot_serving(sections["serving"], out_dir))
    return {k: v.name for k, v in written.items()}


def write_all(doc: dict, out_dir: Path) -> dict[str, Path]:
    """results.json, the plots and report.md; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc["plots"] = write_plots(doc, out_dir)
    doc["headline"] = headline(doc)
    paths = {"json": write_json(doc, out_dir), "markdown": write_markdown(doc, out_dir)}
    paths.update({k: out_dir / v for k, v in doc["plots"].items()})
    return paths
