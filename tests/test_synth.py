"""Tests of the synthetic cohort generators (mmlib.data.synth, mmlib.data.latent).

- the files are written in the real datasets' layouts and dtypes (``../shared/STUDY.md`` section 2);
- generation is deterministic in the seed;
- each bias knob shifts exactly what it claims, by about its documented size (:data:`GROUP_EFFECTS`),
  and nothing else; knob 2 gives a larger effect than knob 1;
- a modality's informativeness controls how much of the latent state it carries;
- the default demo size leaves every race x gender subgroup of the test split with >= 150 stays;
- splits, atomic writes, reuse and the parameter-keyed folder names.

Knob tests run at table level (no images / ECGs), n = 4000, so the whole file takes a few seconds.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mmlib.data.cxr
import mmlib.data.ecg
from mmlib.data import load_cohort
from mmlib.data.cohort import _assign_splits
from mmlib.data.latent import GROUP_EFFECTS, BiasKnobs
from mmlib.data.races import MIMIC_RACES, RACE5, RACE5_COLUMNS, race5_of, race_binary_of
from mmlib.data.splits import stratified_assign
from mmlib.data.synth import generate, generator_params, mds_ed_tables, mimic_eye_tables, synthetic_root
from mmlib.data.mds_ed import folds_of_splits
from mmlib.data.synth_mds_ed import LAB_PANELS
from mmlib.schema import CHEXPERT, DETERIORATION, LABS, MDS_ED_COLUMNS, STATS, VITALS

N = 4000          # table-level tests
SEED = 3
N_TINY = 60       # file-level tests
OFF = {k: 0.0 for k in BiasKnobs.__dataclass_fields__}
TINY_ME = {"n": N_TINY, "seed": 0, "image_size": 64}
TINY_MDS = {"n": N_TINY, "seed": 0}

EDSTAYS_COLS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "race", "arrival_transport",
                "disposition"]
TRIAGE_COLS = ["subject_id", "stay_id", "temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain",
               "acuity", "chiefcomplaint"]
VITALSIGN_COLS = ["subject_id", "stay_id", "charttime", "temperature", "heartrate", "resprate", "o2sat", "sbp",
                  "dbp", "rhythm", "pain"]
PATIENTS_COLS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
DIAGNOSES_ICD_COLS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]
CXR_META_COLS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                 "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                 "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
CXR_SPLIT_COLS = ["dicom_id", "study_id", "subject_id", "split"]
ME_FILES = ["ED/edstays.csv", "ED/triage.csv", "ED/vitalsign.csv", "Hosp/patients.csv", "Hosp/admissions.csv",
            "Hosp/diagnoses_icd.csv", "CXR-JPG/cxr_meta.csv", "CXR-JPG/cxr_chexpert.csv", "CXR-JPG/cxr_split.csv"]
FINDINGS = ["Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion", "Pneumonia", "Lung Opacity"]


# ------------------------------------------------------------------------------------------- helpers
@lru_cache(maxsize=None)
def _me(knobs: tuple = (), seed: int = SEED, informativeness: tuple = ()):
    """Cached MIMIC-Eye tables; ``knobs``: (name, value) pairs on top of all-off. Do not mutate the result."""
    return mimic_eye_tables(N, seed, BiasKnobs(**(OFF | dict(knobs))), dict(informativeness))


@lru_cache(maxsize=None)
def _mds(knobs: tuple = (), seed: int = SEED, informativeness: tuple = ()):
    return mds_ed_tables(N, seed, BiasKnobs(**(OFF | dict(knobs))), dict(informativeness))


def _first_ecg(st) -> pd.DataFrame:
    """The MDS-ED table's first-ECG rows (one per stay, in the order of the truth table)."""
    df = st.tables["mds_ed.csv"]
    return df[df["general_ecg_no_within_stay"] == 0].reset_index(drop=True)


def _one(name: str, value: float = 1.0) -> tuple:
    return ((name, value),)


def _changed(a: pd.DataFrame, b: pd.DataFrame) -> set[str]:
    assert list(a.columns) == list(b.columns)
    return {c for c in a.columns if not a[c].equals(b[c])}


