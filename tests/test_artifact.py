"""The served-model artifact: manifest format, weights resolution from files and training
runs, artifact naming, the manifest inside config.pbtxt, and the torch-free install."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from hyena_serve.artifact import ArtifactError, ModelSpec, artifact_name, open_artifact, plan_manifest
from hyena_serve.files import atomic_write, sha256_file
from hyena_serve.manifest import (
    RUN_MANIFEST,
    Manifest,
    ManifestError,
    OnnxInfo,
    WeightsInfo,
    load_manifest,
    manifest_path_for,
    write_manifest,
)
from hyena_serve.preprocess import Preprocessing
from hyena_serve.weights import WeightsError, resolve_weights

ROOT = Path(__file__).resolve().parents[1]


def manifest(**kw) -> Manifest:
    base = dict(model="hpx_former_s4", resolution=32, num_classes=3, preprocess=Preprocessing(input_size=(3, 32, 32)),
                weights=WeightsInfo("random", seed=0), pretrained=False, labels=("cat", 'a "quoted" one', "back\\slash"),
                model_kwargs={"dims": (8, 16, 24, 32)})
    return Manifest(**{**base, **kw})


def test_manifest_round_trips_and_reads_back_equal(tmp_path):
    m = manifest(onnx=OnnxInfo("m.onnx", "ab" * 32, 20, fftconv_plans={"2d_x": "dense2d"}))
    path = write_manifest(tmp_path / "m.manifest.json", m)
    back = load_manifest(path)
    assert back == m and back.model_kwargs == {"dims": [8, 16, 24, 32]}  # JSON's form, both sides
    assert back.class_names() == ("cat", 'a "quoted" one', "back\\slash")
    assert json.loads(path.read_text())["preprocess"]["resize"] == [32, 32]


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found: .*nope.json"):
        load_manifest(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="bad.json: not a valid hyena_serve manifest"):
        load_manifest(bad)
    bad.write_text(json.dumps({**manifest().to_dict(), "schema": 99}))
    with pytest.raises(ManifestError, match="schema 99 is not supported"):
        load_manifest(bad)
    bad.write_text(json.dumps({k: v for k, v in manifest().to_dict().items() if k != "weights"}))
    with pytest.raises(ManifestError, match="missing field 'weights'"):
        load_manifest(bad)
    with pytest.raises(ValueError, match="2 labels for 3 classes"):
        manifest(labels=("a", "b"))
    with pytest.raises(ValueError, match="exactly one of sha256 and seed"):
        WeightsInfo("random")


def test_named_labels_come_from_the_package():
    m = manifest(num_classes=1000, labels="imagenet-1k")
    assert len(m.class_names()) == 1000 and m.class_names()[281] == "tabby"
    assert manifest(labels=()).class_names() == ("class_0", "class_1", "class_2")


def test_artifact_names_change_with_everything_that_changes_the_file():
    a = plan_manifest(ModelSpec.of("hpx_former_s4", 32, "random", 0, {"dims": [8, 16, 24, 32]}))
    names = {
        artifact_name(a),
        artifact_name(a, body="dft"),
        artifact_name(a, precision="fp16"),
        artifact_name(plan_manifest(ModelSpec.of("hpx_former_s4", 32, "random", 1, {"dims": [8, 16, 24, 32]}))),
        artifact_name(plan_manifest(ModelSpec.of("hpx_former_s4", 64, "random", 0, {"dims": [8, 16, 24, 32]}))),
        artifact_name(plan_manifest(ModelSpec.of("hpx_former_s4", 32, "random", 0, {"dims": [8, 16, 24, 40]}))),
    }
    assert len(names) == 6
    assert artifact_name(a) == artifact_name(plan_manifest(ModelSpec.of("hpx_former_s4", 32, "random", 0,
                                                                        {"dims": (8, 16, 24, 32)})))


def test_plan_manifest_uses_the_variant_config_without_torch_state():
    m = plan_manifest(ModelSpec.of("hpx_former_s18", None, "random"))
    assert (m.resolution, m.num_classes, m.labels, m.preprocess.interpolation) == (224, 1000, "imagenet-1k", "bicubic")
    assert plan_manifest(ModelSpec.of("hpx_former_s18_384", None, "random")).resolution == 384
    ten = plan_manifest(ModelSpec.of("hpx_former_s18", 224, "random", model_kwargs={"num_classes": 10}))
    assert ten.num_classes == 10 and ten.class_names()[3] == "class_3"  # not ImageNet's names
    with pytest.raises(ArtifactError, match="unknown model 'hpx_former_s99'"):
        plan_manifest(ModelSpec.of("hpx_former_s99", 224, "random"))
    with pytest.raises(ArtifactError, match="unsupported resolution"):
        ModelSpec.of("hpx_former_s18", 4096)


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    weights = run / "model_best.safetensors"
    weights.write_bytes(b"weights of a run")
    write_manifest(run / RUN_MANIFEST, manifest(weights=WeightsInfo("file:model_best.safetensors",
                                                                   sha256=sha256_file(weights)), pretrained=True))
    return run


def test_weights_from_a_run_folder_carry_its_model_and_preprocessing(tmp_path):
    run = _run_folder(tmp_path)
    r = resolve_weights(str(run), "hpx_former_s18")
    assert r.path == run / "model_best.safetensors" and r.pretrained and r.run is not None
    m = plan_manifest(ModelSpec.of("hpx_former_s18", None, str(run)))
    assert (m.model, m.resolution, m.num_classes, m.labels[0]) == ("hpx_former_s4", 32, 3, "cat")
    assert m.weights.sha256 == sha256_file(run / "model_best.safetensors")
    (run / "model_best.safetensors").write_bytes(b"changed after training")
    with pytest.raises(WeightsError, match="does not match the run manifest"):
        resolve_weights(str(run), "hpx_former_s18")


def test_weights_errors_are_one_line(tmp_path):
    with pytest.raises(WeightsError, match="weights not found: .*missing.safetensors"):
        resolve_weights(str(tmp_path / "missing.safetensors"), "hpx_former_s4")
    odd = tmp_path / "w.npz"
    odd.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        resolve_weights(str(odd), "hpx_former_s4")
    with pytest.raises(WeightsError, match="a folder must be a training run with manifest.json"):
        resolve_weights(str(tmp_path), "hpx_former_s4")
    with pytest.raises(WeightsError, match="not a file or folder; expected auto"):
        resolve_weights("pretrainde", "hpx_former_s4")
    with pytest.raises(WeightsError, match="hpx_former_s4 has no released weights"):
        resolve_weights("pretrained", "hpx_former_s4")
    plain = tmp_path / "w.safetensors"
    plain.write_bytes(b"plain weights")
    r = resolve_weights(str(plain), "hpx_former_s4")
    assert r.info == WeightsInfo("file:w.safetensors", sha256=sha256_file(plain)) and r.run is None


def test_an_onnx_file_without_manifest_is_refused_with_the_reason(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not read")
    with pytest.raises(ArtifactError, match=r"manifest not found: .*m\.manifest\.json .*export/to_onnx.py"):
        open_artifact(onnx_path)
    with pytest.raises(ArtifactError, match="ONNX file not found"):
        open_artifact(tmp_path / "other.onnx")
    write_manifest(manifest_path_for(onnx_path), manifest())
    with pytest.raises(ArtifactError, match="describes no ONNX file"):
        open_artifact(onnx_path)


def test_manifest_survives_config_pbtxt_and_tritons_parser():
    """Quotes and backslashes in labels go through pbtxt escaping and Triton's own schema."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from hyena_serve.contract import TRITON_MANIFEST_PARAMETER
    from hyena_serve.model_repo import config_pbtxt

    m = manifest()
    for flavour in ("cpu", "onnx", "trt"):
        cfg = text_format.Parse(config_pbtxt(flavour, m), model_config_pb2.ModelConfig())
        assert Manifest.from_json(cfg.parameters[TRITON_MANIFEST_PARAMETER].string_value) == m
        assert list(cfg.input[0].dims) == [3, 32, 32] and list(cfg.output[0].dims) == [3]
        assert cfg.name == f"hpx_former_s4_{flavour}"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "file.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list((tmp_path / "a").iterdir()) == []
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in target.parent.iterdir()] == ["file.bin"]


