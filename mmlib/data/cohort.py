"""One canonical cohort object for MIMIC-Eye and MIMIC-IV-Ext-MDS-ED, real or synthetic.

:func:`load_cohort` reads a dataset from its on-disk layout (``../shared/STUDY.md`` section 2) with the
same code whether the copy is a credentialed PhysioNet download or a synthetic cohort from
:mod:`mmlib.data.synth`. It returns a :class:`Cohort`: one row per ED stay with its split, sensitive
attributes and targets; per-modality raw content restricted to what was recorded before the prediction
time; a per-stay modality-availability mask; and the cohort flow (stays in, excluded and why).
The layouts' names come from :mod:`mmlib.schema`; this loader never imports the generator or its simulators.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..artifacts import atomic_dir
from ..schema import COHORTS, CXR_TARGETS, MODALITIES, PREDICTION_HOURS, PREDICTION_TIME, SPLITS, STATS, VITALS

from .races import RACE5, RACE5_COLUMNS, age_band, check_races, race5_of, race_binary_of
from .splits import stratified_assign


@dataclass
class Cohort:
    """A loaded cohort: stays, targets, modalities, availability and flow (see module docstring).

    - ``stays``: index ``stay_id``; columns ``subject_id, split, intime, race_raw, race5, race_binary,
      gender (M/F), age, age_band`` and one column per target (float 0/1, NaN where undefined).
    - ``modalities``: name -> DataFrame indexed like ``stays`` with that modality's raw content.
    - ``availability``: bool DataFrame, stays x modalities.
    - ``flow``: one row per step: ``step, excluded, remaining`` (the cohort flow diagram as a table).
    - ``truth``: for synthetic cohorts, the latent state per stay (``None`` for real data).
    """

    name: str
    origin: str
    root: Path
    prediction_time: str
    stays: pd.DataFrame
    targets: list[str]
    primary_target: str
    modalities: dict[str, pd.DataFrame]
    availability: pd.DataFrame
    flow: pd.DataFrame
    truth: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.origin == "synthetic"

    def split(self, name: str) -> pd.DataFrame:
        """The stays of one split (``train``, ``val`` or ``test``)."""
        return self.stays[self.stays["split"] == name]

    # --- raw signal access -------------------------------------------------------------------------
    def cxr_path(self, stay_id: int) -> Path:
        """Path of the stay's chest X-ray JPG (raises ``KeyError`` if the stay has none before prediction)."""
        row = self.modalities["cxr"].loc[stay_id]
        if not isinstance(row["path"], str):
            raise KeyError(f"stay {stay_id} has no chest X-ray before the prediction time")
        return self.root / row["path"]

    def cxr_image(self, stay_id: int) -> np.ndarray:
        """The stay's chest X-ray as a uint8 grayscale array."""
        from PIL import Image

        with Image.open(self.cxr_path(stay_id)) as im:
            return np.asarray(im.convert("L"))

    def ecg(self, stay_ids) -> np.ndarray:
        """ECG waveforms of the given stays: float32 array (k, time, 12 leads) in mV, 100 Hz.

        Raises ``KeyError`` for a stay whose ECG was recorded after the prediction time (not a feature).
        """
        ids = list(np.atleast_1d(stay_ids))
        late = [s for s in ids if not self.availability.at[s, "ecg"]]
        if late:
            raise KeyError(f"stay(s) {late[:3]} have no ECG before the prediction time")
        mm = _Memmap(self.root)
        idx = self.modalities["ecg"].loc[ids, "record"].to_numpy()
        return np.stack([mm.record(int(i)) for i in idx])

    # --- persistence -----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the cohort to ``folder`` (parquet + JSON), atomically: temp folder, then rename."""
        with atomic_dir(folder) as tmp:
            self.stays.to_parquet(tmp / "stays.parquet")
            self.availability.to_parquet(tmp / "availability.parquet")
            self.flow.to_parquet(tmp / "flow.parquet")
            for m, df in self.modalities.items():
                df.to_parquet(tmp / f"modality_{m}.parquet")
            if self.truth is not None:
                self.truth.to_parquet(tmp / "truth.parquet")
            meta = {"name": self.name, "origin": self.origin, "root": str(Path(self.root).resolve()),
                    "prediction_time": self.prediction_time, "targets": self.targets,
                    "primary_target": self.primary_target, "modalities": list(self.modalities),
                    "info": self.info}
            (tmp / "cohort.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Cohort":
        """Read a cohort written by :meth:`save`."""
        folder = Path(folder)
        if not (folder / "cohort.json").exists():
            raise FileNotFoundError(f"{folder}: no cohort.json; expected a cohort artifact written by Cohort.save")
        meta = json.loads((folder / "cohort.json").read_text())
        truth = pd.read_parquet(folder / "truth.parquet") if (folder / "truth.parquet").exists() else None
        return cls(name=meta["name"], origin=meta["origin"], root=Path(meta["root"]),
                   prediction_time=meta["prediction_time"], stays=pd.read_parquet(folder / "stays.parquet"),
                   targets=meta["targets"], primary_target=meta["primary_target"],
                   modalities={m: pd.read_parquet(folder / f"modality_{m}.parquet") for m in meta["modalities"]},
                   availability=pd.read_parquet(folder / "availability.parquet"),
                   flow=pd.read_parquet(folder / "flow.parquet"), truth=truth, info=meta.get("info", {}))


class _Flow:
    """Builds the cohort flow table: every exclusion is a named step with its count."""

    def __init__(self, n: int, what: str):
        self.rows = [{"step": what, "excluded": 0, "remaining": n}]

    def exclude(self, mask: np.ndarray, reason: str) -> np.ndarray:
        n_out = int(np.sum(mask))
        self.rows.append({"step": reason, "excluded": n_out, "remaining": self.rows[-1]["remaining"] - n_out})
        return ~np.asarray(mask, bool)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


# ------------------------------------------------------------------------------------------- helpers
def _require_columns(df: pd.DataFrame, cols, where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected at least {list(cols)}")


def _parse_time(s: pd.Series, where: str) -> pd.Series:
    t = pd.to_datetime(s, errors="coerce", format="mixed")
    bad = t.isna() & s.notna()
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} value(s) are not date-times (e.g. {s[bad].iloc[0]!r}); "
                         f"expected 'YYYY-MM-DD HH:MM:SS'")
    return t


