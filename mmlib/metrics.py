"""Performance and fairness metrics with bootstrap confidence intervals and across-seed spread.

Point estimates come from the libraries: scikit-learn for F1, AUROC, AUPRC (average precision) and balanced
accuracy; fairlearn's ``selection_rate``, ``true_positive_rate`` and ``false_positive_rate`` on each group's
stays for per-group selection rate, TPR and FPR (:func:`group_rates`, the numbers of fairlearn's
:class:`~fairlearn.metrics.MetricFrame`, :func:`group_frame`, at a fraction of its cost), from which the gaps
follow fairlearn's definitions of ``demographic_parity_difference``/``_ratio``, ``equal_opportunity_difference``
(the TPR gap) and ``equalized_odds_difference`` (:func:`point_metrics`; the tests check them against those
functions).

Uncertainty, for every number (:func:`summarise`):

- **across seeds**: the mean and standard deviation of the per-seed point estimates;
- **95% bootstrap CI**: the test set is resampled with replacement *within each race x gender cell*
  (so every group keeps its size), the metric is recomputed for every seed on each resample and averaged
  over seeds, and the 2.5/97.5 percentiles of those seed-means are the interval. One :class:`Bootstrap`
  per test set is shared by every model evaluated on it, so differences between models or modality sets
  are *paired* (same resamples) and :meth:`Summary.difference` gives their CI.
  A gap (max - min) is never negative, so for a true gap near zero its bootstrap distribution sits above
  zero and the percentile interval can lie wholly above the estimate. Every interval the book prints contains
  its estimate, so such an interval is extended down to the estimate (:func:`_estimate`): a wider, conservative
  interval, never a narrower one; the gap is still not distinguishable from zero. Changes of a gap
  (:meth:`Summary.difference`, :meth:`Summary.steps`) are signed and do not have this bias.

Two kinds of gap, side by side:

- **the paper's gaps** (``dp_diff``, ``dp_ratio``, ``tpr_diff``, ``eo_diff``): fairlearn's max - min over the
  compared groups. Never negative, so biased upwards: with no difference at all between groups the estimate is
  above 0 and its interval cannot cover 0 (the sampling noise of every group adds to it). Kept to reproduce the
  paper's tables, labelled as such.
- **signed gaps** (``dp_signed``, ``tpr_signed``, ``fpr_signed``): a group's rate minus the reference group's
  (:data:`REFERENCE`: White, men, White men) -- for two compared groups, the other group minus the reference
  (non-White minus White, women minus men); for more, the group whose mean difference from the reference is
  largest in size, with its sign (chosen once, on the mean over seeds: :func:`worst_group_once`). A negative TPR gap means the group's positives are found less often than the
  reference's. Its bootstrap interval contains the estimate and, with no difference, covers 0 at about its
  nominal rate (checked by simulation in ``tests/test_metrics.py``): the primary fairness estimand.

The bootstrap recomputes the same definitions as scikit-learn and fairlearn from resampling counts in
vectorised NumPy (``tests/test_metrics.py`` checks every one against the libraries on resampled data),
because fairlearn's own bootstrap (``MetricFrame(n_boot=...)``) does not stratify by group and re-runs a
pandas group-by per resample, too slow for hundreds of runs x 200 resamples (``benchmarks/bench_train.py``).

Groups: the race grouping's ``Unknown`` group (race not recorded / declined) is reported with its own
rates but left out of every gap, as are groups too small to estimate (fewer than ``min_group`` stays, or
fewer than ``min_events`` positives or negatives); such rows carry a ``flag`` saying so.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import disclosure

PERFORMANCE = ("f1", "auroc", "auprc", "balanced_accuracy")
RATES = ("selection_rate", "tpr", "fpr")
GAPS = ("dp_diff", "dp_ratio", "tpr_diff", "eo_diff")
SIGNED = ("dp_signed", "tpr_signed", "fpr_signed")
#: Metrics of the scores within each group (CareBench reports both): AUROC and expected calibration error
#: per group, and the worst compared group's (lowest AUROC, highest ECE) as the attribute's "gap" row.
SCORE_GAPS = ("auroc_worst", "ece_worst")
#: Equal-width probability bins of the expected calibration error.
ECE_BINS = 10
#: The reference group of each attribute for the signed gaps (group minus reference).
REFERENCE = {"race": "White", "gender": "M", "race_gender": "White M"}
ATTRIBUTES = ("race", "gender", "race_gender")
NOT_COMPARED = ("Unknown",)
METRIC_LABELS = {"f1": "F1", "auroc": "AUROC", "auprc": "AUPRC", "balanced_accuracy": "balanced accuracy",
                 "selection_rate": "selection rate", "tpr": "TPR", "fpr": "FPR",
                 "dp_diff": "demographic-parity difference", "dp_ratio": "demographic-parity ratio",
                 "tpr_diff": "TPR difference (equal opportunity)", "eo_diff": "equalized-odds difference",
                 "dp_signed": "selection-rate gap, signed (group − reference)",
                 "tpr_signed": "TPR gap, signed (group − reference)",
                 "fpr_signed": "FPR gap, signed (group − reference)",
                 "ece": "expected calibration error (ECE)", "auroc_worst": "worst-group AUROC",
                 "ece_worst": "worst-group ECE"}
ATTRIBUTE_LABELS = {"overall": "overall", "race": "race", "gender": "gender", "race_gender": "race x gender"}
SHORT_LABELS = {"dp_diff": "DP difference", "dp_ratio": "DP ratio", "tpr_diff": "TPR difference",
                "eo_diff": "EO difference", "dp_signed": "signed DP gap", "tpr_signed": "signed TPR gap",
                "fpr_signed": "signed FPR gap", "auroc_worst": "worst-group AUROC", "ece_worst": "worst-group ECE"}


def metric_label(metric: str, attribute: str = "overall") -> str:
    """Short name of a (metric, attribute) pair for table rows and columns: ``AUROC``, ``TPR difference (race)``
    (chapters 05-07)."""
    if attribute == "overall":
        return METRIC_LABELS[metric]
    return f"{SHORT_LABELS.get(metric, METRIC_LABELS[metric])} ({ATTRIBUTE_LABELS[attribute]})"


def long_label(metric: str, attribute: str = "overall") -> str:
    """Full name of a (metric, attribute) pair: ``AUROC``, ``TPR difference (equal opportunity) (race)``
    (chapter 04's step and order tables)."""
    return METRIC_LABELS[metric] + ("" if attribute == "overall" else f" ({attribute})")


class Estimate(NamedTuple):
    """One number with its spread: across-seed ``mean`` and ``sd`` and the 95% bootstrap CI."""

    mean: float
    ci_low: float
    ci_high: float
    sd: float = np.nan


class Change(NamedTuple):
    """A paired change (b minus a) with its 95% bootstrap CI. ``verdict``: ``rises`` / ``falls`` when the CI
    excludes 0, else ``no clear change``."""

    change: float
    ci_low: float
    ci_high: float

    @property
    def verdict(self) -> str:
        return "rises" if self.ci_low > 0 else "falls" if self.ci_high < 0 else "no clear change"

    @property
    def clear(self) -> bool:
        return self.verdict != "no clear change"

    @classmethod
    def paired(cls, mean_a: float, mean_b: float, replicates_a, replicates_b) -> "Change":
        """The change from a to b: ``mean_b - mean_a``, with the 95% CI of ``replicates_b - replicates_a`` (the
        same bootstrap resamples for both, so the interval is paired). Every paired comparison of the book
        (:meth:`Summary.difference`, :meth:`mmlib.missing.Sweep.difference`,
        :meth:`mmlib.interference.Diagnosis.clean_change`) goes through it."""
        return cls(float(mean_b - mean_a), *ci95(np.asarray(replicates_b) - np.asarray(replicates_a)))


def group_order(values) -> list:
    """Display order of group labels (tables and figures): All, White, the other groups alphabetically,
    Unknown last."""
    return sorted(pd.unique(pd.Series(list(values)).dropna()),
                  key=lambda g: (g != "All", g == "Unknown", g != "White", str(g)))


def not_compared(group: str) -> bool:
    """Whether a group is reported separately rather than compared in gaps (race not recorded)."""
    return str(group).split(" ")[0] in NOT_COMPARED


def estimable(y: np.ndarray, groups: np.ndarray, min_group: int = 30, min_events: int = 10) -> dict[str, str]:
    """For every group: ``""`` if it enters the gaps, else the reason it does not (the row's flag).

    For a credentialed source (:func:`mmlib.disclosure.active`) both thresholds are at least 11, the counts in
    the flag are suppressed, and the groups flagged "too ..." have their per-group rates withheld
    (in :func:`summarise` and :func:`summarise_vectors`)."""
    min_group, min_events = disclosure.group_floor(min_group, min_events)
    out = {}
    for g in sorted(pd.unique(groups)):
        sel = groups == g
        n, pos = int(sel.sum()), int(y[sel].sum())
        c = disclosure.count
        if not_compared(g) and not (disclosure.active() and n < min_group):
            out[g] = "race not recorded: reported, not compared"
        elif n < min_group:
            out[g] = f"too small to estimate (n={c(n)} < {min_group})"
        elif min(pos, n - pos) < min_events:
            out[g] = f"too few events to estimate ({c(pos)} positive, {c(n - pos)} negative; need {min_events})"
        else:
            out[g] = ""
    return out


@dataclass
class EvaluationGroups:
    """What every evaluation of one split needs (:func:`evaluation_groups`): ``attrs`` (the sensitive
    attributes, ``{attribute: array}``), ``flags`` (each group's :func:`estimable` flag) and ``boot`` (the
    stratified :class:`Bootstrap` of that split's stays)."""

    attrs: dict
    flags: dict
    boot: "Bootstrap"


def evaluation_groups(data, split: str = "test", *, min_group: int = 30, min_events: int = 10, n_boot: int = 200,
                      seed: int = 0) -> EvaluationGroups:
    """The :class:`EvaluationGroups` of one split of a :class:`mmlib.train.FusionData` (chapters 05-07)."""
    rows = data.rows(split)
    st = data.stays.iloc[rows]
    attrs = {a: st[a].to_numpy() for a in ATTRIBUTES}
    flags = {a: estimable(data.y[rows], g, min_group, min_events) for a, g in attrs.items()}
    return EvaluationGroups(attrs, flags, Bootstrap.draw(attrs["race_gender"], n_boot=n_boot, seed=seed))


# ----------------------------------------------------------------------------- point estimates (libraries)
def performance(y: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """F1, AUROC, AUPRC (average precision) and balanced accuracy, by scikit-learn."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

    two = len(np.unique(y)) == 2
    return {"f1": f1_score(y, pred, zero_division=0.0),
            "auroc": roc_auc_score(y, prob) if two else np.nan,
            "auprc": average_precision_score(y, prob) if two else np.nan,
            "balanced_accuracy": balanced_accuracy_score(y, pred) if two else np.nan}


def group_frame(y: np.ndarray, pred: np.ndarray, groups: np.ndarray):
    """fairlearn MetricFrame of selection rate, TPR and FPR per group."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

    return MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                "fpr": false_positive_rate},
                       y_true=y, y_pred=pred, sensitive_features=pd.Series(groups, name="group"))


