"""Benchmark: re-running chapter 05 (missing modalities) with one changed parameter, against the issue's 60 s target.

What a reader does after reading chapter 05: ``python -m mmlib run 05 -p draws 10``. This benchmark runs exactly
that command (a new process: parameter checks and keys, papermill, the kernel's imports, the chapter) and prints

- its wall time and the ratio to the 60 s target (< 1: within the target), and the chapter's own time (the
  ``executed in`` line: papermill and the kernel, without the command's start-up);
- its peak memory: the largest resident set of any process of the run (``getrusage(RUSAGE_CHILDREN).ru_maxrss``
  of a wrapper process: the command, the kernel, joblib's workers once they are waited for) and the peak of the
  sum over the process tree (sampled every 0.2 s with psutil);
- with ``--baseline REV``, the same for that git revision, checked out in a temporary ``git worktree``, in the
  same run, interleaved with the current tree's runs (``--repeat``), and whether both wrote the same bytes:
  every table of chapter 05's artifact (parquet files byte for byte; JSON with its ``*_seconds`` timings left out)
  and every output of the executed notebook (with the times it prints masked).

Chapter 05 reads the artifacts of chapters 01, 02 and 04. They are built first if missing (in ``build/``, the
ordinary cache: a later run reuses them; this takes minutes on the demo profile and is not timed). The timed run
works in a temporary build folder holding hard links to those upstream artifacts, so it does not replace
``build/<profile>/executed`` or the chapter's own artifact. Artifact keys hash the ``mmlib`` sources, so another
revision has other upstream keys: by default its upstream chapters are built too (once, then reused);
``--share-upstream`` has every tree read one set of upstream artifacts instead, linked under each tree's keys:
those of the first tree (current, then baseline) whose upstream is already complete, else the current tree's,
built (valid when the revisions compute chapters 01-04 identically, which is what a byte-identical speed-up
claims; the byte check then compares the revisions' chapter 05 alone).

A re-run follows a build: the build ran chapter 05 with the profile's parameters, and what a re-run with another
``draws`` need not redo -- the train x test protocol's retraining -- is in the fit cache (``build/fit_cache``,
:class:`mmlib.train.FitCache`; the timed runs use that folder). So before the timed runs each tree runs chapter 05
once with the profile's own parameters, untimed (``--no-warm-up``: not; then a cache that is still cold is
filled by the first timed run, which pays the training). The chapter's own ``retraining`` time is printed for
each run, so a run that trained is visible.

    .venv/bin/python benchmarks/bench_ch05_rerun.py [--profile demo] [-p draws 10] [--baseline HEAD]
                                                   [--share-upstream] [--no-warm-up] [--repeat 1] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 60.0
CHAPTER = "05"

_UPSTREAM = r"""
import json, sys
from mmlib import pipeline as p
params = p.load_profile(sys.argv[1], [(k, p.parse_value(v)) for k, v in json.loads(sys.argv[2])])
steps = p.plan(params, upto=sys.argv[3])
keys = {c.id: k for c, k in steps}
if sys.argv[4] == "build":
    p.ensure_synthetic_cohorts(params, progress=False)
    # a planned key whose inputs were not built yet is provisional: each chapter's key is resolved from its
    # inputs' content once they exist, as `build` does (else chapter 05 would look for another chapter 04)
    for ch, _ in steps:
        key = p._key_now(ch, params, keys)
        if ch is not steps[-1][0]:
            print(p.run_chapter(ch, key, params, {n: keys[n] for n in ch.needs}, force=False, progress=False).line(),
                  file=sys.stderr, flush=True)
if sys.argv[4] == "link":  # hard links to the upstream artifacts of sys.argv[5] ({chapter: folder}), this tree's keys
    import os, shutil
    src = json.loads(sys.argv[5])
    for ch, _ in steps:
        key = p._key_now(ch, params, keys)  # resolved once the chapters before it are linked: their content
        if ch is not steps[-1][0]:
            shutil.copytree(src[ch.id], p.artifact_dir(ch.id, key), copy_function=os.link)
