"""Pseudo-notes of the structured modalities: content, units, missing values, race, determinism."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmlib import text
from mmlib.data import generate, load_cohort


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    out = {}
    for name in ("mimic_eye", "mds_ed"):
        root, _ = generate(name, {"n": 120, "image_size": 64} if name == "mimic_eye" else {"n": 120},
                           data_dir=d, progress=False)
        out[name] = load_cohort(name, root, progress=False)
    return out


def test_mimic_eye_arrival_says_what_was_recorded_and_what_was_not():
    row = pd.Series({"age": 67.0, "gender": "F", "arrival_transport": "AMBULANCE", "chiefcomplaint": "Chest pain",
                     "acuity": 2.0, "pain": "8"})
    s = text.mimic_eye_arrival(row)
    assert s.startswith("67-year-old woman arriving at the emergency department by ambulance.")
    assert "Chief complaint: Chest pain." in s and "Triage acuity (ESI) 2" in s and "Pain score 8/10." in s
    missing = text.mimic_eye_arrival(pd.Series({**row.to_dict(), "acuity": np.nan, "chiefcomplaint": None, "pain": "UTA"}))
    assert "Triage acuity not recorded." in missing and "Chief complaint not recorded." in missing
    assert "Pain could not be assessed." in missing and "Race" not in missing
    assert "Race recorded as black/african american." in text.mimic_eye_arrival(row, "BLACK/AFRICAN AMERICAN")


def test_vitals_have_units_and_missing_values_are_named():
    row = pd.Series({"triage_temperature": 101.3, "triage_heartrate": 112.0, "triage_resprate": np.nan,
                     "triage_o2sat": 93.0, "triage_sbp": 146.0, "triage_dbp": 94.0, "series_n": 0})
    s = text.mimic_eye_vitals(row)
    assert "temperature 101.3 °F" in s and "heart rate 112 /min" in s and "respiratory rate not recorded" in s
    assert "oxygen saturation (pulse oximetry) 93 %" in s and "No further vital signs" in s


def test_codes_note_names_known_codes_and_counts_repeats():
    row = pd.Series({"codes": "ICD10:I509 ICD9:4280 ICD10:I509 ICD10:Q999", "n_prior_admissions": 2})
    s = text.mimic_eye_codes(row)
    assert s.startswith("2 earlier hospital admissions.")
    assert "heart failure (2×)" in s and "congestive heart failure" in s and "ICD-10 code Q999" in s
    assert text.mimic_eye_codes(pd.Series({"codes": None, "n_prior_admissions": 0})) is None


def test_labs_note_flags_out_of_range_values():
    row = pd.Series({"labvalues_lactate_first": 4.2, "labvalues_lactate_mean": 4.0, "labvalues_sodium_first": 139.0,
                     "labvalues_newlab_first": 7.5, "labvalues_potassium_first": np.nan})
    s = text.mds_ed_labs(row)
    assert "lactate 4.20 mmol/L (high)" in s and "sodium 139 mEq/L;" in s and "newlab 7.50" in s
    assert "potassium" not in s
    assert text.mds_ed_labs(pd.Series({"labvalues_lactate_first": np.nan})) is None


def test_mds_ed_notes_use_the_release_units_and_lab_names():
    row = pd.Series({"vitals_temperature_first": 38.4, "vitals_temperature_last": 37.9, "vitals_temperature_min": 37.9,
                     "vitals_temperature_max": 38.4, "vitals_heartrate_first": 96.0, "vitals_heartrate_last": 96.0,
                     "vitals_heartrate_min": 96.0, "vitals_heartrate_max": 96.0})
    s = text.mds_ed_vitals(row)
    assert "temperature 38.4 °C at first, 37.9 last" in s and "°F" not in s  # MDS-ED converts to Celsius
    assert "heart rate 96 /min" in s and "respiratory rate not recorded" in s
    labs = text.mds_ed_labs(pd.Series({"labvalues_urea_nitrogen_first": 31.0, "labvalues_white_blood_cells_first": 12.5,
                                       "labvalues_c-reactive_protein_first": 2.0, "labvalues_inr(pt)_first": 1.0,
                                       "labvalues_bilirubin,_total_first": 2.1}))
    assert "urea nitrogen 31.0 mg/dL (high)" in labs and "white blood cells 12.5 K/uL (high)" in labs
    assert "C-reactive protein 2.00 mg/L;" in labs and "INR 1.00;" in labs and "total bilirubin 2.10 mg/dL (high)" in labs
    from mmlib.schema import LAB_UNITS, LABS
    assert set(text.LAB_INFO) == set(LABS) == set(LAB_UNITS)


@pytest.mark.parametrize("name", ["mimic_eye", "mds_ed"])
def test_structured_notes_follow_availability_and_are_deterministic(cohorts, name):
    c = cohorts[name]
    for m in [m for (cn, m) in text.NOTE_WRITERS if cn == name]:
        s = text.structured_notes(c, m)
        assert s.index.equals(c.stays.index)
        assert (s.notna() <= c.availability[m]).all(), "no text for a missing modality"
        assert s.notna().sum() > 0.3 * len(s)
        assert s.equals(text.structured_notes(c, m))
        assert not s.dropna().str.contains("Race").any(), "race is not written by default"
    with_race = text.structured_notes(c, "arrival", include_race=True).dropna()
    assert with_race.str.contains("Race recorded as").all()
    with pytest.raises(ValueError, match="not structured"):
        text.structured_notes(c, "cxr" if name == "mimic_eye" else "ecg")


def test_cohort_texts_one_column_per_modality_in_schema_order(cohorts):
    from mmlib.schema import MODALITIES

    c = cohorts["mds_ed"]
    t = text.cohort_texts(c)
    assert list(t.columns) == list(MODALITIES["mds_ed"]) and t.index.equals(c.stays.index)
    pd.testing.assert_series_equal(t["labs"], text.structured_notes(c, "labs"), check_names=False)
    ecg, _ = text.interpret_ecg(c, progress=False)
    pd.testing.assert_series_equal(t["ecg"], ecg, check_names=False)
    assert (t.notna() <= c.availability[t.columns]).all().all()
    assert text.cohort_texts(c, include_race=True)["arrival"].dropna().str.contains("Race recorded as").all()


def test_example_stay_is_the_first_with_every_text():
    t = pd.DataFrame({"a": ["x", "y", "z"], "b": [None, "w", "v"]}, index=[7, 8, 9])
    assert text.example_stay(t) == 8
    assert text.example_stay(pd.DataFrame({"a": ["x", None], "b": [None, "w"]}, index=[7, 8])) == 7
    assert text.stay_markdown(t, 7) == "**a.** x\n\n**b.** *(missing)*"


def test_word_counts_long_by_cohort_without_missing_texts():
    t = pd.DataFrame({"arrival": ["one two three", None], "ecg": ["sinus rhythm", "atrial  fibrillation rate 120"]})
    w = text.word_counts({"mds_ed": t, "other": t.iloc[:1]})
    assert list(w.columns) == ["modality", "words", "cohort"]
    assert w[w.cohort == "MIMIC-IV-Ext-MDS-ED"].groupby("modality")["words"].apply(list).to_dict() == {
        "arrival": [3.0], "ecg": [2.0, 4.0]}
    assert (w[w.cohort == "other"]["words"] == [3.0, 2.0]).all()


@pytest.mark.parametrize("name", ["mimic_eye", "mds_ed"])
def test_structured_notes_are_the_writers_applied_row_by_row(cohorts, name):
    """The frame is read as dicts once (speed); each note is still exactly its writer on the stay's row Series."""
    c = cohorts[name]
    for m in [m for (cn, m) in text.NOTE_WRITERS if cn == name]:
        writer, df, avail = text.NOTE_WRITERS[(name, m)], c.modalities[m], c.availability[m]
        for include_race in ([False, True] if m == "arrival" else [False]):
            want = {sid: (None if not avail.at[sid] else
                          writer(row, c.stays.at[sid, "race_raw"] if include_race else None) if m == "arrival"
                          else writer(row)) for sid, row in df.iterrows()}
            got = text.structured_notes(c, m, include_race=include_race)
            want = pd.Series(want, dtype=object).reindex(c.stays.index)
            assert list(got.isna()) == list(want.isna())
            assert list(got.dropna()) == list(want.dropna()), m


