"""Figures the chapters show. Every function returns a matplotlib Figure with labelled axes and units, and with a
caption and alt text attached (:func:`describe`): what is plotted, its units, how to read it and, where it is
computed, the main pattern.

A chapter shows a figure with ``plt.show()`` (or ``display(fig)``); :func:`install_figure_captions`, installed by
:func:`mmlib.chapter.start`, makes every displayed figure a bundle of its unchanged PNG (``image/png``, for the PDF)
and an HTML ``<figure>`` of the same PNG with its alt text and ``<figcaption>`` (``text/html``, which the Jupyter
Book and Quarto HTML renders prefer). A figure that no function here described still gets a generic caption, marked
:data:`UNDESCRIBED`, which ``tests/test_browser.py`` refuses on a chapter page.

A legend never covers a plot: legends sit beside the plotting area (:func:`legend_beside`) or below the figure.
Every displayed figure is checked (:func:`legends_over_plot`, recorded in the output's metadata by
:func:`figure_bundle`), and ``tests/test_pipeline.py`` refuses a legend over a plot anywhere in the ci book.
"""
from __future__ import annotations

import base64
import functools
import html
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import disclosure
from .metrics import SIGNED, group_order, not_compared
from .schema import FS, LEADS, MODALITIES, display_name, target_label
from .tables import rates_by_group

sns.set_theme(context="notebook", style="whitegrid")


# ----------------------------------------------------------------------------- captions and alt text
#: The class of the ``<figure>`` element a chapter's figure is shown in (:func:`figure_html`); a figure that no
#: plotting function described gets :data:`UNDESCRIBED` as well, which the browser test refuses on a chapter page.
FIGURE_CLASS = "mmlib-figure"
UNDESCRIBED = "mmlib-figure-undescribed"


@dataclass(frozen=True)
class FigureText:
    """What a reader who does not see a figure needs, and what every reader needs to read it.

    ``caption``: one or two sentences under the figure (what is plotted, the units, how to read it; numbers only
    where computed); ``alt``: the image's alternative text for a screen reader (chart type, axes, the groups
    compared and, where it is computed, the main pattern); ``described``: whether a plotting function wrote them
    (``False`` for the generic fallback of :func:`figure_text`)."""

    caption: str
    alt: str
    described: bool = True


def describe(fig: plt.Figure, caption: str, alt: str) -> plt.Figure:
    """Attach a caption and alt text to ``fig`` (as ``fig.mmlib_text``, a :class:`FigureText`) and return it.
    Every figure function of this module ends with it; :func:`figure_html` shows them."""
    caption, alt = " ".join(str(caption).split()), " ".join(str(alt).split())
    if not caption or not alt:
        raise ValueError("a figure needs a non-empty caption and alt text")
    fig.mmlib_text = FigureText(caption, alt)
    return fig


def figure_text(fig: plt.Figure) -> FigureText:
    """The :class:`FigureText` attached by :func:`describe`, or a generic one (``described=False``) built from the
    figure's titles, so that a reader still gets a caption; tests refuse the generic one on a chapter page."""
    text = getattr(fig, "mmlib_text", None)
    if isinstance(text, FigureText):
        return text
    titles = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    title = "; ".join(" ".join(t.split()) for t in titles if t.strip()) or "untitled figure"
    return FigureText(f"Figure: {title}.", f"Chart: {title}.", described=False)


@contextmanager
def _alone(ax):
    """Within the block ``ax`` is the only visible axes of its figure. ``seaborn.heatmap`` draws the whole figure
    on every call (to see whether tick labels overlap), so a figure of N heatmaps drew N ever fuller figures: with
    the others hidden each call draws one axes, and the finished figure has the same pixels (its layout is made
    afterwards). Used by :func:`missingness_heatmaps` (chapter 05) and :func:`interference_heatmaps` (chapter 07)."""
    others = [a for a in ax.figure.axes if a is not ax and a.get_visible()]
    for a in others:
        a.set_visible(False)
    try:
        yield ax
    finally:
        for a in others:
            a.set_visible(True)


def legend_beside(ax, **kw):
    """``ax``'s legend to the right of its plotting area, top-aligned, where it hides no data (its handles and
    labels, or seaborn's, as they are; ``kw``: title, fonts, ...). ``tight_layout`` makes room for it."""
    handles, labels = ax.get_legend_handles_labels()
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)


def legends_over_plot(fig: plt.Figure) -> list[str]:
    """The legends of ``fig`` (of an axes or of the figure) that cover part of a plotting area -- any axes' data
    rectangle, a colour bar's included -- each as ``'legend "<title>" over "<axes title>"'``; empty when every legend
    sits beside the plots. :func:`figure_bundle` records it for every figure a chapter displays."""
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    areas = [ax for ax in fig.axes if ax.get_visible()]
    over = []
    for legend in legends:
        if not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        for ax in areas:
            area = ax.get_window_extent(renderer)
            if min(box.x1, area.x1) - max(box.x0, area.x0) > 1 and min(box.y1, area.y1) - max(box.y0, area.y0) > 1:
                name = ax.get_title() or (fig._suptitle.get_text() if fig._suptitle is not None else "") or "untitled"
                over.append(f'legend "{legend.get_title().get_text()}" over "{name}"')
    return over


def figure_html(fig: plt.Figure, png_base64: str) -> str:
    """The HTML of a displayed figure: ``<figure>`` holding the PNG (``png_base64``, the figure's ``image/png``
    output, unchanged) with its alt text, and its caption as ``<figcaption>`` (:func:`figure_text`; escaped)."""
    text = figure_text(fig)
    cls = FIGURE_CLASS if text.described else f"{FIGURE_CLASS} {UNDESCRIBED}"
    return (f'<figure class="{cls}" style="margin: 0 0 1em 0;">'
            f'<img alt="{html.escape(text.alt, quote=True)}" src="data:image/png;base64,{png_base64}" '
            f'style="max-width: 100%; height: auto;">'
            f'<figcaption style="font-size: 0.9em;">{html.escape(text.caption, quote=False)}</figcaption></figure>')


_PNG = {"printer": None}


def _png_printer(shell):
    """The function that makes a figure's ``image/png`` output in ``shell``: the one the inline backend
    registered (:func:`IPython.core.pylabtools.select_figure_formats`, with its dpi and ``bbox_inches``), taken over
    from the PNG formatter so that the figure is drawn once per display; IPython's own default otherwise."""
    from matplotlib.figure import Figure

    png = shell.display_formatter.formatters["image/png"]
    try:
        printer = png.lookup_by_type(Figure)
    except KeyError:
        printer = _PNG["printer"]
    else:
        png.pop(Figure)
        _PNG["printer"] = printer
    if printer is None:
        from IPython.core.pylabtools import print_figure

        printer = functools.partial(print_figure, fmt="png", base64=True)
    return printer


def figure_bundle(fig: plt.Figure, shell=None) -> tuple[dict, dict]:
    """A displayed figure's outputs and their metadata. Outputs: ``image/png`` (the bytes the inline backend makes,
    for the PDF and any renderer that prefers an image) and ``text/html`` (:func:`figure_html` of the same PNG,
    which the Jupyter Book and Quarto HTML renders prefer: alt text and caption); both empty for a figure with
    nothing drawn. Metadata: ``{"mmlib": {"legends_over_plot": [...]}}`` (:func:`legends_over_plot`), which the
    tests read from the executed chapters."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        from IPython.core.pylabtools import print_figure

        png = print_figure(fig, "png", base64=True)
    else:
        png = _png_printer(shell)(fig)
    if not png:
        return {}, {}
    if isinstance(png, bytes):
        png = base64.b64encode(png).decode("ascii")
    return {"image/png": png, "text/html": figure_html(fig, png)}, {"mmlib": {"legends_over_plot": legends_over_plot(fig)}}


def install_figure_captions() -> None:
    """In an IPython kernel (a chapter, :func:`mmlib.chapter.start`): show every matplotlib figure --
    ``plt.show()`` of the inline backend, the figures it flushes after a cell, ``display(fig)`` -- as
    :func:`figure_bundle`, so the rendered book gives each figure its alt text and caption. Registered as the
    figure's MIME-bundle formatter, which the inline backend's set-up does not reset. No-op outside IPython.

    Disclosure control is unchanged: figures are not filtered at display; the functions that would draw single
    stays refuse themselves for a credentialed source (:func:`mmlib.disclosure.per_stay`), and the captions and alt
    texts state only numbers the figure draws."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the chapters only
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    shell.display_formatter.mimebundle_formatter.for_type(Figure, lambda fig: figure_bundle(fig, shell))


def _words(items, limit: int = 8) -> str:
    """``a, b and c`` (at most ``limit`` items, then ``and N more``)."""
    items = [str(i) for i in items]
    if len(items) > limit:
        items = items[:limit] + [f"{len(items) - limit} more"]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    """``text`` with its first letter capitalised (the rest kept) and a full stop."""
    return text[:1].upper() + text[1:] + "."


def _fmt(x: float, digits: int = 2, signed: bool = False) -> str:
    """A number for a caption or alt text (``n/a`` when it is missing)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _title(fig: plt.Figure) -> str:
    """The figure's suptitle, or its first axes title, on one line."""
    t = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    t = t or next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
    return " ".join(t.split())


