"""Released and Hub weights through the real ``huggingface_hub`` client, against a local
HTTP server standing in for the Hub (``HF_ENDPOINT``): first download, the cached second
start, offline mode, a missing repo or file, and a truncated download.

The client reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HOME`` when it is imported, so
every case runs in a fresh Python process, as a user's command would.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

pytest.importorskip("huggingface_hub")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_KWARGS = {"dims": [8, 16, 24, 32], "num_classes": 10, "img_size": 32}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``/{org}/{repo}/resolve/{revision}/{file}`` for HEAD and GET, with the headers the
    client reads (commit, ETag, size) and the Hub's error codes for missing things."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.truncate: set[tuple[str, str]] = set()
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_HEAD(self):  # noqa: N802
                self._serve(body=False)

            def do_GET(self):  # noqa: N802
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound")
                repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                if not any(r == repo for r, _ in hub.files):
                    return self._error(404, "RepoNotFound")
                data = hub.files.get((repo, filename))
                if data is None:
                    return self._error(404, "EntryNotFound")
                sent = data[: len(data) // 2] if body and (repo, filename) in hub.truncate else data
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(sent) if body else len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(sent)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def downloads(self, filename: str) -> int:
        return sum(1 for method, path in self.requests if method == "GET" and path.endswith(filename))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> bytes:
    """A small hpx_former_s4 state dict as safetensors bytes, in the published key layout."""
    from safetensors.torch import save

    from hyena_serve.models import create_model

    torch.manual_seed(1)
    model = create_model("hpx_former_s4", **TINY_KWARGS)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def run(code: str, hub: FakeHub, hf_home: Path, offline: bool = False, endpoint: str | None = None):
    env = {"PATH": "/usr/bin:/bin", "HF_ENDPOINT": endpoint or hub.url, "HF_HOME": str(hf_home),
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1" if offline else "0"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO_ROOT)


RESOLVE = """
import json
from hyena_serve.weights import WeightsError, resolve_weights
try:
    r = resolve_weights({spec!r}, {model!r})
except WeightsError as exc:
    print("ERROR:", exc); raise SystemExit(2)
print(json.dumps({{"path": str(r.path), "source": r.info.source, "sha256": r.info.sha256,
                  "pretrained": r.pretrained}}))
"""


def resolve(spec: str, hub: FakeHub, hf_home: Path, model: str = "hpx_former_s4", **kw):
    return run(RESOLVE.format(spec=spec, model=model), hub, hf_home, **kw)


def test_download_then_cache_then_offline(hub, tiny_checkpoint, tmp_path):
    hub.files[("acme/tiny-hpx", "model.safetensors")] = tiny_checkpoint
    first = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf")
    assert first.returncode == 0, first.stderr
    got = json.loads(first.stdout)
    assert got["sha256"] == hashlib.sha256(tiny_checkpoint).hexdigest() and got["pretrained"]
    assert got["source"] == "hf-hub:acme/tiny-hpx@main/model.safetensors"
    assert Path(got["path"]).read_bytes() == tiny_checkpoint
    assert hub.downloads("model.safetensors") == 1

    second = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf")  # the cache, not a second download
    assert second.returncode == 0 and json.loads(second.stdout)["path"] == got["path"]
    assert hub.downloads("model.safetensors") == 1

    before = len(hub.requests)
    offline = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf", offline=True)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["sha256"] == got["sha256"] and len(hub.requests) == before

    cold = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "empty-cache", offline=True)
    assert cold.returncode == 2
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in cold.stdout


def test_missing_repo_file_and_revision_are_one_line_errors(hub, tiny_checkpoint, tmp_path):
    hub.files[("acme/tiny-hpx", "README.md")] = b"no weights here"
    r = resolve("hf-hub:acme/nothing", hub, tmp_path / "hf")
    assert r.returncode == 2 and "Hub repository acme/nothing not found" in r.stdout
    r = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf")
    assert r.returncode == 2
    assert "acme/tiny-hpx@main has none of model.safetensors, pytorch_model.bin" in r.stdout
    r = resolve("hf-hub:not-a-repo", hub, tmp_path / "hf")
    assert r.returncode == 2 and "expected hf-hub:ORG/REPO" in r.stdout


def test_truncated_download_fails_and_leaves_nothing(hub, tiny_checkpoint, tmp_path):
    hub.files[("acme/tiny-hpx", "model.safetensors")] = tiny_checkpoint
    hub.truncate.add(("acme/tiny-hpx", "model.safetensors"))
    r = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf")
    assert r.returncode == 2 and "downloading acme/tiny-hpx@main/model.safetensors failed" in r.stdout
    assert "Traceback" not in r.stderr
    repo_cache = tmp_path / "hf" / "hub" / "models--acme--tiny-hpx"
    left = [p for d in ("blobs", "snapshots") for p in (repo_cache / d).rglob("*") if not p.is_dir()]
    assert left == [], f"a failed download left {left}"  # (refs/ holds only the commit id)
    hub.truncate.clear()  # the next attempt starts afresh and succeeds
    r = resolve("hf-hub:acme/tiny-hpx", hub, tmp_path / "hf")
    assert r.returncode == 0 and json.loads(r.stdout)["sha256"] == hashlib.sha256(tiny_checkpoint).hexdigest()


def test_export_with_hub_weights_loads_them_strictly(hub, tiny_checkpoint, tmp_path):
    """The exporter (as a user runs it) with hf-hub weights: the manifest names them."""
    hub.files[("acme/tiny-hpx", "model.safetensors")] = tiny_checkpoint
    code = f"""
