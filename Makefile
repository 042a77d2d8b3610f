# Two commands: `make run` sets everything up and opens the control room on a
# workspace with the embedded default (tiny model, CPU, no download) — press `s`
# to start a teaching cycle; `make test` runs all tests.
PY ?= python3
WORKSPACE ?= workspace
# torch first, pinned, so nothing pulls a different (CUDA) build behind our back;
# on a GPU machine set TORCH_SPEC to the build you want (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup workspace run cycle test bench

STAMP := build/.installed
TEST_STAMP := build/.installed-test

setup: $(STAMP)

# re-install only when the dependencies change (keeps `make run` instant after the first time)
$(STAMP): pyproject.toml
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@mkdir -p build && touch $(STAMP)

workspace: setup
	@test -f $(WORKSPACE)/bpllm.toml || $(PY) -m engine.cli init $(WORKSPACE)

run: workspace
	$(PY) -m bpllm_tui -w $(WORKSPACE)

# the same cycle headless (no terminal UI): steps 1-9 once
cycle: workspace
	$(PY) -m engine.cli run -w $(WORKSPACE)

# tests also need real Blender (bpy, the [blender] extra: Python 3.11 only, a 374 MB wheel); `make run` does not
$(TEST_STAMP): pyproject.toml
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,blender]"
	@mkdir -p build && touch $(STAMP) $(TEST_STAMP)

test: $(TEST_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) -m engine.cli bench dsl
