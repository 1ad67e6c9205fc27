# syntax=docker/dockerfile:1.7
#
# hyena_serve images (BuildKit). Targets:
#
#   plugin-build  compiles export/plugins/fftconv into libhyena_fftconv_plugin.so (CMake,
#                 against the TensorRT and cuFFT of the NGC TensorRT image)
#   export        exports the torch model to ONNX on the CPU (export/to_onnx.py)
#   triton        Triton Inference Server + the plugin + the model repository; the TensorRT
#                 plan is built on the serving GPU when the container starts
#                 (deploy/scripts/triton-entrypoint.sh -> export/to_trt.py)
#   gateway       the FastAPI gateway: slim Python, non-root, `gateway` extra only (no torch)
#
#   docker build --target triton  -t hyena-serve/triton:0.1.0 .
#   docker build --target gateway -t hyena-serve/gateway:0.1.0 .
#
# --- TensorRT / Triton pairing -------------------------------------------------------------
# A serialized TensorRT plan, and a plugin library compiled against TensorRT's headers, only
# work with the TensorRT version they were built with ("Version tag does not match" /
# "engine plan file is not compatible" otherwise). NGC publishes the TensorRT and Triton
# containers monthly under the same YY.MM tag, built on one CUDA/TensorRT stack, and
# Triton's custom-operations guide says to compile TensorRT custom layers in the TensorRT
# container that corresponds to the Triton container (e.g. 24.06 with 24.06). So ONE
# argument, NGC_RELEASE, picks both images below: change it here and nowhere else.
# 26.xx releases are on CUDA 13 (Turing / compute capability 7.5 and newer).
# The plan itself is never built here: TensorRT picks kernels for the GPU it builds on, so
# the plan is built by the triton image on the serving host, with the same libnvinfer that
# serves it.
ARG NGC_RELEASE=26.10
# Debian-based slim CPython for the CPU-only stages; same minor as the NGC images (3.12).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# torch is needed by the export stage only (the gateway and the TensorRT build run without
# it). Its CPU build is enough for ONNX export and ~2 GB smaller than a CUDA build. Same
# version as the Makefile's TORCH_SPEC.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG MODEL=hpx_former_s18
ARG RES=224
# Weights of the exported model when no checkpoint context is given: random (seed 0,
# reproducible and offline) or pretrained (the released weights, downloaded at build time).
ARG WEIGHTS=random

# Optional trained weights for the export, passed as a named build context:
#   docker build --build-context checkpoint=/dir/with/weights \
#                --build-arg CHECKPOINT=hpx_former_s18.safetensors --target triton .
# Without it this stage is empty and the export uses the model's initial weights.
FROM scratch AS checkpoint


# --- the TensorRT plugin ---------------------------------------------------------------------
FROM nvcr.io/nvidia/tensorrt:${NGC_RELEASE}-py3 AS plugin-build
# SASS for sm_75 .. sm_120 (every architecture the 26.xx / CUDA 13 images support) and
# compute_120 PTX for GPUs newer than that.
ARG CUDA_ARCHITECTURES="75-real;80-real;86-real;89-real;90-real;100-real;120"
# The NGC TensorRT image installs TensorRT under /usr (headers in include/<arch>,
# libraries in lib/<arch>); CUDA and cuFFT come from /usr/local/cuda via CUDAToolkit.
ARG TENSORRT_ROOT=/usr
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The image's system Python is ours to change (Ubuntu marks it externally managed).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1
RUN python3 -m pip install "cmake==3.31.6"
WORKDIR /src/fftconv
COPY export/plugins/fftconv/ ./
RUN cmake -S . -B build \
        -DCMAKE_BUILD_TYPE=Release \
        -DTENSORRT_ROOT="${TENSORRT_ROOT}" \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
    && cmake --build build --parallel --target hyena_fftconv_plugin fftconv_core_test \
    && ctest --test-dir build --output-on-failure -R fftconv_core_test \
    && mkdir -p /out \
    && cp -L "$(find build -name libhyena_fftconv_plugin.so -print -quit)" /out/ \
    && test -s /out/libhyena_fftconv_plugin.so


# --- ONNX export (CPU) -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS export
ARG TORCH_SPEC
ARG TORCH_INDEX
ARG MODEL
ARG RES
ARG WEIGHTS
ARG CHECKPOINT=""
# 1: also export the fp16-I/O model, which TensorRT 11 needs for TRT_FP16=1 (strongly typed
# networks have no fp16 builder flag); 0 skips it (faster image build).
ARG EXPORT_FP16=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# DL3013: TORCH_SPEC carries the pin (torch==2.13.0).
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY hyena_serve/ hyena_serve/
# DL3013: this is the local source tree, not a registry package; its dependencies follow
# pyproject.toml's ranges (the export extra includes scikit-image, the parity photos).
# hadolint ignore=DL3013
RUN pip install ".[export]"
COPY export/ export/
COPY model_repository/ model_repository/
# Each export writes its manifest (<name>.manifest.json) beside the .onnx file; the configs
# of the model's repository entries are then rewritten to carry it.
RUN --mount=type=bind,from=checkpoint,target=/checkpoint \
    weights="${CHECKPOINT:+/checkpoint/${CHECKPOINT}}" && weights="${weights:-${WEIGHTS}}" \
    && python export/to_onnx.py --model "${MODEL}" --res "${RES}" --weights "${weights}" \
        --out "model_repository/${MODEL}_onnx/1/model.onnx" \
    && test -s "model_repository/${MODEL}_onnx/1/model.onnx" \
    && mkdir -p onnx-fp16 \
    && if [ "${EXPORT_FP16}" = 1 ]; then \
        python export/to_onnx.py --model "${MODEL}" --res "${RES}" --weights "${weights}" --fp16 \
            --out onnx-fp16/model.onnx; \
    fi \
    && python -c 'import sys; from hyena_serve.artifact import open_artifact; from hyena_serve.model_repo import write_entry_config; m = open_artifact(sys.argv[1]).manifest; [write_entry_config("model_repository", m, f) for f in ("trt", "onnx", "cpu")]' \
        "model_repository/${MODEL}_onnx/1/model.onnx"


