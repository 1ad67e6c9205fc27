"""Serving under load: the gateway over HTTP on loopback (embedded backend, Triton backend)
and Triton directly through tritonclient, swept over client concurrency.

Targets (each in its own server process; the load generator is this process):

- ``bare ORT``: the exported model in an ONNX Runtime session (child process), one
  preprocessed image per call, sequential: the backend without any serving around it;
- ``gateway/embedded``: ``POST /v1/classify`` with a JPEG, gateway running ONNX Runtime
  in-process behind its micro-batcher;
- ``triton direct``: tritonclient HTTP ``infer`` with a preprocessed tensor against the
  local tritonserver (Python backend running the same ONNX file);
- ``gateway/triton``: the gateway forwarding to that tritonserver;
- ``gateway/torch``: the gateway's torch backend (``--targets``; it needs no ONNX export).

Each concurrency level sends at most ``requests`` requests within at most ``seconds``
after a few unrecorded warm-up requests, and records throughput, p50/p90/p99 latency,
errors, and (for gateways) the per-stage breakdown from the gateway's Prometheus
histograms (``hyena_stage_seconds``), differenced around the level.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.timing import Subprocess, SubprocessError, compare, latency_stats

TARGETS = ("bare ORT", "gateway/embedded", "triton direct", "gateway/triton")
ALL_TARGETS = (*TARGETS, "gateway/torch")
STAGES = ("decode", "preprocess", "inference", "total")


@dataclass
class ServingSettings:
    model: str = "hpx_former_s18"
    res: int = 224
    model_kwargs: dict = field(default_factory=dict)
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    requests: int = 256  # per level, at most
    seconds: float = 60.0  # per level, at most
    warmup: int = 4
    targets: tuple[str, ...] = TARGETS
    body: str = "matmul"
    start_timeout: float = 600.0


def settings_for(quick: bool = False, tiny: bool = False) -> ServingSettings:
    if tiny:
        return ServingSettings(model="hpx_former_s4", res=32, model_kwargs={"dims": [8, 16, 16, 16], "num_classes": 10},
                               concurrency=(1, 2), requests=6, seconds=5.0, warmup=1,
                               targets=("gateway/torch",), start_timeout=120.0)
    if quick:
        return ServingSettings(model="hpx_former_s12", res=64, concurrency=(1, 4, 16), requests=48, seconds=6.0,
                               warmup=2)
    return ServingSettings()


# --- helpers -------------------------------------------------------------------------------


def test_image(width: int = 320, height: int = 240) -> bytes:
    """A deterministic photo-like JPEG (smooth gradients plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, (xx + yy) / (width + height)], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready within {timeout:.0f} s")


@contextmanager
def gateway_process(settings: ServingSettings, backend: str, *, onnx_path: Path | None, threads: int | None,
                    triton_url: str | None = None, triton_model: str | None = None, log_dir: Path):
    """Run the gateway (uvicorn, one worker) on a free loopback port; yields its base URL."""
    port = free_port()
    env = dict(os.environ)
    env.update({
        "HYENA_BACKEND": backend,
        "HYENA_MODEL": settings.model,
        "HYENA_RESOLUTION": str(settings.res),
        "HYENA_MODEL_KWARGS": json.dumps(settings.model_kwargs),
        "HYENA_WEIGHTS": "random",
        "HYENA_THREADS": str(threads or 0),
        "HYENA_ARTIFACTS_DIR": str(log_dir / "gateway-artifacts"),
        "HYENA_MAX_QUEUE": "1024",
    })
    if onnx_path is not None:
        env["HYENA_ONNX_PATH"] = str(onnx_path)
    if triton_url is not None:
        env["HYENA_TRITON_URL"] = triton_url
    if triton_model is not None:
        env["HYENA_TRITON_MODEL"] = triton_model
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log_path = log_dir / f"gateway-{backend}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hyena_serve.gateway.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_http(f"{base}/v2/health/ready", settings.start_timeout, proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(f"gateway ({backend}) did not start: {exc}\n" + "\n".join(tail)) from None
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- Prometheus stage breakdown ------------------------------------------------------------


