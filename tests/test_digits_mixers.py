"""The paper's comparison mixers, trained and served as a user would (issue #14): each
``*_former_s4`` variant trains on scikit-learn's digits with the existing trainer, its
artifact is exported from the run folder (torch vs ONNX Runtime parity checked by the
builder), and a gateway that never imports torch classifies the held-out digits over HTTP:
at least 95% must be right."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")

from tests.digits_http import (  # noqa: E402
    MIN_ACCURACY,
    accuracy,
    cli,
    gateway,
    held_out_pngs,
    torch_blocked_env,
    train,
)

pytestmark = pytest.mark.slow

MIXER_VARIANTS = ("gf_former_s4", "aff_former_s4", "sasa_former_s4")


@pytest.fixture(scope="module")
def held_out() -> list[tuple[bytes, str]]:
    return held_out_pngs()


@pytest.mark.parametrize("variant", MIXER_VARIANTS)
def test_mixer_variant_trains_exports_and_serves_digits(variant, held_out, tmp_path):
    run = tmp_path / "run"
    summary = train(run, "--model", variant)
    assert summary["best_val_acc"] >= MIN_ACCURACY, summary
    artifacts = tmp_path / "artifacts"
    r = cli("export", "--weights", str(run), "--artifacts-dir", str(artifacts))
    assert r.returncode == 0, r.stderr[-3000:]
    (onnx_path,) = (artifacts / "onnx").glob("*.onnx")
    manifest = json.loads(onnx_path.with_suffix(".manifest.json").read_text())
    assert manifest["model"] == variant and manifest["labels"] == [str(i) for i in range(10)]

    env, marker = torch_blocked_env(tmp_path)
    with gateway(env, tmp_path / "gateway.log", "--weights", str(run), "--artifacts-dir", str(artifacts)) as url:
        acc, body = accuracy(url, held_out)
    assert not marker.exists(), f"the gateway imported torch:\n{marker.read_text()}"
    assert body["model"] == variant and body["backend"] == "embedded"
    assert acc >= MIN_ACCURACY, f"{variant}: {acc:.3f} of {len(held_out)} held-out digits over HTTP"
    print(f"\n{variant}: training val {summary['best_val_acc']:.4f}, over HTTP {acc:.4f} "
          f"of {len(held_out)} held-out digits")
