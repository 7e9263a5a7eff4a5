"""Disclosure control (mmlib.disclosure) and the scanner that checks a real-source book for leaks.

The unit tests check each rule on hand-made tables in both modes; the end-to-end test builds the whole book
with ``source: real`` from cohorts in the real layout (the synthetic twins without their two synthetic
extras) and scans every executed notebook and rendered page; the scanner itself is tested on a planted leak.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest

from mmlib import disclosure, metrics, plots, tables

from disclosure_scan import scan_book, scan_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def real():
    disclosure.enforce(True)
    yield
    disclosure.enforce(False)


def test_counts_and_shares_are_suppressed_only_for_real_data(real):
    assert [disclosure.count(k) for k in (0, 1, 10, 11)] == [0, "<11", "<11", 11]
    assert disclosure.count(5, real=False) == 5
    assert np.isnan(disclosure.share(5, 12)), "5 of 12: the share gives the count back"
    assert np.isnan(disclosure.share(7, 12)) and np.isnan(disclosure.share(0, 8)), "complement small / n small"
    assert disclosure.share(40, 120) == pytest.approx(100 / 3)
    assert disclosure.share(5, 12, real=False) == pytest.approx(500 / 12)


def test_flow_never_publishes_a_small_exclusion_or_a_small_difference(real):
    flow = pd.DataFrame({"step": ["read", "a", "b", "c", "d", "e"], "excluded": [0, 10, 3, 40, 0, 2],
                         "remaining": [1000, 990, 987, 947, 947, 945]})
    out = disclosure.flow(flow)
    assert out["step"].tolist() == ["read", "a; b", "c; d; e"]
    assert out["excluded"].tolist() == [0, 13, 42] and out["remaining"].tolist() == [1000, 987, 945]
    alone = disclosure.flow(flow.iloc[[0, 1]])
    assert alone["excluded"].tolist() == [0, "<11"] and alone["remaining"].tolist() == ["–", 990]
    assert disclosure.flow(flow, real=False) is flow


def test_frame_refuses_identifiers_and_times_and_suppresses_count_cells(real):
    with pytest.raises(disclosure.DisclosureError, match=r"identifier column\(s\) \['stay_id'\]"):
        disclosure.frame(pd.DataFrame({"x": [1]}, index=pd.Index([3], name="stay_id")))
    with pytest.raises(disclosure.DisclosureError, match="date-times"):
        disclosure.frame(pd.DataFrame({"intime": pd.to_datetime(["2150-01-01"])}))
    out = disclosure.frame(pd.DataFrame({"n": [5, 20], "stays": [0, 3], "Female, n (%)": ["3 (2.0%)", "30 (5.0%)"],
                                         "AUROC": [0.5, 0.7]}))
    assert out["n"].tolist() == ["<11", 20] and out["stays"].tolist() == [0, "<11"]
    assert out["Female, n (%)"].tolist() == ["<11", "30 (5.0%)"] and out["AUROC"].tolist() == [0.5, 0.7]


def test_small_groups_are_not_estimated_and_their_rates_withheld(real):
    y = np.r_[np.ones(30), np.zeros(30), np.ones(5), np.zeros(7)]
    g = np.array(["White"] * 60 + ["non-White"] * 12)
    flags = metrics.estimable(y, g, min_group=5, min_events=2)
    assert flags["White"] == "" and flags["non-White"] == "too few events to estimate (<11 positive, <11 negative; need 11)"
    assert disclosure.withheld(flags["non-White"])
    pred = (np.arange(len(y)) % 2).astype(float)
    table, _ = metrics.summarise_vectors(y, pred[None], pred[None], {"race": g}, {"race": flags})
    small = table[(table.attribute == "race") & (table.group == "non-White")]
    assert small["mean"].isna().all() and table[(table.group == "White")]["mean"].notna().all()
    disclosure.enforce(False)
    assert metrics.estimable(y, g, min_group=5, min_events=2)["non-White"] == ""


def test_tables_of_small_groups_show_no_statistic(real):
    stays = pd.DataFrame({"race_binary": ["White"] * 30 + ["non-White"] * 5, "gender": ["F", "M"] * 15 + ["F"] * 5,
                          "age": np.arange(35.0), "admitted": [1.0, 0.0] * 17 + [1.0]})
    mods = {"arrival": pd.DataFrame({"acuity": np.ones(35)}),
            "vitals": pd.DataFrame({f"triage_{v}": np.ones(35) for v in ("heartrate", "resprate", "o2sat", "sbp",
                                                                          "temperature")})}
    c = SimpleNamespace(stays=stays, modalities=mods, name="mimic_eye", targets=["admitted"], primary_target="admitted",
                        is_synthetic=False)
    t1 = tables.table_one(c, by_gender=False)
    assert t1.loc["n", "non-White"] == "<11" and (t1["non-White"].drop("n") == "–").all()
    assert t1.loc["Age, years, mean (SD)", "White"] != "–"
    avail = SimpleNamespace(availability=pd.DataFrame({"cxr": [True] * 18 + [False] * 12 + [True] * 5}), stays=stays)
    shares = tables.availability_by_group(avail)
    assert np.isnan(shares.loc["cxr", "non-White"]) and shares.loc["cxr", "White"] == pytest.approx(60.0)


def test_single_stay_figures_are_refused_for_real_data(real):
    cohort = SimpleNamespace(is_synthetic=False)
    with pytest.raises(disclosure.DisclosureError, match="chest X-ray examples: shows single stays"):
        plots.cxr_examples(cohort, [1], ["x"])
    with pytest.raises(disclosure.DisclosureError, match="ECG strips"):
        plots.ecg_strips(cohort, [1], ["x"])
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2))
    fig = plots.embedding_map(xy, {"race": pd.Series(["White", "non-White"] * 150)}, "t")
    ax = fig.axes[0]
    assert not ax.collections or all(c.__class__.__name__ == "PolyCollection" for c in ax.collections), \
        "binned densities only, no scatter of stays"
    assert "bins of ≥11" in ax.get_title()


def test_the_scanner_finds_planted_leaks():
    ids, times = {"31234567"}, {"2150-03-04 10:11:00"}
    clean = "<table><tr><th></th><th>n</th><th>AUROC</th></tr><tr><th>White</th><td>120</td><td>0.7</td></tr></table>"
    assert scan_text("page", "html", clean, ids, times) == []
    planted = {
        "identifier 31234567": "stay 31234567 was admitted",
        "timestamp 2150-03-04 10:11": "arrived 2150-03-04 10:11:00",
        "small count '5' in column 'n'": clean.replace("120", "5"),
        "small count in cell '3 (25.0%)'": "<table><tr><th>Female, n (%)</th></tr><tr><td>3 (25.0%)</td></tr></table>",
        "flow counts 990 -> 987": ("<table><tr><th>step</th><th>excluded</th><th>remaining</th></tr>"
                                   "<tr><td>a</td><td>0</td><td>990</td></tr><tr><td>b</td><td>&lt;11</td><td>987</td></tr></table>"),
        # counts as the book writes them, with thousands separators
        "flow counts 4305 -> 4300": ("<table><tr><th>step</th><th>excluded</th><th>remaining</th></tr><tr><td>a</td>"
                                     "<td>0</td><td>4,305</td></tr><tr><td>b</td><td>&lt;11</td><td>4,300</td></tr></table>"),
        "small count '7' in column 'stays'": "<table><tr><th></th><th>stays</th></tr><tr><th>a</th><td>7</td></tr></table>",
    }
    for needle, text in planted.items():
        leaks = scan_text("page", "html", text, ids, times)
        assert any(needle in x for x in leaks), (needle, leaks)


def _real_layout_copy(src: Path, dst: Path) -> Path:
    """A synthetic twin as a credentialed copy would look: the same files without the two synthetic extras."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("synthetic_params.json", "synthetic_truth.parquet"))
    return dst