def scrape_stages(base: str) -> dict:
    """{stage: {"sum", "count", "buckets": [(le, cumulative count)]}} plus batch-size sums."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=10.0).text
    stages: dict = {}
    batch = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "hyena_stage_seconds":
            for s in family.samples:
                stage = s.labels.get("stage")
                entry = stages.setdefault(stage, {"sum": 0.0, "count": 0.0, "buckets": {}})
                if s.name.endswith("_sum"):
                    entry["sum"] = s.value
                elif s.name.endswith("_count"):
                    entry["count"] = s.value
                elif s.name.endswith("_bucket"):
                    entry["buckets"][float(s.labels["le"])] = s.value
        elif family.name == "hyena_inference_batch_size":
            for s in family.samples:
                if s.name.endswith("_sum"):
                    batch["sum"] = s.value
                elif s.name.endswith("_count"):
                    batch["count"] = s.value
    return {"stages": stages, "batch": batch}


def _bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear inside a bucket)."""
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0
    if total <= 0:
        return None
    rank, prev_edge, prev_count = q * total, 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if edge == float("inf"):
                return prev_edge
            width = count - prev_count
            return prev_edge + (edge - prev_edge) * ((rank - prev_count) / width if width else 0.0)
        prev_edge, prev_count = edge, count
    return prev_edge


def stage_breakdown(before: dict, after: dict) -> dict:
    """Per-stage mean and bucket p50/p90 (ms) of the requests between two scrapes."""
    out = {}
    for stage in STAGES:
        a, b = after["stages"].get(stage), before["stages"].get(stage, {"sum": 0.0, "count": 0.0, "buckets": {}})
        if a is None:
            continue
        count = a["count"] - b["count"]
        if count <= 0:
            continue
        buckets = {le: v - b["buckets"].get(le, 0.0) for le, v in a["buckets"].items()}
        p50, p90 = _bucket_quantile(buckets, 0.5), _bucket_quantile(buckets, 0.9)
        out[stage] = {
            "count": int(count),
            "mean_ms": (a["sum"] - b["sum"]) / count * 1e3,
            "p50_ms_from_buckets": None if p50 is None else p50 * 1e3,
            "p90_ms_from_buckets": None if p90 is None else p90 * 1e3,
        }
    rows = after["batch"]["count"] - before["batch"]["count"]
    if rows > 0:
        out["mean_inference_batch"] = (after["batch"]["sum"] - before["batch"]["sum"]) / rows
    return out


# --- load generation -----------------------------------------------------------------------


