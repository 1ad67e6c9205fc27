"""``make gpu-check``: check every GPU piece that does not need TensorRT, with one command.

On a GPU host with CUDA torch, nvcc, CMake and cuFFT (toolkit or the ``nvidia-cufft``
wheel), using the host's Python as it is (no venv, no downloads; the repository put on
the path with ``PYTHONPATH=.``), in order and within one time budget (8 minutes):

1. build the FFTConv plugin's core and CUDA kernels without TensorRT
   (``-DFFTCONV_WITH_TENSORRT=OFF``, target ``fftconv_gpu_check``) under ``build/gpu-check/``;
2. run ``fftconv_gpu_check``: the plugins' enqueue paths (FFTConv in modes 2d, 2d_circular,
   1d_bidir; RFFT2; IRFFT2) against the CPU references at every S18 stage shape and odd
   sizes, fp32/fp16, batch 1→8→3→8 with a plan-creation count, CUDA graph capture;
3. ``pytest -m gpu`` with ``HYENA_REQUIRE_GPU=1`` on the test files that hold GPU tests:
   a skipped GPU test fails, except for want of TensorRT on a host without it;
4. ``python -m bench gpu`` (op level: FFTConv 2d / 1d_bidir / 2d_circular at the S18 stage
   shapes and RFFT2 / IRFFT2 at the aff_former_s18 maps, plugin kernels vs torch; model
   level; JSON + Markdown + PNG in ``bench/out/gpu``).

It ends with a summary of what ran, passed, failed and skipped (and why) and exits 1 on
any failure. Without torch or without a CUDA GPU it prints one line and exits 3.

    python scripts/gpu_check.py [--budget-s 470] [--skip bench] [--build-dir build/gpu-check]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "export" / "plugins" / "fftconv"
TESTS_DIR = ROOT / "tests"
#: The CMake switch that leaves TensorRT out, and the GPU check program it builds.
NO_TENSORRT_OPTION = "FFTCONV_WITH_TENSORRT"
CHECK_TARGET = "fftconv_gpu_check"
REQUIRE_GPU_ENV = "HYENA_REQUIRE_GPU"
#: Tests and benchmarks may reuse the check program built here (its path).
CHECK_EXE_ENV = "HYENA_FFTCONV_GPU_CHECK"
TENSORRT_WORDS = ("tensorrt", "nvinfer")  # as tests/conftest.py: a skip "for want of TensorRT"
DEFAULT_BUDGET_S = 470.0  # the target is under 8 minutes
NO_HOST = 3  # exit status: nothing to check on this host
STEPS = ("build", "plugin", "pytest", "bench")


class Unavailable(Exception):
    """This host cannot run the check at all; the message is the one line to print."""


# --- pure pieces (tested on CPU in tests/test_gpu_check.py) ---------------------------------


def find_nvcc(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for candidate in (env.get("CUDACXX"), shutil.which("nvcc", path=env.get("PATH")),
                      os.path.join(env.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def toolkit_has_cufft(nvcc: str, env: dict[str, str] | None = None) -> bool:
    """Whether the CUDA toolkit of ``nvcc`` ships cuFFT (header and library). Looks beside
    nvcc (after symlinks), then in $CUDA_HOME, $CUDA_PATH and /usr/local/cuda: nvcc may be
    a wrapper script elsewhere."""
    env = os.environ if env is None else env
    roots = [Path(os.path.realpath(nvcc)).parents[1]]
    roots += [Path(p) for p in (env.get("CUDA_HOME"), env.get("CUDA_PATH"), "/usr/local/cuda") if p]
    for root in roots:
        headers = [root / "include" / "cufft.h", *root.glob("targets/*/include/cufft.h")]
        libs = [*root.glob("lib64/libcufft.so*"), *root.glob("lib/libcufft.so*"),
                *root.glob("targets/*/lib/libcufft.so*")]
        if any(h.is_file() for h in headers) and libs:
            return True
    return False


def find_cufft_wheel(search_paths: Sequence[str]) -> tuple[Path, Path] | None:
    """(include dir, library) of cuFFT from an ``nvidia-cufft`` wheel under ``search_paths``
    (site-packages directories): ``nvidia/cu13/{include,lib}`` (CUDA 13 wheels) or
    ``nvidia/cufft/{include,lib}`` (CUDA 12 wheels). Newest layout first."""
    for base in search_paths:
        for sub in ("cu13", "cufft", "cu12"):
            inc = Path(base) / "nvidia" / sub / "include"
            if not (inc / "cufft.h").is_file():
                continue
            libs = sorted((Path(p) for p in glob.glob(str(Path(base) / "nvidia" / sub / "lib" / "libcufft.so*"))),
                          key=lambda p: (p.name != "libcufft.so", len(p.name), p.name))
            libs = [p for p in libs if "cufftw" not in p.name]
            if libs:
                return inc, libs[0]
    return None


def cmake_configure_command(source: Path, build: Path, *, cuda_arch: str | None = None,
                            cufft: tuple[Path, Path] | None = None, nvcc: str | None = None,
                            generator: str | None = None) -> list[str]:
    """The CMake configure line: plugin core + CUDA kernels, no TensorRT, Release."""
    cmd = ["cmake", "-S", str(source), "-B", str(build)]
    if generator:
        cmd += ["-G", generator]
    cmd += [f"-D{NO_TENSORRT_OPTION}=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    if nvcc:
        cmd.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if cuda_arch:
        cmd.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_arch}")
    if cufft is not None:
        cmd += [f"-DCUFFT_INCLUDE_DIR={cufft[0]}", f"-DCUFFT_LIBRARY={cufft[1]}"]
    return cmd


def cmake_build_command(build: Path, jobs: int) -> list[str]:
    return ["cmake", "--build", str(build), "--target", CHECK_TARGET, "-j", str(jobs)]


def gpu_test_files(tests_dir: Path) -> list[Path]:
    """Test files that hold GPU tests (they mention ``mark.gpu``). Only these are collected,
    so test files needing the serving extras (FastAPI, ...) that this host lacks are not."""
    return sorted(p for p in tests_dir.glob("test_*.py") if "mark.gpu" in p.read_text(encoding="utf-8"))


def names_tensorrt(reason: str) -> bool:
    return any(word in reason.lower() for word in TENSORRT_WORDS)


def tensorrt_installed() -> bool:
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def skip_allowed(reason: str, tensorrt_present: bool) -> bool:
    """The rule of tests/conftest.py: a GPU test may skip only for want of TensorRT, and
    only where TensorRT is not installed."""
    return not tensorrt_present and names_tensorrt(reason)


def parse_check_counts(text: str) -> tuple[int, int] | None:
    """(passed, failed) from the last ``N passed, M failed`` line of the check program."""
    found = re.findall(r"(\d+) passed, (\d+) failed", text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


@dataclass
class PytestResult:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (test id, reason)
    xfailed: int = 0

    def skip_groups(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for _, reason in self.skipped:
            groups[reason] = groups.get(reason, 0) + 1
        return groups


def parse_junit(xml_text: str) -> PytestResult:
    """Counts and skip reasons of a pytest ``--junitxml`` report."""
    res = PytestResult()
    for case in ET.fromstring(xml_text).iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            res.failed += 1
        elif "error" in kinds:
            res.errors += 1
        elif "skipped" in kinds:
            skip = kinds["skipped"]
            if skip.get("type") == "pytest.xfail":
                res.xfailed += 1
            else:
                message = skip.get("message") or (skip.text or "").strip()
                res.skipped.append((name, message.removeprefix("Skipped: ").strip()))
        else:
            res.passed += 1
    return res


def no_gpu_reason() -> str | None:
    """One line saying why this host has nothing to check, or None when it has a CUDA GPU."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising anything else
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return (f"gpu-check: torch is not importable by {sys.executable} ({type(exc).__name__}: {first}); "
                "install a CUDA build of torch for this Python or run with PYTHON=<python with CUDA torch>")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA initialization: no driver found" and the like
        available = torch.cuda.is_available()
    if not available:
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return (f"gpu-check: no CUDA GPU visible (torch.cuda.is_available() is False; torch {torch.__version__} "
                f"is {build}); nothing to check on this host")
    return None


