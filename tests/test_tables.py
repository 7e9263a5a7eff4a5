"""Tables and sentences of chapters 01-02 (mmlib.tables), on small hand-made cohorts and tables."""
from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mmlib import tables
from mmlib.data import BiasKnobs, KNOB_DOCS


def _flow(excluded, read: int = 10):
    """A cohort flow of ``read`` stays read, then one step per count of ``excluded``."""
    n = read
    rows = [{"step": "stays read", "excluded": 0, "remaining": n}]
    for i, e in enumerate(excluded):
        n -= e
        rows.append({"step": f"step {i}", "excluded": e, "remaining": n})
    return pd.DataFrame(rows)


def test_flow_note_lists_exclusions_and_missing_counts():
    flow = _flow([2, 0, 1])
    c = SimpleNamespace(flow=flow, stays=pd.DataFrame(index=range(7)), primary_target="admitted",
                        info={"prediction_hours": 3.0, "unreadable_images": 2})
    assert tables.flow_note(c) == ("stays read: 10; 7 stays kept for the study (primary target: hospital admission, "
                                   "column `admitted`).\n"
                                   "- step 0: 2 excluded\n- step 2: 1 excluded\n"
                                   "- unreadable images: 2")
    c = SimpleNamespace(flow=flow, stays=pd.DataFrame(index=range(7)), primary_target="admitted",
                        info={"vitals_out_of_range": {}, "labs_out_of_range": {"sodium": 3}, "split_fractions": [0.7, 0.3]})
    assert tables.flow_note(c).endswith("- vitals out of range: none\n- labs out of range: sodium 3\n"
                                        "- split fractions: 0.7 / 0.3"), "no Python dict or list in the prose"
    c = SimpleNamespace(flow=_flow([0]), stays=pd.DataFrame(index=range(10)), primary_target="y", info={})
    assert tables.flow_note(c).endswith("\n- no stay was excluded")
    c = SimpleNamespace(flow=_flow([1200], read=5290), stays=pd.DataFrame(index=range(4090)), primary_target="y",
                        info={"unreadable_images": 1500})
    assert tables.flow_note(c) == ("stays read: 5,290; 4,090 stays kept for the study (primary target: y, column `y`).\n"
                                   "- step 0: 1,200 excluded\n- unreadable images: 1,500"), "counts as the tables write them"
    c = SimpleNamespace(flow=_flow([0]), stays=pd.DataFrame(index=range(10)), primary_target="y",
                        info={"chexpert_uncertain_as_nan.cxr_edema": 4, "mapping": "-1.0 (uncertain) -> NaN"})
    assert tables.flow_note(c).endswith("\n- chexpert uncertain as missing (cxr edema): 4\n"
                                        "- mapping: -1.0 (uncertain) -> missing"), "prose, not pandas debris"


def _split_cohort(synthetic=True):
    rows = ([("test", "White", "F")] * 4 + [("test", "non-White", "F")] * 3 + [("test", "White", "M")] * 5
            + [("test", "non-White", "M")] * 6 + [("test", "Unknown", "F")] * 1 + [("train", "non-White", "F")] * 9)
    stays = pd.DataFrame(rows, columns=["split", "race_binary", "gender"])
    return SimpleNamespace(stays=stays, is_synthetic=synthetic)


def test_smallest_group_note_leaves_unknown_out_and_suppresses_small_real_counts():
    assert tables.smallest_group_note(_split_cohort(), "race_binary", design_size=3) == (
        "Smallest test subgroup: **non-White · F**, 3 stays (≥ 3, the size the demo profile is designed for).")
    note = tables.smallest_group_note(_split_cohort(synthetic=False), "race_binary")
    assert "**non-White · F**, fewer than 11 stays (< 150," in note


def test_availability_by_group_is_percent_by_group_with_labelled_axes():
    stays = pd.DataFrame({"race_binary": ["White", "White", "non-White", "non-White"]})
    c = SimpleNamespace(stays=stays, availability=pd.DataFrame({"cxr": [True, False, True, True],
                                                                "codes": [False, False, False, True]}))
    t = tables.availability_by_group(c, "race_binary")
    assert t.index.name == "modality (% available)" and t.columns.name == "Race (White / non-White)"
    assert t.loc["cxr", "White"] == 50.0 and t.loc["cxr", "non-White"] == 100.0 and t.loc["codes", "non-White"] == 50.0


