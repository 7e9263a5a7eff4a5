"""Tests of :func:`mmlib.data.load_cohort` on small hand-made folders in the real on-disk layouts.

The fixtures below write MIMIC-Eye and MIMIC-IV-Ext-MDS-ED folders by hand (plain CSV text, PIL JPGs,
``np.memmap`` + ``np.savez``), exactly as ``shared/STUDY.md`` section 2 describes the credentialed
releases -- they do NOT use the project's synthetic generator, so the loader is checked against the
layouts themselves rather than against its sibling writer. Every expected value is written down here.

MIMIC-Eye fixture (16 patients, 19 ED stays; prediction time 3 h after arrival; one index stay per patient:
the stay of the first frontal CXR taken during an ED stay, else the first stay; tests/test_mimic_eye.py
checks the importer's own conventions -- index column, spreadsheets/ -- this fixture has no index column):

- patients in 16 -> no ED/ folder 1 (patient 14) -> index stay without triage 1 (15) -> outcome undefined
  (LEFT WITHOUT BEING SEEN) 1 (16) -> age under 18 1 (13) -> 12; the other stays 1B, 2L, 3N, 15B never enter
- split strata (race_binary x gender, per patient): White|M 7 patients (always 5/1/1 -> every split
  non-empty for every seed), non-White|F 3, Unknown|M 1, non-White|M 1
- patient 1: an earlier admission (codes I10, 4280), the index admission of stay 1A admitted 3.5 h after
  arrival (codes J189, I509: must not leak into 1A, but are history for the later stay 1B); vital signs
  at +0.5 h, +2.5 h, +3 h (inclusive) and +4 h (excluded); a CXR at +1 h
- CXRs: +1 h (available), +4.5 h (after the window), two days later, one hour before arrival, and two
  studies in the window of one stay (the first is used; its StudyTime has MIMIC's dropped leading zero
  and fractional seconds: 13014.531 = 01:30:14.531)

MDS-ED fixture (15 ECG rows; prediction time 90 min; ECGs in two memmap files, file_idx 0/1):

- rows in 15 -> duplicate rows 0 -> records already used 0 -> second ECG of a stay 1 -> primary target -999 1 -> age under 18 1 -> 12
- loaded with the release's split (0.9, 0.05, 0.05): strat_fold 0-17 train (8 stays), 18 val (2), 19 test (2)
- ECG at +90 min (available, boundary), +100 min and +120 min (unavailable)
- ECG records hold consistent limb leads (Einthoven), stored in the release's lead order I, II, V1-V6, III,
  aVR, aVL, aVF; ``Cohort.ecg`` returns them in schema.LEADS order (tests/test_mds_ed.py and
  tests/test_robustness_mds_ed.py check the release's writers' conventions and malformed inputs)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlib.data import Cohort, load_cohort
from mmlib.schema import LEADS, MDS_ED_LEAD_COLUMNS

pytestmark = pytest.mark.timeout(120)

# =============================================================================================== MIMIC-Eye
SID = {k: 10000000 + k for k in range(1, 17)}

# k: (gender, race, anchor_age, anchor_year)
PATIENTS = {
    1: ("M", "WHITE", 60, 2180),
    2: ("M", "WHITE - OTHER EUROPEAN", 45, 2178),
    3: ("M", "WHITE", 85, 2175),
    4: ("M", "WHITE", 16, 2178),          # 16 + (2180 - 2178) = 18: kept (boundary)
    5: ("M", "WHITE - RUSSIAN", 30, 2180),
    6: ("M", "WHITE", 70, 2180),
    7: ("M", "WHITE - EASTERN EUROPEAN", 55, 2180),
    8: ("F", "BLACK/AFRICAN AMERICAN", 40, 2180),
    9: ("F", "HISPANIC/LATINO - PUERTO RICAN", 39, 2180),
    10: ("F", "ASIAN - CHINESE", 79, 2179),
    11: ("M", "UNKNOWN", 50, 2180),
    12: ("M", "AMERICAN INDIAN/ALASKA NATIVE", 65, 2180),
    13: ("F", "WHITE", 15, 2179),         # 16 at the visit: excluded
    14: ("F", "WHITE", 50, 2180),         # no ED/ folder: excluded
    15: ("M", "WHITE", 40, 2180),         # the index stay has no triage row: excluded
    16: ("F", "BLACK/AFRICAN AMERICAN", 30, 2180),  # left without being seen: excluded
}

# name: (patient k, stay_id, intime, outtime, disposition, arrival_transport, hadm_id)
STAYS = {
    "1A": (1, 30000001, "2180-03-01 10:00:00", "2180-03-01 16:00:00", "ADMITTED", "AMBULANCE", 20000002),
    "1B": (1, 30000002, "2180-09-10 08:00:00", "2180-09-10 12:00:00", "HOME", "WALK IN", None),
    "2": (2, 30000003, "2180-04-02 09:00:00", "2180-04-02 15:00:00", "HOME", "WALK IN", None),
    "2L": (2, 30000004, "2180-05-02 09:00:00", "2180-05-02 10:00:00", "LEFT WITHOUT BEING SEEN", "WALK IN", None),
    "3": (3, 30000005, "2180-02-03 14:00:00", "2180-02-03 20:00:00", "ADMITTED", "AMBULANCE", 20000003),
    "3N": (3, 30000006, "2180-07-01 14:00:00", "2180-07-01 18:00:00", "HOME", "WALK IN", None),  # no triage row
    "4": (4, 30000007, "2180-06-05 00:45:00", "2180-06-05 06:00:00", "HOME", "WALK IN", None),
    "5": (5, 30000008, "2180-01-10 20:00:00", "2180-01-11 02:00:00", "ADMITTED", "AMBULANCE", 20000004),
    "6": (6, 30000009, "2180-08-08 12:00:00", "2180-08-08 17:00:00", "HOME", "WALK IN", None),
    "7": (7, 30000010, "2180-03-03 03:00:00", "2180-03-03 07:00:00", "HOME", "WALK IN", None),
    "8": (8, 30000011, "2180-10-10 10:00:00", "2180-10-10 16:00:00", "ADMITTED", "AMBULANCE", 20000006),
    "9": (9, 30000012, "2180-11-11 11:00:00", "2180-11-11 15:00:00", "HOME", "WALK IN", None),
    "10": (10, 30000013, "2180-12-12 12:00:00", "2180-12-12 19:00:00", "ADMITTED", "AMBULANCE", 20000007),
    "11": (11, 30000014, "2180-05-05 05:00:00", "2180-05-05 09:00:00", "HOME", "WALK IN", None),
    "12": (12, 30000015, "2180-06-06 06:00:00", "2180-06-06 10:00:00", "HOME", "UNKNOWN", None),
    "13": (13, 30000016, "2180-07-07 07:00:00", "2180-07-07 09:00:00", "HOME", "WALK IN", None),
    "15": (15, 30000017, "2180-09-09 09:00:00", "2180-09-09 12:00:00", "HOME", "WALK IN", None),  # no triage row
    "15B": (15, 30000018, "2180-01-09 09:00:00", "2180-01-09 12:00:00", "HOME", "WALK IN", None),
    "16": (16, 30000019, "2180-04-04 04:00:00", "2180-04-04 05:00:00", "LEFT WITHOUT BEING SEEN", "WALK IN", None),
}
STAY = {name: s[1] for name, s in STAYS.items()}
KEPT = [n for n in STAYS if n not in ("1B", "2L", "3N", "13", "15", "15B", "16")]

# admissions: hadm_id: (patient k, admittime); diagnoses: hadm_id: [(icd_code, icd_version)]
ADMISSIONS = {20000001: (1, "2179-06-01 08:00:00"), 20000002: (1, "2180-03-01 13:30:00"),
              20000003: (3, "2180-02-03 18:00:00"), 20000004: (5, "2180-01-10 23:00:00"),
              20000005: (5, "2179-01-01 12:00:00"), 20000006: (8, "2180-10-10 15:00:00"),
              20000007: (10, "2180-12-12 18:00:00")}
DIAGNOSES = {20000001: [("I10", 10), ("4280", 9)], 20000002: [("J189", 10), ("I509", 10)],
             20000003: [("A419", 10)], 20000004: [("N179", 10)], 20000005: [("0389", 9), ("V1582", 9)],
             20000006: [("I10", 10)], 20000007: [("E119", 10)]}
EXPECTED_CODES = {"1A": ("ICD10:I10 ICD9:4280", 1),
                  "5": ("ICD9:0389 ICD9:V1582", 1)}

# CXR studies: (patient k, study_id, dicom_id, StudyDate, StudyTime, view)
CXRS = [
    (1, 50000001, "0a1b2c3d-11111111-aaaaaaaa-bbbbbbbb-00000001", 21800301, 110000.0, "PA"),  # +1 h: in
    (2, 50000002, "0a1b2c3d-22222222-aaaaaaaa-bbbbbbbb-00000002", 21800402, 133000.0, "AP"),  # +4.5 h: out
    (3, 50000003, "0a1b2c3d-33333333-aaaaaaaa-bbbbbbbb-00000003", 21800205, 143000.0, "PA"),  # 2 days later
    (4, 50000004, "0a1b2c3d-44444444-aaaaaaaa-bbbbbbbb-00000004", 21800605, 13014.531, "AP"),  # 01:30:14: in
    (4, 50000005, "0a1b2c3d-55555555-aaaaaaaa-bbbbbbbb-00000005", 21800605, 23000.0, "AP"),  # 02:30: 2nd
    (5, 50000006, "0a1b2c3d-66666666-aaaaaaaa-bbbbbbbb-00000006", 21800110, 210000.0, "AP"),  # +1 h: in
    (6, 50000007, "0a1b2c3d-77777777-aaaaaaaa-bbbbbbbb-00000007", 21800808, 110000.0, "PA"),  # before arrival
    (14, 50000008, "0a1b2c3d-88888888-aaaaaaaa-bbbbbbbb-00000008", 21800909, 100000.0, "PA"),  # no ED stay
    (15, 50000009, "0a1b2c3d-99999999-aaaaaaaa-bbbbbbbb-00000009", 21800909, 100000.0, "PA"),  # in stay 15
]
# CheXpert labels of each study: Cardiomegaly, Consolidation, Edema, Pleural Effusion (1, 0, -1 uncertain, NaN)
CHEXPERT = {50000001: (1.0, None, -1.0, 0.0), 50000002: (1.0, 1.0, 1.0, 1.0), 50000003: (1.0, 1.0, 1.0, 1.0),
            50000004: (0.0, 1.0, None, 1.0), 50000005: (1.0, 0.0, 1.0, 0.0), 50000006: (None, None, 1.0, None),
            50000007: (1.0, 1.0, 1.0, 1.0), 50000008: (1.0, 1.0, 1.0, 1.0), 50000009: (1.0, 1.0, 1.0, 1.0)}
CXR_OF = {"1A": 50000001, "4": 50000004, "5": 50000006}  # stays with a CXR before the prediction time
CHEX_ALL = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices"]


def cxr_pixels(study_id: int) -> np.ndarray:
    """A 48 x 64 image of uniform 8x8 blocks (JPEG quality 100 reproduces it exactly), unique per study."""
    rng = np.random.default_rng(study_id)
    return np.kron(rng.integers(0, 256, (6, 8)).astype(np.uint8), np.ones((8, 8), np.uint8))


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=header).to_csv(path, index=False, lineterminator="\n")


def write_mimic_eye(root: Path) -> Path:
    """Write the MIMIC-Eye fixture described in the module docstring under ``root``; return ``root``."""
    _csv(root / "spreadsheets/Hosp/patients.csv", ["subject_id", "gender", "anchor_age", "anchor_year",
                                                   "anchor_year_group", "dod"],
         [[SID[k], g, a, y, "2017 - 2019", None] for k, (g, _, a, y) in PATIENTS.items()])
    for k, (gender, race, anchor_age, anchor_year) in PATIENTS.items():
        p = root / f"patient_{SID[k]}"
        (p / "CXR-JPG").mkdir(parents=True, exist_ok=True)
        stays = [(n, s) for n, s in STAYS.items() if s[0] == k]
        if stays:  # ED/ only for a patient with ED stays (patient 14 has none)
            _csv(p / "ED/edstays.csv",
                 ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "race", "arrival_transport",
                  "disposition"],
                 [[SID[k], s[6], s[1], s[2], s[3], gender, race, s[5], s[4]] for _, s in stays])
            tri = []
            for n, s in stays:
                if n in ("3N", "15"):
                    continue
                if n == "7":  # triage without any vital sign
                    tri.append([SID[k], s[1], None, None, None, None, None, None, "unable", 3, "Fall"])
                else:
                    tri.append([SID[k], s[1], 98.6, 88 + k, 18, 97, 130 + k, 80, str(k % 10), 2, "Chest pain"])
            _csv(p / "ED/triage.csv", ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat",
                                       "sbp", "dbp", "pain", "acuity", "chiefcomplaint"], tri)
        vs_header = ["subject_id", "stay_id", "charttime", "temperature", "heartrate", "resprate", "o2sat", "sbp",
                     "dbp", "rhythm", "pain"]
        if k == 1:
            _csv(p / "ED/vitalsign.csv", vs_header, [
                [SID[1], STAY["1A"], "2180-03-01 10:30:00", 98.0, 80, 16, 99, 120, 70, None, "5"],
                [SID[1], STAY["1A"], "2180-03-01 12:30:00", 99.0, 100, 20, 95, 130, 75, None, "5"],
                [SID[1], STAY["1A"], "2180-03-01 13:00:00", 98.5, 90, 18, 96, 125, 72, None, "4"],  # = +3 h
                [SID[1], STAY["1A"], "2180-03-01 14:00:00", 104.0, 200, 40, 70, 60, 30, None, "9"],  # after
                [SID[1], STAY["1B"], "2180-09-10 08:15:00", 98.2, 70, 14, 98, 118, 76, None, "0"],
            ])
        elif k == 7:
            _csv(p / "ED/vitalsign.csv", vs_header, [])  # header only
        elif k not in (3, 14):  # patient 3 has no vitalsign.csv at all (optional file)
            _csv(p / "ED/vitalsign.csv", vs_header,
                 [[SID[k], s[1], s[2], 98.0, 75, 16, 98, 120, 80, None, "0"] for n, s in stays if n != "3N"])
        adm = [(h, t) for h, (kk, t) in ADMISSIONS.items() if kk == k]
        if adm:
            _csv(p / "Hosp/admissions.csv", ["subject_id", "hadm_id", "admittime", "dischtime", "admission_type",
                                             "race"],
                 [[SID[k], h, t, t[:10] + " 23:00:00", "EW EMER.", race] for h, t in adm])
            _csv(p / "Hosp/diagnoses_icd.csv", ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
                 [[SID[k], h, i + 1, code, ver] for h, _ in adm for i, (code, ver) in enumerate(DIAGNOSES[h])])
        cx = [c for c in CXRS if c[0] == k]  # CXR-JPG tables for every patient, header only without a study
        _csv(p / "CXR-JPG/cxr_meta.csv",
             ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
              "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning"],
             [[d, SID[k], st, "CHEST (PA AND LAT)", v, 48, 64, date, tm, "CHEST (PA AND LAT)"]
              for _, st, d, date, tm, v in cx])
        _csv(p / "CXR-JPG/cxr_chexpert.csv", ["subject_id", "study_id", *CHEX_ALL],
             [[SID[k], st, *[dict(zip(["Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"],
                                      CHEXPERT[st])).get(c) for c in CHEX_ALL]] for _, st, *_ in cx])
        for _, st, d, *_ in cx:
            (p / f"CXR-JPG/s{st}").mkdir()
            Image.fromarray(cxr_pixels(st), mode="L").save(p / f"CXR-JPG/s{st}/{d}.jpg", quality=100)
    return root


@pytest.fixture
def mimic_eye_root(tmp_path) -> Path:
    return write_mimic_eye(tmp_path / "mimic-eye")


@pytest.fixture(scope="module")
def mimic_eye(tmp_path_factory) -> Cohort:
    """The fixture loaded once (read-only tests share it)."""
    root = write_mimic_eye(tmp_path_factory.mktemp("me") / "mimic-eye")
    return load_cohort("mimic_eye", root, progress=False)


def _jpg_of(root: Path, stay: str) -> Path:
    k = STAYS[stay][0]
    st, d = next((c[1], c[2]) for c in CXRS if c[1] == CXR_OF[stay])
    return root / f"patient_{SID[k]}/CXR-JPG/s{st}/{d}.jpg"


# ------------------------------------------------------------------------------------------ MIMIC-Eye: ok
def test_mimic_eye_flow_and_origin(mimic_eye):
    c = mimic_eye
    assert c.name == "mimic_eye" and c.origin == "real" and not c.is_synthetic and c.truth is None
    assert sorted(c.stays.index) == sorted(STAY[n] for n in KEPT)
    assert c.stays.index.name == "stay_id"
    f = c.flow
    assert list(f.columns) == ["step", "excluded", "remaining"]
    assert f["excluded"].tolist() == [0, 1, 1, 1, 1]
    assert f["remaining"].tolist() == [16, 15, 14, 13, 12]
    assert "no ED/ folder" in f["step"].iloc[1]
    assert "triage" in f["step"].iloc[2]
    assert "left without being seen" in f["step"].iloc[3]
    assert "18" in f["step"].iloc[4]
    for n in ("1B", "2L", "3N", "15B"):  # not the stay of the patient's first frontal CXR during a stay
        assert STAY[n] not in c.stays.index, n
    assert c.info["index_stay_by_cxr"] == 5  # patients 1, 2, 4, 5, 15
    assert c.info["index_stay_first_stay"] == 10 and c.info["patients_with_several_ed_stays"] == 4
    assert STAY["13"] not in c.stays.index
    assert "3 hours" in c.prediction_time
    assert c.info["cxr_unreadable"] == 0 and c.info["cxr_files_missing"] == 0


def test_mimic_eye_sensitive_attributes(mimic_eye):
    s = mimic_eye.stays
    expected = {  # stay: race_raw, race5, race_binary, gender, age, age_band
        "1A": ("WHITE", "White", "White", "M", 60, "60-79"),
        "2": ("WHITE - OTHER EUROPEAN", "White", "White", "M", 47, "40-59"),
        "3": ("WHITE", "White", "White", "M", 90, "80+"),
        "4": ("WHITE", "White", "White", "M", 18, "18-39"),
        "8": ("BLACK/AFRICAN AMERICAN", "Black", "non-White", "F", 40, "40-59"),
        "9": ("HISPANIC/LATINO - PUERTO RICAN", "Hispanic", "non-White", "F", 39, "18-39"),
        "10": ("ASIAN - CHINESE", "Asian", "non-White", "F", 80, "80+"),
        "11": ("UNKNOWN", "Other", "Unknown", "M", 50, "40-59"),
        "12": ("AMERICAN INDIAN/ALASKA NATIVE", "Other", "non-White", "M", 65, "60-79"),
    }
    for n, (raw, r5, rb, g, age, band) in expected.items():
        row = s.loc[STAY[n]]
        assert (row["race_raw"], row["race5"], row["race_binary"], row["gender"]) == (raw, r5, rb, g), n
        assert row["age"] == age and str(row["age_band"]) == band, n
    assert list(s.columns[:9]) == ["subject_id", "split", "intime", "race_raw", "race5", "race_binary", "gender",
                                   "age", "age_band"]
    assert s.loc[STAY["1A"], "intime"] == pd.Timestamp("2180-03-01 10:00:00")


def test_mimic_eye_splits_patient_level_and_deterministic(mimic_eye_root):
    c = load_cohort("mimic_eye", mimic_eye_root, split_seed=0, progress=False)
    s = c.stays
    assert set(s["split"]) == {"train", "val", "test"}
    assert all(len(c.split(x)) > 0 for x in ("train", "val", "test"))
    assert (s.groupby("subject_id")["split"].nunique() == 1).all()  # one patient never in two splits
    assert s["subject_id"].is_unique  # one index stay per patient
    # within-stratum exact fractions: White|M has 7 patients -> 5 train, 1 val, 1 test
    wm = s[(s["race_binary"] == "White") & (s["gender"] == "M")].drop_duplicates("subject_id")
    assert wm["split"].value_counts().to_dict() == {"train": 5, "val": 1, "test": 1}
    again = load_cohort("mimic_eye", mimic_eye_root, split_seed=0, progress=False)
    pd.testing.assert_series_equal(again.stays["split"], s["split"])
    others = [load_cohort("mimic_eye", mimic_eye_root, split_seed=k, progress=False).stays["split"]
              for k in (1, 2, 3)]
    assert any(not o.equals(s["split"]) for o in others), "split_seed has no effect"
    for o in others:
        assert set(o) == {"train", "val", "test"}


def test_mimic_eye_targets(mimic_eye):
    s = mimic_eye.stays
    assert mimic_eye.primary_target == "admitted"
    assert mimic_eye.targets == ["admitted", "cxr_cardiomegaly", "cxr_consolidation", "cxr_edema",
                                 "cxr_pleural_effusion"]
    for n in KEPT:
        assert s.loc[STAY[n], "admitted"] == float(STAYS[n][4] == "ADMITTED"), n
    # CheXpert: 1 -> 1, 0 / blank -> 0, -1 (uncertain) -> NaN where a CXR is available; NaN where none
    np.testing.assert_array_equal(s.loc[STAY["1A"], ["cxr_cardiomegaly", "cxr_consolidation", "cxr_edema",
                                                     "cxr_pleural_effusion"]].to_numpy(float), [1.0, 0.0, np.nan, 0.0])
    assert mimic_eye.info["chexpert_uncertain_as_nan.cxr_edema"] == 1
    assert mimic_eye.info["chexpert_not_mentioned_as_0.cxr_consolidation"] == 2  # stays 1A and 5
    assert s.loc[STAY["4"], ["cxr_cardiomegaly", "cxr_consolidation", "cxr_edema", "cxr_pleural_effusion"]
                 ].tolist() == [0.0, 1.0, 0.0, 1.0]  # the FIRST study in the window, not 50000005
    assert s.loc[STAY["5"], "cxr_edema"] == 1.0
    for n in set(KEPT) - set(CXR_OF):
        assert s.loc[STAY[n], [c for c in mimic_eye.targets if c.startswith("cxr_")]].isna().all(), n


def test_mimic_eye_availability(mimic_eye):
    a = mimic_eye.availability
    assert list(a.columns) == ["arrival", "vitals", "codes", "cxr"]
    assert a.dtypes.eq(bool).all()
    assert a.index.equals(mimic_eye.stays.index)
    assert a["arrival"].all()
    assert set(a.index[~a["vitals"]]) == {STAY["7"]}
    assert set(a.index[a["codes"]]) == {STAY[n] for n in EXPECTED_CODES}
    assert set(a.index[a["cxr"]]) == {STAY[n] for n in CXR_OF}
    for m, df in mimic_eye.modalities.items():
        assert df.index.equals(mimic_eye.stays.index), m


def test_mimic_eye_vitals_respect_prediction_time(mimic_eye):
    v = mimic_eye.modalities["vitals"]
    r = v.loc[STAY["1A"]]
    assert r["series_n"] == 3  # +0.5 h, +2.5 h and +3 h (inclusive); +4 h excluded
    assert r["series_heartrate_max"] == 100 and r["series_heartrate_min"] == 80
    assert r["series_heartrate_last"] == 90
    assert r["series_sbp_min"] == 120  # the sbp of 60 charted at +4 h never enters
    assert r["triage_heartrate"] == 89
    assert v.loc[STAY["3"], "series_n"] == 0  # no vitalsign.csv: triage only
    assert v.loc[STAY["7"], "series_n"] == 0 and v.loc[STAY["7"]].filter(like="triage_").isna().all()
    arrival = mimic_eye.modalities["arrival"]
    assert arrival.loc[STAY["1A"], "chiefcomplaint"] == "Chest pain"
    assert arrival.loc[STAY["7"], "pain"] == "unable"
    assert arrival.loc[STAY["1A"], "arrival_transport"] == "AMBULANCE"


def test_mimic_eye_codes_only_from_earlier_admissions(mimic_eye):
    codes = mimic_eye.modalities["codes"]
    for n, (text, n_adm) in EXPECTED_CODES.items():
        assert codes.loc[STAY[n], "codes"] == text, n
        assert codes.loc[STAY[n], "n_prior_admissions"] == n_adm, n
    # the index admissions (admitted after the ED arrival) never leak into their own stay
    assert "J189" not in codes.loc[STAY["1A"], "codes"] and "I509" not in codes.loc[STAY["1A"], "codes"]
    assert "N179" not in codes.loc[STAY["5"], "codes"]
    for n in ("3", "8", "10"):
        assert pd.isna(codes.loc[STAY[n], "codes"]) and codes.loc[STAY[n], "n_prior_admissions"] == 0, n


def test_mimic_eye_cxr_window_and_pixels(mimic_eye):
    cxr = mimic_eye.modalities["cxr"]
    for n, study in CXR_OF.items():
        assert cxr.loc[STAY[n], "study_id"] == study, n
        p = mimic_eye.cxr_path(STAY[n])
        assert p.is_file() and p == _jpg_of(mimic_eye.root, n)
        img = mimic_eye.cxr_image(STAY[n])
        assert img.dtype == np.uint8 and img.shape == (48, 64)
        np.testing.assert_array_equal(img, cxr_pixels(study))
    assert cxr.loc[STAY["1A"], "minutes_after_arrival"] == pytest.approx(60.0)
    assert cxr.loc[STAY["4"], "minutes_after_arrival"] == pytest.approx(45 + 14.531 / 60)  # fractional seconds kept
    assert cxr.loc[STAY["4"], "ViewPosition"] == "AP"
    for n in ("2", "3", "6", "7"):  # after the window, another day, before arrival, none
        assert pd.isna(cxr.loc[STAY[n], "path"]), n
        with pytest.raises(KeyError, match="no chest X-ray"):
            mimic_eye.cxr_path(STAY[n])


def test_mimic_eye_prediction_hours(mimic_eye_root):
    c = load_cohort("mimic_eye", mimic_eye_root, prediction_hours=5, progress=False)
    assert c.availability.loc[STAY["2"], "cxr"]  # the +4.5 h study now falls in the window
    assert c.modalities["vitals"].loc[STAY["1A"], "series_n"] == 4
    assert c.info["prediction_hours"] == 5.0 and "5 hours" in c.prediction_time
    c = load_cohort("mimic_eye", mimic_eye_root, primary_target="cxr_edema", progress=False)
    assert c.primary_target == "cxr_edema"


def test_mimic_eye_origin_synthetic_marker(mimic_eye_root):
    (mimic_eye_root / "synthetic_params.json").write_text("{}")
    c = load_cohort("mimic_eye", mimic_eye_root, progress=False)
    assert c.origin == "synthetic" and c.truth is None  # no synthetic_truth.parquet here


def test_mimic_eye_icd9_leading_zero_kept(mimic_eye_root):
    """A cohort whose diagnoses are all numeric ICD-9 codes: '0389' must not be read as the number 389."""
    for f in mimic_eye_root.glob("patient_*/Hosp/diagnoses_icd.csv"):
        df = pd.read_csv(f, dtype=str)
        df["icd_code"], df["icd_version"] = "0389", "9"
        df.to_csv(f, index=False)
    c = load_cohort("mimic_eye", mimic_eye_root, progress=False)
    assert c.modalities["codes"].loc[STAY["5"], "codes"] == "ICD9:0389 ICD9:0389"


def _nulls_as_none(df: pd.DataFrame) -> pd.DataFrame:
    """Parquet gives back missing text as None where the loader has NaN; both mean "missing"."""
    df = df.copy()
    for c in df.columns[df.dtypes == object]:
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _assert_cohorts_equal(a: Cohort, b: Cohort) -> None:
    for attr in ("name", "origin", "prediction_time", "targets", "primary_target", "info"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert Path(a.root).resolve() == Path(b.root).resolve()
    for attr in ("stays", "availability", "flow"):
        pd.testing.assert_frame_equal(getattr(a, attr), getattr(b, attr), obj=attr)
    assert list(a.modalities) == list(b.modalities)
    for m in a.modalities:
        pd.testing.assert_frame_equal(_nulls_as_none(a.modalities[m]), _nulls_as_none(b.modalities[m]), obj=m)
    assert (a.truth is None) == (b.truth is None)


def test_a_synthetic_cohort_artifact_is_the_same_bytes_in_any_checkout_and_follows_a_moved_one(tmp_path):
    """Chapter 01's cohort artifact of a generated cohort records the data folder relative to itself: two checkouts
    in different places write the same bytes (so the chapters downstream get the same keys), and a moved checkout
    still finds its X-rays and generator files; a real copy's folder stays absolute."""
    import shutil

    from mmlib.data.synth import generate

    written = {}
    for project in ("a", "b"):
        root, _ = generate("mds_ed", {"n": 40, "seed": 3}, data_dir=tmp_path / project / "data", progress=False)
        c = load_cohort("mds_ed", root, progress=False)
        assert c.origin == "synthetic"
        art = tmp_path / project / "build" / "artifacts" / "01" / "k" / "cohort_mds_ed"
        c.save(art)
        written[project] = (art / "cohort.json").read_bytes()
    assert written["a"] == written["b"], "the checkout's location is not in the artifact"
    shutil.move(tmp_path / "a", tmp_path / "moved")
    back = Cohort.load(tmp_path / "moved" / "build" / "artifacts" / "01" / "k" / "cohort_mds_ed")
    assert back.root == tmp_path / "moved" / "data" / root.name and (back.root / "synthetic_params.json").is_file()
    real = _load_mds(write_mds_ed(tmp_path / "mds-ed"))
    real.save(tmp_path / "real_artifact")
    recorded = json.loads((tmp_path / "real_artifact" / "cohort.json").read_text())["root"]
    assert recorded == str((tmp_path / "mds-ed").resolve())