def _read_all(root: Path, rel: str) -> pd.DataFrame:
    """Concatenate patient_*/rel where present (as the loader does), without the importer's index column."""
    frames = [pd.read_csv(p / rel, index_col=0) for p in sorted(root.glob("patient_*")) if (p / rel).is_file()]
    return pd.concat(frames, ignore_index=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _race5(st) -> np.ndarray:
    return st.truth["race5"].to_numpy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny cohorts written to disk once: {'mimic_eye': root, 'mds_ed': root}."""
    d = tmp_path_factory.mktemp("synthetic")
    me, reused_me = generate("mimic_eye", TINY_ME, data_dir=d, progress=False)
    mds, reused_mds = generate("mds_ed", TINY_MDS, data_dir=d, progress=False)
    assert not reused_me and not reused_mds
    return {"mimic_eye": me, "mds_ed": mds, "data_dir": d}


# -------------------------------------------------------------------------------- 1. layouts, dtypes
def test_mimic_eye_layout_and_dtypes(tiny):
    """The importer's layout: ED/Hosp tables only where the patient has rows, CXR-JPG tables for everyone,
    patients.csv only under spreadsheets/, the pandas index as a leading unnamed column (the details and the
    importer's other conventions: tests/test_mimic_eye.py)."""
    root = tiny["mimic_eye"]
    dirs = sorted(root.glob("patient_*"))
    assert len(dirs) == N_TINY
    assert not list(root.glob("patient_*/Hosp/patients.csv"))
    for d in dirs:
        for rel in ("CXR-JPG/cxr_meta.csv", "CXR-JPG/cxr_chexpert.csv", "CXR-JPG/cxr_split.csv"):
            assert (d / rel).is_file(), f"{d / rel} missing"
        if (d / "ED").is_dir():
            assert (d / "ED/edstays.csv").is_file() and (d / "ED/triage.csv").is_file()
    assert 0 < sum(not (d / "ED").is_dir() for d in dirs) < N_TINY
    header = {rel: next(root.glob(f"patient_*/{rel}")).read_text().partition("\n")[0].split(",") for rel in ME_FILES
              if rel != "Hosp/patients.csv"}
    header["Hosp/patients.csv"] = (root / "spreadsheets/Hosp/patients.csv").read_text().partition("\n")[0].split(",")
    for rel, h in header.items():
        assert h[0] == "", rel  # the index column
    assert header["ED/edstays.csv"][1:] == EDSTAYS_COLS
    assert header["ED/triage.csv"][1:] == TRIAGE_COLS
    assert header["ED/vitalsign.csv"][1:] == VITALSIGN_COLS
    assert header["Hosp/patients.csv"][1:] == PATIENTS_COLS
    assert header["Hosp/diagnoses_icd.csv"][1:] == DIAGNOSES_ICD_COLS
    assert header["CXR-JPG/cxr_meta.csv"][1:] == CXR_META_COLS + ["in_eye_gaze", "in_reflacx", "StudyDateTime", "stay_id"]
    assert header["CXR-JPG/cxr_chexpert.csv"][1:] == ["subject_id", "study_id", *CHEXPERT]
    assert header["CXR-JPG/cxr_split.csv"][1:] == CXR_SPLIT_COLS
    assert {"subject_id", "hadm_id", "admittime", "dischtime", "race", "edregtime"} <= set(header["Hosp/admissions.csv"])

    ed = _read_all(root, "ED/edstays.csv")
    assert ed["stay_id"].is_unique and ed["subject_id"].nunique() < len(ed)  # some patients have several stays
    for d in dirs:  # each patient's files hold only that patient
        if (d / "ED").is_dir():
            assert (pd.read_csv(d / "ED/edstays.csv")["subject_id"] == int(d.name.split("_")[1])).all()
    for c in ("intime", "outtime"):
        t = pd.to_datetime(ed[c], format="%Y-%m-%d %H:%M:%S")  # MIMIC's format, raises otherwise
        assert t.notna().all() and (t.dt.second == 0).all()
    assert (pd.to_datetime(ed["outtime"]) > pd.to_datetime(ed["intime"])).all()
    assert set(ed["gender"]) <= {"M", "F"}
    assert set(ed["race"].dropna()) <= set(MIMIC_RACES) | {"HISPANIC/LATINO"}
    adm = _read_all(root, "Hosp/admissions.csv")
    assert set(adm["race"]) <= set(MIMIC_RACES)
    admitted = ed["disposition"] == "ADMITTED"
    assert ed.loc[admitted, "hadm_id"].notna().all() and ed.loc[~admitted, "hadm_id"].isna().all()
    assert set(ed.loc[admitted, "hadm_id"].astype(np.int64)) <= set(adm["hadm_id"])

    tri = _read_all(root, "ED/triage.csv")
    assert set(tri["stay_id"]) == set(ed["stay_id"])
    assert set(tri["acuity"].dropna()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert tri["o2sat"].dropna().between(50, 100).all()
    assert tri["temperature"].dropna().between(90, 110).all()  # Fahrenheit, as in MIMIC-IV-ED
    vs = _read_all(root, "ED/vitalsign.csv")
    assert pd.to_datetime(vs["charttime"], format="%Y-%m-%d %H:%M:%S").notna().all()
    assert set(vs["stay_id"]) <= set(ed["stay_id"])

    # chest X-rays: one JPG per cxr_meta row (frontal) plus the study's lateral, grayscale at the requested size
    meta = _read_all(root, "CXR-JPG/cxr_meta.csv")
    assert set(meta["ViewPosition"]) <= {"PA", "AP"}
    assert (meta["Rows"] == 64).all() and (meta["Columns"] == 64).all()
    assert meta["StudyDate"].between(21000101, 22991231).all()
    for _, row in meta.iterrows():
        p = root / f"patient_{row.subject_id}" / "CXR-JPG" / f"s{row.study_id}" / f"{row.dicom_id}.jpg"
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "L" and im.size == (64, 64)
            px = np.asarray(im)
        assert px.std() > 5, f"{p}: image is flat"
    jpgs = sorted(root.glob("patient_*/CXR-JPG/s*/*.jpg"))
    assert len(jpgs) == len(meta) + (meta["ViewPosition"] == "PA").sum()
    chex = _read_all(root, "CXR-JPG/cxr_chexpert.csv")
    assert set(meta["study_id"]) < set(chex["study_id"])  # all the patients' studies, not only MIMIC-Eye's
    vals = pd.unique(chex[list(CHEXPERT)].to_numpy().ravel())
    assert set(vals[~pd.isna(vals)]) <= {1.0, 0.0, -1.0}
    assert set(_read_all(root, "CXR-JPG/cxr_split.csv")["split"]) <= {"train", "validate", "test"}
    # the two clearly-named synthetic extras
    assert (root / "synthetic_params.json").is_file() and (root / "synthetic_truth.parquet").is_file()


def test_mimic_eye_loader_reads_it_and_splits_like_the_table_level_emulation(tiny):
    """load_cohort reads the tiny cohort: the simulator's index stays, less the patients without an ED folder
    and the undefined outcomes; the split matches the table-level emulation on those stays."""
    c = load_cohort("mimic_eye", tiny["mimic_eye"], progress=False)
    assert c.is_synthetic and c.truth is not None
    ed = mimic_eye_tables(N_TINY, 0).tables["ED/edstays.csv"]
    has_ed = ed["subject_id"].map(lambda s: (tiny["mimic_eye"] / f"patient_{s}" / "ED").is_dir())
    kept = ed[ed["disposition"].isin(["ADMITTED", "HOME"]) & has_ed]
    assert sorted(c.stays.index) == sorted(kept["stay_id"])
    emu = pd.DataFrame({"subject_id": kept["subject_id"].to_numpy(),
                        "race_binary": c.stays.loc[kept["stay_id"], "race_binary"].to_numpy(),
                        "gender": kept["gender"].to_numpy()}, index=kept["stay_id"].to_numpy())
    emu["split"] = _assign_splits(emu, (0.7, 0.1, 0.2), 0).to_numpy()
    pd.testing.assert_series_equal(c.stays["split"].sort_index(), emu["split"].sort_index(), check_names=False,
                                   check_index_type=False)


def test_mds_ed_layout_and_dtypes(tiny):
    root = tiny["mds_ed"]
    df = pd.read_csv(root / "mds_ed.csv")
    assert list(df.columns) == list(MDS_ED_COLUMNS)  # the release's 1,936 columns in order, index column first
    assert (df["Unnamed: 0"] == np.arange(len(df))).all()
    first = df["general_ecg_no_within_stay"] == 0
    assert first.sum() == N_TINY and len(df) >= N_TINY and df.loc[first, "general_ed_stay_id"].is_unique
    families = {c.split("_")[0] for c in df.columns[1:]}
    assert families == {"general", "demographics", "biometrics", "vitals", "labvalues", "diagnoses", "deterioration"}
    assert {f"vitals_{v}_{s}" for v in VITALS for s in STATS} | {"vitals_acuity"} <= set(df.columns)
    assert {f"labvalues_{lab}_{s}" for lab in LABS for s in STATS} <= set(df.columns)
    det = [c for c in df.columns if c.startswith("deterioration_")]
    assert len(det) == 15 and det == [f"deterioration_{d}" for d in DETERIORATION]
    targets = [c for c in df.columns if c.startswith(("deterioration_", "diagnoses_"))]
    # -999 only as the undefined-label marker: in some deterioration targets, never in a feature or diagnosis
    features = df.drop(columns=targets).select_dtypes("number")
    assert not (features == -999).any().any()
    assert (df[det] == -999).any().any() and df[det].isin([0, 1, -999]).all().all()
    assert df[[c for c in targets if c.startswith("diagnoses_")]].isin([0, 1]).all().all()
    assert df["general_strat_fold"].dtype == np.int64 and df["general_strat_fold"].between(0, 19).all()
    assert (df["general_data"] == np.arange(len(df))).all()
    assert set(df["general_race"]) <= set(MIMIC_RACES)
    assert set(df["demographics_gender"]) <= {0, 1}
    onehot = df[[f"demographics_ethnicity_{RACE5_COLUMNS[g]}" for g in RACE5]].to_numpy()
    assert (onehot.sum(1) == 1).all()
    assert (np.asarray(RACE5)[onehot.argmax(1)] == df["general_race"].map(race5_of).to_numpy()).all()
    for c in ("general_intime", "general_outtime", "general_ecg_time", "general_90min"):
        assert pd.to_datetime(df[c], format="%Y-%m-%d %H:%M:%S").notna().all()
    n = len(df)

    # ECGs: raw float32 memmap (n records x 1000 samples x 12 leads) and its index
    assert (root / "memmap.npy").stat().st_size == n * 1000 * 12 * 4
    with np.load(root / "memmap_meta.npz", allow_pickle=True) as z:  # dtype is a pickled np.dtype
        assert set(z.files) == {"start", "shape", "length", "file_idx", "dtype", "filenames"}
        assert z["dtype"].dtype == object and np.dtype(str(z["dtype"])) == np.float32
        assert (z["start"] == np.arange(n) * 1000).all() and (z["length"] == 1000).all()
        assert (z["file_idx"] == 0).all() and np.atleast_2d(z["shape"]).tolist() == [[n * 1000, 12]]
        assert [str(f) for f in np.atleast_1d(z["filenames"])] == ["memmap.npy"]
    sig = np.fromfile(root / "memmap.npy", dtype=np.float32).reshape(n, 1000, 12)
    assert np.isfinite(sig).all() and 0.3 < np.abs(sig).max() <= 3.0  # millivolts, clipped at +-3 mV
    # columns in the release's order I, II, V1-V6, III, aVR, aVL, aVF
    lead_i, lead_ii, lead_iii, avr, avl, avf = (sig[..., k] for k in (0, 1, 8, 9, 10, 11))
    np.testing.assert_allclose(lead_iii, lead_ii - lead_i, atol=1e-5)      # Einthoven
    np.testing.assert_allclose(avr, -(lead_i + lead_ii) / 2, atol=1e-5)    # Goldberger
    np.testing.assert_allclose(avl, lead_i - lead_ii / 2, atol=1e-5)
    np.testing.assert_allclose(avf, lead_ii - lead_i / 2, atol=1e-5)
    assert (sig.std(axis=(1, 2)) > 0.05).all()  # no flat records

    # 60 stays are too few for a rare primary target in every split: hypertension is common (and with this
    # seed, folds 15-19 of the test split hold some)
    c = load_cohort("mds_ed", root, primary_target="diagnoses_i10", split_fractions=(0.5, 0.25, 0.25), progress=False)
    stay_steps = c.flow["step"].str.contains("-999|age")  # exclusions of whole stays (not of extra ECG rows)
    assert c.is_synthetic and len(c.stays) == N_TINY - c.flow.loc[stay_steps, "excluded"].sum()
    assert c.ecg(c.stays.index[:2]).shape == (2, 1000, 12)


# ------------------------------------------------------------------------------------- 2. determinism
def test_tables_deterministic_in_seed():
    for fn in (_me, _mds):
        a, b = fn.__wrapped__(), fn.__wrapped__()
        assert a.tables.keys() == b.tables.keys()
        for k in a.tables:
            pd.testing.assert_frame_equal(a.tables[k], b.tables[k])
        pd.testing.assert_frame_equal(a.truth, b.truth)
        pd.testing.assert_frame_equal(a.render, b.render)
        c = fn(seed=SEED + 1)
        for k in a.tables:
            assert not a.tables[k].equals(c.tables[k]), k
        assert not a.truth["severity"].equals(c.truth["severity"])


def test_files_deterministic_in_seed(tmp_path):
    for cohort, params in (("mimic_eye", TINY_ME), ("mds_ed", TINY_MDS)):
        first, _ = generate(cohort, params, data_dir=tmp_path / "first", progress=False)
        root, reused = generate(cohort, params, data_dir=tmp_path / "again", progress=False)
        assert not reused and root.name == first.name
        a, b = _files(first), _files(root)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == b[k], f"{cohort}: {k} differs between two runs with the same seed"
        other, _ = generate(cohort, params | {"seed": 1}, data_dir=tmp_path / "other", progress=False)
        assert other.name != root.name
        if cohort == "mimic_eye":
            img_a = sorted(v for k, v in a.items() if k.endswith(".jpg"))
            img_c = sorted(v for k, v in _files(other).items() if k.endswith(".jpg"))
            assert len(img_a) >= N_TINY and len(img_c) >= N_TINY and not set(img_a) & set(img_c)  # + laterals
        else:
            assert (root / "memmap.npy").read_bytes() != (other / "memmap.npy").read_bytes()
            assert (root / "mds_ed.csv").read_bytes() != (other / "mds_ed.csv").read_bytes()


# ------------------------------------------------------------------------------------- 3. bias knobs
#: what each knob may change: MIMIC-Eye table -> columns, MIMIC-Eye truth, MDS-ED columns, MDS-ED truth
_O2 = {f"vitals_o2sat_{s}" for s in STATS}
_LABV = {f"labvalues_{lab}_{s}" for labs in LAB_PANELS.values() for lab in labs for s in STATS}  # labs written
CLAIMS = {
    # MDS-ED's severe hypoxemia is undefined (-999) after a measured SpO2 <= 85 % in the first 90 minutes
    "spo2_overread": ({"ED/triage.csv": {"o2sat"}, "ED/vitalsign.csv": {"o2sat"}}, set(),
                      _O2 | {"deterioration_severe_hypoxemia"}, set()),
    "under_triage": ({"ED/triage.csv": {"acuity"}}, set(), {"vitals_acuity"}, set()),
    "cxr_underdocumentation": ({"CXR-JPG/cxr_chexpert.csv": {"Cardiomegaly", "Consolidation", "Edema",
                                                             "Enlarged Cardiomediastinum", "Lung Opacity",
                                                             "No Finding", "Pleural Effusion", "Pneumonia"}},
                               set(), set(), set()),
    "unequal_access": ({"CXR-JPG/cxr_meta.csv": {"StudyDate", "StudyTime"}},
                       {"cxr_in_stay", "cxr_minutes_after_arrival"},
                       {"biometrics_bmi", "biometrics_weight", "biometrics_height"} | _LABV,
                       {"biometrics_missing", "labs_missing"}),
    "label_bias": ({"ED/edstays.csv": {"hadm_id", "disposition"}, "Hosp/admissions.csv": "index rows",
                    "Hosp/diagnoses_icd.csv": "index rows"}, set(),
                   {"general_ed_hadm_id", "general_ed_diag_hosp", "general_hosp_dischtime", "general_icu_time_hours",
                    "deterioration_icu_24h", "deterioration_icu_stay", "deterioration_mortality_stay"}, set()),
}


def _without_index_admissions(st, rel):
    idx = set(st.tables["ED/edstays.csv"]["hadm_id"].dropna().astype(np.int64))
    df = st.tables[rel]
    return df[~df["hadm_id"].isin(idx)].reset_index(drop=True)


@pytest.mark.parametrize("knob", list(CLAIMS))
def test_knob_changes_only_what_it_claims(knob):
    me_claims, me_truth, mds_claims, mds_truth = CLAIMS[knob]
    base, on = _me(), _me(_one(knob))
    for rel in base.tables:
        claim = me_claims.get(rel, set())
        if claim == "index rows":  # earlier admissions (a feature) identical; only the index admissions change
            pd.testing.assert_frame_equal(_without_index_admissions(base, rel), _without_index_admissions(on, rel))
            continue
        assert _changed(base.tables[rel], on.tables[rel]) == claim, rel
    assert _changed(base.truth, on.truth) == me_truth
    pd.testing.assert_frame_equal(base.render, on.render)
    mbase, mon = _mds(), _mds(_one(knob))
    assert _changed(mbase.tables["mds_ed.csv"], mon.tables["mds_ed.csv"]) == mds_claims
    assert _changed(mbase.truth, mon.truth) == mds_truth
    pd.testing.assert_frame_equal(mbase.render, mon.render)


def test_spo2_overread():
    base, on = _me(), _me(_one("spo2_overread"))
    pd.testing.assert_series_equal(base.truth["sao2_true"], on.truth["sao2_true"])
    tb, to = base.tables["ED/triage.csv"], on.tables["ED/triage.csv"]
    pd.testing.assert_frame_equal(tb.drop(columns="o2sat"), to.drop(columns="o2sat"))
    r5, sao2 = _race5(base), base.truth["sao2_true"].to_numpy()
    b, o = tb["o2sat"].to_numpy(), to["o2sat"].to_numpy()
    assert (np.isnan(b) == np.isnan(o)).all()
    d = o - b
    ok = ~np.isnan(b)
    assert (d[ok] >= 0).all()
    assert (d[(r5 == "White") & ok] == 0).all()
    # at SaO2 >= 96 the over-read is the documented size (among readings it cannot push past the 100 % ceiling)
    for g in ("Black", "Hispanic"):
        m = (r5 == g) & ok & (sao2 >= 96) & (b + GROUP_EFFECTS["spo2_overread"][g] < 100)
        assert m.sum() > 100
        assert d[m].mean() == pytest.approx(GROUP_EFFECTS["spo2_overread"][g], abs=0.2), g
    # ... and it grows as SaO2 falls (occult hypoxemia)
    blk = (r5 == "Black") & ok
    low, high = blk & (sao2 < 92) & (b <= 95), blk & (sao2 >= 96) & (b <= 97)
    assert low.sum() > 30 and d[low].mean() > d[high].mean() + 0.8
    # MDS-ED: the SpO2 statistics shift for Black patients only
    mb, mo = _mds(), _mds(_one("spo2_overread"))
    r5m = _race5(mb)
    dm = (_first_ecg(mo)["vitals_o2sat_mean"] - _first_ecg(mb)["vitals_o2sat_mean"]).to_numpy()
    assert (np.nan_to_num(dm[r5m == "White"]) == 0).all()  # NaN: no vital signs charted in the first 90 minutes
    assert np.nanmean(dm[r5m == "Black"]) > 1.0
    pd.testing.assert_series_equal(mb.tables["mds_ed.csv"]["vitals_heartrate_mean"],
                                   mo.tables["mds_ed.csv"]["vitals_heartrate_mean"])


def test_under_triage():
    base, on = _me(), _me(_one("under_triage"))
    pd.testing.assert_series_equal(base.truth["acuity_unbiased"], on.truth["acuity_unbiased"])
    # with the knob off the recorded acuity is the unbiased one
    np.testing.assert_array_equal(base.tables["ED/triage.csv"]["acuity"].to_numpy(),
                                  base.truth["acuity_unbiased"].to_numpy())
    r5 = _race5(base)
    d = (on.tables["ED/triage.csv"]["acuity"] - base.tables["ED/triage.csv"]["acuity"]).to_numpy()
    assert (d >= 0).all()  # never more severe
    assert (d[r5 == "White"] == 0).all()
    for g in ("Black", "Hispanic"):
        assert d[r5 == g].mean() > 0.15, g
    assert d[r5 == "Black"].mean() > d[r5 == "Asian"].mean()
    mb, mo = _mds(), _mds(_one("under_triage"))
    r5m = _race5(mb)
    dm = (_first_ecg(mo)["vitals_acuity"] - _first_ecg(mb)["vitals_acuity"]).to_numpy()
    assert (dm >= 0).all() and (dm[r5m == "White"] == 0).all() and dm[r5m == "Black"].mean() > 0.15
    pd.testing.assert_series_equal(mb.truth["acuity_unbiased"], mo.truth["acuity_unbiased"])


def _documented_fraction(st, truth, race5, group):
    """Among true CXR findings of ``group``, the fraction documented (CheXpert 1 or -1)."""
    tot = doc = 0
    for f in FINDINGS:
        t = truth[f"finding_{f.lower().replace(' ', '_')}"].to_numpy() & (race5 == group)
        v = st.tables["CXR-JPG/cxr_chexpert.csv"][f].to_numpy()
        tot, doc = tot + t.sum(), doc + (t & np.isin(v, [1.0, -1.0])).sum()
    return doc / tot, tot


def test_cxr_underdocumentation():
    base, on = _me(), _me(_one("cxr_underdocumentation"))
    pd.testing.assert_frame_equal(base.render, on.render)  # what is drawn on the image is unchanged
    finding_cols = [c for c in base.truth.columns if c.startswith("finding_")]
    pd.testing.assert_frame_equal(base.truth[finding_cols], on.truth[finding_cols])
    r5 = _race5(base)
    for st in (base, on):  # a finding is documented only where it is present
        for f in FINDINGS:
            t = base.truth[f"finding_{f.lower().replace(' ', '_')}"].to_numpy()
            assert not (np.isin(st.tables["CXR-JPG/cxr_chexpert.csv"][f].to_numpy(), [1.0, -1.0]) & ~t).any()
    frac0, n_pos = _documented_fraction(base, base.truth, r5, "Black")
    frac1, _ = _documented_fraction(on, base.truth, r5, "Black")
    assert n_pos > 400 and frac0 == 1.0
    assert frac1 == pytest.approx(1 - GROUP_EFFECTS["cxr_underdocumentation"]["Black"], abs=0.05)
    assert _documented_fraction(on, base.truth, r5, "Hispanic")[0] < 0.9
    cb, co = base.tables["CXR-JPG/cxr_chexpert.csv"], on.tables["CXR-JPG/cxr_chexpert.csv"]
    pd.testing.assert_frame_equal(cb[r5 == "White"], co[r5 == "White"])
    for f in ("Cardiomegaly", "Consolidation"):  # the documented positives fall
        assert (co[f][r5 == "Black"] == 1).sum() < 0.85 * (cb[f][r5 == "Black"] == 1).sum()


def test_unequal_access():
    base, on = _me(), _me(_one("unequal_access"))
    r5 = _race5(base)
    b, o = base.truth["cxr_in_stay"].to_numpy(), on.truth["cxr_in_stay"].to_numpy()
    assert not (o & ~b).any()  # nobody gains an image
    assert (b[r5 == "White"] == o[r5 == "White"]).all()
    gap = GROUP_EFFECTS["unequal_access"]["Black"]
    assert b[r5 == "Black"].mean() - o[r5 == "Black"].mean() == pytest.approx(gap, abs=0.05)
    assert b[r5 == "Hispanic"].mean() - o[r5 == "Hispanic"].mean() > 0.06
    mb, mo = _mds(), _mds(_one("unequal_access"))
    r5m = _race5(mb)
    for col in ("biometrics_missing", "labs_missing"):
        b, o = mb.truth[col].to_numpy(), mo.truth[col].to_numpy()
        assert not (b & ~o).any(), col
        assert (b[r5m == "White"] == o[r5m == "White"]).all(), col
        assert o[r5m == "Black"].mean() - b[r5m == "Black"].mean() == pytest.approx(gap, abs=0.05), col
    # labs that are still measured keep their values; a missing lab panel is all-NaN
    lb, lo = (_first_ecg(st)["labvalues_creatinine_first"] for st in (mb, mo))
    both = lb.notna() & lo.notna()
    assert (lb[both] == lo[both]).all() and lo[mo.truth["labs_missing"].to_numpy()].isna().all()


def test_label_bias():
    base, on = _me(), _me(_one("label_bias"))
    for c in ("admission_need", "admitted_unbiased"):
        pd.testing.assert_series_equal(base.truth[c], on.truth[c])
    r5 = _race5(base)
    ab = (base.tables["ED/edstays.csv"]["disposition"] == "ADMITTED").to_numpy()
    ao = (on.tables["ED/edstays.csv"]["disposition"] == "ADMITTED").to_numpy()
    assert not (ao & ~ab).any()
    assert (ab[r5 == "White"] == ao[r5 == "White"]).all()
    np.testing.assert_array_equal(ab, base.truth["admitted_unbiased"].to_numpy())
    blk = r5 == "Black"
    assert ab[blk].mean() - ao[blk].mean() > 0.05
    # the recorded rate matches need shifted by the documented log-odds
    need = base.truth["admission_need"].to_numpy()[blk]  # log-odds (mmlib.schema.TRUTH_OF_TARGET)
    expected = 1 / (1 + np.exp(-(need - GROUP_EFFECTS["label_bias"]["Black"])))
    assert ao[blk].mean() == pytest.approx(expected.mean(), abs=0.04)
    mb, mo = _mds(), _mds(_one("label_bias"))
    r5m = _race5(mb)
    ib, io = (_first_ecg(st)["deterioration_icu_24h"].to_numpy() for st in (mb, mo))
    assert (ib[r5m == "White"] == io[r5m == "White"]).all()
    assert not ((io == 1) & (ib != 1)).any()
    assert (ib[r5m == "Black"] != 0).mean() - (io[r5m == "Black"] != 0).mean() > 0.02
    defined = ib != -999  # -999: admitted to the ICU within 1.5 h of arrival (already in the ICU)
    assert 0 < (~defined).sum() < 0.05 * len(ib)
    np.testing.assert_array_equal(ib[defined], mb.truth["icu_24h_unbiased"].astype(int).to_numpy()[defined])
    pd.testing.assert_series_equal(mb.tables["mds_ed.csv"]["deterioration_mortality_28d"],
                                   mo.tables["mds_ed.csv"]["deterioration_mortality_28d"])
    pd.testing.assert_series_equal(mb.truth["icu_24h_unbiased"], mo.truth["icu_24h_unbiased"])


def _effects(scale: float) -> dict[str, float]:
    """Size of every mechanism for Black patients at knob ``scale`` (each knob alone)."""
    base, mbase = _me(), _mds()
    r5, r5m = _race5(base), _race5(mbase)
    blk, blkm = r5 == "Black", r5m == "Black"
    out = {}
    on = _me(_one("spo2_overread", scale))
    b = base.tables["ED/triage.csv"]["o2sat"].to_numpy()
    m = blk & (b <= 95)  # readings below the ceiling at either scale
    out["spo2_overread"] = (on.tables["ED/triage.csv"]["o2sat"].to_numpy() - b)[m].mean()
    on = _me(_one("under_triage", scale))
    out["under_triage"] = (on.tables["ED/triage.csv"]["acuity"] - base.tables["ED/triage.csv"]["acuity"])[blk].mean()
    on = _me(_one("cxr_underdocumentation", scale))
    out["cxr_underdocumentation"] = 1 - _documented_fraction(on, base.truth, r5, "Black")[0]
    on = _mds(_one("unequal_access", scale))
    out["unequal_access"] = on.truth["labs_missing"][blkm].mean() - mbase.truth["labs_missing"][blkm].mean()
    on = _me(_one("label_bias", scale))
    adm = lambda st: (st.tables["ED/edstays.csv"]["disposition"] == "ADMITTED")[blk].mean()  # noqa: E731
    out["label_bias"] = adm(base) - adm(on)
    return out


def test_knob_scaling():
    e1, e2 = _effects(1.0), _effects(2.0)
    for k in e1:
        assert e2[k] > 1.4 * e1[k] > 0, (k, e1[k], e2[k])
    assert e2["spo2_overread"] / e1["spo2_overread"] == pytest.approx(2.0, abs=0.15)
    assert e2["cxr_underdocumentation"] == pytest.approx(2 * GROUP_EFFECTS["cxr_underdocumentation"]["Black"], abs=0.06)
    assert e2["unequal_access"] == pytest.approx(2 * GROUP_EFFECTS["unequal_access"]["Black"], abs=0.06)


def test_bias_knobs_from_dict_validates():
    assert BiasKnobs.from_dict(None) == BiasKnobs()
    assert BiasKnobs.from_dict({"label_bias": 2}).label_bias == 2.0
    with pytest.raises(ValueError, match="spo2_overead"):
        BiasKnobs.from_dict({"spo2_overead": 1})
    with pytest.raises(ValueError, match=r"under_triage.*-0\.5"):
        BiasKnobs.from_dict({"under_triage": -0.5})
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="label_bias"):
            BiasKnobs.from_dict({"label_bias": bad})
    with pytest.raises(ValueError, match="spo2_overead"):
        generator_params("mimic_eye", {"bias_knobs": {"spo2_overead": 1}})
    with pytest.raises(ValueError, match="n_patients"):
        generator_params("mds_ed", {"n_patients": 10})


# ---------------------------------------------------------------------------------- 4. informativeness
def _partial_corr(y, x, z):
    """Correlation of y and x after removing a linear effect of z from both."""
    Z = np.column_stack([np.ones_like(z), z])
    ry = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    return np.corrcoef(ry, rx)[0, 1]


def test_cxr_informativeness():
    off, full = _me(informativeness=(("cxr", 0.0),)), _me(informativeness=(("cxr", 1.0),))
    half = _me(informativeness=(("cxr", 0.5),))
    # the latent truth and the other modalities do not depend on the CXR's informativeness
    pd.testing.assert_frame_equal(off.truth[["severity", "heart_failure", "pneumonia"]],
                                  full.truth[["severity", "heart_failure", "pneumonia"]])
    pd.testing.assert_frame_equal(off.tables["ED/triage.csv"], full.tables["ED/triage.csv"])
    p, ed = off.tables["Hosp/patients.csv"], off.tables["ED/edstays.csv"]
    age = (p["anchor_age"] + pd.to_datetime(ed["intime"]).dt.year - p["anchor_year"]).to_numpy(float)

    def corrs(st):
        hf, pn = st.truth["heart_failure"].to_numpy(float), st.truth["pneumonia"].to_numpy(float)
        # heart size also grows a little with age (which the image shows at any informativeness): partial it out
        return (_partial_corr(st.render["ctr"].to_numpy(), hf, age),
                np.corrcoef(st.render["consolidation"], pn)[0, 1],
                np.corrcoef(st.render["edema"], hf)[0, 1])

    c0, ch, c1 = corrs(off), corrs(half), corrs(full)
    assert all(abs(x) < 0.05 for x in c0), c0
    # the X-ray shows heart failure and pneumonia 85% of the time (CONDITION_SEEN), and interstitial oedema also
    # comes from the lungs' own severity: strong, not perfect, correlations at informativeness 1
    assert all(x > 0.6 for x in c1), c1
    assert all(a + 0.1 < b < c - 0.1 for a, b, c in zip(c0, ch, c1)), (c0, ch, c1)
    with pytest.raises(ValueError, match="informativeness"):
        mimic_eye_tables(10, 0, informativeness={"cxr": 1.5})


def test_ecg_informativeness():
    off, full = _mds(informativeness=(("ecg", 0.0),)), _mds()
    first = (off.tables["mds_ed.csv"]["general_ecg_no_within_stay"] == 0).to_numpy()  # one ECG row per stay
    assert abs(np.corrcoef(off.render["af"][first], off.truth["af"])[0, 1]) < 0.05
    assert np.corrcoef(full.render["af"][first], full.truth["af"])[0, 1] > 0.99
    pd.testing.assert_frame_equal(off.tables["mds_ed.csv"], full.tables["mds_ed.csv"])


# ----------------------------------------------------------------------------------------- 5. demo size
def _demo():
    """The demo profile's size, split fractions and seed (the sizes the book is designed for)."""
    import yaml

    p = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "demo.yml").read_text())
    return int(p["n_patients"]), tuple(p["split_fractions"]), int(p["seed"])


