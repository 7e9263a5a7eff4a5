"""Benchmark of one network fit, working tree against a git revision, in the same run (issue 15: training speed).

Trains every neural model (``paper``, ``resilient``, ``late``, ``linear``) on a demo cohort, all of its
modalities, for a fixed number of epochs (early stopping off, so both versions do the same work), one fit at a
time on one thread as the chapters do, with the working tree's ``mmlib`` and with the ``mmlib`` of ``--baseline``
(checked out in a temporary ``git worktree``; default :data:`BEFORE`, the last revision before the training steps
were made faster, so that ``make bench`` keeps measuring that change). Each fit runs in a fresh subprocess, the two
versions alternating (the order flipping each round), so that the load of a shared machine falls on both alike.
Prints seconds per fit of each version, their ratio (baseline / working tree: above 1 is faster), and the
largest difference between the two versions' validation losses after the first epoch (the numerics may differ
in the last bits; the training must not).

Uses the demo artifacts of chapters 01-02 in the build folder, building them first if needed.

    .venv/bin/python benchmarks/bench_fit_speed.py [--baseline 059bcca] [--cohort mimic_eye] [--epochs 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("paper", "resilient", "late", "linear")
#: The revision before fused AdamW, ``index_select`` mini-batches and masking after the input layers (issue 15).
BEFORE = "059bcca"

_CHILD = r"""
import json, sys, time
from mmlib import train
cohort_dir, embeddings, model, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = train.load_fusion_data(cohort_dir, embeddings)
cfg = train.TrainConfig(max_epochs=epochs, patience=epochs + 1)
train.fit_network(data, model, data.modalities, 0, train.TrainConfig(max_epochs=1))  # warm-up: first-call costs
t0 = time.perf_counter()
fit = train.fit_network(data, model, data.modalities, 0, cfg)
print(json.dumps({"seconds": time.perf_counter() - t0, "epochs": len(fit.history),
                  "first_val_loss": fit.history[0]["val_loss"]}))
"""


def _fit(root: Path, cohort_dir: Path, embeddings: Path, model: str, epochs: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MMLIB_FIT_CACHE": "off"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(cohort_dir), str(embeddings), model, str(epochs)],
                         env=env, cwd=root, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"fit of {model} under {root} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default=BEFORE, help="git revision to compare with")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--cohort", default="mimic_eye")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from bench_train import _inputs  # chapters 01-02 of the profile, built first if needed
    from mmlib import pipeline

    d01, d02 = _inputs(pipeline.load_profile(args.profile))
    cohort_dir, embeddings = d01 / f"cohort_{args.cohort}", d02 / f"embeddings_{args.cohort}.npz"
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), rev], cwd=REPO, check=True,
                       capture_output=True)
        try:
            times = {(v, m): [] for v in ("tree", "base") for m in MODELS}
            losses = {}
            for r in range(args.rounds):
                for m in MODELS:
                    for v in (("tree", "base") if r % 2 == 0 else ("base", "tree")):
                        res = _fit(REPO if v == "tree" else base, cohort_dir, embeddings, m, args.epochs)
                        times[(v, m)].append(res["seconds"])
                        losses[(v, m)] = res["first_val_loss"]
                print(f"  round {r + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)
    print(f"\none fit, {args.cohort} (demo), all modalities, {args.epochs} epochs, one thread; "
          f"mean of {args.rounds} rounds")
    print(f"{'model':10s} {'baseline ' + rev:>16s} {'working tree':>14s} {'ratio':>7s} {'|d val loss| ep 1':>18s}")
    total = {"tree": 0.0, "base": 0.0}
    for m in MODELS:
        b, t = (sum(times[(v, m)]) / args.rounds for v in ("base", "tree"))
        total["base"] += b
        total["tree"] += t
        print(f"{m:10s} {b:14.2f} s {t:12.2f} s {b / t:6.2f}x {abs(losses[('base', m)] - losses[('tree', m)]):18.2e}")
    print(f"{'all four':10s} {total['base']:14.2f} s {total['tree']:12.2f} s {total['base'] / total['tree']:6.2f}x")


if __name__ == "__main__":
    main()
