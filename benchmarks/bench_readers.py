"""Chapter 02's text writing on the CPU path, before and after: the offline readers and the pseudo-notes.

For each cohort it times, in one process per code version, what chapter 02 does before embedding: the
structured pseudo-notes (:func:`mmlib.text.structured_notes`), the chest X-ray reader from the cohort's JPG files
(:func:`mmlib.text.transcribe_cxr`), the ECG reader (:func:`mmlib.text.interpret_ecg`) and the fidelity tables
(:func:`mmlib.tables.transcription_fidelity`). The baseline is the ``mmlib`` of a git revision (``--baseline``,
default ``HEAD``, exported with ``git archive``), the other the working tree; both run on the same cohorts, one
after the other (``--rounds 2``: baseline, new, new, baseline, so that a shared machine's load falls on both
alike). It prints each step's seconds and the ratio baseline / new, and checks that every text and every
fidelity table is the same (texts: equal strings, ``None`` in the same places; tables: exactly equal).

A last line keeps the earlier reference: the ECG reader's records/s against plain ``neurokit2.ecg_process`` on
lead II for ``--nk-baseline`` records (the per-record approach the reader replaces).

    .venv/bin/python benchmarks/bench_readers.py [--n 4500 | --cohorts build/artifacts/01/<key>] [--baseline HEAD]
"""
from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- one code version
def _cpu() -> float:
    """CPU seconds of this process and of its live worker processes (psutil; without it, this process only):
    a shared machine's load stretches wall times, CPU seconds much less."""
    try:
        import psutil
    except ImportError:
        return time.process_time()
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for c in me.children(recursive=True):
        try:
            total += sum(c.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def child(cohort_dir: Path, out: Path) -> None:
    """Chapter 02's text steps with the ``mmlib`` on ``PYTHONPATH``; times and outputs pickled to ``out``."""
    import mmlib
    from mmlib import tables, text
    from mmlib.data import Cohort
    from mmlib.schema import MODALITIES

    times, cpu, texts, fidelity = {}, {}, {}, {}
    for n in ("mimic_eye", "mds_ed"):
        c = Cohort.load(cohort_dir / f"cohort_{n}")
        cols = {}
        for m in MODALITIES[n]:
            t0, c0 = time.perf_counter(), _cpu()
            if m == "cxr":
                cols[m], _ = text.transcribe_cxr(c, progress=False)
                step = "X-ray reader"
            elif m == "ecg":
                cols[m], _ = text.interpret_ecg(c, progress=False)
                step = "ECG reader"
            else:
                cols[m] = text.structured_notes(c, m)
                step = "notes"
            key = f"{n} {step}" + (f" ({m})" if step == "notes" else "")
            times[key], cpu[key] = time.perf_counter() - t0, _cpu() - c0
        texts[n] = cols
        t0, c0 = time.perf_counter(), _cpu()
        fidelity[n] = tables.transcription_fidelity(c, __import__("pandas").DataFrame(cols))
        times[f"{n} fidelity table"], cpu[f"{n} fidelity table"] = time.perf_counter() - t0, _cpu() - c0
    out.write_bytes(pickle.dumps({"times": times, "cpu": cpu, "texts": texts, "fidelity": fidelity,
                                  "mmlib": mmlib.__file__}))


def _run(code: Path, cohort_dir: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, __file__, "--child", str(out), "--cohorts", str(cohort_dir)], env=env,
                   check=True, cwd=tempfile.gettempdir())
    return pickle.loads(out.read_bytes())


def _same_texts(a: dict, b: dict) -> list[str]:
    bad = []
    for n in a:
        for m in a[n]:
            x, y = a[n][m], b[n][m]
            if not (x.index.equals(y.index) and list(x.isna()) == list(y.isna())
                    and all(p == q for p, q in zip(x.dropna(), y.dropna(), strict=True))):
                bad.append(f"{n}/{m}")
    return bad


