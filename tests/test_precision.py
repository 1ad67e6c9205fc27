"""The precision option from the command line to the served model: names, settings,
manifest, a cache per precision, clear errors for what this host or backend cannot run,
and the served int8 / bf16 / fp16 models against fp32."""

from __future__ import annotations

import asyncio
import json
import typing

import numpy as np
import pytest

from hyena_serve import precision
from hyena_serve.artifact import ArtifactError, ModelSpec, artifact_name, build_artifact, find_artifact, plan_manifest
from hyena_serve.manifest import Manifest, OnnxInfo, load_manifest, manifest_path_for
from hyena_serve.precision import PRECISIONS, PrecisionError
from tests.live_server import poll

KWARGS = {"dims": [8, 16, 16, 16], "num_classes": 10}
RES = 32
SPEC = ModelSpec.of("hpx_former_s4", RES, "random", 0, KWARGS)


def _x(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, RES, RES)).astype(np.float32)


# --- what runs where -------------------------------------------------------------------------


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(PrecisionError, match="unknown precision 'int4'.*fp32, fp16, bf16, int8"):
        precision.check_known("int4")


def test_bf16_has_no_onnx_export_and_the_error_says_why_and_what_to_do():
    problem = precision.ort_bf16_problem()
    if problem is not None:  # this onnxruntime refuses a bfloat16 MatMul: its own words are quoted
        assert "MatMul" in problem and problem.startswith("onnxruntime ")
    with pytest.raises(PrecisionError, match=r"no bf16 ONNX export: .*--backend torch --precision bf16"):
        precision.check_onnx("bf16")
    with pytest.raises(ArtifactError, match="no bf16 ONNX export"):
        build_artifact(SPEC, "unused", precision="bf16")
    for p in ("fp32", "fp16", "int8"):
        assert precision.check_onnx(p) == p


def test_torch_precisions_follow_the_cpu_flags():
    assert precision.cpu_bf16_flags(frozenset({"avx2", "avx512_bf16", "amx_bf16"})) == ("avx512_bf16", "amx_bf16")
    assert precision.cpu_bf16_flags(frozenset({"fp", "asimd", "bf16"})) == ("bf16",)  # Arm
    assert precision.check_torch("bf16", "cpu", flags=frozenset({"avx512_bf16"})) == "bf16"
    with pytest.raises(PrecisionError, match="emulated .*avx512_bf16, amx_bf16, bf16"):
        precision.check_torch("bf16", "cpu", flags=frozenset({"avx2", "avx512f"}))
    assert precision.check_torch("bf16", "cuda:0", flags=frozenset()) == "bf16"  # the GPU has it
    with pytest.raises(PrecisionError, match="int8 is ONNX Runtime dynamic quantization.*embedded backend"):
        precision.check_torch("int8")


def test_settings_and_flags_carry_the_precision(monkeypatch):
    from hyena_serve.cli_flags import settings_from_args
    from hyena_serve.exporting.cli import _parser
    from hyena_serve.gateway.settings import GatewaySettings

    field = GatewaySettings.model_fields["precision"]
    assert typing.get_args(field.annotation) == PRECISIONS and field.default == "fp32"
    monkeypatch.setenv("HYENA_PRECISION", "int8")
    assert GatewaySettings().precision == "int8"
    assert settings_from_args(_parser().parse_args(["--precision", "bf16"])).precision == "bf16"  # flag over env
    monkeypatch.setenv("HYENA_PRECISION", "int4")
    with pytest.raises(ValueError, match="precision"):
        GatewaySettings()


