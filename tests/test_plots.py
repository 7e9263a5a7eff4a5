"""Figures of chapters 01-02 (mmlib.plots), on small hand-made cohorts and tables."""
from __future__ import annotations

import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from figure_bytes import png as _png  # noqa: E402  (tests/figure_bytes.py; tests/ is on sys.path under pytest)
from mmlib import plots  # noqa: E402
from mmlib.schema import target_label  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mimic_eye():
    ids = pd.Index([10, 11, 12, 13, 14, 15], name="stay_id")
    truth = pd.DataFrame({
        "finding_cardiomegaly": [False, True, True, False, False, False],
        "finding_consolidation": [False, False, False, True, False, False],
        "finding_edema": [False, False, False, False, True, True],
        "finding_pleural_effusion": [False, False, False, False, False, True],
        "cxr_ctr": [0.45, 0.61, 0.58, 0.47, 0.5, 0.52], "cxr_ap": [0, 1, 0, 0, 1, 0]}, index=ids)
    stays = pd.DataFrame({"race_binary": ["White", "non-White"] * 3, "admitted": [1.0, 0.0, 1.0, np.nan, 0.0, 1.0],
                          "cxr_edema": [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]}, index=ids)
    avail = pd.DataFrame({"cxr": [True, False, True, True, True, True], "arrival": [True] * 6}, index=ids)
    return SimpleNamespace(name="mimic_eye", is_synthetic=True, truth=truth, stays=stays, availability=avail,
                           cxr_image=lambda sid: np.full((8, 8), sid, dtype=np.uint8))


def _mds_ed():
    ids = pd.Index([1, 2, 3, 4], name="stay_id")
    truth = pd.DataFrame({"af": [0, 1, 0, 0], "ecg_qrs_ms": [95.0, 100.0, 140.0, 100.0], "ecg_st_mv": [0.0, 0.0, 0.0, 0.2],
                          "ecg_heart_rate": [72.0, 118.4, 65.0, 90.0]}, index=ids)
    stays = pd.DataFrame({"deterioration_icu_24h": [0.0, 1.0, 0.0, 1.0], "diagnoses_i50": [0.0, 1.0, 1.0, 0.0]},
                         index=ids)
    return SimpleNamespace(name="mds_ed", is_synthetic=True, truth=truth, stays=stays,
                           availability=pd.DataFrame({"ecg": [True, True, True, True]}, index=ids),
                           primary_target="deterioration_icu_24h")


def test_example_stays_pick_the_first_stay_with_the_modality_and_finding():
    picks, caps = plots.example_stays(_mimic_eye())
    # stay 11 has cardiomegaly but no X-ray; stay 15 has edema with effusion, so neither 'pleural effusion' alone
    assert picks == [10, 12, 13, 14]
    assert caps == ["no finding\nCTR 0.45, PA", "cardiomegaly\nCTR 0.58, PA", "consolidation\nCTR 0.47, PA",
                    "edema\nCTR 0.50, AP"]
    picks, caps = plots.example_stays(_mds_ed())
    assert picks == [1, 2, 3, 4]
    assert caps[1] == "atrial fibrillation: rate 118/min, QRS 100 ms, ST +0.00 mV"
    assert caps[3] == "ST elevation: rate 90/min, QRS 100 ms, ST +0.20 mV"
    with pytest.raises(ValueError, match="synthetic cohort"):
        plots.example_stays(SimpleNamespace(truth=None))


def test_finding_examples_draw_one_panel_per_example():
    fig = plots.finding_examples(_mimic_eye())
    assert [ax.get_title() for ax in fig.axes] == plots.example_stays(_mimic_eye())[1]


def test_outcome_columns_keep_those_the_cohort_has_once():
    assert plots.outcome_columns(_mimic_eye()) == ["admitted", "cxr_edema"]
    assert plots.outcome_columns(_mds_ed()) == ["deterioration_icu_24h", "diagnoses_i50"]
    c = _mds_ed()
    c.primary_target = "diagnoses_i50"
    assert plots.outcome_columns(c) == ["diagnoses_i50"]


