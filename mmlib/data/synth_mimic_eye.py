"""The synthetic MIMIC-Eye twin: the simulator's tables (:func:`mimic_eye_tables`), the release built around
them (:func:`release_tables`) and its files (:func:`write_mimic_eye`).

Used by :func:`mmlib.data.synth.generate`. The files are what MIMIC-Eye 1.0.0's own importer writes (GitHub
ChihchengHsieh/MIMIC-Eye, ``utils/importer.py`` and the patient-level notebooks; ``../shared/LAYOUTS.md``):
``tests/test_mimic_eye.py`` checks them byte for byte against the importer's conventions, and running the
importer itself on the twin's source tables gives the same bytes.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..artifacts import atomic_dir
from ..schema import (CHEXPERT, CXR_META_COLUMNS, CXR_META_EXTRA_COLUMNS, MIMIC_EYE_PATIENT_DIR,
                      MIMIC_EYE_SPREADSHEETS, MODALITIES)

from .latent import CONDITIONS, BiasKnobs, modality_view, simulate_population, streams, vital_signs
from .synth_base import (SyntheticTables, triage_acuity, ed_timeline, f_from_c, as_timedelta, need_logit, pulse_oximeter,
                         unique_ids, write_extras)

#: ICD-10 / ICD-9 codes (MIMIC stores them without the dot) of the conditions seen in earlier admissions.
HISTORY_CODES = {"heart_failure": ("I509", "4280"), "copd": ("J449", "496"), "hypertension": ("I10", "4019"),
                 "af": ("I4891", "42731"), "aki": ("N179", "5849"), "pneumonia": ("J189", "486"),
                 "acs": ("I214", "41071"), "sepsis": ("A419", "0389")}
BACKGROUND_CODES = (("E119", "25000"), ("E785", "2724"), ("K219", "53081"), ("F329", "311"), ("M545", "7242"),
                    ("Z87891", "V1582"), ("N390", "5990"), ("G4733", "32723"), ("E039", "2449"), ("F419", "30000"))


def fmt_time(t: np.ndarray) -> np.ndarray:
    """datetime64 -> MIMIC-IV's 'YYYY-MM-DD HH:MM:00' strings (whole minutes, :data:`MIMIC_TIME_FORMAT`)."""
    return np.char.replace(np.datetime_as_string(t.astype("datetime64[m]"), unit="m"), "T", " ") + ":00"


