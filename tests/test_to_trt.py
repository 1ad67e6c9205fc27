"""export/to_trt.py and its CPU-side logic.

The TensorRT build itself needs a GPU (tests/test_tensorrt_gpu.py). Here every decision
that does not is tested: the graph each variant hands the parser, the precision recipe per
TensorRT capability, which layers count as plugin layers of the hyena custom ops (FFTConv,
RFFT2, IRFFT2), parse-failure causes,
the parity decision, the engine runner's checks, and ``to_trt`` end to end against a fake
``tensorrt`` module whose "engine" runs the ONNX file through ONNX Runtime and whose parser
behaves like TensorRT 10.0-10.6 (a local function is inlined in preference to a plugin).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hyena_serve.contract import INPUT_NAME, MODE_2D, OUTPUT_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, plan_fft
from hyena_serve.exporting import tensorrt_build as trtb
from hyena_serve.exporting.fftconv_onnx import standalone_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "export" / "to_trt.py"
NUM_CLASSES = 10


def _load_to_trt():
    spec = importlib.util.spec_from_file_location("to_trt_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_fftconv_model(fp16: bool = False) -> onnx.ModelProto:
    plan = plan_fft(MODE_2D, 5, 6, (3, 5))
    kf = np.random.default_rng(0).standard_normal((2, *plan.spectrum_shape, 2)).astype(np.float32)
    return standalone_model(plan, kf, np.ones(2, np.float32), fp16=fp16)


def _tiny_classifier(res: int = 8, fp16: bool = False) -> onnx.ModelProto:
    """pixel_values [N,3,res,res] -> FFTConv -> global average pool -> MatMul -> logits [N,10]:
    the shape of an export, small enough to run through ONNX Runtime in milliseconds."""
    plan = plan_fft(MODE_2D, res, res, (5, 5))
    rng = np.random.default_rng(0)
    kf = (0.2 * rng.standard_normal((3, *plan.spectrum_shape, 2))).astype(np.float32)
    model = standalone_model(plan, kf, np.ones(3, np.float32), fp16=fp16)
    graph = model.graph
    graph.node[0].name = "mixer0/fftconv"
    graph.node[0].input[0] = INPUT_NAME
    graph.input[0].name = INPUT_NAME
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    weight = rng.standard_normal((3, NUM_CLASSES)).astype(np.float16 if fp16 else np.float32)
    graph.initializer.append(numpy_helper.from_array(weight, "head_w"))
    graph.node.extend([
        helper.make_node("GlobalAveragePool", ["Y"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "head_w"], [OUTPUT_NAME], name="head"),
    ])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", NUM_CLASSES]))
    onnx.checker.check_model(model, full_check=True)
    return model


# --- batch profile and parity inputs ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("1:4:8", (1, 4, 8)), ("3", (3, 3, 3)), ("1:1:16", (1, 1, 16))])
def test_batch_profile_parses(text, expected):
    profile = trtb.BatchProfile.parse(text)
    assert (profile.min, profile.opt, profile.max) == expected
    assert profile.shapes(32)[2] == (expected[2], 3, 32, 32)


@pytest.mark.parametrize("text", ["4:2:8", "0:1:2", "1:2", "a:b:c", "1:2:3:4"])
def test_batch_profile_rejects_bad_text(text):
    with pytest.raises(ValueError, match="batch profile"):
        trtb.BatchProfile.parse(text)


@pytest.mark.parametrize("profile", ["6:6:8", "8:8:8", "1:1:2", "1:4:8", "3:3:3"])
def test_parity_batches_fit_the_profile_whatever_the_number_of_photos(profile):
    # A minimum above the 4 sample photos used to slice 4 images into an engine that cannot
    # run fewer than MIN: every parity batch must lie inside the profile.
    batch = trtb.BatchProfile.parse(profile)
    photos = np.zeros((4, 3, 8, 8), np.float32)
    batches = trtb.parity_batches(photos, batch)
    assert all(batch.min <= len(x) <= batch.max for _, x in batches), [(n, len(x)) for n, x in batches]
    assert sum(min(len(x), 4) for n, x in batches if n.startswith("photos")) >= 4, "every photo is checked"
    assert any(len(x) == batch.max for _, x in batches), "the largest shape is exercised"


# --- the graph each variant parses -------------------------------------------------------------


def _attrs(model: onnx.ModelProto) -> dict[str, object]:
    (node,) = [n for n in model.graph.node if n.op_type.startswith("FFTConv")]
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_plugin_variant_strips_the_function_bodies_so_the_parser_can_only_take_the_plugin():
    model = _tiny_fftconv_model()
    prepared = trtb.prepare_onnx(model, "plugin")
    attrs = _attrs(prepared)
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert attrs["plugin_version"] == PLUGIN_VERSION.encode()
    assert attrs["mode"] == b"2d" and list(attrs["kernel_size"]) == [3, 5]
    assert not any(f.name.startswith("FFTConv") for f in prepared.functions), "TensorRT 10.0-10.6 would inline it"
    (node,) = prepared.graph.node
    assert node.op_type == "FFTConv" and not node.overload, "the plugin is looked up by op_type"
    assert len(model.functions) == 1, "the input model must not be modified"


def test_strip_keeps_functions_that_are_not_fftconv():
    model = _tiny_fftconv_model()
    model.functions.append(helper.make_function("other", "Helper", ["a"], ["b"],
                                                [helper.make_node("Identity", ["a"], ["b"])],
                                                [helper.make_opsetid("", 20)]))
    assert trtb.strip_fftconv_functions(model) == 1
    assert [f.name for f in model.functions] == ["Helper"]


@pytest.mark.parametrize("variant", ["native-dft", "gemm"])
def test_function_body_variants_drop_the_plugin_attributes_only(variant):
    model = _tiny_fftconv_model()
    prepared = trtb.prepare_onnx(model, variant)
    attrs = _attrs(prepared)
    assert "plugin_namespace" not in attrs and "plugin_version" not in attrs
    assert list(attrs["fft_size"]) == [10, 12]
    assert len(prepared.functions) == 1
    assert "plugin_namespace" in _attrs(model), "the input model must not be modified"


def test_function_body_variants_name_each_overload_and_still_run():
    # Two plans in one graph: each node must reach its own body under a unique name, and
    # ONNX Runtime must still compute the same result as with the overloads.
    ort = pytest.importorskip("onnxruntime")
    plan_a, plan_b = plan_fft(MODE_2D, 5, 6, (3, 5)), plan_fft(MODE_2D, 5, 6, (5, 7))
    rng = np.random.default_rng(0)
    kf_a = rng.standard_normal((2, *plan_a.spectrum_shape, 2)).astype(np.float32)
    kf_b = rng.standard_normal((2, *plan_b.spectrum_shape, 2)).astype(np.float32)
    chained = standalone_model(plan_a, kf_a, np.ones(2, np.float32), body="matmul")
    second = standalone_model(plan_b, kf_b, np.ones(2, np.float32), body="matmul")
    node = second.graph.node[0]
    node.input[:] = ["Y", "Kf_b", "D_b"]
    node.output[:] = ["Z"]
    for init in second.graph.initializer:
        init.name += "_b"
    chained.graph.node.append(node)
    chained.graph.initializer.extend(second.graph.initializer)
    chained.functions.extend(second.functions)
    chained.graph.output[0].name = "Z"
    prepared = trtb.prepare_onnx(chained, "gemm")
    names = sorted(f.name for f in prepared.functions)
    assert len(set(names)) == 2 and all(n.startswith("FFTConv__") for n in names)
    assert not any(f.overload for f in prepared.functions) and not any(n.overload for n in prepared.graph.node)
    onnx.checker.check_model(prepared, full_check=True)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"X": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(prepared), run(chained), rtol=1e-6, atol=1e-6)


def test_fp16_export_gets_float32_io_and_computes_the_same():
    # Strongly typed fp16 (TensorRT 11): the fp16 export inside, float32 at the boundary so the
    # Triton config and the gateway keep their float32 contract.
    ort = pytest.importorskip("onnxruntime")
    model = _tiny_classifier(fp16=True)
    assert trtb.input_is_fp16(model)
    prepared = trtb.prepare_onnx(model, "gemm")
    assert not trtb.input_is_fp16(prepared)
    assert prepared.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.checker.check_model(prepared, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {INPUT_NAME: x.astype(np.float16)})[0]
    got = ort.InferenceSession(prepared.SerializeToString()).run(None, {INPUT_NAME: x})[0]
    assert got.dtype == np.float32
    # ONNX Runtime may fuse the boundary Casts into fp32 kernels: fp16 rounding apart, the same.
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-3, atol=1e-3)
    assert trtb.cast_io_to_float32(_tiny_classifier()) is False, "a float32 graph is left alone"


def test_prepare_rejects_models_without_fftconv_and_plugin_nodes_without_attributes():
    model = _tiny_fftconv_model()
    empty = onnx.ModelProto()
    empty.CopyFrom(model)
    del empty.graph.node[:]
    with pytest.raises(ValueError, match="no hyena custom-op node"):
        trtb.prepare_onnx(empty, "plugin")
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    node = stripped.graph.node[0]
    kept = [a for a in node.attribute if a.name != "plugin_namespace"]
    del node.attribute[:]
    node.attribute.extend(kept)
    with pytest.raises(ValueError, match="would not pick the plugin"):
        trtb.prepare_onnx(stripped, "plugin")
    with pytest.raises(ValueError, match="unknown FFTConv variant"):
        trtb.prepare_onnx(model, "cudnn")


# --- RFFT2 / IRFFT2 nodes (the AFF mixer's run-time spectra) -----------------------------------


def _stand_in_function(op: str, overload: str) -> onnx.FunctionProto:
    """A model-local function for a hyena custom op. Its body is a stand-in (the real bodies
    are the exporter's business): these tests are about what the parser is handed."""
    fn = helper.make_function("hyena", op, ["X"], ["Y"], [helper.make_node("Identity", ["X"], ["Y"])],
                              [helper.make_opsetid("", 20)])
    fn.overload = overload
    return fn


def _spectral_model(with_fftconv: bool = True) -> onnx.ModelProto:
    """pixel_values -> [FFTConv] -> hyena::RFFT2 -> Relu -> hyena::IRFFT2 -> logits: the node
    pattern of an AFF mixer after a global filter, each custom op with its function overload,
    plus one function of another domain that must survive."""
    model = _tiny_classifier() if with_fftconv else helper.make_model(
        helper.make_graph([], "spectral", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                                         ["N", 3, 8, 8])], []),
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("hyena", 1)], ir_version=10)
    graph = model.graph
    src = "Y" if with_fftconv else INPUT_NAME
    plugin = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}
    rfft = helper.make_node("RFFT2", [src], ["spec"], name="mixer1/rfft2", domain="hyena",
                            spatial_size=[8, 8], **plugin)
    rfft.overload = "s8x8"
    irfft = helper.make_node("IRFFT2", ["spec_masked"], ["mixed"], name="mixer1/irfft2", domain="hyena",
                             spatial_size=[8, 8], **plugin)
    irfft.overload = "s8x8"
    graph.node.extend([rfft, helper.make_node("Relu", ["spec"], ["spec_masked"], name="mask"), irfft])
    model.functions.extend([_stand_in_function("RFFT2", "s8x8"), _stand_in_function("IRFFT2", "s8x8"),
                            helper.make_function("other", "Helper", ["a"], ["b"],
                                                 [helper.make_node("Identity", ["a"], ["b"])],
                                                 [helper.make_opsetid("", 20)])])
    return model