def test_group_rate_figures_are_titled_by_cohort_and_grouping():
    fig = plots.availability_by_group(_mimic_eye(), "race_binary")
    ax = fig.axes[0]
    assert ax.get_title() == "MIMIC-Eye: modality available before the prediction time"
    assert ax.get_legend().get_title().get_text() == "Race (White / non-White)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cxr", "arrival"]
    fig = plots.outcome_prevalence(_mimic_eye(), "race_binary")
    assert fig.axes[0].get_title() == "MIMIC-Eye: outcome prevalence"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["hospital admission", "edema on the X-ray"], \
        "targets in words, not their column names"


def test_stay_signal_draws_only_a_stay_with_a_text():
    c = _mimic_eye()
    texts = pd.DataFrame({"arrival": ["a"] * 6, "cxr": ["r", None, "r", "r", "r", "r"]}, index=c.stays.index)
    assert plots.stay_signal(c, texts, 11) is None
    fig = plots.stay_signal(c, texts, 12)
    assert fig.axes[0].get_title() == "chest X-ray of this stay"
    assert plots.stay_signal(_mds_ed(), pd.DataFrame({"ecg": [None] * 4}, index=[1, 2, 3, 4]), 2) is None


def test_fidelity_by_group_one_figure_per_grouping_and_source():
    rows = [{"finding": f, "group": g, "sensitivity": 0.5, "sens_low": 0.4, "sens_high": 0.6, "specificity": 0.9,
             "spec_low": 0.8, "spec_high": 0.95, "source": s, "cohort": "mimic_eye", "by": b}
            for b in ("race_binary", "gender") for s in ("offline reader", "recorded labels")
            for f in ("edema", "consolidation") for g in ("All", "A", "B")]
    figs = plots.fidelity_by_group(pd.DataFrame(rows))
    assert [f._suptitle.get_text() for f in figs] == [
        "MIMIC-Eye chest X-ray, offline reader: fidelity by race binary",
        "MIMIC-Eye chest X-ray, recorded labels: fidelity by race binary",
        "MIMIC-Eye chest X-ray, offline reader: fidelity by gender",
        "MIMIC-Eye chest X-ray, recorded labels: fidelity by gender"]


def test_text_lengths_box_per_modality():
    words = pd.DataFrame({"modality": ["a", "a", "b", "b"], "words": [3.0, 5.0, 10.0, 12.0],
                          "cohort": ["X", "X", "X", "Y"]})
    ax = plots.text_lengths(words).axes[0]
    assert ax.get_title() == "Length of each modality's text" and ax.get_ylabel() == "words per text"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


def test_embedding_pca_needs_enough_texts_and_colours_by_outcome_and_race():
    rng = np.random.default_rng(0)
    n = 12
    ids = np.arange(100, 100 + n)
    stays = pd.DataFrame({"y": [1.0, 0.0, np.nan] * 4, "race_binary": ["White", "non-White"] * 6}, index=ids)
    c = SimpleNamespace(stays=stays, primary_target="y")
    mask = np.ones(n, bool)
    emb = {"stay_id": ids, "m": rng.normal(size=(n, 5)).astype(np.float32), "mask_m": mask}
    fig = plots.embedding_pca(emb, "m", c, title="T")
    assert fig._suptitle.get_text() == "T" and [ax.get_title() for ax in fig.axes] == ["by y", "by race"]
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == ["no", "undefined", "yes"]
    mask[3:] = False
    assert plots.embedding_pca(emb, "m", c, title="T") is None


def test_signed_gaps_forest_plot_marks_clear_differences():
    rows = []
    for lab, (mean, lo, hi) in {"a": (-0.10, -0.15, -0.05), "a+b": (0.01, -0.03, 0.05)}.items():
        for g in ("dp_signed", "tpr_signed", "fpr_signed"):
            for attr in ("race", "gender"):
                rows.append({"cohort": "c", "model": "paper", "modalities": lab, "metric": g, "attribute": attr,
                             "group": "gap", "mean": mean, "ci_low": lo, "ci_high": hi})
    fig = plots.signed_gaps(pd.DataFrame(rows), "c", "paper", ["a", "a+b"])
    assert len(fig.axes) == 6
    ax = fig.axes[1]
    assert "signed TPR gap by race" in ax.get_xlabel() and "0 = parity" in ax.get_xlabel()
    colours = ax.collections[-1].get_facecolors()
    assert len(colours) == 2 and not np.allclose(colours[0], colours[1]), "clear (red) and not clear (blue)"
    assert {t.get_text() for t in fig.axes[0].get_yticklabels()} == {"a", "a+b"}
    plt.close(fig)


