"""Tables the chapters show: clinical "Table 1", split sizes, rates with confidence intervals, bias audit.

With a credentialed (real) source, every count and share passes through :mod:`mmlib.disclosure`: counts
below 11 are suppressed (shown as ``<11``), and so is every share or statistic of a group of fewer than 11
stays, as MIMIC's data use agreement requires for published aggregates. ``real`` arguments default to
:func:`mmlib.disclosure.active` (the running chapter's ``source``).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from . import disclosure
from .disclosure import MIN_CELL, SUPPRESSED
from .data.races import RACE5, RACE_BINARY
from .schema import COHORT_NAMES, MODALITIES, display_name, target_label


def _real(real: bool | None) -> bool:
    return disclosure.active() if real is None else bool(real)


def _real_cohort(cohort) -> bool:
    """Whether a cohort's tables are shown as a credentialed source's: the running chapter's ``source`` says so,
    or the cohort itself is not synthetic (tables used outside a chapter)."""
    return disclosure.active() or not getattr(cohort, "is_synthetic", True)


def rate_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Proportion ``k / n`` with its Wilson score interval (NaNs when ``n == 0``)."""
    if n == 0:
        return np.nan, np.nan, np.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return k / n, ci.low, ci.high


def rates_by_group(flags: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Long table of the mean of each 0/1 column of ``flags`` by group, with Wilson 95% CIs.

    NaN entries are left out of both numerator and denominator. Columns: ``group, variable, n, rate,
    low, high``.
    """
    rows = []
    for g, idx in groups.groupby(groups, observed=True).groups.items():
        sub = flags.loc[idx]
        for col in flags.columns:
            v = sub[col].dropna().astype(float)
            r, lo, hi = rate_ci(int(v.sum()), len(v))
            rows.append({"group": g, "variable": col, "n": len(v), "rate": r, "low": lo, "high": hi})
    return pd.DataFrame(rows)


def _fmt_mean_sd(x: pd.Series, digits: int = 1) -> str:
    x = x.dropna()
    return f"{x.mean():.{digits}f} ({x.std():.{digits}f})" if len(x) else "–"


def _fmt_median_iqr(x: pd.Series, digits: int = 0) -> str:
    x = x.dropna()
    if not len(x):
        return "–"
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return f"{q2:.{digits}f} [{q1:.{digits}f}–{q3:.{digits}f}]"


def _fmt_count(k: int, n: int, real: bool) -> str:
    """``k (p%)`` (``k`` with thousands separators, as every count of the book); for real data ``<11`` when ``k`` is
    small and ``k`` alone when the share would give a small
    count back (:func:`mmlib.disclosure.share`)."""
    if not n:
        return "–"
    if real and disclosure.small(k):
        return SUPPRESSED
    p = disclosure.share(k, n, real=real)
    return f"{k:,}" if np.isnan(p) else f"{k:,} ({p:.1f}%)"


def table_one(cohort, group: str = "race_binary", by_gender: bool = True) -> pd.DataFrame:
    """Clinical characteristics by ``group`` (and gender): n, age, sex, acuity, vital signs, outcomes.

    Continuous variables as mean (SD) or median [IQR]; binary ones as n (%). Rows are characteristics,
    columns are subgroups plus ``All``. For real data, counts under 11 are suppressed and a subgroup of fewer
    than 11 stays shows no statistic at all.
    """
    st = cohort.stays
    real = _real_cohort(cohort)
    keys = [group, "gender"] if by_gender else [group]
    cols = {"All": st.index}
    groups = st.groupby(keys, observed=True).groups
    order = sorted(groups, key=lambda k: (lambda g: (g == "Unknown", g != "White", str(k)))(
        k[0] if isinstance(k, tuple) else k))
    for k in order:  # White first, Unknown last
        cols[" · ".join(k) if isinstance(k, tuple) else str(k)] = groups[k]
    mods = cohort.modalities
    if cohort.name == "mimic_eye":
        acuity = mods["arrival"]["acuity"]
        vit = mods["vitals"]
        vitals = {"Heart rate (/min)": vit["triage_heartrate"], "Resp. rate (/min)": vit["triage_resprate"],
                  "SpO2 (%)": vit["triage_o2sat"], "Systolic BP (mmHg)": vit["triage_sbp"],
                  "Temperature (°F)": vit["triage_temperature"]}
    else:
        acuity = mods["arrival"].get("vitals_acuity", pd.Series(np.nan, index=st.index))
        vit = mods["vitals"]
        vitals = {"Heart rate (/min)": vit.get("vitals_heartrate_first"),
                  "Resp. rate (/min)": vit.get("vitals_resprate_first"), "SpO2 (%)": vit.get("vitals_o2sat_first"),
                  "Systolic BP (mmHg)": vit.get("vitals_sbp_first"),
                  "Temperature (°C)": vit.get("vitals_temperature_first")}  # MDS-ED converts to Celsius
    rows: dict[str, dict] = {}
    for name, idx in cols.items():
        s = st.loc[idx]
        n = len(s)
        if real and n < MIN_CELL:
            rows[name] = {"n": SUPPRESSED}
            continue
        r = {"n": f"{n:,}",
             "Age, years, mean (SD)": _fmt_mean_sd(s["age"]),
             "Female, n (%)": _fmt_count(int((s["gender"] == "F").sum()), n, real),
             "Triage acuity (ESI 1–5), mean (SD)": _fmt_mean_sd(acuity.loc[idx], 2)}
        for label, series in vitals.items():
            if series is not None:
                r[f"{label}, median [IQR]"] = _fmt_median_iqr(series.loc[idx], 1 if "Temp" in label else 0)
        for t in cohort.targets:
            if t.startswith("diagnoses_") or (t.startswith("deterioration_") and t != cohort.primary_target
                                              and t not in ("deterioration_mortality_28d",)):
                continue
            v = s[t].dropna()
            r[f"{target_label(t)}, n (%)"] = _fmt_count(int(v.sum()), len(v), real)
        rows[name] = r
    return pd.DataFrame(rows).fillna("–")


def split_counts(cohort, group: str = "race_binary", suppress: bool = True) -> pd.DataFrame:
    """Number of stays per split and (group x gender) subgroup.

    For real data with ``suppress`` (the default, for display), counts from 1 to 10 are shown as ``<11``.
    """
    st = cohort.stays
    t = st.groupby(["split", group, "gender"], observed=True).size().unstack("split").fillna(0).astype(int)
    t = t[[c for c in ("train", "val", "test") if c in t.columns]]
    if suppress and (_real_cohort(cohort)):  # never publish a cell under 11 patients
        t = t.map(lambda v: disclosure.count(v, real=True))
    return t


def bias_audit(cohort) -> pd.DataFrame:
    """What each bias knob did, measured on the generated data against the simulator's latent truth.

    One row per (mechanism, race5 group) with the measured quantity; synthetic cohorts only.
    """
    if cohort.truth is None:
        raise ValueError("bias_audit needs a synthetic cohort (its latent truth); real data have none")
    st, tr, m = cohort.stays, cohort.truth, cohort.modalities
    g = st["race5"]
    out = []

    def add(mech, what, series):
        for grp, val in series.groupby(g).mean().items():
            out.append({"mechanism": mech, "measure": what, "group": grp, "value": val})

    if cohort.name == "mimic_eye":
        spo2 = m["vitals"]["triage_o2sat"]
        acuity = m["arrival"]["acuity"]
        add("unequal_access", "chest X-ray available before prediction time", cohort.availability["cxr"].astype(float))
        found = tr["finding_cardiomegaly"] | tr["finding_consolidation"] | tr["finding_edema"] | tr["finding_pleural_effusion"]
        documented = st[["cxr_cardiomegaly", "cxr_consolidation", "cxr_edema", "cxr_pleural_effusion"]].max(axis=1)
        mask = found & cohort.availability["cxr"]
        add("cxr_underdocumentation", "share of X-rays with a true finding that have one documented",
            documented.where(mask))
        add("label_bias", "recorded admission rate", st["admitted"])
        add("label_bias", "admission rate without label bias (truth)", tr["admitted_unbiased"].astype(float))
    else:
        spo2 = m["vitals"]["vitals_o2sat_first"]
        acuity = m["arrival"]["vitals_acuity"]
        # MDS-ED has an ECG in the window on every row: unequal access removes biometrics and labs
        add("unequal_access", "biometrics recorded", m["arrival"]["biometrics_bmi"].notna().astype(float))
        add("unequal_access", "labs within the prediction window", cohort.availability["labs"].astype(float))
        add("label_bias", "recorded ICU transfer within 24 h", st["deterioration_icu_24h"])
        add("label_bias", "ICU transfer without label bias (truth)", tr["icu_24h_unbiased"].astype(float))
    add("spo2_overread", "mean SpO2 − true SaO2 (percentage points)", spo2 - tr["sao2_true"])
    add("under_triage", "mean recorded ESI − ESI without under-triage (levels)", acuity - tr["acuity_unbiased"])
    return pd.DataFrame(out).pivot_table(index=["mechanism", "measure"], columns="group", values="value",
                                         sort=False)


def detection_by_group(predicted: pd.DataFrame, truth: pd.DataFrame, groups: pd.Series | None = None) -> pd.DataFrame:
    """Sensitivity and specificity of each 0/1 column of ``predicted`` against ``truth``, with Wilson 95% CIs.

    Rows with a missing prediction or truth are left out. With ``groups``, one row per (finding, group),
    plus ``All``. Columns: ``finding, group, n_pos, sensitivity, sens_low, sens_high, n_neg, specificity,
    spec_low, spec_high``.
    """
    rows = []
    groups = pd.Series("All", index=truth.index) if groups is None else groups
    parts = [("All", truth.index)] + ([] if (groups == "All").all() else
                                       list(groups.groupby(groups, observed=True).groups.items()))
    for f in truth.columns:
        for g, idx in parts:
            p, t = predicted.loc[idx, f], truth.loc[idx, f]
            ok = p.notna() & t.notna()
            p, t = p[ok].astype(bool), t[ok].astype(bool)
            se = rate_ci(int((p & t).sum()), int(t.sum()))
            sp = rate_ci(int((~p & ~t).sum()), int((~t).sum()))
            rows.append({"finding": f, "group": g, "n_pos": int(t.sum()), "sensitivity": se[0], "sens_low": se[1],
                         "sens_high": se[2], "n_neg": int((~t).sum()), "specificity": sp[0], "spec_low": sp[1],
                         "spec_high": sp[2]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ cohorts and texts (chapters 01-02)
def flow_table(cohort) -> pd.DataFrame:
    """The cohort flow (``Cohort.flow``: each step, stays excluded, stays remaining) as the book shows it, through
    :func:`mmlib.disclosure.flow` (chapter 01)."""
    real = _real_cohort(cohort)
    return disclosure.flow(cohort.flow, real=real).set_index("step")


def flow_note(cohort) -> str:
    """The cohort flow in words (chapter 01): stays read and kept, each exclusion step with its count, and the
    counts the loader recorded in ``Cohort.info`` (values set to missing, stays whose modality was counted as
    missing rather than excluded; a value set to NaN is said to be "missing", a dotted key ``a.b`` reads
    "a (b)"), as Markdown; for real data through :func:`mmlib.disclosure.flow` and
    :func:`mmlib.disclosure.count`."""
    real = _real_cohort(cohort)
    flow = disclosure.flow(cohort.flow, real=real)
    def number(v) -> str:  # a count in prose as the tables write it (_fmt_number): 4,412, or <11 when suppressed
        return _fmt_number(v, 0) if isinstance(v, (int, float, np.number)) and float(v).is_integer() else str(v)

    lines = [f"- {r.step}: {number(r.excluded)} excluded" for r in flow.iloc[1:].itertuples() if r.excluded != 0]
    extra = {k: v for k, v in cohort.info.items() if k != "prediction_hours"}
    def value(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (int, np.integer)):
            return number(disclosure.count(v, real=real))
        if isinstance(v, dict):
            return ", ".join(f"{a.replace('_', ' ')} {value(b)}" for a, b in v.items()) or "none"
        if isinstance(v, (list, tuple)):
            return " / ".join(str(x) for x in v)
        return v

    def words(text: str) -> str:  # prose, not pandas: a value set to missing is "missing", not "NaN"
        return re.sub(r"\bnan\b", "missing", text, flags=re.I)

    def label(k: str) -> str:  # "chexpert_uncertain_as_nan.cxr_edema" -> "chexpert uncertain as missing (cxr edema)"
        head, _, tail = k.partition(".")
        return words(head.replace("_", " ") + (f" ({tail.replace('_', ' ')})" if tail else ""))

    shown = [f"\n- {label(k)}: {words(str(value(v)))}" for k, v in extra.items()]
    return (f"{flow.step.iloc[0]}: {number(flow.remaining.iloc[0])}; {number(len(cohort.stays))} stays kept for "
            f"the study (primary target: {target_label(cohort.primary_target)}, column `{cohort.primary_target}`).\n"
            + ("\n".join(lines) or "- no stay was excluded")
            + "".join(shown))


def smallest_group_note(cohort, group: str = "race_binary", *, design_size: int = 150) -> str:
    """The smallest (``group`` x gender) test subgroup (``Unknown`` race left out) and its size against
    ``design_size``, the subgroup size the demo profile is designed for, as Markdown (chapter 01). With real
    data a size under :data:`MIN_CELL` is not printed."""
    counts = split_counts(cohort, group, suppress=False)
    main = counts.drop(index=[i for i in counts.index if i[0] == "Unknown"], errors="ignore")
    smallest = main["test"].min() if "test" in main else 0
    who = " · ".join(main["test"].idxmin()) if "test" in main else "–"
    shown = smallest if not (_real_cohort(cohort)) or smallest >= MIN_CELL else f"fewer than {MIN_CELL}"
    return (f"Smallest test subgroup: **{who}**, {shown} stays "
            f"({'≥' if smallest >= design_size else '<'} {design_size}, the size the demo profile is designed for).")


def availability_by_group(cohort, group: str = "race_binary") -> pd.DataFrame:
    """Share (%, one decimal) of the stays of each ``group`` that have each modality: one row per modality,
    one column per group (chapter 01). For real data a share that would give a small count back is withheld."""
    from .data.prepare import RACE_GROUPINGS

    g = cohort.availability.groupby(cohort.stays[group])
    k, n = g.sum(), g.size()
    avail = k.apply(lambda col: [disclosure.share(int(v), int(m)) for v, m in zip(col, n)]).round(1)
    return avail.rename_axis(RACE_GROUPINGS.get(group, group)).T.rename_axis("modality (% available)")


def knob_table(knobs) -> pd.DataFrame:
    """The bias knobs of the synthetic cohorts (chapter 01): for each, the scale used (``knobs``, a
    :class:`mmlib.data.BiasKnobs`), the mechanism, its size at scale 1 by group and the literature behind it, as
    short citations (``Sjoding et al. 2020``) whose full references are in the book's bibliography
    (:data:`mmlib.data.latent.KNOB_REFERENCES`; chapter 01 cites them next to the table)."""
    from .data.latent import GROUP_EFFECTS, KNOB_DOCS, KNOB_REFERENCES

    return pd.DataFrame([{"knob": k, "scale used": getattr(knobs, k), "mechanism": doc,
                          **{f"size at 1: {g}": v for g, v in GROUP_EFFECTS[k].items()},
                          "literature": "; ".join(KNOB_REFERENCES[k].values())}
                         for k, doc in KNOB_DOCS.items()]).set_index("knob")


def bias_audit_note(audit: pd.DataFrame, knobs) -> str:
    """Pulse-oximetry over-reading and under-triage of Black against White patients, from MIMIC-Eye's
    :func:`bias_audit`, with the knob scales that produced them, as one sentence (chapter 01)."""
    spo2 = audit.loc[("spo2_overread", "mean SpO2 − true SaO2 (percentage points)")]
    tri = audit.loc[("under_triage", "mean recorded ESI − ESI without under-triage (levels)")]
    return (f"In MIMIC-Eye, pulse oximetry over-reads by {spo2['Black']:+.2f} points for Black patients against "
            f"{spo2['White']:+.2f} for White patients, and triage is {tri['Black']:+.2f} ESI levels less severe "
            f"for Black patients against {tri['White']:+.2f} for White patients (knob scales "
            f"{knobs.spo2_overread:g} and {knobs.under_triage:g}).")


def cohort_overview(summary: dict) -> pd.DataFrame:
    """Chapter 01's summary (:func:`mmlib.data.prepare.cohort_summary`) as a table: stays, origin and stays per
    split, one column per cohort."""
    return pd.DataFrame({n: {"stays": s["stays"], "origin": s["origin"],
                             **{f"{k} stays": v for k, v in s["splits"].items()}} for n, s in summary.items()})


def text_length_table(words: pd.DataFrame) -> pd.DataFrame:
    """Words per text by cohort and modality (chapter 02; ``words`` from :func:`mmlib.text.word_counts`): texts,
    mean, median and 90th percentile -- quantiles rather than a maximum, which would be one stay's text."""
    g = words.groupby(["cohort", "modality"])["words"]
    return pd.DataFrame({"texts": g.size(), "mean": g.mean(), "median": g.median(),
                         "90th percentile": g.quantile(0.9)}).round(1)


def text_counts(cohorts: dict, texts: dict) -> pd.DataFrame:
    """Per cohort and modality (chapter 02): stays with the modality, stays with a text, and the difference
    (images that could not be read, flat-line ECGs: treated as missing). ``cohorts`` and ``texts`` (one
    :func:`mmlib.text.cohort_texts` frame each) are keyed by cohort name."""
    rows = []
    for name, t in texts.items():
        for m in t.columns:
            before, after = int(cohorts[name].availability[m].sum()), int(t[m].notna().sum())
            rows.append({"cohort": display_name(name), "modality": m, "available": before, "texts": after,
                         "unreadable → missing": before - after})
    return pd.DataFrame(rows).set_index(["cohort", "modality"])


def transcription_fidelity(cohort, texts: pd.DataFrame, *, cxr_backend: str = "offline",
                           ecg_backend: str = "offline", by=("race_binary", "gender")) -> pd.DataFrame:
    """Fidelity of a synthetic cohort's transcribed modality (MIMIC-Eye: the X-ray reports, MDS-ED: the ECG
    interpretations, in ``texts``) against the simulator's truth, by each grouping of ``by`` (chapter 02).

    Rows of :func:`detection_by_group` with ``source`` (``"<backend> reader"``; for MIMIC-Eye also
    ``"recorded labels"``, the ``cxr_chexpert`` labels against the same truth), ``cohort`` and ``by``.
    """
    from .text import transcription_truth

    modality, backend = ("cxr", cxr_backend) if cohort.name == "mimic_eye" else ("ecg", ecg_backend)
    ft = transcription_truth(cohort, texts[modality])
    parts = []
    for b in by:
        g = cohort.stays.loc[ft["truth"].index, b]
        d = detection_by_group(ft["reader"], ft["truth"], g).assign(source=f"{backend} reader")
        if "labels" in ft:
            d = pd.concat([d, detection_by_group(ft["labels"], ft["truth"], g).assign(source="recorded labels")])
        parts.append(d.assign(cohort=cohort.name, by=b))
    return pd.concat(parts, ignore_index=True)


def label_fidelity_note(fidelity: pd.DataFrame, *, backend: str = "offline") -> str:
    """Sensitivity for consolidation of MIMIC-Eye's recorded labels and of its ``backend`` X-ray reader in White
    and non-White patients (:func:`transcription_fidelity`), as one sentence (chapter 02)."""
    f = fidelity[fidelity["by"] == "race_binary"].set_index(["source", "finding", "group"])["sensitivity"]
    lab_w, lab_n = f[("recorded labels", "consolidation", "White")], f[("recorded labels", "consolidation", "non-White")]
    rd_w, rd_n = f[(f"{backend} reader", "consolidation", "White")], f[(f"{backend} reader", "consolidation", "non-White")]
    return (f"Consolidation: the recorded labels capture {lab_w:.0%} of true consolidations in White patients and "
            f"{lab_n:.0%} in non-White patients; the {backend} reader, which sees only the pixels, finds "
            f"{rd_w:.0%} and {rd_n:.0%}. A label-trained model inherits the first gap; a model trained on the "
            f"reader's text sees the second.")


def fidelity_overview(fidelity: pd.DataFrame) -> pd.DataFrame:
    """Positives, sensitivity and specificity over all stays (group ``All``) per cohort, source and finding of a
    :func:`transcription_fidelity` table (chapter 02)."""
    cols = ["cohort", "source", "finding"]
    return (fidelity[fidelity.group == "All"].drop_duplicates(cols)[cols + ["n_pos", "sensitivity", "specificity"]]
            .round(3).set_index(cols))


# --------------------------------------------------------------------------- model results (chapters 03+)
PAPER_COLUMNS = (("f1", "overall"), ("auroc", "overall"), ("auprc", "overall"), ("balanced_accuracy", "overall"),
                 ("dp_diff", "race"), ("dp_diff", "gender"), ("tpr_diff", "race"), ("tpr_diff", "gender"),
                 ("eo_diff", "race"), ("eo_diff", "gender"))
#: the signed gaps (group − reference) by race and gender, for :func:`results_table` next to the paper's columns
SIGNED_COLUMNS = (("tpr_signed", "race"), ("dp_signed", "race"), ("fpr_signed", "race"), ("tpr_signed", "gender"),
                  ("dp_signed", "gender"), ("fpr_signed", "gender"))
#: how a column of the paper's gaps (max − min over groups) is marked
PAPER_GAP_MARK = "the paper's gap (max − min)"


def column_label(metric: str, attribute: str = "overall") -> str:
    """Column name of a (metric, attribute) pair in :func:`results_table`: ``AUROC``, ``TPR gap, signed (group −
    reference) (race)``; the paper's gaps (``dp_diff``, ``dp_ratio``, ``tpr_diff``, ``eo_diff``) are marked
    :data:`PAPER_GAP_MARK`, since they can never be below 0 and are biased upwards when groups do not differ."""
    from .metrics import ATTRIBUTE_LABELS, GAPS, METRIC_LABELS

    name = METRIC_LABELS[metric] + ("" if attribute == "overall" else f" ({ATTRIBUTE_LABELS[attribute]})")
    return f"{name}, {PAPER_GAP_MARK}" if metric in GAPS else name


def fmt_estimate(mean: float, ci_low: float = np.nan, ci_high: float = np.nan, sd: float = np.nan, *,
                 digits: int = 3) -> str:
    """An estimate with its interval: ``mean [low, high]``, or ``mean ± sd [low, high]`` when the across-seed
    ``sd`` is given (``–`` when not estimable). Takes a :class:`mmlib.metrics.Estimate` unpacked:
    ``fmt_estimate(*est)``. The one estimate formatter of the book."""
    if not np.isfinite(mean):
        return "–"
    s = f"{mean:.{digits}f}"
    if np.isfinite(sd):
        s += f" ± {sd:.{digits}f}"
    if np.isfinite(ci_low):
        s += f" [{ci_low:.{digits}f}, {ci_high:.{digits}f}]"
    return s


def fmt_value(value: float, *, digits: int = 3, signed: bool = False) -> str:
    """A bare estimate in prose: ``0.714``, or ``+0.031`` with ``signed`` (a gap); ``–`` when not estimable
    (NaN), never ``nan``. The findings' sentences use it for every number they print without an interval."""
    if not np.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_change(change: float, ci_low: float, ci_high: float, *, digits: int = 3) -> str:
    """A signed paired change with its interval: ``+0.012 [-0.010, +0.031]`` (``–`` when not estimable). Takes a
    :class:`mmlib.metrics.Change` unpacked: ``fmt_change(*chg)``. The one change formatter of the book."""
    if not np.isfinite(change):
        return "–"
    if not np.isfinite(ci_low):
        return f"{change:+.{digits}f}"
    return f"{change:+.{digits}f} [{ci_low:+.{digits}f}, {ci_high:+.{digits}f}]"


def results_table(table: pd.DataFrame, cohort: str, model: str, rows: list[str] | None = None,
                  columns=PAPER_COLUMNS, digits: int = 3) -> pd.DataFrame:
    """The paper's Tables 1-2 layout: one row per modality set (in ``rows`` order, default as they appear),
    one column per (metric, attribute) named by :func:`column_label` (the paper's gaps marked as such), cells
    ``mean ± sd [95% CI]`` (:func:`fmt_estimate`); a gap whose row is flagged (e.g. a group too small to
    compare) gets a trailing ``*``. ``columns=PAPER_COLUMNS + SIGNED_COLUMNS`` adds the signed gaps."""
    from .metrics import select

    t = table[(table["cohort"] == cohort) & (table["model"] == model)]
    if t.empty:
        raise ValueError(f"no results for cohort {cohort!r}, model {model!r}")
    rows = rows or list(dict.fromkeys(t["modalities"]))
    out = {}
    for metric, attr in columns:
        col = column_label(metric, attr)
        vals = []
        for r in rows:
            hit = select(t, metric, attr, modalities=r)
            if hit.empty:
                vals.append("–")
                continue
            h = hit.iloc[0]
            vals.append(fmt_estimate(h["mean"], h["ci_low"], h["ci_high"], h["sd"], digits=digits)
                        + (" *" if h["flag"] else ""))
        out[col] = vals
    return pd.DataFrame(out, index=pd.Index(rows, name="modalities"))


def models_side_by_side(table: pd.DataFrame, cohort: str, modalities: str, models: list[str],
                        columns: list[str] | None = None) -> pd.DataFrame:
    """Chapter 06's comparison of ``models`` on one set of ``modalities`` of ``cohort``: the :func:`results_table`
    row of each model (``columns``; default the paper's columns then the signed gaps), indexed by the model."""
    columns = PAPER_COLUMNS + SIGNED_COLUMNS if columns is None else columns
    return pd.concat([results_table(table, cohort, m, rows=[modalities], columns=columns).rename(index={modalities: m})
                      for m in models])


def group_rates(table: pd.DataFrame, cohort: str, model: str, modalities: str, attribute: str,
                real: bool | None = None, digits: int = 3) -> pd.DataFrame:
    """Per-group selection rate, TPR and FPR (``mean ± sd [CI]``) with the group's test size, positives and
    flag, for one run. With ``real`` data, counts below :data:`MIN_CELL` are shown as ``<11`` and the rates of
    a group too small to estimate (:func:`mmlib.disclosure.withheld`) are not shown."""
    real = _real(real)
    t = table[(table["cohort"] == cohort) & (table["model"] == model) & (table["modalities"] == modalities)
              & (table["attribute"] == attribute) & (table["group"] != "gap")]
    if t.empty:
        raise ValueError(f"no per-group results for {cohort}/{model}/{modalities}/{attribute}")
    rows = []
    for g, sub in t.groupby("group", sort=True):
        r = sub.set_index("metric")
        n, k = int(r["n"].iloc[0]), int(r["n_pos"].iloc[0])
        row = {"group": g, "n": disclosure.count(n, real=real), "positives": disclosure.count(k, real=real)}
        hide = real and str(r["flag"].iloc[0]).startswith("too ")
        for m in ("selection_rate", "tpr", "fpr"):
            if m in r.index and hide:
                row[m.replace("_", " ") if m == "selection_rate" else m.upper()] = "withheld (small group)"
            elif m in r.index:
                row[m.replace("_", " ") if m == "selection_rate" else m.upper()] = fmt_estimate(
                    r.loc[m, "mean"], r.loc[m, "ci_low"], r.loc[m, "ci_high"], r.loc[m, "sd"], digits=digits)
        row["flag"] = r["flag"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows).set_index("group")


# ----------------------------------------------------------------------- modelling data (chapters 03-07)
def split_sizes(data: dict) -> pd.DataFrame:
    """Stays and positive share (%) per cohort and split of ``{cohort: FusionData}`` (chapter 03)."""
    rows = [{"cohort": display_name(n), "split": s, "stays": len(d.rows(s)), "target": target_label(d.target),
             "positive (%)": round(100 * d.y[d.rows(s)].mean(), 1)}
            for n, d in data.items() for s in ("train", "val", "test")]
    return pd.DataFrame(rows).set_index(["cohort", "split"])


def availability(data: dict, split: str = "test") -> pd.DataFrame:
    """Share (%) of the ``split`` stays that have each modality, one column per cohort (``–``: not a modality
    of that cohort)."""
    def shares(d):
        m = d.mask[d.rows(split)]
        return pd.Series([disclosure.share(int(k), len(m)) for k in m.sum(0)], index=d.modalities).round(1)

    return pd.DataFrame({display_name(n): shares(d) for n, d in data.items()}).fillna("–")


def exclusions(data: dict) -> pd.DataFrame:
    """The stays each cohort left out of modelling, and why (``FusionData.excluded``)."""
    return pd.concat([d.excluded.assign(cohort=display_name(n)) for n, d in data.items()]).set_index("cohort")


def test_groups(data: dict, real: bool | None = None) -> pd.DataFrame:
    """Test stays by race group and gender, one column per cohort; with ``real`` data, counts under
    :data:`MIN_CELL` are shown as ``<11``."""
    groups = pd.concat({display_name(n): d.stays.iloc[d.rows("test")].groupby(["race", "gender"]).size()
                        for n, d in data.items()}, axis=1).fillna(0).astype(int)
    return groups.map(lambda v: disclosure.count(v, real=True)) if _real(real) else groups


def config_table(cfg) -> pd.DataFrame:
    """The training configuration (:class:`mmlib.train.TrainConfig`), one row per setting."""
    from .train import config_dict

    return pd.DataFrame({"value": {k: str(v) for k, v in config_dict(cfg).items()}})


def model_table(models) -> pd.DataFrame:
    """What each model of ``models`` is (:data:`mmlib.models.MODEL_DOCS`)."""
    from .models import MODEL_DOCS

    return pd.DataFrame({"model": list(models), "what it is": [MODEL_DOCS[m] for m in models]}).set_index("model")


def fit_summary(log: pd.DataFrame) -> pd.DataFrame:
    """Per cohort and model of a training log: fits, mean epochs, mean best epoch and CPU seconds."""
    return log.groupby(["cohort", "model"]).agg(fits=("seed", "size"), mean_epochs=("epochs", "mean"),
                                                mean_best_epoch=("best_epoch", "mean"),
                                                cpu_seconds=("seconds", "sum")).round(1)


# ------------------------------------------------------------------------------------------ tables on the page
#: The most columns (index levels included) a table shows on the page; more are shown in parts.
PAGE_COLUMNS = 6
#: The most characters a table's row may need on the page (each column: its longest cell, or its header's longest
#: word, plus 2): about what the content column (676 px in the Jupyter Book theme, the PDF's 8 pt tables alike)
#: holds without wrapping a cell (an interval may take a second line). A table needing more is shown in parts, each
#: with the index, so a "mean ± sd [CI]" cell takes two lines, not five.
PAGE_CHARS = 72

#: How a cell with no value is shown on the page (never ``NaN``), and the note under a table that has one.
MISSING = "–"
MISSING_NOTE = (f"{MISSING}: no value; not estimable from these data (e.g. too few stays or events in a group to "
                f"compare) or not applicable (e.g. a modality the cohort does not have).")
#: The most decimals a number is shown with when the table's builder rounded it (e.g. ``.round(4)``); a number
#: that was not rounded gets :func:`_default_decimals`.
MAX_DECIMALS = 4
#: Column and index names of computed tables as the page shows them (:func:`page_frame`): the data frames and their
#: CSV downloads keep the names code uses. Cohort keys are shown as :data:`mmlib.schema.COHORT_NAMES` wherever they
#: appear (names, labels or cells).
HEADER_LABELS = {"ci_low": "95% CI low", "ci_high": "95% CI high", "cpu_seconds": "CPU seconds",
                 "mean_epochs": "mean epochs", "mean_best_epoch": "mean best epoch", "n_pos": "positives",
                 "n_neg": "negatives", "n_seeds": "seeds", "race_binary": "race (White / non-White)",
                 "race5": "race (5 groups)", "sens_low": "sensitivity 95% CI low",
                 "sens_high": "sensitivity 95% CI high", "spec_low": "specificity 95% CI low",
                 "spec_high": "specificity 95% CI high"}


#: The race group labels a table can hold (:func:`_axis_order` orders them by :func:`mmlib.metrics.group_order`) and
#: the book's order of modalities (each cohort's order, :data:`mmlib.schema.MODALITIES`).
_GROUP_LABELS = frozenset(("All", *RACE5, *RACE_BINARY))
_MODALITY_RANK = {m: i for i, m in enumerate(dict.fromkeys(m for ms in MODALITIES.values() for m in ms))}


def _axis_order(index: pd.Index) -> np.ndarray | None:
    """The positions that put an index (or the columns) in the book's order: a level whose values are all race
    groups (``Unknown``, ``White``, ``non-White`` -- a ``groupby`` sorts them alphabetically, ``Unknown`` first) or all
    modalities (``arrival``, ``codes``, ``cxr``, ``vitals``) is ranked by :func:`mmlib.metrics.group_order` /
    :data:`_MODALITY_RANK`;
    every other level keeps the order in which its values first appear, and the sort is stable, so rows that are
    already in order stay where they are. None when nothing moves."""
    from .metrics import group_order

    if len(index) < 2:
        return None
    keys, ranked = [], False
    for i in range(index.nlevels):
        values = list(index.get_level_values(i))
        strings = all(isinstance(v, str) for v in values) and len(set(values)) > 1
        if strings and set(values) <= _GROUP_LABELS:
            rank = {g: k for k, g in enumerate(group_order(values))}
        elif strings and set(values) <= set(_MODALITY_RANK):
            rank = _MODALITY_RANK
        else:
            rank = None
        if rank is not None:
            keys.append([rank[v] for v in values])
            ranked = True
        else:
            first = {v: k for k, v in reversed(list(enumerate(values)))}
            keys.append([first[v] for v in values])
    if not ranked:
        return None
    order = np.lexsort(keys[::-1])
    return None if (order == np.arange(len(index))).all() else order


def _in_book_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its rows and columns in the book's order of race groups and modalities (:func:`_axis_order`)."""
    rows, cols = _axis_order(df.index), _axis_order(df.columns)
    df = df if rows is None else df.iloc[rows]
    return df if cols is None else df.iloc[:, cols]


def _cohorts_in_book_order(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its rows in the book's cohort order when its first index level is ``cohort`` (a stable sort: the
    rows of one cohort keep their order; a cohort the book does not know comes after, as it was)."""
    if df.index.names[0] != "cohort" or len(df) < 2:
        return df
    rank = {c: i for i, c in enumerate(COHORT_NAMES)} | {name: i for i, name in enumerate(COHORT_NAMES.values())}
    keys = [rank.get(v, len(rank)) if isinstance(v, str) else len(rank) for v in df.index.get_level_values(0)]
    order = np.argsort(keys, kind="stable")
    return df if (order == np.arange(len(df))).all() else df.iloc[order]


def _reader_label(v, header: bool):
    """One name, label or cell as the page shows it: a cohort key as the cohort's display name and, for names
    and labels (``header``), a computed column's name from :data:`HEADER_LABELS`; anything else as it is."""
    if not isinstance(v, str):
        return v
    v = display_name(v)
    return HEADER_LABELS.get(v, v) if header else v


def _reader_axis(index: pd.Index, header: bool) -> pd.Index:
    """An index or the columns with every level's values and names through :func:`_reader_label` (the values as
    headers when ``header``: the columns; the row index's values are cells)."""
    names = [_reader_label(n, True) for n in index.names]
    arrays = [index.get_level_values(i) for i in range(index.nlevels)]
    relabelled = [[_reader_label(v, header) for v in a] for a in arrays]
    if names == list(index.names) and all(list(a) == r for a, r in zip(arrays, relabelled)):
        return index  # nothing to relabel: the index as it was (its dtype too)
    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_arrays(relabelled, names=names)
    return pd.Index(relabelled[0], name=names[0], dtype=object)


#: Columns whose numbers are never shown with thousands separators (identifiers, seeds, years).
_NO_SEPARATOR = re.compile(r"(^|[\s_])(id|ids|seed|seeds|year|years|fold|folds)($|[\s_])", re.I)
#: Columns of rates, probabilities and scores: shown with 3 decimals at least, whatever their values.
_RATE_COLUMN = re.compile(r"(?<![a-z])(auroc|auprc|f1|rates?|tpr|fpr|sensitivity|specificity|accuracy|probability|"
                          r"ece|gap|difference|share)(?![a-z])", re.I)
#: A text cell that only says "not a number" (``nan``, ``[+nan, +nan]``, ``nan ± nan``).
_NAN_TEXT = re.compile(r"^[\s\[\](),;+\-−±]*(nan|NaN|None|<NA>)([\s\[\](),;+\-−±]*(nan|NaN|None|<NA>))*[\s\[\](),;+\-−±]*$")


def _is_missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return isinstance(v, str) and bool(_NAN_TEXT.match(v))


def _decimals_of(values: np.ndarray) -> int | None:
    """The fewest decimals (at most :data:`MAX_DECIMALS`) that write every finite number of ``values`` exactly,
    up to float32 rounding (``40.400002`` is ``40.4`` stored in float32); None when they need more (numbers
    nobody rounded)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0
    tol = 2e-7 * np.abs(v) + 1e-12  # float32 keeps 24 bits: a relative error of 6e-8 at most
    for d in range(MAX_DECIMALS + 1):
        if (np.abs(v - np.round(v, d)) <= tol).all():
            return d
    return None


def _default_decimals(values: np.ndarray) -> int:
    """Decimals for numbers that were not rounded: 3 (rates, AUROC, log-odds), 1 from 100, 0 from 10,000."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    top = v[np.isfinite(v)].max() if np.isfinite(v).any() else 0.0
    return 0 if top >= 1e4 else 1 if top >= 100 else 3


def _column_decimals(values, name: str = "") -> int:
    """Decimals of one column's numbers: as few as write them exactly (:func:`_decimals_of`), else
    :func:`_default_decimals`; a rate column (:data:`_RATE_COLUMN`) of numbers within [-1, 1] gets 3 at least."""
    v = np.asarray(values, dtype=np.float64)
    d = _decimals_of(v)
    d = _default_decimals(v) if d is None else d
    finite = v[np.isfinite(v)]
    if _RATE_COLUMN.search(name) and len(finite) and (np.abs(finite) <= 1).all() and not (finite == np.round(finite)).all():
        d = max(d, 3)
    return d


def _fmt_number(v, decimals: int, separators: bool = True) -> str:
    """One number as the page shows it: ``4,313``, ``0.712``, ``-0.050`` (no ``-0.000``: shown as ``0.000``)."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if decimals == 0 or isinstance(v, (int, np.integer)):
        s = f"{int(round(float(v))):,}" if separators else f"{int(round(float(v)))}"
    else:
        s = f"{float(v):,.{decimals}f}" if separators else f"{float(v):.{decimals}f}"
    return s[1:] if s.startswith("-") and not any(c in "123456789" for c in s) else s


def _format_values(values: pd.Series | pd.Index, name: str = "") -> tuple[list, bool]:
    """The cells of one column (or index level) as text: numbers by :func:`_column_decimals` (integers, and
    floats that hold whole numbers, as integers with thousands separators), text as it is, missing values as
    :data:`MISSING`. Also whether a missing value was replaced."""
    vals = list(values)
    sep = not _NO_SEPARATOR.search(name) and not disclosure.ID_COLUMN.match(name)
    nums = [float(v) for v in vals if isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)) and np.isfinite(v)]
    numeric_column = pd.api.types.is_numeric_dtype(getattr(values, "dtype", object)) and not \
        pd.api.types.is_bool_dtype(getattr(values, "dtype", object))
    decimals = _column_decimals(nums, name) if numeric_column else None
    out, missing = [], False
    for v in vals:
        if _is_missing(v):
            out.append(MISSING)
            missing = True
        elif isinstance(v, (bool, np.bool_)):
            out.append(_fmt_number(v, 0))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            if isinstance(v, (float, np.floating)) and not np.isfinite(v):
                out.append("∞" if v > 0 else "−∞")
            else:  # a mixed (object) column: each number on its own
                d = decimals if decimals is not None else _column_decimals([float(v)], name)
                out.append(_fmt_number(v, d, sep))
        else:
            out.append(v)
    return out, missing


def _label(v) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, tuple) else str(v)


def interval_cells(est, lo, hi, *, digits: int = 3, signed: bool | None = None) -> list[str]:
    """One cell per estimate with its interval: :func:`fmt_change` (``+0.012 [-0.003, +0.029]``) when ``signed``, or
    when ``signed`` is None and any number is below 0, else :func:`fmt_estimate`; :data:`MISSING` where the estimate
    is not finite. Used by :func:`page_frame` and :func:`mmlib.findings.group_share_table`."""
    est, lo, hi = (np.asarray(a, dtype=float) for a in (est, lo, hi))
    if signed is None:
        values = np.concatenate([est, lo, hi])
        signed = bool((values[np.isfinite(values)] < 0).any())
    fmt = fmt_change if signed else fmt_estimate
    return [fmt(e, a, b, digits=digits) if np.isfinite(e) else MISSING for e, a, b in zip(est, lo, hi)]


def _with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the estimate column followed by ``ci_low`` and ``ci_high`` shown as one column,
    ``estimate [low, high]`` (:func:`fmt_change` with signs when any of them is below 0, else :func:`fmt_estimate`;
    the estimate column's decimals, :func:`_column_decimals`), headed ``<estimate> [95% CI]``: split over a table's
    parts, an estimate would otherwise stand apart from its interval. Used by :func:`page_frame`."""
    cols = list(df.columns)
    if df.columns.nlevels > 1 or not {"ci_low", "ci_high"} <= set(cols):
        return df
    for i in range(1, len(cols) - 1):
        if cols[i:i + 2] == ["ci_low", "ci_high"] and pd.api.types.is_numeric_dtype(df[cols[i - 1]].dtype) \
                and not pd.api.types.is_bool_dtype(df[cols[i - 1]].dtype):
            est, lo, hi = (df.iloc[:, k].astype(float) for k in (i - 1, i, i + 1))
            digits = _column_decimals(est[np.isfinite(est)].to_numpy(), str(cols[i - 1]))
            merged = interval_cells(est, lo, hi, digits=max(digits, 1))
            out = df.drop(columns=["ci_low", "ci_high"])
            out.isetitem(i - 1, pd.Series(merged, index=df.index, dtype=object))
            return out.rename(columns={cols[i - 1]: f"{_label(cols[i - 1])} [95% CI]"})
    return df


def page_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """A DataFrame's cells as the book's page shows them (:func:`page_html`), all text: integers and whole-number
    floats (counts) as integers with thousands separators (``4,313``, never ``4313.0``); other numbers with the
    decimals of their column, as few as write every value exactly up to float32 rounding (so ``40.400002`` is
    ``40.4``; a table rounded to 3 decimals keeps 3), at most :data:`MAX_DECIMALS`, and 3 (rates, AUROC, log-odds)
    for numbers nobody rounded; rate columns at least 3; ``NaN`` and ``nan`` text as :data:`MISSING`. Float index
    levels and column labels are formatted the same way (without the rate rule: a missingness rate ``0.1`` stays
    ``0.1``). Names read as words: a cohort key anywhere (name, label or cell) as the cohort's display name
    (``mds_ed`` -> ``MIMIC-IV-Ext-MDS-ED``), a computed column's name by :data:`HEADER_LABELS` (``ci_low`` -> ``95% CI
    low``); the frame itself, and its CSV download, keep the names code uses. Returns the text frame and whether a
    missing value was replaced. Already formatted text (``"0.712 ± 0.010 [0.690, 0.731]"``, ``"<11"``) is left as it is, so the
    disclosure filter (:func:`mmlib.disclosure.frame`), applied before, is never undone. A table whose first index
    level is ``cohort`` lists the cohorts in the book's order (MIMIC-Eye first, :data:`mmlib.schema.COHORT_NAMES`),
    each cohort's rows in their own order (a ``groupby`` sorts the keys alphabetically, ``mds_ed`` first), and race
    groups and modalities in the book's order (White first and Unknown last; arrival, vitals, ...:
    :func:`_in_book_order`). An estimate column followed by ``ci_low`` and ``ci_high`` becomes one column,
    ``estimate [low, high]`` (:func:`_with_intervals`)."""
    df = _with_intervals(_in_book_order(_cohorts_in_book_order(df)))
    out = pd.DataFrame(index=df.index, columns=df.columns, dtype=object)
    missing = False
    for j in range(df.shape[1]):
        cells, miss = _format_values(df.iloc[:, j], _label(df.columns[j]))
        out.isetitem(j, pd.Series(cells, index=df.index, dtype=object))
        missing |= miss

    def axis(index: pd.Index) -> pd.Index:
        if isinstance(index, pd.MultiIndex):
            if not any(pd.api.types.is_float_dtype(lv.dtype) for lv in index.levels):
                return index
            arrays = [index.get_level_values(i) for i in range(index.nlevels)]
            return pd.MultiIndex.from_arrays(
                [_format_values(a)[0] if pd.api.types.is_float_dtype(a.dtype) else a
                 for a, nm in zip(arrays, index.names)], names=index.names)
        if pd.api.types.is_float_dtype(index.dtype):
            return pd.Index(_format_values(index)[0], name=index.name)
        return index

    out.index, out.columns = _reader_axis(axis(df.index), False), _reader_axis(axis(df.columns), True)
    return out.map(lambda v: _reader_label(v, False)), missing


#: A cell of numbers (``4,313``, ``0.712 ± 0.010 [0.690, 0.731]``, ``<11``, ``12 (3.4%)``), which should not wrap
#: except before its interval; any other cell is text, which wraps like prose.
_NUMBER_CELL = re.compile(r"^[\s\d.,±+\-−–%()\[\]<>∞×/]*$")
#: The width, in characters, a text cell is given before it wraps (a longer word widens its column).
TEXT_CHARS = 18


def _cell_chars(v) -> int:
    """Characters one formatted cell needs on one line of the page (:func:`_chars`)."""
    v = str(v)
    if _NUMBER_CELL.match(v):
        return max(len(piece) for piece in v.replace(" [", "\n[").split("\n"))
    return max([len(w) for w in v.split()] + [min(len(v), TEXT_CHARS)])


def _chars(values, header) -> int:
    """Characters a column needs on the page, plus 2 (the cell's padding): its widest cell -- a number in full,
    except that an interval may go on a second line (``0.712 ± 0.010 [0.690, 0.731]`` needs the width of ``[0.690,
    0.731]``); text up to :data:`TEXT_CHARS`, as it wraps -- or its header's longest word (headers wrap)."""
    words = [len(w) for w in _label(header).split()] if header is not None else []
    return max([_cell_chars(v) for v in values] + words + [1]) + 2


def _page_parts(shown: pd.DataFrame, max_columns: int, max_chars: int) -> list[list[int]]:
    """The column positions of each part of a formatted table on the page: consecutive columns, as many a part as
    fit beside the index in ``max_columns`` cells a row and ``max_chars`` characters (:func:`_chars`); at least two
    columns a part, however wide the index (its text cells wrap), so that a part still compares something."""
    index = shown.index
    used0 = sum(_chars(index.get_level_values(i), index.names[i]) for i in range(index.nlevels))
    parts, part, used = [], [], used0
    for j in range(shown.shape[1]):
        need = _chars(shown.iloc[:, j], shown.columns[j])
        if len(part) >= 2 and (used + need > max_chars or index.nlevels + len(part) + 1 > max_columns):
            parts.append(part)
            part, used = [], used0
        part.append(j)
        used += need
    return parts + [part] if part else parts


def page_html(df: pd.DataFrame, max_columns: int = PAGE_COLUMNS, max_chars: int = PAGE_CHARS) -> str:
    """A DataFrame as the book's page shows it (every chapter; :func:`install_page_tables`), its numbers formatted
    for reading (:func:`page_frame`), with :data:`MISSING_NOTE` under it when a cell has no value: as it is when it
    fits the content column (at most ``max_columns`` cells a row, index levels included, and ``max_chars``
    characters, :data:`PAGE_CHARS`); otherwise in consecutive parts of its columns, each with the index and as many
    columns as fit (:func:`_page_parts`), under a line that says so and links the full table, at full precision,
    as a CSV download (a ``data:`` link, so the page needs no file beside it). The caller applies the disclosure
    filter first (:func:`install_page_tables` does)."""
    import html as html_lib

    shown, missing = page_frame(df)
    note = f"\n<p><em>{html_lib.escape(MISSING_NOTE)}</em></p>" if missing or _has_dash(shown) else ""
    columns = _page_parts(shown, max_columns, max_chars)
    if len(columns) <= 1:
        return _to_html(shown) + note
    parts = [shown.iloc[:, cols] for cols in columns]
    link = csv_link(df, "the full table (CSV)")
    head = (f"<p><em>{html_lib.escape(f'{df.shape[1]} columns, shown in {len(parts)} parts')}; download "
            f"{link}.</em></p>")
    return head + "\n".join(_to_html(p) for p in parts) + note


def csv_link(df: pd.DataFrame, text: str) -> str:
    """An HTML link that downloads ``df`` at full precision as a CSV file (a ``data:`` link, so the page needs no
    file beside it; the file is named by a hash of its content). The caller applies the disclosure filter."""
    import base64
    import hashlib
    import html as html_lib

    csv = df.to_csv().encode("utf-8")
    name = f"table-{hashlib.sha1(csv).hexdigest()[:8]}.csv"
    return (f'<a download="{name}" href="data:text/csv;charset=utf-8;base64,{base64.b64encode(csv).decode()}">'
            f"{html_lib.escape(text)}</a>")


def downloads(frames: dict, what: str):
    """Tables offered as CSV downloads instead of shown (figures first, tables on demand: chapter 04's
    per-model results, which its figures already show): a displayable list with one link per table, under a line
    saying what they hold. Each table passes the disclosure filter (:func:`mmlib.disclosure.frame`) first."""
    import html as html_lib

    from IPython.display import HTML

    items = "".join(f"<li>{csv_link(disclosure.frame(df), str(label))}</li>" for label, df in frames.items())
    return HTML(f"<p><em>{html_lib.escape(what)}</em> (CSV, full precision):</p><ul>{items}</ul>")


def _to_html(shown: pd.DataFrame) -> str:
    """``to_html`` of a formatted table with every cell in full (pandas cuts text at ``display.max_colwidth``,
    50 characters by default: "Pulse oximetry over-reads SpO2 for darker skin...")."""
    with pd.option_context("display.max_colwidth", None):
        return shown.to_html()


def _has_dash(shown: pd.DataFrame) -> bool:
    """Whether a formatted table has a cell that is only :data:`MISSING` (a builder's own "not estimable")."""
    return bool((shown.to_numpy() == MISSING).any()) if shown.size else False


def page_text(df: pd.DataFrame) -> str:
    """The plain-text form of :func:`page_html` (the same formatted cells, no parts)."""
    with pd.option_context("display.max_colwidth", None):
        return page_frame(df)[0].to_string()


def install_page_tables() -> None:
    """In an IPython kernel (a chapter, :func:`mmlib.chapter.start`): display every DataFrame through
    :func:`page_html` (and its text form through :func:`page_text`), after the disclosure filter
    (:func:`mmlib.disclosure.frame`, the identity for synthetic data), so no table is wider than the page and
    every number is formatted for reading. No-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the chapters only
        return
    ip = get_ipython()
    if ip is not None:
        formatters = ip.display_formatter.formatters
        formatters["text/html"].for_type(pd.DataFrame, lambda df: page_html(disclosure.frame(df)))
        formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(page_text(disclosure.frame(df))))
