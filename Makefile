# The two commands of the README, and a few more.
#   make report   build the whole report (creates .venv/ on first use)
#   make test     run the test suite (creates .venv/ on first use)
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.stylelab-installed
PYTEST_ARGS ?=

.PHONY: env report preview test test-all clean

$(STAMP): pyproject.toml workflow/scripts/setup-env.sh
	@bash workflow/scripts/setup-env.sh

env: $(STAMP)

report: $(STAMP)
	$(VENV)/bin/snakemake --cores all --resources gpu=1 -- report

preview: $(STAMP)
	$(VENV)/bin/snakemake --cores 2 --resources gpu=1 --configfile workflow/configs/preview.yaml -- report

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

clean:
	rm -rf results .snakemake