def _same_tables(a: dict, b: dict) -> list[str]:
    import pandas as pd

    bad = []
    for n in a:
        try:
            pd.testing.assert_frame_equal(a[n], b[n], check_exact=True)
        except AssertionError:
            bad.append(n)
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4500, help="stays per generated synthetic cohort (demo: 4500)")
    ap.add_argument("--cohorts", type=Path, help="a chapter 01 artifact folder (cohort_mimic_eye/, cohort_mds_ed/) "
                                                 "to use instead of generating cohorts")
    ap.add_argument("--baseline", default="HEAD", help="git revision whose mmlib is the baseline (default HEAD)")
    ap.add_argument("--rounds", type=int, default=1, help="1: baseline then new; 2: baseline, new, new, baseline")
    ap.add_argument("--nk-baseline", type=int, default=100, help="records for the neurokit2 ecg_process line (0: none)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.cohorts, args.child)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cohort_dir = args.cohorts.resolve() if args.cohorts else None
        if cohort_dir is None:
            from mmlib.data import generate, load_cohort

            cohort_dir = tmp / "cohorts"
            for n in ("mimic_eye", "mds_ed"):
                root = generate(n, {"n": args.n}, data_dir=tmp / "data", progress=False)[0]
                load_cohort(n, root, progress=False).save(cohort_dir / f"cohort_{n}")
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline, "mmlib"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        order = ["baseline", "new"] if args.rounds < 2 else ["baseline", "new", "new", "baseline"]
        runs: dict[str, list[dict]] = {"baseline": [], "new": []}
        for i, which in enumerate(order):
            code = base if which == "baseline" else ROOT
            runs[which].append(_run(code, cohort_dir, tmp / f"{which}{i}.pkl"))
            print(f"  {which} run done ({runs[which][-1]['mmlib']})", flush=True)
        nk_line = None
        if args.nk_baseline:
            import neurokit2 as nk

            from mmlib.data import Cohort
            from mmlib.ecg_reader import read_ecg

            md = Cohort.load(cohort_dir / "cohort_mds_ed")
            sig = md.ecg(md.stays.index[md.availability["ecg"].to_numpy()][:max(args.nk_baseline, 500)])
            t0 = time.perf_counter()
            read_ecg(sig, n_jobs=1)
            rate = len(sig) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in sig[:args.nk_baseline]:
                nk.ecg_process(s[:, 1], sampling_rate=100)
            base_rate = args.nk_baseline / (time.perf_counter() - t0)
            nk_line = (f"ECG reader on one process: {rate:.0f} records/s; neurokit2 ecg_process (lead II only): "
                       f"{base_rate:.1f} records/s; ratio {rate / base_rate:.1f}x")

    b, w = runs["baseline"], runs["new"]
    steps = list(b[0]["times"])
    tb = {s: sum(r["times"][s] for r in b) / len(b) for s in steps}
    tw = {s: sum(r["times"][s] for r in w) / len(w) for s in steps}
    cb = {s: sum(r["cpu"][s] for r in b) / len(b) for s in steps}
    cw = {s: sum(r["cpu"][s] for r in w) / len(w) for s in steps}
    print()
    print(f"{'step (mean of runs)':<34s} {'wall s: baseline':>16s} {'new':>6s} {'ratio':>6s}   "
          f"{'CPU s (all processes): baseline':>31s} {'new':>6s}")
    for s in steps:
        print(f"{s:<34s} {tb[s]:16.1f} {tw[s]:6.1f} {tb[s] / max(tw[s], 1e-9):5.2f}x   {cb[s]:31.1f} {cw[s]:6.1f}")
    total_b, total_w = sum(tb.values()), sum(tw.values())
    print(f"{'total':<34s} {total_b:16.1f} {total_w:6.1f} {total_b / total_w:5.2f}x   "
          f"{sum(cb.values()):31.1f} {sum(cw.values()):6.1f}")
    print("(wall / CPU near 1 on a busy machine means the workers could not get a second core)")
    bad_t = [x for r in b + w[1:] for x in _same_texts(w[0]["texts"], r["texts"])]
    bad_f = [x for r in b + w[1:] for x in _same_tables(w[0]["fidelity"], r["fidelity"])]
    print(f"texts identical to the baseline's: {'yes' if not bad_t else 'NO: ' + ', '.join(sorted(set(bad_t)))}")
    print(f"fidelity tables identical to the baseline's: {'yes' if not bad_f else 'NO: ' + ', '.join(sorted(set(bad_f)))}")

    if nk_line:
        print(nk_line)
    if bad_t or bad_f:
        sys.exit(1)


if __name__ == "__main__":
    main()