def _identifiers_and_times(root_eye: Path, root_ed: Path) -> tuple[set[str], set[str]]:
    ids, times = set(), set()
    frames = [pd.read_csv(root_ed / "mds_ed.csv", usecols=lambda c: c.startswith("general_"), low_memory=False)]
    frames += [pd.read_csv(p, low_memory=False) for p in root_eye.glob("patient_*/ED/edstays.csv")]
    for df in frames:
        for c in df.columns:
            if re.search(r"(subject|stay|hadm|study)_id$", c):
                ids |= {str(int(v)) for v in pd.to_numeric(df[c], errors="coerce").dropna()}
            if re.search(r"(intime|outtime|ecg_time)$", c):
                times |= {str(v)[:16] for v in df[c].dropna()}
    return ids, times


@pytest.mark.book
def test_a_real_source_book_publishes_aggregates_only(tmp_path, monkeypatch):
    """The whole book built with ``source: real`` from real-layout cohorts: no identifier, timestamp, small count
    or per-stay mark in any executed notebook or rendered page; and the origin check refuses a synthetic
    folder under ``source: real``."""
    from mmlib import pipeline
    from mmlib.book import render_book
    from mmlib.data.synth import from_chapter_params, generate

    monkeypatch.setenv("MMLIB_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MMLIB_DATA_DIR", str(tmp_path / "data"))
    base = pipeline.load_profile("ci", [("n_patients", 240)])
    roots = {}
    for cohort in ("mimic_eye", "mds_ed"):
        synth, _ = generate(cohort, from_chapter_params(cohort, base), data_dir=tmp_path / "synthetic", progress=False)
        roots[cohort] = str(_real_layout_copy(synth, tmp_path / "real" / cohort))
    # the parameter and the folder must agree: a synthetic folder read as real is an error, not a guess
    from mmlib.data import load_cohort

    with pytest.raises(ValueError, match="source is 'real' but the folder is a synthetic copy"):
        load_cohort("mds_ed", synth, expected_origin="real", progress=False)
    # min_group 15: the race and gender groups of this small test split are compared, the race x gender cells
    # (about 10 stays) are withheld -- both paths of the disclosure rule run
    params = pipeline.load_profile("ci", [("n_patients", 240), ("source", "real"), ("roots", roots),
                                          ("min_group", 15)])
    summaries = pipeline.build(params, render=False, progress=False)
    notebooks = [pipeline.artifact_dir(s.chapter, s.key) / "executed.ipynb" for s in summaries]
    for nb in notebooks:
        outputs = [o for c in nbformat.read(nb, as_version=4).cells for o in c.get("outputs", [])]
        errors = [o for o in outputs if o.output_type == "error"]
        assert not errors, (nb, errors[:1])
        # the aggregate figures (density outlines instead of points) keep their legends beside the plots too
        assert all(o.metadata["mmlib"]["legends_over_plot"] == [] for o in outputs
                   if "image/png" in o.get("data", {})), nb
    out = tmp_path / "book"
    render_book(REPO, pipeline.build_dir() / "ci" / "executed", out_dir=out)
    pages = sorted((out / "chapters").glob("*.html"))
    assert len(pages) == len(notebooks)
    ids, times = _identifiers_and_times(Path(roots["mimic_eye"]), Path(roots["mds_ed"]))
    assert len(ids) > 500 and len(times) > 100
    leaks = scan_book(notebooks, pages, ids, times)
    assert not leaks, "\n".join(leaks[:20])


def test_summarise_withholds_small_groups_in_parallel_workers_too(real):
    """summarise runs its runs in joblib worker processes, which do not share the caller's disclosure state:
    the state is passed to them, so a small group's rates are withheld with n_jobs=2 as with n_jobs=1."""
    rng = np.random.default_rng(0)
    n = 120
    race = np.where(np.arange(n) < 100, "White", "non-White")
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    y = (rng.random(n) < 0.4).astype(int)
    pr = pd.concat([pd.DataFrame({"cohort": "c", "model": m, "modalities": "a", "n_modalities": 1, "seed": 0,
                                  "stay_id": np.arange(n), "split": "test", "prob": rng.random(n), "label": y,
                                  "race": race, "gender": gender,
                                  "race_gender": np.char.add(np.char.add(race, " "), gender)})
                    for m in ("m1", "m2")]).assign(pred=lambda d: (d.prob >= 0.5).astype(int))
    for jobs in (1, 2):
        t = metrics.summarise(pr, n_boot=20, min_group=5, min_events=2, n_jobs=jobs, progress=False).table
        small = t[(t.attribute == "race") & (t.group == "non-White")]
        assert small["mean"].isna().all() and small["flag"].str.contains("<11").all(), jobs
