"""Fidelity of the synthetic MIMIC-Eye twin, and of its loader, to the release as MIMIC-Eye's importer writes it.

The helpers below re-create the importer's conventions in test code (they are read from GitHub
ChihchengHsieh/MIMIC-Eye, ``utils/importer.py`` and the patient-level notebooks (1) and (4); none of its code
is copied here):

- every source table with a ``subject_id`` goes into the patient folders with ``matches.to_csv(path)``, i.e.
  with the pandas index of the whole table as a leading unnamed column, and only for patients with rows
  (``ED/``, ``Hosp/``); the CXR-JPG tables go to every patient listed in ``cxr_meta`` (header only if empty);
- ``patients`` is written whole to ``spreadsheets/Hosp/patients.csv`` only (and ``triage`` whole beside it);
- ``cxr_meta`` = the eye-tracked rows of the MIMIC-CXR metadata with ``in_eye_gaze``, ``in_reflacx``,
  ``StudyDateTime = float(str(StudyDate) + str(StudyTime))`` and the ``stay_id`` of the single ED stay whose
  digit-string times enclose it (strictly), written to ``spreadsheets/cxr_meta.csv``, read back with
  ``index_col=0`` and then split by patient.

The twin's files are compared byte for byte with what these conventions make of the twin's own whole tables,
and the loader must read both to the same cohort.
"""
from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlib.data import load_cohort
from mmlib.data.synth import generate, mimic_eye_tables
from mmlib.schema import CXR_META_COLUMNS, CXR_META_EXTRA_COLUMNS, CXR_TARGETS

pytestmark = pytest.mark.timeout(300)

PARAMS = {"n": 80, "seed": 0, "image_size": 64}
ED_HOSP = ("ED/edstays.csv", "ED/triage.csv", "ED/vitalsign.csv", "ED/diagnosis.csv", "ED/medrecon.csv",
           "Hosp/admissions.csv", "Hosp/diagnoses_icd.csv")
CXR = ("CXR-JPG/cxr_chexpert.csv", "CXR-JPG/cxr_negbio.csv", "CXR-JPG/cxr_split.csv")


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    root, _ = generate("mimic_eye", PARAMS, data_dir=tmp_path_factory.mktemp("twin"), progress=False)
    return root


# ----------------------------------------------------------------------- the importer's conventions, re-created
def _as_read_from_source(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as ``pd.read_csv`` gives back the whole source table (types inferred over the whole table)."""
    return pd.read_csv(StringIO(df.to_csv(index=False)), low_memory=False)


def whole_tables(root: Path) -> dict[str, pd.DataFrame]:
    """The whole source tables behind a MIMIC-Eye folder: the per-patient rows put back in their source order
    (the index column is the source row number), or the spreadsheet where the importer writes one."""
    out = {}
    for rel in ED_HOSP:
        parts = [pd.read_csv(f, index_col=0, dtype=str, keep_default_na=False) for f in sorted(root.glob(f"patient_*/{rel}"))]
        df = pd.concat(parts).sort_index()
        out[rel] = _as_read_from_source(df).set_axis(df.index)
    for rel in ("Hosp/patients.csv", *CXR):
        df = pd.read_csv(root / "spreadsheets" / rel, index_col=0, dtype=str, keep_default_na=False)
        out[rel] = _as_read_from_source(df).set_axis(df.index)
    meta = pd.read_csv(root / "spreadsheets/cxr_meta.csv", index_col=0, dtype=str, keep_default_na=False)
    out["metadata"] = _as_read_from_source(meta[[*CXR_META_COLUMNS, "in_eye_gaze", "in_reflacx"]]).set_axis(meta.index)
    return out


def importer_stay_id(meta: pd.DataFrame, edstays: pd.DataFrame) -> tuple[list[float], list]:
    """StudyDateTime and stay_id as the importer's notebook (1) computes them, row by row."""
    def digits(x):
        return float("inf") if isinstance(x, float) and np.isnan(x) else float(
            x.replace("-", "").replace("/", "").replace(" ", "").replace(":", ""))

    when = [float(str(d) + str(t)) for d, t in zip(meta["StudyDate"], meta["StudyTime"])]
    lo, hi = edstays["intime"].map(digits), edstays["outtime"].map(digits)
    stay = []
    for s, t in zip(meta["subject_id"], when):
        m = edstays[(edstays["subject_id"] == s) & (lo < t) & (hi > t)]
        stay.append(m["stay_id"].iloc[0] if len(m) == 1 else None)
    return when, stay


def import_like_mimic_eye(src: dict[str, pd.DataFrame], out: Path, images_from: Path) -> Path:
    """Write ``out`` from the whole tables ``src`` with the importer's conventions (module docstring)."""
    meta = src["metadata"].copy()
    when, stay = importer_stay_id(meta, src["ED/edstays.csv"])
    meta["StudyDateTime"] = when
    meta["stay_id"] = pd.Series(stay, index=meta.index, dtype=object)  # set one by one into a None column
    (out / "spreadsheets/Hosp").mkdir(parents=True)
    meta.to_csv(out / "spreadsheets/cxr_meta.csv")
    meta = pd.read_csv(out / "spreadsheets/cxr_meta.csv", index_col=0)  # notebook (4) reads it back
    src["Hosp/patients.csv"].to_csv(out / "spreadsheets/Hosp/patients.csv")
    subjects = sorted(set(meta["subject_id"]))
    for rel in ED_HOSP:
        df = src[rel]
        for s in sorted(set(df["subject_id"]) & set(subjects)):
            (out / f"patient_{s}" / rel).parent.mkdir(parents=True, exist_ok=True)
            df[df["subject_id"] == s].to_csv(out / f"patient_{s}" / rel)
    for s in subjects:
        d = out / f"patient_{s}" / "CXR-JPG"
        d.mkdir(parents=True, exist_ok=True)
        meta[meta["subject_id"] == s].to_csv(d / "cxr_meta.csv")
        for rel in CXR:
            src[rel][src[rel]["subject_id"] == s].to_csv(out / f"patient_{s}" / rel)
        for study in sorted(set(meta.loc[meta["subject_id"] == s, "study_id"])):
            shutil.copytree(images_from / f"patient_{s}/CXR-JPG/s{study}", d / f"s{study}")
    return out


def _csv_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("patient_*/**/*.csv"))}


