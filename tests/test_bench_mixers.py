"""``python -m bench mixers``: the FLOP formulas, and a ``--tiny`` run of every mixer that
writes its reports with ONNX Runtime checked against torch. Never asserts timings."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from bench import flops, mixers
from bench.__main__ import main
from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, plan_fft
from hyena_serve.ops import fft_conv

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")


class _FFTConv(torch.nn.Module):
    def __init__(self, plan, channels):
        super().__init__()
        self.plan = plan
        self.kf = torch.zeros(channels, *plan.spectrum_shape, 2)
        self.d = torch.zeros(channels)

    def forward(self, x):
        p = self.plan
        return fft_conv(x, self.kf, self.d, p.mode, list(p.kernel), list(p.fft))


@pytest.mark.parametrize("mode, kernel", [(MODE_2D, (9, 5)), (MODE_1D_BIDIR, 23)])
def test_fft_conv_flops_follow_the_stated_convention(mode, kernel):
    # 2 transforms of N points at 2.5·N·log2(N), 6 per complex product on the half spectrum,
    # 2 per output for the skip; counted from the plan's sizes by hand here.
    plan = plan_fft(mode, 6, 4, kernel)
    n = math.prod(plan.fft)
    half = math.prod(plan.fft[:-1]) * (plan.fft[-1] // 2 + 1)
    per_channel = 2 * 2.5 * n * math.log2(n) + 6 * half + 2 * 24
    assert flops.count(_FFTConv(plan, 3), torch.randn(2, 3, 6, 4)) == int(2 * 3 * per_channel)


def test_flops_count_gemms_at_two_per_multiply_add():
    assert flops.count(torch.nn.Linear(7, 5, bias=False), torch.randn(3, 7)) == 2 * 3 * 7 * 5


def test_unknown_mixer_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        mixers.main(["--mixers", "hpx,nope"])
    assert info.value.code == 2
    assert "unknown mixers ['nope']" in capsys.readouterr().err


@needs_ort
@pytest.mark.slow
def test_tiny_run_of_every_mixer_writes_reports(tmp_path):
    out = tmp_path / "out"
    code = main(["mixers", "--tiny", "--no-models", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    doc = json.loads((out / "mixers.json").read_text())
    stages = doc["mixers"]["stages"]
    assert {s["mixer"] for s in stages} == set(mixers.MIXER_MODELS)
    for s in stages:
        assert s["params"] > 0 and s["flops_b1"] > 0
        # ORT was timed only after matching torch (the note records the measured error)
        assert "checked against torch" in s["notes"]["ORT"], s["notes"]
        (b1,) = s["batches"]
        assert set(b1["stats"]) == {mixers.BASELINE, mixers.ORT}
        assert all(math.isfinite(v["median_ms"]) for v in b1["stats"].values())
    text = (out / "mixers.md").read_text()
    assert "## One mixer at each S18 stage shape" in text and "| gf |" in text and "| aff |" in text


@needs_ort
@pytest.mark.slow
def test_tiny_model_part_reports_params_flops_and_both_runtimes(tmp_path):
    out = tmp_path / "out"
    code = main(["mixers", "--tiny", "--mixers", "gf", "--stages", "0", "--out", str(out),
                 "--cache", str(tmp_path / "cache")])
    assert code == 0
    doc = json.loads((out / "mixers.json").read_text())
    (model,) = doc["mixers"]["models"]
    assert model["model"] == "gf_former_s4"
    assert model["params_m"] > 0 and model["gflops_b1"] > 0
    (b1,) = model["batches"]
    assert set(b1["stats"]) == {mixers.BASELINE, mixers.ORT}
    assert (out / "mixers.png").stat().st_size > 0
