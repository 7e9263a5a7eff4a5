"""Benchmark of installing ``.venv`` (issue 15: the cold build includes the install), in the same run: pip compiling
the packages' bytecode itself (one process) against what ``make`` does -- ``pip install --no-compile`` and then
``compileall`` on every core.

Each round creates two scratch virtual environments in a temporary folder, upgrades their pip and installs this
checkout (``-e ".[dev]"``, the Makefile's command) from the same package index pip is configured with; the two ways
alternate, the order flipping each round, so that the load of a shared machine falls on both alike. Prints the
seconds of each way (pip upgrade excluded), their ratio (pip compiling / make's way: above 1 is faster) and the
number of ``.pyc`` files each leaves (they must match).

    .venv/bin/python benchmarks/bench_install.py [--rounds 2] [--python python3.11]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What the Makefile runs after ``pip install --no-compile`` (kept equal to it by hand: the Makefile is the source).
COMPILE = ("import compileall, sysconfig; "
           "compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)")


def _install(python: str, venv: Path, way: str) -> tuple[float, int]:
    """Seconds to install this checkout into a new ``venv`` the ``way`` given, and the ``.pyc`` files left."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, capture_output=True)
    t0 = time.perf_counter()
    pip = [py, "-m", "pip", "install", "-q"] + (["--no-compile"] if way == "make" else []) + ["-e", f"{REPO}[dev]"]
    out = subprocess.run(pip, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"pip install ({way}) failed:\n{out.stderr[-2000:]}")
    if way == "make":
        subprocess.run([py, "-c", COMPILE], check=True)
    seconds = time.perf_counter() - t0
    return seconds, sum(1 for _ in (venv / "lib").rglob("*.pyc"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--python", default=shutil.which("python3.11") or sys.executable,
                    help="interpreter the virtual environments are made with")
    args = ap.parse_args()
    if COMPILE.split("; ", 1)[1] not in (REPO / "Makefile").read_text():
        raise SystemExit("the Makefile no longer compiles the way COMPILE says: update this benchmark")
    times = {"pip": [], "make": []}
    files = {}
    for r in range(args.rounds):
        for way in (("pip", "make") if r % 2 == 0 else ("make", "pip")):
            with tempfile.TemporaryDirectory(prefix=f"bench-install-{way}-") as tmp:
                seconds, files[way] = _install(args.python, Path(tmp) / "venv", way)
            times[way].append(seconds)
            print(f"  round {r + 1}/{args.rounds}: {way:4s} {seconds:6.1f} s, {files[way]} .pyc files", flush=True)
    pip, make = (sum(times[w]) / args.rounds for w in ("pip", "make"))
    print(f"\ninstalling this checkout into a new virtual environment, mean of {args.rounds} rounds")
    print(f"pip compiling bytecode (one process)      {pip:7.1f} s")
    print(f"--no-compile, then compileall (all cores) {make:7.1f} s")
    print(f"ratio {pip / make:.2f}x; .pyc files {files['pip']} vs {files['make']}")


if __name__ == "__main__":
    main()
