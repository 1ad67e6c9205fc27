#!/usr/bin/env bash
# Entrypoint of the `triton` image: make sure the TensorRT plan exists for THIS GPU and THIS
# TensorRT, then exec tritonserver with the FFTConv plugin loaded.
#
# A plan is specific to the GPU it was built on and to the TensorRT version, so it is built
# here, on the serving host, by export/to_trt.py (with the same libnvinfer Triton serves
# with). It is rebuilt when it is missing or when build-info beside it (TensorRT version,
# GPU, plugin checksum, build options) no longer matches. Mount a volume on the plan's
# version folder to keep it across restarts.
#
# Environment (default):
#   MODEL_REPOSITORY    Triton model repository (/opt/hyena/model_repository)
#   HYENA_MODEL         model name (hpx_former_s18); plan: <repo>/<model>_trt/1/model.plan
#   HYENA_RESOLUTION    input resolution (224)
#   HYENA_HOME          directory to_trt.py runs in (/opt/hyena)
#   TRT_ONNX            the float32 export the plan is built from, with its manifest beside it
#                       (<repo>/<model>_onnx/1/model.onnx, written by the image's export stage)
#   TRT_ONNX_FP16       the fp16-I/O export, used by TRT_FP16=1 on TensorRT 11 (strongly typed)
#                       (<HYENA_HOME>/onnx-fp16/model.onnx; passed only if it exists)
#   PLUGIN_LIB          plugin library (/opt/hyena/plugins/libhyena_fftconv_plugin.so)
#   PLUGIN_LOAD         backend-config | ld_preload (backend-config)
#   TRT_FP16            1: build an fp16 engine (0)
#   TRT_BATCH           MIN:OPT:MAX batch profile (1:4:8; MAX = max_batch_size in config.pbtxt)
#   TRT_WORKSPACE       builder workspace for to_trt.py --workspace (to_trt.py's default)
#   TRT_REBUILD         1: rebuild the plan even if it is current (0)
#   TO_TRT              the plan builder (<HYENA_HOME>/export/to_trt.py)
#   TO_TRT_EXTRA_ARGS   more to_trt.py arguments, split on whitespace (none)
#   TRITON_LOAD_MODELS  comma-separated models to load (<model>_trt)
#   PYTHON, TRITONSERVER  programs to run (python3, tritonserver)
# Arguments are appended to tritonserver's command line.
set -euo pipefail

