"""``make gpu-check`` and ``python -m bench gpu`` where they can be checked without a GPU:
the one-line refusal on a CPU host, the ``HYENA_REQUIRE_GPU`` switch of tests/conftest.py,
the CMake command lines, cuFFT discovery, the summary parsing, the plugin's benchmark rows
and the GPU report writer (fed made-up numbers; nothing here is a measurement)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
CONFTEST = Path(__file__).with_name("conftest.py")
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the CPU-host path "
                                                                     "cannot be observed here")


def _load_driver():
    spec = importlib.util.spec_from_file_location("gpu_check_driver", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


gc = _load_driver()


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYENA_REQUIRE_GPU", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _one_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    return text


# --- the CPU host ---------------------------------------------------------------------------


@no_gpu_here
def test_gpu_check_on_a_cpu_host_prints_one_line_and_fails():
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == gc.NO_HOST
    line = _one_line(proc)
    assert line.startswith("gpu-check: no CUDA GPU visible (torch.cuda.is_available() is False")
    assert "nothing to check on this host" in line


@no_gpu_here
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_gpu_check_runs_the_driver_with_this_python():
    proc = subprocess.run(["make", "--no-print-directory", "gpu-check", f"PYTHON={sys.executable}"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if not ln.startswith("make")]
    assert len(ours) == 1 and ours[0].startswith("gpu-check: no CUDA GPU visible"), ours


def test_gpu_check_without_torch_prints_one_line(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named torch (stand-in for a host without it)')\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(fake.parent), str(ROOT)]))
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == gc.NO_HOST
    line = _one_line(proc)
    assert line.startswith("gpu-check: torch is not importable by ") and "ImportError" in line


@no_gpu_here
def test_bench_gpu_on_a_cpu_host_prints_one_line_and_fails():
    proc = subprocess.run([sys.executable, "-m", "bench", "gpu"], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3
    assert _one_line(proc).startswith("bench gpu: no CUDA GPU visible")


def test_bench_gpu_is_registered_with_its_own_options(capsys):
    from bench.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["gpu", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench gpu")
    for word in ("--plugin-exe", "--batches", "--budget-s", "--no-compile", "bench/out/gpu"):
        assert word in out


# --- HYENA_REQUIRE_GPU (tests/conftest.py) -----------------------------------------------------

CASES = '''
import pytest

@pytest.mark.gpu
def test_gpu_passes():
    pass

@pytest.mark.gpu
def test_gpu_needs_tensorrt():
    pytest.skip("TensorRT Python package not installed")

@pytest.mark.gpu
def test_gpu_importorskip_tensorrt():
    pytest.importorskip("tensorrt")

@pytest.mark.gpu
def test_gpu_other_skip():
    pytest.skip("plugin library path not set")

@pytest.mark.gpu
@pytest.mark.skipif(True, reason="CUDA torch build needed")
def test_gpu_skipif():
    pass

@pytest.mark.gpu
@pytest.mark.xfail(reason="known")
def test_gpu_xfail():
    assert False

def test_cpu_skip():
    pytest.skip("not a GPU test")
'''


def _run_cases(pytester, monkeypatch, *, require: str | None, cuda: bool, fake_tensorrt: bool = False):
    """Run CASES in a nested pytest under the real conftest (its CUDA probe replaced by
    ``cuda``); return the run's result and {test name: outcome}."""
    conftest = CONFTEST.read_text(encoding="utf-8")
    if cuda:  # pretend a GPU so the GPU tests run and their own skips meet the switch
        conftest += "\n\ndef _has_cuda():\n    return True\n"
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_cases=CASES)
    if fake_tensorrt:  # stand-in: a host with TensorRT installed
        pytester.makepyfile(tensorrt="")
        pytester.syspathinsert()
    if require is None:
        monkeypatch.delenv("HYENA_REQUIRE_GPU", raising=False)
    else:
        monkeypatch.setenv("HYENA_REQUIRE_GPU", require)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs", f"--junitxml={junit}", "test_cases.py")
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        outcome = kinds[0] if kinds else "passed"
        if outcome == "skipped" and case.find("skipped").get("type") == "pytest.xfail":
            outcome = "xfailed"
        outcomes[case.get("name")] = outcome
    return result, outcomes