# --- running steps ------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    what: str
    status: str = "not run"  # passed | failed | skipped | not run
    seconds: float = 0.0
    detail: str = ""
    skips: list[str] = field(default_factory=list)  # "why" lines for the summary


def run_logged(cmd: Sequence[str], log_path: Path, *, timeout: float, env: dict | None = None,
               cwd: Path = ROOT, echo: bool = True) -> tuple[int, str]:
    """Run ``cmd``; its output goes to the console (if ``echo``) and to ``log_path``.
    Returns (exit status, output); status 124 when it ran past ``timeout`` (then killed)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1, start_new_session=True)
        except OSError as exc:
            log.write(f"cannot start: {exc}\n")
            return 127, f"cannot start {cmd[0]}: {exc}"

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                chunks.append(line)
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            rc = 124
        reader.join(10)
        if rc == 124:
            msg = f"\n[gpu-check] killed after {timeout:.0f} s (time budget)\n"
            chunks.append(msg)
            log.write(msg)
    return rc, "".join(chunks)


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


class Checker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.build_dir: Path = args.build_dir if args.build_dir.is_absolute() else ROOT / args.build_dir
        self.cmake_dir = self.build_dir / "fftconv"
        self.log_dir = self.build_dir / "logs"
        self.deadline = time.monotonic() + args.budget_s
        self.exe: Path | None = None
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH")) if p)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.steps = {
            "build": Step("build", "plugin core + CUDA kernels without TensorRT (CMake)"),
            "plugin": Step("plugin", f"{CHECK_TARGET}: enqueue path vs CPU reference"),
            "pytest": Step("pytest", f"pytest -m gpu with {REQUIRE_GPU_ENV}=1"),
            "bench": Step("bench", "python -m bench gpu"),
        }

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout_for(self, cap: float, reserve: float = 0.0) -> float:
        return max(1.0, min(cap, self.remaining() - reserve))

    def banner(self, text: str) -> None:
        print(f"\n[gpu-check] {text} ({max(self.remaining(), 0):.0f} s of the budget left)", flush=True)

    # step 1
    def build(self, step: Step) -> None:
        nvcc = find_nvcc(self.env)
        cmake = shutil.which("cmake", path=self.env.get("PATH"))
        if cmake is None or nvcc is None:
            missing = ", ".join(n for n, v in (("cmake", cmake), ("nvcc (PATH, $CUDACXX, $CUDA_HOME/bin)", nvcc))
                                if v is None)
            step.status, step.detail = "failed", f"not found: {missing}"
            return
        import site

        wheel = find_cufft_wheel([*site.getsitepackages(), site.getusersitepackages(), *sys.path])
        in_toolkit = toolkit_has_cufft(nvcc, self.env)
        cufft = None if in_toolkit else wheel
        if not in_toolkit and wheel is None:
            print("[gpu-check] no cufft.h/libcufft found beside nvcc or as the nvidia-cufft wheel; "
                  "CMake will look for it", flush=True)
        generator = "Ninja" if shutil.which("ninja", path=self.env.get("PATH")) else None
        if (self.cmake_dir / "CMakeCache.txt").is_file():
            generator = None  # an existing build tree keeps its generator
        arch = self.args.cuda_arch or cuda_arch()

        def configure(cufft):
            cmd = cmake_configure_command(PLUGIN_DIR, self.cmake_dir, cuda_arch=arch, cufft=cufft, nvcc=nvcc,
                                          generator=generator)
            return run_logged(cmd, self.log_dir / "cmake_configure.log", timeout=self.timeout_for(120, 240),
                              env=self.env)

        rc, out = configure(cufft)
        if rc != 0 and cufft is None and wheel is not None:
            print("[gpu-check] configuring with the toolkit's cuFFT failed; retrying with the nvidia-cufft wheel",
                  flush=True)
            cufft = wheel
            rc, out = configure(cufft)
        if rc != 0:
            step.status, step.detail = "failed", f"CMake configure exited {rc}:\n{_tail(out)}"
            return
        if cufft is not None:  # the check program finds the wheel's libcufft through this too
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(cufft[1].parent), self.env.get("LD_LIBRARY_PATH")) if p)
        rc, out = run_logged(cmake_build_command(self.cmake_dir, os.cpu_count() or 4),
                             self.log_dir / "cmake_build.log", timeout=self.timeout_for(300, 200), env=self.env)
        exe = self.cmake_dir / CHECK_TARGET
        if rc != 0 or not exe.is_file():
            step.status = "failed"
            step.detail = f"build exited {rc}" + ("" if exe.is_file() else f", no {exe}") + f":\n{_tail(out)}"
            return
        self.exe = exe
        self.env[CHECK_EXE_ENV] = str(exe)
        step.status = "passed"
        step.detail = f"{_rel(exe)}" + (
            f" (cuFFT from the wheel: {cufft[1]})" if cufft else " (cuFFT from the CUDA toolkit)")

    # step 2
    def plugin(self, step: Step) -> None:
        if self.exe is None:
            step.status, step.detail = "failed", "not run: the build failed"
            return
        rc, out = run_logged([str(self.exe)], self.log_dir / "fftconv_gpu_check.log",
                             timeout=self.timeout_for(180, 200), env=self.env)
        counts = parse_check_counts(out)
        step.detail = f"{counts[0]} passed, {counts[1]} failed" if counts else "no 'N passed, M failed' line"
        if rc != 0:
            step.detail += f"; exited {rc}:\n{_tail(out)}"
        step.status = "passed" if rc == 0 and counts is not None and counts[1] == 0 else "failed"

    # step 3
    def pytest(self, step: Step) -> None:
        files = gpu_test_files(TESTS_DIR)
        junit = self.log_dir / "pytest_gpu.xml"
        junit.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-rs", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *[str(f.relative_to(ROOT)) for f in files]]
        env = dict(self.env, **{REQUIRE_GPU_ENV: "1"})
        rc, out = run_logged(cmd, self.log_dir / "pytest_gpu.log", timeout=self.timeout_for(300, 150), env=env)
        if not junit.is_file():
            step.status, step.detail = "failed", f"pytest exited {rc} without a report:\n{_tail(out)}"
            return
        res = parse_junit(junit.read_text(encoding="utf-8"))
        step.detail = (f"{res.passed} passed, {res.failed} failed, {res.errors} errors, {len(res.skipped)} skipped"
                       + (f", {res.xfailed} xfailed" if res.xfailed else "") + f" in {len(files)} files")
        trt = tensorrt_installed()
        bad_skips = [(n, r) for n, r in res.skipped if not skip_allowed(r, trt)]
        for reason, n in res.skip_groups().items():
            step.skips.append(f"{n} test{'s' if n > 1 else ''}: {reason}")
        for name, reason in bad_skips:  # the conftest should have failed these; a module-level skip lands here
            step.skips.append(f"NOT ALLOWED: {name}: {reason}")
        ok = rc == 0 and res.failed == 0 and res.errors == 0 and not bad_skips and res.passed > 0
        step.status = "passed" if ok else "failed"
        if rc not in (0, 1) or res.passed == 0:
            step.detail += f"; pytest exited {rc}"

    # step 4
    def bench(self, step: Step) -> None:
        out_dir = self.args.bench_out if self.args.bench_out.is_absolute() else ROOT / self.args.bench_out
        (out_dir / "results.json").unlink(missing_ok=True)  # never read an earlier run's
        cmd = [sys.executable, "-m", "bench", "gpu", "--out", str(out_dir),
               "--budget-s", f"{max(self.remaining() - 20, 30):.0f}"]
        cmd += ["--plugin-exe", str(self.exe)] if self.exe is not None else ["--no-plugin"]
        # The benchmark keeps to --budget-s itself (no new torch.compile once it is spent); the
        # hard limit leaves room for a compile under way, so its results are not lost.
        rc, out = run_logged(cmd, self.log_dir / "bench_gpu.log", timeout=max(self.remaining(), 60) + 120,
                             env=self.env)
        results = out_dir / "results.json"
        doc = {}
        if results.is_file():
            try:
                doc = json.loads(results.read_text(encoding="utf-8"))
            except ValueError:
                doc = {}
        for key, why in (doc.get("skipped") or {}).items():
            step.skips.append(f"{key}: {why}")
        errors = doc.get("errors") or {}
        step.detail = f"{_rel(out_dir / 'report.md')}" if results.is_file() else "no results.json"
        if errors:
            step.detail += "; errors in: " + ", ".join(errors)
        if self.exe is None:
            step.skips.append("plugin kernels: not timed (the build failed)")
        step.status = "passed" if rc == 0 and results.is_file() and not errors else "failed"
        if rc != 0:
            step.detail += f"; exited {rc}:\n{_tail(out, 15)}"

    def run(self) -> int:
        import torch

        started = time.monotonic()
        gpu = torch.cuda.get_device_name(0)
        print(f"[gpu-check] {gpu}, torch {torch.__version__} (CUDA {torch.version.cuda}), {sys.executable}; "
              f"budget {self.args.budget_s:.0f} s; logs in {self.log_dir}", flush=True)
        for name in STEPS:
            step = self.steps[name]
            if name in self.args.skip:
                step.status, step.detail = "skipped", "--skip " + name
                continue
            if self.remaining() <= 5:
                step.status, step.detail = "failed", "not run: the time budget was spent"
                continue
            self.banner(f"{name}: {step.what}")
            t0 = time.monotonic()
            getattr(self, name)(step)
            step.seconds = time.monotonic() - t0
        return self.summary(gpu, time.monotonic() - started)

    def summary(self, gpu: str, seconds: float) -> int:
        """Print what ran, passed, failed and skipped (and why); also to logs/summary.txt."""
        lines = ["=" * 30 + f" gpu-check summary ({gpu}) " + "=" * 30]
        for step in self.steps.values():
            first, *rest = (step.detail or "").splitlines() or [""]
            lines.append(f"{step.status.upper():8s} {step.name:7s} {step.what} ({step.seconds:.0f} s): {first}")
            lines += [f"         {line}" for line in rest]
        skips = [(s.name, why) for s in self.steps.values() for why in s.skips]
        if skips:
            lines.append("skipped, and why:")
            lines += [f"  - {name}: {why}" for name, why in skips]
        failed = [s.name for s in self.steps.values() if s.status in ("failed", "not run")]
        over = seconds > self.args.budget_s + 30
        verdict = "FAILED (" + ", ".join(failed) + ")" if failed else "PASSED"
        lines.append(f"gpu-check: {verdict} in {seconds / 60:.1f} min"
                     + (f" (over the {self.args.budget_s:.0f} s budget)" if over else ""))
        print("\n" + "\n".join(lines), flush=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return 1 if failed else 0


def cuda_arch() -> str | None:
    """``CMAKE_CUDA_ARCHITECTURES`` for the visible GPU (e.g. "90"), so only its code is built."""
    try:
        import torch

        major, minor = torch.cuda.get_device_capability(0)
    except Exception:
        return None
    return f"{major}{minor}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0],
                                epilog="docs/gpu.md has the details.")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                   help=f"time budget of the whole check in seconds (default {DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--build-dir", type=Path, default=ROOT / "build" / "gpu-check",
                   help="CMake build tree and logs (default build/gpu-check)")
    p.add_argument("--bench-out", type=Path, default=Path("bench/out/gpu"),
                   help="where python -m bench gpu writes (default bench/out/gpu)")
    p.add_argument("--cuda-arch", help="CMAKE_CUDA_ARCHITECTURES (default: the visible GPU's, e.g. 90)")
    p.add_argument("--skip", action="append", default=[], choices=STEPS, help="leave a step out (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reason = no_gpu_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return NO_HOST
    return Checker(args).run()


if __name__ == "__main__":
    sys.exit(main())
