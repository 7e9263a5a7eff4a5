"""Structured data -> clinical pseudo-notes, one text per stay and modality.

The Multimodal Paradox turns every modality into text. This module writes the structured ones
(arrival, vital signs, earlier diagnoses, labs) as deterministic, readable sentences with units; a missing
value is said to be missing, never invented. Images and ECGs are transcribed by :mod:`mmlib.cxr_reader`,
:mod:`mmlib.ecg_reader` (offline readers) or :mod:`mmlib.vlm` (VLM backends), which this module dispatches
to (the readers parse reports back into findings with :mod:`mmlib.reports`). :func:`cohort_texts`
puts all of a cohort's texts in one table. Race is not written into any text unless ``include_race``.
"""
from __future__ import annotations

import functools
import re
import time

import numpy as np
import pandas as pd

from .schema import CXR_FINDINGS, LAB_UNITS, MDS_ED_VITAL_UNITS, MODALITIES, STATS, display_name

#: MDS-ED's 45 labs (:data:`mmlib.schema.LABS`, the release's column names) -> (display name, adult reference
#: low, high) in the units of :data:`mmlib.schema.LAB_UNITS`; ``None`` where no flag is given.
LAB_INFO = {
    "absolute_basophil_count": ("absolute basophil count", 0.0, 0.2),
    "absolute_eosinophil_count": ("absolute eosinophil count", 0.0, 0.5),
    "absolute_lymphocyte_count": ("absolute lymphocyte count", 1.0, 4.8),
    "alanine_aminotransferase_(alt)": ("alanine aminotransferase (ALT)", 0, 40),
    "albumin": ("albumin", 3.5, 5.2), "alkaline_phosphatase": ("alkaline phosphatase", 35, 105),
    "asparate_aminotransferase_(ast)": ("aspartate aminotransferase (AST)", 0, 40), "bands": ("bands", 0, 5),
    "base_excess": ("base excess", -2, 3), "basophils": ("basophils", 0, 1.5), "bicarbonate": ("bicarbonate", 22, 32),
    "bilirubin,_direct": ("direct bilirubin", 0.0, 0.3), "bilirubin,_total": ("total bilirubin", 0.0, 1.5),
    "c-reactive_protein": ("C-reactive protein", 0, 5), "calcium,_total": ("total calcium", 8.4, 10.3),
    "carboxyhemoglobin": ("carboxyhemoglobin", 0, 3), "chloride": ("chloride", 96, 108),
    "creatine_kinase_(ck)": ("creatine kinase (CK)", 0, 200),
    "creatine_kinase,_mb_isoenzyme": ("creatine kinase MB isoenzyme", 0, 10), "creatinine": ("creatinine", 0.5, 1.2),
    "eosinophils": ("eosinophils", 0, 7), "fibrinogen,_functional": ("fibrinogen", 200, 400),
    "free_calcium": ("free calcium", 1.10, 1.32), "glucose": ("glucose", 70, 140), "hematocrit": ("hematocrit", 36, 48),
    "hemoglobin": ("hemoglobin", 12.0, 17.5), "inr(pt)": ("INR", 0.9, 1.1), "lactate": ("lactate", 0.5, 2.0),
    "lymphocytes": ("lymphocytes", 18, 42), "magnesium": ("magnesium", 1.6, 2.6), "neutrophils": ("neutrophils", 50, 70),
    "oxygen_saturation": ("oxygen saturation (blood gas)", 95, 100), "pt": ("prothrombin time", 9.4, 12.5),
    "ptt": ("partial thromboplastin time", 25, 36.5), "phosphate": ("phosphate", 2.7, 4.5),
    "platelet_count": ("platelet count", 150, 440), "potassium": ("potassium", 3.3, 5.1), "rdw": ("RDW", 10.5, 15.5),
    "red_blood_cells": ("red blood cells", 4.0, 5.9), "sodium": ("sodium", 133, 145),
    "troponin_t": ("troponin T", 0.0, 0.01), "urea_nitrogen": ("urea nitrogen", 6, 20),
    "white_blood_cells": ("white blood cells", 4.0, 11.0), "pco2": ("pCO2", 35, 45), "ph": ("pH", 7.35, 7.45),
}
#: Names of the ICD codes the notes spell out (MIMIC stores codes without the dot); others are given as codes.
ICD_NAMES = {
    "I509": "heart failure", "4280": "congestive heart failure", "J449": "chronic obstructive pulmonary disease",
    "496": "chronic airway obstruction", "I10": "essential hypertension", "4019": "hypertension",
    "I4891": "atrial fibrillation", "42731": "atrial fibrillation", "N179": "acute kidney failure",
    "5849": "acute kidney failure", "J189": "pneumonia", "486": "pneumonia", "I214": "NSTEMI",
    "41071": "subendocardial infarction", "A419": "sepsis", "0389": "septicemia", "E119": "type 2 diabetes",
    "25000": "diabetes mellitus", "E785": "hyperlipidemia", "2724": "hyperlipidemia", "K219": "GERD",
    "53081": "esophageal reflux", "F329": "depression", "311": "depressive disorder", "M545": "low back pain",
    "7242": "lumbago", "Z87891": "history of nicotine dependence", "V1582": "history of tobacco use",
    "N390": "urinary tract infection", "5990": "urinary tract infection", "G4733": "obstructive sleep apnea",
    "32723": "obstructive sleep apnea", "E039": "hypothyroidism", "2449": "hypothyroidism",
    "F419": "anxiety disorder", "30000": "anxiety state",
}
VITAL_INFO = {  # MIMIC-IV-ED names -> (words, unit, digits)
    "temperature": ("temperature", "°F", 1), "heartrate": ("heart rate", "/min", 0),
    "resprate": ("respiratory rate", "/min", 0), "o2sat": ("oxygen saturation (pulse oximetry)", "%", 0),
    "sbp": ("systolic blood pressure", "mmHg", 0), "dbp": ("diastolic blood pressure", "mmHg", 0),
}


