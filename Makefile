# The two commands of the README, and a few more.
#   make report   build the whole report (creates .venv/ on first use)
#   make test     run the test suite, as CI does (creates .venv/ on first use)
#   make test-quick   the developer's loop: the tests not marked slow (under 3 minutes on 2 cores)
#   make models   fetch the diffusion model (where there is network; the report works without it)
#   make bundle   the finished run as one zip (report, config, records, packages, source); for the preview:
#                 make bundle RESULTS=results/preview CONFIGFILES=workflow/configs/preview.yaml
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.stylelab-installed
TEST_TOOLS := $(VENV)/.test-tools-installed
PYTEST_ARGS ?=
# The default run's root (config.yaml's `results:`; the preview's is $(RESULTS)/preview), and the model
# manifest the workflow's `models` job writes there.
RESULTS := results
MODEL_MANIFEST := $(RESULTS)/part2/model/manifest.json

.PHONY: env models report preview bundle test test-quick docs clean gpu-wheels gpu-check

$(STAMP): pyproject.toml workflow/scripts/setup-env.sh
	@bash workflow/scripts/setup-env.sh

env: $(STAMP)

# pdftoppm and headless Chromium, with which the tests look at the report as a reader would.
$(TEST_TOOLS): $(STAMP) workflow/scripts/setup-env.sh
	@bash workflow/scripts/setup-env.sh test-tools && touch $@

# The diffusion model's files (config.yaml's diffusion.model at diffusion.revision, for its precision) into
# the Hugging Face cache, and their manifest: the one step that downloads. Run it where there is network.
# It stops with one line if the model cannot be had (fallback: error), and fetches again when the manifest
# says the model was not available (an earlier run without network); a model already fetched is left as it is.
models: $(STAMP)
	@if grep -q '"available": true' $(MODEL_MANIFEST) 2>/dev/null; then again=; else again="--forcerun models"; fi; \
	$(VENV)/bin/snakemake --cores 1 $$again --config 'diffusion={fallback: error}' -- models

# CACHE=DIR: take every experiment whose settings, inputs and code are unchanged from Snakemake's between-workflow
# cache in DIR, and keep new ones there (workflow/rules/cache.smk); DIR can be shared by clones and colleagues.
CACHE ?=
CACHED = $(if $(CACHE),mkdir -p $(CACHE) && SNAKEMAKE_OUTPUT_CACHE=$(abspath $(CACHE)) ,)
CACHE_FLAG = $(if $(CACHE),--cache,)

report: $(STAMP)
	$(CACHED)$(VENV)/bin/snakemake --cores all --resources gpu=1 $(CACHE_FLAG) -- report

preview: $(STAMP)
	$(CACHED)$(VENV)/bin/snakemake --cores 2 --resources gpu=1 $(CACHE_FLAG) --configfile workflow/configs/preview.yaml -- report

# One zip of a finished run (stylelab bundle): CONFIGFILES are the --configfile files the run was made with.
CONFIGFILES ?=
bundle: $(STAMP)
	$(VENV)/bin/stylelab bundle --results $(RESULTS) --config config.yaml $(CONFIGFILES)

test: $(STAMP) $(TEST_TOOLS)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Every module imported, one tiny job of each kind, a dry run of the workflow; no Snakemake or Slurm run, no
# test that takes more than a few seconds (pyproject.toml's `slow` marker), none of the test tools.
test-quick: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The pictures of README.md and docs/*.md, from the results of a report run (make report first).
DOCS_FIGURES := $(RESULTS)/part1/figures/inversion_grid.png $(RESULTS)/part1/figures/texture_grid.png \
	$(RESULTS)/part1/figures/transfer_grid.png $(RESULTS)/part2/figures/comparison.png \
	$(RESULTS)/part3/figures/colour.png $(RESULTS)/part3/figures/blend.png
docs: $(STAMP)
	$(VENV)/bin/stylelab small-png $(DOCS_FIGURES) --out-dir docs --width 1000 --max-kb 250

# The GPU check (benchmarks/gpu_check.py, docs/performance.md): `make gpu-wheels` where there is network
# downloads into .whl/ the wheels a GPU machine with PyTorch lacks, for its Python (GPU_PYTHON); copy the tree
# there and `make gpu-check` installs them beside that Python's packages and runs the check (at most 8 minutes).
GPU_PYTHON ?= 3.12
GPU_SITE ?= /tmp/stylelab-gpu-site
gpu-wheels:
	python3 -m pip download --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $$(python3 benchmarks/gpu_check.py --wheels)

gpu-check:
	@if ls .whl/*.whl >/dev/null 2>&1; then \
		python3 -m pip install -q --no-index --no-deps --upgrade --target $(GPU_SITE) .whl/*.whl; fi
	PYTHONPATH=$(GPU_SITE) python3 benchmarks/gpu_check.py --out benchmarks/out

# Every run's files (the preview's are under the same root) and Snakemake's records of them.
clean:
	rm -rf $(RESULTS) .snakemake
