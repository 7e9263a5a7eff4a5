"""The book's computed sentences and result tables, from the summary tables (chapters 03-07).

Every statement a chapter prints about its results is built here from its tables, so that re-running a
chapter with other parameters rewrites it, and so that a reader who wants to change how a statement is
reached finds it in one documented, tested function. Numbers are formatted by
:func:`mmlib.tables.fmt_estimate` (an estimate and its interval) and :func:`mmlib.tables.fmt_change` (a
paired change and its interval). A change whose interval contains 0 is called "no clear change".

- chapter 03: :func:`single_modality_answer`
- chapter 04: :func:`step_table`, :func:`order_table`, :func:`direction`, :func:`rq1_answer`
- chapter 05: :func:`degradation_areas`, :func:`modality_harm`, :func:`group_factor_note`, :func:`rq2_answer`
- chapter 06: :func:`decision_layer_answer`
- chapter 07: :func:`change_table`, :func:`mitigation_table`, :func:`mitigation_gap_changes`, :func:`control_table`,
  :func:`interference_answer`
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import ATTRIBUTES, Change, long_label, metric_label, not_compared, select
from .missing import curve_area
from .schema import display_name
from .tables import fmt_change, fmt_estimate

#: the metrics chapter 04 follows step by step: (metric, attribute, group)
STEP_KEYS = (("auroc", "overall", "all"), ("f1", "overall", "all"), ("dp_diff", "race", "gap"),
             ("tpr_diff", "race", "gap"), ("dp_diff", "gender", "gap"), ("tpr_diff", "gender", "gap"))
#: performance and fairness keys of the missingness sweeps (metric, attribute)
PERFORMANCE_KEYS = (("auroc", "overall"), ("f1", "overall"), ("auprc", "overall"), ("balanced_accuracy", "overall"))
GAP_KEYS = tuple((g, a) for a in ATTRIBUTES for g in ("dp_diff", "tpr_diff", "eo_diff"))
#: chapter 04's every-order column: all modalities minus the single modality with the highest AUROC
BEST_SINGLE_COLUMN = "full set minus best single modality by AUROC (mean)"


def _plural(k: int, one: str, many: str) -> str:
    return one if k == 1 else many


def group_word(group: str) -> str:
    """A group label as a reader says it: ``F`` -> women, ``M`` -> men, ``White`` -> White stays."""
    return {"F": "women", "M": "men"}.get(group, f"{group} stays")


def signed_gap_text(summary, metric: str, attribute: str, **where) -> str:
    """One signed gap (:data:`mmlib.metrics.SIGNED`) in words: what it compares, the estimate with its 95% CI
    and whether it is a clear difference (the CI excludes 0) -- e.g. ``signed TPR gap by race (non-White −
    White) -0.031 [-0.082, +0.020]: no clear difference``."""
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
    return f"{SHORT_LABELS[metric]} by {attribute} ({who}) {fmt_change(e.mean, e.ci_low, e.ci_high)}: {verdict}"


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
    (fall), and the all-modality mean minus the mean of the best single modality -- best by AUROC for every
    metric, so that for a gap the column compares with the most predictive modality, not the fairest."""
    rows = []
    best = summary.best("auroc", list(order), cohort=cohort, model=model)
    for key in keys:
        per = [summary.steps(cohort, model, seq, key) for seq in order.all_orders()]
        single = summary.estimate(key[0], key[1], group=key[2], cohort=cohort, model=model, modalities=best).mean
        rows.append({"metric": long_label(key[0], key[1]), "orders": len(per),
                     "mean rises at every step": sum((p["change"] > 0).all() for p in per),
                     "mean falls at every step": sum((p["change"] < 0).all() for p in per),
                     "some clear rise": sum((p["verdict"] == "rises").any() for p in per),
                     "some clear fall": sum((p["verdict"] == "falls").any() for p in per),
                     BEST_SINGLE_COLUMN: per[0]["after"].iloc[-1] - single})
    return pd.DataFrame(rows).set_index("metric")