def test_mimic_eye_save_load_roundtrip(mimic_eye, tmp_path):
    mimic_eye.save(tmp_path / "artifact")
    mimic_eye.save(tmp_path / "artifact")  # overwriting works
    back = Cohort.load(tmp_path / "artifact")
    _assert_cohorts_equal(mimic_eye, back)
    np.testing.assert_array_equal(back.cxr_image(STAY["1A"]), cxr_pixels(CXR_OF["1A"]))
    assert not list(tmp_path.glob(".artifact.tmp-*"))
    with pytest.raises(FileNotFoundError, match="cohort.json"):
        Cohort.load(tmp_path / "nothing-here")


# ---------------------------------------------------------------------------------------- MIMIC-Eye: bad
def test_mimic_eye_missing_required_file(mimic_eye_root):
    (mimic_eye_root / f"patient_{SID[5]}/ED/triage.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"patient_{SID[5]}/ED/triage\.csv: required file is missing"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)


def test_mimic_eye_missing_column(mimic_eye_root):
    f = mimic_eye_root / f"patient_{SID[8]}/ED/triage.csv"
    pd.read_csv(f).drop(columns="acuity").to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"ED/triage\.csv: missing column\(s\) \['acuity'\]"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)


def test_mimic_eye_unknown_race(mimic_eye_root):
    f = mimic_eye_root / f"patient_{SID[9]}/ED/edstays.csv"
    pd.read_csv(f).assign(race="MARTIAN").to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"edstays\.csv column 'race': unknown race string\(s\) \['MARTIAN'\]; "
                                         r"expected one of MIMIC-IV's"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)


