"""Reader of MIMIC-Eye 1.0.0 as its importer writes it (``../shared/LAYOUTS.md``), used by :func:`mmlib.data.load_cohort`.

The release (GitHub ChihchengHsieh/MIMIC-Eye, ``utils/importer.py`` and the patient-level notebooks) has one
folder ``patient_{subject_id}/`` per patient with an eye-tracked chest X-ray, holding ``ED/`` and ``Hosp/``
tables only where the patient has rows (no ``ED/`` folder at all for a patient without a MIMIC-IV-ED stay),
``CXR-JPG/`` tables and ``s{study_id}/{dicom_id}.jpg`` images, and a top-level ``spreadsheets/`` with whole
tables; MIMIC-IV hosp ``patients`` is only there (``spreadsheets/Hosp/patients.csv``). Every CSV carries the
pandas index as a leading unnamed column. :func:`load_mimic_eye` documents the cohort it builds.
"""
from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..schema import (AGE_RANGE, CHEXPERT_NOT_MENTIONED_AS, CHEXPERT_TARGET_OF, CXR_TARGETS, FRONTAL_VIEWS,
                      GENDER_CODES, MIMIC_EYE_FILES, MIMIC_EYE_PATIENTS_CSV, RACE_COLUMNS, VITAL_RANGES, VITALS)

from .races import check_mimic_races
from .validate import (Flow, blank_out_of_range, drop_duplicate_rows, numeric_field, parse_time,
                       require_columns, require_unique)

#: The index-stay rule, as :attr:`mmlib.data.Cohort.info` states it.
INDEX_STAY = ("one ED stay per patient: the stay during which the patient's first frontal (PA/AP) chest X-ray "
              "listed in CXR-JPG/cxr_meta.csv was taken (intime <= study time <= outtime); for a patient none of "
              "whose listed X-rays falls in an ED stay, the first ED stay (earliest intime)")
CHEXPERT_MAPPING = ("CheXpert 1.0 -> 1, 0.0 -> 0, blank (not mentioned) -> 0, -1.0 (uncertain) -> NaN (excluded "
                    "from that target), study without a cxr_chexpert.csv row -> NaN for every target")

_FOLDER = "__folder_subject_id__"


def _drop_index_column(df: pd.DataFrame) -> pd.DataFrame:
    """Without the importer's leading pandas-index column (``Unnamed: 0``), if there is one."""
    return df.loc[:, ~df.columns.astype(str).str.fullmatch(r"Unnamed: \d+")]


def read_patient_tables(root: Path, rel: str, patient_dirs: list[Path], required: bool, cols,
                        progress: bool) -> pd.DataFrame:
    """Concatenate ``patient_*/{rel}`` over ``patient_dirs`` with one CSV parse per distinct header.

    The importer's leading index column is dropped; a column ``__folder_subject_id__`` says whose folder each
    row came from. A missing file is skipped unless ``required``; a file without a header, or without the
    columns ``cols``, is an error naming it.
    """
    groups: dict[str, list[str]] = {}
    for d in tqdm(patient_dirs, desc=f"reading {rel}", disable=not progress, leave=False):
        p = d / rel
        try:
            text = p.read_text()
        except FileNotFoundError:
            if required:
                raise FileNotFoundError(f"{p}: required file is missing; expected MIMIC-Eye's layout "
                                        f"patient_{{subject_id}}/{rel}") from None
            continue
        header, _, body = text.partition("\n")
        if not header.strip():
            raise ValueError(f"{p}: empty file; expected a CSV header with columns {list(cols)}")
        sid = d.name.split("_", 1)[1]
        lines = [f"{sid},{line}\n" for line in body.splitlines() if line.strip()]
        groups.setdefault(header.strip(), []).extend(lines)
    if not groups:
        return pd.DataFrame(columns=[_FOLDER, *cols])
    frames = []
    for header, lines in groups.items():
        # codes stay text: an all-numeric ICD-9 column would otherwise lose leading zeros ('0389' -> 389)
        df = pd.read_csv(StringIO(f"{_FOLDER},{header}\n" + "".join(lines)), low_memory=False,
                         dtype={"icd_code": str, "pain": str, "dicom_id": str})
        df = _drop_index_column(df)
        require_columns(df, cols, f"{root}/patient_*/{rel}")
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    wrong = out["subject_id"].astype("string") != out[_FOLDER].astype("string")
    if wrong.any():
        raise ValueError(f"{root}/patient_*/{rel} column 'subject_id': {int(wrong.sum())} row(s) in another patient's "
                         f"folder (e.g. subject {out.loc[wrong, 'subject_id'].astype(str).iloc[0]} in patient_"
                         f"{out.loc[wrong, _FOLDER].iloc[0]}); expected each folder to hold only its patient's rows")
    return out