def test_without_the_switch_gpu_skips_stay_skips(pytester, monkeypatch):
    result, outcomes = _run_cases(pytester, monkeypatch, require=None, cuda=True)
    assert result.ret == 0, result.stdout.str()
    assert outcomes == {"test_gpu_passes": "passed", "test_gpu_needs_tensorrt": "skipped",
                        "test_gpu_importorskip_tensorrt": "skipped", "test_gpu_other_skip": "skipped",
                        "test_gpu_skipif": "skipped", "test_gpu_xfail": "xfailed", "test_cpu_skip": "skipped"}
    assert "HYENA_REQUIRE_GPU=1" not in result.stdout.str()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_switch_fails_gpu_skips_except_for_missing_tensorrt(pytester, monkeypatch):
    result, outcomes = _run_cases(pytester, monkeypatch, require="1", cuda=True)
    assert result.ret == 1, result.stdout.str()
    assert outcomes == {"test_gpu_passes": "passed", "test_gpu_needs_tensorrt": "skipped",
                        "test_gpu_importorskip_tensorrt": "skipped", "test_gpu_other_skip": "failure",
                        "test_gpu_skipif": "error", "test_gpu_xfail": "xfailed", "test_cpu_skip": "skipped"}
    out = result.stdout.str()
    assert "GPU tests skipped because TensorRT is not installed (allowed): 2" in out
    assert "GPU test skips turned into failures: 2" in out
    assert "HYENA_REQUIRE_GPU=1: this GPU test skipped (plugin library path not set)" in out


def test_switch_fails_tensorrt_skips_where_tensorrt_is_installed(pytester, monkeypatch):
    result, outcomes = _run_cases(pytester, monkeypatch, require="1", cuda=True, fake_tensorrt=True)
    assert result.ret == 1
    assert outcomes["test_gpu_needs_tensorrt"] == "failure"
    assert outcomes["test_gpu_importorskip_tensorrt"] == "passed"  # the stand-in module imports
    assert outcomes["test_cpu_skip"] == "skipped"


@no_gpu_here
def test_switch_on_a_cpu_host_fails_every_gpu_test(pytester, monkeypatch):
    result, outcomes = _run_cases(pytester, monkeypatch, require="1", cuda=False)
    assert result.ret == 1
    gpu = {k: v for k, v in outcomes.items() if k.startswith("test_gpu")}
    assert set(gpu.values()) == {"error"}, gpu  # skipped in setup by the no-GPU marker, turned into errors
    assert "needs a CUDA GPU: none on this host" in result.stdout.str()


