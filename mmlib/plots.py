"""Figures the chapters show. Every function returns a matplotlib Figure with labelled axes and units."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .tables import rates_by_group

sns.set_theme(context="notebook", style="whitegrid")


def rates_with_ci(flags: pd.DataFrame, groups: pd.Series, title: str, ylabel: str, group_label: str,
                  labels: dict | None = None) -> plt.Figure:
    """Grouped bars of the rate of each 0/1 column in ``flags`` by group, with Wilson 95% CI error bars."""
    long = rates_by_group(flags, groups)
    long["variable"] = long["variable"].map(lambda v: (labels or {}).get(v, v))
    order_g = sorted(pd.unique(long["group"]), key=lambda g: (g == "Unknown", g != "White", str(g)))
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
