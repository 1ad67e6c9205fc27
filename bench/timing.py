"""Timing done one way everywhere: warm-ups, interleaved rounds, medians and percentiles.

Alternatives are timed in interleaved rounds (A, B, A, B, ...) rather than one after the
other, so a change of machine load during the run hits all of them alike and their
ratio stays meaningful on a shared 2-core host.

An alternative is either a callable (timed in this process) or a :class:`Subprocess`: a
callable built and timed inside a child process that the rounds drive one call at a
time. Torch and ONNX Runtime in one process slow torch's FFT down about 2× (docs/design.md §6),
so ORT alternatives run in their own process; only one process computes at any moment.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Latency statistics of one alternative, in milliseconds (``median_ms`` is p50)."""

    n: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        ms = np.asarray(seconds) * 1e3
        return cls(
            n=len(ms),
            median_ms=float(np.median(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
        )

    def as_dict(self) -> dict:
        return asdict(self)


# --- memory -------------------------------------------------------------------------------


def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process (since start or the last :func:`reset_peak_rss`)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux
    return kb / 1024


def peak_memory(cuda: bool = False) -> dict:
    """Peak host RSS, and peak CUDA allocation when timing on a GPU."""
    out = {"peak_rss_mb": round(peak_rss_mb(), 1)}
    if cuda:
        import torch

        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# --- threads ------------------------------------------------------------------------------

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Idle OpenMP threads sleep instead of spinning. With spinning, torch's 2 threads on a
#: loaded 2-core host (or next to an ORT process) turn a 0.7 ms op into ~100 ms. It only
#: takes effect if set before torch is imported: ``python -m bench`` does so.
OMP_WAIT_POLICY = "PASSIVE"


def pin_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads in torch here and in child processes started later."""
    import torch

    for var in _THREAD_ENV:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel region; harmless if late
        pass
    return torch.get_num_threads()


# --- alternatives in a child process --------------------------------------------------------


def _child_main(recv_fd: int, send_fd: int) -> None:
    """Body of a :class:`Subprocess` child: build the callable, then serve commands."""
    from multiprocessing.connection import Connection

    conn_in, conn_out = Connection(recv_fd, writable=False), Connection(send_fd, readable=False)
    cuda = False
    try:
        factory, args, cuda = conn_in.recv()
        started = time.perf_counter()
        fn = factory(*args)
        conn_out.send(("ready", time.perf_counter() - started))
    except BaseException:  # report any failure to the parent instead of dying silently
        conn_out.send(("error", traceback.format_exc()))
        return
    sync = _cuda_sync if cuda else None
    while True:
        try:
            cmd, n = conn_in.recv()
        except EOFError:
            return
        try:
            if cmd == "warmup":
                for _ in range(n):
                    fn()
                conn_out.send(("ok", None))
            elif cmd == "time":
                conn_out.send(("ok", [_time_once(fn, sync, cuda) for _ in range(n)]))
            elif cmd == "memory":
                conn_out.send(("ok", peak_memory(cuda)))
            elif cmd == "load":
                fn = None
                factory, args = n
                started = time.perf_counter()
                fn = factory(*args)
                conn_out.send(("ok", time.perf_counter() - started))
            else:
                conn_out.send(("ok", None))
                return
        except BaseException:
            conn_out.send(("error", traceback.format_exc()))
            return


class SubprocessError(RuntimeError):
    pass


class Subprocess:
    """A callable built by ``factory(*args)`` in a fresh (spawned) process and timed there.

    ``factory`` must be importable (a module-level function). The parent blocks while the
    child computes, so interleaving with in-process alternatives keeps one process busy at
    a time. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, factory: Callable[..., Callable[[], object]], *args, threads: int | None = None,
                 cuda: bool = False, start_timeout: float = 1800.0,
                 env_overrides: Mapping[str, str | None] | None = None) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
        for var, value in (env_overrides or {}).items():  # None: unset, the library's default
            if value is None:
                env.pop(var, None)
            else:
                env[var] = value
        if threads is not None:
            env.update({var: str(threads) for var in _THREAD_ENV})
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        code = f"from bench.timing import _child_main; _child_main({to_child_r}, {from_child_w})"
        self._proc = subprocess.Popen([sys.executable, "-c", code], env=env, pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._conn = Connection(from_child_r, writable=False)
        self._send.send((factory, args, cuda))
        self.setup_seconds = float(self._reply(start_timeout, expect="ready"))

    def _reply(self, timeout: float, expect: str = "ok"):
        if not self._conn.poll(timeout):
            self.close()
            raise SubprocessError(f"child process gave no answer within {timeout:.0f} s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            self.close()
            raise SubprocessError("child process died") from None
        if status == "error":
            self.close()
            raise SubprocessError(value.strip().splitlines()[-1] if value.strip() else "child failed") from None
        if status != expect:
            raise SubprocessError(f"unexpected reply {status!r} from the child process")
        return value

    def _call(self, cmd: str, n: int = 0, timeout: float = 3600.0):
        self._send.send((cmd, n))
        return self._reply(timeout)

    def load(self, factory: Callable[..., Callable[[], object]], *args, timeout: float = 1800.0) -> float:
        """Replace the child's callable by ``factory(*args)`` (reuses the process); returns setup seconds."""
        self.setup_seconds = float(self._call("load", (factory, args), timeout))
        return self.setup_seconds

    def warmup(self, n: int) -> None:
        self._call("warmup", n)

    def time(self, n: int = 1) -> list[float]:
        return self._call("time", n)

    def memory(self) -> dict:
        return self._call("memory")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._send.send(("close", 0))
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.terminate()
                self._proc.wait(5)
        for conn in (self._send, self._conn):
            conn.close()

    def __enter__(self) -> Subprocess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- timing -------------------------------------------------------------------------------


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def _time_once(fn: Callable[[], object], sync: Callable[[], None] | None, cuda: bool = False) -> float:
    if cuda:  # CUDA events time the device work; the host clock would time the launch
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


Alternative = Callable[[], object] | Subprocess


def compare(
    alternatives: Mapping[str, Alternative],
    *,
    rounds: int = 10,
    warmup: int = 2,
    max_seconds: float | None = None,
    sync: Callable[[], None] | None = None,
    cuda: bool = False,
    progress: Callable[[], None] | None = None,
) -> dict[str, Stats]:
    """Time each alternative ``rounds`` times, interleaved, after ``warmup`` untimed calls each.

    ``max_seconds`` bounds the whole comparison: rounds stop early (after at least 3) once
    it is spent, so one very slow alternative cannot stall a ``--quick`` run.
    ``sync`` runs after each call inside the timed region (e.g. ``torch.cuda.synchronize``);
    ``cuda=True`` times with CUDA events instead. ``progress`` is called after each round.
    """
    for fn in alternatives.values():
        if isinstance(fn, Subprocess):
            fn.warmup(warmup)
        else:
            for _ in range(warmup):
                fn()
    samples: dict[str, list[float]] = {name: [] for name in alternatives}
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    for i in range(rounds):
        for name, fn in alternatives.items():
            if isinstance(fn, Subprocess):
                samples[name].extend(fn.time(1))
            else:
                samples[name].append(_time_once(fn, sync, cuda))
        if progress is not None:
            progress()
        if deadline is not None and i >= 2 and time.perf_counter() > deadline:
            break
    return {name: Stats.of(s) for name, s in samples.items()}


def ratios(stats: Mapping[str, Stats], baseline: str) -> dict[str, float]:
    """Median of the baseline divided by each alternative's median (> 1: faster than baseline)."""
    base = stats[baseline].median_ms
    return {name: base / s.median_ms for name, s in stats.items()}


def latency_stats(seconds: list[float]) -> dict:
    """p50/p90/p99/mean/max in ms of a list of request latencies (empty list → None values)."""
    if not seconds:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


# --- environment --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(threads: int | None = None) -> dict:
    """What a reader needs to interpret the numbers: hardware, load, versions, threads, revision."""
    import torch

    env = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": load_average(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "thread_env": {var: os.environ.get(var) for var in (*_THREAD_ENV, "OMP_WAIT_POLICY")},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_revision": _git_revision(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for module in ("onnxruntime", "onnx", "tritonclient", "fastapi", "uvicorn"):
        try:
            env[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            pass
    return env


def ort_runner(model_bytes: bytes, feeds: dict, threads: int | None = None) -> Callable[[], object]:
    """An ONNX Runtime session (CPU, ``threads`` intra-op threads) over ``model_bytes``, as a
    no-argument callable that runs ``feeds``. Importable without torch, so a
    :class:`Subprocess` running it stays a torch-free process."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # No spin-waiting after a run: the other alternatives' processes need the cores next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feeds)


def ort_file_runner(path: str, input_name: str, batch: np.ndarray, threads: int | None = None) -> Callable[[], object]:
    """:func:`ort_runner` over an ONNX file (read in the child, so large models never cross the pipe)."""
    with open(path, "rb") as f:
        return ort_runner(f.read(), {input_name: batch}, threads)


def idle() -> Callable[[], None]:
    """Callable of a :class:`Subprocess` started before it has work (``load`` replaces it)."""
    return _nothing


def _nothing() -> None:
    return None