def _test_subgroups_mimic_eye(seed):
    n, fractions, _ = _demo()
    st = mimic_eye_tables(n, seed)  # default knobs, as the demo
    ed = st.tables["ED/edstays.csv"]
    ed = ed[ed["disposition"].isin(["ADMITTED", "HOME"])]  # the loader's exclusion (outcome undefined)
    stays = pd.DataFrame({"subject_id": ed["subject_id"].to_numpy(),
                          "race_binary": ed["race"].map(race_binary_of).to_numpy(), "gender": ed["gender"].to_numpy()})
    stays["split"] = _assign_splits(stays, fractions, seed).to_numpy()
    t = stays[stays["split"] == "test"]
    return t.groupby(["race_binary", "gender"]).size()


def _test_subgroups_mds_ed(seed):
    n, fractions, _ = _demo()
    df = mds_ed_tables(n, seed).tables["mds_ed.csv"]
    t = df[df["general_strat_fold"].isin(folds_of_splits(fractions)["test"]) & (df["general_ecg_no_within_stay"] == 0)]
    return t.groupby([t["general_race"].map(race_binary_of), np.where(t["demographics_gender"] == 1, "M", "F")]).size()


@pytest.mark.parametrize("cohort", ["mimic_eye", "mds_ed"])
def test_demo_size_subgroups(cohort):
    """The demo profile gives every (White / non-White x gender) test subgroup at least 150 stays."""
    sizes = (_test_subgroups_mimic_eye if cohort == "mimic_eye" else _test_subgroups_mds_ed)(_demo()[2])
    for rb in ("White", "non-White"):
        for g in ("F", "M"):
            assert sizes.get((rb, g), 0) >= 150, f"{cohort}: test split has {sizes.get((rb, g), 0)} {rb} {g} stays"