def _assign_splits(stays: pd.DataFrame, fractions, seed: int) -> pd.Series:
    """Patient-level split, stratified by race (White / non-White / Unknown) x gender."""
    subj = stays.drop_duplicates("subject_id").sort_values("subject_id")
    strata = (subj["race_binary"] + "|" + subj["gender"]).to_numpy()
    bucket = stratified_assign(strata, fractions, seed)
    by_subject = pd.Series(np.asarray(SPLITS)[bucket], index=subj["subject_id"].to_numpy())
    return stays["subject_id"].map(by_subject)


def _check_splits(stays: pd.DataFrame, where: str) -> None:
    counts = stays["split"].value_counts()
    empty = [s for s in SPLITS if counts.get(s, 0) == 0]
    if empty:
        raise ValueError(f"{where}: split(s) {empty} are empty after exclusions ({dict(counts)}); expected every "
                         f"split to hold stays (check the split fractions or the data)")


def _read_patient_tables(root: Path, rel: str, patient_dirs: list[Path], required: bool, cols,
                         progress: bool) -> pd.DataFrame:
    """Concatenate ``patient_*/{rel}`` over all patients with one CSV parse per distinct header."""
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
        groups.setdefault(header.strip(), []).append(body if body.endswith("\n") or not body else body + "\n")
    if not groups:
        return pd.DataFrame(columns=list(cols))
    from io import StringIO

    frames = []
    for header, bodies in groups.items():
        # codes stay text: an all-numeric ICD-9 column would otherwise lose leading zeros ('0389' -> 389)
        df = pd.read_csv(StringIO(header + "\n" + "".join(bodies)), low_memory=False, dtype={"icd_code": str})
        _require_columns(df, cols, f"{root}/patient_*/{rel}")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------- MIMIC-Eye
