"""Start and stop a real ``tritonserver`` on a CPU host.

The ``nvidia-pytriton`` wheel ships a ``tritonserver`` binary (server core 2.51), its
bundled libraries (``site-packages/nvidia_pytriton.libs``) and Triton's Python backend
with one stub per Python version; it has no ONNX Runtime or TensorRT backend, so it
serves the repository's Python-backend entries (``<model>_cpu``). To run it we

- assemble a backend directory ``<tmp>/backends/python/`` of symlinks to
  ``libtriton_python.so``, ``triton_python_backend_utils.py`` and the
  ``triton_python_backend_stub`` built for the running Python's minor version;
- put Python's shared-library dir (``sysconfig`` LIBDIR) and the wheel's libs dir on
  ``LD_LIBRARY_PATH`` (without them the stub cannot start and the server hangs), and the
  venv's ``bin`` first on ``PATH`` so the stub finds this environment's packages;
- bind HTTP, gRPC and metrics to 127.0.0.1 on free ports, load the Python-backend models
  explicitly (``--model-control-mode=explicit``), exit on load errors and report ready
  only when every model is (``--strict-readiness``);
- give the Python backend a unique shared-memory prefix, so that ``stop()`` can delete
  the ``/dev/shm`` regions of this server (and only those) that a crash leaves behind.

Usage: ``with LocalTriton("model_repository") as triton: ... triton.http_url ...`` or
``python -m hyena_serve.triton_local --model-repository model_repository``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hyena_serve.model_repo import python_backend_models

SHM_DIR = Path("/dev/shm")
#: Default prefix of the Python backend's shared-memory regions; ours extend it.
SHM_PREFIX = "triton_python_backend_shm_region_"
#: Seconds Triton waits for in-flight requests after SIGTERM.
EXIT_TIMEOUT_S = 5
LOCALHOST = "127.0.0.1"
#: Health checks go straight to the local server, whatever *_proxy variables say.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TritonNotAvailable(RuntimeError):
    """The Triton binary, its Python backend or the Python shared library is missing."""


class TritonStartError(RuntimeError):
    """The server exited or did not become ready in time (message has the log tail)."""


@dataclass(frozen=True)
class TritonDist:
    """Files of the ``nvidia-pytriton`` wheel that a local server needs."""

    server: Path
    python_backend: Path  # holds libtriton_python.so and triton_python_backend_utils.py
    stub: Path
    libs: Path
    python_libdir: Path


def locate_triton() -> TritonDist:
    """Find the server, the Python backend and the stub for this Python, or say why not."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotAvailable(
            "the nvidia-pytriton wheel is not installed (it bundles tritonserver and its "
            "Python backend): pip install nvidia-pytriton"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    root = pkg / "tritonserver"
    server = root / "bin" / "tritonserver"
    backend = root / "backends" / "python"
    libs = pkg.parent / "nvidia_pytriton.libs"
    needed_files = (
        server,
        backend / "libtriton_python.so",
        backend / "triton_python_backend_utils.py",
        libs,
    )
    for needed in needed_files:
        if not needed.exists():
            raise TritonNotAvailable(
                f"nvidia-pytriton at {pkg} lacks {needed}; reinstall it: "
                "pip install --force-reinstall nvidia-pytriton"
            )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        stubs_dir = root / "python_backend_stubs"
        have = sorted(p.name for p in stubs_dir.iterdir()) if stubs_dir.is_dir() else []
        raise TritonNotAvailable(
            f"nvidia-pytriton has no Python backend stub for Python {version} "
            f"(it has {', '.join(have) or 'none'}); use one of those Python versions"
        )
    return TritonDist(server, backend, stub, libs, _python_libdir())


