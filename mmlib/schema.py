"""The facts of the two datasets' layouts, in one place: names, modalities, times, columns, lead order.

Everything here describes the data as the study reads it (``../shared/STUDY.md`` section 2): the
loader (:mod:`mmlib.data.cohort`), the synthetic generator (:mod:`mmlib.data.synth` and its
simulators), the readers, the notes (:mod:`mmlib.text`) and the figures take these names from here,
so that real and synthetic data, and every step after them, agree on one spelling. Plain constants
only: this module imports nothing from :mod:`mmlib` and does no work at import time.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------------- cohorts
#: The two datasets, by the key the code uses: MIMIC-Eye and MIMIC-IV-Ext-MDS-ED.
COHORTS = ("mimic_eye", "mds_ed")

#: Display names of the cohorts, as the book prints them.
COHORT_NAMES = {"mimic_eye": "MIMIC-Eye", "mds_ed": "MIMIC-IV-Ext-MDS-ED"}


def display_name(cohort: str) -> str:
    """The name the book gives a cohort (:data:`COHORT_NAMES`; an unknown name is shown as it is)."""
    return COHORT_NAMES.get(cohort, cohort)

#: Modalities of each cohort, in the paper's order (MIMIC-Eye: MIMIC-IV-ED arrival/triage and vital
#: signs, ICD codes of earlier MIMIC-IV hospital admissions, MIMIC-CXR-JPG chest X-ray; MDS-ED:
#: demographics/biometrics, vital signs and labs of the first 90 minutes, the 12-lead ECG).
MODALITIES = {"mimic_eye": ("arrival", "vitals", "codes", "cxr"), "mds_ed": ("arrival", "vitals", "labs", "ecg")}

#: The patient-level splits, in order (MDS-ED's strat_fold 0-17 / 18 / 19; MIMIC-Eye is split by the loader).
SPLITS = ("train", "val", "test")

# -------------------------------------------------------------------------------------- prediction time
#: Hours after ED arrival at which each cohort's prediction is made; nothing recorded later is a feature
#: (MIMIC-Eye: the study's choice; MDS-ED: its features cover the first 90 minutes).
PREDICTION_HOURS = {"mimic_eye": 3.0, "mds_ed": 1.5}

#: What "prediction time" means in each cohort (``{h}``: hours for MIMIC-Eye, minutes for MDS-ED), as
#: :attr:`mmlib.data.Cohort.prediction_time` states it.
PREDICTION_TIME = {
    "mimic_eye": ("{h:g} hours after ED arrival (edstays.intime). Features: arrival and triage, the ED vital "
                  "signs charted by then, ICD codes of earlier hospital admissions, and a chest X-ray taken by "
                  "then. The disposition (admission) and all discharge diagnoses are recorded later."),
    "mds_ed": ("{h:g} minutes after ED arrival (general_intime). Features: demographics, biometrics, triage "
               "acuity, vital signs and labs of the first 90 minutes (as MDS-ED defines them), and an ECG "
               "recorded by then. Deterioration events and diagnoses are recorded later."),
}

# ---------------------------------------------------------------------------------- columns of the tables
#: Vital signs, by their MIMIC-IV-ED names (triage.csv / vitalsign.csv columns; MDS-ED ``vitals_{name}_*``).
VITALS = ("temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp")

#: Summary statistics MDS-ED stores per vital sign and lab (``vitals_{name}_{stat}``, ``labvalues_{name}_{stat}``).
STATS = ("mean", "median", "min", "max", "std", "first", "last", "rate_change", "coeff")

#: The labs of the MDS-ED columns ``labvalues_{name}_{stat}`` that the synthetic cohort writes.
LABS = ("hemoglobin", "wbc", "platelets", "sodium", "potassium", "creatinine", "bun", "glucose", "lactate",
        "troponin_t", "ntprobnp", "crp")

#: The 14 CheXpert labels of MIMIC-CXR-JPG (``cxr_chexpert.csv`` columns: 1.0 positive, 0.0 negative,
#: -1.0 uncertain, empty not mentioned).
CHEXPERT = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices")

#: The chest X-ray findings the study predicts and reads (snake-case: cxr_reader's IMPRESSION, the targets below).
CXR_FINDINGS = ("cardiomegaly", "consolidation", "edema", "pleural_effusion")

#: MIMIC-Eye's chest X-ray targets: CheXpert label -> target column of :class:`mmlib.data.Cohort` (1 = positive).
CXR_TARGETS = {"Cardiomegaly": "cxr_cardiomegaly", "Consolidation": "cxr_consolidation", "Edema": "cxr_edema",
               "Pleural Effusion": "cxr_pleural_effusion"}

#: MDS-ED's deterioration targets (columns ``deterioration_{name}``; -999 = undefined).
DETERIORATION = ("severe_hypoxemia", "ecmo", "vasopressors", "inotropes", "mechanical_ventilation",
                 "cardiac_arrest", "icu_24h", "icu_stay", "mortality_1d", "mortality_7d", "mortality_28d",
                 "mortality_90d", "mortality_180d", "mortality_365d", "any_deterioration")

#: MDS-ED discharge-diagnosis targets the synthetic cohort writes (columns ``diagnoses_{ICD-10 family}``)
#: -> the condition they code (the generator's latent condition of that name).
DIAGNOSES = {"i10": "hypertension", "i48": "af", "i50": "heart_failure", "j18": "pneumonia", "a41": "sepsis",
             "i21": "acs", "n17": "aki", "j44": "copd"}

# ----------------------------------------------------------------------------------------------- ECGs
#: Lead order of a (time, 12) ECG record (PTB-XL / MIMIC-IV-ECG / MDS-ED memmap columns).
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: Sampling rate of MDS-ED's ECG waveforms in Hz (10 s records of 1000 samples).
FS = 100