def _num(x, digits: int = 0) -> str | None:
    if x is None or (isinstance(x, float) and np.isnan(x)) or pd.isna(x):
        return None
    return f"{float(x):.{digits}f}"


def _sex(g: str) -> str:
    return {"M": "man", "F": "woman"}.get(str(g), "patient of unrecorded sex")


def _race(race_raw: str) -> str:
    return f" Race recorded as {str(race_raw).lower()}."


# ------------------------------------------------------------------------------------------ MIMIC-Eye
def mimic_eye_arrival(row: pd.Series, race: str | None = None) -> str:
    """Arrival note: age, sex, mode of arrival, chief complaint, triage acuity and pain."""
    age = _num(row.get("age"))
    transport = str(row.get("arrival_transport") or "").upper()
    how = {"AMBULANCE": "by ambulance", "WALK IN": "on foot (walk-in)", "HELICOPTER": "by helicopter"}.get(
        transport, "by an unrecorded mode of arrival")
    parts = [f"{age}-year-old {_sex(row.get('gender'))} arriving at the emergency department {how}."
             if age else f"Adult {_sex(row.get('gender'))} arriving at the emergency department {how}."]
    cc = row.get("chiefcomplaint")
    parts.append(f"Chief complaint: {cc}." if isinstance(cc, str) and cc.strip() else "Chief complaint not recorded.")
    ac = _num(row.get("acuity"))
    parts.append(f"Triage acuity (ESI) {ac} on a scale from 1 (most urgent) to 5." if ac else "Triage acuity not recorded.")
    pain = row.get("pain")
    if isinstance(pain, str) and pain.strip().isdigit():
        parts.append(f"Pain score {pain.strip()}/10.")
    elif isinstance(pain, str) and pain.strip():
        parts.append("Pain could not be assessed.")
    else:
        parts.append("Pain score not recorded.")
    return " ".join(parts) + (_race(race) if race else "")


def mimic_eye_vitals(row: pd.Series) -> str:
    """Vital-signs note: triage values, then the ED series charted before the prediction time."""
    tri = []
    for v, (words, unit, d) in VITAL_INFO.items():
        x = _num(row.get(f"triage_{v}"), d)
        tri.append(f"{words} {x} {unit}" if x else f"{words} not recorded")
    text = "Triage vital signs: " + ", ".join(tri) + "."
    n = int(row.get("series_n") or 0)
    if n == 0:
        return text + " No further vital signs were charted before the prediction time."
    ser = []
    for v, (words, unit, d) in VITAL_INFO.items():
        lo, hi, last = (_num(row.get(f"series_{v}_{s}"), d) for s in ("min", "max", "last"))
        if last:
            ser.append(f"{words} {lo}–{hi} {unit} (last {last})" if lo != hi else f"{words} {last} {unit}")
    return text + f" {n} further set{'s' if n > 1 else ''} of vital signs charted before the prediction time: " + \
        "; ".join(ser) + "."


