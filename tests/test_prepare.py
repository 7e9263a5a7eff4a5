"""Chapter 01's cohorts from its parameters (mmlib.data.prepare): parameter checks, locating or generating each
cohort, loading it, and the summary the chapter writes."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mmlib.data import prepare

GOOD = {"source": "synthetic", "race_grouping": "race_binary", "cohorts": ["mimic_eye", "mds_ed"]}


def test_a_real_source_needs_the_folder_of_each_cohort(tmp_path):
    params = {**GOOD, "source": "real", "roots": {"mimic_eye": str(tmp_path)}}
    assert prepare.cohort_root("mimic_eye", params, data_dir="unused") == (Path(tmp_path), True)
    with pytest.raises(ValueError, match=r"roots\['mds_ed'\]: source is 'real'.*-p roots.mds_ed"):
        prepare.cohort_root("mds_ed", params, data_dir="unused")


def test_load_cohorts_generates_once_then_reuses(tmp_path):
    params = {**GOOD, "cohorts": ["mds_ed"], "roots": {}, "n_patients": 160, "seed": 3, "bias_knobs": {},
              "informativeness": {}, "image_size": 64, "split_fractions": [0.6, 0.2, 0.2],
              "mds_ed_target": "diagnoses_i10"}
    loaded, timing = prepare.load_cohorts(params, data_dir=tmp_path)
    c = loaded["mds_ed"]
    assert list(loaded) == ["mds_ed"] and c.primary_target == "diagnoses_i10" and c.is_synthetic
    assert c.root.parent == tmp_path and c.root.name.startswith("mds_ed-n160-s3-")
    assert list(timing.index) == ["MIMIC-IV-Ext-MDS-ED"]
    assert list(timing.columns) == ["origin", "stays", "generated", "loaded in"]
    assert timing.loc["MIMIC-IV-Ext-MDS-ED", "stays"] == len(c.stays) and timing["generated"].iloc[0].endswith(" s")
    again, timing2 = prepare.load_cohorts(params, data_dir=tmp_path)
    assert timing2["generated"].iloc[0] == "reused"
    pd.testing.assert_frame_equal(again["mds_ed"].stays, c.stays)
    with pytest.raises(ValueError, match="parameter source"):
        prepare.load_cohorts({**params, "source": "Synthetic"}, data_dir=tmp_path)


def test_cohort_summary_records_stays_splits_availability_and_target():
    stays = pd.DataFrame({"split": ["train", "train", "test", "val", "train"]}, index=[11, 12, 13, 14, 15])
    avail = pd.DataFrame({"arrival": [True] * 5, "ecg": [True, False, False, True, False]}, index=stays.index)
    c = SimpleNamespace(stays=stays, origin="synthetic", root=Path("/data/x"), availability=avail,
                        primary_target="deterioration_icu_24h")
    assert prepare.cohort_summary({"mds_ed": c}) == {"mds_ed": {
        "stays": 5, "origin": "synthetic", "root": "x", "splits": {"train": 3, "test": 1, "val": 1},
        "availability": {"arrival": 1.0, "ecg": 0.4}, "primary_target": "deterioration_icu_24h"}}
    real = SimpleNamespace(**{**vars(c), "origin": "real"})
    assert prepare.cohort_summary({"mds_ed": real})["mds_ed"]["root"] == "/data/x", "a real copy: its path"