def test_plugin_variant_strips_every_custom_op_function_and_keeps_the_rest():
    model = _spectral_model()
    assert trtb.custom_op_nodes(model) == {"mixer0/fftconv": "FFTConv", "mixer1/rfft2": "RFFT2",
                                           "mixer1/irfft2": "IRFFT2"}
    prepared = trtb.prepare_onnx(model, "plugin")
    assert [f.name for f in prepared.functions] == ["Helper"], "no hyena body left for the parser to inline"
    spectral = [n for n in prepared.graph.node if n.op_type in ("RFFT2", "IRFFT2")]
    assert len(spectral) == 2 and not any(n.overload for n in spectral), "plugins are looked up by op_type"
    attrs = {a.name: helper.get_attribute_value(a) for a in spectral[0].attribute}
    assert list(attrs["spatial_size"]) == [8, 8] and attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
    assert len(model.functions) == 4, "the input model must not be modified"
    # Only the functions of ops that have nodes are stripped when asked by op.
    again = onnx.ModelProto()
    again.CopyFrom(model)
    assert trtb.strip_custom_op_functions(again, ["RFFT2"]) == 1
    assert sorted(f.name for f in again.functions) == ["FFTConv", "Helper", "IRFFT2"]


def test_prepare_accepts_a_model_whose_only_custom_ops_are_spectral():
    model = _spectral_model(with_fftconv=False)
    prepared = trtb.prepare_onnx(model, "plugin")
    assert trtb.custom_op_nodes(prepared) == {"mixer1/rfft2": "RFFT2", "mixer1/irfft2": "IRFFT2"}
    assert trtb.fftconv_node_names(prepared) == []
    node = next(n for n in model.graph.node if n.op_type == "IRFFT2")
    kept = [a for a in node.attribute if a.name != "plugin_version"]
    del node.attribute[:]
    node.attribute.extend(kept)
    with pytest.raises(ValueError, match="IRFFT2 node 'mixer1/irfft2' lacks"):
        trtb.prepare_onnx(model, "plugin")


def test_function_body_variants_name_every_custom_op_overload():
    prepared = trtb.prepare_onnx(_spectral_model(), "gemm")
    names = sorted(f.name for f in prepared.functions)
    assert "RFFT2__s8x8" in names and "IRFFT2__s8x8" in names and "Helper" in names
    ops = {n.name: n.op_type for n in prepared.graph.node}
    assert ops["mixer1/rfft2"] == "RFFT2__s8x8" and ops["mixer1/irfft2"] == "IRFFT2__s8x8"
    assert not any(n.overload for n in prepared.graph.node)
    spectral = [n for n in prepared.graph.node if n.op_type.startswith(("RFFT2", "IRFFT2"))]
    assert all("plugin_version" not in {a.name for a in n.attribute} for n in spectral)