# ------------------------------------------------------------------------------------ 6. splits
def test_stratified_assign_exact_fractions():
    strata = np.array(["a"] * 100 + ["b"] * 1000 + ["c"] * 40 + ["d"] * 37)
    strata = strata[np.random.default_rng(0).permutation(strata.size)]
    fr = (0.7, 0.1, 0.2)
    out = stratified_assign(strata, fr, seed=1)
    assert set(out) == {0, 1, 2}
    for s, size in (("a", 100), ("b", 1000), ("c", 40)):
        counts = np.bincount(out[strata == s], minlength=3)
        assert counts.tolist() == [round(f * size) for f in fr], s
    counts = np.bincount(out[strata == "d"], minlength=3)
    assert counts.sum() == 37 and (np.abs(counts - np.array(fr) * 37) <= 1).all()
    np.testing.assert_array_equal(out, stratified_assign(strata, fr, seed=1))
    assert not np.array_equal(out, stratified_assign(strata, fr, seed=2))
    z = stratified_assign(strata, (0.8, 0.0, 0.2), seed=1)
    assert (z != 1).all() and (np.bincount(z[strata == "a"], minlength=3) == [80, 0, 20]).all()
    for bad in ((0.7, 0.1), (0.5, 0.6, -0.1), (0.7, 0.2, 0.2)):
        with pytest.raises(ValueError, match="summing to 1"):
            stratified_assign(strata, bad, seed=0)