def test_readers_give_the_same_texts_whatever_the_worker_processes_and_chunks(cohorts):
    c = cohorts["mds_ed"]
    one, _ = text.interpret_ecg(c, progress=False, n_jobs=1)
    two, _ = text.interpret_ecg(c, progress=False, n_jobs=2, chunk=25)  # several chunks, two worker processes
    pd.testing.assert_series_equal(one, two)
    me = cohorts["mimic_eye"]
    one, m1 = text.transcribe_cxr(me, progress=False, n_jobs=1)
    two, m2 = text.transcribe_cxr(me, progress=False, n_jobs=2)
    pd.testing.assert_series_equal(one, two)
    pd.testing.assert_frame_equal(m1, m2)


def test_all_cohort_texts_are_each_cohorts_texts_with_their_shard_folders(cohorts, capsys):
    """all_cohort_texts (chapter 02) is cohort_texts of each cohort with the same options, and asks for the shard
    folder of every modality of every cohort; it prints one timing line per cohort."""
    from mmlib.schema import MODALITIES

    asked = []
    got = text.all_cohort_texts(cohorts, shard_dirs=lambda n, m: asked.append((n, m)) or None, include_race=True)
    assert list(got) == list(cohorts)
    for n, c in cohorts.items():
        pd.testing.assert_frame_equal(got[n], text.cohort_texts(c, include_race=True,
                                                                shard_dirs={m: None for m in MODALITIES[n]}))
    assert asked == [(n, m) for n in cohorts for m in MODALITIES[n]]
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["MIMIC-Eye", "MIMIC-IV-Ext-MDS-ED"]
    assert all(line.endswith(" s") and "texts written in" in line for line in out)
    assert text.all_cohort_texts({"mds_ed": cohorts["mds_ed"]})["mds_ed"].equals(text.cohort_texts(cohorts["mds_ed"]))