def test_mimic_eye_bad_datetime(mimic_eye_root):
    f = mimic_eye_root / f"patient_{SID[9]}/ED/edstays.csv"
    pd.read_csv(f).assign(intime="yesterday").to_csv(f, index=False)
    with pytest.raises(ValueError, match=r"edstays\.csv column 'intime'.*'yesterday'.*YYYY-MM-DD"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)


def test_mimic_eye_patient_missing_from_patients_csv(mimic_eye_root):
    f = mimic_eye_root / "spreadsheets/Hosp/patients.csv"
    pd.read_csv(f).query(f"subject_id != {SID[6]}").to_csv(f, index=False)
    with pytest.raises(ValueError, match=rf"patients\.csv: no row for subject\(s\) \[{SID[6]}\]"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_mimic_eye_corrupt_jpg(mimic_eye_root, damage):
    jpg = _jpg_of(mimic_eye_root, "5")
    data = jpg.read_bytes()
    # "truncated": headers intact, entropy-coded data cut short (PIL's Image.verify() does not notice)
    jpg.write_bytes(b"this is not a JPEG at all" * 40 if damage == "garbage" else data[: len(data) - 10])
    with pytest.raises(ValueError, match=re.escape(str(jpg)) + r": not a readable JPEG image"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)
    c = load_cohort("mimic_eye", mimic_eye_root, bad_files="mark_missing", progress=False)
    assert c.info["cxr_unreadable"] == 1 and c.info["cxr_files_missing"] == 0
    assert not c.availability.loc[STAY["5"], "cxr"]
    assert c.availability.loc[STAY["1A"], "cxr"] and c.availability.loc[STAY["4"], "cxr"]
    assert np.isnan(c.stays.loc[STAY["5"], "cxr_edema"])
    with pytest.raises(KeyError):
        c.cxr_path(STAY["5"])


def test_mimic_eye_missing_jpg(mimic_eye_root):
    jpg = _jpg_of(mimic_eye_root, "1A")
    jpg.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(jpg)) + r": chest X-ray listed in .* is missing"):
        load_cohort("mimic_eye", mimic_eye_root, progress=False)
    c = load_cohort("mimic_eye", mimic_eye_root, bad_files="mark_missing", progress=False)
    assert c.info["cxr_files_missing"] == 1 and c.info["cxr_unreadable"] == 0
    assert not c.availability.loc[STAY["1A"], "cxr"]