def _sweep(metric: str, attribute: str) -> pd.DataFrame:
    rows = []
    for tr in (0.0, 0.5):
        for rate in (0.0, 0.3, 0.6):
            m = -0.1 + 0.2 * rate - 0.05 * tr
            rows.append({"model": "paper", "metric": metric, "attribute": attribute, "group": "gap", "rate": rate,
                         "train_rate": tr, "mean": m, "ci_low": m - 0.05, "ci_high": m + 0.05})
    return pd.DataFrame(rows)


def test_signed_gaps_get_two_sided_colours_and_a_parity_line():
    """A signed gap is drawn around 0: heatmap colours centred at 0 with signed annotations, curves with a
    line at 0; the paper's gaps (never negative) keep their one-sided colours and no parity line."""
    fig = plots.missingness_heatmaps(_sweep("tpr_signed", "race"), ["paper"], [("tpr_signed", "race")])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts and all(t[0] in "+-" for t in texts)
    mesh = ax.collections[0]
    assert mesh.norm.vmin == pytest.approx(-mesh.norm.vmax) and mesh.norm.vmax > 0  # centred at parity
    fig = plots.degradation_curves(_sweep("tpr_signed", "race")[lambda d: d.train_rate == 0], ["paper"],
                                   [("tpr_signed", "race"), ("tpr_diff", "race")])
    zero = [any(np.allclose(l.get_ydata(), 0) and len(l.get_ydata()) == 2 for l in ax.get_lines()) for ax in fig.axes[:2]]
    assert zero == [True, False]
    # a panel whose group is too small to estimate says so instead of drawing empty axes
    small = _sweep("tpr_signed", "race_gender")[lambda d: d.train_rate == 0].assign(mean=np.nan, ci_low=np.nan,
                                                                                    ci_high=np.nan)
    fig = plots.degradation_curves(pd.concat([_sweep("tpr_signed", "race")[lambda d: d.train_rate == 0], small]),
                                   ["paper"], [("tpr_signed", "race"), ("tpr_signed", "race_gender")])
    notes = [[t.get_text() for t in ax.texts] for ax in fig.axes[:2]]
    assert notes == [[], [plots.NO_ESTIMATE]]
    fig = plots.modality_curves(small.assign(modality="cxr"), ["paper"], ["cxr"], [("tpr_signed", "race_gender")])
    assert [t.get_text() for t in fig.axes[0].texts] == [plots.NO_ESTIMATE]
    fig = plots.missingness_heatmaps(_sweep("tpr_diff", "race").assign(mean=lambda d: d["mean"].abs()), ["paper"],
                                     [("tpr_diff", "race")])
    assert fig.axes[0].collections[0].get_cmap().name == "magma_r"


# ------------------------------------------------------------------------------------ captions and alt text
def _described(fig) -> plots.FigureText:
    """The figure's caption and alt text, checked to be a plotting function's own (not the generic fallback); and no
    legend of the figure covers a plot."""
    text = plots.figure_text(fig)
    assert text.described, f"figure {plots._title(fig)!r} has no caption of its own"
    assert plots.legends_over_plot(fig) == [], f"figure {plots._title(fig)!r}: a legend hides part of a plot"
    assert len(text.caption) > 40 and len(text.alt) > 40, text
    assert not re.fullmatch(r"\S*\.(png|jpe?g|svg)", text.alt), f"alt text is a file name: {text.alt}"
    return text