def test_cli_errors_are_one_line_and_start_nothing(capsys, monkeypatch):
    from hyena_serve.cli import main
    from hyena_serve.exporting.cli import main as export_main

    monkeypatch.delenv("HYENA_PRECISION", raising=False)
    assert export_main(["--fp16", "--precision", "int8", "--quiet"]) == 2
    assert "--fp16 and --precision int8 disagree" in capsys.readouterr().err
    assert export_main(["--precision", "bf16", "--weights", "random", "--quiet"]) == 2
    assert "no bf16 ONNX export" in capsys.readouterr().err
    # the backend is built before the server starts: a precision it cannot run ends the command
    assert main(["serve", "--backend", "embedded", "--precision", "bf16", "--weights", "random"]) == 2
    assert "error: no bf16 ONNX export" in capsys.readouterr().err
    assert main(["serve", "--backend", "torch", "--precision", "int8", "--weights", "random"]) == 2
    assert "error: int8 is ONNX Runtime dynamic quantization" in capsys.readouterr().err
    assert main(["repo", "--precision", "fp16", "--weights", "random", "--repository", "unused"]) == 2
    assert "float32 I/O" in capsys.readouterr().err


# --- names, manifests, the cache -------------------------------------------------------------


def test_each_precision_has_its_own_artifact_name():
    m = plan_manifest(SPEC)
    names = {p: artifact_name(m, precision=p) for p in ("fp32", "fp16", "int8")}
    assert len(set(names.values())) == 3 and all(n.endswith(f"_{p}") for p, n in names.items())
    assert artifact_name(m, precision="int8", inline=True) == names["int8"] + "_inline"


def test_manifest_records_the_quantization_and_reads_old_manifests(tmp_path):
    m = plan_manifest(SPEC).with_onnx(OnnxInfo("x.onnx", "ab" * 32, 20, precision="int8",
                                               quantization={"op_types": ["MatMul"], "quantized_nodes": 3}))
    back = Manifest.from_json(m.to_json())
    assert back == m and back.onnx.quantization["quantized_nodes"] == 3
    old = m.to_dict()
    del old["onnx"]["quantization"]  # written before the field existed
    assert Manifest.from_dict(old).onnx.quantization == {}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """fp32 and int8 artifacts of the tiny model in one cache."""
    root = tmp_path_factory.mktemp("precision")
    fp32 = build_artifact(SPEC, root, check=False, progress=False)
    int8 = build_artifact(SPEC, root, precision="int8", progress=False)  # check: int8 vs fp32 report
    return root, fp32, int8


def test_the_cache_never_serves_one_precision_for_another(cache, tmp_path):
    root, fp32, int8 = cache
    assert int8.onnx_path != fp32.onnx_path and int8.manifest.onnx.precision == "int8"
    assert find_artifact(SPEC, root, precision="int8").onnx_path == int8.onnx_path
    assert find_artifact(SPEC, root).onnx_path == fp32.onnx_path
    assert find_artifact(SPEC, root, precision="fp16") is None
    assert find_artifact(SPEC, tmp_path, precision="int8") is None
    # a file under the int8 name whose manifest says fp32 is not taken for int8
    manifest = load_manifest(int8.manifest_path)
    fake = tmp_path / "onnx" / int8.onnx_path.name
    fake.parent.mkdir()
    fake.write_bytes(fp32.onnx_path.read_bytes())
    wrong = manifest.with_onnx(OnnxInfo(**{**manifest.to_dict()["onnx"], "precision": "fp32"}))
    manifest_path_for(fake).write_text(wrong.to_json())
    assert find_artifact(SPEC, tmp_path, precision="int8") is None


# --- the served models ---------------------------------------------------------------------


def _serve(backend, x: np.ndarray) -> tuple[np.ndarray, dict]:
    async def go():
        await backend.start()
        try:
            return await backend.infer(x), dict(backend.info.extra)
        finally:
            await backend.close()

    return asyncio.run(go())


