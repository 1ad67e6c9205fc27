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
                    triton_url: str | None = None, triton_model: str | None = None, log_dir: Path,
                    env_overrides: dict[str, str] | None = None, uvicorn_args: tuple[str, ...] = (),
                    tag: str = "", info: dict | None = None):
    """Run the gateway (uvicorn, one worker) on a free loopback port; yields its base URL.
    ``env_overrides`` and ``uvicorn_args`` (e.g. ``--loop asyncio``) make the variants the
    side-by-side comparison measures."""
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
        "HYENA_ACCESS_LOG": os.environ.get("BENCH_ACCESS_LOG", "false"),
    })
    env.update(env_overrides or {})
    if onnx_path is not None:
        env["HYENA_ONNX_PATH"] = str(onnx_path)
    if triton_url is not None:
        env["HYENA_TRITON_URL"] = triton_url
    if triton_model is not None:
        env["HYENA_TRITON_MODEL"] = triton_model
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log_path = log_dir / f"gateway-{backend}{tag}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hyena_serve.gateway.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
             "--timeout-keep-alive", env.get("HYENA_KEEP_ALIVE_S", "75"),  # as `hyena-serve serve` does
             *uvicorn_args],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    if info is not None:
        info["pid"] = proc.pid
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



# --- side by side: gateway overhead levers, large photos, Triton throughput -----------------
#
# ``python -m bench.serving`` (or :func:`side_by_side`): every alternative is alive at once
# and they are timed in interleaved rounds (A, B, C, ... A, B, C), so a change of machine
# load hits all alike and the ratios hold on a shared host.

#: Gateway variants for the concurrency-1 overhead comparison: each adds one lever to the
#: previous one. "before" is the gateway as issue 12 found it (the batcher waits
#: batch_max_wait_ms even when idle, asyncio loop + h11, Starlette's 40-thread pool).
GATEWAY_VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "before": ({"HYENA_BATCH_IDLE_DISPATCH": "false", "HYENA_PREPROCESS_THREADS": "40"},
               ("--loop", "asyncio", "--http", "h11")),
    "+idle dispatch": ({"HYENA_BATCH_IDLE_DISPATCH": "true", "HYENA_PREPROCESS_THREADS": "40"},
                       ("--loop", "asyncio", "--http", "h11")),
    "+uvloop/httptools": ({"HYENA_BATCH_IDLE_DISPATCH": "true", "HYENA_PREPROCESS_THREADS": "40"},
                          ("--loop", "uvloop", "--http", "httptools")),
    "+pool = cores": ({"HYENA_BATCH_IDLE_DISPATCH": "true", "HYENA_PREPROCESS_THREADS": "0"},
                      ("--loop", "uvloop", "--http", "httptools")),
}


def photo_12mp(width: int = 4000, height: int = 3000) -> bytes:
    """A 12-megapixel photo-like JPEG (as a phone camera sends)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (height // 50, width // 50, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def decode_draft(data: bytes, config, max_pixels: int):
    """JPEG draft-mode decode (``decode_image(draft_for=...)``, the gateway's
    ``HYENA_JPEG_DRAFT``) then the usual resize/crop/normalise."""
    from hyena_serve.preprocess import preprocess_bytes

    return preprocess_bytes(data, config, max_pixels=max_pixels, draft=True)


def large_photo(settings: ServingSettings, rounds: int = 7) -> dict:
    """Decode + preprocess of a 12 MP JPEG: the gateway's path vs JPEG draft mode."""
    from bench.model import model_spec
    from bench.timing import compare
    from hyena_serve.artifact import plan_manifest
    from hyena_serve.preprocess import decode_image, preprocess_image

    data = photo_12mp()
    config = plan_manifest(model_spec(settings.model, settings.res, settings.model_kwargs)).preprocess
    limit = 50_000_000
    full = preprocess_image(decode_image(data, max_pixels=limit), config)
    draft = decode_draft(data, config, limit)
    stats = compare({"full decode": lambda: preprocess_image(decode_image(data, max_pixels=limit), config),
                     "draft decode": lambda: decode_draft(data, config, limit)}, rounds=rounds, warmup=1)
    return {
        "image": "4000x3000 JPEG (q92)", "image_bytes": len(data),
        "full_decode_ms": stats["full decode"].median_ms, "draft_decode_ms": stats["draft decode"].median_ms,
        "speedup": stats["full decode"].median_ms / stats["draft decode"].median_ms,
        "max_abs_diff_normalised": float(np.abs(full - draft).max()),
        "mean_abs_diff_normalised": float(np.abs(full - draft).mean()),
    }