log() { printf '[hyena-triton] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

repo="${MODEL_REPOSITORY:-/opt/hyena/model_repository}"
model="${HYENA_MODEL:-hpx_former_s18}"
res="${HYENA_RESOLUTION:-224}"
home="${HYENA_HOME:-/opt/hyena}"
plugin="${PLUGIN_LIB:-/opt/hyena/plugins/libhyena_fftconv_plugin.so}"
onnx="${TRT_ONNX:-${repo}/${model}_onnx/1/model.onnx}"
onnx_fp16="${TRT_ONNX_FP16:-${home}/onnx-fp16/model.onnx}"
to_trt="${TO_TRT:-${home}/export/to_trt.py}"
python="${PYTHON:-python3}"
tritonserver="${TRITONSERVER:-tritonserver}"
batch="${TRT_BATCH:-1:4:8}"
fp16="${TRT_FP16:-0}"

plan_dir="${repo}/${model}_trt/1"
plan="${plan_dir}/model.plan"
info_file="${plan}.build-info"

[[ -d "${repo}/${model}_trt" ]] || die "no model repository entry ${repo}/${model}_trt"
[[ -r "${plugin}" ]] || die "plugin library not found: ${plugin}"
[[ -r "${onnx}" ]] || die "ONNX export not found: ${onnx} (the image's export stage writes it)"

# The plugin must LOAD, not only exist: Triton's TensorRT backend dlopens it, and a missing
# dependency (libcufft from another CUDA, libnvinfer from another TensorRT) would only show
# up as a failed model load after the plan build. ldd names every unresolved library; the
# dlopen through Python is the definitive check (it runs the plugin's registration too).
check_plugin_loads() {
    local unresolved err
    if command -v ldd >/dev/null; then
        unresolved="$({ ldd "${plugin}" 2>/dev/null || true; } | awk '/=> not found/ {print $1}' | paste -sd ' ' -)"
        if [[ -n "${unresolved}" ]]; then
            die "plugin library ${plugin} cannot be loaded: unresolved dependencies: ${unresolved}" \
                "(cuFFT/CUDA/TensorRT of another version than this image's? check LD_LIBRARY_PATH)"
        fi
    fi
    # shellcheck disable=SC2016  # the Python program is single-quoted on purpose
    if ! err="$("${python}" -c 'import ctypes, sys
try:
    ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
except OSError as exc:
    sys.exit(str(exc))' "${plugin}" 2>&1)"; then
        die "plugin library ${plugin} does not load: ${err}"
    fi
}
check_plugin_loads

# What the plan depends on; a difference means the plan must be rebuilt.
build_info() {
    local trt gpu plugin_sum onnx_sum
    trt="$("${python}" -c 'import tensorrt; print(tensorrt.__version__)')" ||
        die "cannot import tensorrt (is a GPU visible to the container?)"
    gpu="$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader --id=0 2>/dev/null || echo unknown)"
    plugin_sum="$(sha256sum "${plugin}" | cut -d' ' -f1)"
    onnx_sum="$(sha256sum "${onnx}" | cut -d' ' -f1)"
    printf 'tensorrt=%s\ngpu=%s\nplugin_sha256=%s\nonnx_sha256=%s\nres=%s\nbatch=%s\nfp16=%s\nextra=%s\n' \
        "${trt}" "${gpu}" "${plugin_sum}" "${onnx_sum}" "${res}" "${batch}" "${fp16}" "${TO_TRT_EXTRA_ARGS:-}"
}

build_plan() {
    local partial="${plan}.partial"
    local -a args extra
    args=(--onnx "${onnx}" --res "${res}" --batch "${batch}" --plugin-lib "${plugin}"
        --repository "${repo}" --write-config --out "${partial}")
    if [[ "${fp16}" == 1 ]]; then
        args+=(--fp16)
        if [[ -r "${onnx_fp16}" ]]; then args+=(--onnx-fp16 "${onnx_fp16}"); fi
    fi
    if [[ -n "${TRT_WORKSPACE:-}" ]]; then args+=(--workspace "${TRT_WORKSPACE}"); fi
    read -r -a extra <<<"${TO_TRT_EXTRA_ARGS:-}"
    args+=("${extra[@]}")
    rm -f "${partial}"
    log "building ${plan} (${to_trt} ${args[*]})"
    (cd "${home}" && "${python}" "${to_trt}" "${args[@]}")
    [[ -s "${partial}" ]] || die "${to_trt} wrote no plan at ${partial}"
    mv -f "${partial}" "${plan}"
}

mkdir -p "${plan_dir}"
# Replicas sharing one volume build the plan once: the others wait here.
exec 9>"${plan_dir}/.build.lock"
if command -v flock >/dev/null; then
    flock 9
fi
current="$(build_info)"
if [[ "${TRT_REBUILD:-0}" == 1 || ! -s "${plan}" || "$(cat "${info_file}" 2>/dev/null)" != "${current}" ]]; then
    build_plan
    printf '%s\n' "${current}" >"${info_file}"
    log "plan ready: ${plan}"
else
    log "plan is current: ${plan}"
fi
exec 9>&-

# Triton's TensorRT backend dlopens the libraries named in its `plugins` option; the
# plugin registers its creator from a static initializer when loaded, so nothing else is
# needed. LD_PRELOAD (the older way) maps it into every process the container starts.
plugin_args=()
case "${PLUGIN_LOAD:-backend-config}" in
backend-config) plugin_args=(--backend-config="tensorrt,plugins=${plugin}") ;;
ld_preload) export LD_PRELOAD="${plugin}${LD_PRELOAD:+:${LD_PRELOAD}}" ;;
*) die "PLUGIN_LOAD must be backend-config or ld_preload, not '${PLUGIN_LOAD}'" ;;
esac

load_args=()
IFS=',' read -r -a load_models <<<"${TRITON_LOAD_MODELS:-${model}_trt}"
for m in "${load_models[@]}"; do
    if [[ -n "${m}" ]]; then load_args+=(--load-model="${m}"); fi
done

exec "${tritonserver}" \
    --model-repository="${repo}" \
    --model-control-mode=explicit \
    "${load_args[@]}" \
    "${plugin_args[@]}" \
    --http-port=8000 \
    --grpc-port=8001 \
    --metrics-port=8002 \
    --strict-readiness=true \
    --exit-on-error=true \
    "$@"
