"""Shared test configuration: the one GPU marker and its strict mode, deterministic seeds,
small thread pools, no Hugging Face Hub.

GPU tests carry ``pytest.mark.gpu``; on a host without a CUDA GPU they are skipped with a
reason. With ``HYENA_REQUIRE_GPU=1`` (``make gpu-check`` sets it) a GPU test that skips
fails instead, whatever skipped it (this file, ``skipif``, ``pytest.skip``,
``importorskip``), with one exception: on a host where TensorRT is not installed, a skip
whose reason names TensorRT stays a skip. Those are listed at the end of the run, and so
are the skips turned into failures.
"""

from __future__ import annotations

import importlib.util
import os

# Tests never reach the real Hub (the default --weights auto would try it): the Hub tests
# start their own stand-in server in subprocesses with an explicit environment.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

#: Set (to anything but "", "0", "false", "no") to turn skipped GPU tests into failures.
REQUIRE_GPU_ENV = "HYENA_REQUIRE_GPU"
#: A skip reason naming one of these is "needs TensorRT" (case-insensitive).
TENSORRT_WORDS = ("tensorrt", "nvinfer")

pytest_plugins = ("pytester",)  # tests/test_gpu_check.py runs this file's switch in a nested pytest

_ALLOWED = pytest.StashKey[list]()  # (nodeid, reason) of GPU skips kept: TensorRT absent
_FAILED = pytest.StashKey[list]()  # (nodeid, reason) of GPU skips turned into failures


def _has_cuda() -> bool:
    return torch.cuda.is_available()


def require_gpu() -> bool:
    return os.environ.get(REQUIRE_GPU_ENV, "").strip().lower() not in ("", "0", "false", "no")


def tensorrt_installed() -> bool:
    """Whether the ``tensorrt`` Python package can be found (not imported: that is slow)."""
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def skip_allowed(reason: str, tensorrt_present: bool) -> bool:
    """Under ``HYENA_REQUIRE_GPU=1``: may a GPU test skip for ``reason``? Only for want of
    TensorRT, and only where TensorRT really is absent."""
    return not tensorrt_present and any(word in reason.lower() for word in TENSORRT_WORDS)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_configure(config):
    config.stash[_ALLOWED] = []
    config.stash[_FAILED] = []


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU: none on this host")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (not report.skipped or hasattr(report, "wasxfail") or not require_gpu()
            or item.get_closest_marker("gpu") is None):
        return
    reason = _skip_reason(report)
    if skip_allowed(reason, tensorrt_installed()):
        item.config.stash.setdefault(_ALLOWED, []).append((item.nodeid, reason))
        return
    item.config.stash.setdefault(_FAILED, []).append((item.nodeid, reason))
    report.outcome = "failed"
    report.longrepr = (f"{REQUIRE_GPU_ENV}=1: this GPU test skipped ({reason}); only skips for a missing "
                       "TensorRT are allowed, and only where TensorRT is not installed")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not require_gpu():
        return
    allowed, failed = config.stash.get(_ALLOWED, []), config.stash.get(_FAILED, [])
    tr = terminalreporter
    tr.write_sep("=", f"{REQUIRE_GPU_ENV}=1")
    tr.write_line(f"GPU tests skipped because TensorRT is not installed (allowed): {len(allowed)}")
    for reason in sorted({r for _, r in allowed}):
        n = sum(1 for _, r in allowed if r == reason)
        tr.write_line(f"  {n} x {reason}")
    tr.write_line(f"GPU test skips turned into failures: {len(failed)}")
    for nodeid, reason in failed:
        tr.write_line(f"  {nodeid}: {reason}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Many tiny ops: one intra-op thread avoids OpenMP hand-off costs that dominate them
    on a small (and possibly shared) host. Use with ``pytest.mark.usefixtures``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