print(json.dumps({"keys": keys, "needs": steps[-1][0].needs,
                  "dirs": {c: str(p.artifact_dir(c, k)) for c, k in keys.items()},
                  "complete": all(p.is_complete(c, keys[c]) for c in steps[-1][0].needs)}))
"""

_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
            "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")


BUILD = ROOT / "build"  # the shared build folder (--build-dir)


def _env(root: Path, build: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MMLIB_BUILD_DIR"] = str(build)
    env["MMLIB_DATA_DIR"] = str(BUILD.parent / "data" / "synthetic")  # the cohorts are generated once, for every tree
    env["MMLIB_ROOT"] = str(root)
    env["MMLIB_FIT_CACHE"] = str(BUILD / "fit_cache")  # the build's fit cache (a revision without one ignores it)
    return env


def upstream(root: Path, profile: str, overrides: list, build: bool) -> dict:
    """Keys and artifact folders of chapter 05 and the chapters it reads, for the tree at ``root``; with
    ``build``, the missing upstream artifacts are built (in :data:`BUILD`, the shared cache)."""
    r = subprocess.run([sys.executable, "-c", _UPSTREAM, profile, json.dumps(overrides), CHAPTER,
                        "build" if build else "keys"], cwd=root, env=_env(root, BUILD),
                       stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"{root}: could not plan or build chapter {CHAPTER}'s inputs (exit {r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _tree_rss(pid: int, stop: threading.Event, peak: list) -> None:
    import psutil

    try:
        top = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [top, *top.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        peak[0] = max(peak[0], total)
        stop.wait(0.2)


def timed_run(root: Path, profile: str, overrides: list, inputs_from: dict, work: Path) -> dict:
    """``python -m mmlib run 05`` in the tree at ``root``, in the build folder ``work`` (hard links to the
    upstream artifacts ``inputs_from[cid]`` under this tree's keys): seconds, memory, artifact folder."""
    # every chapter before it, not only those it reads: a key hashes its inputs' content (their _done.json), so
    # chapter 04's key needs chapter 03's artifact present too; the tree resolves each key as it links
    r = subprocess.run([sys.executable, "-c", _UPSTREAM, profile, json.dumps(overrides), CHAPTER, "link",
                        json.dumps(inputs_from)], cwd=root, env=_env(root, work), stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"{root}: could not link chapter {CHAPTER}'s inputs into {work} (exit {r.returncode})")
    plan = json.loads(r.stdout.strip().splitlines()[-1])
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "mmlib", "run", CHAPTER, "--profile", profile]
    for k, v in overrides:
        cmd += ["-p", k, v]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, env=_env(root, work), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_tree_rss, args=(proc.pid, stop, peak), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"{root}: `mmlib run {CHAPTER}` failed (exit {proc.returncode})")
    chapter_s = re.search(r"executed in ([\d.]+) s", out)
    maxrss = re.search(r"MAXRSS_KB (\d+)", err)
    key = re.search(r"artifacts/" + CHAPTER + r"/([0-9a-f]+)", out)
    art = work / "artifacts" / CHAPTER / (key.group(1) if key else plan["keys"][CHAPTER])
    retrain = re.search(r"retraining (\d+) s", (art / "executed.ipynb").read_text()) if art.exists() else None
    return {"wall": wall, "chapter": float(chapter_s.group(1)) if chapter_s else float("nan"),
            "maxrss_mb": int(maxrss.group(1)) / 1024 if maxrss else float("nan"), "tree_mb": peak[0] / 2**20,
            "retrain": int(retrain.group(1)) if retrain else None, "artifact": art}


_TIMES = re.compile(r"\d[\d,]*(\.\d+)?(\s*(s|seconds|predictions/s)\b|\s*\(\d[\d,]*\s*predictions/s\))")


