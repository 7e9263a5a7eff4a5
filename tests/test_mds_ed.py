"""MIMIC-IV-Ext-MDS-ED: the twin writes the release's layout, and the loader reads files written the way the
release's own code writes them to the same cohort.

The release's conventions are re-created here from its public code (AI4HealthUOL/MDS-ED and ECG-MIMIC), not
taken from :mod:`mmlib.schema`: pandas' ``DataFrame.to_csv`` with its index (``full_preprocessing.py``), ECG
channels placed by ``channel_stoi_default`` (ECG-MIMIC ``ecg_utils.py``), records stacked by ``npys_to_memmap``
with ``np.savez(..., dtype=data.dtype)`` (``time_series_dataset_utils.py``), the column typing of
``multimodal.py``. Malformed inputs are in ``tests/test_robustness_mds_ed.py``.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlib.data import generate, load_cohort
from mmlib.data.latent import BiasKnobs
from mmlib.data.mds_ed import Memmap, folds_of_splits
from mmlib.data.synth_mds_ed import mds_ed_tables, series_stats
from mmlib.schema import LEADS

N, SEED = 150, 0

#: ECG-MIMIC ``channel_stoi_default`` (src/ecg_utils.py), as written there
CHANNEL_STOI_DEFAULT = {"i": 0, "ii": 1, "v1": 2, "v2": 3, "v3": 4, "v4": 5, "v5": 6, "v6": 7, "iii": 8, "avr": 9,
                        "avl": 10, "avf": 11, "vx": 12, "vy": 13, "vz": 14}
#: multimodal.py's typing of the columns it names (the int and str lists; every other column float32)
INT_GENERAL = ["Unnamed: 0", "general_study_id", "general_subject_id", "demographics_gender",
               "general_ecg_no_within_stay", "general_strat_fold", "demographics_ethnicity_asian",
               "demographics_ethnicity_black/african", "demographics_ethnicity_hispanic/latino",
               "demographics_ethnicity_other", "demographics_ethnicity_white", "general_data"]
STRINGS = ["general_file_name", "general_ecg_time", "general_ed_diag_ed", "general_ed_diag_hosp", "general_dod",
           "general_intime", "general_outtime", "general_race", "general_90min", "general_hosp_dischtime"]


# ------------------------------------------------------------------ writers with the release's conventions
def place_channels(sig: np.ndarray, sig_names, channel_stoi=CHANNEL_STOI_DEFAULT, channels: int = 12) -> np.ndarray:
    """ECG-MIMIC ``resample_data`` (at the target rate already): each named channel into its column."""
    data = np.zeros((len(sig), channels), dtype=np.float32)
    for i, cl in enumerate(c.lower() for c in sig_names):
        if cl in channel_stoi and channel_stoi[cl] < channels:
            data[:, channel_stoi[cl]] = sig[:, i].astype(np.float32)
    return data


def npys_to_memmap(records: list[np.ndarray], target: Path, max_len: int = 0) -> None:
    """The release's ``npys_to_memmap``: records stacked into ``target`` (a new file ``{stem}_{k}.npy`` once
    ``max_len`` rows are exceeded), meta saved with ``np.savez`` and the dtype as ``data.dtype``."""
    memmap, start, length, filenames, file_idx, shape = None, [], [], [], [], []
    for data in records:
        if memmap is None or (max_len > 0 and start[-1] + length[-1] > max_len):
            filenames.append(target.parent / (target.stem + "_" + str(len(filenames)) + ".npy") if max_len > 0
                             else target)
            if memmap is not None:
                shape.append([start[-1] + length[-1]] + list(data.shape[1:]))
                del memmap
            start.append(0)
            length.append(data.shape[0])
            memmap = np.memmap(filenames[-1], dtype=data.dtype, mode="w+", shape=data.shape)
        else:
            start.append(start[-1] + length[-1])
            length.append(data.shape[0])
            memmap = np.memmap(filenames[-1], dtype=data.dtype, mode="r+",
                               shape=tuple([start[-1] + length[-1]] + list(data.shape[1:])))
        file_idx.append(len(filenames) - 1)
        memmap[start[-1]:start[-1] + length[-1]] = data[:]
        memmap.flush()
    del memmap
    if len(shape) < len(filenames):
        shape.append([start[-1] + length[-1]] + list(data.shape[1:]))
    filenames = [f.name for f in filenames]
    np.savez(target.parent / (target.stem + "_meta.npz"), start=start, length=length, shape=shape, file_idx=file_idx,
             dtype=data.dtype, filenames=filenames)


def write_like_release(table: pd.DataFrame, records_in_leads: np.ndarray, root: Path, max_len: int = 0) -> Path:
    """A cohort folder as MDS-ED's code writes one: ``to_csv`` with the pandas index, and the ECGs (given in
    the study's lead order, named by ``schema.LEADS`` as WFDB's ``sig_name``) through ``channel_stoi_default``."""
    root.mkdir(parents=True)
    table.to_csv(root / "mds_ed.csv")
    npys_to_memmap([np.clip(place_channels(r, LEADS), -3, 3) for r in records_in_leads], root / "memmap.npy", max_len)
    return root


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    d = tmp_path_factory.mktemp("twin")
    root, _ = generate("mds_ed", {"n": N, "seed": SEED}, data_dir=d, progress=False)
    return root


@pytest.fixture(scope="module")
def twin_cohort(twin):
    return load_cohort("mds_ed", twin, progress=False)


@pytest.fixture(scope="module")
def table(twin):
    return pd.read_csv(twin / "mds_ed.csv", low_memory=False)


def _all_records(root: Path) -> np.ndarray:
    mm = Memmap(root)
    return np.stack([mm.record(i) for i in range(mm.n)])


# ------------------------------------------------------------------------------------ 1. same cohort
@pytest.mark.parametrize("max_len", [0, 40_000])  # one memmap file (as released), or split files (file_idx)
def test_files_written_the_release_way_load_to_the_same_cohort(twin, twin_cohort, tmp_path, max_len):
    st = mds_ed_tables(N, SEED)
    ref = write_like_release(st.tables["mds_ed.csv"], _all_records(twin), tmp_path / "ref", max_len)
    assert (ref / "mds_ed.csv").read_bytes() == (twin / "mds_ed.csv").read_bytes()  # pandas writes the twin's bytes
    if max_len:
        assert len(list(ref.glob("memmap_*.npy"))) > 1
    with np.load(ref / "memmap_meta.npz", allow_pickle=True) as z:
        assert z["dtype"].dtype == object  # the np.dtype is pickled, as the release's writer stores it
    c = load_cohort("mds_ed", ref, progress=False)
    assert c.origin == "real" and twin_cohort.origin == "synthetic"
    pd.testing.assert_frame_equal(c.stays, twin_cohort.stays)
    pd.testing.assert_frame_equal(c.flow, twin_cohort.flow)
    for m in c.modalities:
        pd.testing.assert_frame_equal(c.modalities[m], twin_cohort.modalities[m])
    pd.testing.assert_frame_equal(c.availability, twin_cohort.availability)
    ids = c.stays.index[::7]
    np.testing.assert_array_equal(c.ecg(ids), twin_cohort.ecg(ids))


def test_ecg_comes_back_in_the_study_lead_order(twin, twin_cohort):
    raw = np.fromfile(twin / "memmap.npy", dtype=np.float32).reshape(-1, 1000, 12)
    sid = twin_cohort.stays.index[3]
    rec = int(twin_cohort.modalities["ecg"].at[sid, "record"])
    got = twin_cohort.ecg([sid])[0]
    for lead in LEADS:
        np.testing.assert_array_equal(got[:, LEADS.index(lead)], raw[rec][:, CHANNEL_STOI_DEFAULT[lead.lower()]])
    i_, ii, iii, avr = (got[:, LEADS.index(k)] for k in ("I", "II", "III", "aVR"))
    unclipped = (np.abs(np.stack([i_, ii, iii, avr])) < 3).all(0)
    np.testing.assert_allclose(iii[unclipped], (ii - i_)[unclipped], atol=1e-5)
    np.testing.assert_allclose(avr[unclipped], (-(i_ + ii) / 2)[unclipped], atol=1e-5)


# ------------------------------------------------------------------------------------- 2. lead order
def test_a_file_in_another_lead_order_is_an_error(twin, tmp_path):
    root = tmp_path / "canonical"
    shutil.copytree(twin, root)
    recs = _all_records(twin)  # the study's order I, II, III, aVR, aVL, aVF, V1-V6: what the old twin wrote
    recs.reshape(-1, 12).astype(np.float32).tofile(root / "memmap.npy")
    with pytest.raises(ValueError, match=r"memmap\.npy: \d+ of \d+ checked records .* break Einthoven's law .* "
                                         r"expected the release's lead order I, II, V1-V6, III, aVR, aVL, aVF.*"
                                         r"order I, II, III, aVR, aVL, aVF, V1-V6 instead"):
        load_cohort("mds_ed", root, progress=False)


def test_a_wrong_lead_map_is_an_error(twin):
    identity = dict(zip(LEADS, range(12)))
    mm = Memmap(twin, lead_columns=identity)
    with pytest.raises(ValueError, match=r"break Einthoven's law .* when columns 0-11 are read as I, II, III, aVR"):
        mm.check(np.arange(mm.n), "mds_ed.csv")
    with pytest.raises(ValueError, match=r"lead map: .*expected each of"):
        Memmap(twin, lead_columns={**identity, "V6": 0})
    Memmap(twin).check(np.arange(Memmap(twin).n), "mds_ed.csv")  # the release's map passes


# ---------------------------------------------------------------------------- 3. the twin's layout
def test_table_parses_with_the_release_loaders_typing(twin, table):
    header = list(pd.read_csv(twin / "mds_ed.csv", nrows=0).columns)
    assert len(header) == 1936 and header[0] == "Unnamed: 0"
    groups = pd.Series([c.split("_")[0] for c in header[1:]]).value_counts().to_dict()
    assert groups == {"general": 22, "demographics": 7, "biometrics": 3, "vitals": 55, "labvalues": 405,
                      "diagnoses": 1428, "deterioration": 15}
    ints = INT_GENERAL + [c for c in header if c.startswith("diagnoses_")]
    dtypes = {c: "int32" for c in ints} | {c: "str" for c in STRINGS} | {
        c: "float32" for c in header if c not in ints and c not in STRINGS}
    df = pd.read_csv(twin / "mds_ed.csv", dtype=dtypes)  # raises if a column does not parse as the release reads it
    for c in ("general_ecg_time", "general_intime", "general_outtime", "general_hosp_dischtime", "general_90min"):
        assert pd.to_datetime(df[c]).notna().sum() == df[c].notna().sum()
    for c in ("general_ed_diag_ed", "general_ed_diag_hosp"):
        lists = df[c].map(ast.literal_eval)
        assert lists.map(lambda x: isinstance(x, list)).all()
    assert (df["general_ed_diag_ed"].map(ast.literal_eval).map(len) > 0).all()  # every row has a diagnosis
    assert (df["Unnamed: 0"] == np.arange(len(df))).all()
    assert df["general_file_name"].str.fullmatch(r"files/p\d{4}/p\d{8}/s\d{8}/\d{8}").all()
    assert ((df["demographics_gender"] == 1) | (df["demographics_gender"] == 0)).all()


def test_rows_are_the_ecgs_of_the_first_90_minutes(table):
    t = table
    intime, ecg = pd.to_datetime(t["general_intime"]), pd.to_datetime(t["general_ecg_time"])
    minutes = (ecg - intime).dt.total_seconds() / 60
    assert ((minutes >= 0) & (minutes <= 90)).all()  # every ECG in the window, none outside
    assert (pd.to_datetime(t["general_90min"]) == intime + pd.Timedelta(minutes=90)).all()
    g = t.groupby("general_ed_stay_id")
    assert (g["general_ecg_no_within_stay"].apply(lambda s: sorted(s) == list(range(len(s))))).all()
    assert g["general_ecg_time"].apply(lambda s: s.is_monotonic_increasing).all()
    assert 1.05 < len(t) / t["general_ed_stay_id"].nunique() < 1.5  # some stays have more than one ECG
    same = ["general_strat_fold", "demographics_age", "vitals_heartrate_mean", "deterioration_icu_24h"]
    assert (g[same].nunique(dropna=False) == 1).all().all()  # stay-level columns repeat on every ECG row
    assert t["general_study_id"].is_unique and t["general_data"].is_unique


def test_units_statistics_and_absent_data(table):
    t = table
    assert t["vitals_temperature_mean"].dropna().between(34, 42).all()  # degrees Celsius
    assert t["vitals_heartrate_std"].dropna().ge(0).all()
    one = t["vitals_heartrate_min"] == t["vitals_heartrate_max"]  # a single value: std 0, coeff 0
    assert (t.loc[one, "vitals_heartrate_std"] == 0).all() and (t.loc[one, "vitals_heartrate_coeff"] == 0).all()
    rc = (t["vitals_sbp_last"] - t["vitals_sbp_first"]) / t["vitals_sbp_first"]
    np.testing.assert_allclose(t["vitals_sbp_rate_change"].dropna(), rc.dropna(), rtol=1e-9)
    lab_cols = [c for c in t.columns if c.startswith("labvalues_")]
    written = {c.rsplit("_", 2)[0] if c.endswith("rate_change") else c.rsplit("_", 1)[0]
               for c in lab_cols if t[c].notna().any()}
    assert {"labvalues_creatinine", "labvalues_urea_nitrogen", "labvalues_white_blood_cells", "labvalues_troponin_t",
            "labvalues_hemoglobin", "labvalues_c-reactive_protein", "labvalues_bicarbonate"} <= written
    assert t["labvalues_ph_mean"].isna().all() and t["labvalues_bands_mean"].isna().all()  # no signal: absent
    diag = t[[c for c in t.columns if c.startswith("diagnoses_")]]
    assert set(np.unique(diag.to_numpy())) <= {0, 1}
    assert (t["diagnoses_i48"] >= t["diagnoses_i4891"]).all() and (t["diagnoses_i50"] >= t["diagnoses_i509"]).all()


def test_series_statistics_follow_the_release_definitions():
    rng = np.random.default_rng(0)
    vals = np.round(rng.normal(90, 10, (50, 5)), 1)
    mins = np.sort(rng.uniform(0, 90, (50, 5)), 1)
    vals[rng.random((50, 5)) < 0.3] = np.nan
    vals[0] = np.nan
    vals[1, 1:] = np.nan
    got = series_stats(vals, mins)
    for i in range(2, 50):
        have = ~np.isnan(vals[i])
        v, x = vals[i][have], mins[i][have]
        if len(v) == 0:
            continue
        assert got["std"][i] == pytest.approx(np.std(v))  # ddof 0
        assert got["rate_change"][i] == pytest.approx((v[-1] - v[0]) / v[0])
        slope = np.polyfit(x, v, 1)[0] if len(v) > 1 else 0.0  # LinearRegression's coef_ on (minutes, value)
        assert got["coeff"][i] == pytest.approx(slope, abs=1e-9)
        assert (got["first"][i], got["last"][i], got["median"][i]) == (v[0], v[-1], np.median(v))
    assert np.isnan([got[s][0] for s in got]).all()
    assert got["std"][1] == 0 and got["coeff"][1] == 0


def test_minus_999_exactly_where_the_release_puts_it(table):
    t = table
    hours, days = t["general_mortality_hours"], t["general_mortality_days"]
    early = hours < 1.5  # death within 1.5 h (from the date of death's midnight: any death on the arrival day)
    for h in ("1d", "7d", "28d", "90d", "180d", "365d", "stay"):
        col = t[f"deterioration_mortality_{h}"]
        assert ((col == -999) == early).all(), h
        if h != "stay":
            expected = (days <= int(h[:-1])) & hours.notna()
            assert (col[~early] == expected[~early].astype(float)).all(), h
    icu_h = t["general_icu_time_hours"]
    for c in ("deterioration_icu_24h", "deterioration_icu_stay"):
        assert ((t[c] == -999) == (icu_h < 1.5)).all()
    ok = ~(icu_h < 1.5)
    assert (t.loc[ok, "deterioration_icu_24h"] == ((icu_h >= 1.5) & (icu_h <= 24)).astype(float)[ok]).all()
    assert (t.loc[ok, "deterioration_icu_stay"] == (icu_h >= 1.5).astype(float)[ok]).all()
    hyp = t["deterioration_severe_hypoxemia"]
    assert (hyp[t["vitals_o2sat_min"].isna() | (t["vitals_o2sat_min"] <= 85)] == -999).all()
    never = ["deterioration_ecmo", "deterioration_vasopressors", "deterioration_inotropes",
             "deterioration_mechanical_ventilation", "deterioration_cardiac_arrest"]
    assert not (t[never] == -999).any().any() and (t["deterioration_icu_24h"] == -999).any()
    assert t["general_dod"].dropna().str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()  # MIMIC's dod is a date


def test_twenty_stratified_folds_by_patient():
    st = mds_ed_tables(2000, 1)
    t = st.tables["mds_ed.csv"]
    first = t[t["general_ecg_no_within_stay"] == 0]
    sizes = first["general_strat_fold"].value_counts()
    assert sorted(sizes.index) == list(range(20)) and sizes.max() - sizes.min() <= 1  # 5 % each
    assert (t.groupby("general_subject_id")["general_strat_fold"].nunique() == 1).all()
    for col in ("demographics_gender", "diagnoses_i50"):
        rate = first.groupby("general_strat_fold")[col].mean()
        assert rate.max() - rate.min() < 0.12, col  # stratified: every fold alike


def test_unequal_access_removes_labs_and_biometrics_never_the_ecg():
    off = BiasKnobs(**{k: 0.0 for k in BiasKnobs.__dataclass_fields__})
    a = mds_ed_tables(1500, 2, off)
    b = mds_ed_tables(1500, 2, BiasKnobs(**({k: 0.0 for k in BiasKnobs.__dataclass_fields__} | {"unequal_access": 3.0})))
    ta, tb = a.tables["mds_ed.csv"], b.tables["mds_ed.csv"]
    for col in ("general_ecg_time", "general_data", "general_ecg_no_within_stay"):
        pd.testing.assert_series_equal(ta[col], tb[col])  # the same ECGs, all in the window
    blk = (b.truth["race5"] == "Black").to_numpy()
    assert b.truth["labs_missing"][blk].mean() > a.truth["labs_missing"][blk].mean() + 0.2
    assert b.truth["biometrics_missing"][blk].mean() > a.truth["biometrics_missing"][blk].mean() + 0.2


# --------------------------------------------------------------------------------------- 4. splits
def test_split_fractions_map_folds_in_twentieths(twin, twin_cohort):
    assert folds_of_splits((0.7, 0.1, 0.2)) == {"train": list(range(14)), "val": [14, 15], "test": [16, 17, 18, 19]}
    assert folds_of_splits((0.9, 0.05, 0.05)) == {"train": list(range(18)), "val": [18], "test": [19]}
    for bad in ((0.72, 0.08, 0.2), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.5, 0.5)):
        with pytest.raises(ValueError, match=r"split_fractions: .*multiples of 0\.05 summing to 1"):
            folds_of_splits(bad)
    t = pd.read_csv(twin / "mds_ed.csv", usecols=["general_ed_stay_id", "general_strat_fold"]).drop_duplicates()
    fold = t.set_index("general_ed_stay_id")["general_strat_fold"].reindex(twin_cohort.stays.index)
    expected = np.where(fold <= 13, "train", np.where(fold <= 15, "val", "test"))
    assert (twin_cohort.stays["split"].to_numpy() == expected).all()
    assert "train folds 0-13, val folds 14-15, test folds 16-19" in twin_cohort.info["split_rule"]
    rel = load_cohort("mds_ed", twin, split_fractions=(0.9, 0.05, 0.05), primary_target="diagnoses_i10",
                      progress=False)
    assert (rel.stays["split"] == "test").sum() == (fold == 19).sum()
    with pytest.raises(ValueError, match=r"split_fractions: .*got \(0\.75, 0\.05, 0\.25\)"):
        load_cohort("mds_ed", twin, split_fractions=(0.75, 0.05, 0.25), progress=False)


def test_flow_counts_the_extra_ecg_rows(table, twin_cohort):
    extra = int((table["general_ecg_no_within_stay"] > 0).sum())
    flow = twin_cohort.flow.set_index("step")["excluded"]
    assert flow.iloc[0] == 0 and flow.filter(like="first ECG").item() == extra > 0
    first = table[table["general_ecg_no_within_stay"] == 0]
    assert flow.filter(like="-999").item() == int((first["deterioration_icu_24h"] == -999).sum())
    assert len(twin_cohort.stays) == len(first) - flow.filter(like="-999").item()
    assert twin_cohort.info["vitals_out_of_range"] == {} and twin_cohort.info["release_columns_missing"] == 0