def test_knob_table_shows_the_scales_used():
    t = tables.knob_table(BiasKnobs.from_dict({"label_bias": 0.0, "spo2_overread": 2.0}))
    assert list(t.index) == list(KNOB_DOCS)
    assert t.loc["label_bias", "scale used"] == 0.0 and t.loc["spo2_overread", "scale used"] == 2.0
    assert t.loc["under_triage", "scale used"] == 1.0
    assert {"mechanism", "literature"} <= set(t.columns) and any(c.startswith("size at 1: ") for c in t.columns)


def test_bias_audit_note_reads_black_and_white_rows():
    idx = pd.MultiIndex.from_tuples([("spo2_overread", "mean SpO2 − true SaO2 (percentage points)"),
                                     ("under_triage", "mean recorded ESI − ESI without under-triage (levels)")],
                                    names=["mechanism", "measure"])
    audit = pd.DataFrame({"Black": [2.345, 0.21], "White": [0.5, -0.004]}, index=idx)
    note = tables.bias_audit_note(audit, BiasKnobs.from_dict({"under_triage": 0.5}))
    assert "over-reads by +2.35 points for Black patients against +0.50 for White" in note
    assert "triage is +0.21 ESI levels less severe for Black patients against -0.00 for White" in note
    assert note.endswith("(knob scales 1 and 0.5).")


def test_cohort_overview_has_one_column_per_cohort():
    t = tables.cohort_overview({"a": {"stays": 5, "origin": "synthetic", "splits": {"train": 3, "test": 2}},
                                "b": {"stays": 2, "origin": "real", "splits": {"val": 2}}})
    assert list(t.columns) == ["a", "b"]
    assert t.loc["stays", "a"] == 5 and t.loc["origin", "b"] == "real" and t.loc["train stays", "a"] == 3
    assert pd.isna(t.loc["val stays", "a"]) and t.loc["val stays", "b"] == 2


def test_text_counts_counts_unreadable_as_missing():
    avail = pd.DataFrame({"arrival": [True, True, False], "ecg": [True, True, True]})
    texts = pd.DataFrame({"arrival": ["a", "b", None], "ecg": ["x", None, None]})
    t = tables.text_counts({"mds_ed": SimpleNamespace(availability=avail)}, {"mds_ed": texts})
    assert t.index.names == ["cohort", "modality"]
    assert t.loc[("MIMIC-IV-Ext-MDS-ED", "ecg")].tolist() == [3, 1, 2]
    assert t.loc[("MIMIC-IV-Ext-MDS-ED", "arrival")].tolist() == [2, 2, 0]


def _truth(monkeypatch, with_labels):
    ids = [1, 2, 3, 4]
    truth = pd.DataFrame({"consolidation": [1.0, 1.0, 0.0, 1.0]}, index=ids)
    out = {"reader": pd.DataFrame({"consolidation": [1.0, 0.0, 0.0, 1.0]}, index=ids), "truth": truth}
    if with_labels:
        out["labels"] = pd.DataFrame({"consolidation": [1.0, 1.0, 1.0, 0.0]}, index=ids)
    monkeypatch.setattr("mmlib.text.transcription_truth", lambda cohort, texts: out)
    stays = pd.DataFrame({"race_binary": ["White", "White", "non-White", "non-White"],
                          "gender": ["F", "M", "F", "M"]}, index=ids)
    return stays


def test_transcription_fidelity_has_reader_and_label_rows_by_grouping(monkeypatch):
    stays = _truth(monkeypatch, with_labels=True)
    c = SimpleNamespace(name="mimic_eye", stays=stays)
    f = tables.transcription_fidelity(c, pd.DataFrame({"cxr": ["r"] * 4}, index=stays.index), cxr_backend="qwen")
    assert list(f.columns[-3:]) == ["source", "cohort", "by"] and f.index.equals(pd.RangeIndex(len(f)))
    assert list(dict.fromkeys(zip(f["by"], f["source"]))) == [
        ("race_binary", "qwen reader"), ("race_binary", "recorded labels"),
        ("gender", "qwen reader"), ("gender", "recorded labels")]
    s = f.set_index(["by", "source", "group"])["sensitivity"]
    assert s[("race_binary", "qwen reader", "All")] == pytest.approx(2 / 3)
    assert s[("race_binary", "qwen reader", "White")] == 0.5 and s[("race_binary", "recorded labels", "non-White")] == 0
    assert (f["cohort"] == "mimic_eye").all()