def _python_libdir() -> Path:
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not soname or not (Path(libdir) / soname).is_file():
        raise TritonNotAvailable(
            f"the Python backend stub needs Python's shared library, but {soname or 'libpython'} "
            f"is not in {libdir or 'LIBDIR'}: use a Python built with --enable-shared "
            "(e.g. PYTHON_CONFIGURE_OPTS=--enable-shared for pyenv, or the distro's python3)"
        )
    return Path(libdir)


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalTriton:
    """A ``tritonserver`` child process serving ``model_repository`` on loopback.

    ``models``: the entries to load (default: every Python-backend entry of the
    repository). Ports of 0 are replaced by free ports on first start and kept across
    ``restart()``. ``log_path``: where the server log goes (default: a temp file that
    ``stop()`` removes).
    """

    def __init__(
        self,
        model_repository: str | Path,
        *,
        models: Sequence[str] | None = None,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        host: str = LOCALHOST,
        log_verbose: int = 0,
        log_path: str | Path | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise FileNotFoundError(f"model repository not found: {self.model_repository}")
        if models is None:
            models = python_backend_models(self.model_repository)
        self.models = list(models)
        if not self.models:
            raise ValueError(
                f"{self.model_repository} has no Python-backend entry (backend: \"python\"); "
                "fill it with hyena_serve.model_repo.fill_repository"
            )
        self.host = host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.log_verbose = log_verbose
        self._user_log = Path(log_path) if log_path is not None else None
        self.shm_prefix = f"{SHM_PREFIX}hyena_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self._dist: TritonDist | None = None
        self._workdir: Path | None = None
        self._proc: subprocess.Popen | None = None

    # --- addresses ----------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint (the form tritonclient.http expects)."""
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        if self._user_log is not None:
            return self._user_log
        return self._workdir / "tritonserver.log" if self._workdir is not None else None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> LocalTriton:
        """Launch the server and wait until ``/v2/health/ready`` answers 200.

        Raises :class:`TritonStartError` (with the end of the server log) when the process
        exits or is not ready within ``timeout`` seconds; the server is stopped then.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"tritonserver already running (pid {self._proc.pid})")
        if self._proc is not None or self._workdir is not None:
            self.stop()  # a server that died on its own: clear its stubs, shm and files
        self._dist = self._dist or locate_triton()
        self._check_repository()
        for name, port in self.ports.items():
            self.ports[name] = port or free_port(self.host)
        self._workdir = Path(tempfile.mkdtemp(prefix="hyena_triton_"))
        try:
            backends = self._assemble_backends(self._workdir / "backends")
            log_path = self.log_path
            assert log_path is not None
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self._command(backends),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._environment(),
                    start_new_session=True,  # own process group: stubs join it, Ctrl-C doesn't
                )
        except BaseException:
            self.stop()
            raise
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``), end its leftover backend stubs,
        delete its shared-memory regions and its temporary files."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            # The stubs share the server's process group (its id is the server's pid,
            # and Linux does not reuse a pid while its group exists); after a crash or
            # SIGKILL they may outlive the server.
            _end_processes(lambda: group_members(proc.pid), timeout)
            # give init a moment to reap them, so that their pids are really gone
            deadline = time.monotonic() + 2.0
            while group_members(proc.pid, zombies=True) and time.monotonic() < deadline:
                time.sleep(0.02)
        for path in self.shm_files():
            path.unlink(missing_ok=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def restart(self, timeout: float = 60.0) -> LocalTriton:
        """Stop (whatever state the server is in) and start again on the same ports."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- state --------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def is_ready(self) -> bool:
        """True when the HTTP readiness endpoint answers 200."""
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with _NO_PROXY.open(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def processes(self) -> list[int]:
        """Pids of the server and the backend stubs it started (its process group)."""
        return group_members(self._proc.pid) if self._proc is not None else []

    def shm_files(self) -> list[Path]:
        """This server's Python-backend shared-memory regions in /dev/shm."""
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*")) if SHM_DIR.is_dir() else []

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None or not path.is_file():
            return "(no server log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- internals ----------------------------------------------------------------------

    def _check_repository(self) -> None:
        for model in self.models:
            entry = self.model_repository / model
            if not (entry / "config.pbtxt").is_file():
                raise FileNotFoundError(f"{entry}/config.pbtxt not found")
            versions = [
                d for d in entry.iterdir() if d.is_dir() and d.name.isdigit() and any(d.iterdir())
            ]
            if not versions:
                raise FileNotFoundError(
                    f"{entry} has no filled version folder (e.g. {entry}/1/): put an exported "
                    "model in with hyena_serve.model_repo.fill_repository(repo, onnx_path) "
                    "or python -m hyena_serve.model_repo <model.onnx>"
                )

    def _assemble_backends(self, backends: Path) -> Path:
        assert self._dist is not None
        python = backends / "python"
        python.mkdir(parents=True)
        for src in (
            self._dist.python_backend / "libtriton_python.so",
            self._dist.python_backend / "triton_python_backend_utils.py",
            self._dist.stub,
        ):
            (python / src.name).symlink_to(src)
        return backends

    def _command(self, backends: Path) -> list[str]:
        assert self._dist is not None
        cmd = [
            str(self._dist.server),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in self.models),
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            f"--http-address={self.host}",
            f"--http-port={self.ports['http']}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports['metrics']}",
            "--allow-gpu-metrics=false",
            f"--log-verbose={self.log_verbose}",
        ]
        return cmd

    def _environment(self) -> dict[str, str]:
        assert self._dist is not None
        env = dict(os.environ)
        lib_path = [str(self._dist.python_libdir), str(self._dist.libs)]
        if env.get("LD_LIBRARY_PATH"):
            lib_path.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_path)
        scripts = sysconfig.get_path("scripts")  # the venv's bin when run from a venv
        env["PATH"] = os.pathsep.join([scripts, env.get("PATH", os.defpath)])
        return env

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                reason = f"tritonserver exited with code {code} during startup"
                break
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                reason = f"tritonserver was not ready within {timeout:.0f} s"
                break
            time.sleep(0.1)  # poll interval; the deadline bounds the wait
        message = f"{reason} (log {self.log_path}):\n{self.log_tail()}"
        self.stop()
        raise TritonStartError(message)