# ------------------------------------------------------------------------------------------------- tests
def test_twin_files_are_what_the_importer_writes(twin, tmp_path):
    """Byte for byte: the per-patient CSVs and patients.csv equal what the importer's conventions make of the
    twin's whole tables (which files exist, their rows, index column, number formats, cxr_meta's stay_id)."""
    out = import_like_mimic_eye(whole_tables(twin), tmp_path / "imported", twin)
    a, b = _csv_files(twin), _csv_files(out)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ[:5]
    assert (twin / "spreadsheets/Hosp/patients.csv").read_bytes() == (out / "spreadsheets/Hosp/patients.csv").read_bytes()
    assert (twin / "spreadsheets/cxr_meta.csv").read_bytes() == (out / "spreadsheets/cxr_meta.csv").read_bytes()
    # and the loader reads the two to the same cohort
    c1, c2 = load_cohort("mimic_eye", twin, progress=False), load_cohort("mimic_eye", out, progress=False)
    pd.testing.assert_frame_equal(c1.stays, c2.stays)
    pd.testing.assert_frame_equal(c1.flow, c2.flow)
    pd.testing.assert_frame_equal(c1.availability, c2.availability)
    for m in c1.modalities:
        pd.testing.assert_frame_equal(c1.modalities[m], c2.modalities[m], obj=m)