def test_transcription_fidelity_of_ecgs_has_no_label_rows(monkeypatch):
    stays = _truth(monkeypatch, with_labels=False)
    f = tables.transcription_fidelity(SimpleNamespace(name="mds_ed", stays=stays),
                                      pd.DataFrame({"ecg": ["r"] * 4}, index=stays.index), by=("gender",))
    assert set(f["source"]) == {"offline reader"} and set(f["by"]) == {"gender"} and set(f["group"]) == {"All", "F", "M"}


def _fidelity():
    rows = []
    for src, w, n in (("offline reader", 0.8, 0.75), ("recorded labels", 0.9, 0.6)):
        for g, s in (("All", 0.7), ("White", w), ("non-White", n)):
            rows.append({"finding": "consolidation", "group": g, "n_pos": 10, "sensitivity": s,
                         "specificity": 0.91234, "source": src, "cohort": "mimic_eye", "by": "race_binary"})
        rows.append({"finding": "consolidation", "group": "All", "n_pos": 10, "sensitivity": 0.7,
                     "specificity": 0.91234, "source": src, "cohort": "mimic_eye", "by": "gender"})
    return pd.DataFrame(rows)


def test_label_fidelity_note_compares_labels_and_reader():
    note = tables.label_fidelity_note(_fidelity(), backend="offline")
    assert note.startswith("Consolidation: the recorded labels capture 90% of true consolidations in White patients "
                           "and 60% in non-White patients; the offline reader, which sees only the pixels, finds "
                           "80% and 75%.")


def test_fidelity_overview_keeps_one_all_row_per_source_and_finding():
    t = tables.fidelity_overview(_fidelity())
    assert t.index.names == ["cohort", "source", "finding"] and len(t) == 2
    assert list(t.columns) == ["n_pos", "sensitivity", "specificity"] and (t["specificity"] == 0.912).all()


def test_results_table_marks_the_papers_gaps_and_can_add_the_signed_ones():
    rows = [{"cohort": "c", "model": "paper", "modalities": "a", "metric": m, "attribute": a, "group": g,
             "mean": v, "sd": 0.01, "ci_low": v - 0.02, "ci_high": v + 0.02, "flag": ""}
            for m, a, g, v in (("auroc", "overall", "all", 0.8), ("tpr_diff", "race", "gap", 0.05),
                               ("tpr_signed", "race", "gap", -0.05))]
    t = tables.results_table(pd.DataFrame(rows), "c", "paper", columns=(("auroc", "overall"), ("tpr_diff", "race"),
                                                                         ("tpr_signed", "race")))
    assert list(t.columns) == ["AUROC", "TPR difference (equal opportunity) (race), the paper's gap (max − min)",
                               "TPR gap, signed (group − reference) (race)"]
    assert t.iloc[0, 2] == "-0.050 ± 0.010 [-0.070, -0.030]"
    assert tables.column_label("dp_diff", "gender").endswith(tables.PAPER_GAP_MARK)
    assert set(tables.SIGNED_COLUMNS) >= {("tpr_signed", "race"), ("dp_signed", "race"), ("tpr_signed", "gender")}


