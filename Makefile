# mmlearn: `make train` runs the demo end to end, `make test` runs the test suite.
# Both set up a virtual environment in $(VENV) first (once).
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first so the CUDA build pair is chosen deliberately.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.DEFAULT_GOAL := help
.PHONY: help install train evaluate test test-fast test-kernels lint format clean test-newest

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install mmlearn with its dev tools

train: install  ## fine-tune the tiny Qwen2-VL on the built-in demo and test it (CPU, a few minutes)
	$(PY) train.py experiment=demo

evaluate: install  ## re-evaluate a run: make evaluate RUN=runs/train/<run>/<time>
	$(PY) evaluate.py run_dir=$(RUN)

# tests run in parallel, one worker per core, each test file on one worker (its module fixtures are
# built once); tiny models gain nothing from intra-op threads, so each process uses one
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n auto --dist loadfile

test: install  ## the whole test suite (includes the end-to-end runs), in parallel
	$(PYTEST)

test-fast: install  ## the test suite without the slow end-to-end runs
	$(PYTEST) -m "not slow"

# The tests whose results depend on float rounding (cache vs no cache, packed vs full scoring, batched
# vs row by row, merged vs unmerged, resumed vs uninterrupted, the demo's learning threshold), on other
# CPU kernels than the machine's own (torch picks them by ATEN_CPU_CAPABILITY: default|avx2|avx512)
# and with two threads per process (another reduction order).
KERNELS ?= default
NUMERICS_TESTS := tests/test_vision_cache.py tests/test_shared_prompt_scoring.py tests/test_decoding.py \
	tests/test_family_invariants.py tests/test_resume.py tests/test_end_to_end.py
test-kernels: install  ## the numerically sensitive tests on other CPU kernels: make test-kernels KERNELS=avx2
	ATEN_CPU_CAPABILITY=$(KERNELS) OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(PY) -m pytest -n 0 $(NUMERICS_TESTS)

# The tests of what mmlearn/compat/ wraps (packed scoring's transformers hooks, resume's Lightning loop
# internals) on the newest transformers and lightning on PyPI: a throwaway $(NEWEST) that sees .venv's
# packages through a .pth file, so only what the upgrade changes is downloaded (into $(NEWEST) only).
NEWEST ?= .venv-newest
NEWEST_TESTS := tests/test_compat.py tests/test_no_private_names.py tests/test_shared_prompt_scoring.py tests/test_resume.py
SITE := import sysconfig; print(sysconfig.get_paths()["purelib"])
test-newest: install  ## packed-scoring and resume tests on the newest transformers + lightning (in .venv-newest)
	rm -rf $(NEWEST)
	python3 -m venv $(NEWEST)
	echo "import site; site.addsitedir('$$($(PY) -c '$(SITE)')')" > "$$($(NEWEST)/bin/python -c '$(SITE)')/mmlearn-base.pth"
	$(NEWEST)/bin/python -m pip install --quiet --upgrade transformers lightning pytorch-lightning
	@$(NEWEST)/bin/python -c "import lightning, torch, transformers; print('newest: transformers', transformers.__version__, 'lightning', lightning.__version__, 'torch', torch.__version__)"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(NEWEST)/bin/python -m pytest -n 0 -p no:cacheprovider $(NEWEST_TESTS)

lint: install  ## ruff lint + format check, hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile

format: install  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the virtual environment, caches and runs
	rm -rf $(VENV) .cache runs data .pytest_cache .ruff_cache
