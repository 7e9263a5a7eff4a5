"""The findings box each analysis chapter opens with: a few plain sentences with their numbers, computed from the
same objects as the chapter's full answers (:mod:`mmlib.findings`), never typed.

A chapter displays :func:`box` in a cell tagged ``findings`` near its end, once everything it summarises has been
computed; the book (:func:`mmlib.book.stage_notebook`) moves that cell's output under the chapter's opening, so a
reader meets the answer first and the evidence after it. The sentences follow the book's rules: a signed gap is a
group's rate minus the reference group's with its 95% CI, and a difference whose interval contains 0 is "no clear
difference".

Chapters 03-07 use :func:`single_modalities`, :func:`adding_modalities`, :func:`losing_modalities`,
:func:`decision_layer` and :func:`interference`; chapter 08 :func:`lab`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .findings import (Run, clear_lead, difference_word, gap_effects, random_run, signed_change_word, signed_gap_text,
                       signed_moves)
from .schema import display_name
from .tables import fmt_change, fmt_estimate, fmt_value

TITLE = "What this chapter found"


def box(sentences, title: str = TITLE) -> str:
    """The findings box as Markdown (a Quarto callout; the Jupyter Book render translates it): ``title`` and one
    bullet per sentence."""
    items = [s for s in sentences if s]
    if not items:
        raise ValueError("box: expected at least one sentence")
    return "\n".join(["::: {.callout-important}", f"## {title}", "", *[f"- {s}" for s in items], ":::"])


def single_modalities(summary, modalities: dict, model: str) -> list[str]:
    """Chapter 03: per cohort, the most and least predictive modality alone (mean AUROC of ``model`` over
    seeds, with its 95% CI), and how many of the single modalities' signed TPR gaps (race and gender) are
    clearly different from 0. ``modalities``: ``{cohort: [modality, ...]}``."""
    out = []
    for n, mods in modalities.items():
        au = {m: summary.estimate("auroc", cohort=n, model=model, modalities=m) for m in mods}
        best, worst = max(au, key=lambda m: au[m].mean), min(au, key=lambda m: au[m].mean)
        gaps = [summary.estimate("tpr_signed", a, cohort=n, model=model, modalities=m)
                for m in mods for a in ("race", "gender")]
        finite = [g for g in gaps if np.isfinite(g.mean)]
        clear = [g for g in finite if g.ci_low > 0 or g.ci_high < 0]
        gap_text = (f"{len(clear)} of {len(finite)} signed TPR gaps of the single modalities (race and gender) are "
                    "clearly different from 0" if finite else
                    "no signed TPR gap could be estimated (no group large enough to compare)")
        out.append(f"**{display_name(n)}**: alone, **{best}** predicts best (AUROC {fmt_estimate(*au[best][:3])}) "
                   f"and **{worst}** least ({fmt_estimate(*au[worst][:3])}); {gap_text}.")
    return out


def adding_modalities(summary, orders: dict, model: str) -> list[str]:
    """Chapter 04 (RQ1): per cohort, the AUROC of all modalities against the best single modality (chosen by
    AUROC) with the paired 95% CI of the gain, and the signed race and gender TPR gaps with all modalities.
    ``orders``: ``{cohort: ModalityOrder}``; single modalities that were not trained are skipped."""
    out = []
    for n, order in orders.items():
        have = set(summary.select("auroc", cohort=n, model=model)["modalities"])
        singles = [m for m in order if m in have]
        full = order.full
        if full not in have:
            continue
        head = f"**{display_name(n)}**: "
        if singles:
            best = summary.best("auroc", singles, cohort=n, model=model)
            gain = summary.difference(n, (model, best), (model, full), ("auroc", "overall", "all"))
            au = summary.estimate("auroc", cohort=n, model=model, modalities=full)
            head += (f"all modalities reach AUROC {au.mean:.3f} against {au.mean - gain.change:.3f} for the best "
                     f"single one, **{best}** ({fmt_change(*gain[:3])}: "
                     + difference_word(gain, "adding modalities clearly helps", "adding modalities clearly hurts")
                     + "); ")
        gaps = [signed_gap_text(summary, "tpr_signed", a, cohort=n, model=model, modalities=full)
                if np.isfinite(summary.estimate("tpr_signed", a, cohort=n, model=model, modalities=full).mean) else
                f"signed TPR gap by {a} is not estimable (no group large enough to compare)"
                for a in ("race", "gender")]
        out.append(head + "with all modalities the " + "; the ".join(gaps) + ".")
    return out


def losing_modalities(sweep, cohorts, models, rates, flags: dict | None = None) -> list[str]:
    """Chapter 05 (RQ2): per cohort, the AUROC each model loses from nothing missing to the largest random
    missingness rate (paired 95% CI), how many signed gaps of the first model clearly widen at any rate of the
    random protocol, and the change of its signed race TPR gap under group-dependent against random missingness
    at the largest rate both protocols share. ``sweep``: a :class:`mmlib.missing.Sweep`."""
    models, flags = list(models), flags or {}
    lead, top = models[0], max(rates)
    out = []
    for n in cohorts:
        zero = {m: Run.of_sweep(sweep, flags.get(n), **random_run(n, m, 0.0)) for m in models}
        loss = []
        for m in models:
            c = zero[m].change(Run.of_sweep(sweep, flags.get(n), **random_run(n, m, top)), ("auroc", "overall", "all"))
            loss.append(f"`{m}` {fmt_change(*c)}")
        wider = set()
        for p in rates:
            if p == 0:
                continue
            wider.update(signed_moves(zero[lead], Run.of_sweep(sweep, flags.get(n), **random_run(n, lead, p)))[1])
        s = (f"**{display_name(n)}**: from nothing missing to p = {top:g} missing at random, AUROC changes by "
             + ", ".join(loss) + f"; {len(wider)} signed gap{'s' if len(wider) != 1 else ''} of `{lead}` clearly "
             f"widen{'s' if len(wider) == 1 else ''} at some rate" + (f" ({', '.join(sorted(wider))})" if wider else "")
             + ".")
        shared = [p for p in rates if p > 0 and sweep.has(**dict(random_run(n, lead, p), protocol="group-dependent"))]
        if shared:
            p = max(shared)
            r = Run.of_sweep(sweep, flags.get(n), **random_run(n, lead, p))
            g = Run.of_sweep(sweep, flags.get(n), **dict(random_run(n, lead, p), protocol="group-dependent"))
            for grp, ref, e in r.signed("tpr_signed", "race"):
                c = r.signed_change(g, "tpr_signed", "race", grp)
                s += (f" Who is missing: at p = {p:g}, missingness that follows the cohort's own unequal access "
                      f"instead of random missingness changes the race TPR gap ({grp} − {ref}, {fmt_value(e[0], signed=True)} at "
                      f"random) by {fmt_change(*c)}: {signed_change_word(e[0], c)}.")
                break
        out.append(s)
    return out


def decision_layer(layers: dict, orders: dict, summary) -> list[str]:
    """Chapter 06: per cohort, whether one modality clearly has the largest share of the decision layer's weight
    norm (:func:`mmlib.findings.clear_lead`), and what per-modality calibration does: its paired AUROC change and
    which gaps or groups it clearly hurts (:func:`mmlib.findings.gap_effects`). ``layers``: ``{cohort:
    mmlib.decision.DecisionLayer}``; ``summary`` holds ``linear`` and ``linear+calibrated`` on all modalities."""
    out = []
    for n, order in orders.items():
        lead = clear_lead(layers[n].per_seed)
        share = layers[n].means(order)["share"]
        first = (f"**{display_name(n)}**: **{lead['modality']}** has the largest share of the decision layer's weight, "
                 f"clearly ({100 * share[lead['modality']]:.1f}%)" if lead["clear"] else
                 f"**{display_name(n)}**: no modality clearly dominates the decision layer (shares "
                 + ", ".join(f"{m} {100 * v:.1f}%" for m, v in share.items()) + ")")
        eff = gap_effects(*(Run.of_summary(summary, n, m, order.full) for m in ("linear", "linear+calibrated")))
        au = eff[eff.kind == "performance"].iloc[0]
        bad = eff[eff.hurts]
        out.append(first + f"; per-modality calibration changes AUROC by "
                   f"{fmt_change(au.change, au.ci_low, au.ci_high)} and "
                   + (f"**hurts**: {', '.join(bad['what'])} (paired 95% CIs excluding 0)." if len(bad) else
                      "makes no gap clearly wider and lowers no group's TPR clearly."))
    return out


def interference(effects: pd.DataFrame, gap_changes: pd.DataFrame, cohorts, model: str) -> list[str]:
    """Chapter 07: per cohort, for ``model``: the modality whose switch to another stay's content flips the most
    decisions, the mean flip rate under blank or irrelevant content (interference) before and after consistency
    fine-tuning, and what the fine-tuning clearly hurts (``gap_changes``:
    :func:`mmlib.findings.mitigation_gap_changes`). ``effects`` holds the original model and ``<model>+consistency``."""
    out = []
    o = effects[effects.attribute == "overall"]
    for n in cohorts:
        s = o[(o.cohort == n) & (o.model == model)]
        sw = s[s.perturbation == "switch"].set_index("modality")["flip_rate"]
        noise = s[s.perturbation != "switch"]["flip_rate"].mean()
        t = o[(o.cohort == n) & (o.model == f"{model}+consistency") & (o.perturbation != "switch")]["flip_rate"].mean()
        text = f"**{display_name(n)}**, `{model}`: "
        if len(sw):
            text += f"switching **{sw.idxmax()}** for another stay's flips the most decisions ({100 * sw.max():.1f}%); "
        text += f"blank or irrelevant content flips {100 * noise:.1f}% of decisions on average"
        if np.isfinite(t):
            text += f", {100 * t:.1f}% after consistency fine-tuning"
        g = gap_changes[(gap_changes.cohort == display_name(n)) & (gap_changes.model == model)]
        if len(g):
            bad = g[g.hurts]
            text += ("; the fine-tuning **hurts**: " + ", ".join(bad["what"]) + " (paired 95% CIs excluding 0)"
                     if len(bad) else "; the fine-tuning makes no gap clearly wider and lowers no group's TPR clearly")
        out.append(text + ".")
    return out


def lab(recovery: pd.DataFrame, null: pd.DataFrame, strong: float) -> list[str]:
    """Chapter 08: with every knob off, how many signed intervals cover 0; then per cohort, which knobs are
    recovered at the strong setting (the injected sign with a 95% CI excluding 0, :func:`mmlib.attribution.
    recovery_table`) and by what (the data, the structured probe, a model), and which are not.
    ``recovery`` and ``null``: :func:`mmlib.attribution.recovery_table` and :func:`~mmlib.attribution.null_table`."""
    out = []
    judged = null[null["covers 0"].isin(["yes", "no"])] if len(null) else null
    if len(judged):
        out.append(f"With every knob off, {int((judged['covers 0'] == 'yes').sum())} of {len(judged)} signed "
                   "estimands have a 95% interval that covers 0 (about 95% would by chance).")
    if not len(recovery):
        return out or ["No race group was large enough to measure any knob's effect at this cohort size."]
    for n in dict.fromkeys(recovery["cohort"]):
        r = recovery[recovery["cohort"] == n]
        found, missed, unmeasured = [], [], []
        for knob in dict.fromkeys(r["knob"]):
            k = r[r["knob"] == knob]
            yes = k[k["recovered"] == "yes"]
            if (k["recovered"] == "n/a").all():
                unmeasured.append(f"`{knob}`")
            elif len(yes):
                by = ", ".join("the data" if m == "(data)" else str(m) for m in yes["model"])
                found.append(f"`{knob}` (by {by})")
            else:
                missed.append(f"`{knob}`")
        said = ([f"recovered: {'; '.join(found)}" if found else "no knob recovered"] if found or missed else [])
        said += ([f"not recovered: {', '.join(missed)}"] if missed else [])
        said += ([f"not measurable here (no race group large enough, or no such data): {', '.join(unmeasured)}"]
                 if unmeasured else [])
        out.append(f"**{n}**, each knob at ×{strong:g}: " + "; ".join(said) + ".")
    return out


__all__ = ["TITLE", "box", "single_modalities", "adding_modalities", "losing_modalities", "decision_layer",
           "interference", "lab"]
