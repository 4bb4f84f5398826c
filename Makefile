# Fresh machine:   make demo   (install everything, then run the main job on the embedded model)
# Tests:           make test
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-stamp

# llama-cpp-python ships only as an sdist and is compiled here. GGML_NATIVE=OFF: the native
# build enables AMX and segfaults on the first decode on these CPUs; the portable build is
# also what users on other machines need.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a CPU wheel; anything looser drags in a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# the main job: profile en,de,fr -> prune half the FFN and trim the vocabulary to those languages
# -> GGUF q8_0 + ONNX int8, dense and pruned, parity-checked -> benchmark side by side;
# everything lands in ./babel-edge-build
demo: setup
	$(BIN)/babel-edge build --langs en,de,fr --rate 0.5 --trim-vocab --out babel-edge-build --force

test: setup
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
