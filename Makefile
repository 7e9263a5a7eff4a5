# The two commands of the README. Both create the virtual environment (.venv) on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= demo

.PHONY: book pdf test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --no-compile -e ".[dev]"
	@# pip compiles the installed packages' bytecode in one process; compiled here on every core instead (the
	@# same .pyc files; benchmarks/bench_install.py: 1.0-1.4x on 2 cores). As with pip, a file this Python
	@# cannot compile is skipped.
	$(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
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

clean:
	rm -rf build _book
