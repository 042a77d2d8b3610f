# Two commands: `make run` sets everything up and runs the main job on the
# embedded default (tiny model, CPU, no download); `make test` runs all tests.
PY ?= python3
WORKSPACE ?= workspace
# torch first, pinned, so nothing pulls a different (CUDA) build behind our back;
# on a GPU machine set TORCH_SPEC to the build you want (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test bench

setup:
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"

run: setup
	$(PY) -m engine.cli validate data/starter/lessons/*.json

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) -m engine.cli bench dsl