def test_exported_circular_and_spectral_nodes_reach_the_parser_as_the_plugins_read_them():
    # The exporter's own nodes (not stand-ins): after prepare_onnx the parser sees op types the
    # library registers, the fields the creators read, and a Kf of the shape the circular
    # FFTConv plugin checks (C, H, W//2+1, 2); no body is left to inline.
    from hyena_serve.contract import IRFFT2_PLUGIN_NAME, MODE_2D_CIRCULAR, RFFT2_PLUGIN_NAME
    from hyena_serve.exporting import spectral_onnx

    plan = plan_fft(MODE_2D_CIRCULAR, 7, 5)
    kf = np.zeros((3, *plan.spectrum_shape, 2), np.float32)
    circular = trtb.prepare_onnx(standalone_model(plan, kf, np.ones(3, np.float32)), "plugin")
    (node,) = circular.graph.node
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == trtb.PLUGIN_NAME and attrs["mode"] == MODE_2D_CIRCULAR.encode()
    assert list(attrs["kernel_size"]) == list(attrs["fft_size"]) == list(attrs["spatial_size"]) == [7, 5]
    (kf_init,) = [t for t in circular.graph.initializer if t.name == node.input[1]]
    assert list(kf_init.dims) == [3, 7, 3, 2]
    assert not circular.functions
    for op, plugin in (("RFFT2", RFFT2_PLUGIN_NAME), ("IRFFT2", IRFFT2_PLUGIN_NAME)):
        model = spectral_onnx.standalone_model(op, 4, (6, 5))
        prepared = trtb.prepare_onnx(model, "plugin")
        (node,) = prepared.graph.node
        assert node.op_type == plugin and not node.overload and not prepared.functions
        assert trtb.custom_op_nodes(prepared) == {node.name: plugin}
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert list(attrs["spatial_size"]) == [6, 5] and attrs["plugin_version"] == PLUGIN_VERSION.encode()


# --- precision recipe by capability ------------------------------------------------------------


def _fake_trt_enums(*, fp16_flag: bool, version: str):
    flags = {"TF32": 7, "REFIT": 2}
    if fp16_flag:
        flags["FP16"] = 0
    return SimpleNamespace(
        __version__=version,
        BuilderFlag=SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1),
    )


def test_precision_tensorrt10_fp16_uses_the_builder_flag_and_the_float32_export():
    trt10 = _fake_trt_enums(fp16_flag=True, version="10.13.0")
    p = trtb.choose_precision(trt10, fp16=True)
    assert p.mode == "fp16-flag" and "FP16" in p.set_flags and not p.fp16_onnx and p.network_flags == 0
    assert "TF32" in p.clear_flags and p.tolerance == trtb.TOL_REDUCED


def test_precision_tensorrt11_fp16_is_strongly_typed_from_the_fp16_export():
    # TensorRT 11 has no BuilderFlag.FP16: this used to raise / exit 3 ("cannot build here").
    trt11 = _fake_trt_enums(fp16_flag=False, version="11.4.0")
    p = trtb.choose_precision(trt11, fp16=True)
    assert p.mode == "fp16-strongly-typed" and p.fp16_onnx and "FP16" not in p.set_flags
    assert p.network_flags == 1 << 1
    no_enum = SimpleNamespace(__version__="11.4.0", BuilderFlag=SimpleNamespace(TF32=7))
    assert trtb.choose_precision(no_enum, fp16=True).network_flags == 0


@pytest.mark.parametrize("fp16_flag", [True, False])
def test_precision_fp32_clears_tf32_unless_asked(fp16_flag):
    trt = _fake_trt_enums(fp16_flag=fp16_flag, version="10.13.0" if fp16_flag else "11.4.0")
    strict = trtb.choose_precision(trt, fp16=False)
    assert strict.mode == "fp32" and strict.clear_flags == ("TF32",) and strict.tolerance == trtb.TOL_FP32
    assert not strict.fp16_onnx
    loose = trtb.choose_precision(trt, fp16=False, tf32=True)
    assert loose.clear_flags == () and loose.set_flags == ("TF32",) and loose.tolerance == trtb.TOL_REDUCED


@pytest.mark.parametrize(("version", "variant", "ok"), [
    ("10.0.1.6", "plugin", True), ("9.3.0", "plugin", False), ("11.1.0", "native-dft", False),
    ("11.2.0", "native-dft", True), ("10.6.0", "gemm", True)])
def test_tensorrt_version_floors(version, variant, ok):
    trt = SimpleNamespace(__version__=version)
    if ok:
        trtb.check_tensorrt_version(trt, variant)
    else:
        with pytest.raises(trtb.TensorRTUnavailable, match="too old"):
            trtb.check_tensorrt_version(trt, variant)


# --- plugin layers and parse failures ----------------------------------------------------------


def test_plugin_layer_check_counts_fftconv_plugin_layers():
    nodes = ["fft0", "fft1"]
    layers = [("stem", "CONVOLUTION"), ("fft0", "PLUGIN_V3", trtb.PLUGIN_ID), ("mlp", "MATRIX_MULTIPLY"),
              ("fft1", "PLUGIN_V3", trtb.PLUGIN_ID)]
    assert trtb.check_plugin_layers(nodes, layers) == 2
    # Where the plugin could not be asked, the layer's name (the node's) identifies it.
    assert trtb.check_plugin_layers(nodes, [("fft0", "PLUGIN_V3"), ("fft1", "PLUGIN_V3")]) == 2


def test_plugin_layer_check_does_not_count_other_plugins():
    # Two plugin layers, but one is somebody else's plugin: the old check counted any plugin.
    layers = [("fft0", "PLUGIN_V3", trtb.PLUGIN_ID), ("nms", "PLUGIN_V3", "::EfficientNMS_TRT/1")]
    with pytest.raises(trtb.PluginLayersMissing, match="EfficientNMS_TRT"):
        trtb.check_plugin_layers(["fft0", "fft1"], layers)
    # A layer named after the node whose plugin says it is another plugin does not count either.
    with pytest.raises(trtb.PluginLayersMissing):
        trtb.check_plugin_layers(["fft0"], [("fft0", "PLUGIN_V3", "other::FFTConv/2"), ("gelu", "PLUGIN_V2")])


def test_plugin_layer_check_fails_loudly_when_the_parser_inlined_the_function():
    layers = [("stem", "CONVOLUTION")] + [(f"fft0/matmul{i}", "MATRIX_MULTIPLY") for i in range(4)]
    with pytest.raises(trtb.PluginLayersMissing, match="expected 1 FFTConv plugin layers .*, the network has 0"):
        trtb.check_plugin_layers(["fft0"], layers)


def test_plugin_layer_check_counts_each_custom_op_against_its_own_plugin():
    nodes = {"fft0": "FFTConv", "rfft": "RFFT2", "irfft": "IRFFT2"}
    layers = [("fft0", "PLUGIN_V3", trtb.plugin_id("FFTConv")), ("rfft", "PLUGIN_V3", "hyena::RFFT2/1"),
              ("mask", "ACTIVATION"), ("irfft", "PLUGIN_V3", "hyena::IRFFT2/1")]
    assert trtb.check_plugin_layers(nodes, layers) == 3
    assert trtb.check_plugin_layers(nodes, [(n, "PLUGIN_V3") for n in nodes]) == 3  # by name where not asked
    # An RFFT2 layer cannot stand in for the missing IRFFT2 one, though the total matches.
    swapped = layers[:3] + [("irfft", "PLUGIN_V3", "hyena::RFFT2/1")]
    with pytest.raises(trtb.PluginLayersMissing, match=r"expected 1 IRFFT2 plugin layers \(hyena::IRFFT2/1\), "
                                                       r"the network has 0"):
        trtb.check_plugin_layers(nodes, swapped)
    # The parser inlined the IRFFT2 body (no plugin layer for it).
    inlined = layers[:3] + [("irfft/body", "MATRIX_MULTIPLY")]
    with pytest.raises(trtb.PluginLayersMissing, match="IRFFT2 plugin layers"):
        trtb.check_plugin_layers(nodes, inlined)