def artifact_digest(folder: Path) -> dict:
    """What must be the same bytes: every parquet file, every JSON file without its timings, and every output
    of the executed notebook with the times it prints masked."""
    out = {}
    for f in sorted(folder.iterdir()):
        if f.name == "_done.json":
            continue
        if f.suffix == ".json":
            obj = json.loads(f.read_text())
            if isinstance(obj, dict):
                obj = {k: v for k, v in obj.items() if not k.endswith("_seconds")}
            out[f.name] = json.dumps(obj, sort_keys=True)
        elif f.suffix == ".ipynb":
            nb = json.loads(f.read_text())
            cells = [c.get("outputs", []) for c in nb["cells"] if c["cell_type"] == "code"
                     and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
            out[f.name] = _TIMES.sub("<time>", json.dumps(cells, sort_keys=True))
        else:
            out[f.name] = f.read_bytes()
    return out


def main() -> int:
    global BUILD
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="the changed parameter(s) (default: -p draws 10; the demo profile draws 20)")
    ap.add_argument("--baseline", help="also time this git revision (e.g. HEAD), in a temporary worktree")
    ap.add_argument("--share-upstream", action="store_true",
                    help="every tree reads one tree's chapter 01-04 artifacts (see the module docstring)")
    ap.add_argument("--no-warm-up", action="store_true",
                    help="no untimed run of chapter 05 with the profile's parameters before the timed runs")
    ap.add_argument("--build-dir", type=Path, default=BUILD, help="the shared build folder (default: build/)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tree, interleaved (each result is printed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary build folders (printed)")
    args = ap.parse_args()
    BUILD = args.build_dir.resolve()
    overrides = [tuple(p) for p in (args.param or [("draws", "10")])]
    scratch = Path(tempfile.mkdtemp(prefix="bench_ch05_"))
    trees = {"current": ROOT}
    try:
        if args.baseline:
            rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.strip()
            wt = scratch / f"baseline-{rev}"
            subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(wt), rev], cwd=ROOT, check=True)
            trees[f"baseline {rev}"] = wt
        t0 = time.perf_counter()
        plans = {name: upstream(root, args.profile, overrides, build=not args.share_upstream)
                 for name, root in trees.items()}
        source = {name: name for name in trees}
        if args.share_upstream:
            have = [n for n in trees if plans[n]["complete"]]
            if not have:
                plans["current"] = upstream(ROOT, args.profile, overrides, build=True)
            source = {name: (have or ["current"])[0] for name in trees}
        print(f"chapter {CHAPTER}'s inputs ready in {time.perf_counter() - t0:.0f} s (not timed); "
              f"changed: {' '.join(f'{k}={v}' for k, v in overrides)}; profile {args.profile}", flush=True)
        if args.share_upstream:
            print("upstream artifacts of every tree: " + ", ".join(sorted(set(source.values()))) + "'s", flush=True)
        if not args.no_warm_up:
            for name, root in trees.items():
                res = timed_run(root, args.profile, [], plans[source[name]]["dirs"],
                                scratch / f"warm-{name.split()[0]}")
                print(f"{name:>18}: warm-up (profile's parameters, not timed) {res['wall']:.1f} s, retraining "
                      f"{res['retrain']} s", flush=True)
        results: dict = {name: [] for name in trees}
        for r in range(args.repeat):
            for name, root in trees.items():
                work = scratch / f"build-{name.split()[0]}-{r}"
                res = timed_run(root, args.profile, overrides, plans[source[name]]["dirs"], work)
                results[name].append(res)
                print(f"{name:>18}: {res['wall']:6.1f} s wall ({res['wall'] / TARGET_S:.2f} x the {TARGET_S:.0f} s "
                      f"target), chapter {res['chapter']:.1f} s (retraining {res['retrain']} s); peak memory "
                      f"{res['maxrss_mb']:,.0f} MB largest process, {res['tree_mb']:,.0f} MB all processes", flush=True)
        ok = True
        if args.baseline:
            base = [n for n in trees if n != "current"][0]
            a, b = (artifact_digest(results[n][0]["artifact"]) for n in ("current", base))
            differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            ok = not differ
            best = {n: min(x["wall"] for x in results[n]) for n in trees}
            print(f"speed-up (best wall time): {best[base] / best['current']:.2f}x; chapter {CHAPTER}'s artifact: "
                  + ("identical (" + ", ".join(sorted(a)) + ")" if ok else f"DIFFERS in {differ}"))
        if args.keep:
            print(f"kept: {scratch}")
        return 0 if ok else 1
    finally:
        if args.baseline:
            for name, root in trees.items():
                if name != "current":
                    subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=ROOT)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
