"""The MDS-ED loader on malformed inputs: one small valid twin, mutated one way per case.

Every case ends in an error whose message names the file, the column (or key) and what was expected, or in an
exact, counted exclusion or correction (flow step or ``Cohort.info``); none is accepted silently. The table is
edited as text (read with ``dtype=str``), so every other cell keeps its bytes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlib.data import generate, load_cohort

N, SEED = 100, 3  # a twin whose default split holds both classes of deterioration_icu_24h in every split


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root, _ = generate("mds_ed", {"n": N, "seed": SEED}, data_dir=tmp_path_factory.mktemp("base"), progress=False)
    return root, load_cohort("mds_ed", root, progress=False)


# ------------------------------------------------------------------------------------------ mutations
def _rows(t: pd.DataFrame, k: int = 1) -> pd.Index:
    """``k`` first-ECG rows in training folds (0-13) with icu_24h 0: changing them leaves every split two-class."""
    ok = (t["general_ecg_no_within_stay"] == "0") & (t["general_strat_fold"].astype(int) <= 13) \
        & (t["deterioration_icu_24h"] == "0.0") & (t["deterioration_mortality_1d"] != "-999.0")
    return t.index[ok][:k]


def _set(col: str, value: str, k: int = 1):
    def f(t):
        t.loc[_rows(t, k), col] = value
        return t
    return f


def _dup_row(t):
    return pd.concat([t, t.loc[_rows(t)]], ignore_index=True)


def _dup_stay(t):
    i = t.index[t["general_ecg_no_within_stay"] == "1"][:1]  # a stay's second ECG also numbered 0
    t.loc[i, "general_ecg_no_within_stay"] = "0"
    return t


def _dup_study(t):
    a, b = _rows(t, 2)
    t.loc[b, "general_study_id"] = t.loc[a, "general_study_id"]
    return t


def _dup_record(t):
    r = t.loc[_rows(t)].copy()
    r["vitals_heartrate_mean"] = "77.0"  # same ECG record, a different row: the release's loader keeps the first
    return pd.concat([t, r], ignore_index=True)


def _ecg_shift(minutes: float):
    def f(t):
        i = _rows(t)
        t.loc[i, "general_ecg_time"] = (pd.to_datetime(t.loc[i, "general_intime"]) + pd.Timedelta(minutes=minutes)
                                        ).dt.strftime("%Y-%m-%d %H:%M:%S")
        return t
    return f


def _out_before_in(t):
    i = _rows(t)
    t.loc[i, "general_outtime"] = (pd.to_datetime(t.loc[i, "general_intime"]) - pd.Timedelta(hours=1)
                                   ).dt.strftime("%Y-%m-%d %H:%M:%S")
    return t


def _ecg_after_departure(t):
    i = _rows(t)
    t.loc[i, "general_outtime"] = (pd.to_datetime(t.loc[i, "general_ecg_time"]) - pd.Timedelta(minutes=1)
                                   ).dt.strftime("%Y-%m-%d %H:%M:%S")
    t.loc[i, "general_outtime"] = np.maximum(t.loc[i, "general_outtime"], t.loc[i, "general_intime"])
    return t


def _race_empty(t):
    i = _rows(t)
    t.loc[i, "general_race"] = ""
    for g in ("asian", "black/african", "hispanic/latino", "white"):
        t.loc[i, f"demographics_ethnicity_{g}"] = "0"
    t.loc[i, "demographics_ethnicity_other"] = "1"
    return t


def _race_disagrees(t):
    i = t.index[(t["general_race"] == "WHITE") & t.index.isin(_rows(t, 50))][:1]
    t.loc[i, "demographics_ethnicity_white"] = "0"
    t.loc[i, "demographics_ethnicity_asian"] = "1"
    return t


def _two_groups(t):
    i = _rows(t)
    t.loc[i, ["demographics_ethnicity_white", "demographics_ethnicity_asian"]] = "1"
    return t


def _no_first_row(t):
    single = t.groupby("general_ed_stay_id")["general_ecg_no_within_stay"].transform("size") == 1
    i = t.index[single & t.index.isin(_rows(t, 50))][:1]
    t.loc[i, "general_ecg_no_within_stay"] = "1"
    return t


def _one_class_val(t):
    t.loc[t["general_strat_fold"].isin(["14", "15"]), "deterioration_icu_24h"] = "0.0"
    return t


def _drop(col):
    return lambda t: t.drop(columns=col)


# --- memmap and its index
def _meta(**change):
    def f(root: Path):
        z = dict(np.load(root / "memmap_meta.npz", allow_pickle=True))
        for k, v in change.items():
            z[k] = v(z) if callable(v) else v
            if v is None:
                del z[k]
        np.savez(root / "memmap_meta.npz", **z)
    return f


def _poison(value: float):
    def f(root: Path):
        mm = np.memmap(root / "memmap.npy", dtype=np.float32, mode="r+")
        mm[5 * 12] = value  # sample 5 of record 0 (general_data 0: the first stay, always checked)
        mm.flush()
    return f


def _truncate(root: Path):
    p = root / "memmap.npy"
    with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size - 4 * 12 * 10)


def _canonical_order(root: Path):
    mm = np.memmap(root / "memmap.npy", dtype=np.float32, mode="r+").reshape(-1, 12)
    release_to_study = [0, 1, 8, 9, 10, 11, 2, 3, 4, 5, 6, 7]  # columns written as I, II, III, aVR, ..., V6
    mm[:] = mm[:, release_to_study]
    mm.flush()


CSV = r"mds_ed\.csv"
#: name -> (table mutation, file mutation, load_cohort kwargs, expected): expected is ("error", regex),
#: ("flow", step substring, extra rows excluded there, stays fewer) or ("info", key, value, stays fewer)
CASES = {
    "age not a number": (_set("demographics_age", "abc"), None, {},
                         ("error", CSV + r" column 'demographics_age': 1 value\(s\) are not numbers \(e\.g\. 'abc' at "
                                         r"id\(s\) \[\d+\]\); expected numbers")),
    "age negative": (_set("demographics_age", "-4"), None, {},
                     ("error", CSV + r" column 'demographics_age': 1 negative age\(s\) .*expected years 18-120")),
    "age over 120": (_set("demographics_age", "150"), None, {}, ("flow", "age over 120", 1, 1)),
    "age under 18": (_set("demographics_age", "16", 2), None, {}, ("flow", "age under 18", 2, 2)),
    "age empty": (_set("demographics_age", ""), None, {}, ("flow", "age not recorded", 1, 1)),
    "gender as word": (_set("demographics_gender", "Male", 3), None, {}, ("info", "gender_written_as_text", 3, 0)),
    "gender unknown code": (_set("demographics_gender", "X"), None, {},
                            ("error", CSV + r" column 'demographics_gender': 1 value\(s\) are not a gender code "
                                            r"\(found \['X'\].*expected 1 \(male\) or 0 \(female\)")),
    "gender code 2": (_set("demographics_gender", "2"), None, {},
                      ("error", CSV + r" column 'demographics_gender': .*found \['2'\]")),
    "race empty": (_race_empty, None, {}, ("info", "race_empty_read_as_unknown", 1, 0)),
    "race unknown string": (_set("general_race", "MARTIAN"), None, {},
                            ("error", CSV + r" column 'general_race': unknown race string\(s\) \['MARTIAN'\]")),
    "race and one-hot disagree": (_race_disagrees, None, {},
                                  ("error", CSV + r" columns 'general_race' and demographics_ethnicity_\*: 1 row\(s\) "
                                                  r"disagree \(e\.g\. 'WHITE' with group Asian")),
    "one-hot two groups": (_two_groups, None, {}, ("error", r"demographics_ethnicity_white.*: 1 row\(s\) are not "
                                                            r"one-hot .*expected exactly one 1 per row")),
    "heart rate impossible": (_set("vitals_heartrate_mean", "900.0"), None, {},
                              ("info", "vitals_out_of_range", {"vitals_heartrate_mean": 1}, 0)),
    "temperature in Fahrenheit": (_set("vitals_temperature_first", "98.6", 2), None, {},
                                  ("info", "vitals_out_of_range", {"vitals_temperature_first": 2}, 0)),
    "vital not a number": (_set("vitals_o2sat_min", "low"), None, {},
                           ("error", CSV + r" column 'vitals_o2sat_min': 1 value\(s\) are not numbers")),
    "vital infinite": (_set("labvalues_creatinine_mean", "inf"), None, {},
                       ("error", CSV + r" column 'labvalues_creatinine_mean': 1 value\(s\) are infinite")),
    "duplicate row": (_dup_row, None, {}, ("flow", "duplicate row", 1, 0)),
    "duplicate stay id": (_dup_stay, None, {},
                          ("error", CSV + r" column 'general_ed_stay_id' \(rows with general_ecg_no_within_stay 0\): "
                                          r"1 duplicated ED stay ids \(e\.g\. \[\d+\]\); expected each once")),
    "duplicate study id": (_dup_study, None, {},
                           ("error", CSV + r" column 'general_study_id': 1 duplicated ECG study ids with different "
                                           r"records \(e\.g\. \[\d+\]\); expected each once")),
    "ECG record in two rows": (_dup_record, None, {}, ("flow", "already in an earlier row", 1, 0)),
    "ECG before arrival": (_ecg_shift(-30), None, {},
                           ("error", CSV + r" column 'general_ecg_time': 1 ECG\(s\) recorded before ED arrival")),
    "ECG after the window": (_ecg_shift(200), None, {}, ("info", "ecg_after_prediction_time", 1, 0)),
    "ECG after departure": (_ecg_after_departure, None, {}, ("info", "ecg_after_ed_departure", 1, 0)),
    "departure before arrival": (_out_before_in, None, {},
                                 ("error", CSV + r" column 'general_outtime': 1 ED departure\(s\) before arrival")),
    "time unparseable": (_set("general_intime", "yesterday"), None, {},
                         ("error", CSV + r" column 'general_intime': 1 value\(s\) are not date-times")),
    "fold not an integer": (_set("general_strat_fold", "3.5"), None, {},
                            ("error", CSV + r" column 'general_strat_fold': 1 value\(s\) are not integers 0-19 .*"
                                            r"found \['3\.5'\]")),
    "fold out of range": (_set("general_strat_fold", "20"), None, {},
                          ("error", CSV + r" column 'general_strat_fold': .*found \['20'\]")),
    "ECG number negative": (_set("general_ecg_no_within_stay", "-1"), None, {},
                            ("error", CSV + r" column 'general_ecg_no_within_stay': .*expected integers >= 0")),
    "stay without its first ECG row": (_no_first_row, None, {}, ("info", "stays_without_first_ecg_row", 1, 1)),
    "stay id not an integer": (_set("general_ed_stay_id", "stay-7"), None, {},
                               ("error", CSV + r" column 'general_ed_stay_id': 1 value\(s\) are not numbers")),
    "target value 2": (_set("deterioration_icu_24h", "2.0"), None, {},
                       ("error", CSV + r" column 'deterioration_icu_24h': 1 value\(s\) are not labels \(found \[2\.0\]"
                                       r".*expected 0, 1 or -999")),
    "target empty": (_set("deterioration_icu_24h", ""), None, {},
                     ("error", CSV + r" column 'deterioration_icu_24h': 1 value\(s\) are not labels")),
    "target -999": (_set("deterioration_icu_24h", "-999.0", 2), None, {},
                    ("flow", "primary target (ICU admission within 24 h) undefined (-999: ICU admission within 1.5 h", 2, 2)),
    "split with one class": (_one_class_val, None, {},
                             ("error", CSV + r" column 'deterioration_icu_24h': split 'val' \(strat folds 14-15\) "
                                             r"holds only the class 0; expected both classes")),
    "split fractions not in twentieths": (None, None, {"split_fractions": (0.72, 0.08, 0.2)},
                                          ("error", r"split_fractions: MDS-ED is split by its 20 strat folds")),
    "required column missing": (_drop("general_strat_fold"), None, {},
                                ("error", CSV + r": missing column\(s\) \['general_strat_fold'\]")),
    "record index past the memmap": (_set("general_data", "100000"), None, {},
                                     ("error", CSV + r" column 'general_data': expected record indices 0\.\.\d+ into "
                                                     r"memmap_meta\.npz; found \[100000\]")),
    "meta lengths disagree": (None, _meta(length=lambda z: z["length"][:-1]), {},
                              ("error", r"memmap_meta\.npz: keys 'start', 'length', 'file_idx' have lengths (\d+), "
                                        r"(?!\1)\d+, \d+; expected one entry per record")),
    "meta start past the end": (None, _meta(start=lambda z: z["start"] + 500), {},
                                ("error", r"memmap_meta\.npz: record\(s\) \[\d+.*start \+ length .*past the end of "
                                          r"their memmap file")),
    "meta shape not 12 leads": (None, _meta(shape=lambda z: np.array([[z["shape"][0][0] * 12 // 10, 10]])), {},
                                ("error", r"memmap_meta\.npz key 'shape': .*expected one \(rows, 12\) pair")),
    "meta key missing": (None, _meta(filenames=None), {},
                         ("error", r"memmap_meta\.npz: missing key\(s\) \['filenames'\]")),
    "meta dtype not float": (None, _meta(dtype=np.dtype("int16")), {},
                             ("error", r"memmap_meta\.npz key 'dtype': int16 is not a float type; expected float32")),
    "meta file index out of range": (None, _meta(file_idx=lambda z: z["file_idx"] + 1), {},
                                     ("error", r"memmap_meta\.npz key 'file_idx': record\(s\) .*expected 0\.\.0")),
    "waveform NaN": (None, _poison(np.nan), {},
                     ("error", r"memmap\.npy: record\(s\) \[0\] \(general_data in mds_ed\.csv\) hold NaN or infinite")),
    "waveform infinite": (None, _poison(np.inf), {}, ("error", r"memmap\.npy: record\(s\) \[0\] .*NaN or infinite")),
    "memmap truncated": (None, _truncate, {}, ("error", r"memmap\.npy: truncated ECG memmap")),
    "leads in another order": (None, _canonical_order, {},
                               ("error", r"memmap\.npy: \d+ of \d+ checked records .*break Einthoven's law.*expected "
                                         r"the release's lead order I, II, V1-V6, III, aVR, aVL, aVF")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name, base, tmp_path):
    src, ok = base
    edit_table, edit_files, kwargs, expected = CASES[name]
    root = tmp_path / "m"
    root.mkdir()
    for f in ("mds_ed.csv", "memmap_meta.npz", "synthetic_params.json", "synthetic_truth.parquet"):
        shutil.copy(src / f, root / f)
    if edit_files is None:
        (root / "memmap.npy").symlink_to(src / "memmap.npy")
    else:
        shutil.copy(src / "memmap.npy", root / "memmap.npy")
        edit_files(root)
    if edit_table is not None:
        t = pd.read_csv(root / "mds_ed.csv", dtype=str, keep_default_na=False)
        edit_table(t).to_csv(root / "mds_ed.csv", index=False)
    kind = expected[0]
    if kind == "error":
        with pytest.raises((ValueError, FileNotFoundError), match=expected[1]):
            load_cohort("mds_ed", root, progress=False, **kwargs)
        return
    c = load_cohort("mds_ed", root, progress=False, **kwargs)
    if kind == "flow":
        step, extra, fewer = expected[1:]
        got = c.flow.set_index("step")["excluded"]
        base_flow = ok.flow.set_index("step")["excluded"]
        hit = [s for s in got.index if step in s]
        assert len(hit) == 1, (step, list(got.index))
        assert got[hit[0]] - base_flow.get(hit[0], 0) == extra
        assert (got.drop(hit[0]) == base_flow.drop(hit[0])).all()  # nothing else changes
    else:
        key, value, fewer = expected[1:]
        assert c.info[key] == value and ok.info[key] != value
    assert len(c.stays) == len(ok.stays) - fewer


def test_the_valid_twin_loads_and_the_table_covers_enough_cases(base):
    _, ok = base
    assert ok.info["vitals_out_of_range"] == {} and ok.info["gender_written_as_text"] == 0
    assert len(CASES) >= 22 and len({repr(v[3]) for v in CASES.values()}) == len(CASES)  # distinct expectations


def test_gender_words_are_mapped_not_defaulted(base, tmp_path):
    src, ok = base
    root = tmp_path / "g"
    shutil.copytree(src, root)
    t = pd.read_csv(root / "mds_ed.csv", dtype=str, keep_default_na=False)
    i = _rows(t, 4)
    t.loc[i, "demographics_gender"] = ["Male", "M", "female", "F"]
    t.to_csv(root / "mds_ed.csv", index=False)
    c = load_cohort("mds_ed", root, progress=False)
    sid = t.loc[i, "general_ed_stay_id"].astype(float).astype(int).tolist()
    assert c.stays.loc[sid, "gender"].tolist() == ["M", "M", "F", "F"]
    assert c.info["gender_written_as_text"] == 4


def test_race_empty_is_unknown_and_out_of_range_vitals_are_nan(base, tmp_path):
    src, _ = base
    root = tmp_path / "r"
    shutil.copytree(src, root)
    t = pd.read_csv(root / "mds_ed.csv", dtype=str, keep_default_na=False)
    _race_empty(t)
    i = _rows(t, 2)[1:]
    t.loc[i, "vitals_heartrate_mean"] = "900.0"
    t.to_csv(root / "mds_ed.csv", index=False)
    c = load_cohort("mds_ed", root, progress=False)
    s0 = int(float(t.loc[_rows(t)[0], "general_ed_stay_id"]))
    s1 = int(float(t.loc[i[0], "general_ed_stay_id"]))
    assert (c.stays.at[s0, "race_raw"], c.stays.at[s0, "race5"], c.stays.at[s0, "race_binary"]) == \
        ("UNKNOWN", "Other", "Unknown")
    assert np.isnan(c.modalities["vitals"].at[s1, "vitals_heartrate_mean"])