def _load_mimic_eye(root: Path, split_fractions, split_seed: int, prediction_hours: float, bad_files: str,
                    progress: bool) -> dict:
    dirs = sorted(p for p in root.glob("patient_*") if p.is_dir())
    if not dirs:
        raise FileNotFoundError(f"{root}: no patient_* folders; expected MIMIC-Eye's layout "
                                f"(patient_{{subject_id}}/ED, Hosp, CXR-JPG)")
    spec = {
        "ED/edstays.csv": (True, ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "gender", "race",
                                  "arrival_transport", "disposition"]),
        "ED/triage.csv": (True, ["subject_id", "stay_id", *VITALS, "pain", "acuity", "chiefcomplaint"]),
        "ED/vitalsign.csv": (False, ["subject_id", "stay_id", "charttime", *VITALS]),
        "Hosp/patients.csv": (True, ["subject_id", "anchor_age", "anchor_year"]),
        "Hosp/admissions.csv": (False, ["subject_id", "hadm_id", "admittime"]),
        "Hosp/diagnoses_icd.csv": (False, ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]),
        "CXR-JPG/cxr_meta.csv": (False, ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate",
                                         "StudyTime"]),
        "CXR-JPG/cxr_chexpert.csv": (False, ["subject_id", "study_id", *CXR_TARGETS]),
    }
    t = {rel: _read_patient_tables(root, rel, dirs, req, cols, progress) for rel, (req, cols) in spec.items()}
    ed = t["ED/edstays.csv"]
    where = f"{root}/patient_*/ED/edstays.csv"
    ed["race"] = check_races(ed["race"], f"{where} column 'race'")
    ed["intime"] = _parse_time(ed["intime"], f"{where} column 'intime'")
    flow = _Flow(len(ed), "ED stays in the MIMIC-Eye folders")
    tri = t["ED/triage.csv"].drop_duplicates("stay_id").set_index("stay_id")
    keep = flow.exclude(~ed["stay_id"].isin(tri.index).to_numpy(), "no triage record")
    ed = ed[keep]
    dispo = ed["disposition"].astype(str).str.upper()
    keep = flow.exclude(~dispo.isin(["ADMITTED", "HOME"]).to_numpy(),
                        "outcome undefined: left without being seen, eloped, against advice, transfer, other, expired")
    ed = ed[keep]
    pts = t["Hosp/patients.csv"].drop_duplicates("subject_id").set_index("subject_id")
    missing_pt = ~ed["subject_id"].isin(pts.index)
    if missing_pt.any():
        raise ValueError(f"{root}/patient_*/Hosp/patients.csv: no row for subject(s) "
                         f"{ed.loc[missing_pt, 'subject_id'].head(3).tolist()}; expected one row per patient "
                         f"(anchor_age, anchor_year give the age)")
    age = (pts.loc[ed["subject_id"], "anchor_age"].to_numpy()
           + ed["intime"].dt.year.to_numpy() - pts.loc[ed["subject_id"], "anchor_year"].to_numpy())
    ed = ed.assign(age=age)
    keep = flow.exclude((ed["age"] < 18).to_numpy(), "age under 18")
    ed = ed[keep].set_index("stay_id")
    pred = ed["intime"] + pd.Timedelta(hours=prediction_hours)

    stays = pd.DataFrame({"subject_id": ed["subject_id"], "intime": ed["intime"], "race_raw": ed["race"],
                          "gender": ed["gender"].astype(str).str.upper().str[0], "age": ed["age"].astype(float)})
    stays["admitted"] = (ed["disposition"].astype(str).str.upper() == "ADMITTED").astype(float)
    tri = tri.loc[stays.index]
    arrival = pd.DataFrame({"arrival_transport": ed["arrival_transport"], "chiefcomplaint": tri["chiefcomplaint"],
                            "acuity": tri["acuity"], "pain": tri["pain"].astype("string"),
                            "age": stays["age"], "gender": stays["gender"]})
    # vitals: triage plus the ED series charted up to the prediction time
    vit_cols = list(VITALS)
    vitals = tri[vit_cols].add_prefix("triage_")
    vs = t["ED/vitalsign.csv"]
    vs = vs[vs["stay_id"].isin(stays.index)].copy()
    vs["charttime"] = _parse_time(vs["charttime"], f"{root}/patient_*/ED/vitalsign.csv column 'charttime'")
    vs = vs[vs["charttime"] <= vs["stay_id"].map(pred)]
    g = vs.sort_values("charttime").groupby("stay_id")
    summary = pd.concat({"n": g.size()}, axis=1)
    for c in vit_cols:
        summary[f"{c}_min"] = g[c].min()
        summary[f"{c}_max"] = g[c].max()
        summary[f"{c}_last"] = g[c].last()
    vitals = vitals.join(summary.add_prefix("series_"))
    vitals["series_n"] = vitals["series_n"].fillna(0).astype(int)
    # codes: ICD codes of hospital admissions that ended before this ED arrival (codes are assigned at
    # discharge, so an admission still running at arrival contributes nothing)
    adm = t["Hosp/admissions.csv"]
    where_adm = f"{root}/patient_*/Hosp/admissions.csv"
    adm = adm.assign(admittime=_parse_time(adm["admittime"], f"{where_adm} column 'admittime'"))
    adm["ended"] = (_parse_time(adm["dischtime"], f"{where_adm} column 'dischtime'") if "dischtime" in adm
                    else adm["admittime"])
    dx = t["Hosp/diagnoses_icd.csv"].merge(adm[["hadm_id", "admittime", "ended"]], on="hadm_id", how="inner")
    pairs = stays[["subject_id", "intime"]].reset_index().merge(dx, on="subject_id", how="inner")
    pairs = pairs[(pairs["admittime"] < pairs["intime"]) & (pairs["ended"] < pairs["intime"])].sort_values(["stay_id", "admittime", "hadm_id", "seq_num"])
    pairs["code"] = "ICD" + pairs["icd_version"].astype(int).astype(str) + ":" + pairs["icd_code"].astype(str).str.strip()
    cg = pairs.groupby("stay_id")
    codes = pd.DataFrame({"codes": cg["code"].agg(" ".join), "n_prior_admissions": cg["hadm_id"].nunique()})
    codes = codes.reindex(stays.index)
    codes["n_prior_admissions"] = codes["n_prior_admissions"].fillna(0).astype(int)
    # chest X-ray: the first study taken between arrival and the prediction time
    meta = t["CXR-JPG/cxr_meta.csv"].copy()
    meta["study_time"] = pd.to_datetime(meta["StudyDate"].astype("Int64").astype(str) + " "
                                        + meta["StudyTime"].astype(float).map(lambda x: f"{x:011.4f}")
                                        .str[:6], format="%Y%m%d %H%M%S", errors="coerce")
    m = stays[["subject_id", "intime"]].reset_index().merge(meta, on="subject_id", how="inner")
    m = m[(m["study_time"] >= m["intime"]) & (m["study_time"] <= m["stay_id"].map(pred))]
    m = m.sort_values(["stay_id", "study_time"]).drop_duplicates("stay_id").set_index("stay_id")
    m["path"] = ("patient_" + m["subject_id"].astype(str) + "/CXR-JPG/s" + m["study_id"].astype(str) + "/"
                 + m["dicom_id"].astype(str) + ".jpg")
    cxr = m[["study_id", "dicom_id", "ViewPosition", "study_time", "path"]].reindex(stays.index)
    cxr["minutes_after_arrival"] = (cxr["study_time"] - stays["intime"]).dt.total_seconds() / 60
    n_cxr_files_missing = n_cxr_unreadable = 0
    has = cxr["path"].notna()
    from PIL import Image, UnidentifiedImageError

    for sid in tqdm(cxr.index[has], desc="checking CXR JPGs", disable=not progress, leave=False):
        p = root / cxr.at[sid, "path"]
        try:
            with Image.open(p) as im:  # decode (at 1/8 scale: cheap); verify() misses truncated JPEG data
                im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        except FileNotFoundError:
            if bad_files == "error":
                raise FileNotFoundError(f"{p}: chest X-ray listed in CXR-JPG/cxr_meta.csv is missing; expected "
                                        f"CXR-JPG/s{{study_id}}/{{dicom_id}}.jpg") from None
            n_cxr_files_missing += 1
            cxr.at[sid, "path"] = None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            if bad_files == "error":
                raise ValueError(f"{p}: not a readable JPEG image ({e}); expected a chest X-ray JPG") from None
            n_cxr_unreadable += 1
            cxr.at[sid, "path"] = None
    chex = t["CXR-JPG/cxr_chexpert.csv"].drop_duplicates("study_id").set_index("study_id")
    for label, col in CXR_TARGETS.items():
        v = cxr["study_id"].map(chex[label]) if len(chex) else pd.Series(np.nan, index=cxr.index)
        stays[col] = np.where(cxr["path"].notna(), (v == 1.0).astype(float), np.nan)
    availability = pd.DataFrame({"arrival": True, "vitals": vitals[[f"triage_{c}" for c in vit_cols]].notna().any(axis=1)
                                 | (vitals["series_n"] > 0), "codes": codes["codes"].notna(),
                                 "cxr": cxr["path"].notna()}, index=stays.index)
    return {"stays": stays, "modalities": {"arrival": arrival, "vitals": vitals, "codes": codes, "cxr": cxr},
            "availability": availability, "flow": flow, "targets": ["admitted", *CXR_TARGETS.values()],
            "info": {"cxr_files_missing": n_cxr_files_missing, "cxr_unreadable": n_cxr_unreadable,
                     "prediction_hours": prediction_hours}}


