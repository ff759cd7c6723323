# The two commands of the README, and a few more.
#   make report   build the whole report (creates .venv/ on first use)
#   make test     run the test suite (creates .venv/ on first use)
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.stylelab-installed
TEST_TOOLS := $(VENV)/.test-tools-installed
PYTEST_ARGS ?=

.PHONY: env report preview test test-all docs clean

$(STAMP): pyproject.toml workflow/scripts/setup-env.sh
	@bash workflow/scripts/setup-env.sh

env: $(STAMP)

# pdftoppm and headless Chromium, with which the tests look at the report as a reader would.
$(TEST_TOOLS): $(STAMP) workflow/scripts/setup-env.sh
	@bash workflow/scripts/setup-env.sh test-tools && touch $@

report: $(STAMP)
	$(VENV)/bin/snakemake --cores all --resources gpu=1 -- report

preview: $(STAMP)
	$(VENV)/bin/snakemake --cores 2 --resources gpu=1 --configfile workflow/configs/preview.yaml -- report

test: $(STAMP) $(TEST_TOOLS)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP) $(TEST_TOOLS)
	$(VENV)/bin/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# The README's pictures, from the results of a report run (make report first), under the default run's
# root (config.yaml's `results:`; the preview's is $(RESULTS)/preview).
RESULTS := results
DOCS_FIGURES := $(RESULTS)/part1/figures/inversion_grid.png $(RESULTS)/part1/figures/texture_grid.png \
	$(RESULTS)/part1/figures/transfer_grid.png $(RESULTS)/part2/figures/comparison.png
docs: $(STAMP)
	$(VENV)/bin/stylelab small-png $(DOCS_FIGURES) --out-dir docs --width 1000 --max-kb 250

# Every run's files (the preview's are under the same root) and Snakemake's records of them.
clean:
	rm -rf $(RESULTS) .snakemake