def test_parse_failure_names_the_spectral_plugin_the_parser_could_not_find():
    exc = trtb.parse_failure(
        ["In node 7 with name: mixer1/irfft2 and operator: IRFFT2 (importFallbackPluginImporter): "
         "UNSUPPORTED_NODE: Plugin not found, are the plugin name, version, and namespace correct?"],
        variant="plugin", onnx_path="m.onnx", plugin_lib="/x/lib.so", trt_version="10.3.0",
        ops=["FFTConv", "IRFFT2", "RFFT2"])
    assert isinstance(exc, trtb.PluginLayersMissing)
    text = str(exc)
    assert "hyena::IRFFT2/1" in text and "hyena::FFTConv/1" not in text, "name the plugin that is missing"
    assert "older build" in text and "Plugin not found" in text


def test_parse_failure_of_the_plugin_variant_names_the_real_cause():
    exc = trtb.parse_failure(
        ["In node 12 with name: mixer0/fftconv and operator: FFTConv (importFallbackPluginImporter): "
         "UNSUPPORTED_NODE: Plugin not found, are the plugin name, version, and namespace correct?"],
        variant="plugin", onnx_path="m.onnx", plugin_lib="/x/libhyena_fftconv_plugin.so", trt_version="10.3.0")
    assert isinstance(exc, trtb.PluginLayersMissing)
    text = str(exc)
    assert "not registered" in text and "/x/libhyena_fftconv_plugin.so" in text and "another TensorRT version" in text
    assert "Plugin not found" in text, "the parser's own words are kept"
    other = trtb.parse_failure(["Unsupported ONNX data type: STRING"], variant="gemm", onnx_path="m.onnx")
    assert type(other) is RuntimeError and "m.onnx" in str(other)
    dft = trtb.parse_failure(["No importer registered for op: DFT"], variant="native-dft", onnx_path="m.onnx",
                             trt_version="10.8.0")
    assert "11.2" in str(dft)


# --- the parity decision -----------------------------------------------------------------------


def test_parity_tolerates_a_flip_between_near_tied_logits():
    ref = np.array([[1.0, 0.99999, -3.0], [5.0, 1.0, 0.0]])
    got = ref.copy()
    got[0, :2] = [0.99999, 1.0]  # swapped: margin 1e-5 <= 2 * 1e-4 * 5
    r = trtb.parity_decision(ref, got, 1e-4)
    assert r.ok and r.near_ties == 1 and r.top1_checked == 1 and r.top1_mismatches == 0


def test_parity_rejects_a_decisive_flip_large_errors_and_non_finite_outputs():
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 0.5, 4.0]])
    flipped = ref.copy()
    flipped[0] = [1.0, 3.0, 0.0]
    r = trtb.parity_decision(ref, flipped, 1.0)  # huge tolerance: the diff passes, the flip cannot
    assert not trtb.parity_decision(ref, flipped, 1e-4).ok
    assert r.top1_checked == 0 or not r.ok
    assert not trtb.parity_decision(ref, ref + 1e-2, 1e-4).ok
    assert trtb.parity_decision(ref, ref + 1e-5, 1e-4).ok
    nan = ref.copy()
    nan[1, 1] = np.nan
    bad = trtb.parity_decision(ref, nan, 1e-4)
    assert not bad.ok and not bad.finite and "NON-FINITE" in bad.summary()
    with pytest.raises(ValueError, match="shape"):
        trtb.parity_decision(ref, ref[:1], 1e-4)


# --- fakes: TensorRT and Polygraphy's CUDA buffers -------------------------------------------------


class FakeCuda:
    """polygraphy.cuda stand-in: device arrays are numpy arrays in a table keyed by 'pointer'."""

    def __init__(self, devices: int = 1):
        self.memory: dict[int, np.ndarray] = {}
        self.devices = devices
        cuda = self

        class Runtime:
            def cudaGetDeviceCount(self, ref):  # noqa: N802  (CUDA's name)
                ref._obj.value = cuda.devices
                return 0 if cuda.devices else 100

            def __getattr__(self, name):  # cudaEvent*, cudaStreamSynchronize: succeed, 1 ms
                def call(*args):
                    if name == "cudaEventElapsedTime":
                        args[0]._obj.value = 1.0
                    return 0
                return call

        class Wrapper:
            handle = Runtime()

        self._wrapper = Wrapper()

        class Stream:
            ptr = 0xBEEF

            def synchronize(self):
                pass

            def free(self):
                pass

        class DeviceArray:
            _next = [0x1000]

            def __init__(self, shape=None, dtype=None):
                self.dtype_ = np.dtype(dtype)
                self.ptr = DeviceArray._next[0]
                DeviceArray._next[0] += 0x1000
                self.resize(shape or (0,))

            def resize(self, shape):
                self.shape = tuple(shape)
                cuda.memory[self.ptr] = np.zeros(self.shape, self.dtype_)
                return self

            def copy_from(self, host, stream=None):
                assert host.dtype == self.dtype_, f"host {host.dtype} vs device {self.dtype_}"
                cuda.memory[self.ptr][...] = host.reshape(self.shape)

            def copy_to(self, host, stream=None):
                host[...] = cuda.memory[self.ptr]
                return host

            def free(self):
                cuda.memory.pop(self.ptr, None)

        self.Stream = Stream
        self.DeviceArray = DeviceArray

    def wrapper(self):
        return self._wrapper


def _enum(**members):
    class Member(int):
        def __str__(self):
            return f"Enum.{self.name}"

    ns = SimpleNamespace()
    for i, name in enumerate(members or {}):
        m = Member(members[name] if members[name] is not None else i)
        m.name = name
        setattr(ns, name, m)
    return ns


