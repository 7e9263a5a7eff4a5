"""Tests of the offline ECG reader (mmlib.ecg_reader).

Records come from the simulator (mmlib.data.ecg.simulate_ecg) with known parameters; the reader only
ever sees the waveforms.  Records compared with each other are drawn from the same seed with identical
parameters except the one under test (the simulator then draws the same random numbers for them).
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from mmlib import ecg_reader as er
from mmlib.data import generate, load_cohort
from mmlib.data.ecg import simulate_ecg
from mmlib.data.ecg import sinus_params as make_params

pytestmark = pytest.mark.timeout(120)




def simulate(seed: int = 0, n: int = 1, **overrides):
    return simulate_ecg(make_params(n, **overrides), np.random.default_rng(seed))


# ------------------------------------------------------------------------------------------------
# rate, rhythm, QRS, ST, LVH
# ------------------------------------------------------------------------------------------------
def test_rate_within_5_bpm_for_clean_sinus_records_from_50_to_150_bpm():
    rates = np.repeat(np.arange(50.0, 151.0, 10.0), 3)
    rng = np.random.default_rng(1)
    sig, truth = simulate(1, rates.size, heart_rate=rates, axis_deg=rng.normal(45, 30, rates.size),
                          qrs_ms=rng.normal(90, 8, rates.size))
    m = er.measure_ecg(sig)
    assert m["readable"].all()
    err = np.abs(m["heart_rate"].to_numpy() - truth["heart_rate"])
    assert err.max() <= 5.0, (rates[err > 5], err[err > 5])
    assert np.abs(m["heart_rate"].to_numpy() - rates).max() <= 5.0
    assert not m["rhythm_irregular"].any()
    f = er.ecg_findings(m)
    assert not f["af"].any()
    assert (f["tachycardia"] == (np.rint(m["heart_rate"]) > 100)).all()
    assert (f["bradycardia"] == (np.rint(m["heart_rate"]) < 60)).all()


def test_af_detected_on_af_records_and_not_on_sinus_records():
    rates = np.tile(np.linspace(55, 140, 10), 2)
    af = np.repeat([True, False], 10)
    rng = np.random.default_rng(2)
    sig, truth = simulate(2, 20, heart_rate=rates, af=af, axis_deg=rng.normal(45, 25, 20))
    m = er.measure_ecg(sig)
    f = er.ecg_findings(m)
    assert m["readable"].all()
    assert f["af"][af].mean() >= 0.9
    assert not f["af"][~af].any()
    # the measured irregularity follows the simulated one; P waves are found in sinus rhythm only
    assert np.corrcoef(m["rr_cv"], truth["rr_cv"])[0, 1] > 0.9
    assert m["p_waves_present"][~af].mean() >= 0.9 and m["p_waves_present"][af].mean() <= 0.1
    reports = er.ecg_report(m)
    assert all(r.startswith("Atrial fibrillation") for r, a in zip(reports, f["af"]) if a)
    # sinus records: "Sinus ..." (or, where a fast rate hides the P wave in the T wave, "Regular ...")
    assert all(r.startswith(("Sinus", "Regular")) for r in np.array(reports, dtype=object)[~af])
    assert sum(r.startswith("Sinus") for r in np.array(reports, dtype=object)[~af]) >= 9


def test_wide_qrs_measured_wider_than_narrow_and_reported():
    n = 6
    narrow = er.measure_ecg(simulate(3, n, qrs_ms=90.0)[0])
    wide = er.measure_ecg(simulate(3, n, qrs_ms=150.0)[0])
    assert (wide["qrs_ms"] - narrow["qrs_ms"] >= 30).all(), (narrow["qrs_ms"], wide["qrs_ms"])
    assert (np.abs(narrow["qrs_ms"] - 90) <= 15).all() and (np.abs(wide["qrs_ms"] - 150) <= 25).all()
    assert er.ecg_findings(wide)["wide_qrs"].all() and not er.ecg_findings(narrow)["wide_qrs"].any()
    assert all("Wide QRS complex" in r for r in er.ecg_report(wide))
    assert all("Normal QRS duration" in r for r in er.ecg_report(narrow))
    # QRS duration tracks the simulated duration
    q = np.linspace(75, 170, 12)
    m = er.measure_ecg(simulate(4, q.size, qrs_ms=q)[0])
    assert np.corrcoef(m["qrs_ms"], q)[0, 1] > 0.9


def test_inferior_st_elevation_reported_in_the_inferior_leads():
    n = 4
    sig, _ = simulate(5, n, st_mv=0.3, st_territory=1)
    base, _ = simulate(5, n, st_mv=0.0, st_territory=1)
    m, m0 = er.measure_ecg(sig), er.measure_ecg(base)
    assert (m["st_j_inferior_mv"] > 0.2).all()
    assert (m["st_j_inferior_mv"] > m[["st_j_anterior_mv", "st_j_lateral_mv"]].max(axis=1)).all()
    assert (m["st_inferior_mv"] - m0["st_inferior_mv"] > 0.2).all()  # J + 60 ms too
    assert (m["st_II_mv"] - m0["st_II_mv"] > 0.2).all() and (m["st_aVF_mv"] - m0["st_aVF_mv"] > 0.2).all()
    for r in er.ecg_report(m):
        assert "ST elevation" in r and r.index("inferior leads (II, III, aVF)") < r.index("No LVH")
        assert r.split("ST elevation ")[1].split(" in ")[1].startswith("inferior leads (II, III, aVF)")
    for r in er.ecg_report(m0):
        assert "No significant ST deviation." in r
    # anterior depression (NSTE-ACS-like): the anterior leads carry the largest deviation, and it is
    # reported as depression there (the simulated injury dipole also lifts III/aVF a little, reciprocally)
    dep = er.measure_ecg(simulate(6, n, st_mv=-0.2, st_territory=0)[0])
    st_j = dep[["st_j_anterior_mv", "st_j_inferior_mv", "st_j_lateral_mv"]]
    assert (st_j.abs().idxmax(axis=1) == "st_j_anterior_mv").all() and (dep["st_j_anterior_mv"] < -0.12).all()
    for r in er.ecg_report(dep):
        assert "ST depression" in r and "anterior leads (V1-V4)" in r.split("ST depression")[1]
        assert er.findings_from_report(r)["st_depression"]


def test_lvh_voltage_and_axis():
    (s0, t0), (s1, t1) = simulate(7, 3, lvh=0.0), simulate(7, 3, lvh=1.5)
    m0, m1 = er.measure_ecg(s0), er.measure_ecg(s1)
    assert (m1["sokolow_lyon_mv"] > 2.0 * m0["sokolow_lyon_mv"]).all()
    for m, t in ((m0, t0), (m1, t1)):  # close to the simulator's noise-free Sokolow-Lyon voltage
        assert np.abs(m["sokolow_lyon_mv"] - t["sokolow_mv"]).max() < 0.2
    assert er.ecg_findings(m1)["lvh"].all() and not er.ecg_findings(m0)["lvh"].any()
    assert all("LVH voltage criteria met" in r for r in er.ecg_report(m1))
    axes = np.array([-60.0, -20.0, 30.0, 75.0, 110.0])
    sig, truth = simulate(8, axes.size, axis_deg=axes)
    m = er.measure_ecg(sig)
    assert np.abs(m["qrs_axis_deg"] - truth["qrs_axis_deg"]).max() < 10
    r = er.ecg_report(m)
    assert "Left axis deviation" in r[0] and "Right axis deviation" in r[4]
    assert not any("axis deviation" in t for t in r[1:4])


# ------------------------------------------------------------------------------------------------
# unreadable records, determinism, API
# ------------------------------------------------------------------------------------------------
def test_flat_nan_and_noise_records_are_unreadable_without_exception():
    good, truth = simulate(9, 2, heart_rate=[60.0, 110.0])
    rng = np.random.default_rng(0)
    flat = np.zeros((1000, 12), np.float32)
    offset = np.full((1000, 12), 1.5, np.float32)
    nan = np.full((1000, 12), np.nan, np.float32)
    noise = rng.normal(0.0, 0.5, (1000, 12)).astype(np.float32)
    lead_off = good[0].copy()
    lead_off[:, 4] = np.nan
    gap = good[1].copy()
    gap[300:320] = np.nan  # 2 % missing: interpolated, still readable
    batch = np.stack([good[0], flat, nan, offset, noise, lead_off, gap, good[1]])
    reports, m = er.read_ecg(batch)
    assert list(m["readable"]) == [True, False, False, False, False, False, True, True]
    assert [r is None for r in reports] == [False, True, True, True, True, True, False, False]
    assert (m.loc[~m["readable"], "unreadable_reason"] != "").all()
    assert m.loc[~m["readable"], "heart_rate"].isna().all() or m.loc[4, "unreadable_reason"] == "too noisy"
    # the readable records are unaffected by their neighbours
    alone = er.measure_ecg(good)
    assert np.allclose(m.loc[[0, 7], "heart_rate"], alone["heart_rate"])
    assert abs(m.loc[6, "heart_rate"] - truth["heart_rate"][1]) < 5
    f = er.ecg_findings(m)
    assert not f.loc[~m["readable"]].any().any()
    assert er.findings_from_report(None) == {k: False for k in er.FINDINGS}


def test_deterministic_and_input_forms():
    sig, _ = simulate(10, 3, af=[False, True, False], heart_rate=[72.0, 118.0, 48.0])
    r1, m1 = er.read_ecg(sig)
    r2, m2 = er.read_ecg(sig.copy())
    assert r1 == r2
    pd.testing.assert_frame_equal(m1, m2)
    # one record (time, 12), float64 and a list give the same result
    r_one, m_one = er.read_ecg(sig[1].astype(np.float64))
    assert r_one == [r1[1]] and np.isclose(m_one["qrs_ms"][0], m1["qrs_ms"][1])
    assert er.read_ecg(list(sig))[0] == r1
    empty_r, empty_m = er.read_ecg(np.zeros((0, 1000, 12), np.float32))
    assert empty_r == [] and len(empty_m) == 0 and "heart_rate" in empty_m.columns
    with pytest.raises(ValueError, match="signals"):
        er.measure_ecg(np.zeros((2, 1000, 8)))
    with pytest.raises(ValueError, match="fs"):
        er.measure_ecg(sig, fs=10)
    with pytest.raises(ValueError, match="thresholds"):
        er.ecg_report(m1, {"not_a_threshold": 1})


def test_other_sampling_rate():
    p = make_params(2, heart_rate=[65.0, 105.0], af=[False, True])
    sig, truth = simulate_ecg(p, np.random.default_rng(11), fs=250)
    m = er.measure_ecg(sig, fs=250)
    assert np.abs(m["heart_rate"] - truth["heart_rate"]).max() < 3
    assert list(er.ecg_findings(m)["af"]) == [False, True]
    assert (np.abs(m["qrs_ms"] - 90) < 20).all()


def test_thresholds_change_the_interpretation_not_the_measurements():
    sig, _ = simulate(12, 2, heart_rate=[92.0, 92.0], qrs_ms=[112.0, 112.0])
    m = er.measure_ecg(sig)
    default = er.ecg_report(m)
    strict = er.ecg_report(m, {"tachycardia_bpm": 85, "wide_qrs_ms": 100})
    assert all(r.startswith("Sinus rhythm,") and "Normal QRS" in r for r in default)
    assert all(r.startswith("Sinus tachycardia,") and "Wide QRS" in r for r in strict)
    assert er.DEFAULT_THRESHOLDS["tachycardia_bpm"] == 100.0  # not modified by the call


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------
def test_findings_from_report_round_trips_the_template():
    rng = np.random.default_rng(13)
    n = 24
    p = make_params(n, heart_rate=rng.uniform(45, 140, n), af=rng.random(n) < 0.4,
                    qrs_ms=np.where(rng.random(n) < 0.3, 145.0, 90.0),
                    st_mv=np.where(rng.random(n) < 0.4, rng.choice([-0.2, 0.3], n), 0.0),
                    st_territory=rng.integers(0, 3, n), lvh=np.where(rng.random(n) < 0.3, 1.0, 0.0),
                    axis_deg=rng.normal(45, 40, n))
    sig, _ = simulate_ecg(p, rng)
    m = er.measure_ecg(sig)
    reports = er.ecg_report(m)
    parsed = pd.DataFrame([er.findings_from_report(r) for r in reports])[list(er.FINDINGS)]
    pd.testing.assert_frame_equal(parsed, er.ecg_findings(m).reset_index(drop=True)[list(er.FINDINGS)])
    assert parsed.any().sum() >= 6  # the set exercises most findings


@pytest.mark.parametrize("text, expected", [
    ("Sinus rhythm, rate 72/min. Normal QRS duration (88 ms). No significant ST deviation. "
     "No LVH voltage criteria.", set()),
    ("Atrial fibrillation with rapid ventricular response, rate 124/min. QRS 96 ms. ST elevation 0.2 mV in "
     "inferior leads (II, III, aVF). No LVH voltage criteria.", {"af", "tachycardia", "st_elevation"}),
    ("Sinus bradycardia. Left bundle branch block. No ST elevation.", {"bradycardia", "wide_qrs"}),
    ("AF with RVR; ST-segment depression in V5-V6; left ventricular hypertrophy.",
     {"af", "tachycardia", "st_depression", "lvh"}),
    ("No evidence of atrial fibrillation, normal ECG without LVH.", set()),
])
def test_findings_from_free_text(text, expected):
    got = er.findings_from_report(text)
    assert set(got) == set(er.FINDINGS)
    assert {k for k, v in got.items() if v} == expected


# ------------------------------------------------------------------------------------------------
# fidelity on a generated cohort (truth used only to score)
# ------------------------------------------------------------------------------------------------
def test_fidelity_above_chance_on_a_generated_cohort(tmp_path):
    root, _ = generate("mds_ed", {"n": 400, "seed": 3}, data_dir=tmp_path, progress=False)
    c = load_cohort("mds_ed", root, progress=False)
    ids = c.stays.index[c.availability["ecg"].to_numpy()]
    reports, m = er.read_ecg(c.ecg(ids))
    truth = c.truth.loc[ids]
    ok = m["readable"].to_numpy()
    assert ok.mean() > 0.97
    found = pd.DataFrame([er.findings_from_report(r) for r in reports])
    hr_err = np.abs(m["heart_rate"].to_numpy() - truth["ecg_sim_heart_rate"].to_numpy())[ok]
    assert np.median(hr_err) < 2 and hr_err.mean() < 3

    def balanced(pred, true):
        pred, true = np.asarray(pred, bool)[ok], np.asarray(true, bool)[ok]
        return 0.5 * (pred[true].mean() + (~pred[~true]).mean())

    assert balanced(found["af"], truth["ecg_af"]) > 0.85
    assert balanced(found["wide_qrs"], truth["ecg_qrs_ms"] >= 120) > 0.8
    assert balanced(found["st_elevation"], truth["ecg_st_mv"] >= 0.1) > 0.75
    assert np.corrcoef(m["qrs_ms"][ok], truth["ecg_qrs_ms"][ok])[0, 1] > 0.6


def test_worker_processes_give_the_same_reports_and_measurements(monkeypatch):
    sig, _ = simulate(13, 12, af=[False, True] * 6, heart_rate=np.linspace(50, 140, 12))
    r1, m1 = er.read_ecg(sig)
    monkeypatch.setattr(er, "_JOB_CHUNK", 5)  # three chunks over two worker processes
    r2, m2 = er.read_ecg(sig, n_jobs=2)
    assert r2 == r1
    pd.testing.assert_frame_equal(m2, m1)


def test_parsed_findings_are_remembered_but_handed_out_as_copies():
    text = "Atrial fibrillation with rapid ventricular response, rate 124/min. No LVH voltage criteria."
    a = er.findings_from_report(text)
    a["af"] = "changed by the caller"
    assert er.findings_from_report(text)["af"] is True


def test_median_over_beats_is_numpy_s_median():
    rng = np.random.default_rng(3)
    for shape in [(1, 9, 12), (2, 9, 12), (7, 96, 12), (12, 136), (13, 17, 8)]:
        a = rng.normal(size=shape)
        a[1 % shape[0]] = a[0]  # ties
        assert np.array_equal(er._median0(a), np.median(a, axis=0))
    a = rng.normal(size=(6, 4))
    a[3, 2] = np.nan
    assert np.array_equal(er._median0(a), np.median(a, axis=0), equal_nan=True)
