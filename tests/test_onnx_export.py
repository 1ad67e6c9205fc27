"""Model-level ONNX export: structure, parity with torch on ORT, CLI behaviour.

Models are built small (depths 1,1,1,1, dims 32..128, 10 classes) at 64×64 so a whole
export takes seconds; the per-variant sweep is marked slow. Parity criterion (issue #3):
max |logit diff| ≤ 1e-4 × max |torch logit|, identical top-1 (ties within the tolerance
reported by the parity module).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from hyena_serve.contract import INPUT_NAME, ONNX_OP_DOMAIN, ONNX_OP_TYPE, OUTPUT_NAME  # noqa: E402
from hyena_serve.exporting import fftconv_onnx  # noqa: E402
from hyena_serve.exporting.onnx_export import ExportError, export_onnx  # noqa: E402
from hyena_serve.exporting.parity import ParityError, check_parity  # noqa: E402
from hyena_serve.models import create_model, list_models  # noqa: E402
from hyena_serve.models.frozen import hyena_plans  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RES = 64
SMALL = dict(depths=(1, 1, 1, 1), dims=(32, 64, 96, 128), num_classes=10)


def small_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, img_size=RES, **SMALL).eval()


def _export(name, tmp_path, **kw):
    model = small_model(name)
    path = export_onnx(model, RES, tmp_path / f"{name}.onnx", progress=False, **kw).path
    return model, path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """hpx and hb small models exported once (matmul body, parity checked)."""
    out = {}
    tmp = tmp_path_factory.mktemp("onnx")
    for name in ("hpx_former_s18", "hb_former_s18"):
        out[name] = _export(name, tmp)
    return out


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18"])
def test_structure(exported, name):
    model, path = exported[name]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    nodes = [n for n in proto.graph.node if (n.op_type, n.domain) == (ONNX_OP_TYPE, ONNX_OP_DOMAIN)]
    infos = hyena_plans(model, RES)
    assert len(nodes) == len(infos) == 4  # one per Hyena mixer
    for node, info in zip(nodes, infos):
        assert list(node.input)[1:] != [] and len(node.input) == 3
        attrs = {a.name for a in node.attribute}
        assert {"mode", "kernel_size", "fft_size", "spatial_size", "plugin_namespace", "plugin_version"} <= attrs
        assert fftconv_onnx.node_plan(node) == info.plan
    fns = {f.overload for f in proto.functions if (f.domain, f.name) == (ONNX_OP_DOMAIN, ONNX_OP_TYPE)}
    assert {n.overload for n in nodes} <= fns
    # no filter-network weights: names, and no initializer shaped like a positional embedding
    init = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    filter_params = {n for n, _ in model.named_parameters() if ".filter" in n or "pos_emb" in n or "long_conv" in n}
    assert filter_params, "test must see the filter parameters"
    assert not (filter_params & set(init))
    kf_names = {n.input[1] for n in nodes}
    assert all(len(init[k]) in (3, 4) and init[k][-1] == 2 for k in kf_names)
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")


@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18"])
@pytest.mark.parametrize("batch", [1, 5])
def test_batches_match_torch(exported, name, batch):
    model, path = exported[name]
    x = np.random.default_rng(batch).standard_normal((batch, 3, RES, RES)).astype(np.float32)
    (y,) = _session(path).run([OUTPUT_NAME], {INPUT_NAME: x})
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert y.shape == (batch, 10)
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (y.argmax(-1) == ref.argmax(-1)).all()


def test_parity_report_on_real_images(exported):
    model, path = exported["hpx_former_s18"]
    report = check_parity(model, path, model.pretrained_cfg.preprocess, res=RES)
    assert report.batches[0]["name"] == "skimage" and report.batches[0]["n"] == 4
    assert report.max_rel_diff <= 1e-4 and report.top1_agreement == 1.0


def test_parity_error_is_raised_for_a_wrong_model(exported, tmp_path):
    model, path = exported["hpx_former_s18"]
    other = small_model("hpx_former_s18")
    with torch.no_grad():
        for p in other.head.parameters():
            p.add_(0.5)
    with pytest.raises(ParityError, match="disagrees with torch"):
        check_parity(other, path, other.pretrained_cfg.preprocess, res=RES)


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    import hyena_serve.exporting.onnx_export as ox

    def broken(*a, **k):
        raise ParityError("forced failure")

    monkeypatch.setattr("hyena_serve.exporting.parity.check_parity", broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError):
        ox.export_onnx(small_model("hpx_former_s4"), RES, out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    from hyena_serve.artifact import ArtifactError, ModelSpec, build_artifact

    with pytest.raises(ArtifactError, match="unknown model"):
        build_artifact(ModelSpec.of("no_such_model", RES), tmp_path, progress=False)
    with pytest.raises(ArtifactError, match="weights not found"):
        build_artifact(ModelSpec.of("hpx_former_s4", RES, tmp_path / "none.pt"), tmp_path, progress=False)
    with pytest.raises(ArtifactError, match="unsupported resolution"):
        build_artifact(ModelSpec.of("hpx_former_s4", 8), tmp_path, progress=False)
    with pytest.raises(ArtifactError, match="unknown FFTConv body"):
        build_artifact(ModelSpec.of("hpx_former_s4", RES), tmp_path, body="fft", progress=False)
    with pytest.raises(ExportError, match="unknown body"):
        export_onnx(small_model("hpx_former_s4"), RES, tmp_path / "a.onnx", body="fft", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_dft_body_exports_and_matches(tmp_path):
    model, path = _export("hb_former_s4", tmp_path, body="dft")
    proto = onnx.load(str(path))
    assert all(f.overload.endswith("_dft") for f in proto.functions)
    assert any(n.op_type == "DFT" for f in proto.functions for n in f.node)


def test_fp16_export(tmp_path):
    """float16 I/O (Kf, D and the FFT stay float32); parity inside at 1e-2 x logit scale."""
    model, path = _export("hpx_former_s4", tmp_path, fp16=True)
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    kf = {n.input[1] for n in fftconv_onnx.fftconv_nodes(proto)}
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer if t.name in kf)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


def _cli(*args):
    return subprocess.run([sys.executable, str(REPO / "export" / "to_onnx.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def test_cli_help():
    r = _cli("--help")
    assert r.returncode == 0
    for flag in ("--model", "--weights", "--seed", "--res", "--out", "--artifacts-dir", "--fp16", "--body", "--check",
                 "--no-check", "--force"):
        assert flag in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--model", "nope", "--quiet"], "unknown model"),
    (["--weights", "/nonexistent/w.pt", "--quiet"], "weights not found"),
    (["--weights", "hf-hub:just-a-name", "--quiet"], "expected hf-hub:ORG/REPO"),
    (["--res", "7", "--quiet"], "resolution: Input should be greater than or equal to 16"),
])
def test_cli_errors_are_one_line(args, needle, tmp_path):
    r = _cli(*args, "--out", str(tmp_path / "x.onnx"))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models()])
def test_every_variant_exports_and_matches(name, tmp_path):
    model, path = _export(name, tmp_path)  # parity (skimage + random 1, 5) checked inside
    proto = onnx.load(str(path))
    nodes = fftconv_onnx.fftconv_nodes(proto)
    assert len(nodes) == len(hyena_plans(model, RES))
    onnx.checker.check_model(proto, full_check=True)