def make_fake_trt(reference_onnx: Path | None = None, *, version: str = "10.3.0", fp16_flag: bool = True,
                  plugin_registered: bool = True, io_fp16: bool = False, perturb: float = 0.0,
                  execute_ok: bool = True, shape_ok: bool = True, cuda: FakeCuda | None = None):
    """A ``tensorrt`` stand-in. Its parser imports an FFTConv node as a PLUGIN_V3 layer only
    when no local function of that name exists and the plugin is registered (TensorRT
    10.0-10.6: a function is inlined in preference). Its engine runs ``reference_onnx``
    through ONNX Runtime (+ ``perturb``) on the bytes in the fake device memory."""
    log = SimpleNamespace(flags_set=[], flags_cleared=[], network_flags=None, profile=None, parsed=None)
    builder_flags = {"TF32": 7}
    if fp16_flag:
        builder_flags["FP16"] = 0
    BuilderFlag = _enum(**builder_flags)
    LayerType = _enum(PLUGIN_V3=None, MATRIX_MULTIPLY=None, POOLING=None)
    DataType = _enum(FLOAT=None, HALF=None)

    class Layer:
        def __init__(self, name, kind):
            self.name, self.type = name, kind

    class Network:
        def __init__(self):
            self.layers = []

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class Parser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data):
            model = onnx.ModelProto.FromString(data)
            log.parsed = model
            functions = {f.name for f in model.functions}
            for node in model.graph.node:
                if node.domain == "hyena" and node.op_type in functions:
                    self.network.layers += [Layer(f"{node.name}/body{i}", LayerType.MATRIX_MULTIPLY) for i in range(3)]
                elif node.domain == "hyena":
                    if not plugin_registered:
                        self.errors.append(f"In node 0 with name: {node.name} and operator: {node.op_type}: "
                                           "Plugin not found, are the plugin name, version, and namespace correct?")
                        return False
                    self.network.layers.append(Layer(node.name, LayerType.PLUGIN_V3))
                else:
                    self.network.layers.append(Layer(node.name, LayerType.POOLING))
            return True

    class Config:
        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            log.flags_set.append(flag.name)

        def clear_flag(self, flag):
            log.flags_cleared.append(flag.name)

        def add_optimization_profile(self, profile):
            log.profile = profile.shapes

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            assert name == INPUT_NAME
            self.shapes = (lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log.network_flags = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"fake-plan"

    class Context:
        def __init__(self):
            self.shapes, self.addresses = {}, {}
            import onnxruntime as ort

            self.session = ort.InferenceSession(str(reference_onnx)) if reference_onnx else None

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape
            return shape_ok

        def get_tensor_shape(self, name):
            return (self.shapes[INPUT_NAME][0], NUM_CLASSES)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream):
            if not execute_ok:
                return False
            x = cuda.memory[self.addresses[INPUT_NAME]]
            feed_type = self.session.get_inputs()[0].type
            feed = x.astype(np.float16 if feed_type == "tensor(float16)" else np.float32)
            y = self.session.run(None, {INPUT_NAME: feed})[0].astype(np.float32) + perturb
            out = cuda.memory[self.addresses[OUTPUT_NAME]]
            out[...] = y.astype(out.dtype)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return (INPUT_NAME, OUTPUT_NAME)[i]

        def get_tensor_dtype(self, name):
            return DataType.HALF if io_fp16 else DataType.FLOAT

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine() if plan == b"fake-plan" else None

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    registry = SimpleNamespace(get_creator=lambda name, version, ns: object() if plugin_registered else None)
    trt = SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=Parser, Runtime=Runtime,
        BuilderFlag=BuilderFlag, LayerType=LayerType, DataType=DataType,
        NetworkDefinitionCreationFlag=_enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1),
        MemoryPoolType=SimpleNamespace(WORKSPACE=0), PluginCapabilityType=SimpleNamespace(CORE=0),
        get_plugin_registry=lambda: registry,
    )
    trt.log = log
    return trt


@pytest.fixture()
def tiny_onnx(tmp_path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save_model(_tiny_classifier(), str(path))
    return path


@pytest.fixture()
def tiny_onnx_fp16(tmp_path) -> Path:
    path = tmp_path / "tiny_fp16.onnx"
    onnx.save_model(_tiny_classifier(fp16=True), str(path))
    return path


@pytest.fixture()
def fake_plugin(tmp_path, monkeypatch) -> Path:
    """A plugin 'library' whose load is faked (the fake registry then has the creator)."""
    lib = tmp_path / "libhyena_fftconv_plugin.so"
    lib.write_bytes(b"\x7fELF stand-in")
    monkeypatch.setattr(trtb, "load_plugin", lambda path, trt: trt.get_plugin_registry())
    return lib


# --- require_cuda, run_engine and build_engine with fakes ----------------------------------------


def test_require_cuda_needs_no_torch_and_reports_no_gpu():
    trtb.require_cuda(FakeCuda(devices=1))
    with pytest.raises(trtb.TensorRTUnavailable, match="no usable CUDA GPU"):
        trtb.require_cuda(FakeCuda(devices=0))
    # Everything the plan build touches in the Triton image (which has no torch) imports without it.
    code = ("import runpy, sys; import hyena_serve.exporting.tensorrt_build, hyena_serve.model_repo, "
            "hyena_serve.manifest, hyena_serve.artifact, bench.tensorrt_engines; "
            f"m = runpy.run_path({str(SCRIPT)!r}, run_name='to_trt'); m['_parser']().parse_args(['--onnx', 'x']); "
            "assert 'torch' not in sys.modules, 'the TensorRT path imports torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_run_engine_checks_set_input_shape_and_execute(tiny_onnx):
    cuda = FakeCuda()
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(trtb.EngineError, match="refused input shape"):
        trtb.run_engine(b"fake-plan", x, trt=make_fake_trt(tiny_onnx, shape_ok=False, cuda=cuda), cuda=cuda)
    with pytest.raises(trtb.EngineError, match="execute_async_v3 failed"):
        trtb.run_engine(b"fake-plan", x, trt=make_fake_trt(tiny_onnx, execute_ok=False, cuda=cuda), cuda=cuda)
    with pytest.raises(trtb.EngineError, match="deserialize"):
        trtb.run_engine(b"other", x, trt=make_fake_trt(tiny_onnx, cuda=cuda), cuda=cuda)


def test_run_engine_handles_fp16_io_engines(tiny_onnx_fp16):
    import onnxruntime as ort

    cuda = FakeCuda()
    trt = make_fake_trt(tiny_onnx_fp16, io_fp16=True, cuda=cuda)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    got = trtb.run_engine(b"fake-plan", x, trt=trt, cuda=cuda)  # the fake asserts the fp16 host copy
    assert got.dtype == np.float32 and got.shape == (3, NUM_CLASSES)
    want = ort.InferenceSession(str(tiny_onnx_fp16)).run(None, {INPUT_NAME: x.astype(np.float16)})[0]
    np.testing.assert_allclose(got, want.astype(np.float32))


def test_build_engine_plugin_variant_on_a_parser_that_prefers_functions(tiny_onnx, fake_plugin):
    # The fake parser behaves like TensorRT 10.0-10.6. With the function bodies left in the
    # graph (the old prepare_onnx) it inlined them and no plugin layer appeared.
    cuda = FakeCuda()
    trt = make_fake_trt(tiny_onnx, version="10.3.0", cuda=cuda)
    plan = trtb.build_engine(tiny_onnx, variant="plugin", res=8, batch=trtb.BatchProfile(1, 2, 4),
                             plugin_lib=fake_plugin, log=lambda m: None, trt=trt, cuda=cuda)
    assert plan == b"fake-plan"
    assert [f.name for f in trt.log.parsed.functions] == []
    assert trt.log.flags_cleared == ["TF32"] and trt.log.flags_set == [], "fp32: TF32 off"
    assert trt.log.profile == ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))


def test_build_engine_names_the_cause_when_the_plugin_is_not_registered(tiny_onnx, fake_plugin):
    cuda = FakeCuda()
    trt = make_fake_trt(tiny_onnx, plugin_registered=False, cuda=cuda)
    with pytest.raises(trtb.PluginLayersMissing, match="not registered"):
        trtb.build_engine(tiny_onnx, variant="plugin", res=8, batch=trtb.BatchProfile(1, 1, 1),
                          plugin_lib=fake_plugin, log=lambda m: None, trt=trt, cuda=cuda)


@pytest.fixture()
def spectral_onnx(tmp_path) -> Path:
    path = tmp_path / "spectral.onnx"
    onnx.save_model(_spectral_model(), str(path))
    return path


def test_build_engine_counts_the_spectral_plugin_layers(spectral_onnx, fake_plugin):
    cuda = FakeCuda()
    trt = make_fake_trt(spectral_onnx, cuda=cuda)
    messages: list[str] = []
    plan = trtb.build_engine(spectral_onnx, variant="plugin", res=8, batch=trtb.BatchProfile(1, 1, 2),
                             plugin_lib=fake_plugin, log=messages.append, trt=trt, cuda=cuda)
    assert plan == b"fake-plan"
    assert [f.name for f in trt.log.parsed.functions] == ["Helper"]
    (line,) = [m for m in messages if "plugin layers" in m]
    assert "1 FFTConv plugin layers (hyena::FFTConv/1)" in line
    assert "1 RFFT2 plugin layers (hyena::RFFT2/1)" in line and "1 IRFFT2 plugin layers (hyena::IRFFT2/1)" in line