def direction(changes) -> str:
    """How a sequence of step changes moves: ``never falls``, ``never rises`` or ``changes direction k
    times`` (zero changes are skipped when counting reversals)."""
    changes = list(changes)
    signs = [np.sign(c) for c in changes if c != 0]
    flips = sum(a != b for a, b in zip(signs[:-1], signs[1:]))
    if all(c >= 0 for c in changes):
        return "never falls"
    if all(c <= 0 for c in changes):
        return "never rises"
    return f"changes direction {flips} {_plural(flips, 'time', 'times')}"


def _path(summary, cohort, model, order, metric, attr) -> str:
    return " → ".join(f"{summary.estimate(metric, attr, cohort=cohort, model=model, modalities=lab).mean:.3f}"
                      for lab in order.prefixes())


def rq1_answer(summary, orders: dict, step_tables: dict, order_tables: dict, models) -> str:
    """Chapter 04's answer to RQ1, per cohort: the AUROC path of the first model along the default order and
    how many steps clearly rise or fall; each race and gender DP and TPR gap's path, its direction and every
    step's paired change; over every order (when trained), how often AUROC and the race TPR gap moved
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
                moves = ", ".join(f"+{r.added} {fmt_change(r.change, r.ci_low, r.ci_high)}" for r in s.itertuples())
                lines.append(f"- {long_label(g)} by {attr}: {_path(summary, n, lead, order, g, attr)}; it "
                             f"{direction(s['change'])} (steps: {moves}).")
        if n in order_tables:
            o = order_tables[n]
            tpr = long_label("tpr_diff", "race")
            gain = o.loc[long_label("auroc"), BEST_SINGLE_COLUMN]
            lines.append(f"- Over all {int(o['orders'].iloc[0])} orders, the mean AUROC rose at every step in "
                         f"{int(o.loc[long_label('auroc'), 'mean rises at every step'])}, and a clear fall occurred in "
                         f"{int(o.loc[long_label('auroc'), 'some clear fall'])}; the race TPR gap rose at every step in "
                         f"{int(o.loc[tpr, 'mean rises at every step'])} orders and fell at every step in "
                         f"{int(o.loc[tpr, 'mean falls at every step'])}. All modalities together "
                         + (f"beat the best single modality by {gain:.3f} AUROC." if gain > 0 else
                            f"do **not** beat the best single modality (difference {gain:+.3f} AUROC)."))
        lines.append(f"- With all modalities, `{lead}`: the "
                     + "; the ".join(signed_gap_text(summary, g, a, cohort=n, model=lead, modalities=order.full)
                                     for a in ("race", "gender") for g in ("tpr_signed", "dp_signed")) + ".")
        full = {"cohort": n, "model": lead, "modalities": order.full}
        shown = [f"{metric_label(k, a)} {fmt_estimate(*summary.estimate(k, a, **full)[:3])}"
                 for a in ("race", "gender") for k in ("auroc_worst", "ece_worst") if len(summary.select(k, a, **full))]
        if shown:
            lines.append("- Worst group, all modalities: " + "; ".join(shown)
                         + f" (overall AUROC {fmt_estimate(*summary.estimate('auroc', **full)[:3])}).")
        if len(models) > 1:
            lines.append("- With all modalities: " + "; ".join(
                f"`{m}` AUROC {summary.estimate('auroc', cohort=n, model=m, modalities=order.full).mean:.3f}, "
                f"signed race TPR gap {summary.estimate('tpr_signed', 'race', cohort=n, model=m, modalities=order.full).mean:+.3f}"
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


# ------------------------------------------------------------------------------------------ chapter 05
def degradation_areas(sweep: pd.DataFrame, keys=PERFORMANCE_KEYS + GAP_KEYS) -> pd.DataFrame:
    """Per cohort, model and metric of ``keys`` (overall or gap rows of a random-missingness sweep): the area
    under the degradation curve (:func:`mmlib.missing.curve_area`), the value at the lowest and highest
    rate, and the change between them."""
    rows = []
    for (n, m, metric, attr, grp), t in sweep.groupby(["cohort", "model", "metric", "attribute", "group"]):
        if (metric, attr) in keys and grp in ("all", "gap"):
            t = t.sort_values("rate")
            rows.append({"cohort": display_name(n), "model": m, "metric": metric_label(metric, attr),
                         "area": curve_area(t["rate"], t["mean"]), "at p=0": t["mean"].iloc[0],
                         f"at p={t['rate'].iloc[-1]:g}": t["mean"].iloc[-1],
                         "change": t["mean"].iloc[-1] - t["mean"].iloc[0]})
    return pd.DataFrame(rows)


def modality_harm(one: pd.DataFrame, base: pd.DataFrame, model: str, orders: dict) -> pd.DataFrame:
    """Per cohort, modality and race/gender group: the TPR with nothing missing (``base``: the sweep's
    rate-0 rows), with that modality always missing (``one``: the one-modality protocol at rate 1), and the
    change (negative: patients of that group who need the outcome and are now missed). Model ``model``. Groups
    whose TPR is not estimated (withheld for a credentialed source, or undefined) are left out."""
    rows = []
    for n, order in orders.items():
        b = base[(base.cohort == n) & (base.model == model) & (base.metric == "tpr")]
        for mod in order:
            o = one[(one.cohort == n) & (one.model == model) & (one.modality == mod) & (one.rate == 1.0)
                    & (one.metric == "tpr")]
            for r in o.merge(b, on=["attribute", "group"], suffixes=("", "_0")).itertuples():
                if r.attribute in ("race", "gender") and not not_compared(r.group) and np.isfinite(r.mean - r.mean_0):
                    rows.append({"cohort": display_name(n), "modality lost": mod, "attribute": r.attribute, "group": r.group,
                                 "TPR with it": r.mean_0, "TPR without it": r.mean, "change": r.mean - r.mean_0})
    return pd.DataFrame(rows)


def group_factor_note(factors: dict, skipped: list) -> str:
    """Chapter 05's sentence on the group-dependent protocol: each cohort's relative missingness by race group
    (``{cohort: {group: factor}}``) and the rates skipped because a group's rate would exceed 1."""
    return ("Relative missingness by race group (share of the cohort's sometimes-missing modalities that are "
            "missing): " + "; ".join(f"{display_name(n)}: " + ", ".join(f"{g} {v:.3f}" for g, v in f.items())
                                     for n, f in factors.items())
            + (". Rates skipped because a group's rate would exceed 1: " + "; ".join(skipped) if skipped else "."))