def _rates_pattern(long: pd.DataFrame) -> str:
    """The largest difference between two groups' rates of one variable (alt text of :func:`rates_with_ci`)."""
    best = None
    for v, d in long.dropna(subset=["rate"]).groupby("variable", sort=False):
        if len(d) < 2:
            continue
        hi, lo = d.loc[d["rate"].idxmax()], d.loc[d["rate"].idxmin()]
        if best is None or hi["rate"] - lo["rate"] > best[0]:
            best = (hi["rate"] - lo["rate"], v, hi, lo)
    if best is None:
        return "No variable has a rate for two groups."
    _, v, hi, lo = best
    return (f"The largest difference between groups is for {v}: {hi['group']} {100 * hi['rate']:.1f}% against "
            f"{lo['group']} {100 * lo['rate']:.1f}%.")


def rates_with_ci(flags: pd.DataFrame, groups: pd.Series, title: str, ylabel: str, group_label: str,
                  labels: dict | None = None, xlabel: str = "variable") -> plt.Figure:
    """Grouped bars of the rate of each 0/1 column in ``flags`` by group, with Wilson 95% CI error bars. For a
    credentialed source, a bar whose count, complement or group is under 11 stays is left out
    (:func:`mmlib.disclosure.share`). Captioned (:func:`describe`) with the largest difference between groups."""
    long = rates_by_group(flags, groups)
    if disclosure.active():
        keep = [not np.isnan(disclosure.share(round(r * n), n)) if n else False for r, n in zip(long["rate"], long["n"])]
        long = long[keep]
    long["variable"] = long["variable"].map(lambda v: (labels or {}).get(v, v))
    order_g = group_order(long["group"])
    order_v = list(pd.unique(long["variable"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(order_v) + 2), 4))
    width = 0.8 / len(order_g)
    x = np.arange(len(order_v))
    palette = sns.color_palette("colorblind", len(order_g))
    for i, g in enumerate(order_g):
        d = long[long["group"] == g].set_index("variable").reindex(order_v)
        ax.bar(x + (i - (len(order_g) - 1) / 2) * width, 100 * d["rate"], width, color=palette[i],
               label=f"{g}", yerr=[100 * (d["rate"] - d["low"]), 100 * (d["high"] - d["rate"])],
               capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(x, order_v, rotation=20, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend_beside(ax, title=group_label, fontsize=8, title_fontsize=9)
    fig.tight_layout()
    withheld = " Bars of fewer than 11 stays, or with fewer than 11 stays with or without the value, are left out." \
        if disclosure.active() else ""
    return describe(
        fig,
        f"{title}. Bars: the percentage of each group's stays ({group_label}; y axis) for each {xlabel} (x axis); "
        f"error bars are Wilson 95% confidence intervals, and bars whose intervals do not overlap differ "
        f"clearly.{withheld}",
        f"Grouped bar chart with error bars. X axis: {xlabel} ({_words(order_v)}). Y axis: {ylabel}. One bar per "
        f"{group_label} group: {_words(order_g)}. {_rates_pattern(long)}")


def cxr_examples(cohort, stay_ids, captions: list[str]) -> plt.Figure:
    """A row of the cohort's chest X-rays with captions (synthetic cohorts only)."""
    disclosure.per_stay("chest X-ray examples")
    if not cohort.is_synthetic:
        raise ValueError("row-level content (images) is shown for synthetic cohorts only")
    fig, axes = plt.subplots(1, len(stay_ids), figsize=(2.6 * len(stay_ids), 3.0))
    for ax, sid, cap in zip(np.atleast_1d(axes), stay_ids, captions):
        ax.imshow(cohort.cxr_image(sid), cmap="gray", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    panels = [" ".join(c.split()) for c in captions]
    return describe(
        fig,
        f"Chest X-rays of {len(stay_ids)} synthetic stay(s), one per panel, as grayscale images (no axes); each "
        "panel's title names the finding and, where given, the cardiothoracic ratio (CTR) and the view (PA or AP).",
        f"{len(stay_ids)} grayscale chest X-ray image(s) side by side. Panels: {'; '.join(panels)}.")


def ecg_strips(cohort, stay_ids, captions: list[str], leads=("I", "II", "V1", "V5")) -> plt.Figure:
    """Selected leads of the cohort's ECGs on a 25 mm/s, 10 mm/mV style grid (synthetic cohorts only)."""
    disclosure.per_stay("ECG strips")
    if not cohort.is_synthetic:
        raise ValueError("row-level content (ECGs) is shown for synthetic cohorts only")
    from matplotlib.ticker import MultipleLocator, NullFormatter

    sig = cohort.ecg(stay_ids)
    fig, axes = plt.subplots(len(stay_ids), 1, figsize=(10, 1.9 * len(stay_ids)), sharex=True)
    t = np.arange(sig.shape[1]) / FS
    for ax, s, cap in zip(np.atleast_1d(axes), sig, captions):
        for j, lead in enumerate(leads):
            ax.plot(t, s[:, LEADS.index(lead)] - 2.0 * j, lw=0.7, color="k")
            ax.text(-0.35, -2.0 * j, lead, fontsize=8, va="center")
        # paper grid: small squares 0.04 s x 0.1 mV, large squares 0.2 s x 0.5 mV (25 mm/s, 10 mm/mV)
        ax.xaxis.set_major_locator(MultipleLocator(0.2))
        ax.xaxis.set_minor_locator(MultipleLocator(0.04))
        ax.yaxis.set_major_locator(MultipleLocator(0.5))
        ax.yaxis.set_minor_locator(MultipleLocator(0.1))
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0f}" if abs(x - round(x)) < 1e-6 else "")
        ax.yaxis.set_major_formatter(NullFormatter())
        ax.tick_params(length=0)
        ax.grid(which="minor", color="#f6cccc", lw=0.3)
        ax.grid(which="major", color="#e57373", lw=0.6)
        ax.set_title(cap, fontsize=9, loc="left")
        ax.set_ylabel("leads (0.5 mV / square)", fontsize=8)
        ax.set_xlim(-0.4, t[-1])
        ax.set_ylim(-2.0 * len(leads) + 0.5, 1.5)
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.tight_layout()
    panels = [" ".join(c.split()) for c in captions]
    return describe(
        fig,
        f"ECG leads {_words(leads)} of {len(stay_ids)} synthetic stay(s), one strip per stay, on ECG paper (25 mm/s, "
        "10 mm/mV: a large square is 0.2 s by 0.5 mV); x axis: time in seconds, leads stacked from top to bottom.",
        f"{len(stay_ids)} ECG strip(s) on a red paper grid, each with leads {_words(leads)} stacked, over "
        f"{t[-1]:.0f} s of time on the x axis. Strips: {'; '.join(panels)}.")


def detection_by_group(table: pd.DataFrame, title: str, source_col: str | None = None) -> plt.Figure:
    """Sensitivity and specificity (with 95% CIs) per finding and group, from
    :func:`mmlib.tables.detection_by_group` (optionally stacked for several sources in ``source_col``)."""
    metrics = [("sensitivity", "sens_low", "sens_high"), ("specificity", "spec_low", "spec_high")]
    findings = list(pd.unique(table["finding"]))
    hue = source_col or "group"
    hues = group_order(table[hue]) if hue == "group" else list(pd.unique(table[hue]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    palette = sns.color_palette("colorblind", len(hues))
    width = 0.8 / len(hues)
    for ax, (m, lo, hi) in zip(axes, metrics):
        for i, h in enumerate(hues):
            d = table[table[hue] == h].set_index("finding").reindex(findings)
            x = np.arange(len(findings)) + (i - (len(hues) - 1) / 2) * width
            ax.bar(x, d[m], width, color=palette[i], label=str(h),
                   yerr=[(d[m] - d[lo]).clip(lower=0), (d[hi] - d[m]).clip(lower=0)], capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(np.arange(len(findings)), findings, rotation=15, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{m} (0-1, 95% CI)")
        ax.set_xlabel("finding")
        ax.set_title(m)
    legend_beside(axes[1], fontsize=8, title=hue, title_fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    lows = []
    for m, _, _ in metrics:
        d = table.dropna(subset=[m])
        if len(d):
            r = d.loc[d[m].idxmin()]
            lows.append(f"the lowest {m} is {r[m]:.2f}, for {r['finding']} ({hue} {r[hue]})")
    return describe(
        fig,
        f"{title}. Sensitivity (left: the share of stays with a finding whose text states it) and specificity "
        f"(right: the share without it whose text does not) of each finding (x axis), per {hue}, as proportions "
        "from 0 to 1 with 95% confidence intervals; a lower bar means more missed or invented findings.",
        f"Two grouped bar charts with error bars, sensitivity and specificity (y axes, 0 to 1). X axis: findings "
        f"({_words(findings)}). Bars per {hue}: {_words(hues)}. " + (_sentence("; ".join(lows)) if lows else ""))


def embedding_map(coords: np.ndarray, colourings: dict[str, pd.Series], title: str) -> plt.Figure:
    """2-D map of embedded texts (e.g. PCA coordinates), one panel per colouring (label -> values): a scatter of
    the texts; for a credentialed source, where no single stay is drawn, one hexagonal-bin density per group
    (contours of bins holding at least 11 texts, :data:`mmlib.disclosure.MIN_CELL`)."""
    fig, axes = plt.subplots(1, len(colourings), figsize=(5.0 * len(colourings), 4.2), squeeze=False)
    for ax, (label, hue) in zip(axes[0], colourings.items()):
        if disclosure.active():
            _binned_density(ax, coords, hue, label)
            continue
        sns.scatterplot(x=coords[:, 0], y=coords[:, 1], hue=hue.to_numpy(), hue_order=group_order(hue), s=6,
                        alpha=0.6, linewidth=0, palette="colorblind", ax=ax)
        ax.set_xlabel("component 1 (a.u.)")
        ax.set_ylabel("component 2 (a.u.)")
        ax.set_title(f"by {label}", fontsize=10)
        legend_beside(ax, title=label, fontsize=7, title_fontsize=8, markerscale=2)
    fig.suptitle(title)
    fig.tight_layout()
    drawn = ("each group is drawn as the outline of the hexagonal bins holding at least "
             f"{disclosure.MIN_CELL} of its texts" if disclosure.active() else "each point is one text")
    return describe(
        fig,
        f"{title}. The embedded texts on their first two components (x and y axes, arbitrary units), one panel per "
        f"colouring ({_words(colourings)}); {drawn}. Groups that overlap are not told apart by the embedding's two "
        "main directions; groups in distinct regions are.",
        f"{len(colourings)} {'density outline' if disclosure.active() else 'scatter'} plot(s) of {len(coords)} texts, "
        "x axis component 1 and y axis component 2 (arbitrary units). "
        + " ".join(f"Panel {i + 1} coloured by {label}: {_words(group_order(hue))}."
                   for i, (label, hue) in enumerate(colourings.items())))


def _binned_density(ax, coords: np.ndarray, hue: pd.Series, label: str, gridsize: int = 18) -> None:
    """Per group, the outline of the hexagonal bins that hold at least :data:`mmlib.disclosure.MIN_CELL` of its
    texts (an aggregate view of :func:`embedding_map` for real data: no bin of fewer stays is drawn)."""
    ext = (*np.percentile(coords[:, 0], [1, 99]), *np.percentile(coords[:, 1], [1, 99]))
    palette = sns.color_palette("colorblind", len(group_order(hue)))
    for colour, g in zip(palette, group_order(hue)):
        sel = hue.to_numpy() == g
        if sel.sum() < disclosure.MIN_CELL:
            continue
        ax.hexbin(coords[sel, 0], coords[sel, 1], gridsize=gridsize, extent=ext, mincnt=disclosure.MIN_CELL,
                  linewidths=1.0, edgecolors=colour, facecolors="none", label=str(g))
    ax.set_xlabel("component 1 (a.u.)")
    ax.set_ylabel("component 2 (a.u.)")
    ax.set_title(f"by {label}: bins of ≥{disclosure.MIN_CELL} texts", fontsize=10)
    legend_beside(ax, title=label, fontsize=7, title_fontsize=8)


# ------------------------------------------------------------------------ cohorts and texts (chapters 01-02)
def availability_by_group(cohort, group: str = "race_binary") -> plt.Figure:
    """Share of each ``group``'s stays that have each modality before the prediction time, with Wilson 95% CIs
    (chapter 01)."""
    from .data.prepare import RACE_GROUPINGS

    return rates_with_ci(cohort.availability.astype(float), cohort.stays[group],
                         title=f"{display_name(cohort.name)}: modality available before the "
                               "prediction time",
                         ylabel="stays with the modality (%, 95% CI)", group_label=RACE_GROUPINGS.get(group, group),
                         xlabel="modality")


def outcome_columns(cohort) -> list[str]:
    """The outcomes chapter 01 shows of a cohort: MIMIC-Eye's admission and chest X-ray findings; MDS-ED's
    primary target, 28-day mortality, death during the stay, heart failure and pneumonia (those the cohort has)."""
    if cohort.name == "mimic_eye":
        cols = ["admitted", "cxr_cardiomegaly", "cxr_consolidation", "cxr_edema", "cxr_pleural_effusion"]
    else:
        cols = [cohort.primary_target, "deterioration_mortality_28d", "deterioration_mortality_stay",
                "diagnoses_i50", "diagnoses_j18"]
    return [c for c in dict.fromkeys(cols) if c in cohort.stays]


def outcome_prevalence(cohort, group: str = "race_binary") -> plt.Figure:
    """Prevalence of each outcome of :func:`outcome_columns` by ``group``, with Wilson 95% CIs (chapter 01)."""
    from .data.prepare import RACE_GROUPINGS

    return rates_with_ci(cohort.stays[outcome_columns(cohort)].rename(columns=target_label), cohort.stays[group],
                         title=f"{display_name(cohort.name)}: outcome prevalence",
                         ylabel="stays with the outcome (%, 95% CI)", group_label=RACE_GROUPINGS.get(group, group),
                         xlabel="outcome")


def _cxr_caption(truth: pd.DataFrame, label: str, stay_id) -> str:
    return f"{label}\nCTR {truth.at[stay_id, 'cxr_ctr']:.2f}, {'AP' if truth.at[stay_id, 'cxr_ap'] else 'PA'}"


def _ecg_caption(truth: pd.DataFrame, label: str, stay_id) -> str:
    return (f"{label}: rate {truth.at[stay_id, 'ecg_heart_rate']:.0f}/min, QRS {truth.at[stay_id, 'ecg_qrs_ms']:.0f} ms, "
            f"ST {truth.at[stay_id, 'ecg_st_mv']:+.2f} mV")


def example_stays(cohort) -> tuple[list, list[str]]:
    """One stay per typical finding of a synthetic cohort, with a caption from its latent truth (chapter 01):
    MIMIC-Eye X-rays with no finding, cardiomegaly, consolidation, pleural effusion and edema (CTR and view);
    MDS-ED ECGs in sinus rhythm, atrial fibrillation, with a wide QRS and with ST elevation (rate, QRS, ST).
    The first stay (in stay order) that has the modality and the finding; a finding no stay has is skipped."""
    tr = cohort.truth
    if tr is None:
        raise ValueError("example_stays needs a synthetic cohort (its latent truth); real data have none")
    if cohort.name == "mimic_eye":
        modality, caption = "cxr", _cxr_caption
        conds = [("no finding", ~(tr.finding_cardiomegaly | tr.finding_consolidation | tr.finding_edema
                                  | tr.finding_pleural_effusion)),
                 ("cardiomegaly", tr.finding_cardiomegaly), ("consolidation", tr.finding_consolidation),
                 ("pleural effusion", tr.finding_pleural_effusion & ~tr.finding_edema),
                 ("edema", tr.finding_edema & ~tr.finding_pleural_effusion)]
    else:
        modality, caption = "ecg", _ecg_caption
        conds = [("sinus rhythm", (tr.af == 0) & (tr.ecg_qrs_ms < 110) & (tr.ecg_st_mv == 0)),
                 ("atrial fibrillation", (tr.af == 1) & (tr.ecg_st_mv == 0)),
                 ("wide QRS", (tr.ecg_qrs_ms > 130) & (tr.af == 0)),
                 ("ST elevation", (tr.ecg_st_mv > 0.15) & (tr.af == 0))]
    have = cohort.availability[modality].to_numpy()
    picks, captions = [], []
    for label, cond in conds:
        ids = cohort.stays.index[cond.fillna(False).to_numpy(bool) & have]
        if len(ids):
            picks.append(ids[0])
            captions.append(caption(tr, label, ids[0]))
    return picks, captions


def finding_examples(cohort) -> plt.Figure:
    """The stays of :func:`example_stays` drawn: MIMIC-Eye's chest X-rays, MDS-ED's ECG strips (chapter 01;
    synthetic cohorts only)."""
    picks, captions = example_stays(cohort)
    draw = cxr_examples if cohort.name == "mimic_eye" else ecg_strips
    return draw(cohort, picks, captions)


def stay_signal(cohort, texts: pd.DataFrame, stay_id) -> plt.Figure | None:
    """The chest X-ray (MIMIC-Eye) or ECG (MDS-ED) of one stay, when the stay has a text for it in ``texts``
    (:func:`mmlib.text.cohort_texts`); ``None`` otherwise (chapter 02, synthetic cohorts only)."""
    modality = "cxr" if cohort.name == "mimic_eye" else "ecg"
    if modality not in texts or texts.at[stay_id, modality] is None:
        return None
    if modality == "cxr":
        return cxr_examples(cohort, [stay_id], ["chest X-ray of this stay"])
    return ecg_strips(cohort, [stay_id], ["ECG of this stay"])


#: What :func:`fidelity_by_group` calls each cohort's transcribed modality in its titles.
TRANSCRIBED = {"mimic_eye": "MIMIC-Eye chest X-ray", "mds_ed": "MDS-ED ECG"}


def fidelity_by_group(fidelity: pd.DataFrame) -> list[plt.Figure]:
    """One :func:`detection_by_group` figure per grouping and source of a cohort's
    :func:`mmlib.tables.transcription_fidelity` table, in the table's order (chapter 02)."""
    what = TRANSCRIBED.get(fidelity["cohort"].iloc[0], fidelity["cohort"].iloc[0])
    return [detection_by_group(d, f"{what}, {source}: fidelity by {by.replace('_', ' ')}")
            for (by, source), d in fidelity.groupby(["by", "source"], sort=False)]


def text_lengths(words: pd.DataFrame) -> plt.Figure:
    """Box plots of the words per text by modality and cohort, from :func:`mmlib.text.word_counts` (chapter 02)."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    if disclosure.active():  # no outlier points, whiskers at quantiles: nothing drawn is a single stay
        sns.boxplot(data=words, x="modality", y="words", hue="cohort", ax=ax, showfliers=False, whis=(5, 95))
    else:
        sns.boxplot(data=words, x="modality", y="words", hue="cohort", ax=ax, fliersize=1)
    ax.set_ylabel("words per text")
    ax.set_xlabel("modality")
    ax.set_title("Length of each modality's text")
    legend_beside(ax, title="cohort", fontsize=8, title_fontsize=9)
    fig.tight_layout()
    med = words.groupby(["modality", "cohort"], sort=False)["words"].median()
    whiskers = "the 5th and 95th percentiles" if disclosure.active() else "1.5 times the interquartile range"
    return describe(
        fig,
        "Length of each modality's text: box plots of the words per text (y axis) by modality (x axis) and cohort "
        f"(colour); a box spans the middle half of the texts with the median as a line, whiskers reach {whiskers}.",
        f"Box plot. X axis: modality ({_words(pd.unique(words['modality']), 12)}); y axis: words per text; boxes per "
        f"cohort ({_words(pd.unique(words['cohort']))}). Median words: "
        + "; ".join(f"{m} {c} {v:.0f}" for (m, c), v in med.items()) + ".")


def embedding_pca(embeddings, modality: str, cohort, *, title: str, min_texts: int = 10) -> plt.Figure | None:
    """The first two principal components of one modality's embeddings (``embeddings``: the arrays of chapter
    02's ``embeddings`` artifact), coloured by the cohort's primary outcome and by race (:func:`embedding_map`);
    ``None`` when fewer than ``min_texts`` stays have the modality (chapter 02)."""
    from sklearn.decomposition import PCA

    have = embeddings[f"mask_{modality}"]
    if have.sum() < min_texts:
        return None
    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings[modality][have])
    st = cohort.stays.loc[embeddings["stay_id"][have]]
    outcome = st[cohort.primary_target].map({1.0: "yes", 0.0: "no"}).fillna("undefined")
    return embedding_map(xy, {target_label(cohort.primary_target): outcome, "race": st["race_binary"]}, title)


def embedding_maps(embeddings, cohort, name: str | None = None) -> list[plt.Figure]:
    """Chapter 02's map of each modality of ``cohort`` (``mmlib.schema.MODALITIES`` order): the
    :func:`embedding_pca` figures of the modalities with enough texts, titled with ``name`` (the cohort's display
    name). Show them with ``plt.show()``."""
    figs = [embedding_pca(embeddings, m, cohort, title=f"{name or cohort.name} · {m}: first two principal components")
            for m in MODALITIES[cohort.name]]
    return [f for f in figs if f is not None]


# --------------------------------------------------------------------------- model results (chapters 03+)
def _metric_axis_label(metric: str, attribute: str) -> str:
    """Axis label with unit: e.g. ``AUROC (0-1)``, ``TPR difference by race (0-1, 0 = parity)``."""
    from .metrics import ATTRIBUTE_LABELS, METRIC_LABELS, SHORT_LABELS

    if attribute == "overall":
        return f"{METRIC_LABELS[metric]} (0-1)"
    unit = ("ratio, 1 = parity" if metric == "dp_ratio" else "−1 to 1, 0 = parity, < 0: group below reference"
            if metric.endswith("_signed") else "0-1, 0 = parity")
    return f"{SHORT_LABELS.get(metric, METRIC_LABELS[metric])} by {ATTRIBUTE_LABELS[attribute]}\n({unit})"


def _pick(table: pd.DataFrame, cohort: str, model: str, metric: str, attribute: str) -> pd.DataFrame:
    from .metrics import select

    return select(table, metric, attribute, cohort=cohort, model=model).set_index("modalities")


def _err(row: pd.Series) -> list[list[float]]:
    """Error-bar lengths from a summary row's CI. A gap near zero can have its whole bootstrap interval
    above the estimate (a max - min is never negative); the bar then starts at the estimate."""
    return [[max(row["mean"] - row["ci_low"], 0.0)], [max(row["ci_high"] - row["mean"], 0.0)]]


def performance_vs_gap(table: pd.DataFrame, cohort: str, model: str, labels: list[str], perf: str = "auroc",
                       gaps=("dp_diff", "tpr_diff", "eo_diff"), attributes=("race", "gender", "race_gender"),
                       title: str = "") -> plt.Figure:
    """One panel per (gap, attribute): each modality set of ``labels`` placed at its performance (x) and
    fairness gap (y), error bars = 95% bootstrap CIs. Lower right is better: accurate and fair."""
    fig, axes = plt.subplots(len(gaps), len(attributes), figsize=(4.2 * len(attributes), 3.4 * len(gaps)),
                             squeeze=False, sharex=True)
    palette = sns.color_palette("colorblind", len(labels))
    x = _pick(table, cohort, model, perf, "overall").reindex(labels)
    for i, g in enumerate(gaps):
        for j, a in enumerate(attributes):
            ax = axes[i, j]
            y = _pick(table, cohort, model, g, a).reindex(labels)
            for k, lab in enumerate(labels):
                ax.errorbar(x.loc[lab, "mean"], y.loc[lab, "mean"], xerr=_err(x.loc[lab]), yerr=_err(y.loc[lab]),
                            color=palette[k], marker="o", ms=6, capsize=2, lw=1,
                            label=lab if (i, j) == (0, 0) else None)
            ax.set_ylabel(_metric_axis_label(g, a), fontsize=9)
            if i == len(gaps) - 1:
                ax.set_xlabel(_metric_axis_label(perf, "overall"), fontsize=9)
    fig.suptitle(title or f"{cohort}: performance against fairness gap ({model} model; mean over seeds, 95% CI)")
    fig.tight_layout()
    fig.legend(loc="upper center", ncol=min(6, len(labels)), title="modality alone (mean over seeds, 95% CI)",
               bbox_to_anchor=(0.5, 0.0))
    from .metrics import metric_label

    best = x["mean"].dropna()
    worst = []
    for g in gaps:
        for a in attributes:
            y = _pick(table, cohort, model, g, a).reindex(labels)["mean"].dropna()
            if len(y):
                worst.append((y.max(), f"{metric_label(g, a)} {y.max():.2f} ({y.idxmax()})"))
    pattern = (f"Highest {metric_label(perf)}: {best.idxmax()} ({best.max():.2f}); lowest: {best.idxmin()} "
               f"({best.min():.2f}). " if len(best) else "") + \
        (f"Largest gap: {max(worst)[1]}." if worst else "No gap is estimable.")
    return describe(
        fig,
        f"{_title(fig)}. Each panel places every modality set at its {metric_label(perf)} (x axis, 0-1) and one "
        "fairness gap (y axis, 0 = parity), means over seeds with 95% bootstrap confidence intervals as error bars; "
        "lower right is better: accurate and fair.",
        f"Grid of {len(gaps)} by {len(attributes)} scatter plots with error bars. X axis: {metric_label(perf)}; "
        f"y axes: {_words([metric_label(g, a) for g in gaps for a in attributes], 9)}. One point per modality set "
        f"({_words(labels)}). {pattern}")


def signed_gaps(table: pd.DataFrame, cohort: str, model: str, labels: list[str],
                metrics=("dp_signed", "tpr_signed", "fpr_signed"), attributes=("race", "gender"),
                title: str = "") -> plt.Figure:
    """Forest plot of the signed gaps (:data:`mmlib.metrics.SIGNED`: group minus reference) of each modality set
    of ``labels``: one panel per (gap, attribute), a point and its 95% bootstrap CI per set, a line at 0
    (parity). An interval that crosses the line is no clear difference (chapters 03-04)."""
    fig, axes = plt.subplots(len(attributes), len(metrics), figsize=(4.0 * len(metrics), 0.45 * len(labels) * len(attributes) + 2.2),
                             squeeze=False, sharey=True)
    ypos = np.arange(len(labels))[::-1]
    for i, a in enumerate(attributes):
        for j, g in enumerate(metrics):
            ax = axes[i, j]
            d = _pick(table, cohort, model, g, a).reindex(labels)
            clear = (d["ci_low"] > 0) | (d["ci_high"] < 0)
            ax.axvline(0, color="0.4", lw=0.8)
            ax.errorbar(d["mean"], ypos, xerr=[d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]], fmt="none",
                        ecolor="0.3", capsize=2, lw=1)
            ax.scatter(d["mean"], ypos, c=np.where(clear, "C3", "C0"), zorder=3, s=22)
            ax.set_yticks(ypos, labels, fontsize=8)
            ax.set_xlabel(_metric_axis_label(g, a), fontsize=8)
            if j == 0:
                ax.set_ylabel("modality set", fontsize=8)
    fig.suptitle(title or f"{cohort}: signed gaps ({model} model; mean over seeds, 95% CI; red: CI excludes 0)")
    fig.tight_layout()
    from .metrics import metric_label

    clear = []
    for a in attributes:
        for g in metrics:
            d = _pick(table, cohort, model, g, a).reindex(labels).dropna(subset=["mean"])
            clear += [f"{metric_label(g, a)} of {lab} {r['mean']:+.3f}" for lab, r in d.iterrows()
                      if r["ci_low"] > 0 or r["ci_high"] < 0]
    return describe(
        fig,
        f"{_title(fig)}. Forest plots of the signed gaps (group minus reference, on a −1 to 1 scale; 0 = parity): "
        "one point per modality set (y axis) with its 95% bootstrap confidence interval; red points have an "
        "interval that excludes 0 (a clear difference), blue ones cross the line at 0.",
        f"Grid of {len(attributes)} by {len(metrics)} forest plots, rows {_words(attributes)}, columns "
        f"{_words(metrics)}. Y axis: modality sets ({_words(labels)}); x axis: signed gap. "
        + (f"Intervals that exclude 0: {_words(clear, 10)}." if clear else "No interval excludes 0."))


def _grid(n: int, ncols: int, width: float, height: float, **kw):
    """A figure with ``n`` panels on ``ncols`` columns (the unused ones hidden): ``(fig, flat list of axes)``."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _parity_line(ax, metric: str) -> None:
    """A thin line at 0 on the axis of a signed gap (:data:`mmlib.metrics.SIGNED`): parity between the groups."""
    if metric in SIGNED:
        ax.axhline(0, color="0.35", lw=0.8, ls="--", zorder=0)


#: What a panel without a single estimate says (a compared group below min_group / min_events, or no rows).
NO_ESTIMATE = "no estimate here:\ntoo few stays or events\nin a compared group"


def _note_if_empty(ax) -> None:
    """Write :data:`NO_ESTIMATE` across a panel that has no finite point, instead of leaving empty axes that read
    as a flat line at 0 (call it before adding reference lines)."""
    if any(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in ax.get_lines()):
        return
    ax.text(0.5, 0.5, NO_ESTIMATE, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])


def _line_band(ax, x, frame: pd.DataFrame, color, alpha: float = 0.12, **kw) -> None:
    """The ``mean`` column as a line with markers and its 95% CI (``ci_low``/``ci_high``) as a band."""
    ax.plot(x, frame["mean"], color=color, marker="o", **kw)
    ax.fill_between(x, frame["ci_low"], frame["ci_high"], color=color, alpha=alpha)


def metric_curves(table: pd.DataFrame, cohort: str, sequences: dict[str, list[str]], keys,
                  orders: list[list[str]] | None = None, order_model: str = "paper", ncols: int = 2,
                  title: str = "") -> plt.Figure:
    """Metric against the number of modalities. ``sequences`` maps a model to its modality-set labels in
    order (one line each, band = 95% bootstrap CI); ``keys`` are (metric, attribute) panels. ``orders``:
    further sequences of ``order_model`` drawn as thin grey lines (every order of adding modalities)."""
    keys = list(keys)
    fig, axes = _grid(len(keys), ncols, 5.2, 3.3)
    palette = dict(zip(sequences, sns.color_palette("colorblind", len(sequences))))
    for ax, (metric, attr) in zip(axes, keys):
        if orders:
            d = _pick(table, cohort, order_model, metric, attr)
            for o in orders:
                ax.plot(np.arange(1, len(o) + 1), d.reindex(o)["mean"], color="0.6", lw=0.6, alpha=0.6, zorder=1)
        for model, seq in sequences.items():
            d = _pick(table, cohort, model, metric, attr).reindex(seq)
            _line_band(ax, np.arange(1, len(seq) + 1), d, palette[model], alpha=0.1, label=model, zorder=3)
        _parity_line(ax, metric)
        ax.set_xticks(np.arange(1, max(len(s) for s in sequences.values()) + 1))
        ax.set_xlabel("number of modalities (added in the default order)", fontsize=9)
        ax.set_ylabel(_metric_axis_label(metric, attr), fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    if orders:
        handles.append(plt.Line2D([], [], color="0.6", lw=0.6))
        names.append(f"{order_model}, every other order")
    fig.suptitle(title or f"{cohort}: metrics as modalities are added (mean over seeds, 95% CI band)")
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 0.0),
               title="model (line: mean over seeds; band: 95% bootstrap CI)")
    from .metrics import metric_label

    lead, seq = next(iter(sequences.items()))
    moves = []
    for metric, attr in keys:
        v = _pick(table, cohort, lead, metric, attr).reindex(seq)["mean"]
        moves.append(f"{metric_label(metric, attr)} {_fmt(v.iloc[0], 3)} to {_fmt(v.iloc[-1], 3)}")
    others = f"; thin grey lines: every other order of adding the modalities ({order_model} model)" if orders else ""
    return describe(
        fig,
        f"{_title(fig)}. One panel per metric (y axis, with its scale in the label) against the number of modalities "
        f"(x axis, added in the order {' → '.join(seq)}); lines: models (mean over seeds), bands: 95% bootstrap "
        f"confidence intervals{others}.",
        f"{len(keys)} line charts. X axis: number of modalities, 1 to {len(seq)}; y axes: "
        f"{_words([metric_label(m, a) for m, a in keys], 9)}. Lines: {_words(sequences)}. From one modality to all "
        f"{len(seq)} ({lead} model): {'; '.join(moves)}.")


def _rows(table: pd.DataFrame, metric: str, attribute: str) -> pd.DataFrame:
    from .metrics import select

    return select(table, metric, attribute)


def degradation_curves(table: pd.DataFrame, models: list[str], keys, style_by: str | None = None, ncols: int = 3,
                       title: str = "") -> plt.Figure:
    """Metric against the missing rate (``rate`` column of a sweep table of one cohort): one line per model,
    band = 95% bootstrap CI of the mean over seeds x draws. ``style_by``: a column whose values get solid /
    dashed / dotted lines (e.g. random against group-dependent missingness)."""
    keys = list(keys)
    fig, axes = _grid(len(keys), ncols, 4.4, 3.2)
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    styles = list(pd.unique(table[style_by])) if style_by else [None]
    dashes = dict(zip(styles, ["-", "--", ":", "-."]))
    for ax, (metric, attr) in zip(axes, keys):
        d = _rows(table, metric, attr)
        for m in models:
            for st in styles:
                t = d[(d["model"] == m) & ((d[style_by] == st) if style_by else True)].sort_values("rate")
                if t.empty:
                    continue
                _line_band(ax, 100 * t["rate"], t, palette[m], ls=dashes[st], ms=3,
                           label=m if st == styles[0] else None)
        _note_if_empty(ax)
        _parity_line(ax, metric)
        ax.set_xlabel("modalities missing at inference (%)", fontsize=9)
        ax.set_ylabel(_metric_axis_label(metric, attr), fontsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    if style_by:
        for st in styles:
            handles.append(plt.Line2D([], [], color="0.3", ls=dashes[st]))
            names.append(str(st))
    fig.suptitle(title or "metrics as modalities go missing")
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 0.0),
               title="line: mean over seeds x mask draws; band: 95% bootstrap CI")
    return describe(fig, *_curve_text(fig, table, models, keys, "rate", style_by=style_by, styles=styles))


def _curve_text(fig, table: pd.DataFrame, models: list[str], keys, x: str, style_by: str | None = None,
                styles=(None,), what: str = "modalities missing at inference") -> tuple[str, str]:
    """Caption and alt text of a missing-rate figure (:func:`degradation_curves`, :func:`modality_curves`): the
    first model's metric at the lowest and the highest missing rate, per panel."""
    from .metrics import metric_label

    lead = models[0]
    moves = []
    for metric, attr in keys:
        d = _rows(table, metric, attr)
        d = d[(d["model"] == lead) & ((d[style_by] == styles[0]) if style_by else True)].sort_values(x)
        d = d.dropna(subset=["mean"])
        if len(d):
            moves.append(f"{metric_label(metric, attr)} {d['mean'].iloc[0]:.3f} at {100 * d[x].iloc[0]:.0f}% to "
                         f"{d['mean'].iloc[-1]:.3f} at {100 * d[x].iloc[-1]:.0f}%")
    styled = (f"; line styles: {style_by} ({_words([f'{s}: {ls}' for s, ls in zip(styles, ['solid', 'dashed', 'dotted', 'dash-dot'])])})"
              if style_by else "")
    caption = (f"{_title(fig)}. One panel per metric (y axis, with its scale in the label; signed gaps have a dashed "
               f"line at 0 = parity) against the share of {what} (x axis, %); lines: models (mean over seeds and mask "
               f"draws), bands: 95% bootstrap confidence intervals{styled}.")
    alt = (f"{len(keys)} line charts. X axis: {what} (%); y axes: {_words([metric_label(m, a) for m, a in keys], 9)}. "
           f"Lines: {_words(models)}. " + (f"{lead} model{f' ({styles[0]})' if style_by else ''}: "
                                           f"{'; '.join(moves)}." if moves else "No estimate is drawn."))
    return caption, alt


def modality_curves(table: pd.DataFrame, models: list[str], modalities: list[str], keys, title: str = "") -> plt.Figure:
    """One column per modality made missing (the others present), one row per (metric, attribute); lines
    are models, bands 95% bootstrap CIs."""
    keys = list(keys)
    fig, axes = plt.subplots(len(keys), len(modalities), figsize=(3.6 * len(modalities), 2.9 * len(keys)),
                             squeeze=False, sharey="row")
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    for j, mod in enumerate(modalities):
        for i, (metric, attr) in enumerate(keys):
            ax = axes[i, j]
            d = _rows(table[table["modality"] == mod], metric, attr)
            for m in models:
                t = d[d["model"] == m].sort_values("rate")
                _line_band(ax, 100 * t["rate"], t, palette[m], ms=3, label=m)
            _note_if_empty(ax)
            _parity_line(ax, metric)
            if i == 0:
                ax.set_title(f"{mod} missing", fontsize=10)
            if i == len(keys) - 1:
                ax.set_xlabel(f"{mod} missing (% of stays)", fontsize=9)
            if j == 0:
                ax.set_ylabel(_metric_axis_label(metric, attr), fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(title or "one modality missing at a time")
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 0.0),
               title="model (line: mean over seeds x mask draws; band: 95% bootstrap CI)")
    from .metrics import metric_label

    metric, attr = keys[0]
    moves = []
    for mod in modalities:
        d = _rows(table[(table["modality"] == mod) & (table["model"] == models[0])], metric, attr)
        d = d.dropna(subset=["mean"]).sort_values("rate")
        if len(d):
            moves.append(f"{mod} {d['mean'].iloc[0]:.3f} to {d['mean'].iloc[-1]:.3f}")
    return describe(
        fig,
        f"{_title(fig)}. Columns: the modality made missing (the others present), x axis: the share of stays it is "
        "missing for (%); rows: metrics (y axis, with the scale in the label; signed gaps have a dashed line at 0 = "
        "parity); lines: models (mean over seeds and mask draws), bands: 95% bootstrap confidence intervals.",
        f"Grid of {len(keys)} by {len(modalities)} line charts. Columns: {_words(modalities)} missing; rows: "
        f"{_words([metric_label(m, a) for m, a in keys])}. Lines: {_words(models)}. {metric_label(metric, attr)} of the "
        f"{models[0]} model from none to the most missing: " + ("; ".join(moves) if moves else "not estimable") + ".")


def missingness_heatmaps(table: pd.DataFrame, models: list[str], keys, title: str = "") -> plt.Figure:
    """Train x test grids: one heatmap per (metric, model), metrics in rows and models in columns, of the mean
    metric by training missing rate (heatmap rows, ``train_rate``) and inference missing rate (heatmap
    columns, ``rate``), annotated with the values."""
    from .metrics import metric_label

    keys = list(keys)
    fig, axes = plt.subplots(len(keys), len(models), figsize=(4.2 * len(models), 2.7 * len(keys)), squeeze=False)
    for i, (metric, attr) in enumerate(keys):
        for j, m in enumerate(models):
            ax = axes[i, j]
            d = _rows(table[table["model"] == m], metric, attr)
            grid = d.pivot_table(index="train_rate", columns="rate", values="mean", dropna=False)
            ax.set_title(f"{m}: {metric_label(metric, attr)}", fontsize=10)
            if grid.empty or grid.isna().all().all():
                ax.text(0.5, 0.5, "not estimable\n(groups too small)", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            grid.index = [f"{100 * v:.0f}" for v in grid.index]
            grid.columns = [f"{100 * v:.0f}" for v in grid.columns]
            if metric in SIGNED:  # signed gap: two-sided colours centred at 0 (parity)
                lim = max(float(np.nanmax(np.abs(grid.to_numpy()))), 1e-9)
                style = {"cmap": "RdBu", "center": 0.0, "vmin": -lim, "vmax": lim}
            else:
                style = {"cmap": "viridis" if attr == "overall" else "magma_r"}
            with _alone(ax):
                sns.heatmap(grid, annot=True, fmt="+.3f" if metric in SIGNED else ".3f", ax=ax, cbar=False,
                            annot_kws={"fontsize": 8}, **style)
            ax.set_xlabel("missing at inference (%)", fontsize=9)
            ax.set_ylabel("missing in training (%)", fontsize=9)
    fig.suptitle(title or "train x test missingness")
    fig.tight_layout()
    fig.subplots_adjust(top=1 - 0.6 / fig.get_figheight())  # room for the title above the first row
    ranges = []
    for metric, attr in keys:
        d = _rows(table[table["model"] == models[0]], metric, attr).dropna(subset=["mean"])
        if len(d):
            lo, hi = d.loc[d["mean"].idxmin()], d.loc[d["mean"].idxmax()]
            ranges.append(f"{metric_label(metric, attr)} from {lo['mean']:.3f} (training {100 * lo['train_rate']:.0f}%, "
                          f"inference {100 * lo['rate']:.0f}% missing) to {hi['mean']:.3f} (training "
                          f"{100 * hi['train_rate']:.0f}%, inference {100 * hi['rate']:.0f}% missing)")
    return describe(
        fig,
        f"{_title(fig)}. One heatmap per metric (rows) and model (columns): each cell is the mean metric for the share "
        "of modalities missing in training (heatmap rows, %) and at inference (heatmap columns, %), written in the "
        "cell; signed gaps are coloured on both sides of 0 (parity).",
        f"Grid of {len(keys)} by {len(models)} annotated heatmaps. Rows: {_words([metric_label(m, a) for m, a in keys])}; "
        f"columns: {_words(models)}. Each heatmap: y axis missing in training (%), x axis missing at inference (%). "
        + (f"{models[0]} model: {'; '.join(ranges)}." if ranges else "Nothing is estimable."))


def weight_distributions(frame: pd.DataFrame, title: str = "") -> plt.Figure:
    """Violins of the decision-layer weights that read each modality's features (``frame``: columns
    ``modality, training, weight``), trained with all modalities against trained on that modality alone."""
    fig, ax = plt.subplots(figsize=(1.9 * frame["modality"].nunique() + 3, 3.8))
    sns.violinplot(frame, x="modality", y="weight", hue="training", split=True, inner="quart", cut=0, ax=ax,
                   palette="colorblind", density_norm="width")
    ax.axhline(0, color="0.4", lw=0.7)
    ax.set_ylabel("decision-layer weight (logit per unit feature)")
    ax.set_xlabel("modality whose features the weight reads")
    ax.set_title(title or "decision-layer weights by modality")
    legend_beside(ax, title="trained", fontsize=8, title_fontsize=9)
    fig.tight_layout()
    spread = frame.groupby(["modality", "training"], sort=False)["weight"].agg(lambda w: np.mean(np.abs(w)))
    return describe(
        fig,
        f"{ax.get_title()}. Split violins of the decision-layer weights that read each modality's features (x axis), "
        "in logit per unit feature (y axis), trained with all modalities (one half) against on that modality alone "
        "(other half); dashed lines inside are the quartiles. A narrower violin means the layer relies less on "
        "that modality.",
        f"Split violin plot. X axis: modality ({_words(pd.unique(frame['modality']))}); y axis: decision-layer weight "
        f"(logit per unit feature); halves: {_words(pd.unique(frame['training']))}. Mean absolute weight: "
        + "; ".join(f"{m} ({t}) {v:.3f}" for (m, t), v in spread.items()) + ".")


def contribution_boxes(frame: pd.DataFrame, by: str, title: str = "", order: list | None = None) -> plt.Figure:
    """Box plots of the per-stay logit contribution ``W_m . h_m`` of each modality (``frame``: columns
    ``modality, contribution`` and ``by``), split by ``by`` (outcome, race, gender)."""
    fig, ax = plt.subplots(figsize=(1.9 * frame["modality"].nunique() + 3, 3.8))
    sns.boxplot(frame, x="modality", y="contribution", hue=by, hue_order=order or group_order(frame[by]),
                showfliers=False, whis=(5, 95), ax=ax, palette="colorblind")
    ax.axhline(0, color="0.4", lw=0.7)
    ax.set_ylabel("logit contribution W_m · h_m (log-odds)")
    ax.set_xlabel("modality")
    ax.set_title(title or f"per-stay logit contributions by {by} (whiskers: 5th-95th percentile)")
    legend_beside(ax, title=by, fontsize=8, title_fontsize=9)
    fig.tight_layout()
    med = frame.groupby(["modality", by], sort=False)["contribution"].median()
    return describe(
        fig,
        f"{ax.get_title()}. Box plots of each modality's contribution to a stay's logit (W_m · h_m, in log-odds; "
        f"y axis) by modality (x axis) and {by} (colour); boxes span the middle half of the stays with the median "
        "as a line, whiskers the 5th to 95th percentile, no single stays drawn; above 0 pushes towards a positive "
        "prediction.",
        f"Box plot. X axis: modality ({_words(pd.unique(frame['modality']))}); y axis: logit contribution (log-odds); "
        f"boxes per {by} ({_words(order or group_order(frame[by]))}). Median contributions: "
        + "; ".join(f"{m} {g} {v:+.2f}" for (m, g), v in med.items()) + ".")


def interference_heatmaps(table: pd.DataFrame, models: list[str], modalities: list[str], perturbations: list[str],
                          title: str = "") -> plt.Figure:
    """One heatmap per model: flip rate (%) of the decisions when one modality (rows) is replaced by each
    perturbation (columns); ``table`` has columns ``model, modality, perturbation, flip_rate``."""
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models) + 1, 0.55 * len(modalities) + 1.8),
                             squeeze=False)
    vmax = 100 * float(np.nanmax(table["flip_rate"])) if len(table) else 1.0
    for ax, m in zip(axes[0], models):
        g = (100 * table[table["model"] == m].pivot_table(index="modality", columns="perturbation", values="flip_rate")
             ).reindex(index=modalities, columns=perturbations)
        with _alone(ax):
            sns.heatmap(g, annot=True, fmt=".1f", cmap="rocket_r", vmin=0, vmax=max(vmax, 1e-9), cbar=False, ax=ax,
                        annot_kws={"fontsize": 8})
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("perturbation")
        ax.set_ylabel("modality replaced" if m == models[0] else "")
    fig.suptitle(title or "decisions that flip (%)")
    fig.tight_layout()
    tops = []
    for m in models:
        d = table[table["model"] == m].dropna(subset=["flip_rate"])
        if len(d):
            r = d.loc[d["flip_rate"].idxmax()]
            tops.append(f"{m} {100 * r['flip_rate']:.1f}% ({r['modality']} replaced by {r['perturbation']})")
    return describe(
        fig,
        f"{_title(fig)}. One heatmap per model: each cell is the percentage of test decisions that flip when one "
        "modality (rows) is replaced by a perturbation (columns), written in the cell; darker is more flips.",
        f"{len(models)} annotated heatmap(s), one per model ({_words(models)}). Rows: modality replaced "
        f"({_words(modalities)}); columns: perturbation ({_words(perturbations)}); cells: flip rate in percent. "
        + (f"Largest flip rate per model: {'; '.join(tops)}." if tops else ""))


def interference_by_group(table: pd.DataFrame, modalities: list[str], perturbations: list[str],
                          title: str = "") -> plt.Figure:
    """Bars of mean |delta p| by group (hue) for each modality (x), one panel per perturbation; ``table`` has
    columns ``modality, perturbation, group, mean_abs_dp``."""
    fig, axes = plt.subplots(1, len(perturbations), figsize=(4.2 * len(perturbations), 3.4), squeeze=False,
                             sharey=True)
    for ax, k in zip(axes[0], perturbations):
        d = table[table["perturbation"] == k]
        genders = [g for g in ("F", "M") if g in set(d["group"])]
        hue = [g for g in group_order(d["group"]) if g not in genders] + genders  # race groups, then gender
        sns.barplot(d, x="modality", y="mean_abs_dp", hue="group", order=modalities, hue_order=hue,
                    palette="colorblind", ax=ax, errorbar=None)
        ax.set_title(k, fontsize=10)
        ax.set_xlabel("modality replaced")
        ax.set_ylabel("mean |Δp| (probability)" if k == perturbations[0] else "")
        if ax.get_legend() is not None:
            ax.get_legend().remove()  # one legend for all panels, beside the last
    legend_beside(axes[0][-1], fontsize=7, title="race group / gender", title_fontsize=8)
    fig.suptitle(title or "mean change of the predicted probability by group")
    fig.tight_layout()
    tops = []
    for k in perturbations:
        d = table[table["perturbation"] == k].dropna(subset=["mean_abs_dp"])
        if len(d):
            r = d.loc[d["mean_abs_dp"].idxmax()]
            tops.append(f"{k}: {r['mean_abs_dp']:.3f} for {r['group']} ({r['modality']} replaced)")
    return describe(
        fig,
        f"{_title(fig)}. One panel per perturbation: bars are the mean absolute change of the predicted probability "
        "(|Δp|, on the 0-1 probability scale; y axis) when one modality (x axis) is replaced, for each race group "
        "and gender (colour); a taller bar means that group's predictions move more.",
        f"{len(perturbations)} grouped bar chart(s), one per perturbation ({_words(perturbations)}). X axis: modality "
        f"replaced ({_words(modalities)}); y axis: mean |Δp| (probability); bars per group "
        f"({_words(group_order(table['group']))}). " + (f"Largest per panel: {'; '.join(tops)}." if tops else ""))


def attribution_forest(table: pd.DataFrame, cohort: str, estimands: dict, models: list[str], title: str = "",
                       settings: list[str] | None = None) -> plt.Figure:
    """Chapter 08's attribution figure for one cohort: one panel per estimand (``estimands``: key -> (panel title,
    axis label)), one row per setting with a knob on (``settings``: their order), the paired change from the all-off
    cohort with its 95% CI, one colour per model (grey for the data's own estimands); the dashed line is no change.
    ``table`` is :attr:`mmlib.attribution.Evaluation.table` (the first group of an estimand is drawn: order it with
    :func:`mmlib.attribution.display_first`)."""
    t = table[(table["cohort"] == cohort) & table["knob"].notna() & table["estimand"].isin(list(estimands))]
    t = t.drop_duplicates(["setting", "model", "estimand"])  # one group per estimand: order the table first
    rows = settings or list(dict.fromkeys(t["setting"]))
    keys = [k for k in estimands if k in set(t["estimand"])]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(2.9 * max(1, len(keys)) + 2.2, 0.36 * len(rows) + 1.9),
                             sharey=True, squeeze=False)
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    y = {s: i for i, s in enumerate(rows)}
    for ax, key in zip(axes[0], keys):
        sub = t[t["estimand"] == key]
        drawn = [m for m in [*models, "(data)"] if m in set(sub["model"])]
        for j, m in enumerate(drawn):
            d = sub[sub["model"] == m]
            off = (j - (len(drawn) - 1) / 2) * 0.22
            ys = np.array([y[s] for s in d["setting"]]) + off
            ax.errorbar(d["change"], ys, xerr=[d["change"] - d["change_low"], d["change_high"] - d["change"]],
                        fmt="o", ms=4, lw=1, capsize=2, color=palette.get(m, "0.4"), label=m)
        ax.axvline(0, color="0.3", ls="--", lw=0.8)
        ax.set_title(estimands[key][0], fontsize=9)
        ax.set_xlabel(estimands[key][1], fontsize=9)
    if not keys:
        axes[0][0].text(0.5, 0.5, "nothing estimable", ha="center", va="center", transform=axes[0][0].transAxes)
    axes[0][0].set_yticks(range(len(rows)), rows)
    axes[0][0].invert_yaxis()
    axes[0][0].set_ylabel("knob switched on alone (scale)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=8,
                   bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(title or f"{cohort}: change from all knobs off (group − White), 95% CI", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    clear = [f"{estimands[r['estimand']][0]}, {r['setting']}, {r['model']} {r['change']:+.3f}"
             for _, r in t.iterrows() if r["change_low"] > 0 or r["change_high"] < 0]
    return describe(
        fig,
        f"{_title(fig)}. One panel per measure (x axis: its paired change from the cohort with every bias knob off, "
        "with the unit in the label); rows: the knob switched on alone, at its scale; points: models (grey: the "
        "data's own measures) with 95% confidence intervals; an interval that crosses the dashed line at 0 is no "
        "clear change.",
        f"{len(keys)} forest plot(s) side by side ({_words([estimands[k][0] for k in keys])}). Y axis: knob settings "
        f"({_words(rows, 10)}); x axes: change from all knobs off. Points per model: {_words(models + ['(data)'])}. "
        + (f"Intervals that exclude 0: {_words(clear, 10)}." if clear else "No interval excludes 0."))


def power_curves(curve: pd.DataFrame, marks: dict, title: str = "", strong: float | None = None,
                 knobs: list[str] | None = None) -> plt.Figure:
    """Chapter 08's power figure: for each knob (panel; ``knobs``, default those in ``curve``), the smallest knob
    scale each estimand detects with 80% power against the number of test stays (both axes logarithmic;
    :func:`mmlib.attribution.mde_curve`); a panel without a curve says that no measure responds clearly. Dotted
    vertical lines: the test stays of the profiles in ``marks`` (name -> stays); the dashed horizontal line at 1 is
    the knob's default size (and ``strong``, lighter, when given)."""
    knobs = list(knobs or dict.fromkeys(curve["knob"]))
    fig, axes = plt.subplots(1, max(1, len(knobs)), figsize=(3.0 * max(1, len(knobs)) + 1, 3.7), sharey=True,
                             squeeze=False)
    names = list(dict.fromkeys(curve["estimand"] + " · " + curve["model"]))
    palette = dict(zip(names, sns.color_palette("colorblind", len(names))))
    for ax, knob in zip(axes[0], knobs):
        d = curve[curve["knob"] == knob]
        for (est, model), g in d.groupby(["estimand", "model"], sort=False):
            name = f"{est} · {model}"
            ax.plot(g["test stays"], g["smallest scale"].clip(0.05, 200), color=palette[name], lw=1.5, label=name)
        if d.empty:
            ax.text(0.5, 0.5, "no measure\nresponds clearly", ha="center", va="center", fontsize=8, color="0.4",
                    transform=ax.transAxes)
        for prof, n in marks.items():
            ax.axvline(n, color="0.5", ls=":", lw=1)
            ax.text(n, 0.98, f" {prof}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="0.3")
        ax.axhline(1, color="0.3", ls="--", lw=0.8)
        if strong:
            ax.axhline(strong, color="0.6", ls="--", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(50, 100_000)
        ax.set_ylim(0.05, 200)
        ax.set_title(knob, fontsize=9)
        ax.set_xlabel("test stays")
    axes[0][0].set_ylabel("smallest detectable knob scale (×default)")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)),
                   fontsize=7, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title or "Smallest injected effect detected (80% power, two-sided 5%)", fontsize=11)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    best = []
    for knob in knobs:
        d = curve[curve["knob"] == knob].dropna(subset=["smallest scale"])
        if len(d):
            top = d[d["test stays"] == d["test stays"].max()]
            r = top.loc[top["smallest scale"].idxmin()]
            best.append(f"{knob}: {r['smallest scale']:.2g}× at {r['test stays']:,.0f} test stays "
                        f"({r['estimand']} · {r['model']})")
        else:
            best.append(f"{knob}: no measure responds clearly")
    return describe(
        fig,
        f"{_title(fig)}. One panel per bias knob: the smallest knob scale (y axis, multiples of the default size, "
        "logarithmic) that each measure detects with the stated power, against the number of test stays (x axis, "
        "logarithmic); dotted vertical lines mark the profiles' test sizes, the dashed line at 1 the knob's default "
        "size. A curve below 1 at a profile's line means that profile detects the default effect.",
        f"{len(knobs)} log-log line chart(s), one per knob ({_words(knobs)}). X axis: test stays (50 to 100,000); "
        f"y axis: smallest detectable knob scale (× default, 0.05 to 200). Lines: {_words(names, 10)}. Vertical "
        f"lines: {_words([f'{p} {n:,.0f} stays' for p, n in marks.items()])}. Lowest at the largest size: "
        f"{'; '.join(best)}.")


#: the paper's fairness gaps (max - min over groups) chapter 04 draws as modalities are added: (metric, attribute)
PAPER_GAP_PANELS = tuple((g, a) for g in ("dp_diff", "tpr_diff", "eo_diff") for a in ("race", "gender", "race_gender"))


def adding_modalities(table: pd.DataFrame, cohort: str, order, models: list[str], performance_keys,
                      every_order: bool = True, name: str | None = None) -> list[plt.Figure]:
    """Chapter 04's three figures of one cohort as modalities are added along ``order`` (a
    :class:`mmlib.train.ModalityOrder`): performance (``performance_keys``) and the paper's gaps
    (:data:`PAPER_GAP_PANELS`) of every model of ``models`` on the prefixes (:func:`metric_curves`; with
    ``every_order``, the first model along every other order as thin grey lines), then the signed gaps of the first
    model (:func:`signed_gaps`). ``name``: the cohort's display name in the titles. Show them with ``plt.show()``."""
    name = name or cohort
    seqs, every = {m: order.prefixes() for m in models}, order.all_orders() if every_order else None
    return [metric_curves(table, cohort, seqs, performance_keys, orders=every, order_model=models[0],
                          title=f"{name}: performance as modalities are added ({' → '.join(order)})"),
            metric_curves(table, cohort, seqs, PAPER_GAP_PANELS, orders=every, order_model=models[0], ncols=3,
                          title=f"{name}: the paper's fairness gaps (max − min) as modalities are added (0 = parity)"),
            signed_gaps(table, cohort, models[0], order.prefixes(),
                        title=f"{name}: signed gaps (group − White / women − men) along the order, {models[0]} model")]


def attribution_forests(table: pd.DataFrame, cohorts, estimands: dict, models: list[str]) -> list[plt.Figure]:
    """Chapter 08's attribution figure (:func:`attribution_forest`) of every cohort of ``cohorts`` (names, in order),
    titled with the cohort's display name. Show them with ``plt.show()``."""
    return [attribution_forest(table, n, estimands, models,
                               title=f"{display_name(n)}: change from all knobs off (non-White − White), 95% CI")
            for n in cohorts]


def power_figures(curve: pd.DataFrame, sizes: dict, test_share: dict, *, power: float, model: str,
                  strong: float | None = None, knobs: list[str] | None = None) -> list[plt.Figure]:
    """Chapter 08's power figure (:func:`power_curves`) of every cohort of ``test_share`` (cohort name -> test stays
    per generated patient, :func:`mmlib.attribution.test_share`): the cohort's rows of ``curve`` (whose ``cohort``
    column holds display names, :func:`mmlib.attribution.mde_curve`), with the profiles of ``sizes`` (profile ->
    ``n_patients``, ``None`` where it sets none) marked at their test stays; ``model`` names the lead model in the
    titles. Show them with ``plt.show()``."""
    figs = []
    for n, share in test_share.items():
        marks = {p: v * share for p, v in sizes.items() if v}
        figs.append(power_curves(curve[curve["cohort"] == display_name(n)], marks, strong=strong, knobs=knobs,
                                 title=f"{display_name(n)}: smallest injected effect detected with {power:.0%} power "
                                       f"({model} model; data-level measures)"))
    return figs


# --------------------------------------------------------------------------- one figure per cohort (chapters 05-07)
def _each_cohort(draw, table: pd.DataFrame, cohorts, title: str, *args, **kwargs) -> list[plt.Figure]:
    """``draw(rows of table for the cohort, *args, title=..., **kwargs)`` for every cohort of ``cohorts`` (names, in
    order); ``title`` with ``{name}`` standing for the cohort's display name."""
    return [draw(table[table["cohort"] == n], *args, title=title.format(name=display_name(n)), **kwargs)
            for n in cohorts]


#: chapter 05's panels of the one-modality protocol: AUROC and the signed race TPR, race DP and gender TPR gaps
ONE_MODALITY_PANELS = (("auroc", "overall"), ("tpr_signed", "race"), ("dp_signed", "race"), ("tpr_signed", "gender"))
#: chapter 05's panels of random against group-dependent missingness: AUROC and the signed race TPR, DP and FPR gaps
PROTOCOL_PANELS = (("auroc", "overall"), ("tpr_signed", "race"), ("dp_signed", "race"), ("fpr_signed", "race"))


def random_missingness(table: pd.DataFrame, cohorts, models: list[str], keys, paper_keys,
                       paper_gap: str) -> list[plt.Figure]:
    """Chapter 05's two figures per cohort of ``cohorts`` as modalities go missing at random (``table``: the sweep's
    rows of the random protocol; :func:`degradation_curves` of ``models``): the metrics of ``keys`` (performance and
    signed gaps), then the paper's gaps ``paper_keys`` (``paper_gap``: what they are called). Show them with
    ``plt.show()``."""
    figs = []
    for n in cohorts:
        t, name = table[table["cohort"] == n], display_name(n)
        figs += [degradation_curves(t, models, keys, ncols=4, title=f"{name}: performance and signed gaps (group − "
                                    "White / women − men) as modalities go missing at random"),
                 degradation_curves(t, models, paper_keys, ncols=3,
                                    title=f"{name}: {paper_gap}, as in the paper's Figure 3")]
    return figs


def one_modality_figures(tables: dict, models: list[str], orders: dict,
                         keys=ONE_MODALITY_PANELS) -> list[plt.Figure]:
    """Chapter 05's one-modality protocol: :func:`modality_curves` of ``models`` for every cohort of ``tables``
    (cohort name -> :func:`mmlib.missing.one_modality_table`), one column per modality of ``orders[cohort]``, the
    panels of ``keys``. Show them with ``plt.show()``."""
    return [modality_curves(t, models, orders[n], list(keys),
                            title=f"{display_name(n)}: one modality missing, the others present")
            for n, t in tables.items()]


def train_test_heatmaps(table: pd.DataFrame, cohorts, models: list[str], keys) -> list[plt.Figure]:
    """Chapter 05's train x test grids (:func:`missingness_heatmaps` of ``models``, metrics ``keys``) of every cohort
    of ``cohorts``, from the rows of the sweep ``table`` of the ``train x test`` protocol. Show them with
    ``plt.show()``."""
    grid = table[table["protocol"] == "train x test"]
    return _each_cohort(missingness_heatmaps, grid, cohorts, "{name}: train x test missingness\n(mean over seeds x "
                        "draws)", models, list(keys))


def protocol_comparison(table: pd.DataFrame, cohorts, models: list[str], keys=PROTOCOL_PANELS) -> list[plt.Figure]:
    """Chapter 05's random (solid) against group-dependent (dashed) missingness at the same average rate: for every
    cohort of ``cohorts``, :func:`degradation_curves` of ``models`` on the metrics of ``keys``, lines styled by
    protocol, from the sweep ``table``'s rows of those two protocols. Show them with ``plt.show()``."""
    both = table[table["protocol"].isin(["random", "group-dependent"])]
    return _each_cohort(degradation_curves, both, cohorts, "{name}: random (solid) against group-dependent (dashed) "
                        "missingness, same average rate", models, list(keys), style_by="protocol", ncols=4)


def weight_figures(weights: pd.DataFrame, cohorts) -> list[plt.Figure]:
    """Chapter 06's decision-layer weights (:func:`weight_distributions`, all seeds) of every cohort of ``cohorts``,
    from ``weights`` (every cohort's rows, :func:`mmlib.decision.analyse`). Show them with ``plt.show()``."""
    return _each_cohort(weight_distributions, weights, cohorts, "{name}: decision-layer weights by modality (all seeds)")


def contribution_figures(frames: dict, targets: dict) -> list[plt.Figure]:
    """Chapter 06's two figures per cohort of ``frames`` (cohort name -> per-stay contributions,
    :func:`mmlib.decision.contribution_frame`): :func:`contribution_boxes` by outcome (``targets[cohort]``: the
    outcome's name in the title), then by race group. Show them with ``plt.show()``."""
    figs = []
    for n, sub in frames.items():
        figs += [contribution_boxes(sub, "outcome", order=["negative", "positive"],
                                    title=f"{display_name(n)}: contributions by outcome ({target_label(targets[n])})"),
                 contribution_boxes(sub, "race", title=f"{display_name(n)}: contributions by race group")]
    return figs


def calibration_robustness(table: pd.DataFrame, cohorts, keys) -> list[plt.Figure]:
    """Chapter 06's robustness to random missingness of the linear-decision model against its per-modality
    calibration (:func:`degradation_curves` of ``linear`` and ``linear+calibrated``, metrics ``keys``) for every
    cohort of ``cohorts``, from the robustness sweep's ``table``. Show them with ``plt.show()``."""
    return _each_cohort(degradation_curves, table, cohorts, "{name}: baseline against per-modality calibration as "
                        "modalities go missing", ["linear", "linear+calibrated"], list(keys), ncols=3)


def flip_rate_figures(overall: pd.DataFrame, cohorts, models: list[str], orders: dict,
                      perturbations: list[str]) -> list[plt.Figure]:
    """Chapter 07's share of decisions that flip (:func:`interference_heatmaps` of ``models``, modalities of
    ``orders[cohort]`` in rows, ``perturbations`` in columns) for every cohort of ``cohorts``, from the ``overall``
    rows of the diagnostic's effects. Show them with ``plt.show()``."""
    return [interference_heatmaps(overall[overall["cohort"] == n], models, orders[n], perturbations,
                                  title=f"{display_name(n)}: share of decisions that flip when one modality is "
                                        "replaced")
            for n in cohorts]


def group_interference(effects: pd.DataFrame, cohorts, orders: dict, perturbations: list[str],
                       model: str) -> list[plt.Figure]:
    """Chapter 07's mean |Δp| by group (:func:`interference_by_group`) of ``model`` for every cohort of ``cohorts``:
    the diagnostic's ``effects`` by race group and gender, groups that are not compared (race not recorded) left
    out, modalities of ``orders[cohort]``. Show them with ``plt.show()``."""
    by = effects[effects["attribute"].isin(["race", "gender"]) & (effects["model"] == model)]
    by = by[~by["group"].map(not_compared)]
    return [interference_by_group(by[by["cohort"] == n], orders[n], perturbations,
                                  title=f"{display_name(n)}: mean |Δp| by group when one modality is replaced "
                                        f"({model} model)")
            for n in cohorts]