def _torch_fp32(x: np.ndarray) -> np.ndarray:
    import torch

    from hyena_serve.artifact import build_served_model

    model, _ = build_served_model(SPEC)
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def test_embedded_backend_serves_the_int8_artifact(cache):
    from hyena_serve.runtime.embedded import EmbeddedBackend

    root, _, _ = cache
    x = _x()
    logits, extra = _serve(EmbeddedBackend(SPEC, root, precision="int8"), x)
    ref = _torch_fp32(x)
    assert extra == {"precision": "int8"} and logits.dtype == np.float32
    # 5% of the logit scale: the int8 tolerance reasoned in tests/test_quantize.py
    assert np.abs(logits - ref).max() <= 0.05 * np.abs(ref).max()


def test_embedded_backend_checks_a_given_file_against_an_explicit_precision(cache):
    from hyena_serve.runtime.embedded import EmbeddedBackend

    _, fp32, int8 = cache
    with pytest.raises(ArtifactError, match="is a fp32 export, not int8"):
        asyncio.run(EmbeddedBackend(onnx_path=fp32.onnx_path, precision="int8").start())
    _, extra = _serve(EmbeddedBackend(onnx_path=int8.onnx_path), _x(1))  # unset: the file's own
    assert extra == {"precision": "int8"}
    with pytest.raises(PrecisionError, match="no bf16 ONNX export"):
        EmbeddedBackend(SPEC, precision="bf16")


def test_embedded_backend_casts_for_an_fp16_artifact(cache):
    from hyena_serve.runtime.embedded import EmbeddedBackend

    root, _, _ = cache
    x = _x()
    logits, extra = _serve(EmbeddedBackend(SPEC, root, precision="fp16"), x)
    ref = _torch_fp32(x)
    assert extra == {"precision": "fp16"} and logits.dtype == np.float32
    # float16 keeps 11 significant bits (2^-11 ≈ 5e-4 relative per rounding); 1% of the
    # logit scale is the export's own fp16 parity tolerance
    assert np.abs(logits - ref).max() <= 1e-2 * np.abs(ref).max()


def test_torch_backend_serves_bf16_with_fp32_filters():
    from hyena_serve.runtime.torch_backend import TorchBackend

    try:
        precision.check_torch("bf16", "cpu")
    except PrecisionError as exc:
        pytest.skip(f"this CPU cannot run bf16 natively: {exc}")
    backend = TorchBackend(SPEC, precision="bf16")
    x = _x()
    logits, extra = _serve(backend, x)
    ref = _torch_fp32(x)
    assert extra == {"precision": "bf16"} and logits.dtype == np.float32
    # bfloat16 keeps 8 significant bits (2^-8 ≈ 0.4% relative per rounding), in every
    # layer's weights and activations; 5% of the logit scale, as for int8
    assert np.abs(logits - ref).max() <= 0.05 * np.abs(ref).max()


def test_bf16_model_keeps_kf_and_d_float32():
    import torch

    from hyena_serve.artifact import build_served_model
    from hyena_serve.models.frozen import hyena_mixers

    model, _ = build_served_model(SPEC, precision="bf16")
    mixers = [m for _, m in hyena_mixers(model)]
    assert mixers and all(m.frozen_kf.dtype == torch.float32 and m.frozen_d.dtype == torch.float32 for m in mixers)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(ArtifactError, match="not 'int8'"):
        build_served_model(SPEC, precision="int8")
    with pytest.raises(PrecisionError, match="int8"):
        from hyena_serve.runtime.torch_backend import TorchBackend

        TorchBackend(SPEC, precision="int8")


def test_metadata_route_shows_the_precision(cache):
    from fastapi.testclient import TestClient

    from hyena_serve.gateway import create_app
    from hyena_serve.gateway.settings import GatewaySettings

    root, _, _ = cache
    settings = GatewaySettings(model="hpx_former_s4", resolution=RES, weights="random", model_kwargs=KWARGS,
                               artifacts_dir=root, precision="int8")
    with TestClient(create_app(settings)) as client:
        poll(lambda: client.get("/v2/health/ready").status_code == 200, 60, "gateway readiness")
        meta = client.get("/v2/models/hpx_former_s4").json()
    assert meta["parameters"]["precision"] == "int8", json.dumps(meta)