def mimic_eye_tables(n: int, seed: int, knobs: BiasKnobs | None = None, informativeness: dict | None = None,
                     race_mix: dict | None = None) -> SyntheticTables:
    """The simulator's tables of a synthetic MIMIC-Eye cohort of ``n`` patients: one index ED stay and one
    eye-tracked frontal chest X-ray each, rows aligned with the latent truth (the bias-knob tests read these).

    Returns MIMIC-IV-ED ``edstays``, ``triage``, ``vitalsign``, ``diagnosis``, ``medrecon``; MIMIC-IV hosp
    ``patients``, ``admissions`` (earlier admissions plus the index one), ``diagnoses_icd``; MIMIC-CXR-JPG
    ``cxr_meta``, ``cxr_chexpert``, ``cxr_split``; the latent truth per stay; and the CXR findings to draw.
    Times are MIMIC's whole minutes; StudyTime is HHMMSS.fff. :func:`release_tables` adds what the release
    has around them (other ED visits, patients without ED rows, laterals, other studies, the importer's columns).
    """
    knobs = knobs or BiasKnobs()
    inf = {m: 1.0 for m in MODALITIES["mimic_eye"]} | dict(informativeness or {})
    pop = simulate_population(n, seed, race_mix)
    r = streams(seed, ("ids", "times", "triage", "series", "dispo", "history", "cxr", "labels", "access"))
    race5 = pop["race5"].to_numpy()
    views = {m: modality_view(pop, m, inf[m], seed) for m in MODALITIES["mimic_eye"]}
    subject = unique_ids(r["ids"], n, 10_000_000, 20_000_000)
    stay = unique_ids(r["ids"], n, 30_000_000, 40_000_000)
    hadm_pool = unique_ids(r["ids"], 6 * n, 20_000_000, 30_000_000)
    intime, los_h, outtime = ed_timeline(r["times"], n, min_hours=1.0)

    # --- arrival / triage (recorded at arrival)
    va = views["arrival"]
    arr_vs = vital_signs(va, seed)
    acuity, acuity_unbiased = triage_acuity(va, knobs, r["triage"])
    vv = views["vitals"]
    vs = vital_signs(vv, seed + 1)
    rtr = r["triage"]
    triage = pd.DataFrame({
        "subject_id": subject, "stay_id": stay,
        "temperature": np.round(f_from_c(vs.temp_c + rtr.normal(0, 0.2, n)), 1),
        "heartrate": np.round(vs.heart_rate + rtr.normal(0, 3, n)),
        "resprate": np.round(vs.resp_rate + rtr.normal(0, 1, n)),
        "o2sat": pulse_oximeter(vs.sao2.to_numpy(), race5, knobs, rtr.normal(0, 0.8, n)),
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
        "subject_id": subject[i], "stay_id": stay[i], "charttime": fmt_time(intime[i] + as_timedelta(gaps[i, j])),
        "temperature": np.round(f_from_c(vs.temp_c.to_numpy()[i] + 0.1 * drift[i, j] + rs.normal(0, 0.2, i.size)), 1),
        "heartrate": np.round(vs.heart_rate.to_numpy()[i] + 3 * drift[i, j] + rs.normal(0, 3, i.size)),
        "resprate": np.round(vs.resp_rate.to_numpy()[i] + drift[i, j] + rs.normal(0, 1, i.size)),
        "o2sat": pulse_oximeter(sao2_series, race5[i], knobs, rs.normal(0, 0.8, i.size)),
        "sbp": np.round(vs.sbp.to_numpy()[i] + 4 * drift[i, j] + rs.normal(0, 4, i.size)),
        "dbp": np.round(vs.dbp.to_numpy()[i] + 2 * drift[i, j] + rs.normal(0, 3, i.size)),
        "rhythm": rhythm, "pain": np.clip(arr_vs.pain.to_numpy()[i] - j, 0, 10).astype(int).astype(str),
    })

    # --- outcome: admission (need, then the recorded decision with label bias)
    rd = r["dispo"]
    need_lo = need_logit(pop)  # the need for admission in log-odds (the truth table records it)
    need = 1 / (1 + np.exp(-need_lo))
    recorded_p = 1 / (1 + np.exp(-(need_lo - knobs.effect("label_bias", race5))))
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
        "stay_id": stay, "intime": fmt_time(intime), "outtime": fmt_time(outtime),
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
    # the number of earlier admissions grows with the chronic burden the codes view carries
    n_prior = rh.poisson(np.exp(np.log(0.8) + 0.4 * chronic + 0.1 * (vc.age - 55) / 10 + 0.6 * vc.severity))
    n_prior = np.minimum(n_prior, 5)
    pi = np.repeat(np.arange(n), n_prior)
    prior_days = rh.uniform(20, 2500, pi.size)
    prior_adm = intime[pi] - as_timedelta(prior_days * 24 * 60)
    prior_dis = prior_adm + as_timedelta(rh.uniform(1, 12, pi.size) * 24 * 60)
    prior_hadm = hadm_pool[n:n + pi.size]
    adm_rows = pd.DataFrame({
        "subject_id": np.concatenate([subject[pi], subject[admitted]]),
        "hadm_id": np.concatenate([prior_hadm, hadm_index[admitted]]),
        "admittime": np.concatenate([fmt_time(prior_adm), fmt_time(outtime[admitted])]),
        "dischtime": np.concatenate([fmt_time(prior_dis),
                                     fmt_time(outtime[admitted] + as_timedelta(rh.uniform(1, 9, n)[admitted] * 1440))]),
        "deathtime": None,
        "admission_type": np.concatenate([rh.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"], pi.size),
                                          np.full(admitted.sum(), "EW EMER.")]),
        "admission_location": np.concatenate([np.full(pi.size, "EMERGENCY ROOM"), np.full(admitted.sum(), "EMERGENCY ROOM")]),
        "discharge_location": np.concatenate([np.full(pi.size, "HOME"), np.full(admitted.sum(), "HOME")]),
        "insurance": np.concatenate([np.full(pi.size, "Other"), np.full(admitted.sum(), "Other")]),
        "language": "ENGLISH", "marital_status": None,
        "race": np.concatenate([pop.race_raw.to_numpy()[pi], pop.race_raw.to_numpy()[admitted]]),
        "edregtime": np.concatenate([np.full(pi.size, None), fmt_time(intime[admitted])]),
        "edouttime": np.concatenate([np.full(pi.size, None), fmt_time(outtime[admitted])]),
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
    medrecon = pd.DataFrame({"subject_id": subject[pi], "stay_id": stay[pi], "charttime": fmt_time(intime[pi]),
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
        # pulmonary oedema of heart failure, and (without it) the lungs' own severity as interstitial oedema
        "edema": np.where(hf == 1, np.clip(0.35 + 0.35 * severity_c + rc.normal(0, 0.2, n), 0, 1),
                          np.clip(0.3 * (severity_c - 0.7) + rc.normal(0, 0.05, n), 0, 1)),
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
    study_time = np.where(has_cxr_stay, intime + as_timedelta(delay_min),
                          intime - as_timedelta(ra.uniform(30, 900, n) * 1440))  # otherwise an old film, another day
    study_time = study_time.astype("datetime64[s]")
    sec_of_day = (study_time - study_time.astype("datetime64[D]")).astype(np.int64)
    study_id = unique_ids(r["ids"], n, 50_000_000, 60_000_000)
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
        # HHMMSS.fff as a float, as in MIMIC-CXR (so 09:27:17.109 is 92717.109: the leading zero is gone)
        "StudyTime": np.round(sec_of_day // 3600 * 10000 + sec_of_day % 3600 // 60 * 100 + sec_of_day % 60
                              + streams(seed, ("cxr-ms",))["cxr-ms"].integers(0, 1000, n) / 1000, 3),
        "ProcedureCodeSequence_CodeMeaning": np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"),
        "ViewCodeSequence_CodeMeaning": np.where(ap, "antero-posterior", "postero-anterior"),
        "PatientOrientationCodeSequence_CodeMeaning": np.where(ap, "Recumbent", "Erect"),
    })
    cxr_split = pd.DataFrame({"dicom_id": dicom, "study_id": study_id, "subject_id": subject,
                              "split": rl.choice(["train", "validate", "test"], size=n, p=[0.98, 0.01, 0.01])})

    truth = pd.DataFrame({"subject_id": subject, "stay_id": stay, "race5": race5, "severity": pop.severity,
                          **{c: pop[c] for c in CONDITIONS},
                          "sao2_true": vs.sao2.to_numpy(), "acuity_unbiased": acuity_unbiased,
                          "admission_need": need_lo, "admitted_unbiased": admitted_unbiased,  # need in log-odds
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


#: Chief complaints and dispositions of the patient's other ED visits (not the index stay).
_OTHER_COMPLAINTS = ("Abd pain", "Fall", "Dyspnea", "Chest pain", "Headache", "Back pain", "Fever", "Dizziness")
_OTHER_DISPOSITIONS = (("HOME", 0.86), ("LEFT WITHOUT BEING SEEN", 0.05), ("ELOPED", 0.03),
                       ("LEFT AGAINST MEDICAL ADVICE", 0.03), ("TRANSFER", 0.03))


def _importer_stay_id(meta: pd.DataFrame, edstays: pd.DataFrame) -> pd.Series:
    """``stay_id`` as MIMIC-Eye's importer links it (notebook (1), "Identify stay_id for CXR-images"):
    ``float(str(StudyDate) + str(StudyTime))`` strictly between the digit strings of ``intime`` and
    ``outtime`` of exactly one ED stay of the patient; blank otherwise. ``str(StudyTime)`` drops the
    leading zero of a time before 10:00, so such studies never match (as in the release)."""
    study = (meta["StudyDate"].astype(str) + meta["StudyTime"].astype(float).astype(str)).astype(float)
    digits = lambda c: edstays[c].str.replace(r"[-: /]", "", regex=True).astype(float)  # noqa: E731
    ed = pd.DataFrame({"subject_id": edstays["subject_id"].to_numpy(), "stay_id": edstays["stay_id"].to_numpy(),
                       "lo": digits("intime").to_numpy(), "hi": digits("outtime").to_numpy()})
    m = pd.DataFrame({"row": np.arange(len(meta)), "subject_id": meta["subject_id"].to_numpy(),
                      "t": study.to_numpy()}).merge(ed, on="subject_id")
    m = m[(m["lo"] < m["t"]) & (m["t"] < m["hi"])]
    one = m.groupby("row")["stay_id"].agg(["size", "first"])
    one = one.loc[one["size"] == 1, "first"]
    return pd.Series(one.reindex(np.arange(len(meta))).to_numpy(dtype=float), index=meta.index, name="stay_id")


def release_tables(st: SyntheticTables, seed: int, image_size: int = 256) -> dict:
    """The tables of the synthetic MIMIC-Eye release as its importer writes them, from the simulator's tables.

    The simulator (:func:`mimic_eye_tables`) draws one index ED stay and one eye-tracked frontal chest X-ray per
    patient. The release around it, as MIMIC-Eye 1.0.0 has it (``../shared/LAYOUTS.md`` and the importer's code):

    - other ED visits of the patient in ``edstays`` / ``triage`` (0-4, Poisson mean 0.5; before the index stay
      only where the index X-ray was taken during it, so "the stay of the first frontal X-ray taken during an
      ED stay, else the first stay" recovers the simulator's index stay);
    - later hospital admissions (after the index stay, so never a feature) for 78 % of the patients without any,
      so that about 9 % lack ``Hosp/admissions.csv`` as in the release;
    - patients without any MIMIC-IV-ED row (no ``ED/`` folder: about 0.4 %, at least one from 20 patients on) and
      index stays without a ``vitalsign`` row (4 %); the truth keeps them (keyed by the stay the files lack);
    - a second eye-tracked frontal study for 8 % of the patients whose index X-ray is in the stay (later, same
      findings), a lateral image beside every PA image, and 0-3 further MIMIC-CXR studies per patient that are
      not in MIMIC-Eye (rows in ``cxr_chexpert`` / ``cxr_split`` only, as the importer copies all of those);
    - ``cxr_meta`` = the eye-tracked rows of the patients' MIMIC-CXR metadata plus ``in_eye_gaze``,
      ``in_reflacx``, ``StudyDateTime`` and the importer's ``stay_id`` (:func:`_importer_stay_id`);
    - race as MIMIC-IV-ED writes it: some coarse ``HISPANIC/LATINO``, about 1 % empty;
    - whole tables with the source's row numbers as index (the leading unnamed column); ``patients`` and
      ``triage`` also hold people outside MIMIC-Eye, as the full MIMIC-IV tables do.

    Returns ``{"tables": {rel: DataFrame}, "spreadsheets": {rel: DataFrame}, "images": DataFrame, "metadata":
    DataFrame}``: the per-patient tables (keyed by their path in a patient folder), the whole tables under
    ``spreadsheets/``, one row per JPG to render (``subject_id, study_id, dicom_id, view, source`` = row of
    ``st.render`` it copies) and the patients' MIMIC-CXR metadata (every image, for re-running the importer).
    """
    r = streams(seed, ("release-stays", "release-cxr", "release-race", "release-outside"))
    t = st.tables
    ed = t["ED/edstays.csv"].copy()
    tri = t["ED/triage.csv"].copy()
    n = len(ed)
    subject = ed["subject_id"].to_numpy()
    intime = pd.to_datetime(ed["intime"]).to_numpy()
    outtime = pd.to_datetime(ed["outtime"]).to_numpy()
    meta0 = t["CXR-JPG/cxr_meta.csv"]
    secs = np.floor(meta0["StudyTime"].to_numpy()).astype(np.int64)
    cxr_time = (pd.to_datetime(meta0["StudyDate"].astype(str), format="%Y%m%d").to_numpy()
                + (secs // 10000 * 3600 + secs // 100 % 100 * 60 + secs % 100).astype("timedelta64[s]"))
    in_stay = (cxr_time >= intime) & (cxr_time <= outtime)

    # --- race as MIMIC-IV-ED writes it (coarse Hispanic values, some empty)
    rr = r["release-race"]
    race = ed["race"].astype(object).to_numpy()
    coarse = np.char.startswith(race.astype(str), "HISPANIC/LATINO - ") & (rr.random(n) < 0.3)
    race = np.where(coarse, "HISPANIC/LATINO", race)
    race = np.where(rr.random(n) < 0.01, None, race)
    ed["race"] = race

    # --- other ED visits of the patient
    rs = r["release-stays"]
    k = np.minimum(rs.poisson(0.5, n), 4)
    before = in_stay & (rs.random(n) < 0.5)
    oi = np.repeat(np.arange(n), k)
    step = np.concatenate([rs.uniform(20, 400, c).cumsum() for c in k]) if oi.size else np.zeros(0)
    start = np.where(before[oi], intime[oi] - as_timedelta(step * 1440 + rs.uniform(2, 12, oi.size) * 60),
                     outtime[oi] + as_timedelta(step * 1440))
    start = start.astype("datetime64[m]").astype("datetime64[s]")
    o_out = start + as_timedelta(rs.uniform(2, 12, oi.size) * 60)
    pool = unique_ids(rs, 3 * oi.size + 3 * n, 30_000_000, 40_000_000)
    o_stay = rs.permutation(np.setdiff1d(pool, ed["stay_id"].to_numpy()))[:oi.size]
    names, probs = zip(*_OTHER_DISPOSITIONS)
    probs = np.asarray(probs) / np.sum(probs)
    other = pd.DataFrame({"subject_id": subject[oi], "hadm_id": pd.array([pd.NA] * oi.size, dtype="Int64"),
                          "stay_id": o_stay, "intime": fmt_time(start), "outtime": fmt_time(o_out),
                          "gender": ed["gender"].to_numpy()[oi], "race": race[oi],
                          "arrival_transport": rs.choice(["WALK IN", "AMBULANCE", "UNKNOWN"], oi.size, p=[0.7, 0.25, 0.05]),
                          "disposition": rs.choice(names, oi.size, p=probs)})
    o_tri = pd.DataFrame({"subject_id": subject[oi], "stay_id": o_stay,
                          "temperature": np.round(rs.normal(98.2, 0.6, oi.size), 1),
                          "heartrate": np.round(rs.normal(82, 12, oi.size)), "resprate": np.round(rs.normal(17, 2, oi.size)),
                          "o2sat": np.clip(np.round(rs.normal(98, 1.5, oi.size)), 85, 100),
                          "sbp": np.round(rs.normal(132, 18, oi.size)), "dbp": np.round(rs.normal(78, 11, oi.size)),
                          "pain": rs.integers(0, 11, oi.size).astype(str), "acuity": rs.choice([2.0, 3.0, 4.0], oi.size),
                          "chiefcomplaint": rs.choice(_OTHER_COMPLAINTS, oi.size)})
    ed_all = pd.concat([ed, other], ignore_index=True)
    tri_all = pd.concat([tri, o_tri], ignore_index=True)

    # --- patients without MIMIC-IV-ED rows, index stays without vital signs
    n_no_ed = max(int(n >= 20), int(rs.binomial(n, 0.004)))
    no_ed = np.isin(subject, rs.choice(subject, n_no_ed, replace=False))
    no_vs = rs.random(n) < 0.04
    keep_ed = lambda df: df[~df["subject_id"].isin(subject[no_ed])]  # noqa: E731
    ed_all, tri_all = keep_ed(ed_all), keep_ed(tri_all)
    vs = keep_ed(t["ED/vitalsign.csv"])
    vs = vs[~vs["stay_id"].isin(ed["stay_id"].to_numpy()[no_vs])]

    # --- chest X-rays: extra eye-tracked studies, laterals, studies outside MIMIC-Eye
    rc = r["release-cxr"]
    ex = np.flatnonzero(in_stay & (rc.random(n) < 0.08))
    ex_time = (cxr_time[ex] + as_timedelta(rc.uniform(30, 1500, ex.size) * 1440)).astype("datetime64[s]")
    n_out = rc.integers(0, 4, n)
    xi = np.repeat(np.arange(n), n_out)
    x_time = (cxr_time[xi] + as_timedelta(rc.uniform(-2000, 2000, xi.size) * 1440)).astype("datetime64[s]")
    studies = unique_ids(rc, 3 * (ex.size + xi.size) + 3 * n, 50_000_000, 60_000_000)
    studies = rc.permutation(np.setdiff1d(studies, meta0["study_id"].to_numpy()))
    ex_study, x_study = studies[:ex.size], studies[ex.size:ex.size + xi.size]

    def dicoms(m):
        return np.array(["-".join(f"{x:08x}" for x in row) for row in rc.integers(0, 2**32, (m, 5))])

    def meta_rows(rows, study, when, ap, eye):
        secs = (when - when.astype("datetime64[D]")).astype(np.int64)
        m = len(rows)
        return pd.DataFrame({
            "dicom_id": dicoms(m), "subject_id": subject[rows], "study_id": study,
            "PerformedProcedureStepDescription": np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"),
            "ViewPosition": np.where(ap, "AP", "PA"), "Rows": 0, "Columns": 0,
            "StudyDate": np.char.replace(np.datetime_as_string(when, unit="D"), "-", "").astype(int),
            "StudyTime": np.round(secs // 3600 * 10000 + secs % 3600 // 60 * 100 + secs % 60
                                  + rc.integers(0, 1000, m) / 1000, 3),
            "ProcedureCodeSequence_CodeMeaning": np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"),
            "ViewCodeSequence_CodeMeaning": np.where(ap, "antero-posterior", "postero-anterior"),
            "PatientOrientationCodeSequence_CodeMeaning": np.where(ap, "Recumbent", "Erect"),
            "eye": eye, "source": rows})

    ap0 = meta0["ViewPosition"].to_numpy() == "AP"
    frontal = pd.concat([meta0.assign(eye=True, source=np.arange(n)),
                         meta_rows(ex, ex_study, ex_time, ap0[ex], True),
                         meta_rows(xi, x_study, x_time, rc.random(xi.size) < 0.4, False)], ignore_index=True)
    pa = frontal["ViewPosition"] == "PA"
    lateral = frontal[pa].assign(dicom_id=dicoms(int(pa.sum())), ViewPosition="LATERAL",
                                 ViewCodeSequence_CodeMeaning="lateral", eye=False)
    full = pd.concat([frontal, lateral], ignore_index=True).sort_values(["subject_id", "study_id", "ViewPosition"],
                                                                        ascending=[True, True, False], kind="stable")
    full = full.reset_index(drop=True)  # the row numbers of the twin's MIMIC-CXR metadata table
    eye = full[full["eye"]].copy()
    which = rc.choice(3, len(eye), p=[0.29, 0.707, 0.003])  # EyeGaze only, REFLACX only, both
    eye["in_eye_gaze"] = which != 1
    eye["in_reflacx"] = which != 0
    eye["StudyDateTime"] = (eye["StudyDate"].astype(str) + eye["StudyTime"].astype(str)).astype(float)
    eye["stay_id"] = _importer_stay_id(eye, ed_all).astype("Int64")  # ints and blanks, as notebook (1) writes it
    eye[["Rows", "Columns"]] = image_size
    meta_sheet = eye[[*CXR_META_COLUMNS, *CXR_META_EXTRA_COLUMNS]]
    # notebook (4) reads spreadsheets/cxr_meta.csv back (index_col=0) and writes each patient's rows from that:
    # stay_id becomes float ("30348638.0") and StudyDateTime goes through pandas' float parser
    cxr_meta = pd.read_csv(StringIO(meta_sheet.to_csv(lineterminator="\n")), index_col=0, dtype={"dicom_id": str})
    # labels: the simulator's for the index studies, the same for a repeat film, mostly blank elsewhere
    chex0 = t["CXR-JPG/cxr_chexpert.csv"]
    x_lab = np.where(rc.random((xi.size, len(CHEXPERT))) < 0.1, rc.choice([1.0, 0.0, -1.0], (xi.size, len(CHEXPERT))), np.nan)
    chexpert = pd.concat([chex0, chex0.iloc[ex].assign(study_id=ex_study),
                          pd.DataFrame(x_lab, columns=list(CHEXPERT)).assign(subject_id=subject[xi], study_id=x_study)],
                         ignore_index=True)[["subject_id", "study_id", *CHEXPERT]]
    chexpert = chexpert.sort_values(["subject_id", "study_id"], kind="stable").reset_index(drop=True)
    split_of = pd.Series(rc.choice(["train", "validate", "test"], full["study_id"].nunique(), p=[0.98, 0.01, 0.01]),
                         index=np.unique(full["study_id"]))
    cxr_split = full[["dicom_id", "study_id", "subject_id"]].assign(split=full["study_id"].map(split_of).to_numpy())
    images = full[full["eye"] | (full["ViewPosition"] == "LATERAL") & full["study_id"].isin(eye["study_id"])]
    images = images[["subject_id", "study_id", "dicom_id", "ViewPosition", "source"]].rename(columns={"ViewPosition": "view"})

    # --- whole tables in the source's order, people outside MIMIC-Eye in patients and triage
    ro = r["release-outside"]
    m_out = max(1, n // 4)
    out_subject = ro.permutation(np.setdiff1d(unique_ids(ro, 2 * m_out + n, 10_000_000, 20_000_000), subject))[:m_out]
    pts = t["Hosp/patients.csv"]
    outside_pts = pts.iloc[ro.integers(0, n, m_out)].assign(subject_id=out_subject)
    patients = pd.concat([pts, outside_pts]).sort_values("subject_id", kind="stable").reset_index(drop=True)
    out_stay = ro.permutation(np.setdiff1d(unique_ids(ro, 3 * m_out + 3 * len(ed_all), 30_000_000, 40_000_000),
                                           ed_all["stay_id"].to_numpy()))[:m_out]
    outside_tri = tri.iloc[ro.integers(0, n, m_out)].assign(subject_id=out_subject, stay_id=out_stay)
    intime_all = pd.to_datetime(ed_all["intime"])
    ed_all = ed_all.assign(_t=intime_all).sort_values(["subject_id", "_t"], kind="stable").drop(columns="_t")
    order = ed_all["stay_id"].reset_index(drop=True)
    tri_whole = pd.concat([tri_all, outside_tri], ignore_index=True)
    tri_whole = tri_whole.assign(_o=tri_whole["stay_id"].map(pd.Series(np.arange(len(order)), index=order.to_numpy())))
    tri_whole = tri_whole.sort_values(["subject_id", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    # MIMIC-IV-ED's hadm_id has blanks, so pandas reads and the importer writes it as float ("22595853.0")
    ed_all = ed_all.reset_index(drop=True).assign(hadm_id=lambda d: d["hadm_id"].astype(float))

    def whole(df, keys):
        return df.sort_values(keys, kind="stable").reset_index(drop=True)

    # later hospital admissions (after the index stay: never a feature) for most patients without any, so that
    # about 9 % lack Hosp/admissions.csv, as in the release's import log (2,908 of 3,192 patients have one)
    adm0, dx0 = t["Hosp/admissions.csv"], t["Hosp/diagnoses_icd.csv"]
    li = np.flatnonzero(~np.isin(subject, adm0["subject_id"]) & (ro.random(n) < 0.78))
    l_hadm = ro.permutation(np.setdiff1d(unique_ids(ro, 3 * li.size + 3 * len(adm0), 20_000_000, 30_000_000),
                                         adm0["hadm_id"]))[:li.size]
    l_in = (outtime[li] + as_timedelta(ro.uniform(30, 1500, li.size) * 1440)).astype("datetime64[s]")
    later = adm0.iloc[:0].reindex(range(li.size)).assign(
        subject_id=subject[li], hadm_id=l_hadm, admittime=fmt_time(l_in),
        dischtime=fmt_time(l_in + as_timedelta(ro.uniform(1, 10, li.size) * 1440)),
        admission_type=ro.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"], li.size),
        admission_location="EMERGENCY ROOM", discharge_location="HOME", insurance="Other", language="ENGLISH",
        race=st.tables["ED/edstays.csv"]["race"].to_numpy()[li], hospital_expire_flag=0)
    code = np.asarray(BACKGROUND_CODES)[ro.integers(0, len(BACKGROUND_CODES), li.size), 0]
    later_dx = pd.DataFrame({"subject_id": subject[li], "hadm_id": l_hadm, "seq_num": 1, "icd_code": code,
                             "icd_version": 10})
    adm_all = pd.concat([adm0, later], ignore_index=True).astype({"hadm_id": np.int64, "subject_id": np.int64,
                                                                  "hospital_expire_flag": np.int64})
    dx_all = pd.concat([dx0, later_dx], ignore_index=True)

    per_patient = {
        "ED/edstays.csv": ed_all, "ED/triage.csv": tri_whole,
        "ED/vitalsign.csv": whole(vs, ["subject_id", "stay_id", "charttime"]),
        "ED/diagnosis.csv": whole(keep_ed(t["ED/diagnosis.csv"]), ["subject_id", "stay_id", "seq_num"]),
        "ED/medrecon.csv": whole(keep_ed(t["ED/medrecon.csv"]), ["subject_id", "stay_id"]),
        "Hosp/admissions.csv": whole(adm_all, ["subject_id", "hadm_id"]),
        "Hosp/diagnoses_icd.csv": whole(dx_all, ["subject_id", "hadm_id", "seq_num"]),
        "CXR-JPG/cxr_meta.csv": cxr_meta, "CXR-JPG/cxr_chexpert.csv": chexpert,
        "CXR-JPG/cxr_negbio.csv": chexpert, "CXR-JPG/cxr_split.csv": cxr_split,
    }
    spreadsheets = {"Hosp/patients.csv": patients, "ED/triage.csv": tri_whole, "cxr_meta.csv": meta_sheet,
                    "cxr_meta_with_stay_id_only.csv": meta_sheet[meta_sheet["stay_id"].notna()],
                    "CXR-JPG/cxr_chexpert.csv": chexpert, "CXR-JPG/cxr_negbio.csv": chexpert,
                    "CXR-JPG/cxr_split.csv": cxr_split}
    metadata = full[list(CXR_META_COLUMNS)].assign(Rows=image_size, Columns=image_size)
    return {"tables": per_patient, "spreadsheets": spreadsheets, "images": images.reset_index(drop=True),
            "metadata": metadata}


#: Per-patient CXR-JPG tables the importer writes for every patient, header only when the patient has no row.
_ALWAYS_WRITTEN = ("CXR-JPG/cxr_meta.csv", "CXR-JPG/cxr_chexpert.csv", "CXR-JPG/cxr_negbio.csv", "CXR-JPG/cxr_split.csv")


def _write_per_patient(root: Path, rel: str, df: pd.DataFrame, subjects: np.ndarray) -> None:
    """``df.to_csv`` of each patient's rows into ``patient_{subject_id}/{rel}``, index included, as the importer's
    ``matches.to_csv(path)`` does; only for patients with rows, except the CXR-JPG tables (every patient)."""
    text = df.to_csv(lineterminator="\n")
    header, _, rest = text.partition("\n")
    lines = np.array(rest.split("\n")[:-1], dtype=object)
    keys = df["subject_id"].to_numpy()
    order = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[order], subjects, side="left")
    ends = np.searchsorted(keys[order], subjects, side="right")
    for s, a, b in zip(subjects, starts, ends):
        if a == b and rel not in _ALWAYS_WRITTEN:
            continue
        f = root / MIMIC_EYE_PATIENT_DIR.format(subject_id=s) / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(header + "\n" + "".join(line + "\n" for line in lines[order[a:b]]))


def _lateral(img: np.ndarray) -> np.ndarray:
    """A cheap lateral view beside a frontal image: the frontal's row profile (so the same densities) across an
    elliptical thorax seen from the side. The loader never reads it; it is there because the study folder is."""
    h, w = img.shape
    y, x = np.mgrid[0:h, 0:w]
    body = ((x - w * 0.5) / (w * 0.38)) ** 2 + ((y - h * 0.55) / (h * 0.45)) ** 2 < 1
    profile = img.astype(float).mean(1, keepdims=True)
    return np.clip(np.where(body, profile * 0.9 + 20, 10), 0, 255).astype(np.uint8)


def write_mimic_eye(st: SyntheticTables, root: Path, seed: int, image_size: int = 256, progress: bool = True,
                    meta: dict | None = None) -> Path:
    """Render the chest X-rays and write a synthetic MIMIC-Eye release in its importer's layout under ``root``.

    Layout (:func:`release_tables`): ``patient_{subject_id}/`` with ``ED/`` and ``Hosp/`` tables only where the
    patient has rows, ``CXR-JPG/{cxr_meta,cxr_chexpert,cxr_negbio,cxr_split}.csv`` and
    ``CXR-JPG/s{study_id}/{dicom_id}.jpg`` (frontal and lateral); ``spreadsheets/`` with the whole tables
    (``Hosp/patients.csv`` only there). Every CSV has the pandas index as a leading unnamed column.
    Written to a temporary folder and renamed, so a failed run leaves no half-written cohort.
    """
    from PIL import Image

    from .cxr import render_cxr

    root = Path(root)
    rel = release_tables(st, seed, image_size)
    with atomic_dir(root) as tmp:
        subjects = np.sort(st.tables["Hosp/patients.csv"]["subject_id"].to_numpy())
        rd = st.render
        keys = ("ctr", "consolidation", "consolidation_side", "consolidation_zone", "edema", "effusion_left",
                "effusion_right")
        rng = streams(seed, ("cxr-render",))["cxr-render"]
        images, acq = render_cxr({k: rd[k].to_numpy() for k in keys}, rd["ap"].to_numpy(), rng, size=image_size,
                                 progress=progress)
        img = rel["images"]
        extra = img[(img["view"] != "LATERAL") & ~img["dicom_id"].isin(rd["dicom_id"])]
        pixels = dict(zip(rd["dicom_id"], images))
        if len(extra):  # the repeat films: the same findings, a new acquisition
            src = extra["source"].to_numpy()
            more, _ = render_cxr({k: rd[k].to_numpy()[src] for k in keys}, rd["ap"].to_numpy()[src],
                                 streams(seed, ("cxr-render-repeat",))["cxr-render-repeat"], size=image_size)
            pixels |= dict(zip(extra["dicom_id"], more))
        frontal_of = dict(zip(img.loc[img["view"] != "LATERAL", "study_id"], img.loc[img["view"] != "LATERAL", "dicom_id"]))
        bar = tqdm(total=len(img) + len(rel["tables"]), desc="mimic_eye: writing JPGs and CSVs", unit="file",
                   disable=not progress, leave=False)

        def write_jpgs() -> None:
            for s, study, dicom, view in img[["subject_id", "study_id", "dicom_id", "view"]].itertuples(index=False):
                d = tmp / MIMIC_EYE_PATIENT_DIR.format(subject_id=s) / "CXR-JPG" / f"s{study}"
                d.mkdir(parents=True, exist_ok=True)
                px = _lateral(pixels[frontal_of[study]]) if view == "LATERAL" else pixels[dicom]
                Image.fromarray(px).save(d / f"{dicom}.jpg", quality=92)
                bar.update(1)

        # the JPGs in a thread of their own while the CSVs are written: both spend their time in the file system
        # and the JPEG encoder, which release the GIL (every file is the same bytes either way)
        with bar, ThreadPoolExecutor(1) as pool:
            jpgs = pool.submit(write_jpgs)
            for name, df in rel["tables"].items():
                _write_per_patient(tmp, name, df, subjects)
                bar.update(1)
            jpgs.result()
        for name, df in rel["spreadsheets"].items():
            f = tmp / MIMIC_EYE_SPREADSHEETS / name
            f.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(f, lineterminator="\n")
        truth = st.truth.copy()
        for k, v in acq.items():
            truth[f"cxr_acq_{k}"] = v
        write_extras(tmp, truth, meta)
    return root
