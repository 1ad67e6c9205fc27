"""``python -m bench`` on smoke-test settings (``--tiny``): the reports are written and hold
the expected fields. Never asserts timings."""

from __future__ import annotations

import importlib.util
import json
import math
import operator

import pytest

from bench import report, serving
from bench.__main__ import build_parser, main
from bench.timing import Stats, Subprocess, SubprocessError, compare, idle, latency_stats, ratios

pytest.importorskip("matplotlib")
needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def test_compare_interleaves_in_process_and_subprocess_alternatives():
    calls = []
    with Subprocess(idle) as child:
        stats = compare({"a": lambda: calls.append(1), "child": child}, rounds=3, warmup=1)
        memory = child.memory()
    assert set(stats) == {"a", "child"}
    assert len(calls) == 4 and stats["child"].n == 3
    assert memory["peak_rss_mb"] > 0
    assert set(ratios(stats, "a")) == {"a", "child"}


def test_subprocess_reports_factory_errors():
    with pytest.raises(SubprocessError, match="ZeroDivisionError"):
        Subprocess(operator.truediv, 1, 0)  # the factory raises in the child


def test_latency_stats_and_stage_quantiles():
    assert latency_stats([])["p50_ms"] is None
    s = latency_stats([0.001, 0.002, 0.003])
    assert s["p50_ms"] == pytest.approx(2.0)
    assert Stats.of([0.001, 0.003]).median_ms == pytest.approx(2.0)
    buckets = {0.01: 5.0, 0.1: 10.0, float("inf"): 10.0}
    assert serving._bucket_quantile(buckets, 0.5) == pytest.approx(0.01)
    assert serving._bucket_quantile({}, 0.5) is None


def test_help_lists_sections_and_options(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for word in ("op", "model", "serving", "--quick", "--out", "--threads", "--concurrency"):
        assert word in text


@needs_ort
def test_tiny_op_and_model_run_writes_reports(tmp_path):
    code = main(["op", "--tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert code == 0
    code = main(["model", "--tiny", "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "cache")])
    assert code == 0

    doc = json.loads((tmp_path / "results.json").read_text())
    assert {"command", "environment", "settings", "sections", "seconds"} <= set(doc)
    assert {"cpu", "torch_threads", "load_average_1_5_15min", "torch"} <= set(doc["environment"])
    op = doc["sections"]["op"]
    assert op["baseline"] == "torch fft_conv"
    modes = {r["mode"] for r in op["results"]}
    assert modes == {"2d", "1d_bidir"}
    for r in op["results"]:
        assert {"torch fft_conv", "torch direct conv", "ORT matmul body", "ORT dft body"} <= set(r["stats"])
        assert all(_finite(s["median_ms"]) and _finite(s["p99_ms"]) for s in r["stats"].values())
        assert _finite(r["fft_speedup_over_direct"])
    assert (tmp_path / report.PLOTS["op"]).stat().st_size > 0
    assert "## Op" in (tmp_path / "report.md").read_text()

    mdoc = json.loads((tmp_path / "m" / "results.json").read_text())
    entries = mdoc["sections"]["model"]["results"]
    assert [e["model"] for e in entries] == ["hpx_former_s4", "hb_former_s4"]
    for e in entries:
        assert [b["batch"] for b in e["batches"]] == [1, 2]
        for b in e["batches"]:
            assert {"eager cached Kf", "eager recomputed filters"} <= set(b["stats"])
            assert _finite(b["memory"]["torch (this process)"]["peak_rss_mb"])
        assert e["notes"]["TensorRT"].startswith("skipped")
    assert (tmp_path / "m" / report.PLOTS["model"]).stat().st_size > 0
    assert any("recomputed" in h for h in mdoc["headline"])


def test_tiny_serving_through_the_gateway(tmp_path):
    code = main(["serving", "--tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert code == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    section = doc["sections"]["serving"]
    target = section["targets"]["gateway/torch"]
    assert [lv["concurrency"] for lv in target["levels"]] == [1, 2]
    for lv in target["levels"]:
        assert lv["errors"] == 0 and lv["ok"] > 0
        assert {"p50_ms", "p90_ms", "p99_ms"} <= set(lv["latency"])
        assert {"decode", "preprocess", "inference", "total"} <= set(lv["stages"])
    for key in ("serving_throughput", "serving_latency", "serving_stages"):
        assert (tmp_path / report.PLOTS[key]).stat().st_size > 0
    assert "## Serving" in (tmp_path / "report.md").read_text()


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton (tritonserver) not installed")
def test_tiny_serving_with_triton(tmp_path):
    """Exports the tiny model (tens of seconds here), then Triton direct and the gateway on Triton."""
    pytest.importorskip("tritonclient")
    code = main(["serving", "--tiny", "--out", str(tmp_path), "--targets", "bare ORT,triton direct,gateway/triton",
                 "--cache", str(tmp_path / "cache")])
    doc = json.loads((tmp_path / "results.json").read_text())
    targets = doc["sections"]["serving"]["targets"]
    assert code == 0, targets
    for name in ("bare ORT", "triton direct", "gateway/triton"):
        assert "levels" in targets[name], targets[name]
        assert targets[name]["levels"][0]["ok"] > 0
    assert "gateway/triton vs triton direct" in doc["sections"]["serving"]["overhead_at_c1"]