import sys
from hyena_serve.exporting.cli import main
sys.exit(main(["--model", "hpx_former_s4", "--res", "32", "--weights", "hf-hub:acme/tiny-hpx",
               "--model-kwargs", {json.dumps(json.dumps(TINY_KWARGS))}, "--artifacts-dir", {str(tmp_path / "a")!r},
               "--quiet"]))
"""
    r = run(code, hub, tmp_path / "hf")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(Path(r.stdout.strip()).with_suffix("").with_suffix(".manifest.json").read_text())
    assert manifest["pretrained"] is True
    assert manifest["weights"]["source"] == "hf-hub:acme/tiny-hpx@main/model.safetensors"
    assert manifest["weights"]["sha256"] == hashlib.sha256(tiny_checkpoint).hexdigest()
    hub.files[("acme/wrong", "model.safetensors")] = tiny_checkpoint
    wrong = code.replace("hf-hub:acme/tiny-hpx", "hf-hub:acme/wrong").replace("[8, 16, 24, 32]", "[8, 16, 24, 40]")
    r = run(wrong, hub, tmp_path / "hf")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: hf-hub:acme/wrong@main/model.safetensors:"), r.stderr
    assert "checkpoint (128,) vs model (160,)" in r.stderr  # names a mis-shaped key and both shapes


def test_pretrained_uses_the_variants_release(hub, tiny_checkpoint, tmp_path):
    """create_model(pretrained=True) and --weights pretrained fetch <org>/<release>/pytorch_model.bin."""
    buffer = __import__("io").BytesIO()
    from safetensors.torch import load

    torch.save(load(tiny_checkpoint), buffer)  # the released files are torch pickles
    hub.files[("Spravil/tiny-release", "pytorch_model.bin")] = buffer.getvalue()
    code = f"""
from dataclasses import replace
from hyena_serve import variants
variants.DEFAULT_CFGS["hpx_former_s4"] = replace(variants.DEFAULT_CFGS["hpx_former_s4"],
                                                 hf_hub_id="Spravil/tiny-release")
from hyena_serve.models import create_model
model = create_model("hpx_former_s4", pretrained=True, **{TINY_KWARGS!r})
print(float(model.state_dict()["head.fc2.weight"].abs().sum()))
"""
    r = run(code, hub, tmp_path / "hf")
    assert r.returncode == 0, r.stderr
    from safetensors.torch import load as load_st

    expected = float(load_st(tiny_checkpoint)["head.fc2.weight"].abs().sum())
    assert float(r.stdout.strip()) == pytest.approx(expected)


def test_auto_falls_back_to_random_loudly_and_pretrained_fails_in_one_line(hub, tmp_path):
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    auto = resolve("auto", hub, tmp_path / "hf", model="hpx_former_s18", endpoint=closed)
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout) == {"path": "None", "source": "random", "sha256": None, "pretrained": False}
    assert "NO PRETRAINED WEIGHTS" in auto.stderr and "RANDOM weights" in auto.stderr
    pretrained = run("""
import sys
from hyena_serve.exporting.cli import main
sys.exit(main(["--weights", "pretrained", "--quiet"]))
""", hub, tmp_path / "hf", endpoint=closed)
    assert pretrained.returncode == 2
    assert pretrained.stderr.strip().count("\n") == 0, pretrained.stderr
    assert "Spravil/hpx_former_s18.westai_in1k@main/pytorch_model.bin is not in the local Hugging Face cache and " \
           "the Hub cannot be reached" in pretrained.stderr
    assert "Retrying" not in auto.stderr + pretrained.stderr  # no half-minute backoff on a machine without a route