def _post(client, image: bytes):
    def send():
        r = client.post("/v1/classify?top_k=1", content=image, headers={"content-type": "image/jpeg"})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    return send


def overhead_side_by_side(settings: ServingSettings, onnx_path: Path, image: bytes, tensor: np.ndarray, *,
                          log_dir: Path, threads: int | None, rounds: int = 60,
                          variants: dict = GATEWAY_VARIANTS) -> dict:
    """Concurrency 1: bare ORT (child process) and every gateway variant, interleaved."""
    import httpx

    from bench.timing import compare, ort_file_runner
    from hyena_serve.contract import INPUT_NAME

    with ExitStack() as stack:
        alternatives: dict = {"bare ORT": stack.enter_context(
            Subprocess(ort_file_runner, str(onnx_path), INPUT_NAME, tensor, threads, threads=threads))}
        bases = {}
        for i, (name, (env, args)) in enumerate(variants.items()):
            base = stack.enter_context(gateway_process(settings, "embedded", onnx_path=onnx_path, threads=threads,
                                                       log_dir=log_dir, env_overrides=env, uvicorn_args=args,
                                                       tag=f"-v{i}"))
            client = stack.enter_context(httpx.Client(base_url=base, timeout=60.0))
            alternatives[name] = _post(client, image)
            bases[name] = base
        before = {name: scrape_stages(base) for name, base in bases.items()}
        stats = compare(alternatives, rounds=rounds, warmup=settings.warmup, max_seconds=300.0)
        stages = {name: stage_breakdown(before[name], scrape_stages(base)) for name, base in bases.items()}
    bare = stats["bare ORT"].median_ms
    return {
        "rounds": stats["bare ORT"].n,
        "p50_ms": {name: s.median_ms for name, s in stats.items()},
        "p90_ms": {name: s.p90_ms for name, s in stats.items()},
        "overhead_p50_ms": {name: s.median_ms - bare for name, s in stats.items() if name != "bare ORT"},
        "stages": stages,
        "variants": {name: {"env": env, "uvicorn": list(args)} for name, (env, args) in variants.items()},
    }