def group_members(pgid: int, zombies: bool = False) -> list[int]:
    """Processes whose process group is ``pgid`` (zombies only if ``zombies``)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # fields after "(comm)": state ppid pgrp ...; comm may hold spaces or parens
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and (zombies or state not in ("Z", "X")):
            members.append(int(stat.parent.name))
    return sorted(members)


def _end_processes(find, timeout: float) -> None:
    """SIGTERM the pids ``find()`` returns, SIGKILL those left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = find()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while find() and time.monotonic() < deadline:
            time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hyena_serve.triton_local",
        description="Run tritonserver (from the nvidia-pytriton wheel) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--model-repository", default="model_repository")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help="entry to load (repeatable; default: every Python-backend entry)",
    )
    parser.add_argument("--http-port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="readiness deadline (s)")
    parser.add_argument("--log-file", help="keep the server log here (default: a temp file)")
    parser.add_argument("--log-verbose", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        triton = LocalTriton(
            args.model_repository,
            models=args.models,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            log_verbose=args.log_verbose,
            log_path=args.log_file,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        triton.start(args.timeout)
    except (TritonNotAvailable, TritonStartError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"tritonserver pid {triton.pid} serving {', '.join(triton.models)}")
        print(f"  HTTP     {triton.http_url}   (http://{triton.http_url}/v2/health/ready)")
        print(f"  gRPC     {triton.grpc_url}")
        print(f"  metrics  {triton.metrics_url}")
        print(f"  log      {triton.log_path}")
        print("Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):
            if not triton.is_alive():
                print(f"tritonserver exited unexpectedly:\n{triton.log_tail()}", file=sys.stderr)
                return 1
        print("stopping tritonserver ...", flush=True)
        return 0
    finally:
        triton.stop()


if __name__ == "__main__":
    sys.exit(main())
