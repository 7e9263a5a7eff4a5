"""Benchmark of the reads of a :class:`mmlib.metrics.Summary` (chapter 04's step and every-order tables, its
targets, RQ1 answer and findings box).

Runs the previous implementation of ``Summary.select`` / ``difference`` / ``steps`` (kept below, verbatim, as
the reference: every read compared every row of the long table with boolean masks) and the current one (a
:class:`mmlib.metrics.TableIndex` built once per summary) on the same summary, interleaved, and prints each
one's best time, the speed ratio, and whether the outputs are identical (``DataFrame.equals`` with the same
index, columns and dtypes; strings equal). Chapter 04's every-order table (``findings.order_table``, 24 orders x
6 metrics per cohort) made about 10^5 of those mask comparisons.

The summary: by default synthetic predictions shaped like chapter 04's demo run (2 cohorts, 4 modalities, the
models paper/resilient/late/logreg on every prefix and paper on every subset, 5 seeds, ``--n`` test stays),
summarised with ``--boot`` resamples (the reads do not depend on it); or, with ``--artifact``, the predictions
of a chapter 04 artifact folder (``build/artifacts/04/<key>``).

    .venv/bin/python benchmarks/bench_summary.py [--artifact build/artifacts/04/KEY] [--boot 50] [--repeat 3]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmlib import findings, headlines, metrics, targets, train
from mmlib.metrics import Change, select


# ----------------------------------------------------------------- reference: the previous implementation
class RefSummary(metrics.Summary):
    """``Summary`` with the previous ``select``, ``difference`` and ``steps`` (verbatim)."""

    def select(self, metric: str, attribute: str = "overall", *, group: str | None = None, **where) -> pd.DataFrame:
        return select(self.table, metric, attribute, group=group, **where)

    def difference(self, cohort: str, a: tuple[str, str], b: tuple[str, str], key: tuple[str, str, str]) -> Change:
        ra, rb = self.replicates[(cohort, *a)][key], self.replicates[(cohort, *b)][key]
        rows = self.select(*key[:2], group=key[2], cohort=cohort)
        ma = rows.loc[(rows["model"] == a[0]) & (rows["modalities"] == a[1]), "mean"].iloc[0]
        mb = rows.loc[(rows["model"] == b[0]) & (rows["modalities"] == b[1]), "mean"].iloc[0]
        return Change.paired(ma, mb, ra, rb)

    def steps(self, cohort: str, model: str, sequence: list[str], key: tuple[str, str, str]) -> pd.DataFrame:
        rows = []
        means = self.select(*key[:2], group=key[2], cohort=cohort, model=model).set_index("modalities")["mean"]
        for a, b in zip(sequence[:-1], sequence[1:]):
            c = self.difference(cohort, (model, a), (model, b), key)
            before = means[a]
            rows.append({"from": a, "to": b, "before": before, "after": before + c.change, "change": c.change,
                         "ci_low": c.ci_low, "ci_high": c.ci_high, "verdict": c.verdict})
        return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ inputs
def synthetic_predictions(n: int, seeds=(0, 1, 2, 3, 4), seed: int = 0) -> tuple[pd.DataFrame, dict, list]:
    """A predictions table shaped like chapter 04's (``mmlib.train.prediction_frame`` columns that
    :func:`mmlib.metrics.summarise` reads), with the orders and models."""
    rng = np.random.default_rng(seed)
    orders = {"mimic_eye": train.ModalityOrder(["arrival", "vitals", "codes", "cxr"]),
              "mds_ed": train.ModalityOrder(["arrival", "vitals", "labs", "ecg"])}
    models = ["paper", "resilient", "late", "logreg"]
    parts = []
    for cohort, order in orders.items():
        race = rng.choice(["White", "non-White", "Unknown"], n, p=[0.6, 0.36, 0.04]).astype(object)
        gender = rng.choice(["F", "M"], n).astype(object)
        y = (rng.random(n) < 0.2).astype(np.int8)
        runs = {(m, lab) for m in models for lab in order.prefixes()} | {(models[0], lab) for lab in order.subsets()}
        for m, lab in sorted(runs):
            k = len(lab.split("+"))
            for s in (seeds if m != "logreg" else seeds[:1]):
                prob = 1 / (1 + np.exp(-(0.4 * k * (y - 0.5) + rng.normal(size=n))))
                parts.append(pd.DataFrame({
                    "cohort": cohort, "model": m, "modalities": lab, "n_modalities": k, "seed": s,
                    "stay_id": np.arange(n), "split": "test", "prob": prob.round(4),
                    "pred": (prob >= 0.5).astype(np.int8), "label": y, "race": race, "gender": gender,
                    "race_gender": race + " " + gender}))
    return pd.concat(parts, ignore_index=True), orders, models


def from_artifact(folder: Path) -> tuple[pd.DataFrame, dict, list]:
    rec = json.loads((folder / "config.json").read_text())
    orders = {n: train.ModalityOrder(o) for n, o in rec["orders"].items()}
    return pd.read_parquet(folder / "predictions.parquet"), orders, rec["models"]


# ------------------------------------------------------------------------------------------------ run
def chapter04_reads(summary, orders: dict, models: list) -> tuple[dict, dict]:
    """What chapter 04 reads from its summary (outputs and seconds per step)."""
    lead, out, sec = models[0], {}, {}
    steps = [("step_table", lambda: {n: findings.step_table(summary, n, lead, orders[n]) for n in orders}),
             ("order_table", lambda: {n: findings.order_table(summary, n, lead, orders[n]) for n in orders}),
             ("target_table", lambda: targets.target_table(summary, orders, lead)),
             ("rq1_answer", lambda: findings.rq1_answer(summary, orders, out["step_table"], out["order_table"], models)),
             ("findings box", lambda: headlines.box(headlines.adding_modalities(summary, orders, lead)))]
    for name, fn in steps:
        t0 = time.perf_counter()
        out[name] = fn()
        sec[name] = time.perf_counter() - t0
    return out, sec


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, pd.DataFrame):
        return (a.equals(b) and a.index.equals(b.index) and list(a.columns) == list(b.columns)
                and list(a.dtypes) == list(b.dtypes))
    return type(a) is type(b) and a == b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, help="a chapter 04 artifact folder (default: synthetic predictions)")
    ap.add_argument("--n", type=int, default=900, help="test stays per synthetic cohort")
    ap.add_argument("--boot", type=int, default=50, help="bootstrap resamples of the summary")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved timings per path (the best is kept)")
    args = ap.parse_args()
    pr, orders, models = from_artifact(args.artifact) if args.artifact else synthetic_predictions(args.n)
    t0 = time.perf_counter()
    s = metrics.summarise(pr, n_boot=args.boot, seed=0, progress=False)
    print(f"summary: {len(s.table):,} rows ({time.perf_counter() - t0:.0f} s to compute, not timed below)")
    best: dict = {"previous": {}, "current": {}}
    outs = {}
    for _ in range(args.repeat):  # interleaved: the machine's load affects both alike
        for name, cls in (("previous", RefSummary), ("current", metrics.Summary)):
            outs[name], sec = chapter04_reads(cls(s.table, s.replicates), orders, models)
            for k, v in sec.items():
                best[name][k] = min(best[name].get(k, np.inf), v)
    rows, ok = [], True
    for k in best["current"]:
        same = _same(outs["previous"][k], outs["current"][k])
        ok &= same
        rows.append({"chapter 04 step": k, "previous s": round(best["previous"][k], 3),
                     "current s": round(best["current"][k], 3),
                     "speed-up": round(best["previous"][k] / best["current"][k], 1), "identical": same})
    tot_p, tot_c = sum(best["previous"].values()), sum(best["current"].values())
    rows.append({"chapter 04 step": "all", "previous s": round(tot_p, 3), "current s": round(tot_c, 3),
                 "speed-up": round(tot_p / tot_c, 1), "identical": ok})
    print(f"best of {args.repeat}, interleaved")
    print(pd.DataFrame(rows).to_string(index=False))
    if not ok:
        print("MISMATCH: the current implementation does not reproduce the previous outputs")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
