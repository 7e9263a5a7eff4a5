"""The latent clinical state of synthetic patients, and the bias knobs that distort what gets recorded.

One latent state per patient drives every modality and every outcome:

- ``severity``: a standard-normal acuity of illness (older patients are sicker on average);
- conditions (0/1): ``pneumonia``, ``heart_failure``, ``sepsis``, ``acs`` (acute coronary syndrome),
  ``af`` (atrial fibrillation), ``copd``, ``aki`` (acute kidney injury), ``hypertension``;
- true physiology: SaO2 (arterial saturation), heart rate, respiratory rate, temperature, blood pressure,
  and the conditions' findings on imaging and ECG.

Severity is the sum of five independent parts (:data:`SEVERITY_PARTS`): ``acute`` illness, ``respiratory``,
``cardiac``, ``metabolic`` (renal and metabolic) state and ``chronic`` burden. No modality sees all of it:
each reads its own mix of the parts (:data:`MODALITY_SEES`) -- the X-ray the lungs, the ECG the heart, the labs
the renal and metabolic state, the codes the chronic burden, triage a noisy summary of the acute illness with
some of the rest -- and each condition only where it shows (:data:`CONDITION_SEEN`). So the modalities
complement one another: together they reveal more of the need for care than any one of them alone.

On top of that, each modality's *informativeness* (0-1) is a parameter: a modality with informativeness ``w``
reads ``w * (its mix) + sqrt(1 - w^2) * noise`` and each condition it can see is reflected truthfully with
probability ``w`` (else an independent draw at the same prevalence).

Bias knobs (:class:`BiasKnobs`) are each scaled by one number, ``0`` = off, ``1`` = the default,
literature-plausible size; the per-group sizes at ``1`` are in :data:`GROUP_EFFECTS`. Every random draw
comes from its own named stream (:func:`streams`), so switching a knob changes only what it claims to.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .races import MIMIC_RACES, RACE5, race5_of

CONDITIONS = ("pneumonia", "heart_failure", "sepsis", "acs", "af", "copd", "aki", "hypertension")

#: Prevalence (at mean severity and age) and the log-odds slope on severity and on age (per 10 years).
CONDITION_MODEL = {
    #                 prevalence, severity slope, age slope
    "pneumonia":     (0.10, 0.9, 0.15),
    "heart_failure": (0.08, 0.8, 0.45),
    "sepsis":        (0.05, 1.3, 0.20),
    "acs":           (0.05, 0.7, 0.35),
    "af":            (0.07, 0.5, 0.55),
    "copd":          (0.08, 0.5, 0.35),
    "aki":           (0.06, 0.9, 0.30),
    "hypertension":  (0.30, 0.1, 0.50),
}

#: The parts of latent severity and their weights in it (squares sum to 1, so severity stays standard normal
#: before the age term).
SEVERITY_PARTS = {"acute": 0.42, "respiratory": 0.46, "cardiac": 0.40, "metabolic": 0.42, "chronic": 0.52}

#: What each modality reads of severity: its loading on each part (the view is rescaled to unit variance).
#: Triage and the vital signs see the acute illness and some of the heart and lungs; the X-ray the lungs; the
#: ECG the heart; the labs the renal and metabolic state; the codes the chronic burden.
MODALITY_SEES = {
    "arrival": {"acute": 1.0, "respiratory": 0.3, "cardiac": 0.3, "metabolic": 0.15, "chronic": 0.15},
    "vitals": {"acute": 0.8, "respiratory": 0.6, "cardiac": 0.4},
    "codes": {"chronic": 1.0, "acute": 0.15},
    "cxr": {"respiratory": 1.0, "cardiac": 0.25},
    "labs": {"metabolic": 1.0, "acute": 0.35},
    "ecg": {"cardiac": 1.0, "acute": 0.15},
}

#: Chance that a modality shows a condition truthfully (at informativeness 1); where it does not, the modality
#: sees an independent draw at the condition's prevalence. Absent = 0 (the modality cannot see it).
CONDITION_SEEN = {
    "pneumonia": {"arrival": 0.3, "vitals": 0.6, "cxr": 0.85, "labs": 0.6, "codes": 0.1},
    "heart_failure": {"arrival": 0.2, "vitals": 0.4, "cxr": 0.85, "codes": 1.0, "labs": 0.5, "ecg": 0.4},
    "sepsis": {"arrival": 0.5, "vitals": 1.0, "labs": 1.0, "ecg": 0.3, "codes": 0.1},
    "acs": {"arrival": 0.6, "vitals": 0.2, "ecg": 1.0, "labs": 1.0, "codes": 0.3},
    "af": {"arrival": 0.2, "vitals": 0.8, "ecg": 1.0, "codes": 0.6},
    "copd": {"arrival": 0.2, "vitals": 0.5, "cxr": 0.6, "codes": 1.0},
    "aki": {"arrival": 0.1, "labs": 1.0, "ecg": 0.4, "codes": 0.3},
    "hypertension": {"arrival": 0.4, "vitals": 1.0, "ecg": 0.6, "codes": 1.0, "cxr": 0.2},
}

#: Default race mix of the synthetic ED population (MIMIC-IV-ED is roughly this mix).
DEFAULT_RACE_MIX = {"White": 0.55, "Black": 0.24, "Hispanic": 0.09, "Asian": 0.05, "Other": 0.07}

#: Size of each bias mechanism at knob = 1, by MDS-ED five-group race. White is the reference (0).
GROUP_EFFECTS = {
    # percentage points by which pulse oximetry over-reads SaO2 (Sjoding et al., NEJM 2020; grows as SaO2 falls)
    "spo2_overread": {"White": 0.0, "Black": 1.6, "Hispanic": 0.8, "Asian": 0.8, "Other": 0.5},
    # shift of the triage severity score towards *less* severe, in SD of the latent severity
    # (Schrader & Lewis 2013; Sax et al., JAMA Netw Open 2023: ESI mistriage that differs by race, under- and over-triage)
    "under_triage": {"White": 0.0, "Black": 0.40, "Hispanic": 0.30, "Asian": 0.15, "Other": 0.15},
    # probability that a present chest X-ray finding is not documented in the labels
    # (Seyyed-Kalantari et al., Nat Med 2021: under-diagnosis of under-served groups)
    "cxr_underdocumentation": {"White": 0.0, "Black": 0.30, "Hispanic": 0.25, "Asian": 0.10, "Other": 0.15},
    # added probability that a modality (imaging, ECG within the window, labs) is missing (MNAR access gap)
    "unequal_access": {"White": 0.0, "Black": 0.15, "Hispanic": 0.12, "Asian": 0.05, "Other": 0.08},
    # log-odds by which the *recorded* outcome (admission, ICU transfer) is lower at equal need
    "label_bias": {"White": 0.0, "Black": 0.6, "Hispanic": 0.5, "Asian": 0.2, "Other": 0.3},
}

KNOB_DOCS = {
    "spo2_overread": "Pulse oximetry over-reads SpO2 for darker skin at equal arterial saturation (occult hypoxemia).",
    "under_triage": "Triage acuity (ESI) scored less severe for some groups at equal severity.",
    "cxr_underdocumentation": "Chest X-ray findings present on the image are left out of the labels for under-served groups.",
    "unequal_access": "Imaging, a timely ECG and labs are missing more often for some groups (missing not at random).",
    "label_bias": "The recorded outcome (hospital admission, ICU transfer) depends on group as well as on need.",
}

#: The literature behind each knob: ``{bib key: short citation}``, the keys those of ``references.bib`` (the
#: book's bibliography, where the full references are; chapter 01 cites them next to its knob table and
#: :func:`mmlib.tables.knob_table` shows the short citations; ``tests/test_tables.py`` checks the keys).
KNOB_REFERENCES = {
    "spo2_overread": {"sjoding2020pulseox": "Sjoding et al. 2020"},
    "under_triage": {"schrader2013triage": "Schrader & Lewis 2013", "sax2023esi": "Sax et al. 2023"},
    "cxr_underdocumentation": {"seyyedkalantari2021underdiagnosis": "Seyyed-Kalantari et al. 2021"},
    "unequal_access": {"schrager2019imaging": "Schrager et al. 2019"},
    "label_bias": {"obermeyer2019dissecting": "Obermeyer et al. 2019"},
}


@dataclass(frozen=True)
class BiasKnobs:
    """Scale of each bias mechanism: ``0`` = off, ``1`` = default size (see :data:`GROUP_EFFECTS`)."""

    spo2_overread: float = 1.0
    under_triage: float = 1.0
    cxr_underdocumentation: float = 1.0
    unequal_access: float = 1.0
    label_bias: float = 1.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "BiasKnobs":
        """Build from a parameter dict; unknown names raise ``ValueError`` naming them."""
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"bias_knobs: unknown knob(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}")
        for k, v in d.items():
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"bias_knobs.{k}: expected a finite number >= 0 (0 = off, 1 = default), got {v!r}")
        return cls(**{k: float(v) for k, v in d.items()})

    def effect(self, name: str, race5: np.ndarray) -> np.ndarray:
        """Per-patient size of mechanism ``name`` (knob scale x group effect)."""
        table = GROUP_EFFECTS[name]
        race5 = np.asarray(race5)
        sizes = np.vectorize(table.__getitem__, otypes=[float])(race5) if race5.size else np.zeros(race5.shape)
        return getattr(self, name) * sizes

    def as_dict(self) -> dict:
        return asdict(self)


def streams(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """One independent generator per named purpose, derived from ``seed`` and the name (order-free)."""
    out = {}
    for name in names:
        h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
        out[name] = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, h])))
    return out


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p):
    return np.log(p / (1 - p))


def simulate_population(n: int, seed: int, race_mix: dict | None = None) -> pd.DataFrame:
    """Draw demographics, latent severity and conditions for ``n`` patients.

    Returns a DataFrame with columns ``race_raw, race5, gender (M/F), age, severity``, the parts of severity
    (``severity_<part>`` for each of :data:`SEVERITY_PARTS`, standard normal) and one 0/1 column per condition
    in :data:`CONDITIONS`.
    """
    if n < 1:
        raise ValueError(f"n: expected a positive number of patients, got {n}")
    mix = dict(DEFAULT_RACE_MIX if race_mix is None else race_mix)
    if set(mix) != set(RACE5) or abs(sum(mix.values()) - 1) > 1e-6:
        raise ValueError(f"race_mix: expected proportions for {list(RACE5)} summing to 1, got {mix}")
    r = streams(seed, ("demo", "raw", "severity", "conditions"))
    race5 = r["demo"].choice(list(RACE5), size=n, p=[mix[g] for g in RACE5])
    by_group = {g: [s for s in MIMIC_RACES if race5_of(s) == g] for g in RACE5}
    # within Other, unknown / declined are the commonest raw strings, as in MIMIC-IV
    weights = {g: np.ones(len(v)) for g, v in by_group.items()}
    weights["White"][0] = 12.0          # plain "WHITE" dominates
    weights["Black"][0] = 10.0          # "BLACK/AFRICAN AMERICAN"
    weights["Asian"][0] = 4.0
    for i, s in enumerate(by_group["Other"]):
        weights["Other"][i] = {"UNKNOWN": 6.0, "OTHER": 4.0, "UNABLE TO OBTAIN": 1.5}.get(s, 1.0)
    race_raw = np.empty(n, dtype=object)
    for g in RACE5:
        idx = np.flatnonzero(race5 == g)
        w = weights[g] / weights[g].sum()
        race_raw[idx] = r["raw"].choice(by_group[g], size=idx.size, p=w)
    gender = np.where(r["demo"].random(n) < 0.47, "M", "F")
    age = np.clip(r["demo"].normal(55, 19, n), 18, 97).round()
    age10 = (age - 55) / 10
    parts = {k: r["severity"].normal(0, 1, n) for k in SEVERITY_PARTS}
    severity = sum(a * parts[k] for k, a in SEVERITY_PARTS.items()) + 0.12 * age10
    df = pd.DataFrame({"race_raw": race_raw, "race5": race5, "gender": gender, "age": age, "severity": severity,
                       **{f"severity_{k}": v for k, v in parts.items()}})
    rc = r["conditions"]
    for c in CONDITIONS:
        prev, s_slope, a_slope = CONDITION_MODEL[c]
        df[c] = (rc.random(n) < _logistic(_logit(prev) + s_slope * severity + a_slope * age10)).astype(np.int8)
    return df


def vital_signs(view: pd.DataFrame, seed: int) -> pd.DataFrame:
    """True physiology implied by a (modality's view of the) latent state.

    Columns: ``sao2`` (%), ``heart_rate`` (/min), ``resp_rate`` (/min), ``temp_c`` (deg C), ``sbp`` and ``dbp``
    (mmHg), ``pain`` (0-10) and ``chief_complaint`` (free text). Deterministic given ``seed``.
    """
    r = streams(seed, ("physiology", "complaint"))
    rp = r["physiology"]
    df = view[list(CONDITIONS)].astype(float)  # 0/1 as floats (int8 arithmetic would overflow)
    n = len(df)
    severity = view["severity"].to_numpy()
    age = view["age"].to_numpy()
    out = pd.DataFrame(index=df.index)
    sev_pos = np.clip(severity, 0, None)
    out["sao2"] = np.clip(97.5 - 4.0 * df.pneumonia - 3.0 * df.heart_failure - 3.5 * df.copd - 1.2 * df.sepsis
                          - 1.0 * sev_pos + rp.normal(0, 1.2, n), 72, 100)
    out["heart_rate"] = np.clip(78 + 7 * severity + 20 * df.sepsis + 10 * df.pneumonia + 8 * df.heart_failure
                                + 18 * df.af + rp.normal(0, 9, n), 35, 190)
    out["resp_rate"] = np.clip(16 + 1.5 * severity + 4 * df.pneumonia + 3 * df.heart_failure + 3 * df.copd
                               + 4 * df.sepsis + rp.normal(0, 2, n), 8, 45)
    out["temp_c"] = np.clip(36.8 + 1.3 * df.sepsis + 1.0 * df.pneumonia + 0.1 * severity
                            + rp.normal(0, 0.35, n), 34.5, 41.5)
    out["sbp"] = np.clip(132 + 12 * df.hypertension - 28 * df.sepsis - 4 * severity + 0.25 * (age - 55)
                         + rp.normal(0, 15, n), 60, 230)
    out["dbp"] = np.clip(0.55 * out.sbp + 6 + rp.normal(0, 8, n), 30, 140)
    out["pain"] = np.clip(np.round(3 + 4 * df.acs + 1.5 * df.pneumonia + 0.6 * severity + rp.normal(0, 2, n)), 0, 10)
    out["chief_complaint"] = _chief_complaints(view, r["complaint"])
    return out


#: Chief complaints by leading condition (MIMIC-IV-ED free-text style, upper-case abbreviations kept).
COMPLAINTS = {
    "acs": ["CHEST PAIN", "Chest pain", "CP", "Chest pressure"],
    "pneumonia": ["COUGH", "Fever, Cough", "Dyspnea", "SOB"],
    "heart_failure": ["Dyspnea", "SOB", "LE EDEMA", "Dyspnea on exertion"],
    "sepsis": ["Fever", "Weakness", "Altered mental status", "Hypotension"],
    "af": ["Palpitations", "Tachycardia", "Dizziness"],
    "copd": ["SOB", "Wheezing", "Dyspnea"],
    "aki": ["Abnormal labs", "Weakness", "N/V"],
    "none": ["Abd pain", "Headache", "Back pain", "Fall", "Laceration", "Dizziness", "Weakness", "Nausea",
             "ETOH", "Flank pain", "Rash", "Syncope", "Transfer"],
}


def _chief_complaints(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    lead = np.full(len(df), "none", dtype=object)
    for c in ("af", "aki", "copd", "heart_failure", "pneumonia", "sepsis", "acs"):  # later = higher priority
        lead[df[c].to_numpy() == 1] = c
    out = np.empty(len(df), dtype=object)
    u = rng.random(len(df))
    for c, options in COMPLAINTS.items():
        idx = np.flatnonzero(lead == c)
        out[idx] = np.asarray(options, dtype=object)[(u[idx] * len(options)).astype(int)]
    return out


def modality_view(pop: pd.DataFrame, modality: str, informativeness: float, seed: int) -> pd.DataFrame:
    """What modality ``modality`` sees of the latent state, at informativeness ``w`` in [0, 1].

    Its severity is its own mix of the parts of severity (:data:`MODALITY_SEES`, rescaled to unit variance,
    plus the age term every modality sees), read as ``w * mix + sqrt(1 - w^2) * noise``; each condition keeps
    its true value with probability ``w`` times the chance that the modality shows it (:data:`CONDITION_SEEN`)
    and is otherwise redrawn at its prevalence. ``w = 0`` leaves only age, noise and prevalence draws.
    """
    if not 0.0 <= informativeness <= 1.0:
        raise ValueError(f"informativeness[{modality!r}]: expected a number in [0, 1], got {informativeness}")
    if modality not in MODALITY_SEES:
        raise ValueError(f"modality: expected one of {sorted(MODALITY_SEES)}, got {modality!r}")
    view = pop.copy()
    rng = streams(seed, (f"view:{modality}",))[f"view:{modality}"]
    n = len(pop)
    w = informativeness
    sees = MODALITY_SEES[modality]
    mix = sum(l * pop[f"severity_{k}"].to_numpy() for k, l in sees.items()) / np.sqrt(sum(l * l for l in sees.values()))
    age_term = 0.12 * (pop["age"].to_numpy() - 55) / 10
    view["severity"] = w * mix + np.sqrt(1 - w * w) * rng.normal(0, 1, n) + age_term
    for c in CONDITIONS:
        keep = rng.random(n) < w * CONDITION_SEEN[c].get(modality, 0.0)
        redraw = (rng.random(n) < pop[c].mean()).astype(np.int8)
        view[c] = np.where(keep, pop[c], redraw).astype(np.int8)
    return view


def modality_sees_table(cohorts) -> pd.DataFrame:
    """What each modality of ``cohorts`` reads of the latent state (chapter 01): one row per cohort and
    modality, its loading on each part of severity (:data:`MODALITY_SEES`, blank = not seen) and the
    conditions it can show with the chance that it shows each (:data:`CONDITION_SEEN`)."""
    from ..schema import MODALITIES, display_name
    rows = []
    for cohort in cohorts:
        for m in MODALITIES[cohort]:
            sees = MODALITY_SEES[m]
            shown = [(c, CONDITION_SEEN[c][m]) for c in CONDITIONS if CONDITION_SEEN[c].get(m)]
            rows.append({"cohort": display_name(cohort), "modality": m,
                         **{f"{part} (weight {w:.2f})": (f"{sees[part]:.2f}" if part in sees else "")
                            for part, w in SEVERITY_PARTS.items()},
                         "conditions shown (chance)": ", ".join(f"{c.replace('_', ' ')} {p:.0%}" for c, p in shown)})
    return pd.DataFrame(rows).set_index(["cohort", "modality"])