def test_mimic_eye_empty_split(mimic_eye_root):
    with pytest.raises(ValueError, match=r"split\(s\) \['val', 'test'\] are empty"):
        load_cohort("mimic_eye", mimic_eye_root, split_fractions=(1.0, 0.0, 0.0), progress=False)
    with pytest.raises(ValueError, match="split fractions: expected non-negative numbers summing to 1"):
        load_cohort("mimic_eye", mimic_eye_root, split_fractions=(0.5, 0.1, 0.1), progress=False)


def test_mimic_eye_bad_arguments(mimic_eye_root, tmp_path):
    with pytest.raises(ValueError, match=r"primary_target: 'mortality' is not a MIMIC-Eye target"):
        load_cohort("mimic_eye", mimic_eye_root, primary_target="mortality", progress=False)
    with pytest.raises(ValueError, match=r"bad_files: expected 'error' or 'mark_missing'"):
        load_cohort("mimic_eye", mimic_eye_root, bad_files="ignore", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no patient_\* folders"):
        load_cohort("mimic_eye", tmp_path / "empty", progress=False)


# ================================================================================================== MDS-ED
L = 100  # samples per ECG record (the real data has 1000: 10 s at 100 Hz)
RACE_ONEHOT = ["white", "black/african", "hispanic/latino", "asian", "other"]
# (stay_id, subject_id, fold, race, one-hot group or None, age, gender, ecg minutes after arrival,
#  ecg_no_within_stay, general_data, icu_24h, mortality_28d)
MDS_ROWS = [
    (40000001, 11000001, 0, "WHITE", "white", 65, 1, 10, 0, 14, 1, 0),
    (40000001, 11000001, 0, "WHITE", "white", 65, 1, 60, 1, 3, 1, 0),            # second ECG: excluded
    (40000002, 11000002, 3, "BLACK/AFRICAN AMERICAN", "black/african", 50, 0, 90, 0, 0, 0, 0),
    (40000003, 11000003, 5, "HISPANIC/LATINO - PUERTO RICAN", "hispanic/latino", 33, 0, 120, 0, 7, 0, 1),
    (40000004, 11000004, 7, "ASIAN - CHINESE", "asian", 81, 1, 5, 0, 8, -999, 0),  # target undefined
    (40000005, 11000005, 9, "UNKNOWN", "other", 45, 1, 30, 0, 1, 1, -999),
    (40000006, 11000006, 11, "AMERICAN INDIAN/ALASKA NATIVE", "other", 17, 0, 15, 0, 9, 0, 0),  # child
    (40000007, 11000007, 13, "WHITE - RUSSIAN", "white", 70, 0, 100, 0, 10, 0, 0),
    (40000008, 11000008, 15, "WHITE", "white", 18, 1, 45, 0, 2, 0, 1),           # no vitals
    (40000009, 11000009, 17, "BLACK/CAPE VERDEAN", "black/african", 60, 0, 20, 0, 11, 1, 0),  # no labs
    (40000010, 11000010, 17, "ASIAN", "asian", 38, 1, 25, 0, 4, 0, 0),
    (40000011, 11000011, 18, "WHITE", "white", 55, 0, 35, 0, 12, 0, 0),
    (40000012, 11000012, 18, "HISPANIC OR LATINO", "hispanic/latino", 41, 1, 40, 0, 5, 1, 1),
    (40000013, 11000013, 19, "PORTUGUESE", "other", 77, 0, 50, 0, 13, 0, 0),
    (40000014, 11000014, 19, "WHITE - BRAZILIAN", "white", 29, 1, 55, 0, 6, 1, 1),
]
MDS_KEPT = [0, 2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14]  # row positions
FILE_OF = lambda rec: 0 if rec < 7 else 1  # noqa: E731 - records 0-6 in memmap_0.npy, 7-14 in memmap_1.npy


#: MDS-ED's split, (0.9, 0.05, 0.05): strat folds 0-17 train, 18 val, 19 test
RELEASE_SPLIT = (0.9, 0.05, 0.05)


def _load_mds(root: Path, **kw) -> Cohort:
    return load_cohort("mds_ed", root, split_fractions=RELEASE_SPLIT, progress=False, **kw)


def ecg_record(rec: int) -> np.ndarray:
    """Record ``rec`` in the study's lead order (schema.LEADS) with consistent limb leads (Einthoven)."""
    x = (np.random.default_rng(rec).standard_normal((L, 12)) * 0.3 + rec / 10).astype(np.float32)
    i_, ii = x[:, 0], x[:, 1]
    x[:, 2], x[:, 3], x[:, 4], x[:, 5] = ii - i_, -(i_ + ii) / 2, i_ - ii / 2, ii - i_ / 2
    return x


#: file column of each schema.LEADS lead (the release's order I, II, V1-V6, III, aVR, aVL, aVF)
_TO_FILE = [LEADS.index(k) for k in sorted(MDS_ED_LEAD_COLUMNS, key=MDS_ED_LEAD_COLUMNS.get)]


def write_mds_ed(root: Path, dtype_style: str = "pickled") -> Path:
    """Write the MDS-ED fixture under ``root``; ``dtype_style`` 'pickled' stores ``dtype`` as np.dtype (as the
    reference code's ``np.savez(..., dtype=data.dtype)`` does), 'string' as a plain string array."""
    root.mkdir(parents=True)
    rows = []
    for i, (stay, subj, fold, race, grp, age, g, ecg_min, ecg_no, rec, icu, mort) in enumerate(MDS_ROWS):
        intime = pd.Timestamp("2181-01-01 08:00:00") + pd.Timedelta(days=i)
        r = {"general_study_id": 45000000 + i, "general_subject_id": subj,
             "general_ecg_time": str(intime + pd.Timedelta(minutes=ecg_min)), "general_ed_stay_id": stay,
             "general_ed_hadm_id": None, "general_race": race, "general_intime": str(intime),
             "general_outtime": str(intime + pd.Timedelta(hours=6)), "general_strat_fold": fold,
             "general_ecg_no_within_stay": ecg_no, "general_data": rec, "demographics_age": age,
             "demographics_gender": g,
             **{f"demographics_ethnicity_{e}": int(e == grp) for e in RACE_ONEHOT},
             "biometrics_bmi": 20.0 + i, "vitals_acuity": 1 + i % 5,
             "vitals_heartrate_mean": 70.0 + i, "vitals_heartrate_first": 72.0 + i, "vitals_o2sat_min": 90.0 + i % 9,
             "labvalues_lactate_mean": 1.0 + i / 10, "labvalues_creatinine_first": 0.8 + i / 20,
             "deterioration_icu_24h": icu, "deterioration_mortality_28d": mort, "diagnoses_i10": i % 2}
        if stay == 40000008:
            r.update(vitals_heartrate_mean=None, vitals_heartrate_first=None, vitals_o2sat_min=None)
        if stay == 40000009:
            r.update(labvalues_lactate_mean=None, labvalues_creatinine_first=None)
        rows.append(r)
    pd.DataFrame(rows).to_csv(root / "mds_ed.csv", index=False)
    # two memmap files; file 0 leaves a 10-row gap after every record, so `start` really matters
    start, length, file_idx, shape = [], [], [], []
    for f, recs in enumerate([range(0, 7), range(7, 15)]):
        step = L + 10 if f == 0 else L
        mm = np.memmap(root / f"memmap_{f}.npy", dtype=np.float32, mode="w+", shape=(len(recs) * step, 12))
        for j, rec in enumerate(recs):
            mm[j * step:j * step + L] = ecg_record(rec)[:, _TO_FILE]
            start.append(j * step)
            length.append(L)
            file_idx.append(f)
        shape.append([len(recs) * step, 12])
        mm.flush()
        del mm
    dtype = np.dtype("float32") if dtype_style == "pickled" else np.array("float32")
    np.savez(root / "memmap_meta.npz", start=np.array(start), length=np.array(length), shape=np.array(shape),
             file_idx=np.array(file_idx), dtype=dtype, filenames=np.array(["memmap_0.npy", "memmap_1.npy"]))
    return root


@pytest.fixture
def mds_root(tmp_path) -> Path:
    return write_mds_ed(tmp_path / "mds-ed")


@pytest.fixture(scope="module")
def mds(tmp_path_factory) -> Cohort:
    return _load_mds(write_mds_ed(tmp_path_factory.mktemp("mds") / "mds-ed"))


def _edit_csv(root: Path, fn) -> None:
    df = pd.read_csv(root / "mds_ed.csv")
    fn(df).to_csv(root / "mds_ed.csv", index=False)


# --------------------------------------------------------------------------------------------- MDS-ED: ok
def test_mds_flow_splits_and_origin(mds):
    assert mds.name == "mds_ed" and mds.origin == "real" and mds.truth is None
    assert list(mds.stays.index) == [MDS_ROWS[i][0] for i in MDS_KEPT]
    assert mds.stays.index.name == "stay_id"
    assert mds.flow["excluded"].tolist() == [0, 0, 0, 1, 1, 0, 1, 0]
    assert mds.flow["remaining"].tolist() == [15, 15, 15, 14, 13, 13, 12, 12]
    assert "duplicate" in mds.flow["step"].iloc[1] and "first ECG" in mds.flow["step"].iloc[3]
    assert "-999" in mds.flow["step"].iloc[4] and "under 18" in mds.flow["step"].iloc[6]
    assert "train folds 0-17, val folds 18, test folds 19" in mds.info["split_rule"]
    for i in MDS_KEPT:
        fold = MDS_ROWS[i][2]
        assert mds.stays.loc[MDS_ROWS[i][0], "split"] == ("train" if fold <= 17 else "val" if fold == 18
                                                          else "test")
    assert mds.stays["split"].value_counts().to_dict() == {"train": 8, "val": 2, "test": 2}
    assert "90 minutes" in mds.prediction_time


def test_mds_sensitive_attributes(mds):
    s = mds.stays
    expected = {40000001: ("WHITE", "White", "White", "M", 65, "60-79"),
                40000002: ("BLACK/AFRICAN AMERICAN", "Black", "non-White", "F", 50, "40-59"),
                40000003: ("HISPANIC/LATINO - PUERTO RICAN", "Hispanic", "non-White", "F", 33, "18-39"),
                40000005: ("UNKNOWN", "Other", "Unknown", "M", 45, "40-59"),
                40000008: ("WHITE", "White", "White", "M", 18, "18-39"),
                40000010: ("ASIAN", "Asian", "non-White", "M", 38, "18-39"),
                40000013: ("PORTUGUESE", "Other", "non-White", "F", 77, "60-79"),
                40000014: ("WHITE - BRAZILIAN", "White", "White", "M", 29, "18-39")}
    for sid, (raw, r5, rb, g, age, band) in expected.items():
        row = s.loc[sid]
        assert (row["race_raw"], row["race5"], row["race_binary"], row["gender"]) == (raw, r5, rb, g), sid
        assert row["age"] == age and str(row["age_band"]) == band, sid


def test_mds_targets(mds):
    assert mds.primary_target == "deterioration_icu_24h"
    assert set(mds.targets) == {"deterioration_icu_24h", "deterioration_mortality_28d", "diagnoses_i10"}
    for i in MDS_KEPT:
        sid, icu, mort = MDS_ROWS[i][0], MDS_ROWS[i][10], MDS_ROWS[i][11]
        assert mds.stays.loc[sid, "deterioration_icu_24h"] == icu
        assert (np.isnan(mds.stays.loc[sid, "deterioration_mortality_28d"]) if mort == -999
                else mds.stays.loc[sid, "deterioration_mortality_28d"] == mort)
    c = _load_mds(mds.root, primary_target="deterioration_mortality_28d")
    assert 40000005 not in c.stays.index and 40000004 in c.stays.index  # -999 now in the primary target
    assert c.flow["excluded"].tolist() == [0, 0, 0, 1, 1, 0, 1, 0]


def test_mds_availability_and_modalities(mds):
    a = mds.availability
    assert list(a.columns) == ["arrival", "vitals", "labs", "ecg"] and a.dtypes.eq(bool).all()
    assert a["arrival"].all()
    assert set(a.index[~a["vitals"]]) == {40000008}
    assert set(a.index[~a["labs"]]) == {40000009}
    # ECGs after 90 min (+100, +120) are unavailable; exactly +90 min is available
    assert set(a.index[~a["ecg"]]) == {40000003, 40000007}
    assert a.loc[40000002, "ecg"]
    assert mds.info["ecg_after_prediction_time"] == 2
    assert list(mds.modalities["vitals"].columns) == ["vitals_heartrate_mean", "vitals_heartrate_first",
                                                      "vitals_o2sat_min"]
    assert list(mds.modalities["labs"].columns) == ["labvalues_creatinine_first", "labvalues_lactate_mean"]
    assert "vitals_acuity" in mds.modalities["arrival"] and "biometrics_bmi" in mds.modalities["arrival"]
    ecg = mds.modalities["ecg"]
    assert ecg.loc[40000001, "record"] == 14  # the first ECG of the stay, not the excluded second one
    assert ecg.loc[40000001, "minutes_after_arrival"] == pytest.approx(10)
    for m, df in mds.modalities.items():
        assert df.index.equals(mds.stays.index), m


def test_mds_ecg_returns_the_written_rows(mds):
    for i in MDS_KEPT:
        sid, rec = MDS_ROWS[i][0], MDS_ROWS[i][9]
        if not mds.availability.at[sid, "ecg"]:
            with pytest.raises(KeyError, match="no ECG before the prediction time"):
                mds.ecg([sid])  # recorded after the prediction time: not readable as a feature
            continue
        got = mds.ecg([sid])
        assert got.dtype == np.float32 and got.shape == (1, L, 12)
        np.testing.assert_array_equal(got[0], ecg_record(rec))
    both = mds.ecg([40000010, 40000001])  # file 0 record 4 and file 1 record 14, in the order asked
    np.testing.assert_array_equal(both, np.stack([ecg_record(4), ecg_record(14)]))
    np.testing.assert_array_equal(mds.ecg(40000002)[0], ecg_record(0))


def test_mds_meta_dtype_as_string(tmp_path):
    c = _load_mds(write_mds_ed(tmp_path / "m", dtype_style="string"))
    np.testing.assert_array_equal(c.ecg([40000011])[0], ecg_record(12))


def test_mds_save_load_roundtrip(mds, tmp_path):
    mds.save(tmp_path / "artifact")
    back = Cohort.load(tmp_path / "artifact")
    _assert_cohorts_equal(mds, back)
    np.testing.assert_array_equal(back.ecg([40000009])[0], ecg_record(11))


# -------------------------------------------------------------------------------------------- MDS-ED: bad
def test_mds_truncated_memmap(mds_root):
    f = mds_root / "memmap_1.npy"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size - 4 * 12 * 5)
    with pytest.raises(ValueError, match=r"memmap_1\.npy: truncated ECG memmap: \d+ bytes, expected \d+"):
        _load_mds(mds_root)


