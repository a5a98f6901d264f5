# visplay: one Makefile for install, tests, benchmarks, lint and the evolution loop.
# `make install` creates ./.venv (VENV=) with BOOTSTRAP_PYTHON and every target uses it; PYTHON= overrides that
# (e.g. PYTHON=python3 for the current environment).
VENV ?= .venv
BOOTSTRAP_PYTHON ?= python3
PYTHON ?= $(VENV)/bin/python
PIP ?= $(PYTHON) -m pip
CPU_CONSTRAINTS ?= constraints/cpu.txt
# Optional: a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu for the small CPU-only torch. Empty =
# PyPI alone (its torch==2.13.0 is the CUDA build, which runs on CPU too).
TORCH_INDEX ?=
VISPLAY ?= $(PYTHON) -m verl_ext
PYTEST_ARGS ?=
TESTS ?= tests
MODEL ?= tiny
DRY_RUN ?=
RUN_DIR ?=
EVOLVE_ARGS ?=
RUN ?=
EVAL_ARGS ?=
REPORT_ARGS ?=
WORLD_OUT ?= runs/world
WORLD_ARGS ?=
MUTATE_ARGS ?=
# eval/report read the run `make evolve MODEL=<recipe>` wrote (<storage.root>/<name>) unless RUN= (or RUN_DIR=) names
# one; a MODEL with a '/' (a path or a hub name) is evaluated as a single checkpoint.
DEFAULT_RUN = $(or $(RUN),$(RUN_DIR),$(or $(VISPLAY_RUNS),runs)/$(MODEL))
# One-line commands (make echoes them as they run).
EVOLVE_FLAGS = $(strip --recipe recipes/$(MODEL).yaml $(if $(RUN_DIR),--run-dir $(RUN_DIR)) \
	$(if $(filter 1 true yes,$(DRY_RUN)),--dry-run) $(EVOLVE_ARGS))
EVAL_FLAGS = $(strip $(if $(or $(RUN),$(RUN_DIR)),--run $(DEFAULT_RUN),$(if $(findstring /,$(MODEL)),--model $(MODEL),\
	--run $(DEFAULT_RUN))) $(EVAL_ARGS))

.PHONY: help install install-gpu python-ready preflight test bench bench-quick quality style mutate evolve eval report status \
	world world-gpu clean

help:
	@echo "make install      creates .venv, installs the locked CPU set from PyPI [TORCH_INDEX=<PyTorch CPU index>]"
	@echo "make install-gpu  GPU install: vllm + torch + transformers as verl pins them, then flash-attn"
	@echo "                  every target uses .venv/bin/python; PYTHON=/path/to/python overrides it"
	@echo "make preflight MODEL=qwen2.5-vl-7b  check GPUs, packages, loggers, images, RAM, disk, model: one table"
	@echo "make test [TESTS=tests/evolve] [PYTEST_ARGS=-x]  CPU test suite (tests/**/test_*_on_cpu.py)"
	@echo "make bench        speed benchmarks (tables with side-by-side ratios); bench-quick for a smoke"
	@echo "make quality      ruff check + format check; make style to fix"
	@echo "make mutate [MUTATE_ARGS=--list-survivors]  mutation testing of verl_ext/visplay (mutmut, pip install -e .[dev])"
	@echo "make evolve [MODEL=qwen2.5-vl-7b] [DRY_RUN=1] [RUN_DIR=...]  run/resume the evolution loop (default: tiny, CPU)"
	@echo "make eval [RUN=runs/tiny | MODEL=/path/to/checkpoint]  benchmarks x checkpoints table (markdown + CSV)"
	@echo "make report [RUN=runs/tiny]  the run's static HTML report"
	@echo "make status [RUN=runs/tiny]  the run's stage table (state, time, summary)"
	@echo "make world [WORLD_OUT=runs/world]  the controlled-world experiment: gate, then 4 arms x 3 seeds x T=2 (docs/world.md)"
	@echo "make world-gpu [WORLD_OUT=runs/world]  its reasoner-budget scan 1x/8x/32x on one GPU (local backend)"

# The virtual environment, made on first install (only when PYTHON is its interpreter, the default).
$(VENV)/bin/python:
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)
install install-gpu: $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/bin/python)

# Every other target stops early, naming the fix, when its environment has not been installed.
preflight test bench bench-quick quality style mutate evolve eval report status world world-gpu: python-ready
python-ready:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: run 'make install' first" \
		"(or pass PYTHON=/path/to/python)" >&2; exit 2; }

install:
	$(PIP) install $(strip -c $(CPU_CONSTRAINTS) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0)
	$(PIP) install -c $(CPU_CONSTRAINTS) -e ".[test]"
	$(PYTHON) -m verl_ext.compat.torchvision_shim install

# vllm, torch, torchvision and transformers at the versions verl 0.9.1 declares for its vllm extra (one resolve), then
# flash-attn against that torch without build isolation (its sdist imports torch to build; with a matching prebuilt
# wheel on its release page it downloads that instead of compiling). FLASH_ATTN= (empty) skips it.
FLASH_ATTN ?= $(shell $(PYTHON) -c "import runpy; print(runpy.run_path('verl_ext/compat/gpu_stack.py')['flash_attn_requirement']())")
install-gpu:
	$(PIP) install -e ".[gpu,test]"
	$(if $(FLASH_ATTN),$(PIP) install --no-build-isolation "$(FLASH_ATTN)")
	$(PYTHON) -m verl_ext.compat.torchvision_shim install

test:
	$(PYTHON) -m pytest $(strip $(TESTS) $(PYTEST_ARGS))

bench:
	$(PYTHON) benchmarks/bench_repetition_penalty.py
	$(PYTHON) benchmarks/bench_majority_vote.py
	$(PYTHON) benchmarks/bench_ray_pipeline.py

bench-quick:
	$(PYTHON) benchmarks/bench_repetition_penalty.py --quick
	$(PYTHON) benchmarks/bench_majority_vote.py --quick
	$(PYTHON) benchmarks/bench_ray_pipeline.py --quick

quality:
	$(PYTHON) -m ruff check verl_ext tests benchmarks tools
	$(PYTHON) -m ruff format --check verl_ext tests benchmarks tools

style:
	$(PYTHON) -m ruff check --fix verl_ext tests benchmarks tools
	$(PYTHON) -m ruff format verl_ext tests benchmarks tools

# Mutation testing of the pure core (not part of `make test`: hours on 2 cores; MUTATE_ARGS=--incremental re-tests only
# what changed). Prints the kill rate per file; equivalent survivors are listed in tests/visplay/EQUIVALENT_MUTANTS.md.
mutate:
	nice -n 10 $(strip $(PYTHON) tools/mutate.py $(MUTATE_ARGS))

preflight:
	$(VISPLAY) preflight $(strip --recipe recipes/$(MODEL).yaml $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(EVOLVE_ARGS))

evolve:
	$(VISPLAY) evolve $(EVOLVE_FLAGS)

eval:
	$(VISPLAY) eval $(EVAL_FLAGS)

report:
	$(VISPLAY) report $(strip --run $(DEFAULT_RUN) $(REPORT_ARGS))

status:
	$(VISPLAY) status $(DEFAULT_RUN)

world:
	$(VISPLAY) world $(strip --seeds 3 --iterations 2 --jobs 3 --out $(WORLD_OUT) $(WORLD_ARGS))

world-gpu:
	$(VISPLAY) world $(strip --gpu --jobs 3 --out $(WORLD_OUT)-gpu $(WORLD_ARGS))

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