def test_build_engine_names_the_spectral_op_when_its_plugin_is_missing(tmp_path, fake_plugin):
    path = tmp_path / "spectral_only.onnx"
    onnx.save_model(_spectral_model(with_fftconv=False), str(path))
    cuda = FakeCuda()
    trt = make_fake_trt(path, plugin_registered=False, cuda=cuda)
    with pytest.raises(trtb.PluginLayersMissing, match=r"hyena::RFFT2/1.*not registered"):
        trtb.build_engine(path, variant="plugin", res=8, batch=trtb.BatchProfile(1, 1, 1),
                          plugin_lib=fake_plugin, log=lambda m: None, trt=trt, cuda=cuda)


def test_build_engine_fp16_by_capability(tiny_onnx, tiny_onnx_fp16, fake_plugin):
    cuda = FakeCuda()
    quiet = lambda m: None  # noqa: E731
    batch = trtb.BatchProfile(1, 1, 2)
    trt10 = make_fake_trt(tiny_onnx, version="10.8.0", fp16_flag=True, cuda=cuda)
    trtb.build_engine(tiny_onnx, variant="gemm", res=8, batch=batch, fp16=True, log=quiet, trt=trt10, cuda=cuda)
    assert trt10.log.flags_set == ["FP16"] and trt10.log.network_flags == 0
    trt11 = make_fake_trt(tiny_onnx_fp16, version="11.4.0", fp16_flag=False, cuda=cuda)
    trtb.build_engine(tiny_onnx_fp16, variant="plugin", res=8, batch=batch, fp16=True, plugin_lib=fake_plugin,
                      log=quiet, trt=trt11, cuda=cuda)
    assert trt11.log.flags_set == [] and trt11.log.network_flags == 1 << 1
    assert trt11.log.parsed.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT, "float32 engine I/O"
    with pytest.raises(ValueError, match="fp16-I/O export"):
        trtb.build_engine(tiny_onnx, variant="gemm", res=8, batch=batch, fp16=True, log=quiet,
                          trt=make_fake_trt(tiny_onnx, version="11.4.0", fp16_flag=False, cuda=cuda), cuda=cuda)


# --- to_trt end to end (fake TensorRT) -----------------------------------------------------------


def _install_fakes(monkeypatch, trt, cuda):
    monkeypatch.setattr(trtb, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trtb, "import_cuda", lambda: cuda)


def _with_manifest(onnx_path: Path, model: str = "tiny", res: int = 8, precision: str = "fp32") -> Path:
    """Write the manifest an export carries beside ``onnx_path``."""
    from hyena_serve.files import sha256_file
    from hyena_serve.manifest import Manifest, OnnxInfo, WeightsInfo, manifest_path_for, write_manifest
    from hyena_serve.preprocess import Preprocessing

    manifest = Manifest(model=model, resolution=res, num_classes=NUM_CLASSES,
                        preprocess=Preprocessing().at_resolution(res), weights=WeightsInfo("random", seed=0),
                        pretrained=False,
                        onnx=OnnxInfo(file=onnx_path.name, sha256=sha256_file(onnx_path), opset=20,
                                      precision=precision))
    return write_manifest(manifest_path_for(onnx_path), manifest)


def _to_trt_args(tmp_path, onnx_path, *extra):
    return ["--onnx", str(onnx_path), "--repository", str(tmp_path / "repo"), "--batch", "1:2:4", "--quiet", *extra]


def test_to_trt_writes_plan_and_config_after_the_parity_gate(tmp_path, tiny_onnx, fake_plugin, monkeypatch, capsys):
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(tiny_onnx, cuda=cuda), cuda)
    _with_manifest(tiny_onnx)
    to_trt = _load_to_trt()
    rc = to_trt.main(_to_trt_args(tmp_path, tiny_onnx, "--plugin-lib", str(fake_plugin)))
    assert rc == 0, capsys.readouterr().err
    entry = tmp_path / "repo" / "tiny_trt"
    assert (entry / "1" / "model.plan").read_bytes() == b"fake-plan"
    config = (entry / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and f"dims: [ {NUM_CLASSES} ]" in config
    assert "dims: [ 3, 8, 8 ]" in config and "TYPE_FP32" in config
    assert "hyena_manifest" in config, "the gateway reads the manifest from the config"


def test_to_trt_without_a_manifest_writes_only_with_out(tmp_path, tiny_onnx, fake_plugin, monkeypatch, capsys):
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(tiny_onnx, cuda=cuda), cuda)
    to_trt = _load_to_trt()
    rc = to_trt.main(_to_trt_args(tmp_path, tiny_onnx, "--plugin-lib", str(fake_plugin), "--res", "8"))
    assert rc == 2 and "pass --out" in capsys.readouterr().err
    out = tmp_path / "plan" / "m.plan"
    rc = to_trt.main(_to_trt_args(tmp_path, tiny_onnx, "--plugin-lib", str(fake_plugin), "--res", "8",
                                  "--out", str(out)))
    assert rc == 0 and out.read_bytes() == b"fake-plan"


def test_to_trt_parity_gate_refuses_a_wrong_engine(tmp_path, tiny_onnx, fake_plugin, monkeypatch, capsys):
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(tiny_onnx, perturb=0.5, cuda=cuda), cuda)
    _with_manifest(tiny_onnx)
    rc = _load_to_trt().main(_to_trt_args(tmp_path, tiny_onnx, "--plugin-lib", str(fake_plugin)))
    err = capsys.readouterr().err
    assert rc == 4 and "disagrees with ONNX Runtime" in err and "nothing written" in err
    assert not (tmp_path / "repo").exists()


def test_to_trt_fp16_on_tensorrt11_builds_instead_of_exiting_3(tmp_path, tiny_onnx, tiny_onnx_fp16, fake_plugin,
                                                              monkeypatch, capsys):
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(tiny_onnx_fp16, version="11.4.0", fp16_flag=False, cuda=cuda), cuda)
    _with_manifest(tiny_onnx)
    _with_manifest(tiny_onnx_fp16, precision="fp16")
    to_trt = _load_to_trt()
    out = tmp_path / "m.plan"
    rc = to_trt.main(_to_trt_args(tmp_path, tiny_onnx, "--fp16", "--onnx-fp16", str(tiny_onnx_fp16),
                                  "--plugin-lib", str(fake_plugin), "--out", str(out)))
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes() == b"fake-plan"
    # Without the fp16 export: a clear argument error (2), never "cannot build here" (3).
    rc = to_trt.main(_to_trt_args(tmp_path, tiny_onnx, "--fp16", "--plugin-lib", str(fake_plugin), "--out", str(out)))
    err = capsys.readouterr().err
    assert rc == 2 and "fp16-I/O export" in err


def test_to_trt_large_minimum_batch_is_not_a_traceback(tmp_path, tiny_onnx, fake_plugin, monkeypatch, capsys):
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(tiny_onnx, cuda=cuda), cuda)
    _with_manifest(tiny_onnx)
    args = _to_trt_args(tmp_path, tiny_onnx, "--plugin-lib", str(fake_plugin))
    args[args.index("1:2:4")] = "6:6:8"
    rc = _load_to_trt().main(args)
    assert rc == 0, capsys.readouterr().err


