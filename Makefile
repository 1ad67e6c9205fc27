# The README's commands. `make serve` and `make test` set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install first. The default is the CPU build the project machines
# carry locally; on a GPU host pick a CUDA build, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url <PyTorch's CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serve,export,train,triton,dev
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install serve test bench train clean help gpu-check
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)  ## create .venv with torch ($(TORCH_SPEC)) and the package with its extras

serve: install  ## serve the default model over HTTP on 127.0.0.1:8080 (embedded ONNX Runtime)
	$(BIN)/hyena-serve serve

test: install  ## run the test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install  ## quick benchmark run (writes bench/out/)
	$(BIN)/python -m bench --quick

train: install  ## train a small HyenaPixel on scikit-learn's digits
	$(BIN)/python -m hyena_serve.train

gpu-check:  ## GPU host, no venv, no TensorRT: plugin kernels, torch on CUDA, pytest -m gpu, bench gpu (docs/gpu.md)
	@PYTHONPATH=. $(PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean:  ## remove the venv and generated artifacts
	rm -rf $(VENV) artifacts bench/out .pytest_cache