# --- Triton Inference Server (GPU) ------------------------------------------------------------
FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3 AS triton
ARG MODEL
ARG RES
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1
# The plan builder (export/to_trt.py) needs TensorRT's Python bindings. The image ships
# libnvinfer (the TensorRT backend uses it) but no bindings, so install the bindings-only
# wheel of exactly that library version (read off the installed libnvinfer.so.X.Y.Z): the
# plan is then built and served by one and the same TensorRT.
RUN trt_lib="$(find /usr /opt -name 'libnvinfer.so.*.*.*' -print -quit)" \
    && trt_version="${trt_lib##*libnvinfer.so.}" \
    && test -n "${trt_version}" \
    && cuda_major="${CUDA_VERSION:-13}" && cuda_major="${cuda_major%%.*}" \
    && python3 -m pip install --extra-index-url https://pypi.nvidia.com \
        "tensorrt-cu${cuda_major}-bindings==${trt_version}.*" \
    && echo "TensorRT ${trt_version} (CUDA ${cuda_major}) bindings installed"
WORKDIR /opt/hyena
COPY pyproject.toml README.md ./
COPY hyena_serve/ hyena_serve/
# No torch here: building and checking the plan needs TensorRT, onnx, ONNX Runtime (the
# CPU reference) and Polygraphy (device buffers), which is the package's `tensorrt` extra.
# DL3013: the local source tree (see the export stage).
# hadolint ignore=DL3013
RUN python3 -m pip install ".[tensorrt]" \
    && python3 -c 'import onnx, onnxruntime, polygraphy.cuda' \
    && if python3 -c 'import torch' 2>/dev/null; then echo "torch must not be in the triton image" >&2; exit 1; fi
COPY export/ export/
COPY --from=plugin-build /out/libhyena_fftconv_plugin.so /opt/hyena/plugins/
COPY --from=export /src/model_repository/ /opt/hyena/model_repository/
COPY --from=export /src/onnx-fp16/ /opt/hyena/onnx-fp16/
COPY --chmod=0755 deploy/scripts/triton-entrypoint.sh /usr/local/bin/hyena-triton-entrypoint
# Non-root user; the plan's version folder exists (empty) so that a volume mounted there
# inherits its owner; the entrypoint rewrites the _trt entry's config.pbtxt.
RUN useradd --system --uid 10001 --create-home --shell /usr/sbin/nologin hyena \
    && mkdir -p "/opt/hyena/model_repository/${MODEL}_trt/1" \
    && chown -R 10001:10001 /opt/hyena/model_repository
USER 10001:10001
ENV HYENA_MODEL=${MODEL} \
    HYENA_RESOLUTION=${RES} \
    MODEL_REPOSITORY=/opt/hyena/model_repository \
    TRT_ONNX=/opt/hyena/model_repository/${MODEL}_onnx/1/model.onnx \
    TRT_ONNX_FP16=/opt/hyena/onnx-fp16/model.onnx \
    PLUGIN_LIB=/opt/hyena/plugins/libhyena_fftconv_plugin.so
# 8000 HTTP (KServe v2), 8001 gRPC, 8002 Prometheus metrics.
EXPOSE 8000 8001 8002
# The first start builds the plan (minutes), hence the long start period.
HEALTHCHECK --interval=10s --timeout=5s --retries=3 --start-period=15m \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/hyena-triton-entrypoint"]


# --- gateway (CPU, slim) -----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS gateway-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:${PATH}
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml README.md ./
COPY hyena_serve/ hyena_serve/
# Only the `gateway` extra (FastAPI, uvicorn, tritonclient[http,grpc], onnxruntime, ...): no
# torch; the gateway serves the exported artifact (embedded ONNX Runtime) or talks to Triton.
# DL3013: the local source tree (see the export stage).
# hadolint ignore=DL3013
RUN pip install ".[gateway]" \
    && if python -c 'import torch' 2>/dev/null; then echo "torch must not be in the gateway image" >&2; exit 1; fi

FROM ${PYTHON_IMAGE} AS gateway
ARG MODEL
ARG RES
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HYENA_HOST=0.0.0.0 \
    HYENA_PORT=8080 \
    HYENA_MODEL=${MODEL} \
    HYENA_RESOLUTION=${RES}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hyena
COPY --from=gateway-venv /opt/venv /opt/venv
# The exported ONNX model, so the embedded backend (the gateway's default when no Triton
# is configured) works from this image alone, without exporting at start; compose and
# k8s set HYENA_BACKEND=triton. Anything the gateway caches goes to /tmp (writable also
# with a read-only root filesystem).
WORKDIR /app
COPY --from=export /src/model_repository/ /app/model_repository/
ENV HYENA_ONNX_PATH=/app/model_repository/${MODEL}_onnx/1/model.onnx \
    HYENA_ARTIFACTS_DIR=/tmp/hyena-artifacts
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=3 --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('HYENA_PORT', '8080'), timeout=4)"]
CMD ["hyena-serve", "serve"]
