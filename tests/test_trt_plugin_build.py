"""Build checks for the TensorRT plugin library of export/plugins/fftconv/: hyena::FFTConv
(modes 2d, 2d_circular, 1d_bidir), hyena::RFFT2 and hyena::IRFFT2.

What runs on a CPU host:
- the CPU core + its test program (g++), run: planning, validation, workspace sizes,
  serialisation, and CPU emulations of the kernel pipelines against a direct (linear or
  circular) convolution and against the RFFT2/IRFFT2 DFT sums;
- the same emulations (tests/fftconv_emulate.cpp) against ``torch.ops.hyena.rfft2`` /
  ``irfft2`` / ``fft_conv`` (float64) at odd, 1-row, 1-column and 1x1 sizes: the plugins and
  the torch ops implement one contract (layout, scale, crop start, DC/Nyquist handling);
- the CUDA sources compiled with nvcc (sm_80 object, compute_90 PTX) against cufft.h from
  the ``nvidia-cufft`` wheel or the CUDA toolkit;
- the TensorRT glue, only where TensorRT headers exist (TENSORRT_ROOT / TensorRT_INCLUDE_DIR
  or standard paths): compiled, then linked with a mock plugin registry and run;
- the CMake configure step finding TensorRT the way NVIDIA's wheels ship it (a versioned
  ``libnvinfer.so.11`` without headers, plus a separate include dir), with stand-in files;
- the full CMake plugin build against real TensorRT headers (where present, as for the glue)
  and a stub ``libnvinfer.so.<major>``
  (linked with ``--no-undefined``; exports: the two TensorRT entry points + the plan counter);
- the no-TensorRT CMake build (``-DFFTCONV_WITH_TENSORRT=OFF``): the CUDA core library
  ``fftconv_cuda`` and the GPU check ``fftconv_gpu_check``, compiled and linked against
  libcufft (it needs a GPU to run: ``make gpu-check`` runs it).

Every artifact goes to pytest tmp dirs. GPU numerics run in fftconv_gpu_check, not here.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hyena_serve import contract

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "export" / "plugins" / "fftconv"
TIMEOUT = 600


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def _nvcc() -> str | None:
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None
    )


def _cuda_root() -> Path | None:
    """The CUDA toolkit nvcc belongs to (nvcc may be a wrapper script on PATH)."""
    nvcc = _nvcc()
    if nvcc is None:
        return None
    cands = [Path(os.path.realpath(nvcc)).parents[1]]
    cands += [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    cands += [Path("/usr/local/cuda")]
    for root in cands:
        if (root / "include" / "cuda_runtime_api.h").exists() or glob.glob(
            str(root / "targets" / "*" / "include" / "cuda_runtime_api.h")
        ):
            return root
    return None


def _cuda_include() -> Path | None:
    root = _cuda_root()
    if root is None:
        return None
    for cand in [root / "include", *map(Path, sorted(glob.glob(str(root / "targets" / "*" / "include"))))]:
        if (cand / "cuda_runtime_api.h").exists():
            return cand
    return None


def _cufft_dirs() -> tuple[Path, Path | None] | None:
    """(include dir holding cufft.h, lib dir holding libcufft.so*) from the nvidia-cufft
    wheel (nvidia/cu13/... or nvidia/cufft/...) or the CUDA toolkit."""
    candidates: list[Path] = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if base.is_dir():
            candidates += [Path(p).parent for p in sorted(glob.glob(str(base / "*" / "include" / "cufft.h")))]
    cuda_inc = _cuda_include()
    if cuda_inc is not None and (cuda_inc / "cufft.h").exists():
        candidates.append(cuda_inc)
    for inc in candidates:
        lib = None
        for libdir in (inc.parent / "lib", inc.parent / "lib64"):
            if glob.glob(str(libdir / "libcufft.so*")):
                lib = libdir
                break
        return inc, lib
    return None


def _tensorrt_include() -> tuple[Path | None, list[str]]:
    tried: list[str] = []
    cands: list[Path] = []
    if os.environ.get("TensorRT_INCLUDE_DIR"):
        cands.append(Path(os.environ["TensorRT_INCLUDE_DIR"]))
    if os.environ.get("TENSORRT_ROOT"):
        cands.append(Path(os.environ["TENSORRT_ROOT"]) / "include")
    cands += [
        Path("/usr/include/x86_64-linux-gnu"),
        Path("/usr/local/tensorrt/include"),
        Path("/opt/tensorrt/include"),
        Path("/usr/include"),
    ]
    for c in cands:
        tried.append(str(c))
        if (c / "NvInfer.h").exists() and (c / "NvInferRuntime.h").exists():
            return c, tried
    return None, tried


def test_plugin_names_match_contract():
    header = (PLUGIN_DIR / "fftconv_core.h").read_text()
    assert f'kPluginName = "{contract.PLUGIN_NAME}"' in header
    assert f'kPluginNamespace = "{contract.PLUGIN_NAMESPACE}"' in header
    assert f'kPluginVersion = "{contract.PLUGIN_VERSION}"' in header
    assert f'kModeName2D = "{contract.MODE_2D}"' in header
    assert f'kModeName1DBidir = "{contract.MODE_1D_BIDIR}"' in header
    assert f'kModeName2DCircular = "{contract.MODE_2D_CIRCULAR}"' in header
    assert f'kFieldSpatialSize = "spatial_size"' in header
    spectral = (PLUGIN_DIR / "spectral_core.h").read_text()
    assert f'kRfft2PluginName = "{contract.RFFT2_PLUGIN_NAME}"' in spectral
    assert f'kIrfft2PluginName = "{contract.IRFFT2_PLUGIN_NAME}"' in spectral


def test_core_builds_and_passes(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not installed: cannot build the FFTConv CPU core test")
    exe = tmp_path / "fftconv_core_test"
    _run([cxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Wpedantic", "-Werror", f"-I{PLUGIN_DIR}",
          PLUGIN_DIR / "fftconv_core.cpp", PLUGIN_DIR / "spectral_core.cpp",
          PLUGIN_DIR / "tests" / "fftconv_core_test.cpp", "-o", exe])
    out = _run([exe]).stdout
    assert "all" in out and "checks passed" in out


CUDA_SOURCES = ("fftconv_kernels.cu", "spectral_kernels.cu")
GLUE_SOURCES = ("fftconv_plugin.cpp", "spectral_plugin.cpp", "plugin_common.cpp")
CORE_SOURCES = ("fftconv_core.cpp", "spectral_core.cpp")


# ---- the plugin's CPU emulation against the torch ops of the same contract -------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> Path:
    """tests/fftconv_emulate.cpp built: the plugins' planning + kernel index math (emulated
    with a naive DFT in double precision) as a stdin -> stdout filter."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not installed: cannot build the FFTConv emulator")
    exe = tmp_path_factory.mktemp("emulate") / "fftconv_emulate"
    _run([cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", f"-I{PLUGIN_DIR}",
          *(PLUGIN_DIR / src for src in CORE_SOURCES), PLUGIN_DIR / "tests" / "fftconv_emulate.cpp", "-o", exe])
    return exe