def test_figure_html_holds_the_png_its_alt_and_caption_escaped():
    from bs4 import BeautifulSoup

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    plots.describe(fig, 'Rates <in %> & "gaps"\n across  groups.', "Line chart: 'a' < b & c.")
    bundle, meta = plots.figure_bundle(fig)
    assert set(bundle) == {"image/png", "text/html"} and meta == {"mmlib": {"legends_over_plot": []}}
    page = BeautifulSoup(bundle["text/html"], "html.parser")
    figure = page.find("figure")
    assert figure["class"] == [plots.FIGURE_CLASS]
    img = figure.find("img")
    assert img["alt"] == "Line chart: 'a' < b & c."  # the attribute round-trips: it was escaped
    assert figure.find("figcaption").get_text() == 'Rates <in %> & "gaps" across groups.'
    assert "<in %>" not in bundle["text/html"] and "&lt;in %&gt;" in bundle["text/html"]
    assert img["src"] == "data:image/png;base64," + bundle["image/png"]
    from IPython.core.pylabtools import print_figure

    assert bundle["image/png"] == print_figure(fig, "png", base64=True), "the PNG is the inline backend's, unchanged"


def test_a_legend_over_a_plot_is_found_and_one_beside_it_is_not():
    """legends_over_plot, the check every displayed figure gets: matplotlib's default legend (placed inside the axes)
    and a figure legend over the axes are reported with their titles; legend_beside's is not, nor one below."""
    fig, (a, b) = plt.subplots(1, 2)
    for ax in (a, b):
        ax.bar([0, 1, 2], [3, 3, 3], label="bars")
    a.set_title("left")
    a.legend(title="inside")
    plots.legend_beside(b, title="beside")
    fig.tight_layout()
    assert plots.legends_over_plot(fig) == ['legend "inside" over "left"']
    a.get_legend().remove()
    fig.legend(title="figure-wide", loc="upper left", bbox_to_anchor=(0.15, 0.85))
    assert plots.legends_over_plot(fig) == ['legend "figure-wide" over "left"']
    fig.legends.clear()
    fig.legend(title="below", loc="upper center", bbox_to_anchor=(0.5, 0.0))
    assert plots.legends_over_plot(fig) == []
    assert b.get_legend().get_title().get_text() == "beside" and len(b.get_legend().get_texts()) == 1


def test_a_figure_no_function_described_gets_a_marked_fallback():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    ax.set_title("raw <figure>")
    text = plots.figure_text(fig)
    assert not text.described and "raw <figure>" in text.caption
    html = plots.figure_bundle(fig)[0]["text/html"]
    assert plots.UNDESCRIBED in html and "&lt;figure&gt;" in html
    with pytest.raises(ValueError, match="non-empty caption"):
        plots.describe(fig, "  ", "alt")
    fig, _ = plt.subplots()
    assert plots.figure_bundle(plt.figure()) == ({}, {})  # nothing drawn: no output, as the inline backend does