def mimic_eye_codes(row: pd.Series) -> str | None:
    """Earlier-admissions note: how many, and the diagnoses coded at their discharge (most frequent first)."""
    codes = row.get("codes")
    if not isinstance(codes, str) or not codes.strip():
        return None
    n_adm = int(row.get("n_prior_admissions") or 0)
    counts: dict[str, int] = {}
    for tok in codes.split():
        version, _, code = tok.partition(":")
        name = ICD_NAMES.get(code, f"{version.replace('ICD', 'ICD-')} code {code}")
        counts[name] = counts.get(name, 0) + 1
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{k} ({v}×)" if v > 1 else k for k, v in items[:15])
    more = f", and {len(items) - 15} further diagnoses" if len(items) > 15 else ""
    return (f"{n_adm} earlier hospital admission{'s' if n_adm != 1 else ''}. Diagnoses coded at those "
            f"admissions: {listed}{more}.")


# --------------------------------------------------------------------------------------------- MDS-ED
def mds_ed_arrival(row: pd.Series, race: str | None = None) -> str:
    """Arrival note: age, sex, biometrics and triage acuity."""
    age = _num(row.get("age"))
    parts = [f"{age}-year-old {_sex(row.get('gender'))} in the emergency department." if age
             else f"Adult {_sex(row.get('gender'))} in the emergency department."]
    bio = []
    for col, words, unit, d in (("biometrics_bmi", "BMI", "kg/m²", 1), ("biometrics_weight", "weight", "kg", 1),
                                ("biometrics_height", "height", "cm", 0)):
        x = _num(row.get(col), d)
        bio.append(f"{words} {x} {unit}" if x else f"{words} not recorded")
    parts.append(("Biometrics: " + ", ".join(bio) + ".") if any("not recorded" not in b for b in bio)
                 else "Biometrics not recorded.")
    ac = _num(row.get("vitals_acuity"))
    parts.append(f"Triage acuity (ESI) {ac} on a scale from 1 (most urgent) to 5." if ac else "Triage acuity not recorded.")
    return " ".join(parts) + (_race(race) if race else "")


def mds_ed_vitals(row: pd.Series) -> str | None:
    """Vital-signs note over the first 90 minutes: first, last and range of each vital sign, in MDS-ED's units
    (:data:`mmlib.schema.MDS_ED_VITAL_UNITS`: temperature in degrees Celsius)."""
    out = []
    for v, (words, _, d) in VITAL_INFO.items():
        unit = MDS_ED_VITAL_UNITS[v]
        first, last, lo, hi = (_num(row.get(f"vitals_{v}_{s}"), d) for s in ("first", "last", "min", "max"))
        if first is None:
            out.append(f"{words} not recorded")
        elif lo == hi:
            out.append(f"{words} {first} {unit}")
        else:
            out.append(f"{words} {first} {unit} at first, {last} last (range {lo}–{hi})")
    if all(o.endswith("not recorded") for o in out):
        return None
    return "Vital signs in the first 90 minutes: " + "; ".join(out) + "."


_LAB = re.compile(r"^labvalues_(.+)_(" + "|".join(STATS) + r")$")


@functools.lru_cache(maxsize=32)
def _first_lab_columns(columns: tuple) -> tuple[tuple[object, str], ...]:
    """(column, lab) of the ``labvalues_<lab>_first`` columns among ``columns``, in their order (matched once per
    set of columns, not once per row)."""
    out = []
    for col in columns:
        m = _LAB.match(str(col))
        if m and m.group(2) == "first":
            out.append((col, m.group(1)))
    return tuple(out)