def test_to_trt_bad_batch_is_one_line(tmp_path, tiny_onnx, capsys):
    rc = _load_to_trt().main(_to_trt_args(tmp_path, tiny_onnx)[:-3] + ["--batch", "8:4:2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "batch profile" in err


def test_to_trt_reuses_the_cached_export_of_the_same_model(tmp_path, fake_plugin, monkeypatch, capsys):
    # The old to_trt re-exported on every run. A cached artifact of the same model,
    # resolution, weights, body and precision must be used as it is (no torch, no export).
    from hyena_serve import artifact as artifacts

    spec = artifacts.ModelSpec.of("hpx_former_s4", 16, "random", 0, {"num_classes": NUM_CLASSES})
    planned = artifacts.plan_manifest(spec)
    path = tmp_path / "artifacts" / "onnx" / f"{artifacts.artifact_name(planned, 'matmul', 'fp32')}.onnx"
    path.parent.mkdir(parents=True)
    onnx.save_model(_tiny_classifier(res=16), str(path))
    from hyena_serve.contract import FFTCONV_LOWERING_VERSION
    from hyena_serve.files import sha256_file
    from hyena_serve.manifest import OnnxInfo, manifest_path_for, write_manifest

    write_manifest(manifest_path_for(path), planned.with_onnx(OnnxInfo(file=path.name, sha256=sha256_file(path),
                                                                        opset=20, lowering=FFTCONV_LOWERING_VERSION)))

    def no_export(*a, **k):
        raise AssertionError("re-exported although a cached export exists")

    monkeypatch.setattr(artifacts, "_export", no_export)
    cuda = FakeCuda()
    _install_fakes(monkeypatch, make_fake_trt(path, cuda=cuda), cuda)
    rc = _load_to_trt().main([
        "--model", "hpx_former_s4", "--res", "16", "--weights", "random", "--seed", "0",
        "--model-kwargs", f'{{"num_classes": {NUM_CLASSES}}}', "--artifacts-dir", str(tmp_path / "artifacts"),
        "--repository", str(tmp_path / "repo"), "--batch", "1:2:4", "--plugin-lib", str(fake_plugin)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "reusing the export" in err
    assert (tmp_path / "repo" / "hpx_former_s4_trt" / "1" / "model.plan").is_file()


#: The models whose mixers are hyena custom ops other than the linear FFTConv: GFNet's global
#: filter (FFTConv 2d_circular) and AFF (RFFT2 -> mask -> IRFFT2); the GPU test builds them too.
SPECTRAL_MODELS = {"gf_former_s4": ("FFTConv",), "aff_former_s4": ("IRFFT2", "RFFT2")}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SPECTRAL_MODELS))
def test_to_trt_end_to_end_on_the_spectral_mixer_models(tmp_path, fake_plugin, monkeypatch, capsys, model):
    # The real export of the model, then to_trt against the fake TensorRT (10.0-10.6 parser:
    # functions inlined in preference), whose engine runs the same file through ONNX Runtime.
    pytest.importorskip("torch")
    to_trt = _load_to_trt()
    args = ["--model", model, "--res", "32", "--weights", "random", "--seed", "0",
            "--model-kwargs", f'{{"dims": [8, 16, 16, 16], "num_classes": {NUM_CLASSES}}}',
            "--artifacts-dir", str(tmp_path / "artifacts"), "--repository", str(tmp_path / "repo"),
            "--batch", "1:4:8", "--plugin-lib", str(fake_plugin)]

    def no_tensorrt():
        raise trtb.TensorRTUnavailable("no TensorRT in this step")

    monkeypatch.setattr(trtb, "import_tensorrt", no_tensorrt)
    assert to_trt.main(args) == 3, capsys.readouterr().err  # exported, then "cannot build here"
    (path,) = (tmp_path / "artifacts" / "onnx").glob("*_matmul_fp32.onnx")
    capsys.readouterr()
    cuda = FakeCuda()
    trt = make_fake_trt(path, cuda=cuda)
    _install_fakes(monkeypatch, trt, cuda)
    rc = to_trt.main(args)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "reusing the export" in err and "parity vs ONNX Runtime" in err
    nodes = trtb.custom_op_nodes(trt.log.parsed)
    assert sorted(set(nodes.values())) == list(SPECTRAL_MODELS[model]), nodes
    assert len(nodes) == 4 * len(SPECTRAL_MODELS[model]), "one mixer per stage, each with its op(s)"
    assert not [f.name for f in trt.log.parsed.functions if f.domain == "hyena"], "the parser must take the plugins"
    (line,) = [m for m in err.splitlines() if "plugin layers" in m]
    for op in SPECTRAL_MODELS[model]:
        assert f"4 {op} plugin layers ({trtb.plugin_id(op)})" in line, line
    assert (tmp_path / "repo" / f"{model}_trt" / "1" / "model.plan").read_bytes() == b"fake-plan"


def test_missing_plugin_library_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(trtb.PLUGIN_LIB_ENV, raising=False)
    missing = tmp_path / "libnope.so"
    with pytest.raises(trtb.TensorRTUnavailable, match=str(missing)):
        trtb.find_plugin_library(missing)


class MockRegistry:
    """``trt.get_plugin_registry()`` with creators for ``names`` (in the hyena namespace,
    version 1); records each ``get_creator`` query."""

    def __init__(self, names):
        self.names, self.queries = set(names), []

    def get_creator(self, name, version, namespace):
        self.queries.append((name, version, namespace))
        return object() if (name in self.names and version == PLUGIN_VERSION
                            and namespace == PLUGIN_NAMESPACE) else None


def _loadable_library() -> Path:
    """A shared library that really loads (the C library), standing in for the plugin file."""
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no C shared library found to stand in for the plugin library")
    return Path(name)


def test_load_plugin_accepts_a_library_registering_all_three_creators():
    registry = MockRegistry(["FFTConv", "RFFT2", "IRFFT2"])
    trtb.load_plugin(_loadable_library(), SimpleNamespace(__version__="10.8.0", get_plugin_registry=lambda: registry))
    assert sorted(registry.queries) == sorted((n, PLUGIN_VERSION, PLUGIN_NAMESPACE)
                                              for n in ("FFTConv", "RFFT2", "IRFFT2"))


@pytest.mark.parametrize("registered", [["RFFT2", "IRFFT2"], ["FFTConv", "IRFFT2"], ["FFTConv", "RFFT2"],
                                        ["FFTConv"]], ids=["no-FFTConv", "no-RFFT2", "no-IRFFT2", "FFTConv-only"])
def test_load_plugin_names_each_missing_creator(registered):
    # An FFTConv-only library (a build older than the spectral plugins) used to pass this check
    # and fail later in the parser on the first RFFT2 node.
    trt = SimpleNamespace(__version__="10.8.0", get_plugin_registry=lambda: MockRegistry(registered))
    with pytest.raises(trtb.TensorRTUnavailable) as exc:
        trtb.load_plugin(_loadable_library(), trt)
    message = str(exc.value)
    missing = [n for n in ("FFTConv", "RFFT2", "IRFFT2") if n not in registered]
    for name in ("FFTConv", "RFFT2", "IRFFT2"):
        assert (f"hyena::{name}/1" in message) == (name in missing), message
    assert "older than that op" in message and "10.8.0" in message


def test_load_plugin_with_no_creator_at_all_suspects_the_tensorrt_version():
    trt = SimpleNamespace(__version__="11.1.0", get_plugin_registry=lambda: MockRegistry([]))
    with pytest.raises(trtb.TensorRTUnavailable,
                       match=r"hyena::FFTConv/1, hyena::RFFT2/1, hyena::IRFFT2/1 .*11\.1\.0.*another TensorRT"):
        trtb.load_plugin(_loadable_library(), trt)


def test_load_plugin_reports_a_library_that_does_not_load(tmp_path):
    broken = tmp_path / "libhyena_fftconv_plugin.so"
    broken.write_bytes(b"not an ELF file")
    trt = SimpleNamespace(get_plugin_registry=lambda: pytest.fail("the registry is asked only after a load"))
    with pytest.raises(trtb.TensorRTUnavailable, match="cannot load plugin library"):
        trtb.load_plugin(broken, trt)


def test_numpy_dtype_of_engine_io():
    dt = _enum(FLOAT=None, HALF=None, INT8=None)
    assert trtb.numpy_dtype(dt.FLOAT) == np.float32 and trtb.numpy_dtype(dt.HALF) == np.float16
    with pytest.raises(trtb.EngineError, match="INT8"):
        trtb.numpy_dtype(dt.INT8)


def test_write_atomically_leaves_a_readable_file_and_no_temporaries(tmp_path):
    from hyena_serve.files import write_bytes_atomically

    target = tmp_path / "m" / "1" / "model.plan"
    write_bytes_atomically(target, b"plan-bytes")
    assert target.read_bytes() == b"plan-bytes"
    assert os.stat(target).st_mode & 0o044, "the artifact must be readable by the serving user"
    assert [p.name for p in target.parent.iterdir()] == ["model.plan"]


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--model", "--weights", "--seed", "--res", "--fp16", "--tf32", "--batch", "--plugin-lib",
                   "--workspace", "--out", "--fftconv", "native-dft", "gemm", "--onnx", "--artifacts-dir",
                   "--repository", "--quiet"):
        assert option in out


def test_without_tensorrt_an_existing_onnx_gives_one_line_and_status_3_without_torch(tmp_path, tiny_onnx):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: the no-TensorRT path cannot be observed")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['to_trt.py'] + {_to_trt_args(tmp_path, tiny_onnx)!r}\n"
        "try:\n    runpy.run_path(sys.argv[0] if False else %r, run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
        "sys.exit(code)\n"
    ) % str(SCRIPT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "torch imported: False" in proc.stdout, "the TensorRT path must not need torch"
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "TensorRT" in error_lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "repo").exists(), "no plan or config may be written without an engine"


