"""Timing done one way everywhere: warm-ups, interleaved rounds, medians and percentiles.

Alternatives are timed in interleaved rounds (A, B, A, B, ...) rather than one after the
other, so a change of machine load during the run hits all of them alike and their
ratio stays meaningful on a shared 2-core host.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Latency statistics of one alternative, in milliseconds."""

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


def _time_once(fn: Callable[[], object], sync: Callable[[], None] | None) -> float:
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def compare(
    alternatives: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 10,
    warmup: int = 2,
    max_seconds: float | None = None,
    sync: Callable[[], None] | None = None,
) -> dict[str, Stats]:
    """Time each callable ``rounds`` times, interleaved, after ``warmup`` untimed calls each.

    ``max_seconds`` bounds the whole comparison: rounds stop early (after at least 3) once
    it is spent, so one very slow alternative cannot stall a ``--quick`` run.
    ``sync`` runs after each call inside the timed region (e.g. ``torch.cuda.synchronize``).
    """
    for fn in alternatives.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in alternatives}
    deadline = None if max_seconds is None else time.perf_counter() + max_seconds
    for i in range(rounds):
        for name, fn in alternatives.items():
            samples[name].append(_time_once(fn, sync))
        if deadline is not None and i >= 2 and time.perf_counter() > deadline:
            break
    return {name: Stats.of(s) for name, s in samples.items()}


def ratios(stats: Mapping[str, Stats], baseline: str) -> dict[str, float]:
    """Median of the baseline divided by each alternative's median (> 1: faster than baseline)."""
    base = stats[baseline].median_ms
    return {name: base / s.median_ms for name, s in stats.items()}


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


def environment(threads: int | None = None) -> dict:
    """What a reader needs to interpret the numbers: hardware, versions, threads, revision."""
    import torch

    env = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_revision": _git_revision(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env
