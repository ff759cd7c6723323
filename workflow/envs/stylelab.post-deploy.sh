#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment (stylelab.yaml), from the working directory, which
# for this workflow is the repository root: installs the project itself, editable as in .venv/, so the
# jobs run the code of this checkout. Its dependencies are stylelab.yaml's pins.
set -euo pipefail
if [ ! -f pyproject.toml ] || ! grep -q '^name = "stylelab"' pyproject.toml; then
    echo "stylelab.post-deploy.sh: run Snakemake from the stylelab repository root (here: $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps --editable .
