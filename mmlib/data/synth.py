"""Synthetic MIMIC-Eye and MIMIC-IV-Ext-MDS-ED cohorts, written in the real datasets' on-disk layouts.

The generators draw one latent state per patient (:mod:`mmlib.data.latent`), derive every modality and
outcome from it, apply the bias knobs, and write the files a credentialed user would have on disk
(``../shared/STUDY.md`` section 2), so that :func:`mmlib.data.load_cohort` reads synthetic and real data
with the same code. Besides the real layout, each synthetic root holds two clearly-named extras that a
real copy does not have: ``synthetic_params.json`` (how it was made) and ``synthetic_truth.parquet``
(the latent state, so the book can check that its measurements recover what was put in).

Table-level generation (:func:`mimic_eye_tables`, :func:`mds_ed_tables`) is separate from rendering
images and ECGs and writing files (:func:`generate`), so tests can check the bias knobs quickly.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..artifacts import atomic_dir
from ..schema import CHEXPERT, COHORTS, DETERIORATION, DIAGNOSES, FS, LABS, MODALITIES, VITALS

from .latent import CONDITIONS, BiasKnobs, modality_view, simulate_population, streams, vital_signs
from .races import RACE5, RACE5_COLUMNS, race_binary_of
from .splits import stratified_assign

#: ICD-10 / ICD-9 codes (MIMIC stores them without the dot) of the conditions seen in earlier admissions.
HISTORY_CODES = {"heart_failure": ("I509", "4280"), "copd": ("J449", "496"), "hypertension": ("I10", "4019"),
                 "af": ("I4891", "42731"), "aki": ("N179", "5849"), "pneumonia": ("J189", "486"),
                 "acs": ("I214", "41071"), "sepsis": ("A419", "0389")}
BACKGROUND_CODES = (("E119", "25000"), ("E785", "2724"), ("K219", "53081"), ("F329", "311"), ("M545", "7242"),
                    ("Z87891", "V1582"), ("N390", "5990"), ("G4733", "32723"), ("E039", "2449"), ("F419", "30000"))


# ----------------------------------------------------------------------------------------------- helpers
def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    return low + np.sort(rng.choice(high - low, size=n, replace=False))


def _fmt_time(t: np.ndarray) -> np.ndarray:
    """datetime64 -> 'YYYY-MM-DD HH:MM:SS' strings (MIMIC's format)."""
    return np.char.replace(np.datetime_as_string(t.astype("datetime64[s]"), unit="s"), "T", " ")


def _minutes(m) -> np.ndarray:
    return (np.asarray(m, dtype=float) * 60).round().astype("timedelta64[s]")


def _ed_timeline(rng: np.random.Generator, n: int, min_hours: float):
    """ED arrival times (MIMIC's shifted years 2150-2190, whole minutes), length of stay (h) and departure."""
    intime = np.datetime64("2150-01-01T00:00:00") + (rng.random(n) * 40 * 365 * 86400).astype("timedelta64[s]")
    intime = intime.astype("datetime64[m]").astype("datetime64[s]")
    los_h = np.clip(rng.gamma(3.0, 2.2, n) + 1.5, min_hours, 30)
    return intime, los_h, intime + _minutes(los_h * 60)


def _f_from_c(c):
    return c * 9 / 5 + 32


def _acuity(view: pd.DataFrame, knobs: BiasKnobs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ESI triage level 1 (most severe) .. 5 as recorded, and as it would be without under-triage."""
    c = view
    score = (view["severity"].to_numpy() + 0.9 * c.sepsis + 0.7 * c.acs + 0.4 * c.pneumonia
             + 0.4 * c.heart_failure + rng.normal(0, 0.45, len(view)))
    cuts = np.array([-1.7, -0.6, 0.9, 2.2])  # score above cut k => at least that severe
    unbiased = 5 - np.searchsorted(cuts, score, side="right")
    recorded = 5 - np.searchsorted(cuts, score - knobs.effect("under_triage", view["race5"].to_numpy()),
                                   side="right")
    return recorded.astype(float), unbiased.astype(float)


def _spo2(sao2: np.ndarray, race5: np.ndarray, knobs: BiasKnobs, noise: np.ndarray) -> np.ndarray:
    """Pulse-oximeter reading: SaO2 + measurement noise + the group over-read, which grows as SaO2 falls."""
    over = knobs.effect("spo2_overread", race5) * (1 + np.clip(96 - sao2, 0, None) / 6)
    return np.clip(np.round(sao2 + noise + over), 50, 100)


def _need_logit(view: pd.DataFrame) -> np.ndarray:
    c = view
    return (-0.9 + 1.3 * view["severity"] + 0.9 * c.sepsis + 0.8 * c.pneumonia + 0.9 * c.heart_failure
            + 0.8 * c.acs + 0.6 * c.aki + 0.3 * c.copd + 0.25 * (view["age"] - 55) / 10).to_numpy(float)


# ------------------------------------------------------------------------------------------ MIMIC-Eye
@dataclass
class SyntheticTables:
    """Everything a generator writes, before writing: the real-layout tables, the latent truth, and the
    per-record inputs of the image / ECG renderers."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    render: pd.DataFrame


def mimic_eye_tables(n: int, seed: int, knobs: BiasKnobs | None = None, informativeness: dict | None = None,
                     race_mix: dict | None = None) -> SyntheticTables:
    """Tables of a synthetic MIMIC-Eye cohort of ``n`` patients (one ED stay each).

    Returns MIMIC-IV-ED ``edstays``, ``triage``, ``vitalsign``, ``diagnosis``, ``medrecon``; MIMIC-IV hosp
    ``patients``, ``admissions`` (earlier admissions plus the index one), ``diagnoses_icd``; MIMIC-CXR-JPG
    ``cxr_meta``, ``cxr_chexpert``, ``cxr_split``; the latent truth per stay; and the CXR findings to draw.
    """
    knobs = knobs or BiasKnobs()
    inf = {m: 1.0 for m in MODALITIES["mimic_eye"]} | dict(informativeness or {})
    pop = simulate_population(n, seed, race_mix)
    r = streams(seed, ("ids", "times", "triage", "series", "dispo", "history", "cxr", "labels", "access"))
    race5 = pop["race5"].to_numpy()
    views = {m: modality_view(pop, m, inf[m], seed) for m in MODALITIES["mimic_eye"]}
    subject = _unique_ids(r["ids"], n, 10_000_000, 20_000_000)
    stay = _unique_ids(r["ids"], n, 30_000_000, 40_000_000)
    hadm_pool = _unique_ids(r["ids"], 6 * n, 20_000_000, 30_000_000)
    intime, los_h, outtime = _ed_timeline(r["times"], n, min_hours=1.0)

    # --- arrival / triage (recorded at arrival)
    va = views["arrival"]
    arr_vs = vital_signs(va, seed)
    acuity, acuity_unbiased = _acuity(va, knobs, r["triage"])
    vv = views["vitals"]
    vs = vital_signs(vv, seed + 1)
    rtr = r["triage"]
    triage = pd.DataFrame({
        "subject_id": subject, "stay_id": stay,
        "temperature": np.round(_f_from_c(vs.temp_c + rtr.normal(0, 0.2, n)), 1),
        "heartrate": np.round(vs.heart_rate + rtr.normal(0, 3, n)),
        "resprate": np.round(vs.resp_rate + rtr.normal(0, 1, n)),
        "o2sat": _spo2(vs.sao2.to_numpy(), race5, knobs, rtr.normal(0, 0.8, n)),
        "sbp": np.round(vs.sbp + rtr.normal(0, 4, n)), "dbp": np.round(vs.dbp + rtr.normal(0, 3, n)),
        "pain": arr_vs.pain.astype(int).astype(str), "acuity": acuity, "chiefcomplaint": arr_vs.chief_complaint,
    })
    for col, rate in (("temperature", 0.06), ("heartrate", 0.02), ("resprate", 0.03), ("o2sat", 0.03),
                      ("sbp", 0.02), ("dbp", 0.02)):
        triage.loc[rtr.random(n) < rate, col] = np.nan
    triage.loc[rtr.random(n) < 0.04, "pain"] = "UTA"  # 'unable to assess', as in MIMIC-IV-ED

    # --- ED vital-sign series: first check 10-40 min after arrival, then every 30-120 min until departure
    rs = r["series"]
    k = 14
    gaps = np.concatenate([rs.uniform(10, 40, (n, 1)), rs.uniform(30, 120, (n, k - 1))], axis=1).cumsum(1)
    keep = gaps < (los_h * 60)[:, None]
    drift = rs.normal(0, 1, (n, k)).cumsum(1) * 0.3
    rows = np.nonzero(keep)
    i, j = rows
    sao2_series = vs.sao2.to_numpy()[i] + 0.4 * drift[i, j]
    rhythm = np.where(vv.af.to_numpy()[i] == 1, "Atrial Fibrillation",
                      np.where(vs.heart_rate.to_numpy()[i] > 100, "Sinus Tachycardia", "Normal Sinus Rhythm"))
    rhythm = np.where(rs.random(i.size) < 0.5, None, rhythm)
    vitalsign = pd.DataFrame({
        "subject_id": subject[i], "stay_id": stay[i], "charttime": _fmt_time(intime[i] + _minutes(gaps[i, j])),
        "temperature": np.round(_f_from_c(vs.temp_c.to_numpy()[i] + 0.1 * drift[i, j] + rs.normal(0, 0.2, i.size)), 1),
        "heartrate": np.round(vs.heart_rate.to_numpy()[i] + 3 * drift[i, j] + rs.normal(0, 3, i.size)),
        "resprate": np.round(vs.resp_rate.to_numpy()[i] + drift[i, j] + rs.normal(0, 1, i.size)),
        "o2sat": _spo2(sao2_series, race5[i], knobs, rs.normal(0, 0.8, i.size)),
        "sbp": np.round(vs.sbp.to_numpy()[i] + 4 * drift[i, j] + rs.normal(0, 4, i.size)),
        "dbp": np.round(vs.dbp.to_numpy()[i] + 2 * drift[i, j] + rs.normal(0, 3, i.size)),
        "rhythm": rhythm, "pain": np.clip(arr_vs.pain.to_numpy()[i] - j, 0, 10).astype(int).astype(str),
    })

    # --- outcome: admission (need, then the recorded decision with label bias)
    rd = r["dispo"]
    need = 1 / (1 + np.exp(-_need_logit(pop)))
    recorded_p = 1 / (1 + np.exp(-(_need_logit(pop) - knobs.effect("label_bias", race5))))
    u = rd.random(n)
    admitted = u < recorded_p
    admitted_unbiased = u < need
    other = rd.choice(["HOME", "LEFT WITHOUT BEING SEEN", "ELOPED", "LEFT AGAINST MEDICAL ADVICE", "TRANSFER",
                       "OTHER", "EXPIRED"], size=n, p=[0.93, 0.025, 0.01, 0.012, 0.012, 0.008, 0.003])
    disposition = np.where(admitted, "ADMITTED", other)
    disposition = np.where((disposition == "EXPIRED") & (pop.severity.to_numpy() < 1), "HOME", disposition)
    hadm_index = np.where(admitted, hadm_pool[:n], -1)
    transport = np.where(pop.severity.to_numpy() + rd.normal(0, 0.8, n) > 1.0, "AMBULANCE",
                         rd.choice(["WALK IN", "UNKNOWN", "OTHER", "HELICOPTER"], size=n, p=[0.8, 0.13, 0.06, 0.01]))
    edstays = pd.DataFrame({
        "subject_id": subject, "hadm_id": pd.array(np.where(admitted, hadm_index, 0), dtype="Int64"),
        "stay_id": stay, "intime": _fmt_time(intime), "outtime": _fmt_time(outtime),
        "gender": pop.gender.to_numpy(), "race": pop.race_raw.to_numpy(), "arrival_transport": transport,
        "disposition": disposition,
    })
    edstays.loc[~admitted, "hadm_id"] = pd.NA

    # --- hosp: patients, earlier admissions (history) and the index admission
    anchor_year = intime.astype("datetime64[Y]").astype(int) + 1970 - r["history"].integers(0, 3, n)
    patients = pd.DataFrame({"subject_id": subject, "gender": pop.gender.to_numpy(),
                             "anchor_age": (pop.age.to_numpy() - (intime.astype("datetime64[Y]").astype(int) + 1970
                                                                  - anchor_year)).astype(int),
                             "anchor_year": anchor_year,
                             "anchor_year_group": np.array(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019"])
                             [r["history"].integers(0, 4, n)], "dod": None})
    vc = views["codes"]
    rh = r["history"]
    chronic = vc.heart_failure + vc.copd + vc.hypertension + vc.af
    n_prior = rh.poisson(np.clip(0.35 + 0.6 * chronic + 0.12 * (vc.age - 55) / 10 + 0.2 * vc.severity, 0.02, None))
    n_prior = np.minimum(n_prior, 5)
    pi = np.repeat(np.arange(n), n_prior)
    prior_days = rh.uniform(20, 2500, pi.size)
    prior_adm = intime[pi] - _minutes(prior_days * 24 * 60)
    prior_dis = prior_adm + _minutes(rh.uniform(1, 12, pi.size) * 24 * 60)
    prior_hadm = hadm_pool[n:n + pi.size]
    adm_rows = pd.DataFrame({
        "subject_id": np.concatenate([subject[pi], subject[admitted]]),
        "hadm_id": np.concatenate([prior_hadm, hadm_index[admitted]]),
        "admittime": np.concatenate([_fmt_time(prior_adm), _fmt_time(outtime[admitted])]),
        "dischtime": np.concatenate([_fmt_time(prior_dis),
                                     _fmt_time(outtime[admitted] + _minutes(rh.uniform(1, 9, n)[admitted] * 1440))]),
        "deathtime": None,
        "admission_type": np.concatenate([rh.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"], pi.size),
                                          np.full(admitted.sum(), "EW EMER.")]),
        "admission_location": np.concatenate([np.full(pi.size, "EMERGENCY ROOM"), np.full(admitted.sum(), "EMERGENCY ROOM")]),
        "discharge_location": np.concatenate([np.full(pi.size, "HOME"), np.full(admitted.sum(), "HOME")]),
        "insurance": np.concatenate([np.full(pi.size, "Other"), np.full(admitted.sum(), "Other")]),
        "language": "ENGLISH", "marital_status": None,
        "race": np.concatenate([pop.race_raw.to_numpy()[pi], pop.race_raw.to_numpy()[admitted]]),
        "edregtime": np.concatenate([np.full(pi.size, None), _fmt_time(intime[admitted])]),
        "edouttime": np.concatenate([np.full(pi.size, None), _fmt_time(outtime[admitted])]),
        "hospital_expire_flag": 0,
    })
    # diagnoses of earlier admissions reflect chronic conditions (codes view); the index admission's codes are
    # recorded at discharge, after the prediction time, and must never be used as a feature
    icd9 = rh.random(pi.size) < 0.3
    dx_rows = []
    for c, (c10, c9) in HISTORY_CODES.items():
        has = (vc[c].to_numpy()[pi] == 1) & (rh.random(pi.size) < (0.85 if c in ("heart_failure", "copd", "hypertension", "af") else 0.35))
        dx_rows.append(pd.DataFrame({"row": np.flatnonzero(has), "icd": np.where(icd9[has], c9, c10)}))
    n_bg = rh.poisson(1.5, pi.size)
    bgi = np.repeat(np.arange(pi.size), n_bg)
    bg = np.asarray(BACKGROUND_CODES)[rh.integers(0, len(BACKGROUND_CODES), bgi.size)]
    dx_rows.append(pd.DataFrame({"row": bgi, "icd": np.where(icd9[bgi], bg[:, 1], bg[:, 0])}))
    dx = pd.concat(dx_rows).drop_duplicates().sort_values("row", kind="stable")
    prior_dx = pd.DataFrame({"subject_id": subject[pi][dx.row], "hadm_id": prior_hadm[dx.row],
                             "icd_code": dx.icd.to_numpy(), "icd_version": np.where(icd9[dx.row], 9, 10)})
    prior_dx["seq_num"] = prior_dx.groupby("hadm_id").cumcount() + 1
    ai = np.flatnonzero(admitted)
    index_dx = [pd.DataFrame({"subject_id": subject[ai[pop[c].to_numpy()[ai] == 1]],
                              "hadm_id": hadm_index[ai[pop[c].to_numpy()[ai] == 1]], "icd_code": HISTORY_CODES[c][0],
                              "icd_version": 10}) for c in HISTORY_CODES]
    index_dx = pd.concat(index_dx)
    index_dx["seq_num"] = index_dx.groupby("hadm_id").cumcount() + 1
    diagnoses_icd = pd.concat([prior_dx, index_dx])[["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]]
    # ED discharge diagnoses (also recorded after the prediction time)
    ed_dx = [pd.DataFrame({"subject_id": subject[pop[c].to_numpy() == 1], "stay_id": stay[pop[c].to_numpy() == 1],
                           "icd_code": HISTORY_CODES[c][0], "icd_version": 10, "icd_title": c.replace("_", " ").upper()})
             for c in HISTORY_CODES]
    diagnosis = pd.concat(ed_dx)
    diagnosis["seq_num"] = diagnosis.groupby("stay_id").cumcount() + 1
    diagnosis = diagnosis[["subject_id", "stay_id", "seq_num", "icd_code", "icd_version", "icd_title"]]
    medrecon = pd.DataFrame({"subject_id": subject[pi], "stay_id": stay[pi], "charttime": _fmt_time(intime[pi]),
                             "name": "Medication", "gsn": 0, "ndc": 0, "etc_rn": 1, "etccode": 0,
                             "etcdescription": "Unspecified"}).drop_duplicates("stay_id")

    # --- chest X-ray: findings drawn on the image (cxr view) and the documented labels (under-documentation)
    vx = views["cxr"]
    rc = r["cxr"]
    severity_c = vx.severity.to_numpy()
    hf = vx.heart_failure.to_numpy()
    pn = vx.pneumonia.to_numpy()
    render = pd.DataFrame({
        "ctr": np.clip(0.44 + 0.008 * (vx.age.to_numpy() - 55) / 10 + hf * rc.uniform(0.06, 0.2, n)
                       + rc.normal(0, 0.025, n), 0.36, 0.72),
        "consolidation": pn * rc.uniform(0.35, 1.0, n),
        "consolidation_side": rc.choice([0, 1, 2], size=n, p=[0.45, 0.4, 0.15]),
        "consolidation_zone": rc.choice([0, 1, 2], size=n, p=[0.6, 0.3, 0.1]),
        "edema": hf * np.clip(0.35 + 0.35 * severity_c + rc.normal(0, 0.2, n), 0, 1),
    })
    bilateral = rc.random(n) < 0.6
    eff_size = hf * np.clip(rc.uniform(0.1, 0.9, n) + 0.2 * severity_c, 0, 1) * (rc.random(n) < 0.7)
    para = pn * (rc.random(n) < 0.25) * rc.uniform(0.15, 0.5, n)
    side_right = render.consolidation_side.to_numpy() != 1
    render["effusion_right"] = np.maximum(eff_size * (bilateral | (rc.random(n) < 0.6)), para * side_right)
    render["effusion_left"] = np.maximum(eff_size * (bilateral | ~(rc.random(n) < 0.6)), para * ~side_right)
    ap = (severity_c + rc.normal(0, 0.9, n)) > 0.6
    render["ap"] = ap
    findings_true = pd.DataFrame({
        "Cardiomegaly": render.ctr >= 0.5, "Consolidation": render.consolidation > 0,
        "Edema": render.edema > 0.15,
        "Pleural Effusion": np.maximum(render.effusion_left, render.effusion_right) > 0.15,
        "Pneumonia": render.consolidation > 0,
    })
    findings_true["Lung Opacity"] = findings_true.Consolidation | findings_true.Edema
    # availability: a CXR taken during the stay (MNAR: sicker patients are imaged more, and the access gap)
    ra = r["access"]
    p_missing = np.clip(0.12 + 0.12 * (pop.severity.to_numpy() < -0.5) + knobs.effect("unequal_access", race5), 0, 0.95)
    has_cxr_stay = ra.random(n) >= p_missing
    delay_min = np.clip(ra.gamma(2.0, 45, n), 10, None)
    study_time = np.where(has_cxr_stay, intime + _minutes(delay_min),
                          intime - _minutes(ra.uniform(30, 900, n) * 1440))  # otherwise an old film, another day
    study_time = study_time.astype("datetime64[s]")
    study_id = _unique_ids(r["ids"], n, 50_000_000, 60_000_000)
    dicom = np.array(["-".join(f"{x:08x}" for x in row) for row in r["ids"].integers(0, 2**32, (n, 5))])
    rl = r["labels"]
    miss = knobs.effect("cxr_underdocumentation", race5)
    chexpert = pd.DataFrame({"subject_id": subject, "study_id": study_id})
    documented = {}
    for f in CHEXPERT:
        if f in findings_true:
            true = findings_true[f].to_numpy()
            drop = rl.random(n) < miss
            doc = true & ~drop
            documented[f] = doc
            val = np.where(doc, np.where(rl.random(n) < 0.1, -1.0, 1.0),
                           np.where(rl.random(n) < 0.5, 0.0, np.nan))
        else:
            val = np.where(rl.random(n) < 0.03, 1.0, np.nan)
        chexpert[f] = val
    any_doc = np.column_stack(list(documented.values())).any(1)
    chexpert["No Finding"] = np.where(any_doc, np.nan, 1.0)
    chexpert["Enlarged Cardiomediastinum"] = np.where(documented["Cardiomegaly"] & (rl.random(n) < 0.3), 1.0, np.nan)
    cxr_meta = pd.DataFrame({
        "dicom_id": dicom, "subject_id": subject, "study_id": study_id,
        "PerformedProcedureStepDescription": np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"),
        "ViewPosition": np.where(ap, "AP", "PA"), "Rows": 0, "Columns": 0,
        "StudyDate": np.char.replace(np.datetime_as_string(study_time, unit="D"), "-", "").astype(int),
        "StudyTime": np.array([float(t[11:19].replace(":", "")) for t in np.datetime_as_string(study_time, unit="s")]),
        "ProcedureCodeSequence_CodeMeaning": np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"),
        "ViewCodeSequence_CodeMeaning": np.where(ap, "antero-posterior", "postero-anterior"),
        "PatientOrientationCodeSequence_CodeMeaning": np.where(ap, "Recumbent", "Erect"),
    })
    cxr_split = pd.DataFrame({"dicom_id": dicom, "study_id": study_id, "subject_id": subject,
                              "split": rl.choice(["train", "validate", "test"], size=n, p=[0.98, 0.01, 0.01])})

    truth = pd.DataFrame({"subject_id": subject, "stay_id": stay, "race5": race5, "severity": pop.severity,
                          **{c: pop[c] for c in CONDITIONS},
                          "sao2_true": vs.sao2.to_numpy(), "acuity_unbiased": acuity_unbiased,
                          "admission_need": need, "admitted_unbiased": admitted_unbiased,
                          "cxr_in_stay": has_cxr_stay, "cxr_minutes_after_arrival": np.where(has_cxr_stay, delay_min, np.nan),
                          **{f"finding_{f.lower().replace(' ', '_')}": findings_true[f].to_numpy() for f in findings_true},
                          **{f"cxr_{c}": render[c].to_numpy() for c in render.columns}})
    render.insert(0, "subject_id", subject)
    render.insert(1, "study_id", study_id)
    render.insert(2, "dicom_id", dicom)
    tables = {"ED/edstays.csv": edstays, "ED/triage.csv": triage, "ED/vitalsign.csv": vitalsign,
              "ED/diagnosis.csv": diagnosis, "ED/medrecon.csv": medrecon, "Hosp/patients.csv": patients,
              "Hosp/admissions.csv": adm_rows, "Hosp/diagnoses_icd.csv": diagnoses_icd,
              "CXR-JPG/cxr_meta.csv": cxr_meta, "CXR-JPG/cxr_chexpert.csv": chexpert,
              "CXR-JPG/cxr_split.csv": cxr_split}
    return SyntheticTables(tables, truth, render)


# --------------------------------------------------------------------------------------------- MDS-ED
def _series_stats(values: np.ndarray, hours: np.ndarray) -> dict[str, np.ndarray]:
    """MDS-ED's nine statistics of each row's series (NaN where a row has no value).

    ``values`` and ``hours`` are (n, k) with NaN for absent measurements; ``rate_change`` is
    (last - first) / hours between them, ``coeff`` the coefficient of variation.
    """
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        have = ~np.isnan(values)
        cnt = have.sum(1)
        first_i = np.argmax(have, 1)
        last_i = values.shape[1] - 1 - np.argmax(have[:, ::-1], 1)
        rows = np.arange(len(values))
        first = np.where(cnt > 0, values[rows, first_i], np.nan)
        last = np.where(cnt > 0, values[rows, last_i], np.nan)
        dt = hours[rows, last_i] - hours[rows, first_i]
        mean = np.nanmean(values, 1)
        std = np.where(cnt > 1, np.nanstd(values, 1, ddof=1), np.nan)
        return {"mean": mean, "median": np.nanmedian(values, 1), "min": np.nanmin(values, 1),
                "max": np.nanmax(values, 1), "std": std, "first": first, "last": last,
                "rate_change": np.where(dt > 0, (last - first) / dt, np.nan), "coeff": std / mean}


def _lab_truth(view: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """True lab values implied by a (labs view of the) latent state, in MIMIC's usual units."""
    n = len(view)
    c = view[list(CONDITIONS)].astype(float)
    sev = view["severity"].to_numpy()

    def ln(mu, sd):
        return np.exp(rng.normal(np.log(mu), sd, n))

    return pd.DataFrame({
        "hemoglobin": np.clip(13.2 - 0.5 * sev - 0.8 * c.aki + rng.normal(0, 1.5, n), 5, 19),        # g/dL
        "wbc": ln(7.5, 0.3) * (1 + 0.8 * c.sepsis + 0.5 * c.pneumonia),                           # K/uL
        "platelets": np.clip(240 - 60 * c.sepsis + rng.normal(0, 60, n), 20, 700),                 # K/uL
        "sodium": np.round(139 - 1.5 * c.heart_failure - 1 * c.sepsis + rng.normal(0, 3, n)),       # mEq/L
        "potassium": np.round(4.1 + 0.9 * c.aki + rng.normal(0, 0.4, n), 1),                       # mEq/L
        "creatinine": np.round(ln(0.95, 0.25) * (1 + 1.6 * c.aki + 0.3 * c.sepsis), 2),            # mg/dL
        "bun": np.round(ln(16, 0.3) * (1 + 1.3 * c.aki + 0.3 * c.heart_failure)),                  # mg/dL
        "glucose": np.round(ln(115, 0.25) * (1 + 0.15 * c.sepsis)),                                # mg/dL
        "lactate": np.round(ln(1.3, 0.3) * (1 + 1.5 * c.sepsis + 0.2 * np.clip(sev, 0, None)), 1),  # mmol/L
        "troponin_t": np.round(ln(0.01, 0.6) * (1 + 25 * c.acs + 2 * c.heart_failure), 3),         # ng/mL
        "ntprobnp": np.round(ln(150, 0.8) * (1 + 15 * c.heart_failure)),                           # pg/mL
        "crp": np.round(ln(5, 0.9) * (1 + 12 * c.sepsis + 8 * c.pneumonia), 1),                    # mg/L
    }, index=view.index)


def mds_ed_tables(n: int, seed: int, knobs: BiasKnobs | None = None, informativeness: dict | None = None,
                  race_mix: dict | None = None, fold_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
                  ) -> SyntheticTables:
    """The ``mds_ed.csv`` table of a synthetic MIMIC-IV-Ext-MDS-ED cohort of ``n`` ED stays (one ECG each).

    ``fold_fractions`` (train, validation, test) sets how many stays fall in ``strat_fold`` 0-17, 18 and 19;
    folds are assigned within race (White / non-White / Unknown) x gender strata, so every subgroup is
    represented in each split as planned. The real dataset's folds are 20 equal parts: (0.9, 0.05, 0.05).
    Returns the table, the latent truth and the ECG renderer's parameters (one row per ``general_data``).
    """
    knobs = knobs or BiasKnobs()
    inf = {m: 1.0 for m in MODALITIES["mds_ed"]} | dict(informativeness or {})
    pop = simulate_population(n, seed, race_mix)
    r = streams(seed, ("ids", "times", "triage", "series", "outcome", "access", "ecg", "body"))
    race5 = pop["race5"].to_numpy()
    views = {m: modality_view(pop, m, inf[m], seed) for m in MODALITIES["mds_ed"]}
    subject = _unique_ids(r["ids"], n, 10_000_000, 20_000_000)
    stay = _unique_ids(r["ids"], n, 30_000_000, 40_000_000)
    study = _unique_ids(r["ids"], n, 40_000_000, 50_000_000)
    intime, los_h, outtime = _ed_timeline(r["times"], n, min_hours=1.6)
    ra = r["access"]
    access = knobs.effect("unequal_access", race5)
    # the ECG is usually taken early; a late ECG (after the 90-minute window) is unavailable at prediction time
    late = ra.random(n) < np.clip(0.10 + access, 0, 0.95)
    ecg_min = np.where(late, ra.uniform(95, 240, n), np.clip(ra.gamma(2.0, 14, n), 3, 88))
    ecg_time = intime + _minutes(ecg_min)

    df = {"general_study_id": study, "general_subject_id": subject, "general_ecg_time": _fmt_time(ecg_time),
          "general_ed_stay_id": stay}  # columns, made a DataFrame once complete
    # --- outcomes (deterioration has need; ICU transfer is a decision, subject to label bias)
    ro = r["outcome"]
    lg = _need_logit(pop)
    sev = pop.severity.to_numpy()
    c = pop[list(CONDITIONS)].astype(float)
    icu_need = lg - 2.0 + 0.6 * c.sepsis.to_numpy()
    u = ro.random(n)
    icu = u < 1 / (1 + np.exp(-(icu_need - knobs.effect("label_bias", race5))))
    icu_unbiased = u < 1 / (1 + np.exp(-icu_need))
    admitted = (ro.random(n) < 1 / (1 + np.exp(-(lg - knobs.effect("label_bias", race5))))) | icu
    hadm = np.where(admitted, _unique_ids(r["ids"], n, 20_000_000, 30_000_000), -1)
    df["general_ed_hadm_id"] = pd.array(np.where(admitted, hadm, 0), dtype="Int64")
    df["general_ed_hadm_id"][~admitted] = pd.NA
    df["general_race"] = pop.race_raw.to_numpy()
    df["general_intime"] = _fmt_time(intime)
    df["general_outtime"] = _fmt_time(outtime)
    strata = np.array([race_binary_of(x) for x in pop.race_raw]) + "|" + pop.gender.to_numpy()
    bucket = stratified_assign(strata, fold_fractions, seed)
    fold = np.where(bucket == 0, ro.integers(0, 18, n), np.where(bucket == 1, 18, 19))
    df["general_strat_fold"] = fold
    df["general_ecg_no_within_stay"] = 0
    df["general_data"] = np.arange(n)
    df["demographics_age"] = pop.age.to_numpy().astype(int)
    df["demographics_gender"] = (pop.gender.to_numpy() == "M").astype(int)
    for g in RACE5:
        df[f"demographics_ethnicity_{RACE5_COLUMNS[g]}"] = (race5 == g).astype(int)
    rb = r["body"]
    male = pop.gender.to_numpy() == "M"
    height = np.round(np.where(male, 176, 163) + rb.normal(0, 7, n), 1)
    bmi = np.clip(rb.normal(28, 6, n) + 1.5 * c.hypertension.to_numpy(), 15, 60)
    weight = np.round(bmi * (height / 100) ** 2, 1)
    known = rb.random(n) > 0.35
    df["biometrics_bmi"] = np.where(known, np.round(bmi, 1), np.nan)
    df["biometrics_weight"] = np.where(known | (rb.random(n) < 0.3), weight, np.nan)
    df["biometrics_height"] = np.where(known, height, np.nan)

    # --- vital signs in the first 90 minutes: 1-6 measurements each
    vs = vital_signs(views["vitals"], seed + 1)
    rs = r["series"]
    k = 6
    hours = np.sort(rs.uniform(0, 1.5, (n, k)), 1)
    count = rs.integers(1, k + 1, n)
    present = np.arange(k)[None, :] < count[:, None]
    drift = rs.normal(0, 1, (n, k)).cumsum(1) * 0.3
    truth_vs = {"temperature": _f_from_c(vs.temp_c.to_numpy())[:, None] + 0.2 * drift,
                "heartrate": vs.heart_rate.to_numpy()[:, None] + 3 * drift,
                "resprate": vs.resp_rate.to_numpy()[:, None] + drift,
                "o2sat": None,
                "sbp": vs.sbp.to_numpy()[:, None] + 4 * drift, "dbp": vs.dbp.to_numpy()[:, None] + 2 * drift}
    noise_sd = {"temperature": 0.3, "heartrate": 3, "resprate": 1, "sbp": 4, "dbp": 3}
    sao2 = vs.sao2.to_numpy()[:, None] + 0.4 * drift
    for v in VITALS:
        if v == "o2sat":
            vals = _spo2(sao2, race5[:, None], knobs, rs.normal(0, 0.8, (n, k)))
        else:
            vals = np.round(truth_vs[v] + rs.normal(0, noise_sd[v], (n, k)), 1)
        vals = np.where(present, vals, np.nan)
        for stat, arr in _series_stats(vals, hours).items():
            df[f"vitals_{v}_{stat}"] = np.round(arr, 4)
    acuity, acuity_unbiased = _acuity(views["arrival"], knobs, r["triage"])
    df["vitals_acuity"] = acuity

    # --- labs in the first 90 minutes (missing for some stays: MNAR access gap)
    labs_missing = ra.random(n) < np.clip(0.15 + 0.1 * (sev < -0.5) + access, 0, 0.95)
    lt = _lab_truth(views["labs"], rs)
    lab_count = np.where(labs_missing, 0, rs.integers(1, 3, n))
    lab_hours = np.sort(rs.uniform(0.2, 1.5, (n, 2)), 1)
    for lab in LABS:
        base = lt[lab].to_numpy()[:, None]
        vals = base * (1 + rs.normal(0, 0.04, (n, 2)))
        vals = np.where(np.arange(2)[None, :] < lab_count[:, None], vals, np.nan)
        for stat, arr in _series_stats(vals, lab_hours).items():
            df[f"labvalues_{lab}_{stat}"] = np.round(arr, 4)

    # --- targets: discharge diagnoses (ICD-10 families) and deterioration
    for code, cond in DIAGNOSES.items():
        df[f"diagnoses_{code}"] = ((pop[cond].to_numpy() == 1) & (ro.random(n) < 0.9)).astype(int)
    risk = lg + 0.3 * (pop.age.to_numpy() - 55) / 10

    def ev(offset, noise=0.0):
        return (ro.random(n) < 1 / (1 + np.exp(-(risk + offset + ro.normal(0, noise + 1e-9, n))))).astype(int)

    det = {
        "severe_hypoxemia": (sao2[:, 0] < 88) & (ro.random(n) < 0.7) | (ev(-4.5) == 1),
        "ecmo": ev(-8.5), "vasopressors": ((c.sepsis.to_numpy() == 1) & (ev(-1.0) == 1)) | (ev(-5.5) == 1),
        "inotropes": ((c.heart_failure.to_numpy() == 1) & (ev(-2.5) == 1)) | (ev(-7.0) == 1),
        "mechanical_ventilation": ev(-4.0), "cardiac_arrest": ev(-6.5),
        "icu_24h": icu, "icu_stay": icu | (ev(-4.5) == 1),
    }
    mort = ro.random(n)
    p_die = 1 / (1 + np.exp(-(risk - 4.2 + 0.8 * np.clip(sev, 0, None))))
    for h, scale in (("1d", 0.08), ("7d", 0.35), ("28d", 0.7), ("90d", 1.0), ("180d", 1.25), ("365d", 1.5)):
        det[f"mortality_{h}"] = mort < p_die * scale
    det["any_deterioration"] = np.column_stack([np.asarray(v, bool) for k_, v in det.items()
                                                if not k_.startswith("mortality") or k_ == "mortality_28d"]).any(1)
    for name in DETERIORATION:
        vals = np.asarray(det[name]).astype(int)
        df[f"deterioration_{name}"] = vals
    df = pd.DataFrame(df)
    # undefined labels (-999): lost to follow-up for long horizons; procedure data not captured
    for name, rate in (("mortality_180d", 0.03), ("mortality_365d", 0.06), ("ecmo", 0.01)):
        df.loc[ro.random(n) < rate, f"deterioration_{name}"] = -999
    df.loc[df["deterioration_mortality_180d"] == -999, "deterioration_mortality_365d"] = -999

    # --- ECG renderer inputs (ecg view)
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
    truth = pd.DataFrame({"general_subject_id": subject, "general_ed_stay_id": stay, "race5": race5,
                          "severity": sev, **{cn: pop[cn] for cn in CONDITIONS},
                          "sao2_true": vs.sao2.to_numpy(), "acuity_unbiased": acuity_unbiased,
                          "icu_24h_unbiased": icu_unbiased, "ecg_late": late, "labs_missing": labs_missing,
                          "ecg_bbb": bbb, "ecg_hyperkalaemia": hyperk,
                          **{f"ecg_{k_}": render[k_].to_numpy() for k_ in render.columns}})
    return SyntheticTables({"mds_ed.csv": df}, truth, render)


# ---------------------------------------------------------------------------------------------- writing
def _csv_lines(df: pd.DataFrame) -> tuple[str, list[str]]:
    text = df.to_csv(index=False, lineterminator="\n")
    header, _, rest = text.partition("\n")
    return header, rest.split("\n")[:-1]


def _write_per_patient(root: Path, rel: str, df: pd.DataFrame, subjects: np.ndarray) -> None:
    """Write one CSV per patient folder (``patient_{subject_id}/{rel}``), header-only where it has no rows."""
    header, lines = _csv_lines(df)
    keys = df["subject_id"].to_numpy()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.searchsorted(sorted_keys, subjects, side="left")
    ends = np.searchsorted(sorted_keys, subjects, side="right")
    for s, a, b in zip(subjects, starts, ends):
        body = "".join(lines[i] + "\n" for i in order[a:b])
        (root / f"patient_{s}" / rel).write_text(header + "\n" + body)


def _write_extras(folder: Path, truth: pd.DataFrame, meta: dict | None) -> None:
    """The two files a synthetic root has beyond the real layout: latent truth and generator parameters."""
    truth.to_parquet(folder / "synthetic_truth.parquet")
    (folder / "synthetic_params.json").write_text(json.dumps(meta or {}, indent=2, sort_keys=True))


def write_mimic_eye(st: SyntheticTables, root: Path, seed: int, image_size: int = 256, progress: bool = True,
                    meta: dict | None = None) -> Path:
    """Render the chest X-rays and write a synthetic MIMIC-Eye cohort in its real layout under ``root``.

    Layout: ``patient_{subject_id}/{ED,Hosp,CXR-JPG}/...csv`` and ``CXR-JPG/s{study_id}/{dicom_id}.jpg``.
    Written to a temporary folder and renamed, so a failed run leaves no half-written cohort.
    """
    from PIL import Image

    from .cxr import render_cxr

    root = Path(root)
    with atomic_dir(root) as tmp:
        subjects = st.tables["ED/edstays.csv"]["subject_id"].to_numpy()
        for s in subjects:
            for d in ("ED", "Hosp", "CXR-JPG", "REFLACX", "EyeGaze"):
                (tmp / f"patient_{s}" / d).mkdir(parents=True)
        rd = st.render
        findings = {k: rd[k].to_numpy() for k in ("ctr", "consolidation", "consolidation_side",
                                                   "consolidation_zone", "edema", "effusion_left", "effusion_right")}
        rng = streams(seed, ("cxr-render",))["cxr-render"]
        images, acq = render_cxr(findings, rd["ap"].to_numpy(), rng, size=image_size, progress=progress)
        meta_df = st.tables["CXR-JPG/cxr_meta.csv"].copy()
        meta_df["Rows"] = image_size
        meta_df["Columns"] = image_size
        st.tables["CXR-JPG/cxr_meta.csv"] = meta_df
        it = zip(rd["subject_id"], rd["study_id"], rd["dicom_id"], images)
        for s, study, dicom, img in tqdm(it, total=len(rd), desc="mimic_eye: writing JPGs", disable=not progress,
                                         leave=False):
            d = tmp / f"patient_{s}" / "CXR-JPG" / f"s{study}"
            d.mkdir()
            Image.fromarray(img).save(d / f"{dicom}.jpg", quality=92)
        for rel, df in tqdm(st.tables.items(), desc="mimic_eye: writing CSVs", disable=not progress, leave=False):
            _write_per_patient(tmp, rel, df, subjects)
        truth = st.truth.copy()
        for k, v in acq.items():
            truth[f"cxr_acq_{k}"] = v
        _write_extras(tmp, truth, meta)
    return root


def write_mds_ed(st: SyntheticTables, root: Path, seed: int, progress: bool = True, meta: dict | None = None) -> Path:
    """Simulate the ECGs and write a synthetic MDS-ED cohort in its real layout under ``root``.

    Layout: ``mds_ed.csv``; ``memmap.npy`` (raw float32, all records stacked as (time, 12 leads) rows) and
    ``memmap_meta.npz`` with keys ``start, length, shape, file_idx, dtype, filenames``; record ``i`` is rows
    ``start[i] : start[i] + length[i]`` and ``general_data`` holds ``i``.
    """
    from .ecg import simulate_ecg

    root = Path(root)
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
            out[a * length:b * length] = sig.reshape(-1, 12)
            truth_parts.append(pd.DataFrame({k: v for k, v in tr.items() if np.ndim(v) == 1}))
        out.flush()
        del out
        np.savez(tmp / "memmap_meta.npz", start=np.arange(n, dtype=np.int64) * length,
                 length=np.full(n, length, dtype=np.int64), shape=np.array([[n * length, 12]], dtype=np.int64),
                 file_idx=np.zeros(n, dtype=np.int64), dtype=np.array("float32"),
                 filenames=np.array(["memmap.npy"]))
        df.to_csv(tmp / "mds_ed.csv", index=False)
        truth = pd.concat([st.truth.reset_index(drop=True), pd.concat(truth_parts, ignore_index=True)
                           .add_prefix("ecg_sim_")], axis=1)
        _write_extras(tmp, truth, meta)
    return root


DEFAULT_GENERATOR = {"n": 4000, "seed": 0, "bias_knobs": {}, "informativeness": {}, "race_mix": None,
                     "fold_fractions": [0.7, 0.1, 0.2], "image_size": 256}


def generator_params(cohort: str, params: dict | None = None) -> dict:
    """The full generator parameters of ``cohort``: :data:`DEFAULT_GENERATOR` updated with ``params``."""
    if cohort not in COHORTS:
        raise ValueError(f"cohort: expected one of {COHORTS}, got {cohort!r}")
    p = dict(DEFAULT_GENERATOR) | dict(params or {})
    unknown = set(p) - set(DEFAULT_GENERATOR)
    if unknown:
        raise ValueError(f"synthetic generator parameters: unknown name(s) {sorted(unknown)}; "
                         f"expected {sorted(DEFAULT_GENERATOR)}")
    p["bias_knobs"] = BiasKnobs.from_dict(p["bias_knobs"]).as_dict()
    p["fold_fractions"] = [float(x) for x in p["fold_fractions"]]
    if cohort == "mimic_eye":
        p.pop("fold_fractions")  # MIMIC-Eye has no folds on disk: the loader splits it
    else:
        p.pop("image_size")
    return {"cohort": cohort, **p}


def synthetic_root(cohort: str, params: dict | None = None, data_dir: Path | str = "data/synthetic") -> Path:
    """Where the synthetic cohort with these parameters lives: ``{data_dir}/{cohort}-n{n}-s{seed}-{key}``,
    ``key`` hashing the parameters and the generator's source code (with :mod:`mmlib.schema`)."""
    p = generator_params(cohort, params)
    h = hashlib.sha256(json.dumps(p, sort_keys=True).encode())
    here = Path(__file__).parent
    # the generator's code, and the layouts' names it writes (mmlib/schema.py), are part of the key
    for f in ("latent.py", "races.py", "splits.py", "synth.py", "cxr.py", "ecg.py", "../schema.py"):
        h.update((here / f).read_bytes())
    key = h.hexdigest()[:10]
    return Path(data_dir) / f"{cohort}-n{p['n']}-s{p['seed']}-{key}"


def generate(cohort: str, params: dict | None = None, data_dir: Path | str = "data/synthetic",
             progress: bool = True, force: bool = False) -> tuple[Path, bool]:
    """Generate the synthetic ``cohort`` with ``params`` unless it already exists; return (root, reused).

    The folder name carries a hash of the parameters, so different knobs never overwrite each other.
    """
    p = generator_params(cohort, params)
    root = synthetic_root(cohort, params, data_dir)
    if root.exists() and (root / "synthetic_params.json").exists() and not force:
        return root, True
    t0 = time.perf_counter()
    knobs = BiasKnobs.from_dict(p["bias_knobs"])
    if cohort == "mimic_eye":
        st = mimic_eye_tables(p["n"], p["seed"], knobs, p["informativeness"], p["race_mix"])
        write_mimic_eye(st, root, p["seed"], p["image_size"], progress, meta=p)
    else:
        st = mds_ed_tables(p["n"], p["seed"], knobs, p["informativeness"], p["race_mix"], tuple(p["fold_fractions"]))
        write_mds_ed(st, root, p["seed"], progress, meta=p)
    if progress:
        print(f"generated synthetic {cohort} ({p['n']} stays) in {time.perf_counter() - t0:.1f} s -> {root}")
    return root, False


def from_chapter_params(cohort: str, params: dict) -> dict:
    """Generator parameters of ``cohort`` from chapter 01's parameters (``n_patients``, ``seed``,
    ``bias_knobs``, ``informativeness``, ``image_size``, ``split_fractions``), so the pipeline and the
    chapter agree on which synthetic folder a profile means."""
    p = {"n": int(params.get("n_patients", DEFAULT_GENERATOR["n"])), "seed": int(params.get("seed", 0)),
         "bias_knobs": dict(params.get("bias_knobs") or {}),
         "informativeness": dict(params.get("informativeness") or {})}
    if cohort == "mimic_eye":
        p["image_size"] = int(params.get("image_size", DEFAULT_GENERATOR["image_size"]))
    else:
        p["fold_fractions"] = list(params.get("split_fractions", DEFAULT_GENERATOR["fold_fractions"]))
    return p
