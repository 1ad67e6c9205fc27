"""``python -m bench precision`` on smoke-test settings (``--tiny``: a narrow S4 at 32 px,
one timing round, a one-epoch digits run trained into the cache): the report holds every
row, the latency ratios, the agreement counts and the held-out accuracy. Never asserts
timings or accuracies."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("sklearn")

from bench.__main__ import main  # noqa: E402
from bench.precision import ROWS  # noqa: E402


def test_tiny_precision_run_writes_the_side_by_side_report(tmp_path):
    code = main(["precision", "--tiny", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert code == 0
    doc = json.loads((tmp_path / "precision.json").read_text())
    section = doc["precision"]
    measured = set(section["digits"]["accuracy"])
    skipped = set(section["skipped"])
    assert measured | skipped == {name for name, *_ in ROWS} and not measured & skipped
    assert skipped <= {"torch bf16"}  # only for want of bf16 instructions
    (timed,) = section["latency"]
    assert timed["batch"] == 1 and set(timed["stats"]) == measured
    assert timed["vs_fp32"]["ORT fp32"] == 1.0 and timed["vs_fp32"]["torch fp32"] == 1.0
    assert all(math.isfinite(v) and v > 0 for v in timed["vs_fp32"].values())
    for name in measured:
        agreement = section["agreement"][name]
        assert agreement["photos"]["n"] == 4 and agreement["random"]["n"] == 4
        assert 0 <= agreement["random"]["top1_same"] <= 4
        flipped = agreement["random"]["largest_flipped_margin"]
        assert (flipped is None) == (agreement["random"]["top1_same"] == 4)
        assert agreement["random"]["median_top2_margin"] >= 0
    digits = section["digits"]
    assert digits["split"]["subset"] == 120 and digits["n"] == 120  # the trainer's split, read back from its run
    assert all(a["n"] == 120 for a in digits["agreement"].values())
    assert digits["drop_points"]["torch fp32"] == 0.0
    assert section["agreement"]["ORT fp32"]["random"]["max_abs_diff"] < 1e-3  # the export itself is exact
    assert set(section["verdict"]) == measured
    md = (tmp_path / "precision.md").read_text()
    assert "| int8 | ORT |" in md and "drop vs fp32 (points)" in md and "## Verdict" in md
    assert (tmp_path / "cache" / "digits_tiny" / "manifest.json").is_file()  # trained once, reused next time