def _read_table(path: Path, cols) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: required file is missing; expected MIMIC-Eye's whole-table spreadsheet "
                                f"(the importer writes MIMIC-IV hosp patients only there)")
    df = _drop_index_column(pd.read_csv(path, low_memory=False))
    require_columns(df, cols, str(path))
    return df


def _study_times(meta: pd.DataFrame, where: str) -> pd.Series:
    """MIMIC-CXR's StudyDate (YYYYMMDD) + StudyTime (HHMMSS.fff, leading zero dropped) as date-times; an
    impossible date or time is an error naming the dicom ids."""
    date = numeric_field(meta, "StudyDate", where, "dicom_id", integer=True)
    tm = numeric_field(meta, "StudyTime", where, "dicom_id")
    day = pd.to_datetime(date.astype("Int64").astype("string"), format="%Y%m%d", errors="coerce")
    whole = np.floor(tm)
    hh, mm, ss = whole // 10000, whole // 100 % 100, tm % 100
    bad = date.isna() | tm.isna() | day.isna() | (tm < 0) | (hh > 23) | (mm > 59) | (ss >= 60)
    if bad.any():
        raise ValueError(f"{where} columns 'StudyDate'/'StudyTime': {int(bad.sum())} impossible value(s) (e.g. "
                         f"{meta.loc[bad, 'StudyDate'].iloc[0]!r} {meta.loc[bad, 'StudyTime'].iloc[0]!r} for dicom_id "
                         f"{meta.loc[bad, 'dicom_id'].head(3).tolist()}); expected StudyDate YYYYMMDD and StudyTime "
                         f"HHMMSS.fff (e.g. 92717.109 for 09:27:17.109)")
    return day + pd.to_timedelta(hh * 3600 + mm * 60 + ss, unit="s")


def _where(root, rel: str) -> str:
    """How an error names the table ``rel`` of the release under ``root``: a per-patient table as
    ``{root}/patient_*/{rel}``, a whole table under ``spreadsheets/`` as ``{root}/{rel}``."""
    return f"{root}/{rel}" if rel.startswith("spreadsheets/") else f"{root}/patient_*/{rel}"


