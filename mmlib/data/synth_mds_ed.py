"""The synthetic MIMIC-IV-Ext-MDS-ED twin: its table (:func:`mds_ed_tables`) and its files (:func:`write_mds_ed`).

Used by :func:`mmlib.data.synth.generate`. It writes the release's layout as MDS-ED's own code made it
(``AI4HealthUOL/MDS-ED`` ``src/full_preprocessing.py``, read by ``src/clinical_ts/task/multimodal.py``;
``../shared/LAYOUTS.md``): all 1,936 columns of :data:`mmlib.schema.MDS_ED_COLUMNS` in order, one row per
ECG recorded in the first 90 minutes of the ED stay, temperature in degrees Celsius, the release's
statistics and -999 rules, 20 strat folds of 5 %, and the ECG memmap in the release's lead order
(:data:`mmlib.schema.MDS_ED_LEAD_COLUMNS`) clipped to +-3 mV. Columns the simulator has no signal for
are written as the release writes absent data: empty (NaN) labs, 0 for diagnoses nobody has.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..artifacts import atomic_dir
from ..schema import (DETERIORATION, ECG_CLIP_MV, FS, LABS, LEADS, MDS_ED_COLUMNS, MDS_ED_DIAGNOSES,
                      MDS_ED_FOLDS, MDS_ED_LEAD_COLUMNS, MDS_ED_UNDEFINED, MODALITIES, STATS, VITALS)

from .latent import CONDITIONS, BiasKnobs, modality_view, simulate_population, streams, vital_signs
from .races import RACE5, RACE5_COLUMNS
from .synth_base import (SyntheticTables, as_timedelta, ed_timeline, fmt_time, need_logit, pulse_oximeter,
                         triage_acuity, unique_ids, write_extras)

#: The full ICD-10 code (MIMIC style, no dot) the twin records for each latent condition; its prefixes of
#: 3-5 characters are the ``diagnoses_*`` columns it sets (MDS-ED's label propagation).
CONDITION_CODES = {"hypertension": "I10", "af": "I4891", "heart_failure": "I509", "pneumonia": "J189",
                   "sepsis": "A419", "acs": "I214", "aki": "N179", "copd": "J449"}
#: Symptom codes of stays without any of the conditions (every release row has at least one diagnosis).
SYMPTOM_CODES = ("R079", "R0789", "R55", "R42", "R51", "R109", "M545", "R112")

#: The lab panels the twin orders within the first 90 minutes, and the labs of each (release names).
LAB_PANELS = {
    "bmp": ("sodium", "potassium", "chloride", "bicarbonate", "urea_nitrogen", "creatinine", "glucose",
            "calcium,_total", "magnesium", "phosphate"),
    "cbc": ("white_blood_cells", "hemoglobin", "hematocrit", "platelet_count", "red_blood_cells", "rdw",
            "neutrophils", "lymphocytes", "absolute_lymphocyte_count"),
    "cardiac": ("troponin_t", "creatine_kinase_(ck)", "creatine_kinase,_mb_isoenzyme"),
    "lactate": ("lactate",),
    "crp": ("c-reactive_protein",),
}
_ROUND = {"potassium": 1, "creatinine": 1, "lactate": 1, "troponin_t": 2, "magnesium": 1, "phosphate": 1,
          "calcium,_total": 1, "hemoglobin": 1, "hematocrit": 1, "red_blood_cells": 2, "rdw": 1,
          "white_blood_cells": 1, "neutrophils": 1, "lymphocytes": 1, "absolute_lymphocyte_count": 2,
          "c-reactive_protein": 1, "creatine_kinase,_mb_isoenzyme": 0}


def series_stats(values: np.ndarray, minutes: np.ndarray) -> dict[str, np.ndarray]:
    """MDS-ED's nine statistics (:data:`mmlib.schema.STATS`) of each row's series, as its preprocessing computes them.

    ``values`` and ``minutes`` (minutes since ED arrival) are (n, k), NaN where a row has no value, in chart
    order. ``std`` has ddof 0, ``rate_change`` = (last - first) / first (NaN if first is 0), ``coeff`` is the
    least-squares slope per minute (0 for a single value, as scikit-learn's ``LinearRegression`` gives); a row
    without values is NaN throughout. Used by :func:`mds_ed_tables` and the tests.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        have = ~np.isnan(values)
        cnt = have.sum(1)
        any_ = cnt > 0
        rows = np.arange(len(values))
        first = np.where(any_, values[rows, np.argmax(have, 1)], np.nan)
        last = np.where(any_, values[rows, values.shape[1] - 1 - np.argmax(have[:, ::-1], 1)], np.nan)
        mean = np.nanmean(values, 1)
        x = np.where(have, minutes, np.nan)
        dx = x - np.nanmean(x, 1, keepdims=True)
        dy = values - mean[:, None]
        sxx = np.nansum(dx * dx, 1)
        slope = np.where(sxx > 0, np.nansum(dx * dy, 1) / np.where(sxx > 0, sxx, 1), 0.0)
        return {"mean": mean, "median": np.nanmedian(values, 1), "min": np.nanmin(values, 1),
                "max": np.nanmax(values, 1), "std": np.nanstd(values, 1), "first": first, "last": last,
                "rate_change": np.where(first != 0, (last - first) / np.where(first != 0, first, 1), np.nan),
                "coeff": np.where(any_, slope, np.nan)}


def _lab_truth(view: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """True lab values implied by a (labs view of the) latent state, under the release's lab names and in
    MIMIC-IV's units (:data:`mmlib.schema.LAB_UNITS`): renal, metabolic, inflammatory, cardiac and blood count.
    The labs view's severity is mostly the renal-metabolic part (:data:`mmlib.data.latent.MODALITY_SEES`), and it
    shows in creatinine, urea, bicarbonate, lactate, potassium and hemoglobin."""
    n = len(view)
    c = view[list(CONDITIONS)].astype(float)
    sev = view["severity"].to_numpy()
    sevp = np.clip(sev, 0, None)

    def ln(mu, sd):
        return np.exp(rng.normal(np.log(mu), sd, n))

    hb = np.clip(13.2 - 0.5 * sev - 0.8 * c.aki + rng.normal(0, 1.5, n), 5, 19)
    wbc = ln(7.5, 0.3) * (1 + 0.8 * c.sepsis + 0.5 * c.pneumonia)
    neut = np.clip(62 + 15 * c.sepsis + 8 * c.pneumonia + rng.normal(0, 8, n), 30, 97)
    lymph = np.clip(92 - neut + rng.normal(0, 3, n), 1, 60)
    sodium = np.round(139 - 1.5 * c.heart_failure - 1 * c.sepsis + rng.normal(0, 3, n))
    return pd.DataFrame({
        "hemoglobin": hb, "hematocrit": 3 * hb + rng.normal(0, 1, n), "red_blood_cells": hb / 3 + rng.normal(0, 0.2, n),
        "rdw": 13.5 + 1.0 * c.heart_failure + 0.8 * c.aki + np.abs(rng.normal(0, 1, n)),
        "white_blood_cells": wbc, "neutrophils": neut, "lymphocytes": lymph,
        "absolute_lymphocyte_count": wbc * lymph / 100,
        "platelet_count": np.round(np.clip(240 - 60 * c.sepsis + rng.normal(0, 60, n), 20, 700)),
        "sodium": sodium, "chloride": np.round(sodium - 36 + rng.normal(0, 2, n)),
        "bicarbonate": np.round(np.clip(25 - 3 * c.sepsis - 3 * c.aki - 2.5 * sevp + rng.normal(0, 2, n), 8, 40)),
        "potassium": 4.1 + 0.9 * c.aki + 0.15 * sev + rng.normal(0, 0.4, n),
        "creatinine": ln(0.95, 0.25) * (1 + 1.6 * c.aki + 0.3 * c.sepsis + 0.5 * sevp),
        "urea_nitrogen": np.round(ln(16, 0.3) * (1 + 1.3 * c.aki + 0.3 * c.heart_failure + 0.5 * sevp)),
        "glucose": np.round(ln(115, 0.25) * (1 + 0.15 * c.sepsis)),
        "calcium,_total": 9.3 - 0.3 * c.sepsis + rng.normal(0, 0.4, n),
        "magnesium": 2.0 + 0.2 * c.aki + rng.normal(0, 0.2, n),
        "phosphate": 3.5 + 1.5 * c.aki + rng.normal(0, 0.5, n),
        "lactate": ln(1.3, 0.3) * (1 + 1.5 * c.sepsis + 0.8 * sevp),
        "troponin_t": ln(0.01, 0.6) * (1 + 25 * c.acs + 2 * c.heart_failure),
        "creatine_kinase_(ck)": np.round(ln(120, 0.6) * (1 + 3 * c.acs)),
        "creatine_kinase,_mb_isoenzyme": ln(2.5, 0.5) * (1 + 8 * c.acs),
        "c-reactive_protein": ln(5, 0.9) * (1 + 12 * c.sepsis + 8 * c.pneumonia),
    }, index=view.index)


def _panel_probability(view: pd.DataFrame) -> dict[str, np.ndarray]:
    """Probability that each lab panel is ordered in the first 90 minutes (given labs are drawn at all)."""
    c = view[list(CONDITIONS)].astype(float)
    n = len(view)
    return {"bmp": np.full(n, 0.9), "cbc": np.full(n, 0.9),
            "cardiac": np.clip(0.3 + 0.5 * c.acs + 0.2 * c.heart_failure, 0, 1).to_numpy(),
            "lactate": np.clip(0.2 + 0.5 * c.sepsis, 0, 1).to_numpy(),
            "crp": np.clip(0.1 + 0.3 * np.maximum(c.sepsis, c.pneumonia), 0, 1).to_numpy()}


def _date(t: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(t.astype("datetime64[D]"), unit="D")


def mds_ed_tables(n: int, seed: int, knobs: BiasKnobs | None = None, informativeness: dict | None = None,
                  race_mix: dict | None = None) -> SyntheticTables:
    """The ``mds_ed.csv`` table of a synthetic MIMIC-IV-Ext-MDS-ED cohort of ``n`` ED stays.

    One row per ECG within the first 90 minutes (``general_ecg_no_within_stay`` 0, 1, ...; most stays have
    one), with every column of :data:`mmlib.schema.MDS_ED_COLUMNS` in order except ``Unnamed: 0`` (the
    pandas index :func:`write_mds_ed` writes). Folds: 20 strat folds of 5 % each, assigned by patient
    within age-quartile x gender x leading-diagnosis strata (MDS-ED stratifies by diagnoses, age bin and
    gender). ``unequal_access`` removes labs and biometrics (what the release can lack); every row has its
    ECG in the window, as in the release. Returns the table, the latent truth (one row per stay) and the
    ECG renderer's parameters (one row per ECG row / ``general_data``).
    """
    knobs = knobs or BiasKnobs()
    inf = {m: 1.0 for m in MODALITIES["mds_ed"]} | dict(informativeness or {})
    pop = simulate_population(n, seed, race_mix)
    r = streams(seed, ("ids", "times", "triage", "series", "outcome", "access", "ecg", "body", "ecg-rows",
                       "labs", "diagnoses"))
    race5 = pop["race5"].to_numpy()
    views = {m: modality_view(pop, m, inf[m], seed) for m in MODALITIES["mds_ed"]}
    subject = unique_ids(r["ids"], n, 10_000_000, 20_000_000)
    stay = unique_ids(r["ids"], n, 30_000_000, 40_000_000)
    intime, los_h, outtime = ed_timeline(r["times"], n, min_hours=1.6)
    ra = r["access"]
    access = knobs.effect("unequal_access", race5)
    ro = r["outcome"]
    lg = need_logit(pop)
    sev = pop.severity.to_numpy()
    c = pop[list(CONDITIONS)].astype(float)
    age = pop.age.to_numpy().astype(int)
    male = pop.gender.to_numpy() == "M"

    # --- admission and ICU (decisions, subject to label bias)
    # ICU within 24 h is driven by organ failure beyond general acuity: the renal-metabolic and cardiac parts
    # of severity (which the labs and the ECG see, and triage hardly does) weigh again
    icu_need = (lg - 2.0 + 0.6 * c.sepsis.to_numpy() + 0.5 * pop["severity_metabolic"].to_numpy()
                + 0.4 * pop["severity_cardiac"].to_numpy())
    u = ro.random(n)
    icu = u < 1 / (1 + np.exp(-(icu_need - knobs.effect("label_bias", race5))))
    icu_unbiased = u < 1 / (1 + np.exp(-icu_need))
    admitted = (ro.random(n) < 1 / (1 + np.exp(-(lg - knobs.effect("label_bias", race5))))) | icu
    hadm = unique_ids(r["ids"], n, 20_000_000, 30_000_000)
    risk = lg + 0.3 * (age - 55) / 10

    def ev(offset):
        return ro.random(n) < 1 / (1 + np.exp(-(risk + offset)))

    icu_late = ev(-4.5)  # ICU later in the stay (after 24 h)
    h_early, h_late = 0.3 + ro.gamma(1.5, 5.0, n), 24.5 + ro.gamma(2.0, 24.0, n)
    icu_hours = np.where(icu, np.minimum(h_early, 24.0), np.where(icu_late & admitted, h_late, np.nan))
    dischtime = outtime + as_timedelta(np.round((1 + ro.gamma(2.0, 2.0, n)) * 24 * 60))

    # --- death (MIMIC's dod is a date: hours since arrival are counted from its midnight, as MDS-ED does)
    mort = ro.random(n)
    p_die = 1 / (1 + np.exp(-(risk - 4.2 + 0.8 * np.clip(sev, 0, None))))
    ratio = mort / p_die
    days = np.interp(ratio, [0, .08, .35, .7, 1.0, 1.25, 1.5, 3.0], [0, 1, 7, 28, 90, 180, 365, 1500])
    dies = ratio < 3.0
    dod = (intime + as_timedelta(days * 24 * 60)).astype("datetime64[D]")
    mort_h = np.where(dies, (dod.astype("datetime64[s]") - intime).astype(float) / 3600, np.nan)
    mort_d = np.floor(mort_h / 24)
    undefined = MDS_ED_UNDEFINED
    early_death = dies & (mort_h < 1.5)
    det: dict[str, np.ndarray] = {}

    # --- vital signs in the first 90 minutes: 1-6 charted sets (none for a few stays)
    vs = vital_signs(views["vitals"], seed + 1)
    rs = r["series"]
    k = 6
    minutes = np.round(np.sort(rs.uniform(0, 90, (n, k)), 1))
    count = np.where(rs.random(n) < 0.04, 0, rs.integers(1, k + 1, n))
    present = np.arange(k)[None, :] < count[:, None]
    drift = rs.normal(0, 1, (n, k)).cumsum(1) * 0.3
    truth_vs = {"temperature": vs.temp_c.to_numpy()[:, None] + 0.1 * drift,
                "heartrate": vs.heart_rate.to_numpy()[:, None] + 3 * drift,
                "resprate": vs.resp_rate.to_numpy()[:, None] + drift,
                "sbp": vs.sbp.to_numpy()[:, None] + 4 * drift, "dbp": vs.dbp.to_numpy()[:, None] + 2 * drift}
    noise_sd = {"temperature": 0.15, "heartrate": 3, "resprate": 1, "sbp": 4, "dbp": 3}
    sao2 = vs.sao2.to_numpy()[:, None] + 0.4 * drift
    vit_cols: dict[str, np.ndarray] = {}
    for v in VITALS:
        if v == "o2sat":
            vals = pulse_oximeter(sao2, race5[:, None], knobs, rs.normal(0, 0.8, (n, k)))
        else:
            vals = np.round(truth_vs[v] + rs.normal(0, noise_sd[v], (n, k)), 1)
        vals = np.where(present, vals, np.nan)
        if v == "o2sat":
            spo2_before = vals
        for stat, arr in series_stats(vals, minutes).items():
            vit_cols[f"vitals_{v}_{stat}"] = arr
    acuity, acuity_unbiased = triage_acuity(views["arrival"], knobs, r["triage"])
    vit_cols["vitals_acuity"] = acuity

    # --- deterioration (MDS-ED's definitions and -999 rules)
    later_spo2 = rs.random(n) > 0.1  # an SpO2 charted after the 90 minutes
    hyp_event = ((sao2[:, 0] < 88) & (ro.random(n) < 0.7)) | ev(-4.5)
    no_before = np.isnan(spo2_before).all(1)
    low_before = np.nanmin(np.where(np.isnan(spo2_before), 101, spo2_before), 1) <= 85
    det["severe_hypoxemia"] = np.where(no_before | ~later_spo2 | low_before, undefined, hyp_event)
    det["ecmo"] = ev(-8.5)
    det["vasopressors"] = ((c.sepsis.to_numpy() == 1) & ev(-1.0)) | ev(-5.5)
    det["inotropes"] = ((c.heart_failure.to_numpy() == 1) & ev(-2.5)) | ev(-7.0)
    det["mechanical_ventilation"] = ev(-4.0)
    det["cardiac_arrest"] = ev(-6.5)
    in_icu_early = icu_hours < 1.5
    det["icu_24h"] = np.where(in_icu_early, undefined, (icu_hours >= 1.5) & (icu_hours <= 24))
    det["icu_stay"] = np.where(in_icu_early, undefined, icu_hours >= 1.5)
    for h in ("1d", "7d", "28d", "90d", "180d", "365d"):
        det[f"mortality_{h}"] = np.where(early_death, undefined, dies & (mort_d <= int(h[:-1])))
    died_in_stay = dies & ((admitted & (dod.astype("datetime64[s]") < dischtime)) | (dod.astype("datetime64[s]") < outtime))
    det["mortality_stay"] = np.where(early_death, undefined, died_in_stay)

    # --- diagnoses (ED and hospital discharge codes; MDS-ED's labels are their 3-5 character prefixes)
    rd = r["diagnoses"]
    coded = {cond: (pop[cond].to_numpy() == 1) & (rd.random(n) < 0.9) for cond in CONDITION_CODES}
    symptom = np.asarray(SYMPTOM_CODES)[rd.integers(0, len(SYMPTOM_CODES), n)]
    codes = [[CONDITION_CODES[cd] for cd in CONDITION_CODES if coded[cd][i]] or [str(symptom[i])] for i in range(n)]
    col_of = {code: j for j, code in enumerate(MDS_ED_DIAGNOSES)}
    diag = np.zeros((n, len(MDS_ED_DIAGNOSES)), dtype=np.int8)
    for code in list(CONDITION_CODES.values()) + list(SYMPTOM_CODES):
        rows_with = np.array([code in cs for cs in codes])
        for j in (col_of[p] for p in {code[:i].lower() for i in range(3, len(code) + 1)} if p in col_of):
            diag[rows_with, j] = 1
    diag_str = np.array([repr(cs) for cs in codes], dtype=object)

    # --- biometrics (OMR within 30 days; missing more often for some groups: unequal access)
    rb = r["body"]
    height = np.round(np.where(male, 176, 163) + rb.normal(0, 7, n), 1)
    bmi = np.clip(rb.normal(28, 6, n) + 1.5 * c.hypertension.to_numpy(), 15, 60)
    weight = np.round(bmi * (height / 100) ** 2, 1)
    bio_missing = ra.random(n) < np.clip(0.35 + access, 0, 0.95)
    weight_only = rb.random(n) < 0.3

    # --- labs in the first 90 minutes (missing for some stays: MNAR access gap)
    labs_missing = ra.random(n) < np.clip(0.15 + 0.1 * (sev < -0.5) + access, 0, 0.95)
    rl = r["labs"]
    lt = _lab_truth(views["labs"], rl)
    pp = _panel_probability(views["labs"])
    ordered = {p: (rl.random(n) < pp[p]) & ~labs_missing for p in LAB_PANELS}
    lab_count = rl.integers(1, 3, n)
    lab_minutes = np.round(np.sort(rl.uniform(10, 90, (n, 2)), 1))
    lab_cols: dict[str, np.ndarray] = {}
    for panel, labs in LAB_PANELS.items():
        for lab in labs:
            vals = np.round(lt[lab].to_numpy()[:, None] * (1 + rl.normal(0, 0.04, (n, 2))), _ROUND.get(lab, 0))
            vals = np.where((np.arange(2)[None, :] < lab_count[:, None]) & ordered[panel][:, None], vals, np.nan)
            for stat, arr in series_stats(vals, lab_minutes).items():
                lab_cols[f"labvalues_{lab}_{stat}"] = arr

    # --- folds: 20 x 5 % by patient (one stay per patient here), stratified by age quartile x gender x
    # leading diagnosis: the strata in random order (not sorted by name, which would line up similar
    # diagnoses at the same fold offsets), patients in random order within each, dealt to the folds in turn
    lead_dx = np.array([cs[0] for cs in codes])
    age_q = np.searchsorted(np.quantile(age, [0.25, 0.5, 0.75]), age, side="right")
    strata = pd.Series(age_q.astype(str)) + np.where(male, "M", "F") + lead_dx
    rf = streams(seed, ("folds",))["folds"]
    stratum, names = pd.factorize(strata.to_numpy(), sort=True)
    order = np.lexsort((rf.random(n), rf.permutation(len(names))[stratum]))
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % MDS_ED_FOLDS

    # --- ECG rows: every ECG in [arrival, arrival + 90 min]; some stays have two or three
    re_rows = r["ecg-rows"]
    u = re_rows.random(n)
    n_ecg = 1 + (u < 0.15) + (u < 0.03)
    first_min = np.clip(re_rows.gamma(2.0, 12.0, n), 1, 80)
    later = np.sort(re_rows.uniform(0, 1, (n, 2)), 1)
    rows = np.repeat(np.arange(n), n_ecg)
    no = np.arange(len(rows)) - np.repeat(np.cumsum(n_ecg) - n_ecg, n_ecg)
    ecg_min = np.where(no == 0, first_min[rows],
                       first_min[rows] + later[rows, np.clip(no - 1, 0, 1)] * (90 - first_min[rows]))
    ecg_time = intime[rows] + as_timedelta(ecg_min)
    m = len(rows)
    study = unique_ids(r["ids"], m, 40_000_000, 50_000_000)
    subj = subject[rows]
    anchor_year = (intime.astype("datetime64[Y]").astype(int) + 1970) - re_rows.integers(0, 4, n)
    ecg_year = ecg_time.astype("datetime64[Y]").astype(int) + 1970
    anchor_age = age - ((intime.astype("datetime64[Y]").astype(int) + 1970) - anchor_year)

    def rep(a):
        return np.asarray(a)[rows]

    cols = {
        "general_data": np.arange(m),
        "general_file_name": np.array([f"files/p{str(s)[:4]}/p{s}/s{t}/{t}" for s, t in zip(subj, study)], dtype=object),
        "general_study_id": study, "general_subject_id": subj, "general_ecg_time": fmt_time(ecg_time),
        "general_ed_stay_id": rep(stay).astype(float),
        "general_ed_hadm_id": rep(np.where(admitted, hadm, np.nan)),
        "general_ed_diag_ed": rep(diag_str), "general_ed_diag_hosp": rep(np.where(admitted, diag_str, "[]")),
        "demographics_gender": rep(male.astype(int)),
        "demographics_age": ecg_year - rep(anchor_year) + rep(anchor_age),
        "general_anchor_year": rep(anchor_year), "general_anchor_age": rep(anchor_age),
        "general_dod": rep(np.where(dies, _date(dod), "")),
        "general_ecg_no_within_stay": no, "general_strat_fold": rep(fold),
        "general_intime": rep(fmt_time(intime)), "general_outtime": rep(fmt_time(outtime)),
        "general_race": rep(pop.race_raw.to_numpy()),
        "general_90min": rep(fmt_time(intime + np.timedelta64(90, "m"))),
        "general_mortality_hours": rep(mort_h), "general_mortality_days": rep(mort_d),
        "general_hosp_dischtime": rep(np.where(admitted, fmt_time(dischtime), "")),
        "general_icu_time_hours": rep(icu_hours),
        **{f"demographics_ethnicity_{RACE5_COLUMNS[g]}": rep((race5 == g).astype(int))
           for g in sorted(RACE5, key=lambda g: RACE5_COLUMNS[g])},
        "biometrics_bmi": rep(np.where(bio_missing, np.nan, np.round(bmi, 1))),
        "biometrics_weight": rep(np.where(bio_missing & ~weight_only, np.nan, weight)),
        "biometrics_height": rep(np.where(bio_missing, np.nan, height)),
        **{k_: rep(v) for k_, v in vit_cols.items()},
    }
    for lab in LABS:
        for s in STATS:
            name = f"labvalues_{lab}_{s}"
            cols[name] = rep(lab_cols[name]) if name in lab_cols else np.full(m, np.nan)
    diag_df = pd.DataFrame(diag[rows], columns=[f"diagnoses_{cd}" for cd in MDS_ED_DIAGNOSES])
    det_df = pd.DataFrame({f"deterioration_{d}": rep(np.asarray(det[d]).astype(float)) for d in DETERIORATION})
    df = pd.concat([pd.DataFrame(cols), diag_df, det_df], axis=1)
    assert list(df.columns) == list(MDS_ED_COLUMNS[1:])

    # --- ECG renderer inputs (ecg view), one row per ECG row
    ve = views["ecg"]
    re_ = r["ecg"]
    vse = vital_signs(ve, seed + 2)
    bbb = re_.random(n) < 0.06
    hyperk = (ve.aki.to_numpy() == 1) & (re_.random(n) < 0.35)
    acs = ve.acs.to_numpy() == 1
    stemi = acs & (re_.random(n) < 0.4)
    render = pd.DataFrame({
        "heart_rate": np.clip(vse.heart_rate.to_numpy() + re_.normal(0, 3, n), 32, 185),
        "af": ve.af.to_numpy() == 1,
        "qrs_ms": np.clip(re_.normal(90, 8, n) + np.where(bbb, re_.uniform(35, 60, n), 0) + np.where(hyperk, 30, 0), 70, 190),
        "st_mv": np.where(stemi, re_.uniform(0.15, 0.35, n), np.where(acs, -re_.uniform(0.08, 0.2, n), 0.0)),
        "st_territory": re_.integers(0, 3, n),
        "lvh": ve.hypertension.to_numpy() * re_.uniform(0.2, 1.0, n),
        "axis_deg": re_.normal(45, 25, n),
    })
    render = render.iloc[rows].reset_index(drop=True)
    render["heart_rate"] = np.clip(render["heart_rate"] + np.where(no > 0, re_rows.normal(0, 4, m), 0), 32, 185)
    dx_truth = {f"diagnosis_coded_{cd}": coded[cd] for cd in CONDITION_CODES}
    truth = pd.DataFrame({"general_subject_id": subject, "general_ed_stay_id": stay, "race5": race5,
                          "severity": sev, **{cn: pop[cn] for cn in CONDITIONS},
                          "sao2_true": vs.sao2.to_numpy(), "acuity_unbiased": acuity_unbiased,
                          "icu_24h_unbiased": icu_unbiased, "icu_24h_need": icu_need, "labs_missing": labs_missing,
                          "biometrics_missing": bio_missing, "n_ecg_rows": n_ecg, **dx_truth,
                          "ecg_bbb": bbb, "ecg_hyperkalaemia": hyperk,
                          **{f"ecg_{k_}": render[k_].to_numpy()[no == 0] for k_ in render.columns}})
    return SyntheticTables({"mds_ed.csv": df}, truth, render)


def _float_fields(block: np.ndarray) -> np.ndarray:
    """Float columns as CSV fields the way pandas writes them (``repr``; NaN empty); all-NaN columns cheaply."""
    out = np.full(block.shape, "", dtype=object)
    live = ~np.isnan(block).all(0)
    if live.any():
        sub = block[:, live]
        txt = sub.astype(str).astype(object)
        txt[np.isnan(sub)] = ""
        out[:, live] = txt
    return out


def _csv_text(df: pd.DataFrame) -> list[str]:
    """Rows of ``df`` as CSV lines with the pandas index first (no header), as ``DataFrame.to_csv`` writes
    them; the wide float and 0/1 blocks are formatted with numpy, which keeps 1,936 columns fast."""
    cols = list(df.columns)
    v0 = cols.index("vitals_temperature_mean")
    d0 = next(i for i, c in enumerate(cols) if c.startswith("diagnoses_"))
    t0 = next(i for i, c in enumerate(cols) if c.startswith("deterioration_"))
    head = df.iloc[:, :v0].to_csv(header=False, lineterminator="\n").split("\n")[:-1]
    floats = np.concatenate([_float_fields(df.iloc[:, v0:d0].to_numpy(float)),
                             np.full((len(df), 1), None, dtype=object),
                             _float_fields(df.iloc[:, t0:].to_numpy(float))], axis=1)
    bits = df.iloc[:, d0:t0].to_numpy(np.uint8)
    buf = np.full((len(df), 2 * bits.shape[1] - 1), ord(","), dtype=np.uint8)
    buf[:, ::2] = bits + ord("0")
    mid = [row.tobytes().decode() for row in buf]
    k = d0 - v0
    return [f"{h},{','.join(f[:k])},{m_},{','.join(f[k + 1:])}" for h, f, m_ in zip(head, floats.tolist(), mid)]


def write_mds_ed(st: SyntheticTables, root: Path, seed: int, progress: bool = True, meta: dict | None = None) -> Path:
    """Simulate the ECGs and write a synthetic MDS-ED cohort in the release's layout under ``root``.

    ``mds_ed.csv`` as pandas writes a DataFrame with its index (the leading ``Unnamed: 0`` column);
    ``memmap.npy``: raw float32 rows (time, 12) of all records stacked, columns in the release's lead order
    (:data:`mmlib.schema.MDS_ED_LEAD_COLUMNS`, from the simulator's :data:`mmlib.schema.LEADS` order), clipped
    to +-3 mV; ``memmap_meta.npz`` with ``start, length, shape, file_idx, dtype, filenames`` as MDS-ED's
    ``npys_to_memmap`` saves them (``dtype`` a pickled ``np.dtype``). Record ``general_data`` is rows
    ``start[i] : start[i] + length[i]``.
    """
    from .ecg import simulate_ecg

    root = Path(root)
    to_file = [LEADS.index(lead) for lead in sorted(MDS_ED_LEAD_COLUMNS, key=MDS_ED_LEAD_COLUMNS.get)]
    with atomic_dir(root) as tmp:
        df = st.tables["mds_ed.csv"]
        rng = streams(seed, ("ecg-render",))["ecg-render"]
        params = {k: st.render[k].to_numpy() for k in st.render.columns}
        n = len(df)
        length = int(FS * 10)
        out = np.memmap(tmp / "memmap.npy", dtype=np.float32, mode="w+", shape=(n * length, 12))
        chunk = 1024
        truth_parts = []
        for a in tqdm(range(0, n, chunk), desc="mds_ed: simulating ECGs", disable=not progress, leave=False):
            b = min(n, a + chunk)
            sig, tr = simulate_ecg({k: v[a:b] for k, v in params.items()}, rng)
            out[a * length:b * length] = np.clip(sig[..., to_file], -ECG_CLIP_MV, ECG_CLIP_MV).reshape(-1, 12)
            truth_parts.append(pd.DataFrame({k: v for k, v in tr.items() if np.ndim(v) == 1}))
        out.flush()
        del out
        np.savez(tmp / "memmap_meta.npz", start=np.arange(n, dtype=np.int64) * length,
                 length=np.full(n, length, dtype=np.int64), shape=[[n * length, 12]],
                 file_idx=np.zeros(n, dtype=np.int64), dtype=np.dtype(np.float32), filenames=["memmap.npy"])
        lines = _csv_text(df)
        header = ",".join(["", *(f'"{c}"' if "," in c else c for c in df.columns)])
        (tmp / "mds_ed.csv").write_text("\n".join([header, *lines]) + "\n")
        first = (df["general_ecg_no_within_stay"] == 0).to_numpy()
        sim = pd.concat(truth_parts, ignore_index=True)[first].reset_index(drop=True).add_prefix("ecg_sim_")
        truth = pd.concat([st.truth.reset_index(drop=True), sim], axis=1)
        write_extras(tmp, truth, meta)
    return root