def group_rates(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """Selection rate, TPR and FPR per group (one row per group, sorted), by fairlearn's metric functions applied
    to each group's stays: the numbers of :func:`group_frame`'s ``by_group`` table, without the MetricFrame
    machinery (a pandas group-by and validation per call, most of :func:`summarise`'s time)."""
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate

    names = sorted(pd.unique(groups))
    rows = []
    for k in names:
        sel = groups == k
        yt, yp = y[sel], pred[sel]
        rows.append([selection_rate(yt, yp), true_positive_rate(yt, yp), false_positive_rate(yt, yp)])
    return pd.DataFrame(rows, index=pd.Index(names, name="group"), columns=list(RATES), dtype=float)


def signed_gaps(per_group: dict[str, dict], compared: list[str], reference: str | None) -> dict[str, np.ndarray]:
    """The signed gaps (:data:`SIGNED`) from per-group rates ``per_group[rate][group]`` (arrays of one shape):
    with two compared groups, the other minus ``reference``; with more, the compared group's difference from
    ``reference`` that is largest in size (element-wise), with its sign; NaN when ``reference`` is not compared
    or fewer than two groups are."""
    others = [k for k in compared if k != reference]
    shape = np.shape(next(iter(per_group["selection_rate"].values())))
    if reference not in compared or not others:
        return {k: np.full(shape, np.nan) for k in SIGNED}
    out = {}
    for name, rate in zip(SIGNED, RATES):
        d = np.stack([np.asarray(per_group[rate][k], dtype=float) - np.asarray(per_group[rate][reference], dtype=float)
                      for k in others])
        if len(others) == 1:
            out[name] = d[0]
        else:
            size = np.where(np.isnan(d), -1.0, np.abs(d))
            out[name] = np.take_along_axis(d, size.argmax(0)[None], 0)[0]
    return out


def worst_group_once(values: dict, reps: dict, flags: dict[str, dict[str, str]]) -> None:
    """Fix the group of each signed gap (:data:`SIGNED`) over more than two compared groups once, on the mean of
    ``values`` (per-seed or per-vector arrays keyed ``(metric, attribute, group)``): the group whose mean
    difference from the reference is largest in size. Rewrites the ``gap`` rows of ``values`` and of the
    bootstrap replicates ``reps`` (where present) as that group's rate minus the reference's, in place.

    :func:`signed_gaps` picks the group element by element, which is right for one vector but not for a mean
    over seeds or resamples: different seeds or resamples would pick different groups with different signs,
    which cancel (a clear Black - White TPR gap of -0.085 [-0.169, -0.021] read as -0.020 [-0.184, +0.067]).
    Used by :func:`summarise` and :func:`summarise_vectors` (chapters 03-07)."""
    for a, fl in flags.items():
        ref = REFERENCE.get(a)
        compared = [g for g, why in fl.items() if not why]
        others = [g for g in compared if g != ref]
        if ref not in compared or len(others) < 2:
            continue
        for name, rate in zip(SIGNED, RATES):
            if (rate, a, ref) not in values:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means = {g: float(np.nanmean(np.asarray(values[(rate, a, g)], float)
                                             - np.asarray(values[(rate, a, ref)], float))) for g in others}
            means = {g: m for g, m in means.items() if np.isfinite(m)}
            if not means:
                continue
            g = max(means, key=lambda k: abs(means[k]))
            values[(name, a, "gap")] = np.asarray(values[(rate, a, g)], float) - np.asarray(values[(rate, a, ref)], float)
            if (rate, a, g) in reps and (rate, a, ref) in reps:
                reps[(name, a, "gap")] = reps[(rate, a, g)] - reps[(rate, a, ref)]


def gaps_from_groups(by_group: pd.DataFrame, compared: list[str]) -> dict[str, float]:
    """The gaps between the ``compared`` rows of a :func:`group_frame` ``by_group`` table, as fairlearn defines
    them: demographic-parity difference / ratio = max - min / min / max of the selection rates; TPR
    difference (``equal_opportunity_difference``) = max - min TPR; equalized-odds difference = the larger
    of the TPR and FPR differences. NaN with fewer than two compared groups."""
    if len(compared) < 2:
        return {k: np.nan for k in GAPS}
    b = by_group.loc[compared]
    sr, tpr, fpr = b["selection_rate"], b["tpr"], b["fpr"]
    return {"dp_diff": sr.max() - sr.min(), "dp_ratio": sr.min() / sr.max() if sr.max() > 0 else np.nan,
            "tpr_diff": tpr.max() - tpr.min(), "eo_diff": max(tpr.max() - tpr.min(), fpr.max() - fpr.min())}


def point_metrics(y: np.ndarray, prob: np.ndarray, pred: np.ndarray, attrs: dict[str, np.ndarray],
                  flags: dict[str, dict[str, str]]) -> dict[tuple, float]:
    """Every metric of one seed: ``{(metric, attribute, group): value}`` (gaps have group ``"gap"``)."""
    out = {(k, "overall", "all"): v for k, v in performance(y, prob, pred).items()}
    for a, g in attrs.items():
        by = group_rates(y, pred, g)
        for grp in by.index:
            n, pos = int((g == grp).sum()), int(y[g == grp].sum())
            # fairlearn reports 0 for a rate with an empty denominator; it is undefined: NaN
            if pos == 0:
                by.loc[grp, "tpr"] = np.nan
            if pos == n:
                by.loc[grp, "fpr"] = np.nan
            for k in RATES:
                out[(k, a, grp)] = float(by.loc[grp, k])
        compared = [k for k, why in flags[a].items() if not why]
        for k, v in gaps_from_groups(by, compared).items():
            out[(k, a, "gap")] = float(v)
        rates = {r: {grp: by.loc[grp, r] for grp in by.index} for r in RATES}
        for k, v in signed_gaps(rates, compared, REFERENCE.get(a)).items():
            out[(k, a, "gap")] = float(v)
    with warnings.catch_warnings():  # a group with one class has no AUROC: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out.update({k: float(v[0]) for k, v in _score_metrics(np.ones((1, len(y))), y, prob, attrs, flags).items()})
    return out


# ----------------------------------------------------------------------------------------- bootstrap
def ci95(replicates) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of bootstrap replicates (NaNs ignored; NaN, NaN when none is finite)."""
    if replicates is None or not np.isfinite(replicates).any():
        return np.nan, np.nan
    lo, hi = np.nanpercentile(replicates, [2.5, 97.5])
    return float(lo), float(hi)


def _estimate(values: np.ndarray, replicates) -> dict:
    """``mean``/``sd`` of per-seed (or per-vector) ``values`` (NaNs ignored) and the CI of ``replicates``
    (:func:`ci95`), extended to the mean when the mean lies outside it: the percentile interval of the paper's
    max - min gaps can lie wholly above their estimate (see the module docstring), and an interval that does not
    contain its number cannot be read. Used by :func:`summarise` and :func:`summarise_vectors`."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    mean = finite.mean() if len(finite) else np.nan
    lo, hi = ci95(replicates)
    if np.isfinite(mean) and np.isfinite(lo):
        lo, hi = min(lo, mean), max(hi, mean)
    return {"mean": mean, "sd": finite.std(ddof=1) if len(finite) > 1 else np.nan, "ci_low": lo, "ci_high": hi}


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _blocks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``scores`` and the start of each run of tied scores in that order."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def weighted_auroc(w: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC for each row of weights ``w`` ``(B, n)`` (= ``roc_auc_score(y, scores, sample_weight=w[b])``):
    the weighted chance that a positive outranks a negative, ties counting one half."""
    order, starts = _blocks(scores)
    wy = w[:, order] * y[order]
    wn = w[:, order] * (1 - y[order])
    pos, neg = np.add.reduceat(wy, starts, axis=1), np.add.reduceat(wn, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return _div((pos * (below + 0.5 * neg)).sum(1), pos.sum(1) * neg.sum(1))


def weighted_average_precision(w: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision for each row of ``w`` (= ``average_precision_score(..., sample_weight=w[b])``):
    sum over score thresholds, high to low, of (recall gained) x (precision at that threshold)."""
    order, starts = _blocks(-scores)
    wy = w[:, order] * y[order]
    wn = w[:, order] * (1 - y[order])
    pos, neg = np.add.reduceat(wy, starts, axis=1), np.add.reduceat(wn, starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.nan_to_num(_div(tp, tp + fp))
    return _div((pos * precision).sum(1), pos.sum(1))


def _ece_bins(prob: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The stays sorted by their :data:`ECE_BINS` equal-width probability bin (stable: each bin keeps the stays'
    order) and the ``(start, end)`` of every non-empty bin in that order, lowest bin first."""
    bins = np.clip(np.ceil(prob * ECE_BINS).astype(int) - 1, 0, ECE_BINS - 1)
    order = np.argsort(bins, kind="stable")
    ends = np.cumsum(np.bincount(bins, minlength=ECE_BINS))
    return order, [(int(e - c), int(e)) for c, e in zip(np.diff(np.r_[0, ends]), ends) if c]


def _binned_ece(w: np.ndarray, resid: np.ndarray, order: np.ndarray, bounds) -> np.ndarray:
    """:func:`weighted_ece` from the bins of :func:`_ece_bins`: each bin's ``w[:, bin] @ resid[bin]`` is the same
    product on the same numbers in the same order as a boolean selection of the bin, so the sums are bit for bit
    the same; the sort is done once for every weight matrix and group instead of once per bin."""
    wo, ro = w[:, order], resid[order]
    total = np.zeros(w.shape[0])
    for s, e in bounds:
        total += np.abs(wo[:, s:e] @ ro[s:e])
    return _div(total, w.sum(1))


def weighted_ece(w: np.ndarray, y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Expected calibration error for each row of weights ``w`` ``(B, n)``: over :data:`ECE_BINS` equal-width
    bins of the predicted probability, the weighted share of stays in the bin times the gap between their mean
    predicted probability and their observed rate, summed: ``sum_bins |sum_i w_i (p_i - y_i)| / sum_i w_i``."""
    prob = np.asarray(prob, dtype=np.float64)
    return _binned_ece(w, prob - y, *_ece_bins(prob))


def _score_metrics(w: np.ndarray, y: np.ndarray, prob: np.ndarray, attrs: dict[str, np.ndarray],
                   flags: dict[str, dict[str, str]]) -> dict[tuple, np.ndarray]:
    """The metrics of the scores themselves, for each row of weights ``w`` ``(B, n)``: overall ECE, AUROC and
    ECE within each group, and the worst compared group's (:data:`SCORE_GAPS`; NaN with fewer than two compared
    groups). Unit weights give the point estimates (:func:`point_metrics`), resampling counts the bootstrap.

    A group's AUROC is computed on the group's own stays (the others carry zero weight, and with integer weights
    every AUROC sum is exact, so this is the same number); the probability bins of the ECE are found once."""
    y, prob = y.astype(np.float64), np.asarray(prob, dtype=np.float64)
    resid = prob - y
    order, bounds = _ece_bins(prob)
    out = {("ece", "overall", "all"): _binned_ece(w, resid, order, bounds)}
    for a, g in attrs.items():
        names = sorted(pd.unique(g))
        for k in names:
            sel = g == k
            out[("auroc", a, k)] = weighted_auroc(w[:, sel], y[sel], prob[sel])
            out[("ece", a, k)] = _binned_ece(w * sel.astype(np.float64), resid, order, bounds)
        compared = [k for k in names if not flags[a].get(k, "x")]
        if len(compared) < 2:
            out[("auroc_worst", a, "gap")] = out[("ece_worst", a, "gap")] = np.full(w.shape[0], np.nan)
            continue
        out[("auroc_worst", a, "gap")] = np.min([out[("auroc", a, k)] for k in compared], axis=0)
        out[("ece_worst", a, "gap")] = np.max([out[("ece", a, k)] for k in compared], axis=0)
    return out


def _score_metrics_vectors(y: np.ndarray, probs: np.ndarray, attrs: dict[str, np.ndarray],
                           flags: dict[str, dict[str, str]]) -> dict[tuple, np.ndarray]:
    """:func:`_score_metrics` with unit weights for every row of ``probs`` ``(K, n)`` at once: ``{key: (K,)}``,
    bit for bit the per-row results. A group's AUROC by the rank-sum identity on its own stays (exact, as the
    weighted sums are); the ECE of every group from one sort of each row by bin, each bin's sum the same
    ``ddot`` on the same numbers in the same order as the per-row function's."""
    from scipy.stats import rankdata

    y, probs = y.astype(np.float64), np.asarray(probs, dtype=np.float64)
    k_rows, n = probs.shape
    groups = [(a, k, g == k) for a, g in attrs.items() for k in sorted(pd.unique(g))]
    ind = np.vstack([np.ones(n)] + [sel.astype(np.float64) for _, _, sel in groups])  # row 0: every stay
    size = ind.sum(1)
    total = np.zeros((len(ind), k_rows))
    for r in range(k_rows):
        order, bounds = _ece_bins(probs[r])
        io, ro = np.take(ind, order, axis=1), probs[r][order] - y[order]
        for s, e in bounds:
            seg = ro[s:e]
            for j in range(len(ind)):
                total[j, r] += abs(np.dot(io[j, s:e], seg))
    ece = _div(total, size[:, None])
    out = {("ece", "overall", "all"): ece[0]}
    aurocs = {}
    for j, (a, k, sel) in enumerate(groups, start=1):
        ys = y[sel]
        pos = ys.sum()
        neg = len(ys) - pos
        ranks = rankdata(probs[:, sel], axis=1) if sel.any() else np.zeros((k_rows, 0))
        aurocs[(a, k)] = _div((ranks * ys).sum(1) - pos * (pos + 1) / 2, np.full(k_rows, pos * neg))
        out[("auroc", a, k)], out[("ece", a, k)] = aurocs[(a, k)], ece[j]
        if j == len(groups) or groups[j][0] != a:  # the attribute's last group: its worst compared group
            names = [kk for aa, kk, _ in groups if aa == a]
            compared = [kk for kk in names if not flags[a].get(kk, "x")]
            if len(compared) < 2:
                out[("auroc_worst", a, "gap")] = out[("ece_worst", a, "gap")] = np.full(k_rows, np.nan)
                continue
            out[("auroc_worst", a, "gap")] = np.min([out[("auroc", a, kk)] for kk in compared], axis=0)
            out[("ece_worst", a, "gap")] = np.max([out[("ece", a, kk)] for kk in compared], axis=0)
    return out


@dataclass
class Bootstrap:
    """Resampling counts for one test set: ``counts[b, i]`` = how often row ``i`` is drawn in resample ``b``,
    drawn with replacement within each stratum (race x gender cell), so every group keeps its size."""

    counts: np.ndarray

    @classmethod
    def draw(cls, strata: np.ndarray, n_boot: int = 200, seed: int = 0) -> "Bootstrap":
        rng = np.random.default_rng(seed)
        counts = np.zeros((n_boot, len(strata)), dtype=np.float64)
        for g in sorted(pd.unique(strata)):
            idx = np.flatnonzero(strata == g)
            counts[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=n_boot)
        return cls(counts)

    def replicates(self, y: np.ndarray, prob: np.ndarray, pred: np.ndarray, attrs: dict[str, np.ndarray],
                   flags: dict[str, dict[str, str]]) -> dict[tuple, np.ndarray]:
        """Every metric of one seed on every resample: ``{(metric, attribute, group): (B,) array}``, the
        same keys and definitions as :func:`point_metrics`."""
        w = self.counts
        y = y.astype(np.float64)
        out = {("auroc", "overall", "all"): weighted_auroc(w, y, prob),
               ("auprc", "overall", "all"): weighted_average_precision(w, y, prob)}
        counts = _count_metrics(w, pred.astype(np.float64)[None, :], y, attrs, flags)
        out.update({k: v[:, 0] for k, v in counts.items()})
        out.update(_score_metrics(w, y, prob, attrs, flags))
        return out


def _cells(attrs: dict[str, np.ndarray], n: int):
    """The finest partition of ``n`` stays by every attribute at once (race x gender): ``(perm, bounds,
    members)`` -- the stays sorted by cell, each cell's ``(start, end)`` in that order, and for every attribute
    ``{group: [cell, ...]}`` (groups named and ordered as ``sorted(pd.unique(g))``). ``None`` when a value
    cannot be coded (then the callers count group by group)."""
    members, codes = {}, []
    for a, g in attrs.items():
        names = sorted(pd.unique(g))
        c = pd.Categorical(g, categories=names).codes.astype(np.int64)
        if len(c) != n or (c < 0).any():
            return None
        codes.append(c)
        members[a] = names
    cell = np.zeros(n, dtype=np.int64)
    for c, a in zip(codes, members):
        cell = cell * len(members[a]) + c
    uniq, inv = np.unique(cell, return_inverse=True)
    perm = np.argsort(inv, kind="stable")
    ends = np.cumsum(np.bincount(inv, minlength=len(uniq)))
    bounds = list(zip((ends - np.bincount(inv, minlength=len(uniq))).tolist(), ends.tolist()))
    first = np.searchsorted(inv[perm], np.arange(len(uniq)))  # a stay of every cell
    for c, a in zip(codes, list(members)):
        of_cell = c[perm][first]
        members[a] = {k: np.flatnonzero(of_cell == i).tolist() for i, k in enumerate(members[a])}
    return perm, bounds, members


def _count_metrics(w: np.ndarray, d: np.ndarray, y: np.ndarray, attrs: dict[str, np.ndarray],
                   flags: dict[str, dict[str, str]]) -> dict[tuple, np.ndarray]:
    """The metrics that are ratios of weighted counts (F1, balanced accuracy, per-group rates, gaps) for
    every pair of a weight row ``w[b]`` ``(B, n)`` and a decision row ``d[k]`` ``(K, n)``: ``(B, K)`` arrays.

    The weighted counts (stays, positives, decisions, true positives) are computed once per cell of the finest
    partition of the stays (:func:`_cells`, race x gender) and every group's and the overall counts are sums of
    cells. With integer weights (unit weights, bootstrap counts) every count is an exact integer, so this gives
    the same numbers as counting each group on its own, for a fraction of the products."""
    dy = d * y
    cells = _cells(attrs, len(y)) if attrs else None
    if cells is None:
        return _count_metrics_by_group(w, d, y, attrs, flags)
    perm, bounds, members = cells
    wp, dp, dyp, yp = w[:, perm], d[:, perm], dy[:, perm], y[perm]
    sel_c = np.stack([wp[:, s:e] @ dp[:, s:e].T for s, e in bounds])     # (C, B, K) decisions
    hit_c = np.stack([wp[:, s:e] @ dyp[:, s:e].T for s, e in bounds])    # (C, B, K) true positives
    n_c = np.stack([wp[:, s:e].sum(1) for s, e in bounds])[..., None]    # (C, B, 1) stays
    pos_c = np.stack([wp[:, s:e] @ yp[s:e] for s, e in bounds])[..., None]  # (C, B, 1) positives
    tp, pp = hit_c.sum(0), sel_c.sum(0)
    pos, tot = pos_c.sum(0), n_c.sum(0)
    return _count_rates(tp, pp, pos, tot, {a: {k: (sel_c[c].sum(0), hit_c[c].sum(0), n_c[c].sum(0), pos_c[c].sum(0))
                                                  for k, c in m.items()} for a, m in members.items()}, flags)


def _count_rates(tp, pp, pos, tot, by_group: dict, flags) -> dict[tuple, np.ndarray]:
    """The count metrics from the overall counts and ``by_group[attribute][group] = (decisions, true positives,
    stays, positives)`` (:func:`_count_metrics`)."""
    fp, fn = pp - tp, pos - tp
    tn = tot - tp - fp - fn
    tpr, tnr = _div(tp, tp + fn), _div(tn, tn + fp)
    out = {("f1", "overall", "all"): np.nan_to_num(_div(2 * tp, 2 * tp + fp + fn)),
           ("balanced_accuracy", "overall", "all"): (tpr + tnr) / 2}
    for a, groups in by_group.items():
        names = list(groups)
        rate, tprg, fprg = {}, {}, {}
        for k, (sel, hit, n_k, pos_k) in groups.items():
            rate[k], tprg[k], fprg[k] = _div(sel, n_k), _div(hit, pos_k), _div(sel - hit, n_k - pos_k)
            out[("selection_rate", a, k)], out[("tpr", a, k)], out[("fpr", a, k)] = rate[k], tprg[k], fprg[k]
        compared = [k for k in names if not flags[a].get(k, "x")]
        for k, v in signed_gaps({"selection_rate": rate, "tpr": tprg, "fpr": fprg}, compared,
                                REFERENCE.get(a)).items():
            out[(k, a, "gap")] = v
        if len(compared) < 2:
            for k in GAPS:
                out[(k, a, "gap")] = np.full(tp.shape, np.nan)
            continue
        r = np.stack([rate[k] for k in compared])
        t = np.stack([tprg[k] for k in compared])
        f = np.stack([fprg[k] for k in compared])
        tpr_gap = t.max(0) - t.min(0)
        out[("dp_diff", a, "gap")] = r.max(0) - r.min(0)
        out[("dp_ratio", a, "gap")] = _div(r.min(0), r.max(0))
        out[("tpr_diff", a, "gap")] = tpr_gap
        out[("eo_diff", a, "gap")] = np.maximum(tpr_gap, f.max(0) - f.min(0))
    return out


def _count_metrics_by_group(w, d, y, attrs, flags) -> dict[tuple, np.ndarray]:
    """:func:`_count_metrics` counting every group on its own (attributes whose values cannot be coded)."""
    dy = d * y
    tp, pp = w @ dy.T, w @ d.T
    pos, tot = (w @ y)[:, None], w.sum(1)[:, None]
    by_group = {}
    for a, g in attrs.items():
        by_group[a] = {}
        for k in sorted(pd.unique(g)):
            ind = (g == k).astype(np.float64)
            by_group[a][k] = (w @ (d * ind).T, w @ (dy * ind).T, (w @ ind)[:, None], (w @ (ind * y))[:, None])
    return _count_rates(tp, pp, pos, tot, by_group, flags)


def vector_metrics(y: np.ndarray, probs: np.ndarray, preds: np.ndarray, attrs: dict[str, np.ndarray],
                   flags: dict[str, dict[str, str]]) -> dict[tuple, np.ndarray]:
    """Every metric of :func:`point_metrics` for many prediction vectors on the same stays at once (e.g. the
    mask draws of a missingness sweep): ``probs``/``preds`` ``(K, n)`` -> ``{key: (K,) array}``. AUROC by
    the rank-sum (Mann-Whitney) identity with tied scores sharing their mean rank, AUPRC as average
    precision over the distinct thresholds (scikit-learn's definitions, checked in the tests)."""
    from scipy.stats import rankdata

    y = y.astype(np.float64)
    probs = np.atleast_2d(probs)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    ranks = rankdata(probs, axis=1)
    auroc = _div((ranks * y).sum(1) - n_pos * (n_pos + 1) / 2, np.full(len(probs), n_pos * n_neg))
    # average precision: for each positive, the precision among the samples scoring at least as high as
    # it (tied scores share the precision at the end of their block, as scikit-learn's thresholds do)
    order = np.argsort(-probs, axis=1, kind="mergesort")
    ys = y[order]
    at_least = np.take_along_axis(rankdata(-probs, axis=1, method="max"), order, axis=1).astype(int)
    precision = np.take_along_axis(np.cumsum(ys, axis=1), at_least - 1, axis=1) / at_least
    auprc = _div((precision * ys).sum(1), np.full(len(probs), n_pos))
    out = {("auroc", "overall", "all"): auroc, ("auprc", "overall", "all"): auprc}
    counts = _count_metrics(np.ones((1, len(y))), np.atleast_2d(preds).astype(np.float64), y, attrs, flags)
    out.update({k: v[0] for k, v in counts.items()})
    out.update(_score_metrics_vectors(y, probs, attrs, flags))
    return out


# ----------------------------------------------------------------------------- against the latent truth
def risk_shift(prob: np.ndarray, groups: np.ndarray, need: np.ndarray, group: str, reference: str,
               weights: np.ndarray | None = None) -> np.ndarray:
    """The difference in predicted log-odds between ``group`` and ``reference`` stays **at equal true need**:
    the coefficient of group membership in a least-squares fit of ``logit(prob)`` on ``[1, need, group]`` over
    the stays of the two groups (``need``: the simulator's true need, log-odds). ``prob`` is ``(seeds, n)``; the
    coefficient is averaged over seeds. ``weights`` ``(B, n)`` (bootstrap counts) give one value per row; without
    them, one value (unit weights). This is the estimand the bias knobs inject (e.g. under-triage lowers the
    recorded acuity of Black patients at equal need), which a thresholded TPR gap on a few hundred stays may not
    see (chapter 04, synthetic cohorts)."""
    prob = np.clip(np.atleast_2d(prob).astype(np.float64), 1e-6, 1 - 1e-6)
    z = np.log(prob / (1 - prob))
    keep = ((groups == group) | (groups == reference)).astype(np.float64)
    x = np.column_stack([np.ones(len(need)), need, (groups == group).astype(np.float64)])
    w = (np.ones((1, len(need))) if weights is None else weights) * keep
    xtwx = np.einsum("bn,ni,nj->bij", w, x, x)
    coef = []
    for zs in z:
        xtwz = np.einsum("bn,ni,n->bi", w, x, zs)
        coef.append(np.linalg.solve(xtwx, xtwz[..., None])[..., 2, 0])
    return np.mean(coef, axis=0)


def risk_shift_table(predictions: pd.DataFrame, attribute: str = "race", n_boot: int = 200, seed: int = 0,
                     split: str = "test") -> pd.DataFrame:
    """:func:`risk_shift` of every compared group against the reference (:data:`REFERENCE`) for every
    (cohort, model, modality set) of a predictions table that carries the truth (``need``, from
    :func:`mmlib.train.against_truth`): ``shift`` (log-odds, mean over seeds) and its 95% CI from the
    stratified bootstrap of the test stays. Groups too small to estimate are left out."""
    if "need" not in predictions:
        raise ValueError("predictions carry no 'need' column; use mmlib.train.against_truth(predictions, data)")
    pr = predictions[predictions["split"] == split]
    ref_group = REFERENCE[attribute]
    rows = []
    for (cohort, model, mods), sub in pr.groupby(["cohort", "model", "modalities"], sort=False):
        wide = sub.pivot(index="stay_id", columns="seed", values="prob").sort_index()
        one = sub[sub["seed"] == sub["seed"].iloc[0]].set_index("stay_id").loc[wide.index]
        g, need, y = one[attribute].to_numpy().astype(str), one["need"].to_numpy(), one["label"].to_numpy()
        flags = estimable(y, g)
        boot = Bootstrap.draw(one["race_gender"].to_numpy(), n_boot=n_boot, seed=seed)
        for grp, why in flags.items():
            if why or grp == ref_group or ref_group not in flags or flags[ref_group]:
                continue
            point = float(risk_shift(wide.to_numpy().T, g, need, grp, ref_group)[0])
            lo, hi = ci95(risk_shift(wide.to_numpy().T, g, need, grp, ref_group, boot.counts))
            rows.append({"cohort": cohort, "model": model, "modalities": mods, "group": grp, "reference": ref_group,
                         "shift": point, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["cohort", "model", "modalities", "group", "reference", "shift", "ci_low",
                                       "ci_high"])


# ------------------------------------------------------------------------------------------ summaries
@dataclass
class Summary:
    """:func:`summarise`'s result, modelled on fairlearn's ``MetricFrame``: the long ``table`` (one row per
    cohort, model, modality set, metric, attribute and group) and the bootstrap ``replicates`` of every row
    (``{(cohort, model, modalities): {(metric, attribute, group): (B,) seed-mean array}}``), from which
    paired differences follow. Chapters 03, 04 and 06 read their numbers through its methods.

    Example::

        s = summarise(predictions)
        s.estimate("auroc", cohort="mds_ed", model="paper", modalities="arrival")    # Estimate(mean, ci_low, ...)
        s.difference("mds_ed", ("paper", "arrival"), ("paper", "arrival+vitals"), ("tpr_diff", "race", "gap"))
    """

    table: pd.DataFrame
    replicates: dict
    _index: "TableIndex | None" = field(default=None, init=False, repr=False, compare=False)

    def select(self, metric: str, attribute: str = "overall", *, group: str | None = None, **where) -> pd.DataFrame:
        """The rows of one metric and attribute (:func:`select`), further filtered by ``column=value``; through
        a :class:`TableIndex` of :attr:`table`, built on first use (rebuilt if :attr:`table` is replaced)."""
        return self._indexed().select(metric, attribute, group=group, **where)

    def _indexed(self) -> "TableIndex":
        if self._index is None or self._index.table is not self.table:
            self._index = TableIndex(self.table)
        return self._index

    def estimate(self, metric: str, attribute: str = "overall", *, group: str | None = None, **where) -> Estimate:
        """The one row matching the filters, as an :class:`Estimate` (raises unless exactly one matches)."""
        rows = self.select(metric, attribute, group=group, **where)
        if len(rows) != 1:
            raise ValueError(f"{len(rows)} summary rows match metric={metric!r}, attribute={attribute!r}, "
                             f"group={group!r}, {where}; expected exactly one")
        r = rows.iloc[0]
        return Estimate(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), float(r["sd"]))

    def best(self, metric: str, labels, attribute: str = "overall", **where) -> str:
        """Of the modality sets ``labels``, the one with the highest mean ``metric`` (first on ties)."""
        means = {lab: self.estimate(metric, attribute, modalities=lab, **where).mean for lab in labels}
        return max(means, key=means.get)

    def difference(self, cohort: str, a: tuple[str, str], b: tuple[str, str], key: tuple[str, str, str]) -> Change:
        """Paired change of metric ``key`` = (metric, attribute, group) from run ``a`` to run ``b`` (each
        (model, modalities) of one cohort): mean of b minus mean of a, 95% CI from the shared resamples."""
        ra, rb = self.replicates[(cohort, *a)][key], self.replicates[(cohort, *b)][key]
        index = self._indexed()
        ma = index.first("mean", *key[:2], group=key[2], cohort=cohort, model=a[0], modalities=a[1])
        mb = index.first("mean", *key[:2], group=key[2], cohort=cohort, model=b[0], modalities=b[1])
        return Change.paired(ma, mb, ra, rb)

    def steps(self, cohort: str, model: str, sequence: list[str], key: tuple[str, str, str]) -> pd.DataFrame:
        """Step-by-step change of metric ``key`` along a sequence of modality sets (e.g. the prefixes of an
        order): for each step the mean before and after, the paired :class:`Change` with its 95% CI, and its
        verdict (``rises`` / ``falls`` when the CI excludes 0, else ``no clear change``)."""
        rows = []
        means = self._indexed().means(key, cohort, model)
        for a, b in zip(sequence[:-1], sequence[1:]):
            c = self.difference(cohort, (model, a), (model, b), key)
            before = means[a]
            rows.append({"from": a, "to": b, "before": before, "after": before + c.change, "change": c.change,
                         "ci_low": c.ci_low, "ci_high": c.ci_high, "verdict": c.verdict})
        return pd.DataFrame(rows)


def summarise(predictions: pd.DataFrame, n_boot: int = 200, seed: int = 0, min_group: int = 30,
              min_events: int = 10, split: str = "test", n_jobs: int = 1, progress: bool = True) -> Summary:
    """Every metric for every (cohort, model, modality set) in a predictions table (``mmlib.train``):
    across-seed mean and sd of the point estimates, 95% bootstrap CI of the seed-mean, the group's test
    size and positives, the number of seeds, and a flag for rows that are not estimated or compared.
    ``n_jobs`` runs are summarised in parallel (joblib); the result does not depend on it.

    Columns: ``cohort, model, modalities, n_modalities, metric, attribute, group, mean, sd, ci_low, ci_high,
    n, n_pos, n_seeds, flag``.
    """
    from joblib import Parallel, delayed

    need = {"cohort", "model", "modalities", "n_modalities", "seed", "stay_id", "split", "prob", "pred",
            "label"} | set(ATTRIBUTES)
    missing = need - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions table lacks columns {sorted(missing)} (expected mmlib.train.run_grid output)")
    pr = predictions[predictions["split"] == split].reset_index(drop=True)
    configs = list(pr.groupby(["cohort", "model", "modalities"], sort=False).groups.items())
    boots, refs = {}, {}
    for (cohort, _, _), index in configs:
        if cohort not in boots:
            sub = pr.loc[index]
            ref = sub[sub["seed"] == sub["seed"].iloc[0]].set_index("stay_id").sort_index()
            refs[cohort] = ref[["label", *ATTRIBUTES]]
            if ref["label"].nunique() < 2:
                only = "positive" if ref["label"].iloc[0] == 1 else "negative"
                raise ValueError(f"cohort {cohort}: all {len(ref)} {split} stays are {only}, so AUROC, AUPRC, "
                                 "balanced accuracy and every TPR/FPR gap are undefined; choose another target "
                                 "or a larger cohort (n_patients) so the split holds both classes")
            boots[cohort] = Bootstrap.draw(ref["race_gender"].to_numpy(), n_boot=n_boot, seed=seed)
    # joblib workers are other processes: they are told whether disclosure control is on (mmlib.disclosure)
    real = disclosure.active()
    tasks = (delayed(_summarise_run)(key, pr.loc[index, ["seed", "stay_id", "prob", "pred", "n_modalities"]],
                                     refs[key[0]], boots[key[0]], min_group, min_events, split, real)
             for key, index in configs)
    rows, reps = [], {}
    bar = tqdm(total=len(configs), desc="bootstrap", disable=not progress, unit="run")
    for key, r, rep in Parallel(n_jobs=n_jobs, return_as="generator")(tasks):
        rows.extend(r)
        reps[key] = rep
        bar.update(1)
    bar.close()
    return Summary(pd.DataFrame(rows), reps)


def _summarise_run(key: tuple, sub: pd.DataFrame, ref: pd.DataFrame, boot: Bootstrap, min_group: int,
                   min_events: int, split: str, real: bool = False):
    """:func:`summarise` for one (cohort, model, modalities): its table rows and bootstrap replicates (``real``:
    disclosure control on, set here because a joblib worker does not share the caller's state)."""
    disclosure.enforce(real)
    cohort, model, mods = key
    y = ref["label"].to_numpy()
    attrs = {a: ref[a].to_numpy().astype(str) for a in ATTRIBUTES}
    flags = {a: estimable(y, g, min_group, min_events) for a, g in attrs.items()}
    points, boot_sum = [], {}
    seeds = sorted(sub["seed"].unique())
    for s in seeds:
        one = sub[sub["seed"] == s].set_index("stay_id")
        if len(one) != len(ref) or not one.index.sort_values().equals(ref.index):
            raise ValueError(f"{cohort}/{model}/{mods} seed {s}: predictions do not cover the same "
                             f"{split} stays as the other runs of this cohort")
        one = one.loc[ref.index]
        prob, pred = one["prob"].to_numpy(), one["pred"].to_numpy()
        points.append(point_metrics(y, prob, pred, attrs, flags))
        for k, v in boot.replicates(y, prob, pred, attrs, flags).items():
            boot_sum[k] = boot_sum.get(k, 0) + v
    keyreps = {k: v / len(seeds) for k, v in boot_sum.items()}
    values = {k: np.array([p.get(k, np.nan) for p in points], dtype=float) for k in points[0]}
    worst_group_once(values, keyreps, flags)
    n_mod = int(sub["n_modalities"].iloc[0])
    rows = []
    for k in points[0]:
        metric, attr, group = k
        vals = values[k]
        if attr == "overall":
            sel, flag = np.ones(len(y), bool), ""
        elif group == "gap":
            sel = np.isin(attrs[attr], [g for g, why in flags[attr].items() if not why])
            left = [g for g, why in flags[attr].items() if why and not not_compared(g)]
            flag = ("fewer than two estimable groups" if np.isnan(vals).all()
                    else f"excludes small groups: {', '.join(left)}" if left else "")
        else:
            sel, flag = attrs[attr] == group, flags[attr].get(group, "")
        est = _estimate(vals, keyreps.get(k))
        if disclosure.withheld(flag):  # a small group's rate gives its counts back: not published
            est = {c: np.nan for c in est}
        rows.append({"cohort": cohort, "model": model, "modalities": mods, "n_modalities": n_mod,
                     "metric": metric, "attribute": attr, "group": group, **est,
                     "n": int(sel.sum()), "n_pos": int(y[sel].sum()), "n_seeds": len(seeds), "flag": flag})
    return key, rows, keyreps


def select(table: pd.DataFrame, metric: str, attribute: str = "overall", *, group: str | None = None,
           **where) -> pd.DataFrame:
    """The rows of a long results table (a :class:`Summary` table, a missingness sweep, an interference
    table) for one metric and attribute; ``group`` defaults to ``all`` for overall metrics and ``gap``
    otherwise; ``where``: further ``column=value`` filters (e.g. ``cohort``, ``model``). Code that selects
    from the same table many times uses a :class:`TableIndex` (same rows, built once)."""
    group = group or ("all" if attribute == "overall" else "gap")
    keep = (table["metric"] == metric) & (table["attribute"] == attribute) & (table["group"] == group)
    for col, value in where.items():
        keep &= table[col] == value
    return table[keep]


class TableIndex:
    """:func:`select` on one long results table, many times: the row positions of every (metric, attribute,
    group) are found once (one group-by), so a selection filters only that metric's few rows instead of
    comparing every row of the table (chapter 04's every-order table made about 10^5 such selections).
    Returns the same rows, in the same order, with the same index as :func:`select`. The table must not be
    changed in place afterwards (:class:`Summary` builds a new index when its table is replaced)."""

    def __init__(self, table: pd.DataFrame):
        self.table = table
        self._rows = (table.groupby(["metric", "attribute", "group"], sort=False).indices
                      if len(table) and {"metric", "attribute", "group"} <= set(table.columns) else {})
        self._empty = np.array([], dtype=np.intp)
        self._first: dict = {}
        self._means: dict = {}

    def select(self, metric: str, attribute: str = "overall", *, group: str | None = None,
               **where) -> pd.DataFrame:
        """:func:`select` (same arguments, same result)."""
        group = group or ("all" if attribute == "overall" else "gap")
        try:
            rows = self._rows.get((metric, attribute, group), self._empty)
        except TypeError:  # an unhashable argument: the plain filter says what is wrong with it
            return select(self.table, metric, attribute, group=group, **where)
        if where:
            for col, value in where.items():
                column = self.table[col]
                hit = None
                if isinstance(value, str) and column.dtype == object:  # what pandas' == does, without its overhead
                    try:
                        hit = np.asarray(column.to_numpy()[rows] == value, dtype=bool)
                    except TypeError:  # e.g. pd.NA in the column, whose truth value NumPy cannot take
                        hit = None
                if hit is None:
                    if np.ndim(value) != 0:  # a list or an array: compared with the whole column, as select does
                        return select(self.table, metric, attribute, group=group, **where)
                    hit = (column.iloc[rows] == value).to_numpy()
                rows = rows[hit]
        return self.table.iloc[rows]

    def means(self, key: tuple[str, str, str], cohort: str, model: str) -> pd.Series:
        """The ``mean`` of metric ``key`` = (metric, attribute, group) of every modality set of one cohort and
        model, by modality set (``select(...).set_index("modalities")["mean"]``), built once per argument
        (:meth:`Summary.steps`); read it, do not change it."""
        out = self._means.get((key, cohort, model))
        if out is None:
            out = self._means[(key, cohort, model)] = self.select(
                *key[:2], group=key[2], cohort=cohort, model=model).set_index("modalities")["mean"]
        return out

    def first(self, column: str, metric: str, attribute: str = "overall", *, group: str | None = None, **where):
        """``select(...)[column].iloc[0]``: ``column`` of the first row that :meth:`select` returns for these
        arguments (IndexError when none does), looked up in a dict built once per metric, attribute, group,
        column and filter columns. For filters on columns of strings (cohort, model, modality set)."""
        group = group or ("all" if attribute == "overall" else "gap")
        cols = tuple(where)
        cache = self._first.setdefault((metric, attribute, group, column, cols), {})
        if not cache:
            rows = self._rows.get((metric, attribute, group), self._empty)
            for pos, values in zip(rows, zip(*(self.table[c].to_numpy()[rows] for c in cols))):
                cache.setdefault(values, pos)
        pos = cache.get(tuple(where.values()))
        if pos is None:
            return self.select(metric, attribute, group=group, **where)[column].iloc[0]
        return self.table[column].iloc[pos]


def summarise_vectors(y: np.ndarray, probs: np.ndarray, preds: np.ndarray, attrs: dict[str, np.ndarray],
                      flags: dict[str, dict[str, str]], boot: Bootstrap | None = None,
                      rank_vectors: np.ndarray | None = None) -> tuple[pd.DataFrame, dict]:
    """Summary of many prediction vectors of one condition on the same stays (e.g. seeds x mask draws):
    the mean and sd over the vectors of every metric (:func:`vector_metrics`), and with ``boot`` the 95% bootstrap
    CI of that mean (every resample scores every vector; for AUROC and AUPRC, whose resampled values are
    the costly part, only the vectors ``rank_vectors`` (indices) when given, the resampled means then being
    shifted by the difference between the mean of all vectors and that of the subset).

    The per-group AUROC and ECE and their worst group (:func:`_score_metrics`) get a mean and sd but no
    interval here: resampling them for every condition of a sweep doubled chapter 05's time, and no sweep
    reads them (chapters 03-04 give them with intervals, by :func:`summarise`).

    Returns ``(table, replicates)``: columns ``metric, attribute, group, mean, sd, ci_low, ci_high`` and
    ``{key: (B,) array}`` of resampled means, for paired differences between conditions."""
    probs, preds = np.atleast_2d(probs), np.atleast_2d(preds)
    points = vector_metrics(y, probs, preds, attrs, flags)
    reps = {}
    if boot is not None:
        yf = y.astype(np.float64)
        counts = _count_metrics(boot.counts, preds.astype(np.float64), yf, attrs, flags)
        with warnings.catch_warnings():  # a rate undefined on every vector of a resample stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            reps = {k: np.nanmean(v, axis=1) for k, v in counts.items()}
        ks = np.arange(len(probs)) if rank_vectors is None else np.asarray(rank_vectors)
        for key, fn in ((("auroc", "overall", "all"), weighted_auroc),
                        (("auprc", "overall", "all"), weighted_average_precision)):
            r = np.mean([fn(boot.counts, yf, probs[k]) for k in ks], axis=0)
            # resampled on a subset of the vectors: centre on the mean of all of them (same spread)
            reps[key] = r + (np.nanmean(points[key]) - np.nanmean(points[key][ks]))
    worst_group_once(points, reps, flags)
    rows = [{"metric": key[0], "attribute": key[1], "group": key[2], **_estimate(v, reps.get(key))}
            for key, v in points.items()]
    for r in rows:  # a small group's rates give its counts back: withheld for a credentialed source
        if r["attribute"] in flags and disclosure.withheld(flags[r["attribute"]].get(r["group"], "")):
            r.update({c: np.nan for c in ("mean", "sd", "ci_low", "ci_high")})
    return pd.DataFrame(rows), reps


def group_mean_difference(values: np.ndarray, groups: np.ndarray, a: str, b: str,
                          boot: Bootstrap) -> tuple[float, float, float, float, float]:
    """Mean of ``values`` (``(seeds, n)`` per-stay numbers, e.g. a modality's share of the logit) in group ``a``
    and in group ``b`` (averaged over seeds), and the difference ``a - b`` with its 95% bootstrap CI (the
    resamples of ``boot``, stratified by group): ``(mean_a, mean_b, diff, ci_low, ci_high)``."""
    v = np.atleast_2d(values).mean(axis=0)
    ia, ib = (groups == a).astype(float), (groups == b).astype(float)
    if ia.sum() == 0 or ib.sum() == 0:
        raise ValueError(f"groups {a!r} and {b!r} must both occur; got {sorted(pd.unique(groups))}")
    w = boot.counts
    ra, rb = (w @ (v * ia)) / (w @ ia), (w @ (v * ib)) / (w @ ib)
    ma, mb = float((v * ia).sum() / ia.sum()), float((v * ib).sum() / ib.sum())
    return (ma, mb, ma - mb, *ci95(ra - rb))


def label_shift(y: np.ndarray, groups: np.ndarray, need: np.ndarray, group: str, reference: str,
                weights: np.ndarray | None = None) -> np.ndarray:
    """The difference in the **recorded** outcome between ``group`` and ``reference`` stays at equal true need: the
    coefficient of group membership in a least-squares fit of the 0/1 label ``y`` on ``[1, need, group]`` over the
    stays of the two groups (a linear probability model; ``need`` on the log-odds scale). Label bias lowers it for
    the groups whose outcome is under-recorded; with no label bias the recorded outcome depends on need alone and it
    is 0 up to sampling. ``weights`` ``(B, n)`` (bootstrap counts) give one value per row, else one value. The
    data-level estimand of label bias, which no model can inherit without seeing the group (chapter 08)."""
    y = np.asarray(y, dtype=np.float64)
    keep = ((groups == group) | (groups == reference)).astype(np.float64)
    x = np.column_stack([np.ones(len(need)), need, (groups == group).astype(np.float64)])
    w = (np.ones((1, len(need))) if weights is None else weights) * keep
    xtwx = np.einsum("bn,ni,nj->bij", w, x, x)
    xtwy = np.einsum("bn,ni,n->bi", w, x, y)
    return np.linalg.solve(xtwx, xtwy[..., None])[..., 2, 0]