def read_release(root: Path, progress: bool) -> dict:
    """Read the tables of the MIMIC-Eye release under ``root`` that the cohort is derived from, checking what only
    the files can show (the ``patient_*`` folders, each folder holding only its patient's rows, the columns of every
    CSV, an ``ED/`` folder only for a patient with ED stays). Returns ``{"tables": {release path: DataFrame},
    "subjects": the patients' ids in folder order}``: the per-patient tables concatenated over the folders (keyed
    ``ED/edstays.csv`` ...; a patient without the file has no rows) and ``spreadsheets/Hosp/patients.csv``, exact
    duplicate rows kept (:func:`cohort_from_tables` drops and counts them). Used by :func:`load_mimic_eye`."""
    dirs = sorted(p for p in root.glob("patient_*") if p.is_dir())
    if not dirs:
        raise FileNotFoundError(f"{root}: no patient_* folders; expected MIMIC-Eye's layout "
                                f"(patient_{{subject_id}}/ED, Hosp, CXR-JPG and spreadsheets/)")
    bad_names = [d.name for d in dirs if not d.name.split("_", 1)[1].isdigit()]
    if bad_names:
        raise ValueError(f"{root}: folder name(s) {bad_names[:3]} are not patient_{{subject_id}} with a numeric id")
    subjects = [int(d.name.split("_", 1)[1]) for d in dirs]
    ed_dirs = [d for d in dirs if (d / "ED").is_dir()]

    def read(rel: str, which=None, required: bool = False) -> pd.DataFrame:
        df = read_patient_tables(root, rel, dirs if which is None else which, required, MIMIC_EYE_FILES.get(rel, ()),
                                 progress)
        return df.drop(columns=_FOLDER)

    tables = {"ED/edstays.csv": read("ED/edstays.csv", ed_dirs, required=True)}
    ed = tables["ED/edstays.csv"]
    with_ed = {int(d.name.split("_", 1)[1]) for d in ed_dirs}
    empty = sorted(with_ed - set(pd.to_numeric(ed["subject_id"], errors="coerce").dropna().astype(np.int64)))
    if empty:
        raise ValueError(f"{_where(root, 'ED/edstays.csv')}: no ED stay for patient(s) {empty[:3]} that have an ED/ "
                         f"folder; expected the importer's layout (an ED/ folder only for a patient with ED rows, "
                         f"edstays.csv among them)")
    tables["CXR-JPG/cxr_meta.csv"] = read("CXR-JPG/cxr_meta.csv", required=True)
    tables["ED/triage.csv"] = read("ED/triage.csv", ed_dirs, required=True)
    tables["ED/vitalsign.csv"] = read("ED/vitalsign.csv", ed_dirs)
    tables["Hosp/admissions.csv"] = read("Hosp/admissions.csv")
    tables["Hosp/diagnoses_icd.csv"] = read("Hosp/diagnoses_icd.csv")
    tables["CXR-JPG/cxr_chexpert.csv"] = read("CXR-JPG/cxr_chexpert.csv", required=True)
    tables[MIMIC_EYE_PATIENTS_CSV] = _read_table(root / MIMIC_EYE_PATIENTS_CSV,
                                                 ("subject_id", "anchor_age", "anchor_year"))
    return {"tables": tables, "subjects": subjects}


def check_images(root: Path, cxr: pd.DataFrame, bad_files: str, progress: bool) -> tuple[pd.DataFrame, int, int]:
    """Open every X-ray of ``cxr`` (a stay's ``path`` under ``root``): a missing or unreadable JPG is an error naming
    the file (``bad_files="error"``) or, with ``"mark_missing"``, leaves the stay without its X-ray. Returns ``cxr``
    and the numbers of files missing and unreadable. Used by :func:`load_mimic_eye`."""
    from PIL import Image, UnidentifiedImageError

    cxr = cxr.copy()
    n_missing = n_unreadable = 0
    for sid in tqdm(cxr.index[cxr["path"].notna()], desc="checking CXR JPGs", disable=not progress, leave=False):
        p = root / cxr.at[sid, "path"]
        try:
            with Image.open(p) as im:  # decode (at 1/8 scale: cheap); verify() misses truncated JPEG data
                im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        except FileNotFoundError:
            if bad_files == "error":
                raise FileNotFoundError(f"{p}: chest X-ray listed in CXR-JPG/cxr_meta.csv is missing; expected "
                                        f"CXR-JPG/s{{study_id}}/{{dicom_id}}.jpg") from None
            n_missing += 1
            cxr.at[sid, "path"] = None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            if bad_files == "error":
                raise ValueError(f"{p}: not a readable JPEG image ({e}); expected a chest X-ray JPG") from None
            n_unreadable += 1
            cxr.at[sid, "path"] = None
    return cxr, n_missing, n_unreadable