def _emulate(exe: Path, header: str, *arrays) -> "np.ndarray":
    import numpy as np

    data = header.encode() + b"\n" + b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in arrays)
    proc = subprocess.run([str(exe)], input=data, capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return np.frombuffer(proc.stdout, np.float64)


# The emulation computes in double but, like the kernels, applies the transform scale as a
# float32 constant (1/sqrt(H*W) or 1/(Nh*Nw), relative rounding <= 6e-8): hence 1e-6, far
# below any layout, scale or DC/Nyquist mistake (those are O(1)).
TOL_EMULATION = 1e-6


def _rel(got, want) -> float:
    import numpy as np

    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


# Shapes: even/odd W and H, 1-row and 1-column maps.
SPECTRAL_SHAPES = [(2, 3, 5, 7), (1, 2, 6, 4), (2, 1, 9, 9), (1, 1, 1, 6), (2, 2, 4, 1)]


@pytest.mark.parametrize("n, c, h, w", SPECTRAL_SHAPES)
def test_emulated_rfft2_irfft2_match_the_torch_ops(emulator, n, c, h, w):
    """The plugins' RFFT2/IRFFT2 pipelines (planar layout, ortho scale, DC/Nyquist handling on
    a non-Hermitian spectrum) agree with torch.ops.hyena.rfft2/irfft2 in float64."""
    torch = pytest.importorskip("torch")
    import numpy as np

    import hyena_serve.ops  # noqa: F401  (registers torch.ops.hyena.*)

    rng = np.random.default_rng(h * 31 + w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    got = _emulate(emulator, f"rfft2 {n} {c} {h} {w}", x)
    want = torch.ops.hyena.rfft2(torch.from_numpy(x).double()).numpy()
    assert got.shape == (want.size,) and _rel(got, want.ravel()) < TOL_EMULATION
    spec = rng.standard_normal((n, 2 * c, h, w // 2 + 1)).astype(np.float32)  # not Hermitian
    got = _emulate(emulator, f"irfft2 {n} {c} {h} {w}", spec)
    want = torch.ops.hyena.irfft2(torch.from_numpy(spec).double(), w).numpy()
    assert got.shape == (want.size,) and _rel(got, want.ravel()) < TOL_EMULATION


@pytest.mark.parametrize("mode, n, c, h, w, kernel", [
    ("2d_circular", 2, 3, 7, 5, None), ("2d_circular", 1, 2, 6, 6, None), ("2d_circular", 2, 2, 1, 1, None),
    ("2d_circular", 1, 2, 1, 6, None), ("2d", 2, 2, 5, 6, (3, 5)), ("1d_bidir", 1, 2, 3, 4, 7),
])
def test_emulated_fftconv_matches_the_torch_op(emulator, mode, n, c, h, w, kernel):
    """FFTConv's pipeline as the plugin plans it (crop start 0 in 2d_circular, k//2 in the
    linear modes) agrees with torch.ops.hyena.fft_conv on the exporter's Kf, in float64."""
    torch = pytest.importorskip("torch")
    import numpy as np

    import hyena_serve.ops  # noqa: F401
    from hyena_serve.ops.spectrum import filter_spectrum

    plan = contract.plan_fft(mode, h, w, kernel)
    rng = np.random.default_rng(7 * h + w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    k = torch.from_numpy(rng.standard_normal((c, *plan.kernel))).double()
    kf = filter_spectrum(k, plan).float().numpy()
    d = rng.standard_normal(c).astype(np.float32)
    header = (f"fftconv {mode} {n} {c} {h} {w} {len(plan.kernel)} {' '.join(map(str, plan.kernel))} "
              f"{len(plan.fft)} {' '.join(map(str, plan.fft))}")
    got = _emulate(emulator, header, x, kf, d)
    want = torch.ops.hyena.fft_conv(torch.from_numpy(x).double(), torch.from_numpy(kf).double(),
                                    torch.from_numpy(d).double(), mode, list(plan.kernel), list(plan.fft)).numpy()
    assert got.shape == (want.size,) and _rel(got, want.ravel()) < TOL_EMULATION


def test_emulator_refuses_what_the_plugin_refuses(emulator):
    # A circular node whose map is not the transform, and a transform of no channels.
    data = b"fftconv 2d_circular 1 1 4 4 2 3 3 2 3 3\n" + bytes(4 * 64)
    proc = subprocess.run([str(emulator)], input=data, capture_output=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 1 and b"must equal fft_size" in proc.stderr
    proc = subprocess.run([str(emulator)], input=b"rfft2 1 0 4 4\n", capture_output=True, timeout=TIMEOUT,
                          check=False)
    assert proc.returncode == 1 and b"C,H,W>=1" in proc.stderr


@pytest.fixture(scope="module")
def cuda_kernels(tmp_path_factory):
    """Compiles the CUDA sources once: (object paths, cufft include, cufft lib dir)."""
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not installed: cannot compile the FFTConv CUDA kernels")
    cufft = _cufft_dirs()
    if cufft is None:
        pytest.skip("cufft.h not found (pip install nvidia-cufft, or a CUDA toolkit with cuFFT)")
    out = tmp_path_factory.mktemp("fftconv_cuda")
    objs = []
    for src in CUDA_SOURCES:
        obj = out / src.replace(".cu", ".o")
        _run([nvcc, "-c", "-std=c++17", "-arch=sm_80", "-Werror", "all-warnings",
              "-Xcompiler", "-fPIC,-Wall,-Wextra", f"-I{PLUGIN_DIR}", f"-I{cufft[0]}",
              PLUGIN_DIR / src, "-o", obj])
        objs.append(obj)
    return objs, cufft[0], cufft[1]


def test_cuda_kernels_compile_sm80(cuda_kernels):
    objs, _, _ = cuda_kernels
    assert len(objs) == len(CUDA_SOURCES) and all(o.stat().st_size > 0 for o in objs)


@pytest.mark.parametrize("source, entries, names", [
    # pad+cast (fp32, fp16), spectrum multiply, crop+skip+cast (fp32, fp16), each with 32-
    # and 64-bit index math
    ("fftconv_kernels.cu", 10, ("padCastKernel", "spectrumMultiplyKernel", "cropSkipCastKernel")),
    # RFFT2 unpack, IRFFT2 pack, IRFFT2 cast-out: fp32/fp16 x 32/64-bit index math each
    ("spectral_kernels.cu", 12, ("unpackPlanarKernel", "packPlanarKernel", "castOutKernel")),
])
def test_cuda_kernels_ptx_compute90(cuda_kernels, tmp_path, source, entries, names):
    _, cufft_inc, _ = cuda_kernels
    ptx = tmp_path / source.replace(".cu", ".ptx")
    _run([_nvcc(), "-ptx", "-std=c++17", "-arch=compute_90", "-Werror", "all-warnings",
          f"-I{PLUGIN_DIR}", f"-I{cufft_inc}", PLUGIN_DIR / source, "-o", ptx])
    text = ptx.read_text()
    assert text.count(".entry") == entries
    for name in names:
        assert name in text


def test_tensorrt_glue_compiles_and_runs_with_mock_registry(cuda_kernels, tmp_path):
    trt_inc, tried = _tensorrt_include()
    if trt_inc is None:
        pytest.skip(f"TensorRT headers not installed: NvInfer.h not found in {tried} "
                    "(set TENSORRT_ROOT or TensorRT_INCLUDE_DIR)")
    cxx = shutil.which("g++")
    cuda_inc = _cuda_include()
    if cxx is None or cuda_inc is None:
        pytest.skip("g++ or the CUDA runtime headers are missing")
    objs, cufft_inc, cufft_lib = cuda_kernels
    flags = ["-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", "-fPIC", f"-I{PLUGIN_DIR}",
             "-isystem", trt_inc, "-isystem", cuda_inc, "-isystem", cufft_inc]
    # 1. The glue alone, as the plugin library builds it.
    glue = []
    for src in GLUE_SOURCES:
        glue.append(tmp_path / src.replace(".cpp", ".o"))
        _run([cxx, *flags, "-fvisibility=hidden", "-c", PLUGIN_DIR / src, "-o", glue[-1]])

    # 2. Linked with a mock registry and run (no libnvinfer, no GPU needed).
    cuda_root = _cuda_root()
    cudart = next(iter(glob.glob(str(cuda_root / "lib64" / "libcudart_static.a"))
                       + glob.glob(str(cuda_root / "targets" / "*" / "lib" / "libcudart_static.a"))), None)
    cufft_so = sorted(glob.glob(str(cufft_lib / "libcufft.so*"))) if cufft_lib else []
    if cudart is None or not cufft_so:
        pytest.skip("libcudart_static.a or libcufft.so not found: glue compiled, not linked")
    exe = tmp_path / "fftconv_plugin_glue_test"
    _run([cxx, *flags, *glue, *(PLUGIN_DIR / src for src in CORE_SOURCES),
          PLUGIN_DIR / "tests" / "fftconv_plugin_glue_test.cpp", *objs, "-o", exe,
          cudart, "-ldl", "-lrt", "-lpthread", cufft_so[0], f"-Wl,-rpath,{cufft_lib}"])
    env = {k: v for k, v in os.environ.items() if k != "HYENA_FFTCONV_NO_STATIC_REGISTRATION"}
    out = _run([exe], env=env).stdout
    assert "checks passed" in out
    # The three creators were exercised, with the headers' TensorRT version.
    assert "RFFT2 getWorkspaceSize" in out and "IRFFT2 getWorkspaceSize" in out


# ---- CMake ---------------------------------------------------------------------------------


def _cmake_prereqs() -> tuple[str, list[str]]:
    """cmake + the -D flags for nvcc and cuFFT, or skip with the reason."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not installed: the CMake project enables CUDA at configure time")
    cufft = _cufft_dirs()
    if cufft is None:
        pytest.skip("cufft.h not found (pip install nvidia-cufft, or a CUDA toolkit with cuFFT)")
    flags = [f"-DCMAKE_CUDA_COMPILER={os.path.realpath(nvcc)}", "-DCMAKE_CUDA_ARCHITECTURES=90"]
    inc, libdir = cufft
    libs = sorted(glob.glob(str(libdir / "libcufft.so*"))) if libdir else []
    if libs:  # the wheel (or a toolkit found through it): name both explicitly
        flags += [f"-DCUFFT_INCLUDE_DIR={inc}", f"-DCUFFT_LIBRARY={libs[0]}"]
    return cmake, flags


def _cache(build: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        if line and not line.startswith(("#", "//")) and "=" in line and ":" in line.split("=", 1)[0]:
            key, value = line.split("=", 1)
            out[key.split(":", 1)[0]] = value
    return out


def _standin_tensorrt(root: Path, lib_name: str, header_major: int | None = None) -> tuple[Path, Path]:
    """A wheel-like TensorRT: <root>/lib/<lib_name> (a stand-in file, never linked) and a
    separate include dir with stand-in headers (empty files: configure only checks that
    they exist and reads the version macro)."""
    lib = root / "lib" / lib_name
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"stand-in, not a library")
    inc = root / "oss-include"
    inc.mkdir()
    for name in ("NvInfer.h", "NvInferRuntime.h", "NvInferRuntimeBase.h", "NvInferPluginBase.h"):
        (inc / name).write_text("// stand-in for the configure test\n")
    if header_major is not None:
        (inc / "NvInferVersion.h").write_text(
            f"#define TRT_MAJOR_ENTERPRISE {header_major}\n"
            "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n")
    return lib, inc


def _configure(cmake: str, flags: list[str], build: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [cmake, "-S", str(PLUGIN_DIR), "-B", str(build), *flags, *extra],
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def test_cmake_configure_finds_wheel_style_versioned_tensorrt(tmp_path):
    """TensorRT from NVIDIA's wheels: only libnvinfer.so.11 (no unversioned symlink) under the
    root, headers from a separate dir. Configure only: nothing is compiled or linked."""
    cmake, flags = _cmake_prereqs()
    lib, inc = _standin_tensorrt(tmp_path / "trt", "libnvinfer.so.11", header_major=11)
    build = tmp_path / "build"
    proc = _configure(cmake, flags, build, f"-DTENSORRT_ROOT={tmp_path / 'trt'}", f"-DTensorRT_INCLUDE_DIR={inc}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cache = _cache(build)
    assert Path(cache["TensorRT_LIBRARY"]) == lib
    assert Path(cache["TensorRT_INCLUDE_DIR"]) == inc
    assert cache["FFTCONV_WITH_TENSORRT"] == "ON"
    assert "major '11'" in proc.stdout


def test_cmake_configure_accepts_any_tensorrt_library_file(tmp_path):
    """-DTensorRT_LIBRARY may name any file, e.g. the wheel's tensorrt_libs/libnvinfer.so.10."""
    cmake, flags = _cmake_prereqs()
    lib, inc = _standin_tensorrt(tmp_path / "site-packages", "libnvinfer.so.10")
    build = tmp_path / "build"
    proc = _configure(cmake, flags, build, f"-DTensorRT_LIBRARY={lib}", f"-DTensorRT_INCLUDE_DIR={inc}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert Path(_cache(build)["TensorRT_LIBRARY"]) == lib


def test_cmake_configure_rejects_mismatched_tensorrt_headers(tmp_path):
    """Headers of TensorRT 10 with libnvinfer.so.11 would build a plugin that fails at load."""
    cmake, flags = _cmake_prereqs()
    _, inc = _standin_tensorrt(tmp_path / "trt", "libnvinfer.so.11", header_major=10)
    proc = _configure(cmake, flags, tmp_path / "build", f"-DTENSORRT_ROOT={tmp_path / 'trt'}",
                      f"-DTensorRT_INCLUDE_DIR={inc}")
    assert proc.returncode != 0
    assert "headers are version 10.x but the library is libnvinfer.so.11" in proc.stdout + proc.stderr


def test_cmake_builds_cuda_core_and_gpu_check_without_tensorrt(tmp_path):
    """-DFFTCONV_WITH_TENSORRT=OFF: no TensorRT looked for; fftconv_cuda (kernels + plans) and
    fftconv_gpu_check compile and link against libcufft. Running it needs a GPU."""
    cmake, flags = _cmake_prereqs()
    if "-DCUFFT_LIBRARY" not in " ".join(flags):
        pytest.skip("libcufft.so not found next to cufft.h: cannot link")
    build = tmp_path / "build"
    env = {k: v for k, v in os.environ.items() if k not in ("TENSORRT_ROOT", "TensorRT_INCLUDE_DIR")}
    _run([cmake, "-S", PLUGIN_DIR, "-B", build, *flags, "-DFFTCONV_WITH_TENSORRT=OFF"], env=env)
    _run([cmake, "--build", build, "-j2", "--target", "fftconv_gpu_check", "fftconv_core_test"])
    cache = _cache(build)
    assert "TensorRT_LIBRARY" not in cache  # never searched
    exe = build / "fftconv_gpu_check"
    assert exe.exists() and (build / "libfftconv_cuda.a").exists()
    assert not list(build.glob("libhyena_fftconv_plugin*"))
    # It links libcufft (the wheel's, found through the build rpath) and the CUDA runtime.
    needed = _run(["readelf", "-d", exe]).stdout if shutil.which("readelf") else ""
    if needed:
        assert "libcufft.so" in needed and "libcudart.so" in needed
    # Without a usable GPU it says so and fails with status 2 (never a fake pass).
    # With one (a GPU host), every case must pass.
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    if proc.returncode == 2:
        assert "no usable CUDA device" in proc.stdout and proc.stdout.strip().endswith("0 passed, 1 failed")
    else:
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert proc.stdout.strip().endswith(" 0 failed")
    # --bench-json (python -m bench gpu reads its stdout): FFTConv in all three modes and the
    # RFFT2/IRFFT2 plugins are timed; stdout stays JSON rows only, even when there is no GPU.
    usage = _run([exe, "--help"]).stdout
    assert "2d_circular" in usage and "RFFT2" in usage and "IRFFT2" in usage
    proc = subprocess.run([str(exe), "--bench-json", "--reps", "1"], capture_output=True, text=True, timeout=600)
    if proc.returncode == 2:
        assert proc.stdout == "" and "no usable CUDA device" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr[-4000:]
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        assert {(r["op"], r.get("mode")) for r in rows} == {("FFTConv", "2d"), ("FFTConv", "1d_bidir"),
                                                           ("FFTConv", "2d_circular"), ("RFFT2", None),
                                                           ("IRFFT2", None)}
    # The CPU core test of the same build passes.
    assert "checks passed" in _run([build / "fftconv_core_test"]).stdout


def test_cmake_builds_plugin_against_versioned_stub_libnvinfer(tmp_path):
    """The full plugin build with a wheel-style TensorRT: real TensorRT headers (TensorRT OSS
    include/, when present), and a stub libnvinfer.so.11 (soname libnvinfer.so.11, only the
    two registry symbols the plugin imports) found under TENSORRT_ROOT. The plugin links
    with -Wl,--no-undefined, records libnvinfer.so.<major> and exports only TensorRT's two
    entry points plus the cuFFT plan counter."""
    trt_inc, tried = _tensorrt_include()
    if trt_inc is None:
        pytest.skip(f"TensorRT headers not installed: NvInfer.h not found in {tried} "
                    "(set TENSORRT_ROOT or TensorRT_INCLUDE_DIR)")
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not installed")
    cmake, flags = _cmake_prereqs()
    if "-DCUFFT_LIBRARY" not in " ".join(flags):
        pytest.skip("libcufft.so not found next to cufft.h: cannot link")
    version = (trt_inc / "NvInferVersion.h").read_text() if (trt_inc / "NvInferVersion.h").exists() else ""
    found = re.search(r"#define (?:TRT_MAJOR_ENTERPRISE|NV_TENSORRT_MAJOR) +(\d+)", version)
    major = found.group(1) if found else "10"
    root = tmp_path / "trt"
    (root / "lib").mkdir(parents=True)
    stub = tmp_path / "stub.cpp"
    stub.write_text(
        "namespace nvinfer1 { class IPluginRegistry; class ILogger; }\n"
        'extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept { return nullptr; }\n'
        'extern "C" nvinfer1::ILogger* getLogger() noexcept { return nullptr; }\n')
    lib = root / "lib" / f"libnvinfer.so.{major}"
    _run([cxx, "-shared", "-fPIC", f"-Wl,-soname,libnvinfer.so.{major}", stub, "-o", lib])
    build = tmp_path / "build"
    _run([cmake, "-S", PLUGIN_DIR, "-B", build, *flags, f"-DTENSORRT_ROOT={root}",
          f"-DTensorRT_INCLUDE_DIR={trt_inc}"])
    assert Path(_cache(build)["TensorRT_LIBRARY"]) == lib
    _run([cmake, "--build", build, "-j2", "--target", "hyena_fftconv_plugin"])
    so = build / "libhyena_fftconv_plugin.so"
    assert so.exists()
    if shutil.which("readelf"):
        assert f"[libnvinfer.so.{major}]" in _run(["readelf", "-d", so]).stdout
    if shutil.which("nm"):
        exported = {line.split()[-1] for line in _run(["nm", "-D", "--defined-only", so]).stdout.splitlines()
                    if " T " in line}
        assert exported == {"getCreators", "setLoggerFinder", "hyena_fftconv_cufft_plans_created"}