def mds_ed_labs(row: pd.Series) -> str | None:
    """Labs note: the first value of each lab measured in the first 90 minutes, by its display name, with its unit
    (:data:`mmlib.schema.LAB_UNITS`) and a high/low flag (:data:`LAB_INFO`); an unknown lab by its column name."""
    firsts = {}
    for col, lab in _first_lab_columns(tuple(row.keys())):
        val = row[col]
        if not pd.isna(val):
            firsts[lab] = float(val)
    if not firsts:
        return None
    out = []
    for lab, x in firsts.items():
        words, lo, hi = LAB_INFO.get(lab, (lab.replace("_", " "), None, None))
        unit = LAB_UNITS.get(lab, "")
        digits = 3 if abs(x) < 0.1 else (2 if abs(x) < 10 else (1 if abs(x) < 100 else 0))
        flag = "" if lo is None else (" (high)" if x > hi else (" (low)" if x < lo else ""))
        out.append(f"{words} {x:.{digits}f}{' ' + unit if unit else ''}{flag}")
    return f"Laboratory results in the first 90 minutes: {'; '.join(out)}."


NOTE_WRITERS = {
    ("mimic_eye", "arrival"): mimic_eye_arrival, ("mimic_eye", "vitals"): mimic_eye_vitals,
    ("mimic_eye", "codes"): mimic_eye_codes, ("mds_ed", "arrival"): mds_ed_arrival,
    ("mds_ed", "vitals"): mds_ed_vitals, ("mds_ed", "labs"): mds_ed_labs,
}


def structured_notes(cohort, modality: str, include_race: bool = False) -> pd.Series:
    """Pseudo-notes of one structured modality for every stay (``None`` where the modality is missing)."""
    writer = NOTE_WRITERS.get((cohort.name, modality))
    if writer is None:
        raise ValueError(f"modality {modality!r} of {cohort.name} is not structured; expected one of "
                         f"{[m for c, m in NOTE_WRITERS if c == cohort.name]}")
    df = cohort.modalities[modality]
    avail = cohort.availability[modality].reindex(df.index).to_numpy()
    race = cohort.stays["race_raw"].reindex(df.index).to_numpy() if include_race else None
    # each row as a plain dict (the writers read it with .get / [] / .items(), as they would a Series): one
    # conversion of the frame instead of one Series per row
    rows = df.to_dict("records") if df.columns.is_unique else [r for _, r in df.iterrows()]
    texts = {}
    for i, (sid, row) in enumerate(zip(df.index, rows, strict=True)):
        if not avail[i]:
            texts[sid] = None
        elif modality == "arrival":
            texts[sid] = writer(row, race[i] if include_race else None)
        else:
            texts[sid] = writer(row)
    return pd.Series(texts, name=modality, dtype=object).reindex(cohort.stays.index)


