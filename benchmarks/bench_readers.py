"""Throughput of the offline transcription readers (chapter 02's default CPU path).

Chest X-rays: images/s of `mmlib.cxr_reader.read_cxr` from the cohort's JPG files.
ECGs: records/s of `mmlib.ecg_reader.read_ecg`, against the same run's baseline of plain
`neurokit2.ecg_process` on lead II for a subsample (the per-record approach the reader replaces); the ratio
is printed.

    .venv/bin/python benchmarks/bench_readers.py [--n 4500]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import neurokit2 as nk
import numpy as np

from mmlib.cxr_reader import read_cxr
from mmlib.data import generate, load_cohort
from mmlib.ecg_reader import read_ecg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4500, help="stays per synthetic cohort (demo: 4500)")
    ap.add_argument("--baseline", type=int, default=100, help="records for the neurokit2 ecg_process baseline")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        me = load_cohort("mimic_eye", generate("mimic_eye", {"n": args.n}, data_dir=tmp, progress=False)[0],
                         progress=False)
        ids = me.stays.index[me.availability["cxr"].to_numpy()]
        paths = [str(me.root / p) for p in me.modalities["cxr"].loc[ids, "path"]]
        t0 = time.perf_counter()
        reports, _ = read_cxr(paths, view=me.modalities["cxr"].loc[ids, "ViewPosition"].tolist())
        dt_cxr = time.perf_counter() - t0
        md = load_cohort("mds_ed", generate("mds_ed", {"n": args.n}, data_dir=tmp, progress=False)[0], progress=False)
        eids = md.stays.index[md.availability["ecg"].to_numpy()]
        sig = md.ecg(eids)
        t0 = time.perf_counter()
        read_ecg(sig)
        dt_ecg = time.perf_counter() - t0
        sub = sig[: args.baseline]
        t0 = time.perf_counter()
        for s in sub:
            nk.ecg_process(s[:, 1], sampling_rate=100)
        dt_base = time.perf_counter() - t0
    rate_ecg, rate_base = len(eids) / dt_ecg, len(sub) / dt_base
    print(f"chest X-ray reader: {len(paths)} images in {dt_cxr:.1f} s = {len(paths) / dt_cxr:.0f} images/s")
    print(f"ECG reader:         {len(eids)} records in {dt_ecg:.1f} s = {rate_ecg:.0f} records/s")
    print(f"baseline neurokit2 ecg_process (lead II only): {rate_base:.1f} records/s")
    print(f"ratio ECG reader / baseline: {rate_ecg / rate_base:.1f}x")


if __name__ == "__main__":
    main()
