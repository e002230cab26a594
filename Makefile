# Two commands: `make demo` (the whole pipeline on the embedded synthetic cohort) and `make test`.
# Both create or refresh the project-local virtual environment .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch==2.13.0 resolves to the CPU build where one is on the pip path (find-links); GPU users
# point TORCH at a CUDA build, e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH ?= torch==2.13.0
DEMO_OUT ?= demo_out

.PHONY: venv demo test lint format clean reference

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# PyRadiomics 3.0.1 builds only against an installed numpy, without build isolation.
	$(BIN)/python -m pip install -q "numpy>=2.0"
	$(BIN)/python -m pip show -q pyradiomics >/dev/null 2>&1 || \
		$(BIN)/python -m pip install -q --no-build-isolation "pyradiomics==3.0.1"
	$(BIN)/python -m pip show -q torch >/dev/null 2>&1 || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radsurv demo $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/ruff check radsurv tests bench
	$(BIN)/ruff format --check radsurv tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check radsurv tests bench

format: $(STAMP)
	$(BIN)/ruff format radsurv tests bench
	$(BIN)/ruff check --fix radsurv tests bench

# Reference features from a separate NumPy-1.26 environment (tests/reference/README.md).
reference:
	PYTHON=$(PYTHON) bash tests/reference/build.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
