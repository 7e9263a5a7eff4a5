"""Reader of MIMIC-IV-Ext-MDS-ED 1.0.0 (``mds_ed.csv`` + ECG memmap; ``../shared/LAYOUTS.md``), used by
:func:`mmlib.data.load_cohort` and :meth:`mmlib.data.Cohort.ecg`.

It honours the conventions of the release's own code (``AI4HealthUOL/MDS-ED``: ``multimodal.py`` reads the
table, ``time_series_dataset*.py`` the memmap): the pandas index column ``Unnamed: 0`` is ignored, -999 marks
an undefined label, one row per ECG of the first 90 minutes (the first, ``general_ecg_no_within_stay == 0``,
is the stay's), the memmap's columns are the leads I, II, V1-V6, III, aVR, aVL, aVF
(:data:`mmlib.schema.MDS_ED_LEAD_COLUMNS`) and its ``dtype`` is stored pickled. Bad input is an error that
names the file, the column, a few ids and what was expected; every row left out is counted in the flow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import (DIAGNOSES, ECG_CLIP_MV, LABS, LEADS, MDS_ED_AGE_RANGE, MDS_ED_COLUMNS, MDS_ED_FOLDS,
                      MDS_ED_LEAD_COLUMNS, MDS_ED_STR_COLUMNS, MDS_ED_UNDEFINED, MDS_ED_UNDEFINED_TARGETS,
                      MDS_ED_VITAL_RANGES, SPLITS, STATS, VITALS, target_label)

from .races import RACE5, RACE5_COLUMNS, check_races, race5_of
from .validate import (Flow, clip_to_range, integer_column, non_finite_rows, numeric_column, parse_time,
                       require_columns, unique_ids)

#: Columns the loader cannot work without.
REQUIRED = ("general_study_id", "general_subject_id", "general_ecg_time", "general_ed_stay_id", "general_intime",
            "general_outtime", "general_race", "general_ecg_no_within_stay", "general_strat_fold", "general_data",
            "demographics_age", "demographics_gender",
            *[f"demographics_ethnicity_{RACE5_COLUMNS[g]}" for g in RACE5])
#: Feature columns read when present (a real copy has them all; their absence is stated in ``Cohort.info``).
FEATURES = (("biometrics_bmi", "biometrics_weight", "biometrics_height", "vitals_acuity")
            + tuple(f"vitals_{v}_{s}" for v in VITALS for s in STATS)
            + tuple(f"labvalues_{lab}_{s}" for lab in LABS for s in STATS))
#: Level statistics of a vital sign (checked against :data:`mmlib.schema.MDS_ED_VITAL_RANGES`).
LEVEL_STATS = ("mean", "median", "min", "max", "first", "last")
_GENDER = {"1": 1, "1.0": 1, "m": 1, "male": 1, "0": 0, "0.0": 0, "f": 0, "female": 0}
#: Records checked for finite values and Einthoven's law when a cohort is loaded.
CHECK_RECORDS = 32


def folds_of_splits(split_fractions) -> dict[str, list[int]]:
    """The strat folds of each split: ``split_fractions`` (train, val, test) in twentieths, folds taken in order.

    (0.7, 0.1, 0.2) -> train 0-13, val 14-15, test 16-19; the release's own split (0.9, 0.05, 0.05) -> 0-17,
    18, 19. A fraction that is not a multiple of 0.05, or fractions not summing to 1, raise naming
    ``split_fractions``.
    """
    fr = np.asarray(split_fractions, dtype=float)
    k = fr * MDS_ED_FOLDS
    if fr.shape != (len(SPLITS),) or (np.abs(k - np.round(k)) > 1e-6).any() or (fr <= 0).any() \
            or round(k.sum()) != MDS_ED_FOLDS:
        raise ValueError(f"split_fractions: MDS-ED is split by its {MDS_ED_FOLDS} strat folds, so the (train, val, "
                         f"test) fractions must be positive multiples of 0.05 summing to 1 (e.g. (0.7, 0.1, 0.2) or "
                         f"the release's (0.9, 0.05, 0.05)); got {tuple(split_fractions)}")
    edges = np.concatenate([[0], np.cumsum(np.round(k).astype(int))])
    return {s: list(range(edges[i], edges[i + 1])) for i, s in enumerate(SPLITS)}


def _span(folds: list[int]) -> str:
    return f"{folds[0]}-{folds[-1]}" if len(folds) > 1 else f"{folds[0]}"


class Memmap:
    """Reader of MDS-ED's ``memmap.npy`` + ``memmap_meta.npz`` (record ``i`` = rows start..start+length of file
    ``file_idx[i]``), as the release's ``TimeseriesDatasetCrops`` reads it. :meth:`record` returns a record in
    the study's lead order :data:`mmlib.schema.LEADS`, read through ``lead_columns`` (default the release's
    :data:`mmlib.schema.MDS_ED_LEAD_COLUMNS`). The index is validated on opening: every array's length and
    shape, file names, sizes and ``start + length`` within the file."""

    def __init__(self, root: Path, lead_columns: dict[str, int] | None = None):
        root = Path(root)
        meta_path = root / "memmap_meta.npz"
        self.meta_path = meta_path
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: missing; expected MDS-ED's ECG index next to mds_ed.csv")
        keys = ("start", "shape", "length", "file_idx", "dtype", "filenames")
        with np.load(meta_path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ValueError(f"{meta_path}: missing key(s) {missing}; expected {', '.join(keys)}")
            try:
                arr = {k: z[k] for k in ("start", "shape", "length", "file_idx", "filenames")}
            except ValueError as e:
                raise ValueError(f"{meta_path}: an index array is stored as Python objects ({e}); expected "
                                 f"integer arrays start, shape, length, file_idx and a string array filenames")
            try:
                dtype = z["dtype"]
            except ValueError:  # MDS-ED's writer saves `dtype=data.dtype`: an np.dtype object, stored pickled
                with np.load(meta_path, allow_pickle=True) as zp:
                    dtype = zp["dtype"]
        try:
            self.dtype = np.dtype(str(dtype))
        except TypeError:
            raise ValueError(f"{meta_path} key 'dtype': {dtype!r} is not a numpy dtype; expected float32")
        if self.dtype.kind != "f":
            raise ValueError(f"{meta_path} key 'dtype': {self.dtype} is not a float type; expected float32 (mV)")
        self.start, self.length, self.file_idx = (np.asarray(arr[k]) for k in ("start", "length", "file_idx"))
        for k in ("start", "length", "file_idx"):
            a = arr[k]
            if a.ndim != 1 or a.dtype.kind not in "iu":
                raise ValueError(f"{meta_path} key {k!r}: shape {a.shape}, dtype {a.dtype}; expected a 1-D integer "
                                 f"array with one entry per record")
        if not (len(self.start) == len(self.length) == len(self.file_idx)):
            raise ValueError(f"{meta_path}: keys 'start', 'length', 'file_idx' have lengths {len(self.start)}, "
                             f"{len(self.length)}, {len(self.file_idx)}; expected one entry per record in each")
        shape = np.atleast_2d(arr["shape"])
        names = [str(f) for f in np.atleast_1d(arr["filenames"])]
        if shape.ndim != 2 or shape.shape[1] != 2 or shape.shape[0] != len(names) or (shape[:, 1] != 12).any():
            raise ValueError(f"{meta_path} key 'shape': {arr['shape'].tolist()} for {len(names)} file(s) {names}; "
                             f"expected one (rows, 12) pair per memmap file")
        self.shape = [tuple(int(x) for x in s) for s in shape]
        self.n = len(self.start)
        bad = (self.file_idx < 0) | (self.file_idx >= len(names))
        if bad.any():
            raise ValueError(f"{meta_path} key 'file_idx': record(s) {np.flatnonzero(bad)[:5].tolist()} point to "
                             f"file(s) {self.file_idx[bad][:5].tolist()}; expected 0..{len(names) - 1}")
        rows = np.array([s[0] for s in self.shape])[self.file_idx]
        bad = (self.start < 0) | (self.length <= 0) | (self.start + self.length > rows)
        if bad.any():
            i = np.flatnonzero(bad)[:5]
            raise ValueError(f"{meta_path}: record(s) {i.tolist()} have start + length "
                             f"{(self.start[i] + self.length[i]).tolist()} past the end of their memmap file "
                             f"({rows[i].tolist()} rows) or a negative start / empty length; expected 0 <= start and "
                             f"start + length <= rows of the file in 'shape'")
        self.files = []
        for name, shp in zip(names, self.shape):
            p = root / Path(name).name
            if not p.exists():
                raise FileNotFoundError(f"{p}: ECG memmap listed in {meta_path.name} is missing")
            expected = int(np.prod(shp)) * self.dtype.itemsize
            if p.stat().st_size < expected:
                raise ValueError(f"{p}: truncated ECG memmap: {p.stat().st_size} bytes, expected {expected} "
                                 f"({shp} x {self.dtype}) as recorded in {meta_path.name}")
            self.files.append(np.memmap(p, dtype=self.dtype, mode="r", shape=shp))
        self.names = names
        lead_columns = dict(MDS_ED_LEAD_COLUMNS if lead_columns is None else lead_columns)
        if sorted(lead_columns) != sorted(LEADS) or sorted(lead_columns.values()) != list(range(12)):
            raise ValueError(f"lead map: {lead_columns}; expected each of {list(LEADS)} mapped to one column 0-11")
        self.lead_columns = lead_columns
        self._to_leads = [lead_columns[lead] for lead in LEADS]

    def raw(self, i: int) -> np.ndarray:
        """Record ``i`` as stored: (length, 12) float32, columns in the file's order."""
        a = int(self.start[i])
        return np.asarray(self.files[int(self.file_idx[i])][a:a + int(self.length[i])], dtype=np.float32)

    def record(self, i: int) -> np.ndarray:
        """Record ``i`` in mV, leads in :data:`mmlib.schema.LEADS` order; raises if it holds NaN or infinity."""
        x = self.raw(i)
        if not np.isfinite(x).all():
            raise ValueError(f"{self.path_of(i)}: record {i} holds {int((~np.isfinite(x)).sum())} NaN or infinite "
                             f"sample(s); expected finite amplitudes in mV (MDS-ED interpolates gaps)")
        return x[:, self._to_leads]

    def path_of(self, i: int) -> Path:
        return self.meta_path.parent / self.names[int(self.file_idx[i])]

    def check(self, records, where: str) -> None:
        """Check a sample of ``records``: finite samples, and Einthoven's and Goldberger's laws (III = II - I,
        aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2) when read through the lead map; a file in another
        lead order (or a wrong map) fails them. Samples at the +-3 mV clip are left out of the law check.
        ``where`` names the table the record indices come from."""
        records = np.asarray(records, dtype=np.int64)
        if len(records) == 0:
            return
        pick = records[np.unique(np.linspace(0, len(records) - 1, min(CHECK_RECORDS, len(records))).astype(int))]
        raws = [self.raw(int(i)) for i in pick]
        bad = [int(i) for i, x in zip(pick, raws) if non_finite_rows(x[None])[0]]
        if bad:
            raise ValueError(f"{self.path_of(bad[0])}: record(s) {bad[:5]} (general_data in {where}) hold NaN or "
                             f"infinite samples; expected finite amplitudes in mV")
        fails = [int(i) for i, x in zip(pick, raws) if not _limb_laws_hold(x, self.lead_columns)]
        if len(fails) > len(pick) // 2:
            hint = ""
            alt = dict(zip(LEADS, range(12)))
            if sum(_limb_laws_hold(x, alt) for x in raws) > len(pick) // 2:
                hint = (" The columns satisfy the laws in the order I, II, III, aVR, aVL, aVF, V1-V6 instead: the "
                        "file was written in another lead order than the release's.")
            order = ", ".join(sorted(self.lead_columns, key=self.lead_columns.get))
            raise ValueError(f"{self.path_of(fails[0])}: {len(fails)} of {len(pick)} checked records (general_data "
                             f"{fails[:5]} in {where}) break Einthoven's law (III = II - I, aVR = -(I + II)/2, "
                             f"aVL = I - II/2, aVF = II - I/2) when columns 0-11 are read as {order} (the release's lead "
                             f"map is mmlib.schema.MDS_ED_LEAD_COLUMNS); expected the release's lead order I, II, V1-V6, "
                             f"III, aVR, aVL, aVF (ECG-MIMIC channel_stoi_default).{hint}")


