"""The MIMIC-Eye loader on malformed inputs: every one is an error naming file, column, ids and what was
expected, or a counted exclusion / correction -- none is accepted silently.

Each case copies a small valid twin (60 patients, 64-pixel images; written in the importer's layout), mutates
one thing the way a damaged or differently-exported release could differ, and asserts the exact outcome.
The files are edited as text tables (``dtype=str``), keeping the importer's leading index column.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlib.data import load_cohort
from mmlib.data.synth import generate
from mmlib.data.validate import check_split_classes

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """The valid twin, its cohort, and the stay every case mutates: one with a CXR, vitals and history."""
    root, _ = generate("mimic_eye", {"n": 60, "seed": 0, "image_size": 64}, data_dir=tmp_path_factory.mktemp("rob"),
                       progress=False)
    base = load_cohort("mimic_eye", root, progress=False)
    v = base.modalities["vitals"]
    ok = base.availability["cxr"] & (v["series_n"] > 0)
    stay = int(base.stays.index[ok][0])
    cxr = base.modalities["cxr"].loc[stay]
    ctx = {"stay": stay, "subj": int(base.stays.loc[stay, "subject_id"]), "study": int(cxr["study_id"]),
           "dicom": cxr["dicom_id"], "other_subj": int(base.stays["subject_id"].iloc[-1])}
    assert ctx["other_subj"] != ctx["subj"]
    return root, base, ctx


def _edit(path: Path, fn) -> None:
    df = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    df = fn(df)
    df.to_csv(path)


def _p(root, ctx, rel, who="subj"):
    return root / f"patient_{ctx[who]}" / rel


def _set(col, value, where=None):
    def fn(df):
        m = slice(None) if where is None else where(df)
        df.loc[m, col] = value
        return df
    return fn


def _is_stay(ctx):
    return lambda df: df["stay_id"] == str(ctx["stay"])


# ----------------------------------------------------------------------------------------------- mutations
def m_patients_missing(root, ctx):
    (root / "spreadsheets/Hosp/patients.csv").unlink()


def m_patients_row_missing(root, ctx):
    _edit(root / "spreadsheets/Hosp/patients.csv", lambda df: df[df["subject_id"] != str(ctx["subj"])])


def _patients(col, value):
    def m(root, ctx):
        _edit(root / "spreadsheets/Hosp/patients.csv", _set(col, value, lambda df: df["subject_id"] == str(ctx["subj"])))
    return m


def m_patients_dup(conflicting):
    def m(root, ctx):
        def fn(df):
            row = df[df["subject_id"] == str(ctx["subj"])].copy()
            if conflicting:
                row["anchor_age"] = str(int(row["anchor_age"].iloc[0]) + 1)
            return pd.concat([df, row])
        _edit(root / "spreadsheets/Hosp/patients.csv", fn)
    return m


def _edstays(col, value):
    def m(root, ctx):
        _edit(_p(root, ctx, "ED/edstays.csv"), _set(col, value, _is_stay(ctx)))
    return m


def m_outtime_before_intime(root, ctx):
    def fn(df):
        m = _is_stay(ctx)(df)
        df.loc[m, "outtime"] = (pd.to_datetime(df.loc[m, "intime"]) - pd.Timedelta(hours=1)).dt.strftime("%Y-%m-%d %H:%M:00")
        return df
    _edit(_p(root, ctx, "ED/edstays.csv"), fn)


def m_ethnicity_column(root, ctx):
    for f in root.glob("patient_*/ED/edstays.csv"):
        _edit(f, lambda df: df.rename(columns={"race": "ethnicity"}))


def m_edstays_dup(conflicting):
    def m(root, ctx):
        def fn(df):
            row = df[_is_stay(ctx)(df)].copy()
            if conflicting:
                row["disposition"] = "ELOPED" if row["disposition"].iloc[0] != "ELOPED" else "HOME"
            return pd.concat([df, row])
        _edit(_p(root, ctx, "ED/edstays.csv"), fn)
    return m


def _triage(col, value):
    def m(root, ctx):
        _edit(_p(root, ctx, "ED/triage.csv"), _set(col, value, _is_stay(ctx)))
    return m


def _first_vital(col, value):
    def m(root, ctx):
        def fn(df):
            i = df.index[_is_stay(ctx)(df)][0]
            df.loc[i, col] = value if not callable(value) else value(df.loc[i, col])
            return df
        _edit(_p(root, ctx, "ED/vitalsign.csv"), fn)
    return m


def m_triage_drop_acuity(root, ctx):
    _edit(_p(root, ctx, "ED/triage.csv"), lambda df: df.drop(columns="acuity"))


def m_no_ed_folder(root, ctx):
    shutil.rmtree(_p(root, ctx, "ED"))


def m_ed_without_edstays(root, ctx):
    _p(root, ctx, "ED/edstays.csv").unlink()


def m_cxr_meta_missing(root, ctx):
    _p(root, ctx, "CXR-JPG/cxr_meta.csv").unlink()


def m_row_in_wrong_folder(root, ctx):
    _edit(_p(root, ctx, "ED/triage.csv"), _set("subject_id", str(ctx["other_subj"]), _is_stay(ctx)))


def m_empty_vitalsign(root, ctx):
    _p(root, ctx, "ED/vitalsign.csv").write_text("")


def m_lateral_listed_first(root, ctx):
    def fn(df):
        row = df[df["dicom_id"] == ctx["dicom"]].copy()
        row["dicom_id"], row["ViewPosition"] = "ffffffff-00000000-00000000-00000000-lateral0", "LATERAL"
        row["StudyTime"] = str(float(row["StudyTime"].iloc[0]) - 100)  # a minute earlier
        return pd.concat([df, row.set_axis(["999999"])])
    _edit(_p(root, ctx, "CXR-JPG/cxr_meta.csv"), fn)
    folder = _p(root, ctx, f"CXR-JPG/s{ctx['study']}")
    shutil.copy(folder / f"{ctx['dicom']}.jpg", folder / "ffffffff-00000000-00000000-00000000-lateral0.jpg")


def _meta(col, value):
    def m(root, ctx):
        _edit(_p(root, ctx, "CXR-JPG/cxr_meta.csv"), _set(col, value, lambda df: df["dicom_id"] == ctx["dicom"]))
    return m


def m_meta_conflicting_dicom(root, ctx):
    def fn(df):
        row = df[df["dicom_id"] == ctx["dicom"]].copy()
        row["ViewPosition"] = "AP" if row["ViewPosition"].iloc[0] == "PA" else "PA"
        return pd.concat([df, row])
    _edit(_p(root, ctx, "CXR-JPG/cxr_meta.csv"), fn)


def m_chexpert_row_missing(root, ctx):
    _edit(_p(root, ctx, "CXR-JPG/cxr_chexpert.csv"), lambda df: df[df["study_id"] != str(ctx["study"])])


def _chexpert(label, value):
    def m(root, ctx):
        _edit(_p(root, ctx, "CXR-JPG/cxr_chexpert.csv"), _set(label, value, lambda df: df["study_id"] == str(ctx["study"])))
    return m


def m_all_home(root, ctx):
    for f in root.glob("patient_*/ED/edstays.csv"):
        _edit(f, _set("disposition", "HOME", lambda df: df["disposition"] == "ADMITTED"))


# -------------------------------------------------------------------------------------- expected outcomes
def counted(check):
    return ("counted", check)


def error(exc, pattern):
    return ("error", exc, pattern)


def _same_stays(c, base):
    pd.testing.assert_frame_equal(c.stays, base.stays)


def _dups(rel, n):
    def check(c, base, ctx):
        assert {k: v for k, v in c.info.items() if k.startswith("duplicate_rows_removed.")} == {f"duplicate_rows_removed.{rel}": n}
        _same_stays(c, base)
    return check


def _range(key, col):
    def check(c, base, ctx):
        assert {k: v for k, v in c.info.items() if k.startswith("out_of_range_as_nan.")} == {f"out_of_range_as_nan.{key}": 1}
        if col is not None:
            assert pd.isna(c.modalities["vitals"].loc[ctx["stay"], col])
    return check


def _vital_outside(c, base, ctx):
    assert c.info["vitalsign_rows_outside_their_stay"] == 1
    v, v0 = c.modalities["vitals"], base.modalities["vitals"]
    assert v.loc[ctx["stay"], "series_n"] == v0.loc[ctx["stay"], "series_n"] - 1


def _no_ed(c, base, ctx):
    step = "no ED/ folder: no MIMIC-IV-ED stay"
    f, f0 = c.flow.set_index("step")["excluded"], base.flow.set_index("step")["excluded"]
    assert f[step] == f0[step] + 1 and ctx["stay"] not in c.stays.index
    assert c.flow["remaining"].iloc[-1] == base.flow["remaining"].iloc[-1] - 1


def _lateral(c, base, ctx):
    assert c.info["cxr_meta_rows_not_frontal"] == 1
    assert c.modalities["cxr"].loc[ctx["stay"], "dicom_id"] == ctx["dicom"]
    _same_stays(c, base)


def _no_chexpert(c, base, ctx):
    assert c.info["cxr_without_chexpert_row"] == 1
    assert c.stays.loc[ctx["stay"], ["cxr_cardiomegaly", "cxr_consolidation", "cxr_edema", "cxr_pleural_effusion"]].isna().all()
    assert c.availability.loc[ctx["stay"], "cxr"]  # the image is still a feature


def _uncertain(c, base, ctx):
    assert np.isnan(c.stays.loc[ctx["stay"], "cxr_edema"])
    was = base.stays.loc[ctx["stay"], "cxr_edema"]
    assert c.info["chexpert_uncertain_as_nan.cxr_edema"] == base.info["chexpert_uncertain_as_nan.cxr_edema"] + (
        0 if np.isnan(was) else 1)


def _male(c, base, ctx):
    assert c.stays.loc[ctx["stay"], "gender"] == "M" and base.stays.loc[ctx["stay"], "gender"] in ("M", "F")
    assert (c.stays.drop(index=ctx["stay"])["gender"] == base.stays.drop(index=ctx["stay"])["gender"]).all()


def _empty_race(c, base, ctx):
    assert c.info["race_empty_as_unknown"] == base.info["race_empty_as_unknown"] + 1
    assert c.stays.loc[ctx["stay"], "race_raw"] == "UNKNOWN" and c.stays.loc[ctx["stay"], "race_binary"] == "Unknown"


def _ethnicity(c, base, ctx):
    assert c.info["race_column"] == "ethnicity" and base.info["race_column"] == "race"
    _same_stays(c, base)


def _stay_id_ignored(c, base, ctx):
    _same_stays(c, base)
    pd.testing.assert_frame_equal(c.modalities["cxr"], base.modalities["cxr"])


CASES = {
    "patients.csv missing": (m_patients_missing, error(
        FileNotFoundError, r"spreadsheets/Hosp/patients\.csv: required file is missing; expected MIMIC-Eye's whole-table")),
    "patient without a patients.csv row": (m_patients_row_missing, error(
        ValueError, r"spreadsheets/Hosp/patients\.csv: no row for subject\(s\) \[{subj}\]; expected one row per patient")),
    "anchor_age not a number": (_patients("anchor_age", "abc"), error(
        ValueError, r"patients\.csv column 'anchor_age': 1 value\(s\) are not numbers \(e\.g\. 'abc' for subject_id "
                    r"\[{subj}\]\); expected a number")),
    "anchor_age fractional": (_patients("anchor_age", "45.5"), error(
        ValueError, r"patients\.csv column 'anchor_age': non-integer value\(s\) \(e\.g\. 45\.5\) for subject_id \[{subj}\]; "
                    r"expected whole numbers")),
    "negative age": (_patients("anchor_age", "-40"), error(
        ValueError, r"patients\.csv columns 'anchor_age'/'anchor_year': impossible age\(s\) \[-?\d+\.?\d*\] at the ED visit "
                    r"for subject\(s\) \[{subj}\]; expected 0-120 years")),
    "age 300": (_patients("anchor_age", "300"), error(
        ValueError, r"impossible age\(s\) \[\d+\.?\d*\] at the ED visit for subject\(s\) \[{subj}\]; expected 0-120 years")),
    "patients.csv conflicting duplicate": (m_patients_dup(True), error(
        ValueError, r"patients\.csv: 2 rows share a subject_id with different content \(e\.g\. \[{subj}\]\); "
                    r"expected one row per patient")),
    "patients.csv exact duplicate": (m_patients_dup(False), counted(_dups("spreadsheets/Hosp/patients.csv", 1))),
    "gender spelled 'Male'": (_edstays("gender", "Male"), counted(_male)),
    "gender 'X'": (_edstays("gender", "X"), error(
        ValueError, r"ED/edstays\.csv column 'gender': 1 value\(s\) not a gender code \(e\.g\. 'X' for stay_id \[{stay}\]\); "
                    r"expected 'M' or 'F'")),
    "empty race": (_edstays("race", ""), counted(_empty_race)),
    "unknown race": (_edstays("race", "MARTIAN"), error(
        ValueError, r"ED/edstays\.csv column 'race': unknown race string\(s\) \['MARTIAN'\]; expected one of MIMIC-IV's")),
    "older 'ethnicity' column": (m_ethnicity_column, counted(_ethnicity)),
    "edstays conflicting duplicate stay": (m_edstays_dup(True), error(
        ValueError, r"ED/edstays\.csv: 2 rows share a stay_id with different content \(e\.g\. \[{stay}\]\); "
                    r"expected one row per ED stay")),
    "edstays exact duplicate row": (m_edstays_dup(False), counted(_dups("ED/edstays.csv", 1))),
    "outtime before intime": (m_outtime_before_intime, error(
        ValueError, r"ED/edstays\.csv columns 'intime'/'outtime': outtime before intime for stay_id \[{stay}\]; "
                    r"expected outtime >= intime")),
    "intime not a date-time": (_edstays("intime", "yesterday"), error(
        ValueError, r"ED/edstays\.csv column 'intime': 1 value\(s\) are not date-times \(e\.g\. 'yesterday' for stay_id "
                    r"\[{stay}\]\); expected 'YYYY-MM-DD HH:MM:SS'")),
    "triage heartrate text": (_triage("heartrate", "fast"), error(
        ValueError, r"ED/triage\.csv column 'heartrate': 1 value\(s\) are not numbers \(e\.g\. 'fast' for stay_id "
                    r"\[{stay}\]\); expected a number")),
    "triage o2sat infinite": (_triage("o2sat", "inf"), error(
        ValueError, r"ED/triage\.csv column 'o2sat': 1 non-finite value\(s\) for stay_id \[{stay}\]; expected finite numbers")),
    "triage temperature in Celsius": (_triage("temperature", "37.0"),
                                      counted(_range("ED/triage.csv:temperature", "triage_temperature"))),
    "triage column missing": (m_triage_drop_acuity, error(
        ValueError, r"patient_\*/ED/triage\.csv: missing column\(s\) \['acuity'\]; expected at least")),
    "vitalsign sbp 1200": (_first_vital("sbp", "1200.0"), counted(_range("ED/vitalsign.csv:sbp", None))),
    "vitalsign charted before arrival": (_first_vital("charttime", lambda t: (pd.Timestamp(t) - pd.Timedelta(days=2))
                                                      .strftime("%Y-%m-%d %H:%M:00")), counted(_vital_outside)),
    "vitalsign charttime not a time": (_first_vital("charttime", "noon"), error(
        ValueError, r"ED/vitalsign\.csv column 'charttime': 1 value\(s\) are not date-times \(e\.g\. 'noon' for stay_id "
                    r"\[{stay}\]\)")),
    "vitalsign.csv empty file": (m_empty_vitalsign, error(
        ValueError, r"patient_{subj}/ED/vitalsign\.csv: empty file; expected a CSV header")),
    "patient without ED/ folder": (m_no_ed_folder, counted(_no_ed)),
    "ED/ folder without edstays.csv": (m_ed_without_edstays, error(
        FileNotFoundError, r"patient_{subj}/ED/edstays\.csv: required file is missing")),
    "cxr_meta.csv missing": (m_cxr_meta_missing, error(
        FileNotFoundError, r"patient_{subj}/CXR-JPG/cxr_meta\.csv: required file is missing")),
    "row in another patient's folder": (m_row_in_wrong_folder, error(
        ValueError, r"ED/triage\.csv column 'subject_id': 1 row\(s\) in another patient's folder \(e\.g\. subject "
                    r"{other_subj} in patient_{subj}\)")),
    "lateral listed before the frontal": (m_lateral_listed_first, counted(_lateral)),
    "cxr_meta conflicting duplicate dicom": (m_meta_conflicting_dicom, error(
        ValueError, r"CXR-JPG/cxr_meta\.csv: 2 rows share a dicom_id with different content \(e\.g\. \['{dicom}'\]\)")),
    "StudyTime impossible": (_meta("StudyTime", "250000.0"), error(
        ValueError, r"CXR-JPG/cxr_meta\.csv columns 'StudyDate'/'StudyTime': 1 impossible value\(s\) .*dicom_id "
                    r"\['{dicom}'\]\); expected StudyDate YYYYMMDD and StudyTime HHMMSS\.fff")),
    "StudyDate not a number": (_meta("StudyDate", "2180-01-01"), error(
        ValueError, r"CXR-JPG/cxr_meta\.csv column 'StudyDate': 1 value\(s\) are not numbers .*dicom_id \['{dicom}'\]")),
    "importer's stay_id wrong": (_meta("stay_id", "39999999.0"), counted(_stay_id_ignored)),
    "study without a CheXpert row": (m_chexpert_row_missing, counted(_no_chexpert)),
    "CheXpert value 2.0": (_chexpert("Edema", "2.0"), error(
        ValueError, r"CXR-JPG/cxr_chexpert\.csv column 'Edema': value\(s\) \[2\.0\] for study_id \[{study}\]; "
                    r"expected 1\.0 \(positive\), 0\.0 \(negative\), -1\.0 \(uncertain\) or blank")),
    "CheXpert uncertain": (_chexpert("Edema", "-1.0"), counted(_uncertain)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name, valid, tmp_path):
    root0, base, ctx = valid
    root = tmp_path / "copy"
    shutil.copytree(root0, root)
    mutate, expect = CASES[name]
    mutate(root, ctx)
    if expect[0] == "error":
        _, exc, pattern = expect
        with pytest.raises(exc, match=pattern.format(**{k: re.escape(str(v)) for k, v in ctx.items()})):
            load_cohort("mimic_eye", root, progress=False)
    else:
        c = load_cohort("mimic_eye", root, progress=False)
        expect[1](c, base, ctx)


def test_split_with_one_class_of_the_primary_target(valid, tmp_path):
    """Nobody admitted: every split has one class of ``admitted``; check_split_classes refuses it by name."""
    root0, base, ctx = valid
    root = tmp_path / "copy"
    shutil.copytree(root0, root)
    m_all_home(root, ctx)
    c = load_cohort("mimic_eye", root, progress=False)
    assert (c.stays["admitted"] == 0).all()
    with pytest.raises(ValueError, match=r"split '(train|val|test)' has only class\(es\) \[0\.0\] of the primary target "
                                         r"'admitted' \(\d+ stays\); expected both 0 and 1 in every split"):
        check_split_classes(c.stays, c.primary_target, str(root))
    check_split_classes(base.stays.assign(split="train"), base.primary_target, str(root0))  # both classes: passes


def test_the_table_is_large_enough():
    assert len(CASES) >= 22
    assert sum(e[0] == "error" for _, e in CASES.values()) >= 15
