# The two commands of the README. Both create the virtual environment (.venv) on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= demo
# Bytecode: pip installs without compiling any (--no-compile, below), and Python compiles a module the first time
# one of these commands imports it and keeps the .pyc beside it; the book and the tests import about 3,300 of the
# 19,000 modules installed, so compiling all of them at install time (as pip does by default) costs more than it
# saves (benchmarks/bench_install.py). An empty PYTHONDONTWRITEBYTECODE lets Python keep them where the
# environment sets it (as some container images do), instead of compiling every module again in every process.
export PYTHONDONTWRITEBYTECODE =

.PHONY: book pdf test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --no-compile -e ".[dev]"
	touch $(STAMP)

## book: generate the synthetic cohorts if absent, execute every chapter, render the book into _book/
book: $(STAMP)
	$(BIN)/python -m mmlib build --profile $(PROFILE)

## pdf: the whole book as one PDF, build/$(PROFILE)/book.pdf, from the chapters `make book` executed
pdf: book
	$(BIN)/python -m mmlib pdf --profile $(PROFILE)

## test: the test suite (unit tests, real papermill execution of the chapters on the ci profile, rendering)
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: benchmarks (timings and ratios, not pass/fail tests)
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_readers.py
	$(BIN)/python benchmarks/bench_embed.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_fit_speed.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_ch05_rerun.py
	$(BIN)/python benchmarks/bench_summary.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_plots.py
	$(BIN)/python benchmarks/bench_chapters.py
	$(BIN)/python benchmarks/bench_targets.py
	$(BIN)/python benchmarks/bench_install.py
	$(BIN)/python benchmarks/bench_stacked_seeds.py

clean:
	rm -rf build _book