def _limb_laws_hold(x: np.ndarray, cols: dict[str, int], tol_mv: float = 0.02, rel: float = 0.05) -> bool:
    """Whether the limb leads of one stored record satisfy Einthoven's and Goldberger's laws under ``cols``."""
    i_, ii, iii, avr, avl, avf = (x[:, cols[k]].astype(np.float64) for k in ("I", "II", "III", "aVR", "aVL", "aVF"))
    ok = (np.abs(np.stack([i_, ii, iii, avr, avl, avf])) < ECG_CLIP_MV - 1e-3).all(0)
    if ok.sum() < 10:
        return True  # nothing unclipped to compare
    scale = max(np.sqrt(np.mean(i_[ok] ** 2 + ii[ok] ** 2)), 0.05)
    res = [iii - (ii - i_), avr + (i_ + ii) / 2, avl - (i_ - ii / 2), avf - (ii - i_ / 2)]
    return all(np.sqrt(np.mean(r[ok] ** 2)) <= tol_mv + rel * scale for r in res)


def table_columns(header, primary_target: str, where: str) -> tuple[list, list, list]:
    """The columns of ``mds_ed.csv`` the cohort is derived from, given its ``header``: ``(columns read, targets,
    features)``; a missing required column or primary target is an error naming ``where`` (the file). Used by
    :func:`load_mds_ed` (to read only these) and :func:`cohort_from_table`."""
    header = list(header)
    present = set(header)
    require_columns(pd.DataFrame(columns=[c for c in REQUIRED if c in present]), REQUIRED, where)
    if primary_target not in header or not primary_target.startswith(("deterioration_", "diagnoses_")):
        raise ValueError(f"{where}: primary target column {primary_target!r} not found; expected a "
                         f"deterioration_* or diagnoses_* column, e.g. 'deterioration_icu_24h'")
    targets = [c for c in header if c.startswith("deterioration_")]
    targets += [c for c in [f"diagnoses_{d}" for d in DIAGNOSES] + [primary_target]
                if c in header and c not in targets]
    features = [c for c in FEATURES if c in header]
    return list(dict.fromkeys([*REQUIRED, *features, *targets])), targets, features