def test_page_html_shows_wide_tables_in_parts_with_the_full_table_as_csv():
    import base64
    import io
    import re

    from mmlib import tables

    narrow = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert tables.page_html(narrow) == narrow.to_html()
    wide = pd.DataFrame(np.arange(34).reshape(2, 17), columns=[f"c{i}" for i in range(17)],
                        index=pd.MultiIndex.from_tuples([("x", "p"), ("y", "q")], names=["k1", "k2"]))
    page = tables.page_html(wide, max_columns=7)  # 2 index levels: 5 columns a part, 4 parts
    assert page.count("<table") == 4 and "17 columns, shown in 4 parts" in page
    for part in re.findall(r"<table.*?</table>", page, re.S):
        first_row = re.search(r"<tbody>\s*<tr>(.*?)</tr>", part, re.S).group(1)
        assert len(re.findall(r"<t[hd]", first_row)) <= 7
    csv = base64.b64decode(re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', page).group(1))
    back = pd.read_csv(io.BytesIO(csv), index_col=[0, 1])
    assert back.shape == (2, 17) and (back.to_numpy() == wide.to_numpy()).all()


def test_page_html_splits_by_what_fits_the_content_column_not_by_a_fixed_count():
    """Six short cells a row fit in one table; cells "mean ± sd [CI]" (two lines: the interval under the estimate)
    go as many a part as fit in PAGE_CHARS characters beside the index; a wide index still leaves two columns a
    part."""
    import re

    from mmlib import tables

    short = pd.DataFrame({"train": [71, 62], "val": [10, 9], "test": [20, 18], "all": [101, 89]},
                         index=pd.MultiIndex.from_tuples([("White", "F"), ("White", "M")], names=["race", "gender"]))
    assert tables.page_html(short).count("<table") == 1, "6 cells a row of short numbers: one table"
    ci = pd.DataFrame({f"model {i}": ["0.712 ± 0.010 [0.690, 0.731]"] * 2 for i in range(4)},
                      index=pd.Index(["MIMIC-Eye", "MIMIC-IV-Ext-MDS-ED"], name="cohort"))
    page = tables.page_html(ci)
    assert "4 columns, shown in 2 parts" in page
    for part in re.findall(r"<table.*?</table>", page, re.S):
        row = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", re.search(r"<tbody>\s*<tr>(.*?)</tr>", part, re.S).group(1))
        widths = [max(len(piece) for piece in c.split(" [")) + 2 for c in row]
        assert len(row) in (2, 4) and sum(widths) <= tables.PAGE_CHARS, row
    deep = pd.DataFrame({"estimate": ["0.712 ± 0.010 [0.690, 0.731]"], "other": ["0.5 ± 0.1 [0.4, 0.6]"],
                         "third": ["0.1"]}, index=pd.MultiIndex.from_tuples([("a" * 30, "b" * 30)], names=["x", "y"]))
    assert tables.page_html(deep).count("<table") == 2, "two columns a part, however wide the index"


# ------------------------------------------------------------------ numbers on the page (every displayed table)
def _cells(html: str) -> list[str]:
    import re

    return re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", html, re.S)


def test_page_html_formats_numbers_for_reading():
    """No float32 debris, counts never as floats, no NaN, the decimals of the column (a table rounded to 3 or 4
    decimals keeps them), thousands separators; text cells whole, not cut at pandas' 50 characters."""
    long = "Pulse oximetry over-reads SpO2 for darker skin at equal arterial saturation (occult hypoxemia)."
    df = pd.DataFrame({"stays": [4313, 78, 12],
                       "positive (%)": np.array([40.4, 47.4, 25.3], dtype=np.float32),  # 40.400002 in float32
                       "texts": [4313.0, np.nan, 302.0],  # counts made float by a missing cell
                       "AUROC": [0.5, 0.712, 0.25],
                       "distance": [0.0012, 0.0103, 0.2],  # a column the chapter rounded to 4 decimals
                       "estimate": ["0.712 ± 0.010 [0.690, 0.731]", "[+nan, +nan]", "nan"],
                       "mechanism": [long, "b", "c"]},
                      index=pd.Index(["a", "b", "c"], name="cohort"))
    html = tables.page_html(df, max_columns=20)
    cells = _cells(html)
    assert {"4,313", "40.4", "47.4", "25.3", "0.500", "0.712", "0.250", "0.0012", "0.0103", "0.2000", "302",
            "0.712 ± 0.010 [0.690, 0.731]", long} <= set(cells), cells
    for debris in ("40.400002", "25.299999", "4313.0", "302.0", "NaN", "nan", "..."):
        assert debris not in html.replace(long, ""), debris
    assert cells.count(tables.MISSING) == 3  # the missing count and both "not a number" texts
    assert tables.MISSING_NOTE in html, "a table with a dash says what the dash means"
    assert tables.MISSING_NOTE not in tables.page_html(df.drop(columns=["texts", "estimate"]), max_columns=20)


def test_page_frame_formats_float_index_levels_and_keeps_integers_and_negatives():
    df = pd.DataFrame({"n_pos": np.array([1200, 3], dtype=np.int64), "change": [-0.0001, 0.1234567]},
                      index=pd.MultiIndex.from_tuples([("x", 0.1), ("x", 0.30000000000000004)], names=["c", "rate"]))
    shown, missing = tables.page_frame(df)
    assert not missing and list(shown.index.get_level_values("rate")) == ["0.1", "0.3"]
    assert shown["positives"].tolist() == ["1,200", "3"], "n_pos formatted as a count, shown as positives"
    assert shown["change"].tolist() == ["0.000", "0.123"], "no -0.000; unrounded numbers get 3 decimals"


def test_page_tables_show_cohorts_and_computed_columns_by_their_names_for_readers():
    """Cohort keys read as the cohorts' names wherever they are (index, columns, cells); computed columns' code names
    read as words; a table indexed first by cohort lists MIMIC-Eye first, as every page does; everything else, and
    the CSV download, is as the frame has it."""
    import base64
    import re

    df = pd.DataFrame({"cohort": ["mds_ed", "other"], "fits": [3, 4], "ci_low": [0.1, 0.2], "mimic_eye": [1, 2]},
                      index=pd.MultiIndex.from_tuples([("mimic_eye", "paper"), ("mds_ed", "late")],
                                                      names=["cohort", "model"]))
    shown, _ = tables.page_frame(df)
    assert list(shown.index.get_level_values("cohort")) == ["MIMIC-Eye", "MIMIC-IV-Ext-MDS-ED"]
    assert list(shown.index.get_level_values("model")) == ["paper", "late"]
    assert list(shown.columns) == ["cohort", "fits", "95% CI low", "MIMIC-Eye"]
    assert shown["cohort"].tolist() == ["MIMIC-IV-Ext-MDS-ED", "other"]
    grouped = pd.DataFrame({"fits": [1, 2, 3]}, index=pd.MultiIndex.from_tuples(
        [("mds_ed", "late"), ("mds_ed", "paper"), ("mimic_eye", "paper")], names=["cohort", "model"]))
    shown, _ = tables.page_frame(grouped)  # as a groupby sorts it: mds_ed first
    assert list(shown.index) == [("MIMIC-Eye", "paper"), ("MIMIC-IV-Ext-MDS-ED", "late"),
                                 ("MIMIC-IV-Ext-MDS-ED", "paper")], "the book's cohort order, rows kept in order"
    assert shown["fits"].tolist() == ["3", "1", "2"]
    inner = grouped.reorder_levels(["model", "cohort"])
    assert list(tables.page_frame(inner)[0]["fits"]) == ["1", "2", "3"], "only a first level named cohort"
    plain = pd.DataFrame({"x": [1, 2]}, index=pd.Index([10, 20], name="seed"))
    assert tables.page_frame(plain)[0].index.equals(plain.index), "nothing to relabel: the index as it was"
    page = tables.page_html(df, max_columns=3)
    csv = base64.b64decode(re.search(r'base64,([^"]+)"', page).group(1)).decode()
    assert csv.splitlines()[0] == "cohort,model,cohort,fits,ci_low,mimic_eye" and "mds_ed" in csv
    assert "mds_ed" not in _cells(page) and "ci_low" not in _cells(page)


def test_split_sizes_share_of_positives_has_no_float32_debris():
    y = np.zeros(300, dtype=np.float32)
    y[:101] = 1  # 40.4% of the 250 training stays: 40.400002 when computed in float32
    rows = {"train": np.arange(250), "val": np.arange(250, 275), "test": np.arange(275, 300)}
    d = SimpleNamespace(rows=lambda s: rows[s], y=y, target="admitted")
    t = tables.split_sizes({"mimic_eye": d})
    html = tables.page_html(t)
    assert t["positive (%)"].dtype == np.float32 and "40.400002" in t.to_html(), "the debris this guards against"
    assert "40.4" in _cells(html) and "40.400002" not in html and "NaN" not in html


def test_page_html_csv_download_keeps_full_precision():
    import base64
    import io
    import re

    wide = pd.DataFrame(np.array([[0.123456789, 1 / 3, 2.5e-7, 4313.0, 7.0, 0.5]]), columns=list("abcdef"))
    page = tables.page_html(wide, max_columns=3)
    assert "0.123" in _cells(page) and "0.123456789" not in page.split("<table")[1]
    csv = base64.b64decode(re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', page).group(1))
    back = pd.read_csv(io.BytesIO(csv), index_col=0)
    assert (back.to_numpy() == wide.to_numpy()).all(), "the CSV is the table at full precision"


def test_installed_page_tables_still_apply_small_cell_suppression_before_formatting():
    """In a kernel (the chapters' path: :func:`mmlib.tables.install_page_tables` after the disclosure filter), a
    credentialed source's count of 1-10 is shown as <11, also when the count came as a float; larger counts are
    formatted; the CSV download holds the suppressed table, not the raw counts."""
    import base64
    import re

    from IPython.core.interactiveshell import InteractiveShell

    from mmlib import disclosure

    shell = InteractiveShell.instance()
    tables.install_page_tables()
    df = pd.DataFrame({"stays": [4313.0, 5.0, 0.0], "Female, n (%)": ["2000 (46.4%)", "3 (60.0%)", "0 (0.0%)"],
                       "rate": [0.41, 0.3, np.nan]}, index=pd.Index(["All", "Asian", "Other"], name="group"))
    try:
        disclosure.enforce(True)
        html = shell.display_formatter.format(df)[0]["text/html"]
        text = shell.display_formatter.format(df)[0]["text/plain"]
        wide = shell.display_formatter.format(df.assign(x=1, y=2, z=3, w=4))[0]["text/html"]
    finally:
        disclosure.enforce(False)
    cells = _cells(html)
    assert cells.count(disclosure.SUPPRESSED.replace("<", "&lt;")) == 2, cells  # 5 stays and "3 (60.0%)"
    assert "4,313" in cells and "5" not in cells and "5.0" not in html and "3 (60.0%)" not in html
    assert "<11" in text and "5.0" not in text
    csv = base64.b64decode(re.search(r'base64,([^"]+)"', wide).group(1)).decode()
    assert "<11" in csv and "3 (60.0%)" not in csv and ",5.0," not in csv
    shown = shell.display_formatter.format(df)[0]["text/html"]  # synthetic again: every count shown
    assert "5" in _cells(shown)


def test_knob_table_cites_the_bibliography_in_short_complete_citations():
    """Each knob's literature is a short citation ("Sjoding et al. 2020") of an entry of references.bib, where the
    full reference is; nothing truncated and no reference the bibliography cannot resolve."""
    from pathlib import Path

    from mmlib import book
    from mmlib.data import KNOB_REFERENCES

    keys = book.bib_keys([Path(__file__).resolve().parents[1] / "references.bib"])
    assert set(KNOB_REFERENCES) == set(KNOB_DOCS)
    for knob, refs in KNOB_REFERENCES.items():
        assert refs and set(refs) <= keys, (knob, set(refs) - keys)
        for key, short in refs.items():
            year = key[-4:] if key[-4:].isdigit() else re.search(r"\d{4}", key).group(0)
            assert short.endswith(year) and len(short) < 40, short
    t = tables.knob_table(BiasKnobs())
    assert t.loc["unequal_access", "literature"] == "Schrager et al. 2019"
    assert t.loc["under_triage", "literature"] == "Schrader & Lewis 2013; Sax et al. 2023"
    html = tables.page_html(t)
    assert "Sjoding et al. 2020" in html and "..." not in html and "Zhang" not in html


def test_downloads_offer_each_table_as_a_full_precision_csv_and_suppress_small_cells_for_real_data():
    """Chapter 04's tables on demand: one link per table, named by its label, whose CSV is the table itself (full
    precision); with a credentialed source the download holds the suppressed table."""
    import base64
    import re

    from mmlib import disclosure

    a = pd.DataFrame({"auroc": [0.712345678, 0.8]}, index=pd.Index(["arrival", "arrival+vitals"], name="modalities"))
    b = pd.DataFrame({"stays": [5, 4313]}, index=pd.Index(["Asian", "White"], name="group"))
    html = tables.downloads({"MIMIC-Eye, model paper": a, "counts": b}, "What they hold").data
    links = re.findall(r'<a download="(table-[0-9a-f]{8}\.csv)" href="data:text/csv;charset=utf-8;base64,([^"]+)">'
                       r"([^<]+)</a>", html)
    assert [t for _, _, t in links] == ["MIMIC-Eye, model paper", "counts"] and "What they hold" in html
    first = pd.read_csv(io.StringIO(base64.b64decode(links[0][1]).decode()), index_col=0)
    assert first["auroc"].iloc[0] == 0.712345678
    try:
        disclosure.enforce(True)
        real = tables.downloads({"counts": b}, "x").data
    finally:
        disclosure.enforce(False)
    csv = base64.b64decode(re.search(r'base64,([^"]+)"', real).group(1)).decode()
    assert disclosure.SUPPRESSED in csv and ",5\n" not in csv and "4313" in csv


def test_fmt_value_prints_a_dash_for_an_estimate_that_is_not_estimable():
    assert tables.fmt_value(0.71449) == "0.714" and tables.fmt_value(0.0312, signed=True) == "+0.031"
    assert tables.fmt_value(float("nan")) == "–" and tables.fmt_value(float("nan"), signed=True) == "–"


def test_models_side_by_side_is_chapter_06s_rows():
    """tables.models_side_by_side (chapter 06) is the results_table row of each model on one set of modalities,
    indexed by the model, as chapter 06 built it."""
    rows = [{"cohort": "c", "model": mdl, "modalities": "a+b", "metric": m, "attribute": a, "group": "all",
             "mean": v + d, "sd": 0.01, "ci_low": v + d - 0.02, "ci_high": v + d + 0.02, "flag": ""}
            for mdl, d in (("linear", 0.0), ("linear+calibrated", 0.01))
            for m, a, v in (("auroc", "overall", 0.8), ("f1", "overall", 0.6), ("tpr_signed", "race", -0.05))]
    table = pd.DataFrame(rows)
    cols = tables.PAPER_COLUMNS + tables.SIGNED_COLUMNS
    want = pd.concat([tables.results_table(table, "c", m, rows=["a+b"], columns=cols).rename(index={"a+b": m})
                      for m in ("linear", "linear+calibrated")])
    got = tables.models_side_by_side(table, "c", "a+b", ["linear", "linear+calibrated"])
    pd.testing.assert_frame_equal(got, want)
    assert list(got.index) == ["linear", "linear+calibrated"] and got.loc["linear+calibrated", "AUROC"].startswith("0.810")
    few = tables.models_side_by_side(table, "c", "a+b", ["linear"], columns=(("auroc", "overall"),))
    assert list(few.columns) == ["AUROC"] and len(few) == 1


def test_targets_are_named_in_words_where_the_book_shows_them():
    """Every target the tables and figures show has a name in words (the column's code name stays in the data and
    the CSV downloads): MIMIC-Eye's admission and X-ray findings, MDS-ED's deterioration targets and diagnoses."""
    from mmlib.schema import CXR_TARGETS, DETERIORATION, DIAGNOSES, target_label

    targets = ["admitted", *CXR_TARGETS.values(), *(f"deterioration_{d}" for d in DETERIORATION),
               *(f"diagnoses_{c}" for c in DIAGNOSES)]
    labels = [target_label(t) for t in targets]
    assert all("_" not in lab and lab != t for lab, t in zip(labels, targets)), labels
    assert len(set(labels)) == len(labels), "two targets under one name"
    assert target_label("deterioration_icu_24h") == "ICU admission within 24 h"
    assert target_label("diagnoses_i50") == "heart failure (ICD-10 I50)"
    assert target_label("diagnoses_k35") == "diagnosis (ICD-10 K35)" and target_label("y") == "y"


def test_table_one_writes_counts_as_the_other_tables_do():
    """Table 1's counts carry thousands separators, like every other count of the book ("4,305", not "4305")."""
    n = 1200
    stays = pd.DataFrame({"race_binary": ["White"] * n, "gender": ["F", "M"] * (n // 2), "age": np.full(n, 50.0),
                          "admitted": [1.0] * n})
    vitals = pd.DataFrame({f"triage_{v}": np.ones(n) for v in ("heartrate", "resprate", "o2sat", "sbp", "temperature")})
    c = SimpleNamespace(stays=stays, modalities={"arrival": pd.DataFrame({"acuity": np.ones(n)}), "vitals": vitals},
                        name="mimic_eye",
                        targets=["admitted"], primary_target="admitted", is_synthetic=True)
    t1 = tables.table_one(c, by_gender=False)
    assert t1.loc["n", "White"] == "1,200" and t1.loc["hospital admission, n (%)", "White"] == "1,200 (100.0%)"
    assert t1.loc["Female, n (%)", "White"] == "600 (50.0%)"


def test_an_estimate_and_its_interval_are_one_cell_on_the_page():
    """A displayed frame whose estimate column is followed by ci_low and ci_high shows them as one column, so that a
    table cut into parts never puts an estimate in one part and its interval in another; the frame keeps them."""
    df = pd.DataFrame({"before": [0.757, 0.769], "after": [0.769, 0.777], "change": [0.012, -0.008],
                       "ci_low": [-0.003, -0.0201], "ci_high": [0.0274, 0.004]}, index=pd.Index(["vitals", "codes"], name="added"))
    shown, _ = tables.page_frame(df)
    assert list(shown.columns) == ["before", "after", "change [95% CI]"]
    assert list(shown["change [95% CI]"]) == ["+0.012 [-0.003, +0.027]", "-0.008 [-0.020, +0.004]"]
    assert list(df.columns) == ["before", "after", "change", "ci_low", "ci_high"], "the frame itself is unchanged"
    rates = pd.DataFrame({"rate": [0.5, np.nan], "ci_low": [0.4, np.nan], "ci_high": [0.6, np.nan]})
    assert list(tables.page_frame(rates)[0]["rate [95% CI]"]) == ["0.500 [0.400, 0.600]", "–"]
    loose = pd.DataFrame({"ci_low": [0.1], "what": ["x"], "ci_high": [0.2]})
    assert list(tables.page_frame(loose)[0].columns) == ["95% CI low", "what", "95% CI high"], "not an interval: kept"


def test_race_groups_and_modalities_are_shown_in_the_books_order():
    """A groupby sorts race groups and modalities alphabetically (Unknown first, codes before vitals); the page shows
    them in the book's order -- White first, Unknown last; each cohort's modality order -- rows and columns alike,
    without moving anything else."""
    idx = pd.MultiIndex.from_product([["MIMIC-Eye", "MIMIC-IV-Ext-MDS-ED"], ["Unknown", "White", "non-White"], ["F", "M"]],
                                     names=["cohort", "race", "gender"])
    shown, _ = tables.page_frame(pd.DataFrame({"n": range(12)}, index=idx))
    assert list(shown.index.get_level_values("race")[:6]) == ["White", "White", "non-White", "non-White", "Unknown",
                                                               "Unknown"]
    assert list(shown["n"]) == ["2", "3", "4", "5", "0", "1", "8", "9", "10", "11", "6", "7"]
    avail = pd.DataFrame({"MIMIC-Eye": [100, 62.6, 71.4, np.nan, np.nan, 100]},
                         index=["arrival", "codes", "cxr", "ecg", "labs", "vitals"])
    assert list(tables.page_frame(avail)[0].index) == ["arrival", "vitals", "codes", "cxr", "labs", "ecg"]
    wide = pd.DataFrame([[1, 2, 3]], columns=pd.Index(["Unknown", "White", "non-White"], name="race"))
    assert list(tables.page_frame(wide)[0].columns) == ["White", "non-White", "Unknown"]
    sets = pd.DataFrame({"x": [1, 2]}, index=["arrival+vitals", "arrival"])
    assert list(tables.page_frame(sets)[0].index) == ["arrival+vitals", "arrival"], "modality sets keep their order"
