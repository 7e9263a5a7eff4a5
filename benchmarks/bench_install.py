"""Benchmark of installing ``.venv`` (issue 15: the cold build includes the install), in the same run, three ways of
getting the packages' bytecode:

- ``pip``: pip compiling every installed module itself (its default, one process);
- ``compileall``: ``pip install --no-compile``, then ``compileall`` over every installed module on every core (what
  ``make`` did until 2026-12-04);
- ``make``: ``pip install --no-compile`` only, as the Makefile does now: a module is compiled the first time a command
  imports it and its ``.pyc`` kept (the Makefile's commands run with ``PYTHONDONTWRITEBYTECODE`` empty).

A way's cost is its install **plus** one run of :data:`FIRST_USE`: a process importing what ``make book`` and
``make test`` import (every ``mmlib`` module, the chapters' kernel, the renderer's Sphinx extensions, the PDF's
pandoc, the test runner), with bytecode writing on. For ``pip`` and ``compileall`` that run finds every ``.pyc``
already there; for ``make`` it compiles what it imports (once: the next run finds them), so the comparison charges
``make`` for the compiling it defers. Each round creates one scratch virtual environment per way in a temporary
folder, upgrades its pip (not timed) and installs this checkout (``-e ".[dev]"``, the Makefile's command) from the
package index pip is configured with; the order of the ways rotates each round, so that the load of a shared
machine falls on all alike. Prints each way's seconds, the ratios and the ``.pyc`` files each leaves.

    .venv/bin/python benchmarks/bench_install.py [--rounds 3] [--python python3.11]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What ``make`` did before (kept for the comparison).
COMPILE = ("import compileall, sysconfig; "
           "compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)")
#: A process importing what the book's and the tests' processes import.
FIRST_USE = """
import importlib, pkgutil
import matplotlib
matplotlib.use("Agg")
import mmlib
for m in pkgutil.walk_packages(mmlib.__path__, "mmlib."):
    if m.name != "mmlib.__main__":
        importlib.import_module(m.name)
from mmlib.book import _jb_default_extensions
for ext in _jb_default_extensions() + ["sphinxcontrib.bibtex", "jupyter_book.cli.main", "sphinx.builders.html"]:
    importlib.import_module(ext)
import papermill, ipykernel.kernelapp, ipykernel.ipkernel, pypandoc, typst
import pytest, xdist.plugin, selenium.webdriver
from transformers import AutoTokenizer
"""
WAYS = ("pip", "compileall", "make")


def _install(python: str, venv: Path, way: str) -> tuple[float, float, int]:
    """Seconds to install this checkout into a new ``venv`` the ``way`` given, seconds of the first :data:`FIRST_USE`
    run after it, and the ``.pyc`` files left."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, capture_output=True)
    t0 = time.perf_counter()
    pip = [py, "-m", "pip", "install", "-q"] + (["--no-compile"] if way != "pip" else []) + ["-e", f"{REPO}[dev]"]
    out = subprocess.run(pip, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"pip install ({way}) failed:\n{out.stderr[-2000:]}")
    if way == "compileall":
        subprocess.run([py, "-c", COMPILE], check=True)
    install = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([py, "-c", FIRST_USE], check=True, cwd=REPO, capture_output=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    first = time.perf_counter() - t0
    return install, first, sum(1 for _ in (venv / "lib").rglob("*.pyc"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=shutil.which("python3.11") or sys.executable,
                    help="interpreter the virtual environments are made with")
    args = ap.parse_args()
    make = (REPO / "Makefile").read_text()
    if "--no-compile" not in make or "compileall" in make or "export PYTHONDONTWRITEBYTECODE =" not in make:
        raise SystemExit("the Makefile no longer installs the way the `make` way here says: update this benchmark")
    times: dict[str, list] = {w: [] for w in WAYS}
    files = {}
    for r in range(args.rounds):
        for way in WAYS[r % 3:] + WAYS[:r % 3]:
            with tempfile.TemporaryDirectory(prefix=f"bench-install-{way}-") as tmp:
                install, first, files[way] = _install(args.python, Path(tmp) / "venv", way)
            times[way].append((install, first))
            print(f"  round {r + 1}/{args.rounds}: {way:10s} install {install:6.1f} s + first use {first:5.1f} s"
                  f" = {install + first:6.1f} s, {files[way]} .pyc files", flush=True)
    mean = {w: [sum(t[i] for t in times[w]) / args.rounds for i in (0, 1)] for w in WAYS}
    total = {w: sum(mean[w]) for w in WAYS}
    print(f"\ninstalling this checkout into a new virtual environment and importing what the book and the tests "
          f"import once, mean of {args.rounds} rounds")
    for w, what in zip(WAYS, ("pip compiling every module (one process)", "--no-compile, then compileall (all cores)",
                              "--no-compile, compiled on first import")):
        print(f"{what:42s} {mean[w][0]:6.1f} s + {mean[w][1]:5.1f} s = {total[w]:6.1f} s  ({files[w]} .pyc files)")
    print(f"make's way: {total['pip'] / total['make']:.2f}x pip's, {total['compileall'] / total['make']:.2f}x "
          "compileall's")


if __name__ == "__main__":
    main()