@pytest.mark.parametrize(("value", "on"), [("1", True), ("yes", True), ("0", False), ("", False), ("false", False)])
def test_switch_values(monkeypatch, value, on):
    spec = importlib.util.spec_from_file_location("conftest_copy", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("HYENA_REQUIRE_GPU", value)
    assert module.require_gpu() is on
    assert module.skip_allowed("TensorRT Python package not installed", tensorrt_present=False)
    assert module.skip_allowed("could not import 'tensorrt': No module named 'tensorrt'", tensorrt_present=False)
    assert not module.skip_allowed("TensorRT Python package not installed", tensorrt_present=True)
    assert not module.skip_allowed("needs a CUDA GPU: none on this host", tensorrt_present=False)


# --- the driver's pure pieces ----------------------------------------------------------------


def test_cmake_configure_command_builds_without_tensorrt(tmp_path):
    cmd = gc.cmake_configure_command(Path("src"), Path("out"), cuda_arch="90", nvcc="/cuda/bin/nvcc",
                                     generator="Ninja")
    assert cmd[:5] == ["cmake", "-S", "src", "-B", "out"]
    assert cmd[5:7] == ["-G", "Ninja"]
    assert "-DFFTCONV_WITH_TENSORRT=OFF" in cmd and "-DCMAKE_BUILD_TYPE=Release" in cmd
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in cmd and "-DCMAKE_CUDA_COMPILER=/cuda/bin/nvcc" in cmd
    assert not any("TENSORRT_ROOT" in c or "CUFFT" in c for c in cmd)
    inc, lib = tmp_path / "include", tmp_path / "lib" / "libcufft.so.12"
    cmd = gc.cmake_configure_command(Path("src"), Path("out"), cufft=(inc, lib))
    assert f"-DCUFFT_INCLUDE_DIR={inc}" in cmd and f"-DCUFFT_LIBRARY={lib}" in cmd
    assert not any(c.startswith(("-G", "-DCMAKE_CUDA_ARCHITECTURES")) for c in cmd)
    assert gc.cmake_build_command(Path("out"), 16) == ["cmake", "--build", "out", "--target", "fftconv_gpu_check",
                                                       "-j", "16"]


def test_cmake_names_match_the_plugin_cmakelists():
    text = (gc.PLUGIN_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert gc.NO_TENSORRT_OPTION in text and gc.CHECK_TARGET in text
    assert "CUFFT_INCLUDE_DIR" in text and "CUFFT_LIBRARY" in text


def test_cufft_from_the_wheel_or_the_toolkit(tmp_path):
    site = tmp_path / "site-packages"
    assert gc.find_cufft_wheel([str(site)]) is None
    (site / "nvidia" / "cu13" / "include").mkdir(parents=True)
    (site / "nvidia" / "cu13" / "include" / "cufft.h").write_text("")
    (site / "nvidia" / "cu13" / "lib").mkdir()
    for name in ("libcufftw.so.12", "libcufft.so.12"):
        (site / "nvidia" / "cu13" / "lib" / name).write_text("")
    inc, lib = gc.find_cufft_wheel([str(tmp_path / "elsewhere"), str(site)])
    assert inc == site / "nvidia" / "cu13" / "include" and lib.name == "libcufft.so.12"

    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True)
    nvcc = cuda / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    assert not gc.toolkit_has_cufft(str(nvcc))
    (cuda / "include").mkdir()
    (cuda / "include" / "cufft.h").write_text("")
    (cuda / "lib64").mkdir()
    (cuda / "lib64" / "libcufft.so").write_text("")
    assert gc.toolkit_has_cufft(str(nvcc))
    assert gc.find_nvcc({"PATH": str(cuda / "bin")}) == str(nvcc)
    assert gc.find_nvcc({"PATH": str(tmp_path), "CUDA_HOME": str(tmp_path / "none")}) is None


def test_gpu_test_files_are_the_ones_with_the_marker():
    files = {p.name for p in gc.gpu_test_files(ROOT / "tests")}
    # the torch reference on CUDA, the spectral ops on CUDA, the TensorRT engines (gf/aff too)
    assert {"test_gpu_torch.py", "test_spectral_ops.py", "test_tensorrt_gpu.py"} <= files
    assert "test_gateway.py" not in files  # needs the serving extras a bare GPU host lacks


def test_summary_parsing():
    assert gc.parse_check_counts("case a ok\n12 passed, 0 failed\n") == (12, 0)
    assert gc.parse_check_counts("3 passed, 1 failed\n40 passed, 2 failed") == (40, 2)
    assert gc.parse_check_counts("nothing") is None
    xml = """<testsuites><testsuite>
      <testcase classname="tests.test_a" name="test_ok"/>
      <testcase classname="tests.test_a" name="test_bad"><failure message="boom"/></testcase>
      <testcase classname="tests.test_a" name="test_err"><error message="setup"/></testcase>
      <testcase classname="tests.test_t" name="test_trt1"><skipped type="pytest.skip" message="TensorRT Python package not installed"/></testcase>
      <testcase classname="tests.test_t" name="test_trt2"><skipped type="pytest.skip" message="TensorRT Python package not installed"/></testcase>
      <testcase classname="tests.test_a" name="test_x"><skipped type="pytest.xfail" message="known"/></testcase>
    </testsuite></testsuites>"""
    res = gc.parse_junit(xml)
    assert (res.passed, res.failed, res.errors, res.xfailed) == (1, 1, 1, 1)
    assert res.skip_groups() == {"TensorRT Python package not installed": 2}
    assert gc.names_tensorrt("could not import 'tensorrt'") and not gc.names_tensorrt("no GPU")
    assert gc.skip_allowed("TensorRT Python package not installed", tensorrt_present=False)
    assert not gc.skip_allowed("TensorRT Python package not installed", tensorrt_present=True)
    assert not gc.skip_allowed("needs a CUDA GPU: none on this host", tensorrt_present=False)


# --- bench gpu: plugin rows and the report (synthetic numbers, not measurements) ----------------


def test_plugin_rows_are_parsed_and_normalised():
    from bench import gpu

    text = "\n".join([
        "building plans ...",
        json.dumps({"mode": "2d", "channels": 64, "spatial": [56, 56], "kernel": [111, 111], "batch": 1,
                    "dtype": "fp32", "median_ms": 0.5}),
        json.dumps({"mode": "1d_bidir", "channels": 512, "spatial": 49, "kernel": [97], "batch": 1,
                    "dtype": "float16", "median_ms": 0.01}),
        '{"mode": "2d", "broken": true}',
        "{not json",
        "8 passed, 0 failed",
    ])
    rows = gpu.parse_plugin_rows(text)
    assert [(r["mode"], r["channels"], r["elements"], r["dtype"]) for r in rows] == [
        ("2d", 64, 3136, "fp32"), ("1d_bidir", 512, 49, "fp16")]


def test_plugin_rows_of_the_circular_mode_and_the_spectral_plugins():
    from bench import gpu

    text = "\n".join([
        json.dumps({"op": "FFTConv", "mode": "2d_circular", "channels": 64, "spatial": [56, 56], "kernel": [56, 56],
                    "batch": 8, "dtype": "fp16", "median_ms": 0.2}),
        json.dumps({"op": "RFFT2", "channels": 128, "spatial": [28, 28], "batch": 1, "dtype": "fp32",
                    "median_ms": 0.03}),
        json.dumps({"op": "irfft2", "channels": 512, "spatial": [7, 7], "batch": 1, "dtype": "float16",
                    "median_ms": 0.01}),
        json.dumps({"op": "FFTConv", "mode": "3d", "channels": 1, "spatial": [1, 1], "batch": 1, "dtype": "fp32",
                    "median_ms": 1.0}),  # unknown mode
        json.dumps({"op": "DCT", "channels": 1, "spatial": [1, 1], "batch": 1, "dtype": "fp32",
                    "median_ms": 1.0}),  # unknown op
    ])
    rows = gpu.parse_plugin_rows(text)
    assert [(r["op"], r["mode"], r["kind"], r["channels"], r["elements"], r["batch"], r["dtype"]) for r in rows] == [
        ("FFTConv", "2d_circular", "2d_circular", 64, 3136, 8, "fp16"), ("RFFT2", None, "RFFT2", 128, 784, 1, "fp32"),
        ("IRFFT2", None, "IRFFT2", 512, 49, 1, "fp16")]
    # rows of the older check program (no "op") are FFTConv rows
    (old,) = gpu.parse_plugin_rows(json.dumps({"mode": "2d", "channels": 8, "spatial": [7, 7], "kernel": [13, 13],
                                               "batch": 1, "dtype": "fp32", "median_ms": 0.1}))
    assert (old["op"], old["kind"]) == ("FFTConv", "2d")


def test_the_check_program_prints_the_rows_the_parser_reads():
    # The JSON the .cu writes (its printf formats, filled in) must parse; a renamed key would
    # silently drop every plugin row from the benchmark.
    from bench import gpu

    source = (ROOT / "export" / "plugins" / "fftconv" / "tests" / "fftconv_gpu_check.cu").read_text()
    literals = re.findall(r'std::printf\("(\{\\"op.*?)\\n"', source, re.DOTALL)
    # join the adjacent C string literals, unescape the quotes, C's %lld to Python's %d
    formats = [re.sub(r'(?<!\\)"\s*"', "", f).replace('\\"', '"').replace("%lld", "%d") for f in literals]
    assert len(formats) == 2, formats  # FFTConv rows, RFFT2/IRFFT2 rows
    fftconv, spectral = sorted(formats, key=lambda f: '"mode"' not in f)
    line_a = fftconv % ("2d_circular", 64, 56, 56, "[56, 56]", 1, "fp32", 0.25)
    line_b = spectral % ("IRFFT2", 64, 56, 56, 8, "fp16", 0.125)
    rows = gpu.parse_plugin_rows(f"{line_a}\n{line_b}\n")
    assert [(r["kind"], r["elements"], r["batch"], r["dtype"], r["median_ms"]) for r in rows] == [
        ("2d_circular", 3136, 1, "fp32", 0.25), ("IRFFT2", 3136, 8, "fp16", 0.125)]


@pytest.fixture()
def on_cpu(monkeypatch):
    """bench gpu's op-level code on the CPU: device "cpu", wall-clock timing (a dry run of the
    logic; the numbers mean nothing)."""
    from bench import gpu, timing

    compare = timing.compare

    def wall_clock(alternatives, **kwargs):
        return compare(alternatives, **{**kwargs, "cuda": False})

    monkeypatch.setattr(gpu, "DEVICE", "cpu")
    monkeypatch.setattr(timing, "compare", wall_clock)
    return gpu.GpuSettings(op_rounds=2, op_warmup=1, max_seconds=5.0)


def test_circular_op_rows_check_every_alternative_against_the_direct_convolution(on_cpu):
    from bench import gpu
    from bench.op import GF_S18_SHAPES

    shape = GF_S18_SHAPES[3]  # 512 x 7 x 7
    plugin = {gpu.plugin_key("2d_circular", 512, 49, 1, "fp32"): {"median_ms": 1e-3}}
    r = gpu.bench_op(shape, "2d_circular", 1, on_cpu, plugin)
    assert r["mode"] == "2d_circular" and r["kernel"] == [7, 7] and r["fft"] == [7, 7]
    assert r["errors"] == {} and r["notes"] == {}, r["rel_err_vs_direct_fp32"]
    for name in ("torch fft_conv fp32", "cuDNN direct conv fp32"):  # the circular padding lines up
        assert r["rel_err_vs_direct_fp32"][name] <= 1e-5
    assert r["stats"]["plugin kernels fp32"]["median_ms"] == 1e-3 and "plugin kernels fp16" not in r["stats"]
    assert r["side_by_side"]["fp32"]["plugin_vs_torch_fft"] > 0


@pytest.mark.parametrize("op", ["RFFT2", "IRFFT2"])
def test_spectral_op_rows_check_torch_against_float64_and_pair_the_plugin_rows(on_cpu, op):
    from bench import gpu
    from bench.op import AFF_S18_SHAPES

    shape = AFF_S18_SHAPES[2]  # 320 x 14 x 14
    plugin = {gpu.plugin_key(op, 320, 196, 1, d): {"median_ms": ms} for d, ms in (("fp32", 0.01), ("fp16", 0.02))}
    plugin[gpu.plugin_key(op, 320, 196, 8, "fp32")] = {"median_ms": 9.0}  # another batch: not this row's
    r = gpu.bench_spectral(shape, op, 1, on_cpu, plugin)
    name = op.lower()
    assert r["errors"] == {} and r["baseline"] == f"torch.fft {name} fp32"
    assert set(r["rel_err_vs_float64"]) == {f"torch.fft {name} fp32", f"torch hyena.{name} fp32",
                                            f"torch hyena.{name} fp16"}
    assert max(v for k, v in r["rel_err_vs_float64"].items() if k.endswith("fp32")) <= 1e-5
    assert r["rel_err_vs_float64"][f"torch hyena.{name} fp16"] <= 5e-3
    assert r["stats"]["plugin kernels fp32"]["median_ms"] == 0.01
    assert r["stats"]["plugin kernels fp16"]["median_ms"] == 0.02
    side = r["side_by_side"]
    assert side["fp32"]["plugin_vs_torch_fft"] == pytest.approx(r["stats"][r["baseline"]]["median_ms"] / 0.01)
    assert side["fp16"]["plugin_vs_torch_op"] == pytest.approx(
        r["stats"][f"torch hyena.{name} fp16"]["median_ms"] / 0.02)


def test_run_op_covers_the_circular_mode_and_the_spectral_ops(on_cpu, monkeypatch, tmp_path):
    from bench import gpu

    rows = [{"op": "FFTConv", "mode": m, "channels": 512, "spatial": [7, 7], "kernel": k, "batch": 1,
             "dtype": "fp32", "median_ms": 0.01} for m, k in (("2d", [13, 13]), ("1d_bidir", [97]),
                                                               ("2d_circular", [7, 7]))]
    rows += [{"op": op, "channels": 512, "spatial": [7, 7], "batch": 1, "dtype": "fp32", "median_ms": 0.01}
             for op in ("RFFT2", "IRFFT2")]
    exe = tmp_path / "fftconv_gpu_check"
    exe.write_text("#!/bin/sh\n" + "".join(f"echo '{json.dumps(r)}'\n" for r in rows))
    exe.chmod(0o755)
    on_cpu.op_stages, on_cpu.op_batches, on_cpu.plugin_exe = (3,), (1,), str(exe)
    section = gpu.run_op(on_cpu, log=lambda m: None)
    assert section["errors"] == {}, section["errors"]
    assert sorted(r["mode"] for r in section["results"]) == ["1d_bidir", "2d", "2d_circular"]
    assert sorted(r["op"] for r in section["spectral"]) == ["IRFFT2", "RFFT2"]
    assert all("plugin kernels fp32" in r["stats"] for r in section["results"] + section["spectral"])
    assert "plugin_rows_without_torch_timing" not in section and "plugin kernels at some shapes" not in section["skipped"]


def test_gpu_report_is_written_from_a_results_document(tmp_path):
    pytest.importorskip("matplotlib")
    from bench import gpu
    from bench.timing import environment

    def stats(ms):
        return {"n": 3, "median_ms": ms, "p90_ms": ms, "p99_ms": ms, "mean_ms": ms, "min_ms": ms}

    side = {"fp32": {"plugin_vs_torch_fft": 2.0, "torch_fft_vs_direct": 10.0, "plugin_vs_direct": 20.0},
            "fp16": {"plugin_vs_torch_fft": None, "torch_fft_vs_direct": None, "plugin_vs_direct": None}}
    op_row = {"shape": "hpx_former_s18 stage 0: 64x56x56", "model": "hpx_former_s18", "stage": 0, "channels": 64,
              "size": 56, "mode": "2d", "batch": 1, "stats": {"torch fft_conv fp32": stats(1.0),
                                                                "plugin kernels fp32": {"median_ms": 0.5},
                                                                "cuDNN direct conv fp32": stats(10.0)},
              "side_by_side": side, "notes": {}}
    model_entry = {"model": "hpx_former_s18", "res": 224, "batches": [
        {"batch": b, "stats": {"eager fp32": stats(2.0 * b), "eager bf16": stats(1.0 * b)},
         "speedup_vs_baseline": {"eager fp32": 1.0, "eager bf16": 2.0},
         "throughput_img_s": {"eager fp32": 500.0, "eager bf16": 1000.0},
         "memory": {"cuda_max_allocated_mb": 100.0}, "notes": {}} for b in (1, 8)],
        "tensorrt": {"rows": [{"batch": 1, "stats": {"trt_plugin": stats(0.5), "trt_gemm": stats(1.0)},
                               "time_vs_plugin": {"trt_plugin": 1.0, "trt_gemm": 2.0}}],
                     "engine_skipped": {"native-dft": "TensorRT 10.9 cannot import ONNX DFT"}}}
    circular_row = {**op_row, "shape": "gf_former_s18 stage 0: 64x56x56", "model": "gf_former_s18",
                    "mode": "2d_circular"}
    spectral_row = {"shape": "aff_former_s18 stage 0: 64x56x56", "model": "aff_former_s18", "stage": 0,
                    "channels": 64, "size": 56, "op": "RFFT2", "batch": 1,
                    "stats": {"torch.fft rfft2 fp32": stats(0.3), "torch hyena.rfft2 fp32": stats(0.4),
                              "plugin kernels fp32": {"median_ms": 0.1}},
                    "side_by_side": {"fp32": {"plugin_vs_torch_fft": 3.0, "plugin_vs_torch_op": 4.0},
                                     "fp16": {"plugin_vs_torch_fft": None, "plugin_vs_torch_op": None}},
                    "notes": {}}
    doc = {"command": "python -m bench gpu (synthetic test document)", "started": "now", "seconds": 1.0,
           "environment": environment(), "gpu": {"name": "none (synthetic)", "tf32": False},
           "sections": {"op": {"baseline": "torch fft_conv fp32", "results": [op_row, circular_row],
                               "spectral": [spectral_row]},
                        "model": {"baseline": "eager fp32", "filters": "frozen", "compile": "off",
                                  "results": [model_entry]}},
           "skipped": {"model: TensorRT engines": "TensorRT is not installed here"}, "errors": {}}
    paths = gpu.write_report(doc, tmp_path)
    md = paths["markdown"].read_text()
    assert "plugin kernels vs torch cuFFT fft_conv at 64×56² (2D, B=1, fp32): 2.00× (target ≥ 1.5×: met)" in md
    assert "TensorRT is not installed here" in md
    assert "plugin kernels faster than torch cuFFT at 2/2 S18 stage shapes (B=1, fp32)" in md
    assert "| gf_former_s18 stage 0: 64x56x56 | 2d_circular | 1 |" in md
    assert "RFFT2 plugin kernels vs torch.fft.rfft2 (B=1, fp32): 64×56² 3.00×" in md
    assert "| aff_former_s18 stage 0: 64x56x56 | RFFT2 | 1 | 0.30 | 0.40 | 0.10 | 3.00 | 4.00 |" in md
    assert "| hpx_former_s18 @224 | 1 | trt_gemm | 1.00 | 1.00 | 2.00 | 2.00 |" in md  # eager fp32 B=1: 2 ms
    assert "native-dft: skipped: TensorRT 10.9" in md
    assert json.loads(paths["json"].read_text())["headline"]
    assert (tmp_path / gpu.PLOTS["op"]).is_file() and (tmp_path / gpu.PLOTS["model"]).is_file()


def test_summary_says_what_ran_passed_and_skipped(tmp_path, capsys):
    args = gc.build_parser().parse_args(["--build-dir", str(tmp_path / "build")])
    checker = gc.Checker(args)
    steps = checker.steps
    steps["build"].status, steps["build"].detail = "passed", "build/gpu-check/fftconv/fftconv_gpu_check"
    steps["plugin"].status, steps["plugin"].detail = "passed", "120 passed, 0 failed"
    steps["pytest"].status, steps["pytest"].detail = "passed", "40 passed, 0 failed, 0 errors, 12 skipped"
    steps["pytest"].skips = ["12 tests: TensorRT Python package (tensorrt) is not installed"]
    steps["bench"].status, steps["bench"].detail = "failed", "bench/out/gpu/report.md; errors in: op\nline two"
    assert checker.summary("a GPU", 300.0) == 1
    out = capsys.readouterr().out
    assert "PASSED   plugin" in out and "FAILED   bench" in out and "         line two" in out
    assert "  - pytest: 12 tests: TensorRT Python package (tensorrt) is not installed" in out
    assert out.rstrip().endswith("gpu-check: FAILED (bench) in 5.0 min")
    assert (tmp_path / "build" / "logs" / "summary.txt").read_text().strip() == out.strip()
    steps["bench"].status = "passed"
    assert checker.summary("a GPU", 300.0) == 0
    assert capsys.readouterr().out.rstrip().endswith("gpu-check: PASSED in 5.0 min")