def _closure(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """Requirement names an extra pulls in, following hyena_serve[...] self-references."""
    names: set[str] = set()
    for req in extras[extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        if name == "hyena_serve":
            for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                names |= _closure(inner.strip(), extras)
        else:
            names.add(name)
    return names


def test_gateway_and_tensorrt_installs_pull_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for extra in ("gateway", "tensorrt", "hub"):
        assert "torch" not in core | _closure(extra, extras), extra
    for extra in ("export", "train", "serve", "torch"):
        assert "torch" in _closure(extra, extras), extra
    assert {"fastapi", "uvicorn", "onnxruntime", "tritonclient"} <= _closure("gateway", extras)


def test_preprocessing_round_trip_in_manifest_keeps_grayscale():
    m = manifest(preprocess=replace(Preprocessing(input_size=(3, 32, 32)), channels="grayscale"))
    assert Manifest.from_json(m.to_json()).preprocess.channels == "grayscale"


def test_an_export_from_an_older_lowering_is_not_reused(tmp_path, monkeypatch):
    """The manifest records the lowering version; a cached file from another one is stale."""
    from hyena_serve import artifact
    from hyena_serve.contract import FFTCONV_LOWERING_VERSION

    spec = ModelSpec.of("hpx_former_s4", 32, "random", model_kwargs={"dims": [8, 16, 24, 32], "num_classes": 10})
    built = artifact.build_artifact(spec, tmp_path, progress=False, check=False)
    assert built.manifest.onnx.lowering == FFTCONV_LOWERING_VERSION and built.manifest.onnx.inline is False
    assert artifact.find_artifact(spec, tmp_path) is not None
    monkeypatch.setattr(artifact, "FFTCONV_LOWERING_VERSION", FFTCONV_LOWERING_VERSION + 1)
    assert artifact.find_artifact(spec, tmp_path) is None  # the embedded backend would re-export
    rebuilt = artifact.build_artifact(spec, tmp_path, progress=False, check=False)
    assert rebuilt.manifest.onnx.lowering == FFTCONV_LOWERING_VERSION + 1
    assert rebuilt.onnx_path == built.onnx_path  # same name, replaced