# ---------------------------------------------------------------------------- 7. atomic generation
def _boom(*args, **kwargs):
    raise RuntimeError("renderer failed")


@pytest.mark.parametrize("cohort,target", [("mimic_eye", (mmlib.data.cxr, "render_cxr")),
                                           ("mds_ed", (mmlib.data.ecg, "simulate_ecg"))])
def test_failed_generation_leaves_nothing(cohort, target, tmp_path, monkeypatch):
    params = TINY_ME if cohort == "mimic_eye" else TINY_MDS
    with monkeypatch.context() as m:
        m.setattr(*target, _boom)
        with pytest.raises(RuntimeError, match="renderer failed"):
            generate(cohort, params, data_dir=tmp_path, progress=False)
    root = synthetic_root(cohort, params, tmp_path)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # no .tmp- sibling either
    # a complete cohort survives a failed forced regeneration
    root, reused = generate(cohort, params, data_dir=tmp_path, progress=False)
    assert not reused
    before = _files(root)
    with monkeypatch.context() as m:
        m.setattr(*target, _boom)
        with pytest.raises(RuntimeError):
            generate(cohort, params, data_dir=tmp_path, progress=False, force=True)
    assert [p.name for p in tmp_path.iterdir()] == [root.name]
    assert _files(root) == before


