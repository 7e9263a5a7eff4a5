"""The book's computed sentences and result tables, from the summary tables (chapters 03-07).

Every statement a chapter prints about its results is built here from its tables, so that re-running a
chapter with other parameters rewrites it, and so that a reader who wants to change how a statement is
reached finds it in one documented, tested function. Numbers are formatted by
:func:`mmlib.tables.fmt_estimate` (an estimate and its interval) and :func:`mmlib.tables.fmt_change` (a
paired change and its interval). A change whose interval contains 0 is called "no clear change" in chapter 04's
step tables and "no clear difference" in chapters 05-07 (:func:`difference_word`).

Chapters 05-07 state the **signed** gaps first (a group's rate minus the reference group's, White / men; for
more than two groups each group minus the reference and the worst group), each with its interval, read from a
:class:`Run` (a summary, a sweep condition or an interference diagnosis). The paper's gaps (max − min, never
below 0, biased upwards when groups do not differ) are kept where a table reproduces the paper's, labelled
:data:`PAPER_GAP`. A mitigation's effect on every gap and every group's TPR is stated by :func:`gap_effects`,
which says "it hurts" wherever a gap clearly widens or a group's TPR clearly falls.

- chapter 03: :func:`single_modality_answer`
- chapter 04: :func:`step_table`, :func:`order_table`, :func:`direction`, :func:`rq1_answer`
- chapter 05: :func:`degradation_areas`, :func:`modality_harm`, :func:`group_factor_note`, :func:`rq2_answer`
- chapter 06: :func:`clear_lead`, :func:`remedy_effects`, :func:`decision_layer_answer`
- chapter 07: :func:`change_table`, :func:`mitigation_table`, :func:`mitigation_gap_changes`, :func:`group_gap_table`,
  :func:`control_table`, :func:`interference_answer`
- chapters 05-07: :class:`Run`, :func:`signed_gap_items`, :func:`gap_effects`, :func:`gap_effects_text`,
  :func:`area_change`, :func:`label`
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import ATTRIBUTES, REFERENCE, Change, ci95, group_order, long_label, metric_label, not_compared
from .missing import curve_area
from .schema import display_name
from .tables import fmt_change, fmt_estimate, fmt_value, interval_cells

#: the metrics chapter 04 follows step by step: (metric, attribute, group)
STEP_KEYS = (("auroc", "overall", "all"), ("f1", "overall", "all"), ("dp_diff", "race", "gap"),
             ("tpr_diff", "race", "gap"), ("dp_diff", "gender", "gap"), ("tpr_diff", "gender", "gap"))
#: performance and fairness keys of the missingness sweeps (metric, attribute)
PERFORMANCE_KEYS = (("auroc", "overall"), ("f1", "overall"), ("auprc", "overall"), ("balanced_accuracy", "overall"))
GAP_KEYS = tuple((g, a) for a in ATTRIBUTES for g in ("dp_diff", "tpr_diff", "eo_diff"))
#: chapter 04's every-order column: all modalities minus the one single modality with the highest AUROC, the same
#: modality for every metric (so for a gap it compares with the most predictive modality, not the fairest)
BEST_SINGLE_COLUMN = "full set minus the single modality best by AUROC (same modality for every metric; mean)"
#: the modality that column compares with, and the paired 95% CI of the difference
BEST_SINGLE_NAME = "single modality best by AUROC"
BEST_SINGLE_CI = "full set minus it: paired 95% CI"


def _plural(k: int, one: str, many: str) -> str:
    return one if k == 1 else many


def group_word(group: str) -> str:
    """A group label as a reader says it: ``F`` -> women, ``M`` -> men, ``White`` -> White stays."""
    return {"F": "women", "M": "men"}.get(group, f"{group} stays")


def signed_gap_text(summary, metric: str, attribute: str, **where) -> str:
    """One signed gap (:data:`mmlib.metrics.SIGNED`) in words: what it compares, the estimate with its 95% CI
    and whether it is a clear difference (the CI excludes 0) -- e.g. ``signed TPR gap by race (non-White −
    White) -0.031 [-0.082, +0.020]: no clear difference``."""
    return signed_gap_item(summary, metric, attribute, **where)[0]


def signed_gap_item(summary, metric: str, attribute: str, **where) -> tuple[str, str]:
    """:func:`signed_gap_text` and its verdict, for :func:`clear_then_counted` (chapter 04's answer)."""
    from .metrics import REFERENCE, SHORT_LABELS

    e = summary.estimate(metric, attribute, **where)
    ref = REFERENCE[attribute]
    rows = summary.table[(summary.table["metric"] == "tpr") & (summary.table["attribute"] == attribute)]
    for col, value in where.items():
        rows = rows[rows[col] == value]
    groups = [g for g in rows.loc[rows["flag"] == "", "group"].unique() if g != ref]
    who = (f"{groups[0]} − {ref}" if len(groups) == 1 else f"largest difference from {ref}")
    who = {"F − M": "women − men"}.get(who, who)
    verdict = ("not estimable" if not np.isfinite(e.mean) else
               "no clear difference" if e.ci_low <= 0 <= e.ci_high else
               "the group is clearly below the reference" if e.ci_high < 0 else "the group is clearly above the reference")
    return f"{SHORT_LABELS[metric]} by {attribute} ({who}) {fmt_change(e.mean, e.ci_low, e.ci_high)}: {verdict}", verdict


# ------------------------------------------------------------------------------------------ chapter 03
def single_modality_answer(summary, modalities: dict, models) -> str:
    """Chapter 03's answer: per cohort, the most and least predictive modality alone (AUROC of the first of
    ``models``) and whether their intervals overlap, where the race and gender TPR gaps are largest and
    smallest, and whether the logistic regression (when trained) ranks the same modality first.
    ``modalities``: ``{cohort: [modality, ...]}``."""
    lead = list(models)[0]
    lines = []
    for n, mods in modalities.items():
        au = {m: summary.estimate("auroc", cohort=n, model=lead, modalities=m) for m in mods}
        best, worst = max(au, key=lambda m: au[m].mean), min(au, key=lambda m: au[m].mean)
        overlap = au[best].ci_low <= au[worst].ci_high
        lines.append(f"**{display_name(n)}.** The most predictive modality alone (`{lead}` model) is **{best}** "
                     f"(AUROC {fmt_estimate(*au[best][:3])}), the least is **{worst}** "
                     f"({fmt_estimate(*au[worst][:3])})" + ("; their intervals overlap." if overlap else "."))
        for attr in ("race", "gender"):
            g = {m: summary.estimate("tpr_diff", attr, cohort=n, model=lead, modalities=m) for m in mods}
            hi, lo = max(g, key=lambda m: g[m].mean), min(g, key=lambda m: g[m].mean)
            lines.append(f"- {attr}: the paper's TPR gap (max − min) is largest with **{hi}** "
                         f"({fmt_estimate(*g[hi][:3])}) and smallest with **{lo}** ({fmt_estimate(*g[lo][:3])}); "
                         f"with **{best}**, the " + signed_gap_text(summary, "tpr_signed", attr, cohort=n, model=lead,
                                                                      modalities=best) + ".")
        if "logreg" in models and lead != "logreg":
            lr_best = summary.best("auroc", mods, cohort=n, model="logreg")
            lines.append(f"- The logistic regression ranks **{lr_best}** first "
                         + ("too." if lr_best == best else f"(the `{lead}` model ranks {best} first)."))
    lines.append("\nThe paper found *Arrival* the strongest single modality on MIMIC-Eye and the X-ray the weakest "
                 "(AUROC 0.513). Gap intervals are wide: with a few hundred test stays per group, a gap of a few "
                 "points is within sampling noise; chapter 04 compares modality sets on the *same* resamples "
                 "(paired), which is much tighter than comparing these intervals by eye.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ chapter 04
def step_table(summary, cohort: str, model: str, order, keys=STEP_KEYS) -> pd.DataFrame:
    """Chapter 04's step table: for each metric of ``keys`` and each step of ``order`` (a
    :class:`mmlib.train.ModalityOrder`), the mean before and after adding the modality, the paired change,
    its 95% CI and the verdict. Columns ``metric, added, before, after, change, ci_low, ci_high, verdict``."""
    rows = []
    for key in keys:
        st = summary.steps(cohort, model, order.prefixes(), key)
        st.insert(0, "metric", long_label(key[0], key[1]))
        rows.append(st)
    out = pd.concat(rows, ignore_index=True)
    out["added"] = out["to"].str.split("+").str[-1]
    return out[["metric", "added", "from", "to", "before", "after", "change", "ci_low", "ci_high", "verdict"]]


def order_table(summary, cohort: str, model: str, order, keys=STEP_KEYS) -> pd.DataFrame:
    """Chapter 04's every-order table: for each metric, over every order of adding the modalities of
    ``order``, in how many the mean rose (fell) at every step, in how many some step was a clear rise
    (fall), and the all-modality mean minus the mean of the best single modality -- chosen once, by AUROC, and
    the same for every metric, so that for a gap the column compares with the most predictive modality, not the
    fairest (nor, for a gap, the worst) -- with the modality's name and the paired 95% CI of the difference."""
    rows = []
    best = summary.best("auroc", list(order), cohort=cohort, model=model)
    for key in keys:
        per = [summary.steps(cohort, model, seq, key) for seq in order.all_orders()]
        c = summary.difference(cohort, (model, best), (model, order.full), key)
        rows.append({"metric": long_label(key[0], key[1]), "orders": len(per),
                     "mean rises at every step": sum((p["change"] > 0).all() for p in per),
                     "mean falls at every step": sum((p["change"] < 0).all() for p in per),
                     "some clear rise": sum((p["verdict"] == "rises").any() for p in per),
                     "some clear fall": sum((p["verdict"] == "falls").any() for p in per),
                     BEST_SINGLE_NAME: best, BEST_SINGLE_COLUMN: c.change,
                     BEST_SINGLE_CI: f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]"})
    return pd.DataFrame(rows).set_index("metric")


def direction(changes) -> str:
    """How a sequence of step changes moves: ``never falls``, ``never rises`` or ``changes direction k
    times`` (zero changes are skipped when counting reversals; changes that are not finite are skipped too, and a
    sequence with none finite "cannot be followed")."""
    changes = [c for c in changes if np.isfinite(c)]  # a step whose gap is not estimable says nothing
    if not changes:
        return "cannot be followed (no step is estimable)"
    signs = [np.sign(c) for c in changes if c != 0]
    flips = sum(a != b for a, b in zip(signs[:-1], signs[1:]))
    if all(c >= 0 for c in changes):
        return "never falls"
    if all(c <= 0 for c in changes):
        return "never rises"
    return f"changes direction {flips} {_plural(flips, 'time', 'times')}"


def _path(summary, cohort, model, order, metric, attr) -> str:
    """A metric's mean along the order's prefixes, ``0.712 → 0.745``; a prefix where it is not estimable reads
    "n/a", and a path with no estimable prefix says so in words."""
    means = [summary.estimate(metric, attr, cohort=cohort, model=model, modalities=lab).mean for lab in order.prefixes()]
    if not np.isfinite(means).any():
        return "not estimable (no group large enough to compare)"
    return " → ".join(f"{m:.3f}" if np.isfinite(m) else "n/a" for m in means)


def rq1_answer(summary, orders: dict, step_tables: dict, order_tables: dict, models) -> str:
    """Chapter 04's answer to RQ1, per cohort: the AUROC path of the first model along the default order and
    how many steps clearly rise or fall; each race and gender DP and TPR gap's path, its direction and its clear
    steps' paired changes, the others counted (:func:`clear_then_counted`; the step table holds them all); over every
    order (when trained), how often AUROC and the race TPR gap moved
    monotonically and whether all modalities beat the best single one; and every model's all-modality AUROC
    and race TPR gap."""
    models = list(models)
    lead = models[0]
    lines = []
    for n, order in orders.items():
        st = step_tables[n]
        au = st[st.metric == long_label("auroc")]
        falls = au[au["change"] < 0]
        up, down = int((au["verdict"] == "rises").sum()), int((au["verdict"] == "falls").sum())
        lines.append(f"**{display_name(n)}** ({' → '.join(order)}), model `{lead}`. AUROC "
                     f"{_path(summary, n, lead, order, 'auroc', 'overall')}: "
                     + ("the mean never falls" if falls.empty else
                        f"the mean falls at {len(falls)} of {len(au)} steps (by up to {-falls['change'].min():.3f})")
                     + f"; {up} {_plural(up, 'step is', 'steps are')} a clear rise and {down} a clear fall "
                     "(paired 95% CI excluding zero).")
        for attr in ("race", "gender"):
            for g in ("dp_diff", "tpr_diff"):
                s = st[st.metric == long_label(g, attr)]
                if not np.isfinite(s["change"].to_numpy(dtype=float)).any():
                    lines.append(f"- {long_label(g)} by {attr}: not estimable (no group large enough to compare).")
                    continue
                moves = clear_then_counted([(f"+{r.added} {fmt_change(r.change, r.ci_low, r.ci_high)} ({r.verdict})", r.verdict)
                                            for r in s.itertuples()], "steps")
                lines.append(f"- {long_label(g)} by {attr}: {_path(summary, n, lead, order, g, attr)}; it "
                             f"{direction(s['change'])} (steps: {moves}).")
        if n in order_tables:
            o = order_tables[n]
            tpr = long_label("tpr_diff", "race")
            best = o.loc[long_label("auroc"), BEST_SINGLE_NAME]
            gain = summary.difference(n, (lead, best), (lead, order.full), ("auroc", "overall", "all"))
            word = difference_word(gain)
            lines.append(f"- Over all {int(o['orders'].iloc[0])} orders, the mean AUROC rose at every step in "
                         f"{int(o.loc[long_label('auroc'), 'mean rises at every step'])}, and a clear fall occurred in "
                         f"{int(o.loc[long_label('auroc'), 'some clear fall'])}; the race TPR gap rose at every step in "
                         f"{int(o.loc[tpr, 'mean rises at every step'])} orders and fell at every step in "
                         f"{int(o.loc[tpr, 'mean falls at every step'])}. All modalities together "
                         + (f"beat the best single modality ({best}, by AUROC) by {fmt_change(*gain)} AUROC (paired)."
                            if word == "rises" else
                            f"do **not** clearly beat the best single modality ({best}, by AUROC): {fmt_change(*gain)} "
                            "AUROC (paired), no clear difference." if word == "no clear difference" else
                            f"are **worse** than the best single modality ({best}, by AUROC): {fmt_change(*gain)} AUROC "
                            "(paired)." if word == "falls" else
                            f"against the best single modality ({best}, by AUROC): {fmt_change(*gain)} AUROC."))
        lines.append(f"- With all modalities, `{lead}`: " + clear_then_counted(
            [signed_gap_item(summary, g, a, cohort=n, model=lead, modalities=order.full)
             for a in ("race", "gender") for g in ("tpr_signed", "dp_signed")], "signed gaps") + ".")
        full = {"cohort": n, "model": lead, "modalities": order.full}
        shown = [f"{metric_label(k, a)} {fmt_estimate(*summary.estimate(k, a, **full)[:3])}"
                 for a in ("race", "gender") for k in ("auroc_worst", "ece_worst") if len(summary.select(k, a, **full))]
        if shown:
            lines.append("- Worst group, all modalities: " + "; ".join(shown)
                         + f" (overall AUROC {fmt_estimate(*summary.estimate('auroc', **full)[:3])}).")
        if len(models) > 1:
            lines.append("- With all modalities: " + "; ".join(
                f"`{m}` AUROC {fmt_value(summary.estimate('auroc', cohort=n, model=m, modalities=order.full).mean)}, "
                f"signed race TPR gap {fmt_value(summary.estimate('tpr_signed', 'race', cohort=n, model=m, modalities=order.full).mean, signed=True)}"
                for m in models) + ".")
        lines.append("")
    lines.append("Signed gaps are a group's rate minus the reference group's (White, men): unlike the paper's max − min "
                 "gaps, which can never be below 0 and so are biased upwards when groups do not differ, their interval "
                 "covers 0 when there is no difference.\n")
    lines.append("The paper reports that adding modalities raises performance consistently while fairness fluctuates. "
                 "The lines above say, for these cohorts and this seed set, how much of that holds: a mean that moves "
                 "by less than its paired CI is not evidence of a change either way.")
    return "\n".join(lines)


def truth_table(recorded, truth, shifts: pd.DataFrame, cohort: str, models, full: str) -> pd.DataFrame:
    """Chapter 04 on a synthetic cohort: every model with all modalities (``full``) measured against the
    recorded label (``recorded``, a :class:`mmlib.metrics.Summary`) and against the truth (``truth``: the same
    predictions scored against the label without label bias), side by side -- AUROC and the signed race and
    gender TPR gaps -- and the race shift in predicted risk at equal true need (``shifts``, from
    :func:`mmlib.metrics.risk_shift_table`), each with its 95% CI."""
    rows = []
    for m in models:
        where = {"cohort": cohort, "model": m, "modalities": full}
        row = {"model": m}
        for label, s in (("recorded label", recorded), ("truth", truth)):
            row[f"AUROC ({label})"] = fmt_estimate(*s.estimate("auroc", **where)[:3])
            for a in ("race", "gender"):
                row[f"signed TPR gap, {a} ({label})"] = fmt_change(*s.estimate("tpr_signed", a, **where)[:3])
        sh = shifts[(shifts.cohort == cohort) & (shifts.model == m) & (shifts.modalities == full)]
        for r in sh.itertuples():
            row[f"risk shift at equal need, {r.group} − {r.reference} (log-odds)"] = fmt_change(r.shift, r.ci_low, r.ci_high)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def against_truth(summary, predictions: pd.DataFrame, data: dict, orders: dict, models, *, n_boot: int = 200,
                  min_group: int = 30, min_events: int = 10, n_jobs: int = 1) -> tuple[dict, str]:
    """Chapter 04's comparison with the latent truth: the all-modality predictions of every cohort that has a
    truth (``data``: ``{cohort: FusionData}``) scored against it (:func:`mmlib.train.against_truth`,
    :func:`mmlib.metrics.summarise`), the race risk shift at equal need (:func:`mmlib.metrics.risk_shift_table`),
    then :func:`truth_table` per cohort and :func:`truth_answer`. Returns ``({cohort: table}, answer)``; no
    tables and a sentence saying so when no cohort has a truth (real data)."""
    from .metrics import risk_shift_table, summarise
    from .train import against_truth as rescored

    full = predictions[predictions["modalities"].isin([o.full for o in orders.values()])]
    truth_preds = rescored(full, data)
    if not len(truth_preds):
        return {}, "No cohort of this build has a latent truth (real data): nothing to compare against."
    truth = summarise(truth_preds, n_boot=n_boot, seed=0, min_group=min_group, min_events=min_events,
                      n_jobs=n_jobs, progress=False)
    shifts = risk_shift_table(truth_preds, "race", n_boot=n_boot)
    fulls = {n: orders[n].full for n in data if data[n].truth is not None}
    tables = {n: truth_table(summary, truth, shifts, n, models, f) for n, f in fulls.items()}
    return tables, truth_answer(summary, truth, shifts, fulls, models)


def truth_answer(recorded, truth, shifts: pd.DataFrame, fulls: dict, models) -> str:
    """Chapter 04's reading of :func:`truth_table`, per synthetic cohort (``fulls``: ``{cohort: full label}``):
    how the first model's signed race TPR gap reads against the recorded label and against the truth, and
    whether its risk at equal need differs between race groups (a shift whose CI excludes 0)."""
    lead = list(models)[0]
    lines = []
    for n, full in fulls.items():
        where = {"cohort": n, "model": lead, "modalities": full}
        rec, tru = (s.estimate("tpr_signed", "race", **where) for s in (recorded, truth))
        sh = shifts[(shifts.cohort == n) & (shifts.model == lead) & (shifts.modalities == full)]
        parts = [f"**{display_name(n)}**, `{lead}` with all modalities: signed race TPR gap "
                 f"{fmt_change(*rec[:3])} against the recorded label, {fmt_change(*tru[:3])} against the truth"]
        for r in sh.itertuples():
            verdict = ("no clear shift" if r.ci_low <= 0 <= r.ci_high else
                       "a clear shift down" if r.ci_high < 0 else "a clear shift up")
            parts.append(f"at equal true need, {r.group} stays get log-odds {fmt_change(r.shift, r.ci_low, r.ci_high)} "
                         f"against {r.reference} stays ({verdict})")
        lines.append("; ".join(parts) + ".")
    lines.append("\nThe recorded label carries the label bias the simulator put in; the truth does not. A risk "
                 "shift at equal need is what the bias knobs inject into the inputs (e.g. under-triage), and can "
                 "be clear while a thresholded TPR gap on a few hundred stays is not.")
    return "\n".join(lines)


# ------------------------------------------------------------------- signed gaps of a run (chapters 05-07)
#: the signed gaps chapters 05-07 state first: (metric, attribute)
SIGNED_KEYS = (("tpr_signed", "race"), ("dp_signed", "race"), ("tpr_signed", "gender"), ("dp_signed", "gender"))
#: the paper's gaps (max − min) whose changes chapters 06-07 report next to the signed ones
PAPER_GAP_KEYS = (("tpr_diff", "race"), ("dp_diff", "race"), ("eo_diff", "race"), ("tpr_diff", "gender"),
                  ("dp_diff", "gender"), ("eo_diff", "gender"))
#: what the paper's gaps are called wherever they are shown
PAPER_GAP = "the paper's gap (max − min)"
#: the per-group rate behind each signed gap
RATE_OF = {"tpr_signed": "tpr", "dp_signed": "selection_rate", "fpr_signed": "fpr"}
_RATE_WORD = {"tpr_signed": "TPR", "dp_signed": "DP", "fpr_signed": "FPR", "tpr_diff": "TPR", "dp_diff": "DP",
              "eo_diff": "EO"}
#: a modality's lead in weight share below this (share of the total weight norm) is never called a lead
MIN_LEAD = 0.01


def label(metric: str, attribute: str = "overall") -> str:
    """Table label of a (metric, attribute) pair in chapters 05-07: :func:`mmlib.metrics.metric_label`, with the
    paper's gaps (``dp_diff``, ``tpr_diff``, ``eo_diff``, ``dp_ratio``) marked as :data:`PAPER_GAP`."""
    from .metrics import GAPS

    if metric in GAPS:
        return f"{metric_label(metric, attribute)}, {PAPER_GAP}"
    return metric_label(metric, attribute)


def difference_word(change, up: str = "rises", down: str = "falls") -> str:
    """A paired difference in words: ``up`` / ``down`` when its 95% CI excludes 0, else ``no clear
    difference`` (``not estimable`` without an interval). Every change in chapters 05-07 is read with it."""
    c, lo, hi = change[:3]
    if not (np.isfinite(c) and np.isfinite(lo) and np.isfinite(hi)):
        return "not estimable"
    return up if lo > 0 else down if hi < 0 else "no clear difference"


def signed_change_word(before: float, change) -> str:
    """How a paired change moves a signed gap whose value was ``before``: ``no clear difference`` when the
    change's CI contains 0; else ``widens`` or ``narrows`` by whether the gap ends larger or smaller in size
    (``widens, reversing its sign`` when it also crosses 0)."""
    word = difference_word(change)
    if word in ("no clear difference", "not estimable"):
        return word
    after = before + change[0]
    if abs(after) <= abs(before):
        return "narrows"
    return "widens, reversing its sign" if before * after < 0 else "widens"


#: The verdicts that are not a clear difference: :func:`difference_word`'s, and :class:`mmlib.metrics.Change`'s for
#: chapter 04's steps.
UNCLEAR = ("no clear difference", "no clear change", "not estimable")


def clear_then_counted(items, noun: str) -> str:
    """Changes or gaps in words, as an answer states them: each clear one in full (its text, with its interval and
    verdict), the others counted -- ``race TPR gap (non-White − White) -0.018 [-0.034, -0.001] (narrows); no clear
    difference in the other 3 signed gaps`` -- so an answer says what is clear and how much is not, and the chapter's
    tables and figures hold every value. ``items``: ``(text, verdict)`` pairs, a verdict in :data:`UNCLEAR` counting
    as not clear (a single item is stated in full, whatever its verdict); ``noun``: what the items are, plural
    (``signed gaps``). Chapters 04-07's answers (:func:`rq1_answer`, :func:`rq2_answer`, :func:`gap_effects_text`)."""
    items = list(items)
    if len(items) == 1:
        return items[0][0]
    clear = [t for t, v in items if v not in UNCLEAR]
    parts = list(clear)
    for word in dict.fromkeys(v for _, v in items if v in UNCLEAR):
        k = sum(v == word for _, v in items)
        if word == "not estimable":
            parts.append(f"{k} of the {noun} not estimable" if k < len(items) else "not estimable")
        elif k == len(items):
            parts.append(f"{word} in any of the {k} {noun}")
        else:
            parts.append(f"{word} in the other " + (f"{k} {noun}" if k > 1 else "one")
                         if len(clear) + k == len(items) else f"{word} in {k} of the {noun}")
    return "; ".join(parts)


def gap_change_text(change: Change) -> str:
    """A paired change of one of the paper's gaps (max − min, never negative) in words: ``widens`` /
    ``narrows`` when its CI excludes 0, else ``no clear difference``, with the change and its interval."""
    return f"{difference_word(change, 'widens', 'narrows')}, {fmt_change(*change)}"


def gap_name(metric: str, attribute: str, group: str | None = None, reference: str | None = None) -> str:
    """A gap as a reader says it: ``race TPR gap (non-White − White)``, ``gender DP gap (women − men)``, or the
    paper's ``race TPR gap (max − min)``."""
    if metric in RATE_OF:
        who = {"F − M": "women − men"}.get(f"{group} − {reference}", f"{group} − {reference}")
        return f"{attribute} {_RATE_WORD[metric]} gap ({who})"
    return f"{attribute} {_RATE_WORD.get(metric, metric)} gap (max − min)"


class Run:
    """One evaluated model or condition as the findings of chapters 05-07 read it: its rows (``metric,
    attribute, group, mean, ci_low, ci_high``, optionally ``flag``), their bootstrap ``replicates``
    (``{(metric, attribute, group): (B,) array}``) and which groups are compared (``flags``, as
    :func:`mmlib.metrics.estimable` gives them; without them, every group but ``Unknown`` and flagged rows).
    Two runs on the same test stays and resamples give paired changes (:meth:`change`).

    Built from a :class:`mmlib.metrics.Summary` (:meth:`of_summary`, chapter 06), a condition of a
    :class:`mmlib.missing.Sweep` (:meth:`of_sweep`, chapters 05-06) or a :class:`mmlib.interference.Diagnosis`
    (:meth:`of_diagnosis`, chapter 07)."""

    def __init__(self, rows: pd.DataFrame, replicates: dict | None = None, flags: dict | None = None):
        self.rows = rows.set_index(["metric", "attribute", "group"])
        self.replicates = replicates or {}
        self.flags = flags or {}

    @classmethod
    def of_summary(cls, summary, cohort: str, model: str, modalities: str) -> "Run":
        t = summary.table
        rows = t[(t.cohort == cohort) & (t.model == model) & (t.modalities == modalities)]
        return cls(rows, summary.replicates.get((cohort, model, modalities), {}))

    @classmethod
    def of_sweep(cls, sweep, flags: dict | None = None, **labels) -> "Run":
        """The condition of ``sweep`` with exactly these labels (:meth:`mmlib.missing.Sweep.condition`)."""
        rows, reps = sweep.condition(**labels)
        return cls(rows, reps, flags)

    @classmethod
    def of_diagnosis(cls, diagnosis) -> "Run":
        return cls(diagnosis.clean, diagnosis.clean_replicates, getattr(diagnosis, "flags", None))

    def has(self, metric: str, attribute: str = "overall", group: str | None = None) -> bool:
        return (metric, attribute, group or ("all" if attribute == "overall" else "gap")) in self.rows.index

    def estimate(self, metric: str, attribute: str = "overall", group: str | None = None):
        """``(mean, ci_low, ci_high)`` of one row (NaNs when the run has no such row)."""
        key = (metric, attribute, group or ("all" if attribute == "overall" else "gap"))
        if key not in self.rows.index:
            return (np.nan, np.nan, np.nan)
        r = self.rows.loc[key]
        return (float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))

    def compared(self, attribute: str) -> list[str]:
        """The groups of ``attribute`` that enter its gaps, in display order."""
        groups = [g for (m, a, g) in self.rows.index if a == attribute and m in ("tpr", "selection_rate")]
        flags = self.flags.get(attribute, {})
        out = []
        for g in group_order(groups):
            if not_compared(g) or flags.get(g, ""):
                continue
            if "flag" in self.rows.columns:
                f = self.rows["flag"].get(("tpr", attribute, g), "")
                if isinstance(f, str) and f:
                    continue
            out.append(g)
        return out

    def _gap_key(self, metric: str, attribute: str, group: str):
        """How the gap of ``group`` is computed: ``("row", key)`` for a two-group attribute (the signed row
        itself), ``("groups", key_group, key_reference)`` otherwise."""
        ref = REFERENCE[attribute]
        others = [g for g in self.compared(attribute) if g != ref]
        if len(others) == 1 and self.has(metric, attribute):
            return ("row", (metric, attribute, "gap"))
        return ("groups", (RATE_OF[metric], attribute, group), (RATE_OF[metric], attribute, ref))

    def signed(self, metric: str, attribute: str) -> list[tuple[str, str, tuple]]:
        """Every signed gap of ``metric`` (``tpr_signed``, ``dp_signed``, ``fpr_signed``) by ``attribute``:
        ``[(group, reference, (mean, ci_low, ci_high)), ...]``, one per compared group other than the reference
        (:data:`mmlib.metrics.REFERENCE`). For two compared groups this is the ``*_signed`` row itself; for more
        (race5), each group's rate minus the reference's, on the same resamples. Empty when the reference is not
        compared."""
        ref = REFERENCE[attribute]
        compared = self.compared(attribute)
        if ref not in compared:
            return []
        out = []
        for g in compared:
            if g == ref:
                continue
            how = self._gap_key(metric, attribute, g)
            if how[0] == "row":
                out.append((g, ref, self.estimate(*how[1][:2])))
                continue
            (ga, gb) = how[1:]
            mean = self.estimate(*ga)[0] - self.estimate(*gb)[0]
            ra, rb = self.replicates.get(ga), self.replicates.get(gb)
            lo, hi = ci95(np.asarray(ra) - np.asarray(rb)) if ra is not None and rb is not None else (np.nan, np.nan)
            out.append((g, ref, (mean, lo, hi)))
        return out

    def worst(self, metric: str, attribute: str):
        """The signed gap of :meth:`signed` largest in size (the worst group; for two groups, the only one), or
        None."""
        gaps = [s for s in self.signed(metric, attribute) if np.isfinite(s[2][0])]
        return max(gaps, key=lambda s: abs(s[2][0])) if gaps else None

    def _mean_reps(self, key):
        return self.estimate(*key)[0], self.replicates.get(key)

    def change(self, other: "Run", key) -> Change:
        """Paired change of row ``key`` = (metric, attribute, group) from this run to ``other`` (NaN when either
        has no replicates for it)."""
        (ma, ra), (mb, rb) = self._mean_reps(key), other._mean_reps(key)
        if ra is None or rb is None:
            return Change(np.nan, np.nan, np.nan)
        return Change.paired(ma, mb, ra, rb)

    def signed_change(self, other: "Run", metric: str, attribute: str, group: str) -> Change:
        """Paired change of the signed gap of ``group`` (:meth:`signed`) from this run to ``other``."""
        how = self._gap_key(metric, attribute, group)
        if how[0] == "row":
            return self.change(other, how[1])
        ga, gb = how[1:]
        (ma, ra), (mb, rb) = self._mean_reps(ga), self._mean_reps(gb)
        (oa, sa), (ob, sb) = other._mean_reps(ga), other._mean_reps(gb)
        if any(r is None for r in (ra, rb, sa, sb)):
            return Change(np.nan, np.nan, np.nan)
        return Change.paired(ma - mb, oa - ob, np.asarray(ra) - np.asarray(rb), np.asarray(sa) - np.asarray(sb))


def _why_not(run: Run, attribute: str) -> str:
    """Why a run has no signed gap by ``attribute``: the reference group, or every other group, is too small
    (or has too few events) to compare."""
    ref = REFERENCE[attribute]
    if ref not in run.compared(attribute):
        return f"{group_word(ref)} too few to compare"
    return f"no other group large enough to compare with {group_word(ref)}"


def signed_gap_items(run: Run, keys=SIGNED_KEYS) -> list[tuple[str, str]]:
    """Every signed gap of ``keys`` of one run in words, each with its 95% CI and ``no clear difference`` when the CI
    contains 0 -- e.g. ``race TPR gap (non-White − White) -0.031 [-0.082, +0.020] (no clear difference)`` -- and, for
    more than two groups, each group minus the reference and which is the worst (largest in size); as ``(text,
    verdict)`` pairs for :func:`clear_then_counted` (a worst-group part's verdict is ``worst``, stated as clear).
    Chapter 05's answers."""
    parts = []
    for metric, attr in keys:
        gaps = run.signed(metric, attr)
        if not gaps:
            parts.append((f"{attr} {_RATE_WORD[metric]} gap not estimable ({_why_not(run, attr)})", "not estimable"))
            continue
        for g, ref, e in gaps:
            word = difference_word(e, "the group is clearly above", "the group is clearly below")
            parts.append((f"{gap_name(metric, attr, g, ref)} {fmt_change(*e)} ({word})", word))
        if len(gaps) > 1:
            w = run.worst(metric, attr)
            if w is not None:
                parts.append((f"worst {attr} group for the {_RATE_WORD[metric]} gap: {w[0]} ({fmt_change(*w[2])})",
                              "worst"))
    return parts


EFFECT_COLUMNS = ["kind", "attribute", "group", "what", "before", "after", "change", "ci_low", "ci_high", "verdict",
                  "hurts"]


def gap_effects(before: Run, after: Run, attributes=("race", "gender"), signed=("tpr_signed", "dp_signed"),
                paper=("tpr_diff", "dp_diff", "eo_diff"), performance=("auroc",)) -> pd.DataFrame:
    """What changing a model does (chapter 06's calibration, chapter 07's fine-tuning): the paired change from
    ``before`` to ``after`` (two :class:`Run` on the same test resamples) of every ``performance`` metric, every
    signed gap (each compared group minus the reference), every compared group's TPR and every paper's gap
    (max − min), with its 95% CI and the verdict: ``no clear difference`` when the CI contains 0; for a gap
    ``widens`` / ``narrows`` (in size; see :func:`signed_change_word`); for a TPR or a performance metric
    ``rises`` / ``falls``. ``hurts`` is True where the change is clear and bad: a gap that widens, a group whose
    TPR falls, a performance metric that falls.

    Columns :data:`EFFECT_COLUMNS`; ``kind`` is ``performance``, ``signed gap``, ``group TPR`` or
    :data:`PAPER_GAP`; ``group`` is the group of a signed gap or a TPR."""
    rows = []

    def add(kind, attr, what, b, c, verdict, hurts, group=""):
        rows.append({"kind": kind, "attribute": attr, "group": group, "what": what, "before": b,
                     "after": b + c.change, "change": c.change, "ci_low": c.ci_low, "ci_high": c.ci_high,
                     "verdict": verdict, "hurts": bool(hurts)})

    for m in performance:
        c = before.change(after, (m, "overall", "all"))
        v = difference_word(c)
        add("performance", "overall", metric_label(m), before.estimate(m)[0], c, v, v == "falls")
    for attr in attributes:
        for metric in signed:
            for g, ref, e in before.signed(metric, attr):
                c = before.signed_change(after, metric, attr, g)
                v = signed_change_word(e[0], c)
                add("signed gap", attr, gap_name(metric, attr, g, ref), e[0], c, v, v.startswith("widens"), g)
        for g in before.compared(attr):
            c = before.change(after, ("tpr", attr, g))
            v = difference_word(c)
            add("group TPR", attr, f"TPR of {group_word(g)}", before.estimate("tpr", attr, g)[0], c, v, v == "falls", g)
    for attr in attributes:
        for metric in paper:
            if before.has(metric, attr):
                c = before.change(after, (metric, attr, "gap"))
                v = difference_word(c, "widens", "narrows")
                add(PAPER_GAP, attr, gap_name(metric, attr), before.estimate(metric, attr)[0], c, v, v == "widens")
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _effect_phrase(r) -> str:
    """One row of :func:`gap_effects` in words: before → after (paired change [CI]: verdict)."""
    if r.verdict in ("no clear difference", "not estimable"):
        verdict = r.verdict
    elif r.kind == "group TPR":
        verdict = f"**it hurts {group_word(r.group)}**: their TPR falls" if r.hurts else "their TPR rises"
    elif r.kind == "performance":
        verdict = f"**it hurts**: {r.what} falls" if r.hurts else f"{r.what} rises"
    else:
        verdict = f"**it hurts**: the gap {r.verdict}" if r.hurts else f"the gap {r.verdict}"
    fmt = "+.3f" if r.kind == "signed gap" else ".3f"  # a signed gap keeps its sign
    return (f"{r.what} {r.before:{fmt}} → {r.after:{fmt}} ({fmt_change(r.change, r.ci_low, r.ci_high)}: "
            f"{verdict})")


def gap_effects_text(effects: pd.DataFrame, who: str) -> str:
    """:func:`gap_effects` in words, as Markdown lines: performance, the signed gaps, the groups' TPRs and the
    paper's gaps (max − min), each clear change with its paired interval and verdict and the others counted
    (:func:`clear_then_counted`; the chapter's table of :func:`gap_effects` holds them all), then one line saying
    what ``who`` (e.g. ``The calibration``) hurts, or that it makes nothing clearly worse."""
    lines = []
    missing = ~(np.isfinite(effects["before"].astype(float)) & np.isfinite(effects["after"].astype(float)))
    for kind, head, noun in (("performance", "Performance", "measures"), ("signed gap", "Signed gaps", "signed gaps"),
                             ("group TPR", "TPR by group", "groups"),
                             (PAPER_GAP, "The paper's gaps (max − min)", "gaps (max − min)")):
        sub = effects[(effects.kind == kind) & ~missing]
        if len(sub):
            lines.append(f"  - {head}: "
                         + clear_then_counted([(_effect_phrase(r), r.verdict) for r in sub.itertuples()], noun) + ".")
    if missing.any():
        lines.append("  - Not estimable (a group too small to compare): "
                     + ", ".join(effects.loc[missing, "what"]) + ".")
    bad = effects[effects.hurts]
    if len(bad):
        names = [f"the {r.what} (it {r.verdict})" if r.kind in ("signed gap", PAPER_GAP) else
                 f"{group_word(r.group)} (their TPR falls)" if r.kind == "group TPR" else f"{r.what} (it falls)"
                 for r in bad.itertuples()]
        lines.append(f"  - **{who} hurts** " + ", ".join(names) + " (paired 95% CIs excluding 0).")
    else:
        lines.append(f"  - {who} makes no gap clearly wider and lowers no group's TPR clearly (a change whose paired "
                     "95% CI contains 0 is no clear difference).")
    return "\n".join(lines)


def area_change(sweep, key: tuple, a: dict, b: dict, rates) -> Change:
    """Paired change of the area under a degradation curve (:func:`mmlib.missing.curve_area`: the mean of metric
    ``key`` over ``rates``) from the conditions labelled ``a`` to those labelled ``b`` (each dict without
    ``rate``), on the sweep's shared resamples (chapters 05-06)."""
    rates = sorted(rates)
    if len(rates) < 2:
        return Change(np.nan, np.nan, np.nan)

    def curve(lab):
        means, reps = [], []
        for p in rates:
            r = Run.of_sweep(sweep, **lab, rate=p)
            means.append(r.estimate(*key)[0])
            reps.append(r.replicates.get(key))
        if any(x is None for x in reps):
            return None, None
        span = rates[-1] - rates[0]
        return (np.trapezoid(means, rates) / span, np.trapezoid(np.stack(reps), rates, axis=0) / span)

    (ma, ra), (mb, rb) = curve(a), curve(b)
    if ra is None or rb is None:
        return Change(np.nan, np.nan, np.nan)
    return Change.paired(ma, mb, ra, rb)


# ------------------------------------------------------------------------------------------ chapter 05
def degradation_areas(sweep: pd.DataFrame, keys=PERFORMANCE_KEYS + SIGNED_KEYS + GAP_KEYS) -> pd.DataFrame:
    """Per cohort, model and metric of ``keys`` (overall or gap rows of a random-missingness sweep): the area
    under the degradation curve (:func:`mmlib.missing.curve_area`), the value at the lowest and highest
    rate, and the change between them. Metrics are labelled by :func:`label` (the paper's gaps as such)."""
    rows = []
    for (n, m, metric, attr, grp), t in sweep.groupby(["cohort", "model", "metric", "attribute", "group"]):
        if (metric, attr) in keys and grp in ("all", "gap"):
            t = t.sort_values("rate")
            rows.append({"cohort": display_name(n), "model": m, "metric": label(metric, attr),
                         "area": curve_area(t["rate"], t["mean"]), "at p=0": t["mean"].iloc[0],
                         f"at p={t['rate'].iloc[-1]:g}": t["mean"].iloc[-1],
                         "change": t["mean"].iloc[-1] - t["mean"].iloc[0]})
    return pd.DataFrame(rows)


def random_run(cohort: str, model: str, rate: float) -> dict:
    """The selector (keyword arguments of :meth:`Run.of_sweep` / :meth:`mmlib.missing.Sweep.has`) of one run of
    chapter 05's sweep: ``model`` on ``cohort`` with every modality missing at random at ``rate``. Used by the
    answers of chapter 05 here and in :mod:`mmlib.headlines`."""
    return dict(cohort=cohort, model=model, protocol="random", rate=rate, modality="all")


def modality_harm(sweep, model: str, orders: dict, flags: dict | None = None) -> pd.DataFrame:
    """Per cohort, modality and compared race/gender group (chapter 05): the TPR with nothing missing (the
    sweep's random protocol at rate 0), with that modality missing at the one-modality protocol's highest rate
    (always missing when that rate is 1), and the paired change with its 95% CI and verdict (``falls``: patients
    of that group who need the outcome are now missed; ``no clear difference`` when the CI contains 0). Model
    ``model``; ``flags``: ``{cohort: {attribute: {group: flag}}}`` (:class:`mmlib.metrics.EvaluationGroups`).
    Groups whose TPR is not estimated (withheld for a credentialed source, or undefined) are left out."""
    rows = []
    t = sweep.table
    for n, order in orders.items():
        base = Run.of_sweep(sweep, (flags or {}).get(n), **random_run(n, model, 0.0))
        for mod in order:
            sel = t[(t.cohort == n) & (t.model == model) & (t.protocol == "one modality") & (t.modality == mod)]
            if sel.empty:
                continue
            p = float(sel["rate"].max())
            lost = Run.of_sweep(sweep, (flags or {}).get(n), cohort=n, model=model, protocol="one modality",
                                rate=p, modality=mod)
            for attr in ("race", "gender"):
                for g in base.compared(attr):
                    before, after = base.estimate("tpr", attr, g)[0], lost.estimate("tpr", attr, g)[0]
                    if not np.isfinite(after - before):
                        continue
                    c = base.change(lost, ("tpr", attr, g))
                    rows.append({"cohort": display_name(n), "modality lost": mod, "rate": p, "attribute": attr,
                                 "group": g, "TPR with it": before, "TPR without it": after, "change": after - before,
                                 "ci_low": c.ci_low, "ci_high": c.ci_high, "verdict": difference_word(c),
                                 "change [95% CI]": fmt_change(after - before, c.ci_low, c.ci_high)})
    return pd.DataFrame(rows, columns=["cohort", "modality lost", "rate", "attribute", "group", "TPR with it",
                                       "TPR without it", "change", "ci_low", "ci_high", "verdict", "change [95% CI]"])


def group_factor_note(factors: dict, skipped: list) -> str:
    """Chapter 05's sentence on the group-dependent protocol: each cohort's relative missingness by race group
    (``{cohort: {group: factor}}``) and the rates skipped because a group's rate would exceed 1."""
    return ("Relative missingness by race group (share of the cohort's sometimes-missing modalities that are "
            "missing): " + "; ".join(f"{display_name(n)}: " + ", ".join(f"{g} {f[g]:.3f}" for g in group_order(list(f)))
                                     for n, f in factors.items())
            + (". Rates skipped because a group's rate would exceed 1: " + "; ".join(skipped) + "." if skipped else "."))


def signed_moves(a: Run, b: Run, keys=SIGNED_KEYS) -> tuple[list[tuple[str, str]], list[str]]:
    """The paired change of every signed gap of ``keys`` from run ``a`` to ``b`` in words, as ``(text, verdict)``
    pairs for :func:`clear_then_counted`, and the names of those that clearly widen (:func:`gap_name`). Chapter 05's
    answers (here and :func:`mmlib.headlines.losing_modalities`)."""
    items, wider = [], []
    for metric, attr in keys:
        for g, ref, e in a.signed(metric, attr):
            c = a.signed_change(b, metric, attr, g)
            word = signed_change_word(e[0], c)
            name = gap_name(metric, attr, g, ref)
            items.append((f"{name} {fmt_change(*c)} ({word})", word))
            if word.startswith("widens"):
                wider.append(name)
    return items, wider


def rq2_answer(sweep, harm: pd.DataFrame, cohorts, models, rates, flags: dict | None = None) -> str:
    """Chapter 05's answers, per cohort: for each model, the signed race and gender gaps with nothing missing
    (each with its CI) and the paired change of AUROC and of every signed gap from p = 0 to each low rate
    (0 < p <= 0.2), with which gaps clearly widen, and the paper's race TPR gap (max − min) along; how much AUROC
    each model loses from p = 0 to the largest rate, and whether the least-losing model loses clearly less than
    the next; the modality whose loss lowers a group's TPR most (``harm``: :func:`modality_harm`); and the
    change of the signed race gaps under group-dependent against random missingness at the same average rate
    (p = 0.1, 0.3, 0.5). ``sweep``: a :class:`mmlib.missing.Sweep`; ``flags``: ``{cohort: {attribute: {group:
    flag}}}``. Every change whose paired 95% CI contains 0 is called no clear difference; the gaps and changes that
    are clear are stated with their intervals, the others counted (:func:`clear_then_counted`: the chapter's figures
    draw them all, and its sweep table holds them)."""
    models = list(models)
    lead = models[0]
    low = [p for p in rates if 0 < p <= 0.2]
    top = max(rates)
    flags = flags or {}
    lines = []
    for n in cohorts:
        lines.append(f"**{display_name(n)}.**")
        for m in models:
            zero = Run.of_sweep(sweep, flags.get(n), **random_run(n, m, 0.0))
            parts = [f"- `{m}`, nothing missing: {clear_then_counted(signed_gap_items(zero), 'signed gaps')}."]
            for p in low:
                at = Run.of_sweep(sweep, flags.get(n), **random_run(n, m, p))
                au = zero.change(at, ("auroc", "overall", "all"))
                moves, wider = signed_moves(zero, at)
                paper = zero.change(at, ("tpr_diff", "race", "gap"))
                paper_word = difference_word(paper, "widens", "narrows")
                parts.append(f"  - at p={p:g}: AUROC {fmt_change(*au)} ({difference_word(au)}); "
                             + clear_then_counted(moves, "signed gaps")
                             + (f". Clearly wider: {', '.join(wider)}." if wider else ". No signed gap clearly wider.")
                             + f" The paper's race TPR gap (max − min) {fmt_value(zero.estimate('tpr_diff', 'race')[0])} → "
                             f"{fmt_value(at.estimate('tpr_diff', 'race')[0])}"
                             + (f": {paper_word}." if paper_word in UNCLEAR else
                                f" ({fmt_change(*paper)}: {paper_word})."))
            lines.extend(parts)
        loss = {}
        for m in models:
            z = Run.of_sweep(sweep, **random_run(n, m, 0.0))
            t = Run.of_sweep(sweep, **random_run(n, m, top))
            c = t.change(z, ("auroc", "overall", "all"))  # positive: AUROC lost
            loss[m] = (c, z.replicates.get(("auroc", "overall", "all")), t.replicates.get(("auroc", "overall", "all")))
        finite = {m: v for m, v in loss.items() if np.isfinite(v[0].change)}
        if finite and top > 0:
            ranked = sorted(finite, key=lambda m: finite[m][0].change)
            best = ranked[0]
            text = (f"- AUROC lost from p=0 to p={top:g}: " + ", ".join(
                f"`{m}` {fmt_change(*finite[m][0])}" for m in ranked) + ".")
            if len(ranked) > 1:
                nxt = ranked[1]
                (cb, zb, tb), (cn, zn, tn) = finite[best], finite[nxt]
                d = Change.paired(cn.change, cb.change, np.asarray(zn) - np.asarray(tn), np.asarray(zb) - np.asarray(tb))
                text += (f" `{best}` loses least; against `{nxt}` the difference is {fmt_change(*d)}: "
                         + ("it degrades clearly more smoothly." if difference_word(d) == "falls" else
                            "no clear difference." if difference_word(d) == "no clear difference" else
                            "not estimable."))
            lines.append(text)
        h = harm[harm.cohort == display_name(n)] if len(harm) else harm
        if len(h):
            w = h.loc[h["change"].idxmin()]
            clear = h[h["verdict"] == "falls"]
            if w["verdict"] == "falls":
                lines.append(f"- The loss that hurts a group most ({lead} model, TPR): losing **{w['modality lost']}** "
                             f"lowers the TPR of **{group_word(w['group'])}** from {w['TPR with it']:.3f} to "
                             f"{w['TPR without it']:.3f} ({fmt_change(w['change'], w['ci_low'], w['ci_high'])}): it "
                             f"hurts {group_word(w['group'])}; {len(clear)} of {len(h)} modality x group TPR changes "
                             "are clear falls.")
            else:
                lines.append(f"- No modality's loss clearly lowers any group's TPR ({lead} model): the largest drop, "
                             f"{group_word(w['group'])} without **{w['modality lost']}**, is "
                             f"{fmt_change(w['change'], w['ci_low'], w['ci_high'])}: no clear difference.")
        gd = []
        for p in rates:
            labels = dict(random_run(n, lead, p), protocol="group-dependent")
            if p in (0.1, 0.3, 0.5) and sweep.has(**labels):
                r = Run.of_sweep(sweep, flags.get(n), **random_run(n, lead, p))
                g = Run.of_sweep(sweep, flags.get(n), **labels)
                moves, _ = signed_moves(r, g, (("tpr_signed", "race"), ("dp_signed", "race")))
                gd.append(f"p={p:g}: " + (clear_then_counted(moves, "race gaps") if moves else
                                          f"not estimable ({_why_not(r, 'race')})"))
        if gd:
            lines.append(f"- Unequal missingness alone ({lead} model): change of the signed race gaps under "
                         "group-dependent against random missingness at the same average rate (widens / narrows "
                         "against the random run's gap): " + " | ".join(gd) + ".")
        lines.append("")
    lines.append("The paper reports that fairness degrades already at low missingness. A change whose paired 95% CI "
                 "contains zero is no clear difference, not evidence of degradation; the lines above say which "
                 "changes exclude it. Signed gaps are a group's rate minus the reference group's (White, men); the "
                 "paper's gaps (max − min) can never be below 0 and are biased upwards when groups do not differ.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ chapter 06
def largest_in_every_seed(per_seed: pd.DataFrame, modality: str, column: str = "share") -> bool:
    """Whether ``modality`` has the largest ``column`` among the modalities in every seed of ``per_seed``
    (:attr:`mmlib.decision.DecisionLayer.per_seed`): a ranking that is not an accident of one seed."""
    wide = per_seed.pivot(index="seed", columns="modality", values=column)
    return bool((wide.idxmax(axis=1) == modality).all())


def clear_lead(per_seed: pd.DataFrame, column: str = "share", min_lead: float = MIN_LEAD) -> dict:
    """Whether one modality clearly has the largest ``column`` (chapter 06's weight shares): the modality with the
    largest mean, the runner-up, its lead (mean over seeds of the top modality's value minus the largest other
    in the same seed), the smallest and the sd of that lead over seeds, in how many seeds it is on top, and
    ``clear``: True only when it is on top in every seed (:func:`largest_in_every_seed`), there are at least two
    seeds, the mean lead is at least ``min_lead`` and exceeds twice its sd over seeds (the seed spread separates
    it). A lead of 0.001 is never clear."""
    wide = per_seed.pivot(index="seed", columns="modality", values=column)
    means = wide.mean()
    top = means.idxmax()
    rest = wide.drop(columns=top)
    lead = wide[top] - rest.max(axis=1)
    runner = rest.mean().idxmax() if rest.shape[1] else None
    sd = float(lead.std(ddof=1)) if len(lead) > 1 else np.nan
    on_top = int((wide.idxmax(axis=1) == top).sum())
    clear = bool(on_top == len(wide) and len(wide) >= 2 and lead.mean() >= min_lead
                 and np.isfinite(sd) and lead.mean() > 2 * sd)
    return {"modality": top, "runner_up": runner, "lead": float(lead.mean()), "lead_min": float(lead.min()),
            "lead_sd": sd, "seeds_on_top": on_top, "seeds": len(wide), "clear": clear}


def _lead_text(lead: dict) -> str:
    """A :func:`clear_lead` result in words: the lead over the runner-up, its smallest value and sd over seeds,
    and in how many seeds the modality is on top (in points of the share)."""
    return (f"leads {lead['runner_up']} by {100 * lead['lead']:.1f} points on average, by "
            f"{100 * lead['lead_min']:+.1f} in its weakest seed (sd {100 * lead['lead_sd']:.1f} over seeds), and is on top "
            f"in {lead['seeds_on_top']} of {lead['seeds']} seeds")


def remedy_effects(summary, orders: dict, base: str = "linear", remedy: str = "linear+calibrated") -> pd.DataFrame:
    """Chapter 06: :func:`gap_effects` of the remedy (``remedy`` against ``base``, all modalities) for every
    cohort of ``orders``, with a ``cohort`` column."""
    parts = []
    for n, order in orders.items():
        a, b = (Run.of_summary(summary, n, m, order.full) for m in (base, remedy))
        parts.append(gap_effects(a, b).assign(cohort=display_name(n)))
    return pd.concat(parts, ignore_index=True)[["cohort", *EFFECT_COLUMNS]]


def group_share_table(shares: pd.DataFrame, cohort: str | None = None) -> pd.DataFrame:
    """Chapter 06's table of :func:`mmlib.decision.group_shares` as the page shows it: per modality and pair of groups
    (and cohort, unless ``cohort`` -- a display name -- picks one), the modality's mean share in the group and in the
    reference and their difference with its 95% CI in one cell (``+0.040 [+0.015, +0.063]``; an interval that
    excludes 0 is a clear difference). The saved frame keeps the separate columns."""
    if cohort is not None:
        shares = shares[shares["cohort"] == cohort]
    t = shares.assign(**{"share, group": shares["share in first"].round(3),
                         "share, reference": shares["share in second"].round(3),
                         "group − reference [95% CI]": interval_cells(shares["difference"], shares["ci_low"],
                                                                      shares["ci_high"], signed=True)})
    index = ["modality", "groups"] if cohort is not None else ["cohort", "modality", "groups"]
    return t.set_index(index)[["share, group", "share, reference", "group − reference [95% CI]"]]


def decision_layer_answer(layers: dict, orders: dict, shares: pd.DataFrame, summary, robust) -> str:
    """Chapter 06's answers, per cohort: whether one modality clearly has the largest share of the decision
    layer's weight norm (:func:`clear_lead`; otherwise that no modality clearly dominates, with the numbers) and
    every share; whether training alone ranks the modalities the same (Spearman correlation of the norms);
    which modalities' share of the logit differs clearly between race groups; and what per-modality calibration
    changes: AUROC, every signed gap, every group's TPR and every paper's gap (max − min), each with its paired
    change, saying what it hurts (:func:`gap_effects`), and the mean AUROC over the missingness grid with its
    paired change (``robust``: the robustness :class:`mmlib.missing.Sweep`, conditions labelled ``cohort``,
    ``model``, ``rate``). ``layers``: ``{cohort: mmlib.decision.DecisionLayer}``."""
    from scipy.stats import spearmanr

    lines = []
    rule = (f"a lead is called clear only when it holds in every seed, is at least {100 * MIN_LEAD:g} point of the "
            "total weight norm and exceeds twice its sd over seeds")
    for n, order in orders.items():
        g = layers[n].means(order)
        per = layers[n].per_seed.copy()
        per["alone_share"] = per["alone"] / per.groupby("seed")["alone"].transform("sum")
        lead, alone = clear_lead(per), clear_lead(per, "alone_share")
        top = lead["modality"]
        rho = spearmanr(g["norm"], g["alone"]).statistic
        share_text = "shares: " + ", ".join(f"{m} {100 * v:.1f}%" for m, v in g["share"].items())
        if lead["clear"]:
            lines.append(f"**{display_name(n)}.** The decision layer gives **{top}** the largest weight norm, clearly: "
                         f"{100 * g.loc[top, 'share']:.1f}% of the total on average (an equal split would be "
                         f"{100 / len(g):.1f}%); it {_lead_text(lead)}. The {share_text}.")
        else:
            lines.append(f"**{display_name(n)}.** No modality clearly dominates the decision layer: **{top}** has the "
                         f"largest mean share ({100 * g.loc[top, 'share']:.1f}%; an equal split would be "
                         f"{100 / len(g):.1f}%) but {_lead_text(lead)}; {rule}. The {share_text}.")
        same = lead["clear"] and alone["clear"] and alone["modality"] == top
        lines.append("- Trained alone, "
                     + (f"**{alone['modality']}** has the largest weight norm, clearly: it {_lead_text(alone)}"
                        if alone["clear"] else
                        f"no modality's weight norm clearly leads: {alone['modality']} {_lead_text(alone)}")
                     + ". Norms " + ", ".join(f"{m} {v:.2f}" for m, v in g["alone"].items())
                     + f" (Spearman correlation with the all-modality norms {rho:.2f}). "
                     + ("The same modality leads clearly with and without fusion: the disparity persists without "
                        "fusion, as the paper claims." if same else
                        "Neither with nor without fusion does one modality clearly lead, so there is no clear disparity "
                        "to persist." if not (lead["clear"] or alone["clear"]) else
                        "The clear lead is not the same with and without fusion: the disparity does not simply "
                        "persist without fusion here."))
        st = shares[(shares.cohort == display_name(n)) & (shares.attribute == "race")]
        clear = st[st.clear == "yes"]
        if len(st):
            lines.append("- Race: " + ("no modality's share of the logit differs clearly between the race groups "
                                       "(every difference's CI contains 0)"
                                       if clear.empty else "; ".join(
                f"the share of {r.modality} differs by {fmt_change(r.difference, r.ci_low, r.ci_high)} ({r.groups})"
                for r in clear.itertuples())) + ".")
        a, b = (Run.of_summary(summary, n, m, order.full) for m in ("linear", "linear+calibrated"))
        area_text = ""
        if robust is not None:
            rates = sorted(robust.table.loc[robust.table.cohort == n, "rate"].unique())
            au = {m: curve_area(rates, [Run.of_sweep(robust, cohort=n, model=m, rate=p).estimate("auroc")[0]
                                        for p in rates]) for m in ("linear", "linear+calibrated")}
            d = area_change(robust, ("auroc", "overall", "all"), dict(cohort=n, model="linear"),
                            dict(cohort=n, model="linear+calibrated"), rates)
            area_text = (f" Mean AUROC over the missingness grid {au['linear']:.3f} → {au['linear+calibrated']:.3f} "
                         f"({fmt_change(*d)}: {difference_word(d)}).")
        lines.append("- Per-modality calibration, paired change from the baseline (all modalities):" + area_text)
        lines.append(gap_effects_text(gap_effects(a, b), "The calibration"))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ chapter 07
CHANGE_KEYS = (("auroc", "overall", "all"), ("tpr_signed", "race", "gap"), ("dp_signed", "race", "gap"),
               ("tpr_signed", "gender", "gap"), ("tpr_diff", "race", "gap"))
MITIGATION_KEYS = (("auroc", "overall", "all"), ("f1", "overall", "all"), ("tpr_signed", "race", "gap"),
                   ("dp_signed", "race", "gap"), ("tpr_signed", "gender", "gap"), ("tpr_diff", "race", "gap"),
                   ("dp_diff", "race", "gap"))


def change_table(changes: pd.DataFrame, cohort: str, model: str, keys=CHANGE_KEYS) -> pd.DataFrame:
    """Chapter 07's change table of one cohort and model: one row per modality and perturbation, one column
    per metric of ``keys`` (labelled by :func:`label`: signed gaps first, the paper's gap as such), cells
    ``change [95% CI]`` (:func:`mmlib.tables.fmt_change`)."""
    sel = changes[(changes.cohort == cohort) & (changes.model == model)]
    keys = [k for k in keys if k in set(zip(sel.metric, sel.attribute, sel.group))]
    sel = sel.set_index(["metric", "attribute", "group"]).loc[keys].reset_index()
    order = [label(m, a) for m, a, _ in keys]
    sel["metric"] = [label(m, a) for m, a in zip(sel["metric"], sel["attribute"])]
    sel["change [95% CI]"] = [fmt_change(c, lo, hi) for c, lo, hi in zip(sel.change, sel.ci_low, sel.ci_high)]
    return sel.pivot_table(index=["modality", "perturbation"], columns="metric", values="change [95% CI]",
                           aggfunc="first")[order]


def mitigation_table(effects: pd.DataFrame, clean: pd.DataFrame, cohorts, models, perturbations,
                     keys=MITIGATION_KEYS) -> pd.DataFrame:
    """Chapter 07's mitigation table: for each cohort and model, the original and the consistency-fine-tuned
    variant (``<model>+consistency``): flip rate (%) under each perturbation (mean over modalities and seeds)
    and the clean metrics of ``keys`` (``mean [95% CI]``; signed gaps with their sign, the paper's gaps labelled
    as such by :func:`label`)."""
    rows = []
    for n in cohorts:
        for name in models:
            for variant in (name, f"{name}+consistency"):
                e = effects[(effects.cohort == n) & (effects.model == variant) & (effects.attribute == "overall")]
                c = clean[(clean.cohort == n) & (clean.model == variant)].set_index(["metric", "attribute", "group"])
                row = {"cohort": display_name(n), "model": name, "variant": "consistency" if "+" in variant else "original"}
                for k in ("blank", "irrelevant", "switch"):
                    if k in perturbations:
                        row[f"flip rate, {k} (%)"] = round(100 * e.loc[e.perturbation == k, "flip_rate"].mean(), 1)
                for key in keys:
                    if key not in c.index:
                        continue
                    r = c.loc[key]
                    fmt = fmt_change if key[0] in RATE_OF else fmt_estimate
                    row[label(key[0], key[1])] = fmt(r["mean"], r["ci_low"], r["ci_high"])
                rows.append(row)
    return pd.DataFrame(rows).set_index(["cohort", "model", "variant"])


def control_table(real: pd.DataFrame, shuffled: pd.DataFrame, cohort: str, modality: str, perturbations) -> pd.DataFrame:
    """Chapter 07's positive control for one cohort: flip rate (%) when ``modality`` is replaced, for the
    model trained on the real modality (``real``: its overall effects) and on the shuffled one."""
    rows = []
    for kind in perturbations:
        r = real[(real.attribute == "overall") & (real.modality == modality) & (real.perturbation == kind)]
        s = shuffled[(shuffled.attribute == "overall") & (shuffled.modality == modality) & (shuffled.perturbation == kind)]
        rows.append({"cohort": display_name(cohort), "modality": modality, "perturbation": kind,
                     "flip rate, real (%)": 100 * r["flip_rate"].iloc[0],
                     "flip rate, shuffled (%)": 100 * s["flip_rate"].iloc[0]})
    return pd.DataFrame(rows)


def control_summary(overall: pd.DataFrame, controls: dict, orders: dict, model: str, perturbations) -> pd.DataFrame:
    """Chapter 07's positive control table: :func:`control_table` of every cohort of ``controls`` (``{cohort:
    Diagnosis}`` of ``model`` trained on its last modality shuffled, :func:`mmlib.interference.positive_control`)
    against ``model``'s rows of ``overall`` (the original models' overall effects, labelled by cohort and model),
    rounded to 0.1; an empty frame without controls. Used by chapter 07."""
    parts = [control_table(overall[(overall.cohort == n) & (overall.model == model)], d.effects, n, orders[n][-1],
                           perturbations) for n, d in controls.items()]
    return pd.concat(parts, ignore_index=True).round(1) if parts else pd.DataFrame()


def mitigation_gap_changes(original: dict, tuned: dict) -> pd.DataFrame:
    """Chapter 07: for each ``(cohort, model)``, :func:`gap_effects` from the original model
    (``original[(cohort, model)]``, a :class:`mmlib.interference.Diagnosis`) to its fine-tuned version
    (``tuned``), on the same test resamples: AUROC, every signed gap, every group's TPR and every paper's gap
    (max − min), each with its paired change, verdict and whether it hurts. Columns ``cohort, model`` and those
    of :func:`gap_effects`."""
    parts = [gap_effects(Run.of_diagnosis(d), Run.of_diagnosis(tuned[(n, m)])).assign(cohort=display_name(n), model=m)
             for (n, m), d in original.items()]
    out = pd.concat(parts, ignore_index=True)
    return out[["cohort", "model"] + [c for c in out.columns if c not in ("cohort", "model")]]


def group_gap_table(group_gaps: pd.DataFrame, model: str, measure: str = "mean_abs_dp") -> pd.DataFrame:
    """Chapter 07: how differently each perturbation moves the groups, for one ``model``: one row per cohort,
    modality and perturbation, one column per compared group (``attribute: group − reference``), cells
    ``difference [95% CI]`` of ``measure`` (``mean_abs_dp`` or ``flip_rate``) from
    :attr:`mmlib.interference.Diagnosis.group_gaps`."""
    g = group_gaps[(group_gaps.model == model) & (group_gaps.measure == measure)]
    if g.empty:
        return pd.DataFrame()
    g = g.assign(who=[f"{a}: {x} − {r}" for a, x, r in zip(g.attribute, g.group, g.reference)],
                 cohort=[display_name(c) for c in g.cohort],
                 cell=[fmt_change(d, lo, hi) for d, lo, hi in zip(g.difference, g.ci_low, g.ci_high)])
    return g.pivot_table(index=["cohort", "modality", "perturbation"], columns="who", values="cell", aggfunc="first")


def interference_answer(effects: pd.DataFrame, group_gaps: pd.DataFrame, control: pd.DataFrame,
                        mitigation: pd.DataFrame, cohorts, models, perturbations,
                        gap_changes: pd.DataFrame | None = None) -> str:
    """Chapter 07's answers, per cohort: for each model, which modality's switch flips the most decisions and
    the range of flip rates under blank or irrelevant content; whether interference (blank and irrelevant)
    moves the race groups differently, first model (``group_gaps``: :attr:`mmlib.interference.Diagnosis.group_gaps`,
    each group's mean |Δp| minus the reference group's with its CI; no clear difference when the CI contains 0);
    the positive control's separation; and for each model the interference flip rate before and after
    consistency fine-tuning (``mitigation``: :func:`mitigation_table`) and (``gap_changes``:
    :func:`mitigation_gap_changes`) the paired change of AUROC, every signed gap, every group's TPR and every
    paper's gap, saying what the fine-tuning hurts."""
    models = list(models)
    lead = models[0]
    overall = effects[effects.attribute == "overall"]
    lines = []
    for n in cohorts:
        o = overall[overall.cohort == n]
        lines.append(f"**{display_name(n)}.**")
        for name in models:
            s = o[o.model == name]
            sw = s[s.perturbation == "switch"].set_index("modality")["flip_rate"] if "switch" in perturbations else None
            noise = s[s.perturbation != "switch"].groupby("modality")["flip_rate"].mean()
            part = f"- `{name}`: "
            if sw is not None and len(sw):
                part += f"switching **{sw.idxmax()}** flips the most decisions ({100 * sw.max():.1f}%); "
            if len(noise):
                part += (f"blank or irrelevant content flips {100 * noise.min():.1f}-{100 * noise.max():.1f}% of "
                         f"decisions, most for **{noise.idxmax()}**.")
            lines.append(part)
        gg = group_gaps if group_gaps is not None else pd.DataFrame()
        if len(gg):
            gg = gg[(gg.cohort == n) & (gg.model == lead) & (gg.perturbation != "switch") & (gg.attribute == "race")
                    & (gg.measure == "mean_abs_dp")].dropna(subset=["difference"])
        if len(gg):
            clear = gg[(gg.ci_low > 0) | (gg.ci_high < 0)]
            w = gg.loc[gg["difference"].abs().idxmax()]
            lines.append(f"- By race (`{lead}`, blank and irrelevant, mean |Δp| of each group minus {w['reference']} "
                         f"stays): {len(clear)} of {len(gg)} modality x perturbation x group differences are clear. "
                         f"The largest, {w['perturbation']} **{w['modality']}**, moves {w['group']} stays by "
                         f"{w['value_group']:.3f} against {w['value_reference']:.3f} "
                         f"({fmt_change(w['difference'], w['ci_low'], w['ci_high'])}: "
                         + difference_word((w['difference'], w['ci_low'], w['ci_high']),
                                           f"{w['group']} stays are moved clearly more",
                                           f"{w['group']} stays are moved clearly less") + ").")
        ct = control[control.cohort == display_name(n)] if len(control) else control
        if len(ct) and "switch" in perturbations:
            sw = ct[ct.perturbation == "switch"].iloc[0]
            real, shuf = sw["flip rate, real (%)"], sw["flip rate, shuffled (%)"]
            lines.append(f"- Positive control (`{lead}`): switching **{sw['modality']}** flips {real:.1f}% of decisions "
                         f"when it is real and {shuf:.1f}% when it was shuffled (no signal)"
                         + ("; the diagnostic separates them." if shuf < real / 2 else
                            "; the diagnostic does not separate them clearly."))
        for name in models:
            a = mitigation.sort_index().loc[(display_name(n), name)]
            k = [c for c in a.columns if c.startswith("flip rate") and "switch" not in c]
            head = f"- Mitigation, `{name}`"
            if k:
                head += (f": interference flip rate (blank and irrelevant) {a.loc['original', k].mean():.1f}% → "
                         f"{a.loc['consistency', k].mean():.1f}%")
            g = (gap_changes[(gap_changes.cohort == display_name(n)) & (gap_changes.model == name)]
                 if gap_changes is not None else pd.DataFrame())
            lines.append(head + ("; paired change from the original to the fine-tuned model:" if len(g) else "."))
            if len(g):
                lines.append(gap_effects_text(g, "The fine-tuning"))
        lines.append("")
    return "\n".join(lines)


def mean_abs_dp_table(overall: pd.DataFrame) -> pd.DataFrame:
    """Chapter 07's table of the mean |Δp| (overall, mean over seeds) of every cohort, model and modality (rows)
    under each perturbation (columns), from the diagnostic's ``overall`` effects; 3 decimals."""
    return (overall.pivot_table(index=["cohort", "model", "modality"], columns="perturbation", values="mean_abs_dp")
            .round(3).rename_axis(columns="mean |Δp|"))


def flip_rate_table(effects: pd.DataFrame) -> pd.DataFrame:
    """Chapter 07's flip rate (%, 1 decimal) of every race group and gender (columns) for every cohort, model and
    perturbation (rows), mean over modalities and seeds, from the diagnostic's ``effects``."""
    by = effects[effects["attribute"].isin(["race", "gender"])]
    return (100 * by.pivot_table(index=["cohort", "model", "perturbation"], columns=["attribute", "group"],
                                 values="flip_rate")).round(1)


def harm_table(harm: pd.DataFrame) -> pd.DataFrame:
    """Chapter 05's table of :func:`modality_harm`: the change of each compared group's TPR with its 95% CI
    (columns: attribute, group) for every cohort and modality lost (rows)."""
    return harm.pivot_table(index=["cohort", "modality lost"], columns=["attribute", "group"],
                            values="change [95% CI]", aggfunc="first")


__all__ = ["STEP_KEYS", "PERFORMANCE_KEYS", "GAP_KEYS", "SIGNED_KEYS", "PAPER_GAP_KEYS", "PAPER_GAP", "MIN_LEAD",
           "BEST_SINGLE_COLUMN", "BEST_SINGLE_NAME", "BEST_SINGLE_CI", "EFFECT_COLUMNS", "Change", "Run", "label", "difference_word", "signed_change_word", "gap_name",
           "group_word", "single_modality_answer", "step_table", "order_table", "direction", "rq1_answer",
           "signed_gap_items", "gap_effects", "gap_effects_text", "area_change", "largest_in_every_seed", "clear_lead",
           "gap_change_text", "degradation_areas", "modality_harm", "group_factor_note", "rq2_answer",
           "remedy_effects", "decision_layer_answer", "change_table", "mitigation_table", "mitigation_gap_changes",
           "group_gap_table", "control_table", "interference_answer", "signed_gap_text", "truth_table", "truth_answer", "against_truth",
           "mean_abs_dp_table", "flip_rate_table", "harm_table"]