# --------------------------------------------------------------------------------------------- MDS-ED
class _Memmap:
    """Reader of MDS-ED's ``memmap.npy`` + ``memmap_meta.npz`` (record ``i`` = rows start..start+length)."""

    def __init__(self, root: Path):
        meta_path = Path(root) / "memmap_meta.npz"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: missing; expected MDS-ED's ECG index next to mds_ed.csv")
        with np.load(meta_path, allow_pickle=False) as z:
            missing = [k for k in ("start", "shape", "length", "file_idx", "dtype", "filenames") if k not in z.files]
            if missing:
                raise ValueError(f"{meta_path}: missing key(s) {missing}; expected start, shape, length, file_idx, "
                                 f"dtype, filenames")
            self.start, self.length, self.file_idx = z["start"], z["length"], z["file_idx"]
            self.shape = [tuple(int(x) for x in s) for s in np.atleast_2d(z["shape"])]
            try:
                dtype = z["dtype"]
            except ValueError:  # MDS-ED's writer saves `dtype=data.dtype`: an np.dtype, stored pickled
                with np.load(meta_path, allow_pickle=True) as zp:
                    dtype = zp["dtype"]
            self.dtype = np.dtype(str(dtype))
            names = [str(f) for f in np.atleast_1d(z["filenames"])]
        self.files = []
        for name, shape in zip(names, self.shape):
            p = Path(root) / Path(name).name
            if not p.exists():
                raise FileNotFoundError(f"{p}: ECG memmap listed in {meta_path.name} is missing")
            expected = int(np.prod(shape)) * self.dtype.itemsize
            if p.stat().st_size < expected:
                raise ValueError(f"{p}: truncated ECG memmap: {p.stat().st_size} bytes, expected {expected} "
                                 f"({shape} x {self.dtype}) as recorded in {meta_path.name}")
            self.files.append(np.memmap(p, dtype=self.dtype, mode="r", shape=shape))
        self.n = len(self.start)

    def record(self, i: int) -> np.ndarray:
        a = int(self.start[i])
        return np.asarray(self.files[int(self.file_idx[i])][a:a + int(self.length[i])], dtype=np.float32)