# ------------------------------------------------------------------------------- 8. reuse, folder keys
def test_generate_reuses_and_keys_folders_by_params(tmp_path):
    # generated here rather than taken from the module fixture: the folder key hashes the generator's source,
    # so the fixture's folder would not be reused if a generator file were edited while the tests run
    d = tmp_path
    for cohort, params in (("mimic_eye", TINY_ME), ("mds_ed", TINY_MDS)):
        root, reused = generate(cohort, params, data_dir=d, progress=False)
        assert not reused
        mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
        again, reused = generate(cohort, dict(reversed(list(params.items()))), data_dir=d, progress=False)
        assert reused and again == root
        assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes
        assert synthetic_root(cohort, params, d) == root
        assert root.name.startswith(f"{cohort}-n{N_TINY}-s0-")
        roots = {synthetic_root(cohort, params | {"bias_knobs": {k: 0}}, d) for k in OFF}
        roots |= {synthetic_root(cohort, params | {"bias_knobs": {"label_bias": 2}}, d),
                  synthetic_root(cohort, params | {"informativeness": {"vitals": 0.5}}, d),
                  synthetic_root(cohort, params | {"seed": 1}, d), root}
        assert len(roots) == len(OFF) + 4
        # explicit defaults name the same folder as omitted ones
        assert synthetic_root(cohort, params | {"bias_knobs": {"label_bias": 1.0}}, d) == root
    assert synthetic_root("mimic_eye", TINY_ME, d) != synthetic_root("mds_ed", TINY_MDS, d)
    assert json.loads((root / "synthetic_params.json").read_text()) == generator_params("mds_ed", TINY_MDS)
    _, reused = generate("mds_ed", TINY_MDS, data_dir=d, progress=False, force=True)
    assert not reused


