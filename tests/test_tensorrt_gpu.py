"""The FFTConv TensorRT plugin on a GPU: numerics against the torch reference, engine
round trips and the batch profile. Skipped on hosts without a CUDA GPU and TensorRT.

The plugin library comes from ``$HYENA_FFTCONV_PLUGIN`` or is built here with CMake
against ``$TENSORRT_ROOT``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, plan_fft
from hyena_serve.ops import fft_conv1d_bidir_ref, fft_conv2d_ref, filter_spectrum

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "export" / "plugins" / "fftconv"


@pytest.fixture(scope="module")
def trt():
    return pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")


@pytest.fixture(scope="module")
def plugin_lib(trt, tmp_path_factory) -> Path:
    from hyena_serve.exporting.tensorrt_build import PLUGIN_LIB_ENV

    if os.environ.get(PLUGIN_LIB_ENV):
        return Path(os.environ[PLUGIN_LIB_ENV])
    root = os.environ.get("TENSORRT_ROOT")
    if not root or shutil.which("cmake") is None:
        pytest.skip(f"set {PLUGIN_LIB_ENV} to a built plugin, or TENSORRT_ROOT (and install cmake) to build it")
    build = tmp_path_factory.mktemp("fftconv_build")
    subprocess.run(["cmake", "-S", str(PLUGIN_DIR), "-B", str(build), f"-DTENSORRT_ROOT={root}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "4"], check=True)
    return build / "libhyena_fftconv_plugin.so"


def _build(trt, onnx_model, plugin_lib: Path | None, batch: tuple[int, int, int], input_name: str,
           chw: tuple[int, int, int], fp16: bool = False) -> bytes:
    import onnx

    from hyena_serve.exporting import tensorrt_build as trtb

    logger = trt.Logger(trt.Logger.WARNING)
    if plugin_lib is not None:
        trtb.load_plugin(plugin_lib, trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx.ModelProto.SerializeToString(onnx_model)), [
        str(parser.get_error(i)) for i in range(parser.num_errors)]
    if plugin_lib is not None:
        trtb.check_plugin_layers(trtb.fftconv_node_names(onnx_model), trtb._layer_records(network, trt))
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *[(b, *chw) for b in batch])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    return bytes(plan)


def _run(trt, plan: bytes, inputs: dict[str, torch.Tensor], output: str, out_dtype) -> torch.Tensor:
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    for name, tensor in inputs.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    y = torch.empty(tuple(context.get_tensor_shape(output)), dtype=out_dtype, device="cuda")
    context.set_tensor_address(output, y.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return y


CASES = [
    (MODE_2D, 64, 14, 14, (27, 27)),
    (MODE_2D, 8, 9, 13, (17, 25)),  # odd, non-square, non-power-of-two
    (MODE_1D_BIDIR, 16, 7, 7, 97),
    (MODE_1D_BIDIR, 4, 5, 9, 31),
]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize(("mode", "c", "h", "w", "kernel"), CASES)
def test_plugin_matches_the_torch_reference(trt, plugin_lib, mode, c, h, w, kernel, fp16):
    from hyena_serve.exporting.fftconv_onnx import standalone_model

    plan = plan_fft(mode, h, w, kernel)
    k = torch.randn(c, *plan.kernel) * 0.05
    d = torch.randn(c)
    kf = filter_spectrum(k, plan)
    model = standalone_model(plan, kf.numpy(), d.numpy(), fp16=fp16, hw=(h, w))
    engine = _build(trt, model, plugin_lib, (1, 3, 4), "X", (c, h, w), fp16=fp16)
    dtype = torch.float16 if fp16 else torch.float32
    x = torch.randn(3, c, h, w).to(dtype)
    got = _run(trt, engine, {"X": x.cuda()}, "Y", dtype).float().cpu()
    if mode == MODE_2D:
        want = fft_conv2d_ref(x.float(), k, d)
    else:
        want = fft_conv1d_bidir_ref(x.float().flatten(-2), k, d).reshape(x.shape)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel <= (1e-2 if fp16 else 1e-4)


def test_model_engine_round_trip_and_batch_profile(trt, plugin_lib, tmp_path):
    import onnx

    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME
    from hyena_serve.exporting.onnx_export import build_model, export_onnx
    from hyena_serve.exporting.tensorrt_build import prepare_onnx

    torch.manual_seed(0)
    res = 64
    model = build_model("hpx_former_s4", res)
    path = export_onnx(model, res, tmp_path / "m.onnx", check=False, progress=False)
    engine = _build(trt, prepare_onnx(onnx.load(str(path)), "plugin"), plugin_lib, (1, 4, 8), INPUT_NAME,
                    (3, res, res))
    saved = tmp_path / "model.plan"
    saved.write_bytes(engine)
    for batch in (1, 3, 8):
        x = torch.randn(batch, 3, res, res)
        with torch.inference_mode():
            want = model(x)
        for plan in (engine, saved.read_bytes()):
            got = _run(trt, plan, {INPUT_NAME: x.cuda()}, OUTPUT_NAME, torch.float32).cpu()
            assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-4
            assert torch.equal(got.argmax(1), want.argmax(1))
    assert saved.read_bytes() == engine