def _load_mds_ed(root: Path, prediction_hours: float, primary_target: str, progress: bool) -> dict:
    path = root / "mds_ed.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; expected MIMIC-IV-Ext-MDS-ED's table mds_ed.csv")
    df = pd.read_csv(path, low_memory=False)
    need = ["general_subject_id", "general_ed_stay_id", "general_race", "general_intime", "general_ecg_time",
            "general_strat_fold", "general_ecg_no_within_stay", "general_data", "demographics_age",
            "demographics_gender", *[f"demographics_ethnicity_{v}" for v in RACE5_COLUMNS.values()]]
    _require_columns(df, need, str(path))
    if primary_target not in df.columns:
        raise ValueError(f"{path}: primary target column {primary_target!r} not found; expected a "
                         f"deterioration_* or diagnoses_* column, e.g. 'deterioration_icu_24h'")
    df["general_race"] = check_races(df["general_race"], f"{path} column 'general_race'")
    folds = pd.to_numeric(df["general_strat_fold"], errors="coerce")
    bad = folds.isna() | ~folds.between(0, 19) | (folds % 1 != 0)
    if bad.any():
        raise ValueError(f"{path} column 'general_strat_fold': expected integers 0-19 (0-17 train, 18 validation, "
                         f"19 test), found {df.loc[bad, 'general_strat_fold'].unique()[:5].tolist()} in "
                         f"{int(bad.sum())} row(s)")
    mm = _Memmap(root)
    idx = pd.to_numeric(df["general_data"], errors="coerce")
    if idx.isna().any() or (idx < 0).any() or (idx >= mm.n).any():
        raise ValueError(f"{path} column 'general_data': expected record indices 0..{mm.n - 1} into "
                         f"memmap_meta.npz; found values outside that range")
    flow = _Flow(len(df), "ECG rows in mds_ed.csv")
    keep = flow.exclude((df["general_ecg_no_within_stay"] > 0).to_numpy(), "not the first ECG of the ED stay")
    df = df[keep]
    keep = flow.exclude((df[primary_target] == -999).to_numpy(), f"primary target {primary_target} undefined (-999)")
    df = df[keep]
    keep = flow.exclude((df["demographics_age"] < 18).to_numpy(), "age under 18")
    df = df[keep].set_index("general_ed_stay_id")
    df.index.name = "stay_id"
    intime = _parse_time(df["general_intime"], f"{path} column 'general_intime'")
    ecg_time = _parse_time(df["general_ecg_time"], f"{path} column 'general_ecg_time'")
    race = df["general_race"]
    onehot = df[[f"demographics_ethnicity_{RACE5_COLUMNS[g]}" for g in RACE5]].to_numpy()
    race5 = np.where(onehot.sum(1) == 1, np.asarray(RACE5)[onehot.argmax(1)], race.map(race5_of).to_numpy())
    stays = pd.DataFrame({"subject_id": df["general_subject_id"], "intime": intime, "race_raw": race,
                          "race5": race5, "gender": np.where(df["demographics_gender"] == 1, "M", "F"),
                          "age": df["demographics_age"].astype(float)})
    stays["split"] = np.where(df["general_strat_fold"] <= 17, "train",
                              np.where(df["general_strat_fold"] == 18, "val", "test"))
    targets = [c for c in df.columns if c.startswith(("deterioration_", "diagnoses_"))]
    for c in targets:
        stays[c] = df[c].replace(-999, np.nan).astype(float)
    vit = [f"vitals_{v}_{s}" for v in VITALS for s in STATS if f"vitals_{v}_{s}" in df.columns]
    lab = [c for c in df.columns if c.startswith("labvalues_")]
    arrival = pd.DataFrame({"age": stays["age"], "gender": stays["gender"],
                            **{c: df[c] for c in ("biometrics_bmi", "biometrics_weight", "biometrics_height",
                                                  "vitals_acuity") if c in df.columns}})
    minutes = (ecg_time - intime).dt.total_seconds() / 60
    ecg = pd.DataFrame({"record": df["general_data"].astype(int), "ecg_time": ecg_time,
                        "minutes_after_arrival": minutes})
    in_window = (minutes >= 0) & (minutes <= prediction_hours * 60)
    availability = pd.DataFrame({"arrival": True, "vitals": df[vit].notna().any(axis=1) if vit else False,
                                 "labs": df[lab].notna().any(axis=1) if lab else False, "ecg": in_window},
                                index=stays.index)
    return {"stays": stays, "modalities": {"arrival": arrival, "vitals": df[vit], "labs": df[lab], "ecg": ecg},
            "availability": availability, "flow": flow, "targets": targets,
            "info": {"ecg_after_prediction_time": int((~in_window).sum()), "prediction_hours": prediction_hours}}