def check_ecg_records(root: Path, records: pd.Series, ids: pd.Series, where: str) -> None:
    """Check the stays' ECG records (``general_data`` of the table ``where``; ``ids`` the rows' study ids) against
    the memmap under ``root``: every index within it, a sample finite and in the release's lead order
    (:meth:`Memmap.check`). Used by :func:`load_mds_ed`."""
    mm = Memmap(root)
    bad = (records < 0) | (records >= mm.n)
    if bad.any():
        raise ValueError(f"{where} column 'general_data': expected record indices 0..{mm.n - 1} into "
                         f"memmap_meta.npz; found {records[bad].head().tolist()} at id(s) {ids[bad].head().tolist()}")
    mm.check(records.to_numpy(), Path(where).name)


def load_mds_ed(root: Path, prediction_hours: float, primary_target: str, progress: bool,
                split_fractions=(0.7, 0.1, 0.2)) -> dict:
    """Read MDS-ED's ``mds_ed.csv`` under ``root`` (the header first, then only the columns
    :func:`table_columns` names) and derive the parts of a :class:`mmlib.data.Cohort` from it
    (:func:`cohort_from_table`, which documents them), the ECG records checked against the memmap
    (:func:`check_ecg_records`). Used by :func:`mmlib.data.load_cohort`."""
    root = Path(root)
    path = root / "mds_ed.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; expected MIMIC-IV-Ext-MDS-ED's table mds_ed.csv")
    folds_of_splits(split_fractions)
    header = list(pd.read_csv(path, nrows=0).columns)
    usecols, _, _ = table_columns(header, primary_target, str(path))
    dtypes = {c: str for c in usecols if c in MDS_ED_STR_COLUMNS} | {"demographics_gender": str}
    df = pd.read_csv(path, usecols=usecols, dtype=dtypes, low_memory=False)[usecols]
    return cohort_from_table(df, prediction_hours, primary_target, split_fractions, where=str(path), header=header,
                             ecg_records=lambda rec, ids: check_ecg_records(root, rec, ids, str(path)))