# ------------------------------------------------------------------------- 5. complementary modalities
def test_modalities_see_complementary_parts_of_the_latent_state():
    """Each modality reads its own parts of severity (MODALITY_SEES) and only the conditions it can show
    (CONDITION_SEEN), so together the modalities carry more of the latent state than any one alone."""
    from mmlib.data.latent import CONDITION_SEEN, MODALITY_SEES, SEVERITY_PARTS, modality_view, simulate_population
    pop = simulate_population(20_000, 3)
    views = {m: modality_view(pop, m, 1.0, 3) for m in MODALITY_SEES}
    for m, v in views.items():
        for part in SEVERITY_PARTS:
            r = np.corrcoef(v["severity"], pop[f"severity_{part}"])[0, 1]
            assert (r > 0.1) if part in MODALITY_SEES[m] else (abs(r) < 0.05), (m, part, r)
        for c, seen in CONDITION_SEEN.items():
            r = np.corrcoef(v[c], pop[c])[0, 1]
            assert (r > 0.05) if seen.get(m, 0) else (abs(r) < 0.04), (m, c, r)

    def r2(cols):
        x = np.column_stack([views[m]["severity"] for m in cols] + [np.ones(len(pop))])
        fit = np.linalg.lstsq(x, pop["severity"], rcond=None)[0]
        return 1 - np.var(pop["severity"] - x @ fit) / np.var(pop["severity"])
    for cohort, mods in {"mimic_eye": ("arrival", "vitals", "codes", "cxr"), "mds_ed": ("arrival", "vitals", "labs", "ecg")}.items():
        single = max(r2([m]) for m in mods)
        assert r2(mods) > single + 0.1, (cohort, r2(mods), single)
    # informativeness 0 leaves only age: the view's severity no longer tracks the parts
    blind = modality_view(pop, "cxr", 0.0, 3)
    assert abs(np.corrcoef(blind["severity"], pop["severity_respiratory"])[0, 1]) < 0.05
