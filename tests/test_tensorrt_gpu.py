"""The TensorRT side on a GPU, through the project's real code: ``build_engine``,
``run_engine``/``EngineRunner`` and ``export/to_trt.py`` end to end (plan + config.pbtxt
written after its parity gate), for the plugin, GEMM and native-DFT variants, fp32 (TF32
off and on) and fp16. References come from ONNX Runtime on the CPU (the same ONNX file, or
its function body for the one-node models), never from a re-implementation.

All three plugins of the library are built: FFTConv (modes 2d, 1d_bidir and 2d_circular)
and RFFT2 / IRFFT2 on one-node models, and the models whose mixers use them end to end:
hpx_former_s4 (FFTConv 2d), gf_former_s4 (GFNet global filter: FFTConv 2d_circular) and
aff_former_s4 (AFF: RFFT2 -> mask -> IRFFT2). tests/test_to_trt.py runs the same to_trt
path on the gf/aff exports against a fake TensorRT on CPU hosts.

Every test is marked ``gpu``. Skips always say why (TensorRT or Polygraphy not installed,
plugin library path unset, no torch to export the test model); with ``HYENA_REQUIRE_GPU=1``
(``make gpu-check``) tests/conftest.py turns each of them into a failure, except the skip
for want of TensorRT on a host that really has none. On TensorRT < 11.2 the native-DFT
test checks that ``to_trt`` refuses with the reason instead of skipping.

The plugin library comes from ``$HYENA_FFTCONV_PLUGIN`` or is built here with CMake
against ``$TENSORRT_ROOT``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from hyena_serve.contract import (
    MODE_1D_BIDIR,
    MODE_2D,
    MODE_2D_CIRCULAR,
    ONNX_IRFFT2_TYPE,
    ONNX_RFFT2_TYPE,
    plan_fft,
)
from hyena_serve.exporting import spectral_onnx
from hyena_serve.exporting import tensorrt_build as trtb
from hyena_serve.exporting.fftconv_onnx import node_plan, standalone_model

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "export" / "plugins" / "fftconv"
TO_TRT = ROOT / "export" / "to_trt.py"
#: A small HyenaPixel (every stage has an FFTConv) that exports in seconds.
SMALL = ["--model", "hpx_former_s4", "--res", "32", "--weights", "random", "--seed", "0",
         "--model-kwargs", '{"dims": [8, 16, 16, 16]}']


def _quiet(msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def trt():
    module = pytest.importorskip("tensorrt", reason="TensorRT Python package (tensorrt) is not installed")
    pytest.importorskip("polygraphy.cuda", reason="Polygraphy (device buffers for the engines) is not installed")
    trtb.require_cuda()  # a GPU test on a host without a usable GPU fails here, it does not skip
    return module


@pytest.fixture(scope="module")
def plugin_lib(trt, tmp_path_factory) -> Path:
    if os.environ.get(trtb.PLUGIN_LIB_ENV):
        path = Path(os.environ[trtb.PLUGIN_LIB_ENV])
        assert path.is_file(), f"{trtb.PLUGIN_LIB_ENV}={path} does not exist"
        return path
    root = os.environ.get("TENSORRT_ROOT")
    if not root or shutil.which("cmake") is None:
        pytest.skip(f"plugin path unset: set {trtb.PLUGIN_LIB_ENV} to a built libhyena_fftconv_plugin.so, or "
                    "TENSORRT_ROOT (with cmake installed) to build it here")
    build = tmp_path_factory.mktemp("fftconv_build")
    subprocess.run(["cmake", "-S", str(PLUGIN_DIR), "-B", str(build), f"-DTENSORRT_ROOT={root}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "8"], check=True)
    (lib,) = build.rglob("libhyena_fftconv_plugin.so")
    return lib


@pytest.fixture(scope="module")
def torch_for_export():
    return pytest.importorskip("torch", reason="exporting the test model to ONNX needs torch (any build)")


def _to_trt():
    spec = importlib.util.spec_from_file_location("to_trt_gpu_test", TO_TRT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


# --- the plugin on one node ----------------------------------------------------------------------

CASES = [
    (MODE_2D, 64, 14, 14, (27, 27)),
    (MODE_2D, 8, 9, 13, (17, 25)),  # odd, non-square, non-power-of-two
    (MODE_1D_BIDIR, 16, 7, 7, 97),
    (MODE_1D_BIDIR, 4, 5, 9, 31),
    (MODE_2D_CIRCULAR, 64, 14, 14, (14, 14)),  # gf_former: the filter is the map
    (MODE_2D_CIRCULAR, 8, 9, 13, (9, 13)),
]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize(("mode", "c", "h", "w", "kernel"), CASES)
def test_plugin_engine_matches_the_function_body(trt, plugin_lib, tmp_path, mode, c, h, w, kernel, fp16):
    precision = trtb.choose_precision(trt, fp16=fp16)
    plan = plan_fft(mode, h, w, kernel)
    rng = np.random.default_rng(0)
    kf = (0.05 * rng.standard_normal((c, *plan.spectrum_shape, 2))).astype(np.float32)
    d = rng.standard_normal(c).astype(np.float32)
    reference = standalone_model(plan, kf, d, hw=(h, w))
    path = tmp_path / "one_node.onnx"
    onnx.save_model(standalone_model(plan, kf, d, hw=(h, w), fp16=precision.fp16_onnx), str(path))
    messages: list[str] = []
    engine = trtb.build_engine(path, variant="plugin", res=h, batch=trtb.BatchProfile(1, 3, 8), precision=precision,
                               plugin_lib=plugin_lib, log=messages.append, input_name="X", chw=(c, h, w))
    assert any("1 FFTConv plugin layers" in m for m in messages), messages
    with trtb.EngineRunner(engine, input_name="X", output_name="Y") as runner:
        for batch in (1, 8, 3, 8):  # batch sizes change between calls, as under dynamic batching
            x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
            got = runner(x)
            want = _ort(reference, x)
            rel = float(np.abs(got - want).max() / np.abs(want).max())
            assert np.isfinite(got).all() and rel <= precision.tolerance, (batch, rel)


# (op, C, H, W): C real channels (RFFT2's input, IRFFT2's output), the map (H, W); odd W has
# no Nyquist column, odd H, a 1-row map. IRFFT2 gets random, non-Hermitian spectra, so the
# DC/Nyquist handling is compared with the function body too.
SPECTRAL_CASES = [
    (ONNX_RFFT2_TYPE, 64, 14, 14),
    (ONNX_RFFT2_TYPE, 8, 9, 13),
    (ONNX_IRFFT2_TYPE, 64, 14, 14),
    (ONNX_IRFFT2_TYPE, 8, 9, 13),
    (ONNX_IRFFT2_TYPE, 4, 1, 6),
]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize(("op", "c", "h", "w"), SPECTRAL_CASES)
def test_spectral_plugin_engine_matches_the_function_body(trt, plugin_lib, tmp_path, op, c, h, w, fp16):
    precision = trtb.choose_precision(trt, fp16=fp16)
    reference = spectral_onnx.standalone_model(op, c, (h, w))
    path = tmp_path / "one_node.onnx"
    onnx.save_model(spectral_onnx.standalone_model(op, c, (h, w), fp16=precision.fp16_onnx), str(path))
    chw = (c, h, w) if op == ONNX_RFFT2_TYPE else (2 * c, h, w // 2 + 1)
    messages: list[str] = []
    engine = trtb.build_engine(path, variant="plugin", res=h, batch=trtb.BatchProfile(1, 3, 8), precision=precision,
                               plugin_lib=plugin_lib, log=messages.append, input_name="X", chw=chw)
    assert any(f"1 {op} plugin layers ({trtb.plugin_id(op)})" in m for m in messages), messages
    rng = np.random.default_rng(0)
    with trtb.EngineRunner(engine, input_name="X", output_name="Y") as runner:
        for batch in (1, 8, 3, 8):  # batch sizes change between calls, as under dynamic batching
            x = rng.standard_normal((batch, *chw)).astype(np.float32)
            got = runner(x)
            want = _ort(reference, x)
            assert got.shape == want.shape, (got.shape, want.shape)
            rel = float(np.abs(got - want).max() / np.abs(want).max())
            assert np.isfinite(got).all() and rel <= precision.tolerance, (batch, rel)


def test_plugin_variant_without_the_plugin_names_the_cause(trt, tmp_path):
    # In a fresh process (no plugin loaded): the functions are stripped, so the parser cannot
    # fall back to the body, and the error must say the plugin is not registered.
    plan = plan_fft(MODE_2D, 9, 9, (5, 5))
    kf = np.zeros((4, *plan.spectrum_shape, 2), np.float32)
    path = tmp_path / "one_node.onnx"
    onnx.save_model(standalone_model(plan, kf, np.ones(4, np.float32)), str(path))
    fake_lib = tmp_path / "libnothing.so"
    fake_lib.write_bytes(b"")
    code = (
        "import sys\n"
        "from hyena_serve.exporting import tensorrt_build as t\n"
        "t.load_plugin = lambda path, trt: None\n"
        "try:\n"
        f"    t.build_engine({str(path)!r}, variant='plugin', res=9, batch=t.BatchProfile(1, 1, 2),\n"
        f"                   plugin_lib={str(fake_lib)!r}, log=lambda m: None, input_name='X', chw=(4, 9, 9))\n"
        "except t.PluginLayersMissing as exc:\n"
        "    print(exc); sys.exit(7)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "not registered" in proc.stdout and "hyena::FFTConv/1" in proc.stdout


# --- to_trt end to end on a small model -----------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("to_trt")


def _main(workdir: Path, *extra: str) -> int:
    return _to_trt().main([*SMALL, "--artifacts-dir", str(workdir / "artifacts"), "--repository",
                           str(workdir / "repo"), "--batch", "1:4:8", *extra])


def _assert_plan_matches_onnx(plan: bytes, onnx_path: Path) -> None:
    """The written plan, run again through run_engine at batches 1, 3 and 8 (inside the
    1:4:8 profile), against ONNX Runtime on the export it was built from."""
    session = trtb.onnx_reference_session(onnx_path)
    rng = np.random.default_rng(3)
    for batch in (1, 3, 8):
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        result = trtb.parity_decision(trtb.onnx_reference(session, x), trtb.run_engine(plan, x), trtb.TOL_FP32)
        assert result.ok, result.summary()


def test_to_trt_writes_a_checked_plan_and_its_config(trt, plugin_lib, torch_for_export, workdir, capsys):
    rc = _main(workdir, "--plugin-lib", str(plugin_lib))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "FFTConv plugin layers" in err and "parity vs ONNX Runtime" in err
    entry = workdir / "repo" / "hpx_former_s4_trt"
    plan = (entry / "1" / "model.plan").read_bytes()
    config = (entry / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and "hyena_manifest" in config

    (onnx_path,) = [p for p in (workdir / "artifacts" / "onnx").glob("*_matmul_fp32.onnx")]
    _assert_plan_matches_onnx(plan, onnx_path)
    with pytest.raises(trtb.EngineError, match="refused input shape"):
        trtb.run_engine(plan, np.zeros((9, 3, 32, 32), np.float32))  # outside the 1:4:8 profile

    # A second build reuses the export.
    rc = _main(workdir, "--plugin-lib", str(plugin_lib), "--out", str(workdir / "again.plan"))
    assert rc == 0 and "reusing the export" in capsys.readouterr().err


#: Models whose mixers are the other plugins, with the custom ops their export must contain:
#: GFNet's global filter (FFTConv 2d_circular) and AFF (RFFT2 -> mask -> IRFFT2).
SPECTRAL_MODELS = {"gf_former_s4": ("FFTConv",), "aff_former_s4": ("IRFFT2", "RFFT2")}


@pytest.mark.parametrize("model", sorted(SPECTRAL_MODELS))
def test_to_trt_builds_and_checks_the_spectral_mixer_models(trt, plugin_lib, torch_for_export, tmp_path, capsys,
                                                            model):
    rc = _to_trt().main(["--model", model, *SMALL[2:], "--artifacts-dir", str(tmp_path / "artifacts"),
                         "--repository", str(tmp_path / "repo"), "--batch", "1:4:8", "--plugin-lib", str(plugin_lib)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "parity vs ONNX Runtime" in err
    (onnx_path,) = [p for p in (tmp_path / "artifacts" / "onnx").glob("*_matmul_fp32.onnx")]
    nodes = trtb.custom_op_nodes(trtb.prepare_onnx(onnx.load(str(onnx_path)), "plugin"))
    assert sorted(set(nodes.values())) == list(SPECTRAL_MODELS[model]), nodes
    if model.startswith("gf_"):
        assert {node_plan(n).mode for n in onnx.load(str(onnx_path)).graph.node
                if n.op_type.startswith("FFTConv")} == {MODE_2D_CIRCULAR}, "GFNet's FFTConv nodes are circular"
    (line,) = [m for m in err.splitlines() if "plugin layers" in m]
    for op in SPECTRAL_MODELS[model]:
        count = sum(1 for v in nodes.values() if v == op)
        assert f"{count} {op} plugin layers ({trtb.plugin_id(op)})" in line, line
    entry = tmp_path / "repo" / f"{model}_trt"
    plan = (entry / "1" / "model.plan").read_bytes()
    assert 'platform: "tensorrt_plan"' in (entry / "config.pbtxt").read_text()

    _assert_plan_matches_onnx(plan, onnx_path)


@pytest.mark.parametrize("variant", ["gemm", "native-dft"])
def test_to_trt_builds_the_comparison_variants(trt, torch_for_export, workdir, capsys, variant):
    out = workdir / f"{variant}.plan"
    rc = _main(workdir, "--fftconv", variant, "--out", str(out))
    err = capsys.readouterr().err
    if variant == "native-dft" and trtb.version_tuple(trt.__version__)[:2] < trtb.MIN_TENSORRT_NATIVE_DFT:
        # No ONNX DFT import before 11.2: to_trt must say so ("cannot build here"), not crash.
        assert rc == 3 and "too old for the native-dft variant" in err, err
        return
    assert rc == 0, err
    assert out.stat().st_size > 0 and "parity vs ONNX Runtime" in err


@pytest.mark.parametrize("flags", [["--fp16"], ["--tf32"]], ids=["fp16", "tf32"])
def test_to_trt_reduced_precision_builds_pass_their_gate(trt, plugin_lib, torch_for_export, workdir, capsys, flags):
    # fp16: BuilderFlag.FP16 on TensorRT 10, the strongly typed fp16 export on TensorRT 11.
    out = workdir / f"{flags[0][2:]}.plan"
    rc = _main(workdir, "--plugin-lib", str(plugin_lib), "--out", str(out), *flags)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert out.stat().st_size > 0