async def _burst(send: Callable[[], Awaitable[int]], concurrency: int, requests: int) -> tuple[int, float, int]:
    """``requests`` calls by ``concurrency`` workers; (ok, seconds, errors)."""
    counter = {"left": requests, "ok": 0, "err": 0}

    async def worker():
        while counter["left"] > 0:
            counter["left"] -= 1
            try:
                ok = (await send()) == 200
            except Exception:
                ok = False
            counter["ok" if ok else "err"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counter["ok"], time.perf_counter() - t0, counter["err"]


def triton_throughput_side_by_side(settings: ServingSettings, onnx_path: Path, image: bytes, tensor: np.ndarray, *,
                                   log_dir: Path, threads: int | None, concurrency: int = 16, rounds: int = 6,
                                   burst: int = 64) -> dict:
    """Throughput at ``concurrency``: Triton direct vs the gateway in front of the same
    Triton (default settings, and the before-issue-12 variant), in alternating bursts."""
    import httpx
    import tritonclient.http.aio as client_module

    from hyena_serve.contract import INPUT_NAME, OUTPUT_NAME

    with ExitStack() as stack:
        url, model = stack.enter_context(_local_triton(settings, onnx_path, log_dir))
        gateways = {
            "gateway/triton": stack.enter_context(gateway_process(
                settings, "triton", onnx_path=None, threads=threads, log_dir=log_dir, triton_url=url,
                triton_model=model, tag="-now")),
            "gateway/triton before": stack.enter_context(gateway_process(
                settings, "triton", onnx_path=None, threads=threads, log_dir=log_dir, triton_url=url,
                triton_model=model, env_overrides=GATEWAY_VARIANTS["before"][0],
                uvicorn_args=GATEWAY_VARIANTS["before"][1], tag="-before")),
        }

        async def main() -> dict:
            triton = client_module.InferenceServerClient(url, conn_limit=concurrency, conn_timeout=120.0)
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            clients = {name: httpx.AsyncClient(base_url=base, timeout=120.0, limits=limits)
                       for name, base in gateways.items()}
            try:
                async def direct() -> int:
                    inp = client_module.InferInput(INPUT_NAME, list(tensor.shape), "FP32")
                    inp.set_data_from_numpy(tensor)
                    out = client_module.InferRequestedOutput(OUTPUT_NAME, binary_data=True)
                    result = await triton.infer(model, [inp], outputs=[out])
                    return 200 if result.as_numpy(OUTPUT_NAME) is not None else 500

                def via(client):
                    async def send() -> int:
                        r = await client.post("/v1/classify?top_k=1", content=image,
                                              headers={"content-type": "image/jpeg"})
                        return r.status_code
                    return send

                sends = {"triton direct": direct, **{name: via(c) for name, c in clients.items()}}
                for send in sends.values():  # warm-up
                    await _burst(send, concurrency, concurrency)
                totals = {name: [0, 0.0, 0] for name in sends}
                for _ in range(rounds):
                    for name, send in sends.items():
                        ok, seconds, errors = await _burst(send, concurrency, burst)
                        totals[name][0] += ok
                        totals[name][1] += seconds
                        totals[name][2] += errors
                return totals
            finally:
                await triton.close()
                for c in clients.values():
                    await c.aclose()

        totals = asyncio.run(main())
    img_s = {name: ok / seconds for name, (ok, seconds, _) in totals.items()}
    return {
        "concurrency": concurrency, "rounds": rounds, "burst": burst,
        "img_s": img_s,
        "errors": {name: err for name, (_, _, err) in totals.items()},
        "ratio_to_direct": {name: v / img_s["triton direct"] for name, v in img_s.items()},
    }


def side_by_side(settings: ServingSettings, *, cache_dir: Path, log_dir: Path, threads: int | None = None,
                 parts: tuple[str, ...] = ("photo", "overhead", "triton"), rounds: int = 60, log=print) -> dict:
    from bench.timing import environment, load_average

    log_dir.mkdir(parents=True, exist_ok=True)
    image = test_image()
    tensor = preprocessed(image, settings)
    onnx_path = _export(settings, cache_dir, threads)
    out: dict = {"model": settings.model, "res": settings.res, "model_kwargs": settings.model_kwargs,
                 "image_bytes": len(image), "environment": environment(threads), "load_average_before": load_average()}
    if "photo" in parts:
        out["large_photo"] = large_photo(settings)
        log(f"  12 MP photo: {out['large_photo']}")
    if "overhead" in parts:
        out["overhead_c1"] = overhead_side_by_side(settings, onnx_path, image, tensor, log_dir=log_dir,
                                                   threads=threads, rounds=rounds)
        log(f"  overhead at c=1: {out['overhead_c1']['overhead_p50_ms']}")
    if "triton" in parts:
        try:
            out["triton_c16"] = triton_throughput_side_by_side(settings, onnx_path, image, tensor, log_dir=log_dir,
                                                               threads=threads)
            log(f"  throughput at c=16: {out['triton_c16']['img_s']}")
        except Exception as exc:
            out["triton_c16"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if "load" in parts:
        out["load"] = load_test(settings, onnx_path, image, log_dir=log_dir, threads=threads)
        log(f"  load: {out['load']}")
    out["load_average_after"] = load_average()
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def load_test(settings: ServingSettings, onnx_path: Path, image: bytes, *, log_dir: Path, threads: int | None,
              concurrency: int = 64, seconds: float = 60.0, warmup_seconds: float = 10.0) -> dict:
    """Bounded load on the embedded gateway: ``concurrency`` clients for ``seconds`` after a
    warm-up; every request's outcome counted (none may be lost: started == answered), the
    gateway's 429 counter compared with what clients saw, RSS after warm-up and after."""
    import httpx

    info: dict = {}
    with gateway_process(settings, "embedded", onnx_path=onnx_path, threads=threads, log_dir=log_dir,
                         tag="-load", info=info) as base:
        async def drive(duration: float) -> dict:
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(base_url=base, timeout=120.0, limits=limits) as client:
                async def send() -> int:
                    r = await client.post("/v1/classify?top_k=1", content=image, headers={"content-type": "image/jpeg"})
                    return r.status_code

                started = {"n": 0}

                async def counted() -> int:
                    started["n"] += 1
                    return await send()

                level = await _drive(counted, concurrency, 10**9, duration)
                level["started"] = started["n"]
                return level

        asyncio.run(drive(warmup_seconds))
        rss_warm = rss_mb(info["pid"])
        before = httpx.get(base + "/metrics").text
        level = asyncio.run(drive(seconds))
        after = httpx.get(base + "/metrics").text
        rss_end = rss_mb(info["pid"])

    def counter(text: str, name: str, **labels: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rpartition(" ")[2])
        return total

    statuses = level["statuses"]
    return {
        "concurrency": concurrency, "seconds": seconds, "warmup_seconds": warmup_seconds,
        "started": level["started"], "answered": level["requests"], "statuses": statuses,
        "lost": level["started"] - level["requests"],
        "server_5xx": sum(
            counter(after, "hyena_requests_total", status=str(c)) - counter(before, "hyena_requests_total", status=str(c))
            for c in (500, 502, 503, 504)),
        "server_429": counter(after, "hyena_rejected_total", reason="overloaded")
        - counter(before, "hyena_rejected_total", reason="overloaded"),
        "throughput_img_s": level["throughput_img_s"], "latency": level["latency"],
        "rss_after_warmup_mb": rss_warm, "rss_after_run_mb": rss_end, "rss_growth": rss_end / rss_warm - 1,
        "limits": {"max_concurrency": 32, "max_queue": 1024},
    }


def side_by_side_markdown(doc: dict) -> str:
    lines = [f"# Gateway overhead, side by side ({doc['model']} @ {doc['res']} px)", ""]
    env = doc.get("environment", {})
    lines += [f"Host: {env.get('cpu', '?')}, load average before {doc.get('load_average_before')}, after "
              f"{doc.get('load_average_after')}. Alternatives timed in interleaved rounds.", ""]
    o = doc.get("overhead_c1")
    if o:
        lines += ["## Concurrency 1: p50 latency over the bare ONNX Runtime session", "",
                  "| target | p50 ms | p90 ms | overhead p50 ms | decode | preprocess | inference | total (stage means, ms) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, p50 in o["p50_ms"].items():
            st = o["stages"].get(name, {})
            cells = [f"{st[k]['mean_ms']:.2f}" if k in st else "" for k in ("decode", "preprocess", "inference", "total")]
            over = o["overhead_p50_ms"].get(name)
            lines.append(f"| {name} | {p50:.2f} | {o['p90_ms'][name]:.2f} | {'' if over is None else f'{over:+.2f}'} | "
                         + " | ".join(cells) + " |")
        lines += ["", f"{o['rounds']} interleaved rounds.", ""]
    t = doc.get("triton_c16")
    if t and "img_s" in t:
        lines += [f"## Throughput at concurrency {t['concurrency']}: gateway -> Triton vs Triton direct", "",
                  "| target | img/s | ratio to direct | errors |", "|---|---|---|---|"]
        for name, v in t["img_s"].items():
            lines.append(f"| {name} | {v:.1f} | {t['ratio_to_direct'][name]:.2f} | {t['errors'][name]} |")
        lines += ["", f"{t['rounds']} alternating bursts of {t['burst']} requests each.", ""]
    elif t:
        lines += ["## Triton", "", t.get("skipped", ""), ""]
    p = doc.get("large_photo")
    if p:
        lines += ["## 12-megapixel JPEG: decode + preprocess", "",
                  f"{p['image']}, {p['image_bytes']:,} bytes: full decode {p['full_decode_ms']:.1f} ms, JPEG draft "
                  f"mode {p['draft_decode_ms']:.1f} ms ({p['speedup']:.1f}x); model input max |diff| "
                  f"{p['max_abs_diff_normalised']:.3f}, mean {p['mean_abs_diff_normalised']:.4f} (normalised units).", ""]
    ld = doc.get("load")
    if ld:
        lat = ld["latency"]
        lines += [f"## Load: {ld['concurrency']} clients for {ld['seconds']:.0f} s (embedded backend)", "",
                  f"{ld['started']} requests started, {ld['answered']} answered ({ld['lost']} lost); statuses "
                  f"{ld['statuses']}; server 5xx {ld['server_5xx']:.0f}, 429 {ld['server_429']:.0f} (limits: "
                  f"{ld['limits']['max_concurrency']} in progress, {ld['limits']['max_queue']} queued); "
                  f"{ld['throughput_img_s']:.1f} img/s, p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms; "
                  f"gateway RSS {ld['rss_after_warmup_mb']:.0f} MB after warm-up, {ld['rss_after_run_mb']:.0f} MB "
                  f"after the run ({ld['rss_growth']:+.1%}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.serving",
                                description="Gateway overhead levers, the 12 MP photo and gateway->Triton throughput, "
                                            "side by side (interleaved).")
    p.add_argument("--quick", action="store_true", help="hpx_former_s12 at 64 px (the issue's setting)")
    p.add_argument("--parts", default="photo,overhead,triton")
    p.add_argument("--out", type=Path, default=Path("bench/out/serving_side_by_side"))
    p.add_argument("--cache", type=Path, default=Path("bench/out/cache"))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds at concurrency 1")
    args = p.parse_args(argv)
    settings = settings_for(quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = side_by_side(settings, cache_dir=args.cache, log_dir=args.out / "logs", threads=args.threads,
                       parts=tuple(args.parts.split(",")), rounds=args.rounds)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2))
    (args.out / "report.md").write_text(side_by_side_markdown(doc))
    print(side_by_side_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