def load_mimic_eye(root: Path, split_fractions, split_seed: int, prediction_hours: float, bad_files: str,
                   progress: bool) -> dict:
    """Build the MIMIC-Eye cohort under ``root``: its tables read (:func:`read_release`), the cohort derived from
    them (:func:`cohort_from_tables`, which documents it) with every X-ray file opened (:func:`check_images`).
    Used by :func:`mmlib.data.load_cohort` (which splits the patients)."""
    release = read_release(root, progress)
    return cohort_from_tables(release["tables"], release["subjects"], prediction_hours, root,
                              lambda cxr: check_images(root, cxr, bad_files, progress))


def cohort_from_tables(tables: dict, subjects, prediction_hours: float, root="MIMIC-Eye", images=None) -> dict:
    """The MIMIC-Eye cohort derived from the release's tables in memory: ``tables`` maps a release path
    (``ED/edstays.csv``, ``ED/triage.csv``, ``ED/vitalsign.csv``, ``Hosp/admissions.csv``,
    ``Hosp/diagnoses_icd.csv``, ``CXR-JPG/cxr_meta.csv``, ``CXR-JPG/cxr_chexpert.csv``: the per-patient tables over
    every patient folder; ``spreadsheets/Hosp/patients.csv``) to its rows, as :func:`read_release` reads them or as
    chapter 08 regenerates them (:func:`mmlib.attribution.cohort_fields`); ``subjects`` are the release's patients
    (one folder each); ``root`` names the release in messages; ``images`` opens the chosen X-rays
    (:func:`check_images`; ``None``: not checked, as for tables without rendered images). One derivation for the
    loader (:func:`load_mimic_eye`) and chapter 08's lab.

    - Index stay (:data:`INDEX_STAY`): the ED stay during which the patient's first frontal (PA/AP) X-ray listed
      in ``cxr_meta.csv`` was taken, linked by time (the importer's own ``stay_id`` column is not used: it is
      blank for every study before 10:00 and whenever the time is not inside exactly one stay); otherwise the
      first ED stay. Lateral and other views are never the stay's X-ray (counted).
    - Flow (patients): in the folders -> no ``ED/`` folder -> index stay without triage -> outcome undefined
      (disposition not ADMITTED / HOME) -> age under 18.
    - Age: ``anchor_age + year(intime) - anchor_year`` from ``spreadsheets/Hosp/patients.csv``; outside
      :data:`mmlib.schema.AGE_RANGE` is an error. Gender ``M``/``F`` (``Male``/``Female`` accepted); race from
      ``race`` or the older ``ethnicity`` column, empty -> ``UNKNOWN`` (counted).
    - Vitals: triage plus ``vitalsign`` rows charted between arrival and the prediction time; a value outside
      :data:`mmlib.schema.VITAL_RANGES` becomes NaN (counted per file and column); a charted row outside its
      stay (before intime or after outtime) is dropped (counted). Not a number / infinite is an error.
    - Targets: ``admitted``; the four CheXpert findings of the stay's X-ray (:data:`CHEXPERT_MAPPING`), NaN
      without an X-ray before the prediction time.
    - Exact duplicate rows are dropped (counted per file); rows that share a key with different content (a
      stay, a patient, an image, a study) are an error, as is outtime before intime.
    - Returns ``stays``, ``modalities``, ``availability``, ``flow``, ``targets`` (names), ``index_stays`` (each
      patient's index stay before the exclusions: subject_id -> stay_id) and ``info``
      (:attr:`mmlib.data.Cohort.info`): the two rules above as text, and every count as a plain int under
      ``kind.detail`` keys, e.g. ``chexpert_uncertain_as_nan.cxr_edema``,
      ``out_of_range_as_nan.ED/triage.csv:temperature``, ``duplicate_rows_removed.ED/edstays.csv``.
    Every error names the file, the column, a few offending ids and what was expected.
    """
    subjects = pd.Series(list(subjects))
    dups: dict[str, int] = {}
    ranges: dict[str, int] = {}
    info: dict = {"index_stay": INDEX_STAY, "chexpert_mapping": CHEXPERT_MAPPING, "prediction_hours": prediction_hours}

    def read(rel: str) -> tuple[pd.DataFrame, str]:
        if rel not in tables:
            raise KeyError(f"{root}: table {rel} not given; expected the release's tables keyed by their path")
        return drop_duplicate_rows(tables[rel], rel, dups), _where(root, rel)

    # --- ED stays (every stay of the patient) ----------------------------------------------------------------
    ed, w_ed = read("ED/edstays.csv")
    race_col = next((c for c in RACE_COLUMNS if c in ed.columns), None)
    if race_col is None:
        raise ValueError(f"{w_ed}: missing column 'race' (MIMIC-IV-ED 2.x) or 'ethnicity' (1.x); expected one of them")
    require_unique(ed, "stay_id", w_ed, "ED stay (stay_id)")
    sid = numeric_field(ed, "stay_id", w_ed, "subject_id", integer=True)
    if sid.isna().any():
        raise ValueError(f"{w_ed} column 'stay_id': blank for subject(s) {ed.loc[sid.isna(), 'subject_id'].head(3).tolist()}; "
                         f"expected every ED stay to have a stay_id")
    ed["stay_id"] = sid.astype(np.int64)
    ed["intime"] = parse_time(ed["intime"], f"{w_ed} column 'intime'", ed["stay_id"], "stay_id")
    ed["outtime"] = parse_time(ed["outtime"], f"{w_ed} column 'outtime'", ed["stay_id"], "stay_id")
    back = ed["outtime"] < ed["intime"]
    if back.any():
        raise ValueError(f"{w_ed} columns 'intime'/'outtime': outtime before intime for stay_id "
                         f"{ed.loc[back, 'stay_id'].head(3).tolist()}; expected outtime >= intime")
    if ed["intime"].isna().any():
        raise ValueError(f"{w_ed} column 'intime': blank for stay_id {ed.loc[ed['intime'].isna(), 'stay_id'].head(3).tolist()}; "
                         f"expected every ED stay to have an arrival time")
    gender = ed["gender"].astype("string").str.strip().str.upper().map(GENDER_CODES)
    if gender.isna().any():
        bad = gender.isna()
        raise ValueError(f"{w_ed} column 'gender': {int(bad.sum())} value(s) not a gender code (e.g. "
                         f"{ed.loc[bad, 'gender'].iloc[0]!r} for stay_id {ed.loc[bad, 'stay_id'].head(3).tolist()}); "
                         f"expected 'M' or 'F' (or 'Male'/'Female')")
    ed["gender"] = gender.astype(object)
    ed["race"], n_race_empty = check_mimic_races(ed[race_col], f"{w_ed} column {race_col!r}")
    info["race_column"], info["race_empty_as_unknown"] = race_col, n_race_empty
    flow = Flow(len(subjects), "patients in the MIMIC-Eye folders")
    no_ed = ~subjects.isin(ed["subject_id"])
    flow.exclude(no_ed.to_numpy(), "no ED/ folder: no MIMIC-IV-ED stay")

    # --- chest X-rays listed in cxr_meta.csv; the index stay -----------------------------------------------
    meta, w_meta = read("CXR-JPG/cxr_meta.csv")
    meta["dicom_id"] = meta["dicom_id"].astype("string").str.strip()
    require_unique(meta, "dicom_id", w_meta, "image (dicom_id)")
    meta["study_time"] = _study_times(meta, w_meta)
    meta = meta.drop(columns=[c for c in ("stay_id",) if c in meta])  # the importer's link; re-linked by time below
    frontal = meta["ViewPosition"].astype("string").str.strip().str.upper().isin(FRONTAL_VIEWS).fillna(False)
    info["cxr_meta_rows_not_frontal"] = int((~frontal).sum())
    fr = meta[frontal.to_numpy()]
    pairs = ed[["subject_id", "stay_id", "intime", "outtime"]].merge(fr[["subject_id", "study_time"]], on="subject_id")
    pairs = pairs[(pairs["study_time"] >= pairs["intime"]) & (pairs["study_time"] <= pairs["outtime"])]
    by_cxr = pairs.sort_values(["subject_id", "study_time", "stay_id"]).drop_duplicates("subject_id")
    by_cxr = by_cxr.set_index("subject_id")["stay_id"]
    first = ed.sort_values(["subject_id", "intime", "stay_id"]).drop_duplicates("subject_id").set_index("subject_id")["stay_id"]
    index = first.copy()
    index.loc[by_cxr.index] = by_cxr
    n_stays = ed.groupby("subject_id").size()
    info["index_stay_by_cxr"] = int(len(by_cxr))
    info["index_stay_first_stay"] = int(len(index) - len(by_cxr))
    info["patients_with_several_ed_stays"] = int((n_stays > 1).sum())
    index_stays = index.copy()
    ed = ed[ed["stay_id"].isin(index.to_numpy())]

    # --- triage; exclusions ----------------------------------------------------------------------------------
    tri, w_tri = read("ED/triage.csv")
    require_unique(tri, "stay_id", w_tri, "ED stay (stay_id)")
    tri = tri[tri["stay_id"].isin(ed["stay_id"])].set_index("stay_id", drop=False)
    for c in (*VITALS, "acuity"):
        v = numeric_field(tri, c, w_tri, "stay_id")
        tri[c] = blank_out_of_range(v, *VITAL_RANGES[c], f"ED/triage.csv:{c}", ranges)
    keep = flow.exclude(~ed["stay_id"].isin(tri.index).to_numpy(), "index ED stay without a triage record")
    ed = ed[keep]
    dispo = ed["disposition"].astype("string").str.strip().str.upper()
    keep = flow.exclude(~dispo.isin(["ADMITTED", "HOME"]).fillna(False).to_numpy(),
                        "outcome undefined: left without being seen, eloped, against advice, transfer, other, expired")
    ed = ed[keep]

    # --- age from spreadsheets/Hosp/patients.csv ---------------------------------------------------------------
    pts, w_pts = read(MIMIC_EYE_PATIENTS_CSV)
    require_unique(pts, "subject_id", w_pts, "patient (subject_id)")
    pts = pts[pts["subject_id"].isin(ed["subject_id"])].set_index("subject_id", drop=False)
    missing_pt = ~ed["subject_id"].isin(pts.index)
    if missing_pt.any():
        raise ValueError(f"{w_pts}: no row for subject(s) {ed.loc[missing_pt, 'subject_id'].head(3).tolist()}; "
                         f"expected one row per patient (anchor_age, anchor_year give the age)")
    for c in ("anchor_age", "anchor_year"):
        pts[c] = numeric_field(pts, c, w_pts, "subject_id", integer=True)
        if pts[c].isna().any():
            raise ValueError(f"{w_pts} column {c!r}: blank for subject(s) "
                             f"{pts.loc[pts[c].isna(), 'subject_id'].head(3).tolist()}; expected a whole number")
    age = (pts.loc[ed["subject_id"], "anchor_age"].to_numpy() + ed["intime"].dt.year.to_numpy()
           - pts.loc[ed["subject_id"], "anchor_year"].to_numpy())
    impossible = (age < AGE_RANGE[0]) | (age > AGE_RANGE[1])
    if impossible.any():
        raise ValueError(f"{w_pts} columns 'anchor_age'/'anchor_year': impossible age(s) {age[impossible][:3].tolist()} "
                         f"at the ED visit for subject(s) {ed.loc[impossible, 'subject_id'].head(3).tolist()}; "
                         f"expected {AGE_RANGE[0]}-{AGE_RANGE[1]} years")
    ed = ed.assign(age=age.astype(float))
    keep = flow.exclude((ed["age"] < 18).to_numpy(), "age under 18")
    ed = ed[keep].set_index("stay_id")
    pred = ed["intime"] + pd.Timedelta(hours=prediction_hours)

    stays = pd.DataFrame({"subject_id": ed["subject_id"], "intime": ed["intime"], "race_raw": ed["race"],
                          "gender": ed["gender"], "age": ed["age"]})
    stays["admitted"] = (ed["disposition"].astype("string").str.strip().str.upper() == "ADMITTED").astype(float)
    tri = tri.loc[stays.index]
    arrival = pd.DataFrame({"arrival_transport": ed["arrival_transport"], "chiefcomplaint": tri["chiefcomplaint"],
                            "acuity": tri["acuity"], "pain": tri["pain"].astype("string"),
                            "age": stays["age"], "gender": stays["gender"]})

    # --- vitals: triage plus the ED series charted up to the prediction time --------------------------------
    vit_cols = list(VITALS)
    vitals = tri[vit_cols].add_prefix("triage_")
    vs, w_vs = read("ED/vitalsign.csv")
    vs = vs[vs["stay_id"].isin(stays.index)].copy()
    vs["charttime"] = parse_time(vs["charttime"], f"{w_vs} column 'charttime'", vs["stay_id"], "stay_id")
    for c in vit_cols:
        vs[c] = blank_out_of_range(numeric_field(vs, c, w_vs, "stay_id"), *VITAL_RANGES[c],
                                   f"ED/vitalsign.csv:{c}", ranges)
    outside = ((vs["charttime"] < vs["stay_id"].map(ed["intime"])) | (vs["charttime"] > vs["stay_id"].map(ed["outtime"]))
               | vs["charttime"].isna())
    info["vitalsign_rows_outside_their_stay"] = int(outside.sum())
    vs = vs[~outside]
    vs = vs[vs["charttime"] <= vs["stay_id"].map(pred)]
    g = vs.sort_values(["stay_id", "charttime"]).groupby("stay_id")
    summary = pd.concat({"n": g.size()}, axis=1)
    for c in vit_cols:
        summary[f"{c}_min"] = g[c].min()
        summary[f"{c}_max"] = g[c].max()
        summary[f"{c}_last"] = g[c].last()
    vitals = vitals.join(summary.add_prefix("series_"))
    vitals["series_n"] = vitals["series_n"].fillna(0).astype(int)

    # --- codes: ICD codes of hospital admissions that ended before this ED arrival ---------------------------
    adm, w_adm = read("Hosp/admissions.csv")
    require_unique(adm, "hadm_id", w_adm, "admission (hadm_id)")
    adm = adm.assign(admittime=parse_time(adm["admittime"], f"{w_adm} column 'admittime'", adm["hadm_id"], "hadm_id"))
    adm["ended"] = (parse_time(adm["dischtime"], f"{w_adm} column 'dischtime'", adm["hadm_id"], "hadm_id")
                    if "dischtime" in adm else adm["admittime"])
    dx, _ = read("Hosp/diagnoses_icd.csv")
    dx = dx.merge(adm[["hadm_id", "admittime", "ended"]], on="hadm_id", how="inner")
    pairs = stays[["subject_id", "intime"]].reset_index().merge(dx, on="subject_id", how="inner")
    pairs = pairs[(pairs["admittime"] < pairs["intime"]) & (pairs["ended"] < pairs["intime"])].sort_values(["stay_id", "admittime", "hadm_id", "seq_num"])
    pairs["code"] = "ICD" + pairs["icd_version"].astype(int).astype(str) + ":" + pairs["icd_code"].astype(str).str.strip()
    cg = pairs.groupby("stay_id")
    codes = pd.DataFrame({"codes": cg["code"].agg(" ".join), "n_prior_admissions": cg["hadm_id"].nunique()})
    codes = codes.reindex(stays.index)
    codes["n_prior_admissions"] = codes["n_prior_admissions"].fillna(0).astype(int)

    # --- chest X-ray: the first frontal image taken between arrival and the prediction time ----------------
    m = stays[["subject_id", "intime"]].reset_index().merge(fr, on="subject_id", how="inner")
    m = m[(m["study_time"] >= m["intime"]) & (m["study_time"] <= m["stay_id"].map(pred))]
    m = m.sort_values(["stay_id", "study_time", "dicom_id"]).drop_duplicates("stay_id").set_index("stay_id")
    m["path"] = ("patient_" + m["subject_id"].astype(str) + "/CXR-JPG/s" + m["study_id"].astype(str) + "/"
                 + m["dicom_id"].astype(str) + ".jpg")
    cxr = m[["study_id", "dicom_id", "ViewPosition", "study_time", "path"]].reindex(stays.index)
    cxr["minutes_after_arrival"] = (cxr["study_time"] - stays["intime"]).dt.total_seconds() / 60
    n_cxr_files_missing = n_cxr_unreadable = 0
    if images is not None:
        cxr, n_cxr_files_missing, n_cxr_unreadable = images(cxr)

    # --- CheXpert targets of the stay's X-ray ------------------------------------------------------------------
    chex, w_chex = read("CXR-JPG/cxr_chexpert.csv")
    require_unique(chex, "study_id", w_chex, "study (study_id)")
    chex = chex.set_index("study_id", drop=False)
    with_img = cxr["path"].notna()
    no_row = with_img & ~cxr["study_id"].isin(chex.index)
    info["cxr_without_chexpert_row"] = int(no_row.sum())
    info["chexpert_uncertain_as_nan"], info["chexpert_not_mentioned_as_0"] = {}, {}
    for label, col in CXR_TARGETS.items():
        v = numeric_field(chex, label, w_chex, "study_id")
        odd = v.notna() & ~v.isin(list(CHEXPERT_TARGET_OF))
        if odd.any():
            raise ValueError(f"{w_chex} column {label!r}: value(s) {sorted(float(x) for x in pd.unique(v[odd]))[:3]} for study_id "
                             f"{chex.loc[odd, 'study_id'].head(3).tolist()}; expected 1.0 (positive), 0.0 (negative), "
                             f"-1.0 (uncertain) or blank (not mentioned)")
        raw = cxr["study_id"].map(v)
        has_row = with_img & ~no_row
        y = raw.map(CHEXPERT_TARGET_OF).where(raw.notna(), CHEXPERT_NOT_MENTIONED_AS)
        stays[col] = y.where(has_row, np.nan).astype(float)
        info["chexpert_uncertain_as_nan"][col] = int((has_row & (raw == -1.0)).sum())
        info["chexpert_not_mentioned_as_0"][col] = int((has_row & raw.isna()).sum())

    availability = pd.DataFrame({"arrival": True, "vitals": vitals[[f"triage_{c}" for c in vit_cols]].notna().any(axis=1)
                                 | (vitals["series_n"] > 0), "codes": codes["codes"].notna(),
                                 "cxr": cxr["path"].notna()}, index=stays.index)
    info |= {"cxr_files_missing": n_cxr_files_missing, "cxr_unreadable": n_cxr_unreadable,
             "duplicate_rows_removed": dups, "out_of_range_as_nan": ranges}
    # one level: every count a plain int under its own key ("kind.detail"), as the book's flow note shows them
    info = {f"{k}.{sub}" if isinstance(v, dict) else k: n for k, v in info.items()
            for sub, n in (v.items() if isinstance(v, dict) else [(None, v)])}
    return {"stays": stays, "modalities": {"arrival": arrival, "vitals": vitals, "codes": codes, "cxr": cxr},
            "availability": availability, "flow": flow, "targets": ["admitted", *CXR_TARGETS.values()],
            "index_stays": index_stays, "info": info}
