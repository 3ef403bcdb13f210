#!/usr/bin/env bash
# Re-execute the course notebooks in place, in normal (full) mode, and strip stray metadata.
#
#   scripts/run_notebooks.sh                      # every notebooks/NN_*.ipynb, in order
#   scripts/run_notebooks.sh notebooks/03_*.ipynb # only these
#
# The committed notebooks keep their outputs and execution counts so that learners can read them on
# the web; CI re-runs them in fast mode with `DDPM_FAST=1 pytest --nbval notebooks/`, which compares
# the outputs of every cell not marked `# NBVAL_IGNORE_OUTPUT`. Run this script after changing a
# notebook, ddpmlib, or the shipped model (checkpoints/mnist).
#
# Environment:
#   DDPM_DATA_ROOT   where MNIST is (default: ../shared/data next to the repository if it exists,
#                    else ddpmlib's own default ./data)
#   PYTHON           the interpreter with ddpmlib, jupyter and nbstripout (default: .venv/bin/python
#                    if present, else python3)
#   CELL_TIMEOUT     seconds one cell may take (default 3600)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${DDPM_DATA_ROOT:-}" && -d "$repo/../shared/data" ]]; then
    DDPM_DATA_ROOT="$(cd "$repo/../shared/data" && pwd)"
fi
[[ -n "${DDPM_DATA_ROOT:-}" ]] && export DDPM_DATA_ROOT
unset DDPM_FAST  # the committed notebooks show the full results
# notebooks import the ddpmlib of this checkout even when it is not pip-installed
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

if [[ $# -gt 0 ]]; then
    notebooks=("$@")
else
    shopt -s nullglob
    notebooks=(notebooks/[0-9][0-9]_*.ipynb)
fi
if [[ ${#notebooks[@]} -eq 0 ]]; then
    echo "no notebooks found (expected notebooks/NN_name.ipynb)" >&2
    exit 1
fi

for module in nbconvert nbstripout; do
    if ! "$PYTHON" -c "import $module" 2>/dev/null; then
        echo "scripts/run_notebooks.sh needs $module: $PYTHON -m pip install $module" >&2
        exit 1
    fi
done

echo "python: $PYTHON; DDPM_DATA_ROOT=${DDPM_DATA_ROOT:-<unset, ./data>}; normal mode"
status=0
for nb in "${notebooks[@]}"; do
    start=$(date +%s)
    if "$PYTHON" -m jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.timeout="${CELL_TIMEOUT:-3600}" --ExecutePreprocessor.kernel_name=python3 "$nb"; then
        # keep outputs and execution counts; drop widget state, timings and other stray metadata
        "$PYTHON" -m nbstripout --keep-output --keep-count "$nb"
        echo "ok      $nb  ($(( $(date +%s) - start )) s)"
    else
        echo "FAILED  $nb  ($(( $(date +%s) - start )) s)" >&2
        status=1
    fi
done
exit $status