def test_mds_missing_files(mds_root):
    (mds_root / "memmap_0.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"memmap_0\.npy: ECG memmap listed in memmap_meta\.npz"):
        _load_mds(mds_root)
    (mds_root / "memmap_meta.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"memmap_meta\.npz: missing"):
        _load_mds(mds_root)
    (mds_root / "mds_ed.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"mds_ed\.csv: missing"):
        _load_mds(mds_root)


def test_mds_meta_missing_key(mds_root):
    z = dict(np.load(mds_root / "memmap_meta.npz", allow_pickle=True))
    del z["file_idx"]
    np.savez(mds_root / "memmap_meta.npz", **z)
    with pytest.raises(ValueError, match=r"memmap_meta\.npz: missing key\(s\) \['file_idx'\]"):
        _load_mds(mds_root)


@pytest.mark.parametrize("bad", [15, -1])
def test_mds_general_data_out_of_range(mds_root, bad):
    _edit_csv(mds_root, lambda d: d.assign(general_data=d["general_data"].replace(6, bad)))
    with pytest.raises(ValueError, match=r"mds_ed\.csv column 'general_data': expected record indices 0\.\.14"):
        _load_mds(mds_root)


@pytest.mark.parametrize("bad", [20, -1, 3.5])
def test_mds_strat_fold_outside_range(mds_root, bad):
    _edit_csv(mds_root, lambda d: d.assign(general_strat_fold=d["general_strat_fold"].replace(9, bad)))
    with pytest.raises(ValueError, match=r"column 'general_strat_fold': 1 value\(s\) are not integers 0-19 .*found "
                                         + re.escape(f"['{bad}']")):
        _load_mds(mds_root)


def test_mds_empty_split(mds_root):
    _edit_csv(mds_root, lambda d: d[d["general_strat_fold"] != 19])
    with pytest.raises(ValueError, match=r"split\(s\) \['test'\] are empty"):
        _load_mds(mds_root)


def test_mds_missing_column(mds_root):
    _edit_csv(mds_root, lambda d: d.drop(columns="demographics_ethnicity_asian"))
    with pytest.raises(ValueError, match=r"mds_ed\.csv: missing column\(s\) \['demographics_ethnicity_asian'\]"):
        _load_mds(mds_root)


def test_mds_unknown_race(mds_root):
    _edit_csv(mds_root, lambda d: d.assign(general_race=d["general_race"].replace("ASIAN", "MARTIAN")))
    with pytest.raises(ValueError, match=r"column 'general_race': unknown race string\(s\) \['MARTIAN'\]"):
        _load_mds(mds_root)


def test_mds_unknown_primary_target(mds_root):
    with pytest.raises(ValueError, match=r"primary target column 'deterioration_nope' not found"):
        _load_mds(mds_root, primary_target="deterioration_nope")


# ---------------------------------------------------------------------------------------------- both
def test_nonexistent_root_and_unknown_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no-such-folder: cohort folder not found"):
        load_cohort("mds_ed", tmp_path / "no-such-folder", progress=False)
    with pytest.raises(ValueError, match=r"source: expected one of \('mimic_eye', 'mds_ed'\), got 'eicu'"):
        load_cohort("eicu", tmp_path, progress=False)