def cohort_from_table(df: pd.DataFrame, prediction_hours: float, primary_target: str,
                      split_fractions=(0.7, 0.1, 0.2), where: str = "mds_ed.csv", header=None,
                      ecg_records=None) -> dict:
    """The parts of a :class:`mmlib.data.Cohort` derived from MDS-ED's table in memory: ``df`` holds the columns
    of ``mds_ed.csv`` (as :func:`load_mds_ed` reads them, or as chapter 08 regenerates them,
    :func:`mmlib.attribution.cohort_fields`); ``where`` names the table in messages; ``header`` is the file's
    full header (default ``df``'s columns; it counts the release's columns missing and unknown); ``ecg_records``
    checks the stays' ECG records against the memmap (:func:`check_ecg_records`; ``None``: not checked, as for a
    table without rendered ECGs). One derivation for the loader and chapter 08's lab.

    Rows: one per ECG; identical duplicate rows, and rows whose ECG record (``general_data``) an earlier row
    already has, are dropped (MDS-ED's own loader drops the latter); the stay's first ECG
    (``general_ecg_no_within_stay == 0``) is kept; stays whose ``primary_target`` is -999 (undefined;
    :data:`mmlib.schema.MDS_ED_UNDEFINED_TARGETS` says why) are dropped, ages outside
    :data:`mmlib.schema.MDS_ED_AGE_RANGE` are dropped, all counted in the flow. Splits: the strat folds 0-19 are
    dealt to (train, val, test) in twentieths by ``split_fractions`` (:func:`folds_of_splits`; default
    (0.7, 0.1, 0.2): folds 0-13 / 14-15 / 16-19; the release's own split is (0.9, 0.05, 0.05): 0-17 / 18 / 19);
    the rule is stated in ``info``. Vital-sign levels outside :data:`mmlib.schema.MDS_ED_VITAL_RANGES` become NaN
    and are counted in ``info``. Race: the raw string (empty -> ``UNKNOWN``, counted) and MDS-ED's one-hot
    group, which must agree. Gender: 1 = male, 0 = female (``M``/``Male``/``F``/``Female`` are read, and
    counted; anything else is an error). Returns ``stays``, ``modalities``, ``availability``, ``flow``,
    ``targets`` (names) and ``info``.
    """
    folds = folds_of_splits(split_fractions)
    header = list(df.columns if header is None else header)
    usecols, targets, features = table_columns(header, primary_target, where)
    missing = [c for c in usecols if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: column(s) {missing[:5]} are in its header but not in the table given; expected "
                         f"every column the header names")
    df = df[usecols].copy()
    info: dict = {"prediction_hours": prediction_hours,
                  "release_columns_missing": len([c for c in MDS_ED_COLUMNS if c not in header]),
                  "unknown_columns": len([c for c in header if c not in MDS_ED_COLUMNS])}

    def at(col: str) -> str:
        return f"{where} column '{col}'"


    # --- types: ids and counters are whole numbers, every other numeric field a finite number
    study = df["general_study_id"]
    df["general_study_id"] = integer_column(study, at("general_study_id"), study, 0, None, "integer ECG study ids")
    ids = df["general_study_id"]
    df["general_subject_id"] = integer_column(df["general_subject_id"], at("general_subject_id"), ids, 0, None,
                                              "integer subject ids")
    df["general_ed_stay_id"] = integer_column(df["general_ed_stay_id"], at("general_ed_stay_id"), ids, 0, None,
                                              "integer ED stay ids")
    df["general_ecg_no_within_stay"] = integer_column(df["general_ecg_no_within_stay"],
                                                      at("general_ecg_no_within_stay"), ids, 0, None,
                                                      "integers >= 0 (0 = the stay's first ECG)")
    df["general_strat_fold"] = integer_column(df["general_strat_fold"], at("general_strat_fold"), ids, 0,
                                              MDS_ED_FOLDS - 1, f"integers 0-{MDS_ED_FOLDS - 1} (MDS-ED's strat folds)")
    df["general_data"] = integer_column(df["general_data"], at("general_data"), ids, None, None,
                                        "integer record indices into memmap_meta.npz")
    numeric = list(dict.fromkeys([*features, *targets, "demographics_age",
                                  *[f"demographics_ethnicity_{RACE5_COLUMNS[g]}" for g in RACE5]]))
    df[numeric] = pd.DataFrame({c: numeric_column(df[c], at(c), ids) for c in numeric}, index=df.index)

    # --- rows: duplicates, the stay's first ECG, the primary target, age
    flow = Flow(len(df), "ECG rows in mds_ed.csv")
    keep = flow.exclude(df.duplicated().to_numpy(), "duplicate row (identical to an earlier row)")
    df = df[keep]
    keep = flow.exclude(df["general_data"].duplicated().to_numpy(),
                        "ECG record (general_data) already in an earlier row (MDS-ED's loader keeps the first)")
    df = df[keep]
    unique_ids(df["general_study_id"], at("general_study_id"), "ECG study ids with different records")
    stays_before = df["general_ed_stay_id"].nunique()
    keep = flow.exclude((df["general_ecg_no_within_stay"] > 0).to_numpy(),
                        "not the first ECG of the ED stay (general_ecg_no_within_stay > 0)")
    df = df[keep]
    info["stays_without_first_ecg_row"] = int(stays_before - df["general_ed_stay_id"].nunique())
    unique_ids(df["general_ed_stay_id"], at("general_ed_stay_id") + " (rows with general_ecg_no_within_stay 0)",
               "ED stay ids")
    ids = df["general_study_id"]
    for c in targets:
        bad = df[c].notna() & ~df[c].isin([0, 1, MDS_ED_UNDEFINED])
        if c == primary_target:
            bad |= df[c].isna()
        if bad.any():
            raise ValueError(f"{at(c)}: {int(bad.sum())} value(s) are not labels (found "
                             f"{pd.unique(df.loc[bad, c])[:5].tolist()} at id(s) {ids[bad].head().tolist()}); "
                             f"expected 0, 1 or {MDS_ED_UNDEFINED} (undefined)")
    why = MDS_ED_UNDEFINED_TARGETS.get(primary_target.split("_", 1)[1], "undefined label")
    keep = flow.exclude((df[primary_target] == MDS_ED_UNDEFINED).to_numpy(),
                        f"primary target ({target_label(primary_target)}) undefined (-999: {why})")
    df = df[keep]
    ids = df["general_study_id"]
    age = df["demographics_age"]
    impossible = age < 0
    if impossible.any():
        raise ValueError(f"{at('demographics_age')}: {int(impossible.sum())} negative age(s) (e.g. "
                         f"{age[impossible].iloc[0]} at id(s) {ids[impossible].head().tolist()}); expected years "
                         f"{MDS_ED_AGE_RANGE[0]}-{MDS_ED_AGE_RANGE[1]}")
    keep = flow.exclude(age.isna().to_numpy(), "age not recorded")
    df = df[keep]
    keep = flow.exclude((df["demographics_age"] < MDS_ED_AGE_RANGE[0]).to_numpy(), f"age under {MDS_ED_AGE_RANGE[0]}")
    df = df[keep]
    keep = flow.exclude((df["demographics_age"] > MDS_ED_AGE_RANGE[1]).to_numpy(),
                        f"age over {MDS_ED_AGE_RANGE[1]} (implausible)")
    df = df[keep].set_index("general_ed_stay_id")
    df.index.name = "stay_id"
    ids = df["general_study_id"]

    # --- gender: 1 = male (MDS-ED codes edstays.gender 'M' as 1, anything else as 0)
    g = df["demographics_gender"].astype("string").str.strip().str.lower()
    code = g.map(_GENDER)
    bad = code.isna()
    if bad.any():
        raise ValueError(f"{at('demographics_gender')}: {int(bad.sum())} value(s) are not a gender code (found "
                         f"{pd.unique(df.loc[bad, 'demographics_gender'].astype(str))[:5].tolist()} at id(s) "
                         f"{ids[bad].head().tolist()}); expected 1 (male) or 0 (female), or M/Male/F/Female")
    info["gender_written_as_text"] = int((~g.isin(["0", "1", "0.0", "1.0"])).sum())
    gender = np.where(code.astype(int) == 1, "M", "F")

    # --- race: raw string (empty -> UNKNOWN, counted) and MDS-ED's one-hot group must agree
    raw = df["general_race"].astype("string").str.strip()
    empty = raw.isna() | (raw == "")
    info["race_empty_read_as_unknown"] = int(empty.sum())
    race = check_races(raw.mask(empty, "UNKNOWN"), at("general_race"))
    onehot_cols = [f"demographics_ethnicity_{RACE5_COLUMNS[g]}" for g in RACE5]
    onehot = df[onehot_cols]
    bad = ~onehot.isin([0, 1]).all(axis=1) | (onehot.sum(axis=1) != 1)
    if bad.any():
        raise ValueError(f"{where} columns {onehot_cols}: {int(bad.sum())} row(s) are not one-hot (id(s) "
                         f"{ids[bad].head().tolist()}); expected exactly one 1 per row")
    race5 = np.asarray(RACE5)[onehot.to_numpy().argmax(1)]
    from_raw = race.map(race5_of).to_numpy()
    bad = race5 != from_raw
    if bad.any():
        raise ValueError(f"{where} columns 'general_race' and demographics_ethnicity_*: {int(bad.sum())} row(s) "
                         f"disagree (e.g. {race[bad].iloc[0]!r} with group {race5[bad][0]} at id(s) "
                         f"{ids[bad].head().tolist()}); expected the group MDS-ED maps the race string to "
                         f"(WHITE -> white, BLACK -> black/african, HISPANIC -> hispanic/latino, ASIAN -> asian, "
                         f"else other)")

    # --- times: ECG between arrival and departure-or-window, departure after arrival
    intime = parse_time(df["general_intime"], at("general_intime"))
    outtime = parse_time(df["general_outtime"], at("general_outtime"))
    ecg_time = parse_time(df["general_ecg_time"], at("general_ecg_time"))
    for name, t in (("general_intime", intime), ("general_ecg_time", ecg_time)):
        bad = t.isna()
        if bad.any():
            raise ValueError(f"{at(name)}: {int(bad.sum())} empty time(s) (id(s) {ids[bad].head().tolist()}); "
                             f"expected 'YYYY-MM-DD HH:MM:SS'")
    bad = outtime < intime
    if bad.any():
        raise ValueError(f"{at('general_outtime')}: {int(bad.sum())} ED departure(s) before arrival "
                         f"(general_intime) at id(s) {ids[bad].head().tolist()}; expected outtime >= intime")
    bad = ecg_time < intime
    if bad.any():
        raise ValueError(f"{at('general_ecg_time')}: {int(bad.sum())} ECG(s) recorded before ED arrival "
                         f"(general_intime) at id(s) {ids[bad].head().tolist()}; expected every ECG between "
                         f"arrival and arrival + 90 minutes (MDS-ED's window)")
    info["ecg_after_ed_departure"] = int((ecg_time > outtime).sum())

    # --- splits by strat fold
    fold = df["general_strat_fold"]
    split = pd.Series(pd.NA, index=df.index, dtype=object)
    for s, fs in folds.items():
        split[fold.isin(fs)] = s
    info["split_fractions"] = [float(x) for x in split_fractions]
    info["split_rule"] = ("MDS-ED strat folds (general_strat_fold 0-19, 5 % each) dealt to splits in twentieths by "
                          f"split_fractions {tuple(float(x) for x in split_fractions)}: "
                          + ", ".join(f"{s} folds {_span(fs)}" for s, fs in folds.items())
                          + " (the release's own split is 0-17 / 18 / 19)")
    y = df[primary_target]
    for s in SPLITS:
        vals = set(y[split == s].dropna().unique())
        if len(vals) == 1:
            raise ValueError(f"{at(primary_target)}: split {s!r} (strat folds {_span(folds[s])}) holds only the "
                             f"class {int(vals.pop())}; expected both classes of the primary target in every split "
                             f"(choose other split_fractions or another primary target)")

    # --- features: vital-sign levels outside physiological ranges become NaN (counted)
    ranges = {f"vitals_{v}_{s}": MDS_ED_VITAL_RANGES[v] for v in VITALS for s in LEVEL_STATS} | {
        "vitals_acuity": MDS_ED_VITAL_RANGES["acuity"]}
    feat, out_of_range = clip_to_range(df[features], ranges)
    info["vitals_out_of_range"] = out_of_range

    # --- ECG records: index valid, in range, finite and in the release's lead order
    rec = df["general_data"]
    if ecg_records is not None:
        ecg_records(rec, ids)

    stays = pd.DataFrame({"subject_id": df["general_subject_id"], "intime": intime, "race_raw": race,
                          "race5": race5, "gender": gender, "age": df["demographics_age"].astype(float),
                          "split": split})
    for c in targets:
        stays[c] = df[c].replace(MDS_ED_UNDEFINED, np.nan).astype(float)
    vit = [c for c in features if c.startswith("vitals_") and c != "vitals_acuity"]
    lab = [c for c in features if c.startswith("labvalues_")]
    arrival = pd.DataFrame({"age": stays["age"], "gender": stays["gender"],
                            **{c: feat[c] for c in ("biometrics_bmi", "biometrics_weight", "biometrics_height",
                                                    "vitals_acuity") if c in feat.columns}})
    minutes = (ecg_time - intime).dt.total_seconds() / 60
    ecg = pd.DataFrame({"record": rec.astype(int), "ecg_time": ecg_time, "minutes_after_arrival": minutes})
    in_window = minutes <= prediction_hours * 60
    availability = pd.DataFrame({"arrival": True, "vitals": feat[vit].notna().any(axis=1) if vit else False,
                                 "labs": feat[lab].notna().any(axis=1) if lab else False, "ecg": in_window},
                                index=stays.index)
    info["ecg_after_prediction_time"] = int((~in_window).sum())
    return {"stays": stays, "modalities": {"arrival": arrival, "vitals": feat[vit], "labs": feat[lab], "ecg": ecg},
            "availability": availability, "flow": flow, "targets": targets, "info": info}