# --------------------------------------------------------------------------------- images and signals
def transcribe_cxr(cohort, backend: str = "offline", model_path: str | None = None, prompt: str | None = None,
                   max_new_tokens: int = 256, batch_size: int = 8, device: str | None = None,
                   shard_dir=None, progress: bool = True, *,
                   n_jobs: int | None = None) -> tuple[pd.Series, pd.DataFrame]:
    """Chest X-ray reports for every stay with an X-ray, from ``backend``.

    ``"offline"``: the classical reader of the pixels (:mod:`mmlib.cxr_reader`); ``"qwen2.5-vl"``: Qwen2.5-VL
    from a local model folder (:mod:`mmlib.vlm`). Returns the reports (``None`` where the stay has no X-ray or
    the image could not be read) and, for the offline reader, its measurements. ``n_jobs``: the offline reader's
    worker processes (``None``: one per CPU core; the reports do not depend on it).
    """
    ids = cohort.stays.index[cohort.availability["cxr"].to_numpy()]
    paths = [str(cohort.root / p) for p in cohort.modalities["cxr"].loc[ids, "path"]]
    views = cohort.modalities["cxr"].loc[ids, "ViewPosition"].astype(str).tolist()
    if backend == "offline":
        from .cxr_reader import read_cxr

        reports, meas = read_cxr(paths, view=views, progress=progress, n_jobs=n_jobs)
        meas.index = ids
    elif backend == "qwen2.5-vl":
        from .vlm import DEFAULT_CXR_PROMPT, QwenVLReader

        reader = QwenVLReader(model_path or "Qwen/Qwen2.5-VL-7B-Instruct", prompt=prompt or DEFAULT_CXR_PROMPT,
                              max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
        reports, meas = reader.transcribe(paths, shard_dir=shard_dir, progress=progress), pd.DataFrame(index=ids)
    else:
        raise ValueError(f"cxr_backend: expected 'offline' or 'qwen2.5-vl', got {backend!r}")
    return pd.Series(reports, index=ids, dtype=object).reindex(cohort.stays.index), meas


def interpret_ecg(cohort, backend: str = "offline", model_path: str | None = None, prompt: str | None = None,
                  max_new_tokens: int = 256, batch_size: int = 8, device: str | None = None, shard_dir=None,
                  chunk: int = 250, progress: bool = True, *,
                  n_jobs: int | None = None) -> tuple[pd.Series, pd.DataFrame]:
    """ECG interpretations for every stay with an ECG before the prediction time, from ``backend``.

    ``"offline"``: signal measurements (:mod:`mmlib.ecg_reader`); ``"pulse-7b"``: PULSE-7B on the rendered
    12-lead print (:mod:`mmlib.vlm`). ``None`` where the stay has no ECG or the record is unreadable (flat line).
    The offline reader reads ``chunk`` records at a time, spread over ``n_jobs`` worker processes (``None``: one per
    CPU core); every record is measured on its own, so the reports depend on neither.
    """
    ids = cohort.stays.index[cohort.availability["ecg"].to_numpy()]
    if backend == "offline":
        from tqdm import tqdm

        from .ecg_reader import read_ecg
        from .reports import worker_count

        jobs = worker_count(n_jobs, len(ids), chunk)
        starts = range(0, len(ids), chunk)
        if jobs > 1:  # records loaded chunk by chunk as workers ask for them (joblib dispatches lazily)
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=jobs, return_as="generator")(
                delayed(read_ecg)(cohort.ecg(ids[a:a + chunk])) for a in starts)
        else:
            results = (read_ecg(cohort.ecg(ids[a:a + chunk])) for a in starts)
        reports, parts = [], []
        for r, m in tqdm(results, total=len(starts), desc="reading ECGs", disable=not progress, leave=False):
            reports += list(r)
            parts.append(m)
        meas = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        meas.index = ids
    elif backend == "pulse-7b":
        from .vlm import DEFAULT_ECG_PROMPT, PulseECGReader

        reader = PulseECGReader(model_path or "PULSE-ECG/PULSE-7B", prompt=prompt or DEFAULT_ECG_PROMPT,
                                max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
        reports = []
        for a in range(0, len(ids), chunk):
            reports += reader.interpret(cohort.ecg(ids[a:a + chunk]), shard_dir=None if shard_dir is None
                                        else f"{shard_dir}/part{a // chunk:04d}")
        meas = pd.DataFrame(index=ids)
    else:
        raise ValueError(f"ecg_backend: expected 'offline' or 'pulse-7b', got {backend!r}")
    return pd.Series(reports, index=ids, dtype=object).reindex(cohort.stays.index), meas


def transcription_truth(cohort, texts: pd.Series) -> dict[str, pd.DataFrame]:
    """Findings of a synthetic cohort's X-ray or ECG texts next to the simulator's truth (fidelity input).

    For the stays that have a text, returns 0/1 frames with one column per finding: ``"reader"`` (parsed
    from the text), ``"truth"`` (the latent state) and, for MIMIC-Eye, ``"labels"`` (the recorded
    ``cxr_chexpert`` labels). Truth for ECGs: atrial fibrillation, QRS >= 120 ms, ST elevation >= 0.1 mV.
    """
    if cohort.truth is None:
        raise ValueError("transcription_truth needs a synthetic cohort (its latent truth); real data have none")
    ids = texts.index[texts.notna().to_numpy()]
    tr = cohort.truth.loc[ids]
    if cohort.name == "mimic_eye":
        from .cxr_reader import findings_from_report

        names = list(CXR_FINDINGS)
        truth = pd.DataFrame({n: tr[f"finding_{n}"] for n in names})
        labels = cohort.stays.loc[ids, [f"cxr_{n}" for n in names]].set_axis(names, axis=1)
    else:
        from .ecg_reader import findings_from_report

        truth = pd.DataFrame({"af": tr["af"] == 1, "wide_qrs": tr["ecg_qrs_ms"] >= 120,
                              "st_elevation": tr["ecg_st_mv"] >= 0.1})
        labels = None
    reader = pd.DataFrame([findings_from_report(r) for r in texts.loc[ids]], index=ids)[truth.columns]
    out = {"reader": reader.astype(float), "truth": truth.astype(float)}
    if labels is not None:
        out["labels"] = labels.astype(float)
    return out


# ------------------------------------------------------------------------------------- a cohort's texts
def cohort_texts(cohort, *, cxr_backend: str = "offline", ecg_backend: str = "offline",
                 cxr_model_path: str | None = None, ecg_model_path: str | None = None, cxr_prompt: str | None = None,
                 ecg_prompt: str | None = None, max_new_tokens: int = 256, batch_size: int = 8,
                 device: str | None = None, shard_dirs: dict | None = None, include_race: bool = False,
                 progress: bool = False, n_jobs: int | None = None) -> pd.DataFrame:
    """Every text of a cohort: one row per stay, one column per modality (``mmlib.schema.MODALITIES`` order),
    ``None`` where the stay has no text for it (chapter 02's ``texts`` artifact).

    Structured modalities are written by :func:`structured_notes` (``include_race``); chest X-rays by
    :func:`transcribe_cxr` with ``cxr_backend`` / ``cxr_model_path`` / ``cxr_prompt``, ECGs by
    :func:`interpret_ecg` with the ``ecg_*`` options; ``max_new_tokens``, ``batch_size`` and ``device`` are the
    VLM backends'. ``shard_dirs``: modality -> folder where a VLM backend keeps its finished shards. ``n_jobs``: the
    offline readers' worker processes (``None``: one per CPU core); the texts do not depend on it.
    """
    shard_dirs = shard_dirs or {}
    cols = {}
    for m in MODALITIES[cohort.name]:
        if m == "cxr":
            cols[m], _ = transcribe_cxr(cohort, cxr_backend, cxr_model_path, cxr_prompt, max_new_tokens, batch_size,
                                        device, shard_dir=shard_dirs.get(m), progress=progress, n_jobs=n_jobs)
        elif m == "ecg":
            cols[m], _ = interpret_ecg(cohort, ecg_backend, ecg_model_path, ecg_prompt, max_new_tokens, batch_size,
                                       device, shard_dir=shard_dirs.get(m), progress=progress, n_jobs=n_jobs)
        else:
            cols[m] = structured_notes(cohort, m, include_race=include_race)
    return pd.DataFrame(cols)


def all_cohort_texts(cohorts: dict, shard_dirs=None, **options) -> dict:
    """Every text of every cohort (chapter 02): ``{cohort name: cohort_texts frame}`` from ``{cohort name: Cohort}``,
    each cohort's texts by :func:`cohort_texts` with ``options`` (its keywords), printing how long each cohort took.
    ``shard_dirs``: ``shard_dirs(cohort name, modality)`` gives the folder of a modality's VLM shards, asked for
    every modality of the cohort (``None``: no shards)."""
    out = {}
    for n, c in cohorts.items():
        t0 = time.perf_counter()
        dirs = {m: shard_dirs(n, m) for m in MODALITIES[n]} if shard_dirs is not None else None
        out[n] = cohort_texts(c, shard_dirs=dirs, **options)
        print(f"{display_name(n)}: texts written in {time.perf_counter() - t0:.1f} s")
    return out


def example_stay(texts: pd.DataFrame):
    """The stay chapter 02 shows as an example: the first (in ``texts`` order) with a text for every modality,
    else the first stay."""
    full = texts.notna().all(axis=1)
    return texts.index[full][0] if full.any() else texts.index[0]


def stay_markdown(texts: pd.DataFrame, stay_id) -> str:
    """Every modality's text of one stay, one paragraph each (``*(missing)*`` where it has none), as Markdown
    (chapter 02)."""
    return "\n\n".join(f"**{m}.** {texts.at[stay_id, m] if texts.at[stay_id, m] is not None else '*(missing)*'}"
                       for m in texts.columns)


def word_counts(texts: dict) -> pd.DataFrame:
    """Words per text, long: one row per text with ``modality``, ``words`` and the cohort's display name
    (``cohort``), from ``{cohort name: cohort_texts frame}``; missing texts left out (chapter 02)."""
    return pd.concat([t.apply(lambda s: s.dropna().str.split().str.len())
                      .melt(var_name="modality", value_name="words").dropna().assign(cohort=display_name(n))
                      for n, t in texts.items()])
