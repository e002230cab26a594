#!/usr/bin/env bash
# Build the reference environment (NumPy 1.26 + PyRadiomics 3.0.1, nothing of radsurv) and
# compute the reference feature CSVs of tests/reference/ (run by `make reference`).
# PyRadiomics 3.0.1 builds only against an installed numpy, without build isolation.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
VENV="${REFERENCE_VENV:-.venv-reference}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import radiomics" 2>/dev/null; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q "numpy==1.26.4"
  "$VENV/bin/python" -m pip install -q -r tests/reference/requirements.txt
  "$VENV/bin/python" -m pip install -q --no-build-isolation "pyradiomics==3.0.1"
fi
"$VENV/bin/python" -c "import numpy; assert numpy.__version__.startswith('1.26'), numpy.__version__"
"$VENV/bin/python" tests/reference/compute_references.py "$@"