def test_twin_has_the_release_conventions(twin):
    dirs = sorted(twin.glob("patient_*"))
    assert len(dirs) == PARAMS["n"]
    assert not list(twin.glob("patient_*/Hosp/patients.csv")) and (twin / "spreadsheets/Hosp/patients.csv").is_file()
    no_ed = [d for d in dirs if not (d / "ED").exists()]
    assert 1 <= len(no_ed) < 5
    assert sum(not (d / "ED/vitalsign.csv").exists() for d in dirs) > len(no_ed)  # some ED patients lack it
    assert 0 < sum(not (d / "Hosp/admissions.csv").exists() for d in dirs) < 0.2 * len(dirs)  # release: 9 %
    ed = pd.concat([pd.read_csv(f, index_col=0) for f in twin.glob("patient_*/ED/edstays.csv")])
    assert (ed.groupby("subject_id").size() > 1).sum() >= 10  # several ED stays for some patients
    assert ed["intime"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00").all()
    assert ed["outtime"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00").all()
    assert ed["race"].isna().any() or (ed["race"] == "HISPANIC/LATINO").any()
    meta = pd.read_csv(twin / "spreadsheets/cxr_meta.csv", index_col=0)
    assert list(meta.columns) == [*CXR_META_COLUMNS, *CXR_META_EXTRA_COLUMNS]
    assert (meta["StudyTime"] % 1 != 0).mean() > 0.9  # fractional seconds, e.g. 92717.109
    assert set(meta["ViewPosition"]) == {"PA", "AP"}  # eye-tracked images are frontal ...
    split = pd.read_csv(twin / "spreadsheets/CXR-JPG/cxr_split.csv", index_col=0)
    lat = split.merge(meta[["study_id"]].drop_duplicates(), on="study_id")
    lat = lat[~lat["dicom_id"].isin(meta["dicom_id"])]
    assert len(lat) == (meta["ViewPosition"] == "PA").sum()  # ... the lateral beside each PA image is in the folder
    for r in lat.itertuples():
        assert (twin / f"patient_{r.subject_id}/CXR-JPG/s{r.study_id}/{r.dicom_id}.jpg").is_file()
    assert meta.groupby("subject_id").size().max() >= 2  # a second eye-tracked study for some patients
    chex = pd.read_csv(twin / "spreadsheets/CXR-JPG/cxr_chexpert.csv", index_col=0)
    assert set(meta["study_id"]) < set(chex["study_id"])  # every study of the patients, not only MIMIC-Eye's
    vals = chex[list(CXR_TARGETS)].stack(future_stack=True)
    assert {1.0, 0.0, -1.0} <= set(vals.dropna()) and vals.isna().any()
    # the importer's stay_id: blank for every study before 10:00 (str(StudyTime) loses the leading zero)
    assert meta.loc[meta["StudyTime"] < 100000, "stay_id"].isna().all()
    assert meta.loc[meta["StudyTime"] >= 100000, "stay_id"].notna().any()


def test_loader_recovers_the_simulators_index_stays(twin):
    """The index-stay rule picks exactly the simulator's stay for every patient with an ED folder, and the CXR
    modality is available exactly where the simulator put an image in the window (the studies before 10:00,
    which the importer could not link, included)."""
    c = load_cohort("mimic_eye", twin, progress=False)
    sim = mimic_eye_tables(PARAMS["n"], PARAMS["seed"])
    assert set(c.stays.index) <= set(sim.truth["stay_id"])
    assert c.stays["subject_id"].is_unique
    t = c.truth
    expected = t["cxr_in_stay"].astype(bool) & (t["cxr_minutes_after_arrival"] <= 180)
    pd.testing.assert_series_equal(c.availability["cxr"], expected, check_names=False)
    early = c.modalities["cxr"]["study_time"].dt.hour < 10
    assert (early & c.availability["cxr"]).any()
    f = c.flow.set_index("step")["excluded"]
    assert f["no ED/ folder: no MIMIC-IV-ED stay"] == sum(not (d / "ED").exists() for d in twin.glob("patient_*"))
    n_ed = c.flow["remaining"].iloc[1]
    assert c.info["index_stay_by_cxr"] + c.info["index_stay_first_stay"] == n_ed
    in_stay = sim.truth.set_index("stay_id")["cxr_in_stay"]
    assert 0 < c.info["index_stay_by_cxr"] <= in_stay.sum()
    assert c.info["patients_with_several_ed_stays"] >= 10


def test_chexpert_coding_is_kept_distinct(twin):
    """1 -> 1, 0 and blank -> 0, -1 -> NaN on the stay's study; counted per target; none without an image."""
    c = load_cohort("mimic_eye", twin, progress=False)
    chex = pd.read_csv(twin / "spreadsheets/CXR-JPG/cxr_chexpert.csv", index_col=0).set_index("study_id")
    study = c.modalities["cxr"]["study_id"]
    has = c.availability["cxr"]
    for label, col in CXR_TARGETS.items():
        raw = study[has].map(chex[label])
        y = c.stays.loc[has, col]
        assert (y[raw == 1.0] == 1).all() and (y[raw == 0.0] == 0).all() and (y[raw.isna()] == 0).all()
        assert y[raw == -1.0].isna().all()
        assert c.info[f"chexpert_uncertain_as_nan.{col}"] == int((raw == -1.0).sum())
        assert c.info[f"chexpert_not_mentioned_as_0.{col}"] == int(raw.isna().sum())
        assert c.stays.loc[~has, col].isna().all()
    assert sum(c.info[f"chexpert_uncertain_as_nan.{col}"] for col in CXR_TARGETS.values()) > 0
    assert all(isinstance(v, (int, float, str)) for v in c.info.values())  # one level, as the flow note shows it


def test_importer_writer_edge_cases(twin, tmp_path):
    """Through the importer's conventions: a lateral listed before the frontal in the stay is never the stay's
    X-ray; the older 'ethnicity' column is read; a patient whose only ED stay has no X-ray gets the first stay."""
    src = whole_tables(twin)
    c0 = load_cohort("mimic_eye", twin, progress=False)
    sid = c0.stays.index[c0.availability["cxr"]][0]
    row = c0.modalities["cxr"].loc[sid]
    meta = src["metadata"]
    lat = meta[meta["dicom_id"] == row["dicom_id"]].copy()
    lat["dicom_id"], lat["ViewPosition"] = "ffffffff-lateral-00000000-00000000-00000000", "LATERAL"
    lat["StudyTime"] = lat["StudyTime"] - 100  # one minute earlier
    src["metadata"] = pd.concat([meta, lat.set_axis([meta.index.max() + 1])])
    src["ED/edstays.csv"] = src["ED/edstays.csv"].rename(columns={"race": "ethnicity"})
    out = import_like_mimic_eye(src, tmp_path / "imported", twin)
    folder = out / f"patient_{c0.stays.loc[sid, 'subject_id']}/CXR-JPG/s{int(row['study_id'])}"
    shutil.copy(folder / f"{row['dicom_id']}.jpg", folder / f"{lat['dicom_id'].iloc[0]}.jpg")
    c = load_cohort("mimic_eye", out, progress=False)
    assert c.modalities["cxr"].loc[sid, "dicom_id"] == row["dicom_id"]
    assert c.info["cxr_meta_rows_not_frontal"] == 1 and c.info["race_column"] == "ethnicity"
    pd.testing.assert_frame_equal(c.stays, c0.stays)