@pytest.mark.slow
def test_without_tensorrt_the_export_is_written_and_reused(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: the no-TensorRT path cannot be observed")
    cmd = [sys.executable, str(SCRIPT), "--model", "hpx_former_s4", "--res", "32", "--weights", "random",
           "--model-kwargs", '{"dims": [8, 16, 16, 16]}', "--artifacts-dir",
           str(tmp_path / "artifacts"), "--repository", str(tmp_path / "repo")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 3, proc.stderr
    exports = sorted((tmp_path / "artifacts").rglob("*.onnx"))
    assert exports, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "TensorRT" in error_lines[0] and "Traceback" not in proc.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 3 and "reusing" in again.stderr, again.stderr
    assert not (tmp_path / "repo").exists()


# --- bench/tensorrt_engines.py: its verdict and its timer -----------------------------------------


def test_bench_verdict_fails_without_a_checked_plugin_engine():
    from bench import tensorrt_engines as bench

    assert bench.verdict({}, {"plugin", "gemm"}) is None
    assert "missing" in bench.verdict({}, {"gemm", "native-dft"}), "other engines alone never pass"
    assert "missing" in bench.verdict({}, set()), "torch rows alone never pass"
    assert "wrong" in bench.verdict({"plugin": "check: ..."}, {"gemm"})
    assert bench.exit_status({"skipped": "no TensorRT"}) == bench.EXIT_UNAVAILABLE
    assert bench.exit_status({"error": "x", "rows": []}) == bench.EXIT_FAILED
    assert bench.exit_status({"rows": []}) == 0


def test_bench_cuda_event_timer_checks_every_call():
    from bench import tensorrt_engines as bench

    calls = []

    class Runtime:
        def __getattr__(self, name):
            def fn(*args):
                calls.append(name)
                if name == "cudaEventElapsedTime":
                    args[0]._obj.value = 2.0
                return 0
            return fn

    cuda = SimpleNamespace(wrapper=lambda: SimpleNamespace(handle=Runtime()))
    timer = bench.CudaEvents(cuda)
    launches = []
    stats = timer.time(lambda: launches.append(1), 0x10, reps=3, warmup=2)
    assert len(launches) == 5 and stats.n == 3 and stats.median_ms == pytest.approx(2.0)
    assert calls.count("cudaEventRecord") == 6

    class Failing(Runtime):
        def __getattr__(self, name):
            return (lambda *a: 700) if name == "cudaEventSynchronize" else super().__getattr__(name)

    broken = bench.CudaEvents(SimpleNamespace(wrapper=lambda: SimpleNamespace(handle=Failing())))
    with pytest.raises(RuntimeError, match="cudaEventSynchronize failed with CUDA error 700"):
        broken.time(lambda: None, 0x10, reps=1, warmup=0)


def test_bench_checks_every_engine_before_timing_it_and_fails_on_a_wrong_plugin(tmp_path, fake_plugin, monkeypatch):
    from bench import tensorrt_engines as bench
    from hyena_serve import artifact as artifacts

    tiny_onnx = tmp_path / "tiny16.onnx"
    onnx.save_model(_tiny_classifier(res=16), str(tiny_onnx))
    art = SimpleNamespace(onnx_path=tiny_onnx)
    monkeypatch.setattr(artifacts, "build_artifact", lambda *a, **k: art)
    monkeypatch.setenv(trtb.PLUGIN_LIB_ENV, str(fake_plugin))
    quiet = lambda m: None  # noqa: E731

    def bench_run(trt, cuda):
        _install_fakes(monkeypatch, trt, cuda)
        return bench.run("tiny", 16, [1, 2], False, None, 3, tmp_path, with_torch=False, log=quiet)

    cuda = FakeCuda()
    good = bench_run(make_fake_trt(tiny_onnx, version="11.4.0", cuda=cuda), cuda)
    assert "error" not in good and bench.exit_status(good) == 0, good.get("engine_errors")
    for row in good["rows"]:
        assert {"trt_plugin", "trt_gemm", "trt_native-dft"} <= set(row["stats"]) and row["time_vs_plugin"]
        assert all("top-1" in c for c in row["checks"].values())

    cuda = FakeCuda()
    wrong = bench_run(make_fake_trt(tiny_onnx, version="11.4.0", perturb=0.5, cuda=cuda), cuda)
    assert bench.exit_status(wrong) == bench.EXIT_FAILED and "plugin" in wrong["error"]
    assert all(not row["stats"] for row in wrong["rows"]), "an engine that disagrees is never timed"

    cuda = FakeCuda()
    old = bench_run(make_fake_trt(tiny_onnx, version="10.8.0", cuda=cuda), cuda)
    assert "native-dft" in old["engine_skipped"] and bench.exit_status(old) == 0

    monkeypatch.setattr(trtb, "import_tensorrt", lambda: (_ for _ in ()).throw(trtb.TensorRTUnavailable("none")))
    missing = bench.run("tiny", 16, [1], False, None, 3, tmp_path, with_torch=False, log=quiet)
    assert bench.exit_status(missing) == bench.EXIT_UNAVAILABLE and missing["skipped"] == "none"