RQ2_GAPS = (("race TPR gap", ("tpr_diff", "race", "gap")), ("race DP gap", ("dp_diff", "race", "gap")),
            ("gender TPR gap", ("tpr_diff", "gender", "gap")))


def rq2_answer(sweep, areas: pd.DataFrame, harm: pd.DataFrame, cohorts, models, rates) -> str:
    """Chapter 05's answers, per cohort: for each model, the paired change of AUROC and of the race/gender
    gaps from p = 0 to each low rate (0 < p <= 0.2) and which gaps clearly widen; the model whose AUROC
    degrades least over the grid; the modality whose loss lowers a group's TPR most; and the change of the
    race TPR gap under group-dependent against random missingness at the same average rate (p = 0.1, 0.3,
    0.5). ``sweep``: a :class:`mmlib.missing.Sweep`."""
    models = list(models)
    lead = models[0]
    low = [p for p in rates if 0 < p <= 0.2]

    def rnd(n, m, p):
        return dict(cohort=n, model=m, protocol="random", rate=p, modality="all")

    lines = []
    for n in cohorts:
        lines.append(f"**{display_name(n)}.**")
        for m in models:
            parts = []
            for p in low:
                au = sweep.difference(("auroc", "overall", "all"), rnd(n, m, 0.0), rnd(n, m, p))
                gaps = {lab: sweep.difference(key, rnd(n, m, 0.0), rnd(n, m, p)) for lab, key in RQ2_GAPS}
                worse = [lab for lab, v in gaps.items() if v.ci_low > 0]
                parts.append(f"at p={p:g} AUROC {fmt_change(*au)}, " + ", ".join(f"{lab} {fmt_change(*v)}"
                                                                                 for lab, v in gaps.items())
                             + (f" (clearly wider: {', '.join(worse)})" if worse else " (no gap clearly wider)"))
            lines.append(f"- `{m}`: " + "; ".join(parts) + ".")
        a = areas[(areas.cohort == display_name(n)) & (areas.metric == metric_label("auroc"))].set_index("model")
        if len(a):
            smooth = a["change"].idxmax()
            lines.append(f"- Smoothest degradation: `{smooth}` loses {-a.loc[smooth, 'change']:.3f} AUROC from p=0 to "
                         f"p={max(rates):g}; " + ", ".join(f"`{m}` {-a.loc[m, 'change']:.3f}"
                                                           for m in a.index if m != smooth) + ".")
        h = harm[harm.cohort == display_name(n)] if len(harm) else harm
        if len(h):
            w = h.loc[h["change"].idxmin()]
            lines.append(f"- The loss that hurts a group most ({lead} model, TPR): losing **{w['modality lost']}** "
                         f"lowers the TPR of **{group_word(w['group'])}** by {-w['change']:.3f} "
                         f"({w['TPR with it']:.3f} → {w['TPR without it']:.3f}).")
        gd = [(p, sweep.difference(("tpr_diff", "race", "gap"), rnd(n, lead, p),
                                   dict(rnd(n, lead, p), protocol="group-dependent")))
              for p in rates if p in (0.1, 0.3, 0.5)
              and sweep.has(**dict(rnd(n, lead, p), protocol="group-dependent"))]
        if gd:
            lines.append("- Unequal missingness alone (paper model): the race TPR gap under group-dependent minus random "
                         "missingness at the same average rate: " + ", ".join(f"p={p:g} {fmt_change(*v)}"
                                                                              for p, v in gd) + ".")
        lines.append("")
    lines.append("The paper reports that fairness degrades already at low missingness. A change whose paired 95% CI "
                 "contains zero is not evidence of degradation; the lines above say which changes exclude it.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ chapter 06
def largest_in_every_seed(per_seed: pd.DataFrame, modality: str, column: str = "share") -> bool:
    """Whether ``modality`` has the largest ``column`` among the modalities in every seed of ``per_seed``
    (:attr:`mmlib.decision.DecisionLayer.per_seed`): a ranking that is not an accident of one seed."""
    wide = per_seed.pivot(index="seed", columns="modality", values=column)
    return bool((wide.idxmax(axis=1) == modality).all())


def gap_change_text(change: Change) -> str:
    """A paired change of a gap in words: ``widens``/``narrows`` when its CI excludes 0, else ``no clear
    change``, with the change and its interval."""
    word = {"rises": "widens", "falls": "narrows"}.get(change.verdict, "no clear change")
    return f"{word}, {fmt_change(*change)}"


def decision_layer_answer(layers: dict, orders: dict, shares: pd.DataFrame, summary, robust: pd.DataFrame) -> str:
    """Chapter 06's answers, per cohort: which modality the decision layer weighs most (share of the weight
    norm) and every share; whether training alone ranks the modalities the same (Spearman correlation of
    the norms); which modalities' share of the logit differs clearly between race groups; and what
    per-modality calibration changes (AUROC, race TPR gap, each with its paired change, and the mean AUROC
    over the missingness grid). ``layers``: ``{cohort: mmlib.decision.DecisionLayer}``."""
    from scipy.stats import spearmanr

    lines = []
    for n, order in orders.items():
        g = layers[n].means(order)
        top = g["share"].idxmax()
        rho = spearmanr(g["norm"], g["alone"]).statistic
        share_text = "shares: " + ", ".join(f"{m} {100 * v:.1f}%" for m, v in g["share"].items())
        if largest_in_every_seed(layers[n].per_seed, top):
            lines.append(f"**{display_name(n)}.** The decision layer gives **{top}** the largest weight norm in every seed "
                         f"({100 * g.loc[top, 'share']:.1f}% of the total on average; an equal split would be "
                         f"{100 / len(g):.1f}%); {share_text}.")
        else:
            lines.append(f"**{display_name(n)}.** No modality has the largest weight norm in every seed: the decision layer "
                         f"weighs the modalities about equally (an equal split would be {100 / len(g):.1f}%); "
                         f"{share_text}.")
        lines.append("- Trained alone, the weight norms rank the modalities "
                     + ("in the same order" if list(g["norm"].rank()) == list(g["alone"].rank()) else "differently")
                     + f" (Spearman correlation with the all-modality norms {rho:.2f}): "
                     + ", ".join(f"{m} {v:.2f}" for m, v in g["alone"].items()) + ". "
                     + ("The disparity persists without fusion, as the paper claims."
                        if rho > 0.5 else "The disparity does not simply persist without fusion here."))
        st = shares[(shares.cohort == display_name(n)) & (shares.attribute == "race")]
        clear = st[st.clear == "yes"]
        if len(st):
            lines.append("- Race: " + ("no modality's share of the logit differs clearly between the race groups"
                                       if clear.empty else "; ".join(
                f"{r.modality}'s share differs by {fmt_change(r.difference, r.ci_low, r.ci_high)} ({r.groups})"
                for r in clear.itertuples())) + ".")
        a, b = ("linear", order.full), ("linear+calibrated", order.full)
        au0, au1 = (summary.estimate("auroc", cohort=n, model=m[0]) for m in (a, b))
        d_au = summary.difference(n, a, b, ("auroc", "overall", "all"))
        r = robust[robust.cohort == n]
        area = {m: curve_area(q["rate"], q["mean"]) for m in ("linear", "linear+calibrated")
                for q in [select(r, "auroc", model=m)]}
        lines.append(f"- Per-modality calibration: AUROC {au0.mean:.3f} → {au1.mean:.3f} (paired change "
                     f"{fmt_change(*d_au)}); mean AUROC over the missingness grid {area['linear']:.3f} → "
                     f"{area['linear+calibrated']:.3f}.")
        gaps = {f"{attr} {g.split('_')[0].upper()} gap": summary.difference(n, a, b, (g, attr, "gap"))
                for attr in ("race", "gender") for g in ("tpr_diff", "dp_diff")}
        worse = [k for k, c in gaps.items() if c.verdict == "rises"]
        lines.append("- Its effect on the gaps (paired change): " + "; ".join(
            f"{k} {gap_change_text(c)}" for k, c in gaps.items()) + ". "
            + (f"**The remedy widens the {', '.join(worse)}**: it hurts the fairness it was meant to help."
               if worse else "No gap widens clearly."))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ chapter 07
CHANGE_KEYS = (("auroc", "overall", "all"), ("tpr_diff", "race", "gap"), ("dp_diff", "race", "gap"),
               ("tpr_diff", "gender", "gap"))
MITIGATION_KEYS = (("auroc", "overall", "all"), ("f1", "overall", "all"), ("tpr_diff", "race", "gap"),
                   ("dp_diff", "race", "gap"), ("tpr_diff", "gender", "gap"))


def change_table(changes: pd.DataFrame, cohort: str, model: str, keys=CHANGE_KEYS) -> pd.DataFrame:
    """Chapter 07's change table of one cohort and model: one row per modality and perturbation, one column
    per metric of ``keys``, cells ``change [95% CI]`` (:func:`mmlib.tables.fmt_change`)."""
    sel = changes[(changes.cohort == cohort) & (changes.model == model)]
    sel = sel.set_index(["metric", "attribute", "group"]).loc[list(keys)].reset_index()
    sel["metric"] = [metric_label(m, a) for m, a in zip(sel["metric"], sel["attribute"])]
    sel["change [95% CI]"] = [fmt_change(c, lo, hi) for c, lo, hi in zip(sel.change, sel.ci_low, sel.ci_high)]
    return sel.pivot_table(index=["modality", "perturbation"], columns="metric", values="change [95% CI]",
                           aggfunc="first")


def mitigation_table(effects: pd.DataFrame, clean: pd.DataFrame, cohorts, models, perturbations,
                     keys=MITIGATION_KEYS) -> pd.DataFrame:
    """Chapter 07's mitigation table: for each cohort and model, the original and the consistency-fine-tuned
    variant (``<model>+consistency``): flip rate (%) under each perturbation (mean over modalities and seeds)
    and the clean metrics of ``keys`` (``mean [95% CI]``)."""
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
                    r = c.loc[key]
                    row[metric_label(key[0], key[1])] = fmt_estimate(r["mean"], r["ci_low"], r["ci_high"])
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


GAP_NAMES = {("tpr_diff", "race"): "race TPR gap", ("dp_diff", "race"): "race DP gap",
             ("tpr_diff", "gender"): "gender TPR gap", ("dp_diff", "gender"): "gender DP gap"}


def mitigation_gap_changes(original: dict, tuned: dict) -> pd.DataFrame:
    """Chapter 07: for each ``(cohort, model)``, the paired change of every race and gender TPR and DP gap from
    the original model (``original[(cohort, model)]``, a :class:`mmlib.interference.Diagnosis`) to its
    fine-tuned version (``tuned``), on the same test resamples, with its verdict (``rises`` = widens)."""
    rows = []
    for (n, m), d in original.items():
        for (g, attr), label in GAP_NAMES.items():
            c = d.clean_change(tuned[(n, m)], (g, attr, "gap"))
            rows.append({"cohort": display_name(n), "model": m, "gap": label, "change": c.change, "ci_low": c.ci_low,
                         "ci_high": c.ci_high, "verdict": c.verdict})
    return pd.DataFrame(rows)


def interference_answer(effects: pd.DataFrame, by_group: pd.DataFrame, control: pd.DataFrame,
                        mitigation: pd.DataFrame, cohorts, models, perturbations,
                        gap_changes: pd.DataFrame | None = None) -> str:
    """Chapter 07's answers, per cohort: for each model, which modality's switch flips the most decisions and
    the range of flip rates under blank or irrelevant content; which modality's interference moves the race
    groups most differently (first model); the positive control's separation; and each model's interference
    flip rate, AUROC and race TPR gap before and after consistency fine-tuning, and (``gap_changes``:
    :func:`mitigation_gap_changes`) which gaps the fine-tuning widens clearly."""
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
            if sw is not None:
                part += f"switching **{sw.idxmax()}** flips the most decisions ({100 * sw.max():.1f}%); "
            if len(noise):
                part += (f"blank or irrelevant content flips {100 * noise.min():.1f}-{100 * noise.max():.1f}% of "
                         f"decisions, most for **{noise.idxmax()}**.")
            lines.append(part)
        b = by_group[(by_group.cohort == n) & (by_group.perturbation != "switch") & (by_group.attribute == "race")]
        if len(b):
            piv = b.groupby(["modality", "group"])["mean_abs_dp"].mean().unstack().dropna(axis=1, how="all").dropna()
            if piv.shape[1] >= 2 and len(piv):
                m = (piv.iloc[:, 1] - piv.iloc[:, 0]).abs().idxmax()
                lines.append(f"- By race (`{lead}`, blank and irrelevant): interference through **{m}** moves "
                             f"{piv.columns[1]} stays by {piv.loc[m].iloc[1]:.3f} on average against "
                             f"{piv.loc[m].iloc[0]:.3f} for {piv.columns[0]} stays.")
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
            if k:
                g = gap_changes[(gap_changes.cohort == display_name(n)) & (gap_changes.model == name)] \
                    if gap_changes is not None else pd.DataFrame()
                wider = g[g.verdict == "rises"] if len(g) else g
                verdict = ("" if not len(g) else
                           " Fine-tuning **widens** " + "; ".join(f"the {r.gap} ({fmt_change(r.change, r.ci_low, r.ci_high)})"
                                                              for r in wider.itertuples())
                           + " (paired): the mitigation hurts fairness there." if len(wider) else
                           " No gap widens clearly (paired changes: " + "; ".join(
                               f"{r.gap} {fmt_change(r.change, r.ci_low, r.ci_high)}" for r in g.itertuples()) + ").")
                lines.append(f"- Mitigation, `{name}`: interference flip rate (blank and irrelevant) "
                             f"{a.loc['original', k].mean():.1f}% → {a.loc['consistency', k].mean():.1f}%; "
                             f"AUROC {a.loc['original', 'AUROC']} → {a.loc['consistency', 'AUROC']}; race TPR gap "
                             f"{a.loc['original', 'TPR difference (race)']} → {a.loc['consistency', 'TPR difference (race)']}."
                             + verdict)
        lines.append("")
    return "\n".join(lines)


__all__ = ["STEP_KEYS", "PERFORMANCE_KEYS", "GAP_KEYS", "Change", "group_word", "single_modality_answer",
           "step_table", "order_table", "direction", "rq1_answer", "largest_in_every_seed", "gap_change_text", "degradation_areas", "modality_harm", "group_factor_note",
           "rq2_answer", "decision_layer_answer", "change_table", "mitigation_table", "mitigation_gap_changes",
           "control_table", "interference_answer", "signed_gap_text", "truth_table", "truth_answer", "against_truth"]