def test_every_figure_shown_in_a_kernel_is_a_captioned_bundle_with_the_inline_png():
    """The real display path of a chapter: a Jupyter kernel with the inline backend, the formatter installed before
    the backend is loaded (as ``chapter.start`` does). ``plt.show()``, the figures flushed after a cell and
    ``display(fig)`` all give ``image/png`` (the bytes the inline backend's own PNG formatter makes) and
    ``text/html`` (a ``<figure>`` of the same PNG with alt text and caption)."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import matplotlib.pyplot as plt, pandas as pd\nfrom IPython.display import display\nfrom mmlib import plots\n"
        "plots.install_figure_captions()\n"
        "w = pd.DataFrame({'modality': ['a', 'a', 'b'], 'words': [1.0, 2.0, 9.0], 'cohort': ['X', 'X', 'Y']})",
        "plots.text_lengths(w)\nplt.show()",
        "fig = plots.text_lengths(w)",  # shown by the backend's flush after the cell
        "fig = plots.text_lengths(w)\ndisplay(fig)\nplt.close(fig)",
        "from IPython.core.pylabtools import print_figure\nfrom matplotlib_inline.backend_inline import InlineBackend\n"
        "print(print_figure(plots.text_lengths(w), 'png', base64=True, **InlineBackend.instance().print_figure_kwargs))\n"
        "plt.close('all')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", timeout=300).execute()
    reference = nb.cells[4].outputs[0]["text"].strip()
    for cell in nb.cells[1:4]:
        shown = [o for o in cell.outputs if o.output_type == "display_data"]
        assert len(shown) == 1, cell.outputs
        data = shown[0]["data"]
        assert data["image/png"] == reference
        assert data["text/html"].startswith(f'<figure class="{plots.FIGURE_CLASS}"')
        assert f'src="data:image/png;base64,{reference}"' in data["text/html"]
        assert "<figcaption" in data["text/html"] and "Median words: a X 2; b Y 9." in data["text/html"]
        assert shown[0]["metadata"] == {"mmlib": {"legends_over_plot": []}}, "the legend check is recorded"


def test_group_rate_figures_say_which_groups_differ_most():
    fig = plots.outcome_prevalence(_mimic_eye(), "race_binary")
    assert fig.axes[0].get_xlabel() == "outcome"
    text = _described(fig)
    # admitted: White 2/2 (stays 10, 14 has 0 -> 1/2), non-White ...: computed from the bars drawn
    long = plots.rates_by_group(_mimic_eye().stays[["admitted", "cxr_edema"]], _mimic_eye().stays["race_binary"])
    gaps = long.groupby("variable")["rate"].agg(lambda r: r.max() - r.min())
    assert f"largest difference between groups is for {target_label(gaps.idxmax())}" in text.alt
    assert "Grouped bar chart" in text.alt and "Wilson 95%" in text.caption
    _described(plots.availability_by_group(_mimic_eye(), "race_binary"))


def test_chapter_01_02_figures_are_described():
    _described(plots.finding_examples(_mimic_eye()))
    ecg = SimpleNamespace(**vars(_mds_ed()), ecg=lambda ids: np.zeros((len(ids), 500, 12)))
    text = _described(plots.finding_examples(ecg))
    assert "ECG strip" in text.alt and "atrial fibrillation" in text.alt
    rows = [{"finding": f, "group": g, "sensitivity": s, "sens_low": 0.4, "sens_high": 0.9, "specificity": 0.9,
             "spec_low": 0.8, "spec_high": 0.95, "source": "reader", "cohort": "mimic_eye", "by": "race_binary"}
            for f, g, s in [("edema", "White", 0.8), ("edema", "non-White", 0.5), ("consolidation", "White", 0.7)]]
    fig = plots.fidelity_by_group(pd.DataFrame(rows))[0]
    assert fig.axes[0].get_xlabel() == "finding" and "0-1" in fig.axes[0].get_ylabel()
    assert "The lowest sensitivity is 0.50, for edema (group non-White)" in _described(fig).alt
    rng = np.random.default_rng(0)
    fig = plots.embedding_map(rng.normal(size=(20, 2)), {"race": pd.Series(["White", "non-White"] * 10)}, "T")
    assert "scatter plot(s) of 20 texts" in _described(fig).alt


def _summary(labels, metrics_attrs, models=("paper",), cohort="c"):
    rows = []
    for k, lab in enumerate(labels):
        for metric, attr in metrics_attrs:
            for model in models:
                m = 0.6 + 0.05 * k if attr == "overall" else 0.1 - 0.04 * k
                rows.append({"cohort": cohort, "model": model, "modalities": lab, "metric": metric, "attribute": attr,
                             "group": "all" if attr == "overall" else "gap", "mean": m, "ci_low": m - 0.02,
                             "ci_high": m + 0.02})
    return pd.DataFrame(rows)


def test_model_result_figures_are_described_with_computed_numbers():
    keys = [("auroc", "overall"), ("tpr_diff", "race")]
    table = _summary(["a", "a+b", "a+b+c"], keys + [("dp_diff", "race"), ("eo_diff", "race")])
    text = _described(plots.performance_vs_gap(table, "c", "paper", ["a", "a+b", "a+b+c"], attributes=("race",)))
    assert "Highest AUROC: a+b+c (0.70); lowest: a (0.60)" in text.alt
    text = _described(plots.metric_curves(table, "c", {"paper": ["a", "a+b", "a+b+c"]}, keys))
    assert "AUROC 0.600 to 0.700" in text.alt and "a → a+b → a+b+c" in text.caption
    sweep = _sweep("tpr_signed", "race")
    text = _described(plots.degradation_curves(sweep[sweep.train_rate == 0], ["paper"], [("tpr_signed", "race")]))
    assert "-0.100 at 0% to 0.020 at 60%" in text.alt
    text = _described(plots.missingness_heatmaps(sweep, ["paper"], [("tpr_signed", "race")]))
    assert "from -0.125 (training 50%, inference 0% missing) to 0.020 (training 0%, inference 60% missing)" in text.alt
    one = sweep[sweep.train_rate == 0].assign(modality="x")
    assert "x -0.100 to 0.020" in _described(plots.modality_curves(one, ["paper"], ["x"], [("tpr_signed", "race")])).alt


def test_decision_and_interference_figures_are_described():
    w = pd.DataFrame({"modality": ["a"] * 4 + ["b"] * 4, "training": ["all", "all", "alone", "alone"] * 2,
                      "weight": [0.1, -0.3, 0.5, 0.7, 0.0, 0.2, -0.2, 0.2]})
    assert "a (all) 0.200" in _described(plots.weight_distributions(w)).alt
    c = pd.DataFrame({"modality": ["a", "a", "b", "b"], "race": ["White", "non-White"] * 2,
                      "contribution": [0.5, -0.25, 1.0, 0.0]})
    assert "a non-White -0.25" in _described(plots.contribution_boxes(c, "race")).alt
    eff = pd.DataFrame({"model": ["paper"] * 4, "modality": ["a", "a", "b", "b"], "perturbation": ["blank", "swap"] * 2,
                        "flip_rate": [0.01, 0.2, 0.05, 0.0]})
    assert "paper 20.0% (a replaced by swap)" in _described(
        plots.interference_heatmaps(eff, ["paper"], ["a", "b"], ["blank", "swap"])).alt
    by = pd.DataFrame({"modality": ["a", "a", "b", "b"], "perturbation": ["blank"] * 4, "group": ["White", "F"] * 2,
                       "mean_abs_dp": [0.01, 0.03, 0.02, 0.0]})
    assert "blank: 0.030 for F (a replaced)" in _described(plots.interference_by_group(by, ["a", "b"], ["blank"])).alt




def test_adding_modalities_draws_chapter_04s_three_figures():
    """plots.adding_modalities gives the three figures chapter 04 drew one call at a time: performance and the
    paper's gaps along the order (every other order in grey), then the lead model's signed gaps."""
    from mmlib.findings import PERFORMANCE_KEYS
    from mmlib.train import ModalityOrder

    order = ModalityOrder(["a", "b", "c"])
    keys = list(PERFORMANCE_KEYS) + list(plots.PAPER_GAP_PANELS) + [(g, a) for g in ("dp_signed", "tpr_signed", "fpr_signed")
                                                                      for a in ("race", "gender")]
    table = _summary(order.subsets(), keys, models=("paper", "late"))
    models = ["paper", "late"]
    figs = plots.adding_modalities(table, "c", order, models, PERFORMANCE_KEYS, every_order=True, name="C")
    seqs, every = {m: order.prefixes() for m in models}, order.all_orders()
    gaps = [(g, a) for g in ("dp_diff", "tpr_diff", "eo_diff") for a in ("race", "gender", "race_gender")]
    before = [plots.metric_curves(table, "c", seqs, PERFORMANCE_KEYS, orders=every, order_model="paper",
                                  title="C: performance as modalities are added (a → b → c)"),
              plots.metric_curves(table, "c", seqs, gaps, orders=every, order_model="paper", ncols=3,
                                  title="C: the paper's fairness gaps (max − min) as modalities are added (0 = parity)"),
              plots.signed_gaps(table, "c", "paper", order.prefixes(),
                                title="C: signed gaps (group − White / women − men) along the order, paper model")]
    assert len(figs) == 3
    for new, old in zip(figs, before):
        assert plots.figure_text(new) == plots.figure_text(old) and _png(new) == _png(old)
    assert "every other order" in plots.figure_text(figs[0]).caption
    alone = plots.adding_modalities(table, "c", order, models, PERFORMANCE_KEYS, every_order=False)
    assert "every other order" not in plots.figure_text(alone[0]).caption and plots._title(alone[2]).startswith("c:")


def test_embedding_maps_are_the_pca_figures_of_the_modalities_with_texts():
    """plots.embedding_maps (chapter 02) is embedding_pca of every modality of the cohort in schema order, the
    modalities with too few texts left out."""
    from mmlib.schema import MODALITIES

    rng = np.random.default_rng(0)
    n = 12
    ids = np.arange(100, 100 + n)
    stays = pd.DataFrame({"y": [1.0, 0.0, np.nan] * 4, "race_binary": ["White", "non-White"] * 6}, index=ids)
    c = SimpleNamespace(name="mds_ed", stays=stays, primary_target="y")
    mods = MODALITIES["mds_ed"]
    emb = {"stay_id": ids, **{m: rng.normal(size=(n, 5)).astype(np.float32) for m in mods},
           **{f"mask_{m}": np.arange(n) >= (5 if m == mods[1] else 0) for m in mods}}
    figs = plots.embedding_maps(emb, c, name="MDS")
    before = [plots.embedding_pca(emb, m, c, title=f"MDS · {m}: first two principal components") for m in mods]
    assert before[1] is None and len(figs) == len(mods) - 1
    for new, old in zip(figs, [f for f in before if f is not None]):
        assert new._suptitle.get_text() == old._suptitle.get_text() and _png(new) == _png(old)
    assert plots.embedding_maps(emb, c)[0]._suptitle.get_text().startswith("mds_ed · ")


# ------------------------------------------------------------------ chapters 05-07's per-cohort figure loops
@pytest.fixture(scope="module")
def chapter05_sweep(toy_data):
    """A sweep of chapter 05's four protocols on two toy cohorts (``mimic_eye``, ``mds_ed``: the same toy data under
    two names, so that display names show) and two models, scored with the real protocol functions."""
    from mmlib import metrics, missing, train

    d = toy_data(n=300)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    fl = train.run_grid(d, [("paper", ["good", "noise"])], [0], cfg, keep={("paper", "good+noise")},
                        progress=False, cache_dir=None).fits_of("paper", "good+noise", [0])
    names = ["mimic_eye", "mds_ed"]
    groups = metrics.evaluation_groups(d, "test", min_group=5, min_events=2, n_boot=10)
    data, fits = {n: d for n in names}, {n: {"paper": fl, "late": fl} for n in names}
    present, gs = {n: d.mask[d.rows("test")] for n in names}, {n: groups for n in names}
    orders = {n: train.ModalityOrder(["good", "noise"]) for n in names}
    sweep = missing.Sweep()
    missing.random_protocol(sweep, data, fits, present, gs, [0.0, 0.5], 2, mask_seed=0, rank_draws=1)
    missing.one_modality_protocol(sweep, data, fits, present, gs, orders, [1.0], 2, mask_seed=0, rank_draws=1)
    grid_fits = {(n, 0.0): {"paper": fl, "late": fl} for n in names}
    missing.train_test_protocol(sweep, data, grid_fits, present, gs, [0.0], [0.0, 0.6], 2, mask_seed=0, rank_draws=1)
    factors = {n: {"White": 1.0, "non-White": 2.0} for n in names}
    missing.group_protocol(sweep, data, fits, present, gs, factors, [0.0, 0.2], 2, mask_seed=0, rank_draws=1)
    return sweep, names, orders


def _same_figures(new: list, old: list):
    assert len(new) == len(old) >= 2
    for a, b in zip(new, old):
        assert plots.figure_text(a) == plots.figure_text(b) and _png(a) == _png(b)


def test_chapter_05s_figures_are_its_loops(chapter05_sweep):
    """plots.random_missingness, one_modality_figures, train_test_heatmaps and protocol_comparison (chapter 05) draw
    the figures chapter 05 drew cohort by cohort: same titles, captions and pixels, in the same order."""
    from mmlib import findings, missing
    from mmlib.schema import display_name

    sweep, names, orders = chapter05_sweep
    models = ["paper", "late"]
    rnd = sweep.table[sweep.table.protocol == "random"]
    keys = findings.PERFORMANCE_KEYS + findings.SIGNED_KEYS
    old = []
    for n in names:
        old.append(plots.degradation_curves(rnd[rnd.cohort == n], models, keys, ncols=4,
                                            title=f"{display_name(n)}: performance and signed gaps (group − White / "
                                                  "women − men) as modalities go missing at random"))
        old.append(plots.degradation_curves(rnd[rnd.cohort == n], models, findings.GAP_KEYS, ncols=3,
                                            title=f"{display_name(n)}: {findings.PAPER_GAP}, as in the paper's "
                                                  "Figure 3"))
    _same_figures(plots.random_missingness(rnd, names, models, keys, findings.GAP_KEYS, findings.PAPER_GAP), old)
    assert plots._title(old[0]).startswith("MIMIC-Eye: ") and plots._title(old[3]).startswith("MIMIC-IV-Ext-MDS-ED")

    old = [plots.modality_curves(missing.one_modality_table(sweep.table, n, orders[n]), models, orders[n],
                                 [("auroc", "overall"), ("tpr_signed", "race"), ("dp_signed", "race"),
                                  ("tpr_signed", "gender")],
                                 title=f"{display_name(n)}: one modality missing, the others present") for n in names]
    new = plots.one_modality_figures({n: missing.one_modality_table(sweep.table, n, orders[n]) for n in names},
                                     models, orders)
    _same_figures(new, old)

    grid = sweep.table[sweep.table.protocol == "train x test"]
    hkeys = [("auroc", "overall")] + list(findings.SIGNED_KEYS)
    old = [plots.missingness_heatmaps(grid[grid.cohort == n], models, hkeys,
                                      title=f"{display_name(n)}: train x test missingness\n(mean over seeds x draws)")
           for n in names]
    _same_figures(plots.train_test_heatmaps(sweep.table, names, models, hkeys), old)

    both = sweep.table[sweep.table.protocol.isin(["random", "group-dependent"])]
    assert set(both.protocol) == {"random", "group-dependent"}
    old = [plots.degradation_curves(both[both.cohort == n], models,
                                    [("auroc", "overall"), ("tpr_signed", "race"), ("dp_signed", "race"),
                                     ("fpr_signed", "race")], style_by="protocol", ncols=4,
                                    title=f"{display_name(n)}: random (solid) against group-dependent (dashed) "
                                          "missingness, same average rate") for n in names]
    _same_figures(plots.protocol_comparison(sweep.table, names, models), old)


def test_heatmaps_are_drawn_one_axes_at_a_time_and_every_panel_is_shown(chapter05_sweep):
    """seaborn's heatmap draws the whole figure on each call; plots._alone hides the other axes meanwhile (one axes
    drawn per call) and shows them again afterwards, also when the block raises: every panel of the finished
    figures is visible, and a hidden axes stays hidden."""
    sweep, names, _ = chapter05_sweep
    fig = plots.missingness_heatmaps(sweep.table[sweep.table.protocol == "train x test"], ["paper", "late"],
                                     [("auroc", "overall"), ("tpr_signed", "race")])
    assert len(fig.axes) == 4 and all(ax.get_visible() for ax in fig.axes)
    fig, axes = plt.subplots(1, 3)
    axes[2].set_visible(False)
    drawn = []
    with pytest.raises(RuntimeError), plots._alone(axes[0]):
        drawn.append([ax.get_visible() for ax in axes])
        raise RuntimeError("seaborn failed")
    assert drawn == [[True, False, False]] and [ax.get_visible() for ax in axes] == [True, True, False]
    plt.close("all")


def test_calibration_robustness_is_chapter_06s_loop(chapter05_sweep):
    """plots.calibration_robustness (chapter 06): the baseline against the calibrated model as modalities go
    missing, per cohort, as chapter 06 drew it (here on a random sweep whose two models are renamed)."""
    from mmlib import findings
    from mmlib.schema import display_name

    sweep, names, _ = chapter05_sweep
    rnd = sweep.table[sweep.table.protocol == "random"]
    robust = rnd.assign(model=rnd.model.map({"paper": "linear", "late": "linear+calibrated"}))
    keys = [("auroc", "overall"), ("f1", "overall")] + list(findings.SIGNED_KEYS)
    old = [plots.degradation_curves(robust[robust.cohort == n], ["linear", "linear+calibrated"], keys, ncols=3,
                                    title=f"{display_name(n)}: baseline against per-modality calibration as "
                                          "modalities go missing") for n in names]
    _same_figures(plots.calibration_robustness(robust, names, keys), old)