# ----------------------------------------------------------------------------------------------- API
def load_cohort(source: str, root: Path | str, *, primary_target: str | None = None,
                split_fractions=(0.7, 0.1, 0.2), split_seed: int = 0, prediction_hours: float | None = None,
                bad_files: str = "error", progress: bool = True) -> Cohort:
    """Load the ``source`` dataset (``"mimic_eye"`` or ``"mds_ed"``) from its on-disk layout under ``root``.

    Real and synthetic copies are read by the same code; a synthetic copy is recognised by its
    ``synthetic_params.json`` and its latent truth is attached as ``Cohort.truth``.

    - ``primary_target``: MIMIC-Eye ``admitted`` (default); MDS-ED any ``deterioration_*`` / ``diagnoses_*``
      column (default ``deterioration_icu_24h``). Stays whose primary target is undefined are excluded
      and counted.
    - ``split_fractions`` / ``split_seed``: MIMIC-Eye has no split on disk, so patients are split
      (train, val, test) within race x gender strata. MDS-ED uses its ``strat_fold`` (0-17/18/19).
    - ``prediction_hours``: hours after arrival at which the prediction is made (defaults: MIMIC-Eye 3,
      MDS-ED 1.5); nothing recorded later enters a modality.
    - ``bad_files``: ``"error"`` (default) stops at a missing or unreadable CXR image naming the file;
      ``"mark_missing"`` marks that stay's CXR modality missing and counts it in ``Cohort.info``.
    """
    if source not in COHORTS:
        raise ValueError(f"source: expected one of {COHORTS}, got {source!r}")
    if bad_files not in ("error", "mark_missing"):
        raise ValueError(f"bad_files: expected 'error' or 'mark_missing', got {bad_files!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: cohort folder not found; expected a local copy of {source} "
                                f"(or generate the synthetic one with `python -m mmlib generate {source}`)")
    hours = PREDICTION_HOURS[source] if prediction_hours is None else float(prediction_hours)
    if source == "mimic_eye":
        target = primary_target or "admitted"
        out = _load_mimic_eye(root, split_fractions, split_seed, hours, bad_files, progress)
        if target not in out["targets"]:
            raise ValueError(f"primary_target: {target!r} is not a MIMIC-Eye target; expected one of {out['targets']}")
    else:
        target = primary_target or "deterioration_icu_24h"
        out = _load_mds_ed(root, hours, target, progress)
    stays = out["stays"]
    stays["race5"] = stays["race_raw"].map(race5_of) if "race5" not in stays else stays["race5"]
    stays["race_binary"] = stays["race_raw"].map(race_binary_of)
    stays["age_band"] = age_band(stays["age"])
    if "split" not in stays:
        stays["split"] = _assign_splits(stays, split_fractions, split_seed)
    _check_splits(stays, str(root))
    first = ["subject_id", "split", "intime", "race_raw", "race5", "race_binary", "gender", "age", "age_band"]
    stays = stays[first + [c for c in stays.columns if c not in first]]
    origin = "synthetic" if (root / "synthetic_params.json").exists() else "real"
    truth = None
    if origin == "synthetic" and (root / "synthetic_truth.parquet").exists():
        tr = pd.read_parquet(root / "synthetic_truth.parquet")
        key = "stay_id" if "stay_id" in tr.columns else "general_ed_stay_id"
        truth = tr.set_index(key).reindex(stays.index)
        truth.index.name = "stay_id"
    unit = "hours" if source == "mimic_eye" else "minutes"
    h = hours if unit == "hours" else hours * 60
    return Cohort(name=source, origin=origin, root=root, prediction_time=PREDICTION_TIME[source].format(h=h),
                  stays=stays, targets=out["targets"], primary_target=target,
                  modalities={m: out["modalities"][m].reindex(stays.index) for m in MODALITIES[source]},
                  availability=out["availability"].reindex(stays.index).fillna(False).astype(bool),
                  flow=out["flow"].frame(), truth=truth, info=out["info"])
