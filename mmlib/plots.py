"""Figures the chapters show. Every function returns a matplotlib Figure with labelled axes and units."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .tables import rates_by_group

sns.set_theme(context="notebook", style="whitegrid")


def group_order(values) -> list:
    """Plot order of group labels: All, White, the other groups alphabetically, Unknown last."""
    return sorted(pd.unique(pd.Series(list(values)).dropna()),
                  key=lambda g: (g != "All", g == "Unknown", g != "White", str(g)))


def rates_with_ci(flags: pd.DataFrame, groups: pd.Series, title: str, ylabel: str, group_label: str,
                  labels: dict | None = None) -> plt.Figure:
    """Grouped bars of the rate of each 0/1 column in ``flags`` by group, with Wilson 95% CI error bars."""
    long = rates_by_group(flags, groups)
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
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(title=group_label, fontsize=8, title_fontsize=9, ncol=min(5, len(order_g)))
    fig.tight_layout()
    return fig


def cxr_examples(cohort, stay_ids, captions: list[str]) -> plt.Figure:
    """A row of the cohort's chest X-rays with captions (synthetic cohorts only)."""
    if not cohort.is_synthetic:
        raise ValueError("row-level content (images) is shown for synthetic cohorts only")
    fig, axes = plt.subplots(1, len(stay_ids), figsize=(2.6 * len(stay_ids), 3.0))
    for ax, sid, cap in zip(np.atleast_1d(axes), stay_ids, captions):
        ax.imshow(cohort.cxr_image(sid), cmap="gray", vmin=0, vmax=255)
        ax.set_title(cap, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def ecg_strips(cohort, stay_ids, captions: list[str], leads=("I", "II", "V1", "V5")) -> plt.Figure:
    """Selected leads of the cohort's ECGs on a 25 mm/s, 10 mm/mV style grid (synthetic cohorts only)."""
    if not cohort.is_synthetic:
        raise ValueError("row-level content (ECGs) is shown for synthetic cohorts only")
    from .data.ecg import FS, LEADS

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
    return fig


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
        ax.set_ylabel(f"{m} (95% CI)")
        ax.set_title(m)
    axes[1].legend(fontsize=8, title=hue, title_fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def embedding_map(coords: np.ndarray, colourings: dict[str, pd.Series], title: str) -> plt.Figure:
    """2-D scatter of embedded texts (e.g. PCA coordinates), one panel per colouring (label -> values)."""
    fig, axes = plt.subplots(1, len(colourings), figsize=(5.0 * len(colourings), 4.2), squeeze=False)
    for ax, (label, hue) in zip(axes[0], colourings.items()):
        sns.scatterplot(x=coords[:, 0], y=coords[:, 1], hue=hue.to_numpy(), hue_order=group_order(hue), s=6,
                        alpha=0.6, linewidth=0, palette="colorblind", ax=ax)
        ax.set_xlabel("component 1 (a.u.)")
        ax.set_ylabel("component 2 (a.u.)")
        ax.set_title(f"by {label}", fontsize=10)
        ax.legend(title=label, fontsize=7, title_fontsize=8, markerscale=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