async def _drive(send: Callable[[], Awaitable[int]], concurrency: int, requests: int, seconds: float,
                 progress=None) -> dict:
    """``concurrency`` workers call ``send`` (returns an HTTP-like status) until ``requests``
    were started or ``seconds`` passed; returns the level's measurements."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    started = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    last_done = t0

    async def worker() -> None:
        nonlocal started, last_done
        while started < requests and time.perf_counter() < deadline:
            started += 1
            s = time.perf_counter()
            try:
                status = await send()
            except Exception as exc:  # every failure is counted, none stops the sweep
                status = type(exc).__name__
            e = time.perf_counter()
            last_done = max(last_done, e)
            statuses[str(status)] += 1
            if status == 200:
                latencies.append(e - s)
            if progress is not None:
                progress()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = max(last_done - t0, 1e-9)
    ok = statuses.get("200", 0)
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": dict(statuses),
        "wall_s": wall,
        "throughput_img_s": ok / wall,
        "latency": latency_stats(latencies),
    }


async def sweep_gateway(base: str, image: bytes, settings: ServingSettings, progress=None) -> list[dict]:
    import httpx

    levels = []
    limits = httpx.Limits(max_connections=max(settings.concurrency), max_keepalive_connections=max(settings.concurrency))
    async with httpx.AsyncClient(base_url=base, timeout=120.0, limits=limits) as client:
        async def send() -> int:
            r = await client.post("/v1/classify?top_k=1", content=image, headers={"content-type": "image/jpeg"})
            return r.status_code

        for _ in range(settings.warmup):
            await send()
        for c in settings.concurrency:
            before = await asyncio.to_thread(scrape_stages, base)
            level = await _drive(send, c, settings.requests, settings.seconds, progress)
            after = await asyncio.to_thread(scrape_stages, base)
            level["stages"] = stage_breakdown(before, after)
            levels.append(level)
    return levels


async def sweep_triton(url: str, model: str, tensor: np.ndarray, settings: ServingSettings, progress=None) -> list[dict]:
    import tritonclient.http.aio as client_module

    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

    levels = []
    client = client_module.InferenceServerClient(url, conn_limit=max(settings.concurrency), conn_timeout=120.0)
    try:
        async def send() -> int:
            inp = client_module.InferInput(INPUT_NAME, list(tensor.shape), "FP32")
            inp.set_data_from_numpy(tensor)
            out = client_module.InferRequestedOutput(OUTPUT_NAME, binary_data=True)
            result = await client.infer(model, [inp], outputs=[out])
            return 200 if result.as_numpy(OUTPUT_NAME) is not None else 500

        for _ in range(settings.warmup):
            await send()
        for c in settings.concurrency:
            levels.append(await _drive(send, c, settings.requests, settings.seconds, progress))
    finally:
        await client.close()
    return levels


def bare_backend(onnx_path: Path, tensor: np.ndarray, settings: ServingSettings, threads: int | None) -> list[dict]:
    """The backend alone: ORT session.run on one preprocessed image, sequential (concurrency 1)."""
    from bench.timing import ort_file_runner
    from hyena_serve.contract import INPUT_NAME

    with Subprocess(ort_file_runner, str(onnx_path), INPUT_NAME, tensor, threads, threads=threads) as child:
        started = time.perf_counter()
        stats = compare({"bare": child}, rounds=settings.requests, warmup=settings.warmup,
                        max_seconds=settings.seconds)["bare"]
        wall = time.perf_counter() - started
        memory = child.memory()
    return [{
        "concurrency": 1, "requests": stats.n, "ok": stats.n, "errors": 0, "statuses": {"200": stats.n},
        "wall_s": wall, "throughput_img_s": 1e3 / stats.median_ms,
        "latency": {"p50_ms": stats.median_ms, "p90_ms": stats.p90_ms, "p99_ms": stats.p99_ms,
                    "mean_ms": stats.mean_ms, "max_ms": None},
        "memory": memory,
    }]


# --- the section ---------------------------------------------------------------------------


def preprocessed(image: bytes, settings: ServingSettings) -> np.ndarray:
    from bench.model import model_spec
    from hyena_serve.artifact import plan_manifest
    from hyena_serve.preprocess import preprocess_bytes

    manifest = plan_manifest(model_spec(settings.model, settings.res, settings.model_kwargs))
    return preprocess_bytes(image, manifest.preprocess)[None].astype(np.float32)


def _export(settings: ServingSettings, cache_dir: Path, threads: int | None) -> Path:
    from bench.model import export_for_bench, export_status, onnx_cache_path

    why = export_status()
    if why is not None:
        raise RuntimeError(why)
    path = onnx_cache_path(cache_dir, settings.model, settings.res, settings.body, settings.model_kwargs)
    if not path.is_file():
        Subprocess(export_for_bench, settings.model, settings.res, settings.body, str(cache_dir), settings.model_kwargs,
                   threads=threads).close()
    return path


def run(settings: ServingSettings, *, cache_dir: Path, log_dir: Path, threads: int | None = None,
        progress_factory=None, log=print) -> dict:
    """The serving section: one entry per target with its concurrency levels, or why it was skipped."""
    image = test_image()
    tensor = preprocessed(image, settings)
    targets: dict[str, dict] = {}
    log_dir.mkdir(parents=True, exist_ok=True)

    def bar(name: str, levels: int):
        if progress_factory is None:
            return None
        return progress_factory(name, levels * settings.requests)

    onnx_path, onnx_error = None, None
    if any(t in settings.targets for t in TARGETS):
        try:
            onnx_path = _export(settings, cache_dir, threads)
        except (RuntimeError, SubprocessError) as exc:
            onnx_error = f"skipped: ONNX export unavailable: {exc}"

    def record(name: str, fn: Callable[[], list[dict]]) -> None:
        if name not in settings.targets:
            return
        started = time.perf_counter()
        try:
            targets[name] = {"levels": fn()}
        except Exception as exc:  # a target that cannot run is reported, the others still run
            targets[name] = {"skipped": f"skipped: {type(exc).__name__}: {str(exc)[:500]}"}
        targets[name]["seconds"] = round(time.perf_counter() - started, 1)
        log(f"  serving {name}: {targets[name].get('skipped', 'done')} ({targets[name]['seconds']} s)")

    def needs_onnx(fn):
        def wrapped():
            if onnx_path is None:
                raise RuntimeError(onnx_error or "no ONNX model")
            return fn()
        return wrapped

    record("bare ORT", needs_onnx(lambda: bare_backend(onnx_path, tensor, settings, threads)))

    def gateway(backend: str, **kwargs) -> list[dict]:
        with gateway_process(settings, backend, onnx_path=onnx_path, threads=threads, log_dir=log_dir, **kwargs) as base:
            return asyncio.run(sweep_gateway(base, image, settings, bar(f"gateway/{backend}", len(settings.concurrency))))

    record("gateway/embedded", needs_onnx(lambda: gateway("embedded")))
    record("gateway/torch", lambda: gateway("torch"))

    if any(t in settings.targets for t in ("triton direct", "gateway/triton")):
        with ExitStack() as stack:
            triton, why = None, onnx_error
            if onnx_path is not None:
                try:
                    triton = stack.enter_context(_local_triton(settings, onnx_path, log_dir))
                except Exception as exc:  # no wheel, no server: skip the Triton targets with the reason
                    why = f"skipped: local tritonserver unavailable: {type(exc).__name__}: {str(exc)[:300]}"
            for name in ("triton direct", "gateway/triton"):
                if triton is None and name in settings.targets:
                    targets[name] = {"skipped": why}
            if triton is not None:
                url, model = triton
                record("triton direct", lambda: asyncio.run(
                    sweep_triton(url, model, tensor, settings, bar("triton direct", len(settings.concurrency)))))
                record("gateway/triton", lambda: gateway("triton", triton_url=url, triton_model=model))

    return {
        "model": settings.model,
        "res": settings.res,
        "model_kwargs": settings.model_kwargs,
        "onnx_body": settings.body,
        "image_bytes": len(image),
        "concurrency": list(settings.concurrency),
        "requests_per_level_max": settings.requests,
        "seconds_per_level_max": settings.seconds,
        "warmup_requests": settings.warmup,
        "targets": targets,
        "overhead_at_c1": overhead_at_c1(targets),
        "scaling_16_vs_1": scaling(targets, 16),
        "notes": {
            "bare ORT": "ORT session.run on a preprocessed image in a child process, sequential",
            "triton": "tritonserver from nvidia-pytriton, Python backend running the ONNX file with ORT "
                      "(intra_op_num_threads 0 = ORT default); dynamic batching as in model_repo",
            "client": "httpx / tritonclient.http.aio from the benchmark process on 127.0.0.1",
        },
    }


@contextmanager
def _local_triton(settings: ServingSettings, onnx_path: Path, log_dir: Path):
    from hyena_serve.artifact import open_artifact
    from hyena_serve.model_repo import entry_name, fill_repository
    from hyena_serve.triton_local import LocalTriton

    with tempfile.TemporaryDirectory(prefix="bench-repo-") as repo:
        fill_repository(repo, open_artifact(onnx_path), link=True)
        model = entry_name(settings.model, "cpu")
        triton = LocalTriton(repo, models=[model], log_path=log_dir / "tritonserver.log")
        triton.start(settings.start_timeout)
        try:
            yield triton.http_url, model
        finally:
            triton.stop()


def _p50(targets: dict, name: str, concurrency: int) -> float | None:
    for level in targets.get(name, {}).get("levels", []):
        if level["concurrency"] == concurrency:
            return level["latency"]["p50_ms"]
    return None


def overhead_at_c1(targets: dict) -> dict:
    """Gateway p50 minus its bare backend's p50 at concurrency 1 (ms), and their ratio."""
    out = {}
    for gateway, bare in (("gateway/embedded", "bare ORT"), ("gateway/triton", "triton direct")):
        g, b = _p50(targets, gateway, 1), _p50(targets, bare, 1)
        if g is not None and b is not None:
            out[f"{gateway} vs {bare}"] = {"gateway_p50_ms": g, "bare_p50_ms": b, "overhead_ms": g - b,
                                           "ratio": g / b}
    return out


def scaling(targets: dict, concurrency: int) -> dict:
    """Throughput at ``concurrency`` over throughput at 1, per target."""
    out = {}
    for name, t in targets.items():
        by_c = {lv["concurrency"]: lv["throughput_img_s"] for lv in t.get("levels", [])}
        if 1 in by_c and concurrency in by_c and by_c[1] > 0:
            out[name] = {"c1_img_s": by_c[1], f"c{concurrency}_img_s": by_c[concurrency],
                         "ratio": by_c[concurrency] / by_c[1]}
    return out
