"""Metrics: hand-computed cases, scikit-learn / fairlearn agreement, the bootstrap and the summary table."""
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, equalized_odds_difference,
                               selection_rate, true_positive_rate)
from sklearn.metrics import average_precision_score, roc_auc_score

from mmlib import metrics


def test_hand_computed_case():
    # group A: 4 stays, labels 1 1 0 0, predictions 1 0 1 0 -> selection 0.5, TPR 0.5, FPR 0.5
    # group B: 4 stays, labels 1 1 0 0, predictions 1 1 1 1 -> selection 1.0, TPR 1.0, FPR 1.0
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 0, 1, 0, 1, 1, 1, 1])
    prob = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.6, 0.55])
    g = np.array(list("AAAABBBB"))
    flags = {"race": {"A": "", "B": ""}}
    p = metrics.point_metrics(y, prob, pred, {"race": g}, flags)
    assert p[("selection_rate", "race", "A")] == 0.5 and p[("selection_rate", "race", "B")] == 1.0
    assert p[("tpr", "race", "A")] == 0.5 and p[("fpr", "race", "B")] == 1.0
    assert p[("dp_diff", "race", "gap")] == pytest.approx(0.5)
    assert p[("dp_ratio", "race", "gap")] == pytest.approx(0.5)
    assert p[("tpr_diff", "race", "gap")] == pytest.approx(0.5)
    assert p[("eo_diff", "race", "gap")] == pytest.approx(0.5)
    # overall: TP 3, FP 3, FN 1, TN 1 -> F1 = 6 / (6 + 4) = 0.6; balanced accuracy = (3/4 + 1/4) / 2
    assert p[("f1", "overall", "all")] == pytest.approx(0.6)
    assert p[("balanced_accuracy", "overall", "all")] == pytest.approx(0.5)
    # AUROC by counting: positives .9 .4 .8 .7 vs negatives .6 .1 .6 .55 -> 13 of 16 pairs
    assert p[("auroc", "overall", "all")] == pytest.approx(13 / 16)


def _random_case(rng, n=300):
    y = rng.integers(0, 2, n)
    prob = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1), 2)  # rounded: many ties
    pred = (prob >= 0.5).astype(int)
    race = rng.choice(["White", "non-White", "Unknown"], n, p=[0.6, 0.35, 0.05])
    gender = rng.choice(["F", "M"], n)
    return y, prob, pred, {"race": race, "gender": gender, "race_gender": np.char.add(np.char.add(race, " "), gender)}


def test_bootstrap_with_unit_counts_equals_the_libraries():
    rng = np.random.default_rng(1)
    y, prob, pred, attrs = _random_case(rng)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    point = metrics.point_metrics(y, prob, pred, attrs, flags)
    reps = metrics.Bootstrap(np.ones((1, len(y)))).replicates(y, prob, pred, attrs, flags)
    assert set(point) == set(reps)
    for k, v in point.items():
        assert reps[k][0] == pytest.approx(v, abs=1e-12, nan_ok=True), k


def test_bootstrap_replicates_equal_the_libraries_on_each_resample():
    rng = np.random.default_rng(2)
    y, prob, pred, attrs = _random_case(rng)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    boot = metrics.Bootstrap.draw(attrs["race_gender"], n_boot=5, seed=3)
    reps = boot.replicates(y, prob, pred, attrs, flags)
    for b in range(5):
        w = boot.counts[b]
        assert reps[("auroc", "overall", "all")][b] == pytest.approx(roc_auc_score(y, prob, sample_weight=w))
        assert reps[("auprc", "overall", "all")][b] == pytest.approx(
            average_precision_score(y, prob, sample_weight=w))
        # resample explicitly and ask fairlearn
        idx = np.repeat(np.arange(len(y)), w.astype(int))
        race = attrs["race"][idx]
        mf = MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate}, y_true=y[idx],
                         y_pred=pred[idx], sensitive_features=race)
        for grp in ("White", "non-White", "Unknown"):
            assert reps[("selection_rate", "race", grp)][b] == pytest.approx(mf.by_group.loc[grp, "sr"])
            assert reps[("tpr", "race", grp)][b] == pytest.approx(mf.by_group.loc[grp, "tpr"])
        compared = np.isin(race, ["White", "non-White"])
        assert reps[("dp_diff", "race", "gap")][b] == pytest.approx(demographic_parity_difference(
            y[idx][compared], pred[idx][compared], sensitive_features=race[compared]))
        assert reps[("eo_diff", "race", "gap")][b] == pytest.approx(equalized_odds_difference(
            y[idx][compared], pred[idx][compared], sensitive_features=race[compared]))


def test_stratified_bootstrap_keeps_group_sizes():
    strata = np.array(["a"] * 7 + ["b"] * 50 + ["c"] * 3)
    boot = metrics.Bootstrap.draw(strata, n_boot=40, seed=0)
    for g in "abc":
        assert (boot.counts[:, strata == g].sum(1) == (strata == g).sum()).all()
    assert boot.counts.std(0).max() > 0  # it does resample
    again = metrics.Bootstrap.draw(strata, n_boot=40, seed=0)
    assert np.array_equal(boot.counts, again.counts)


def test_unknown_and_small_groups_are_flagged_and_left_out_of_gaps():
    y = np.array([1, 0] * 50 + [1, 0] * 50 + [1, 0, 1] + [1, 0] * 10)
    g = np.array(["White"] * 100 + ["non-White"] * 100 + ["Asian"] * 3 + ["Unknown"] * 20)
    flags = metrics.estimable(y, g, min_group=30, min_events=10)
    assert flags["White"] == "" and flags["non-White"] == ""
    assert "too small" in flags["Asian"] and "not compared" in flags["Unknown"]
    # make the Unknown group wildly different: the gap must not see it
    pred = np.r_[np.tile([1, 0], 50), np.tile([1, 0], 50), [0, 0, 0], np.ones(20, int)]
    p = metrics.point_metrics(y, pred.astype(float), pred, {"race": g}, {"race": flags})
    assert p[("dp_diff", "race", "gap")] == pytest.approx(0.0)
    assert p[("selection_rate", "race", "Unknown")] == 1.0


def _predictions(rng, seeds=(0, 1, 2), n=400, shift=0.0, model="paper", mods="a+b"):
    y = rng.integers(0, 2, n)
    race = rng.choice(["White", "non-White"], n)
    gender = rng.choice(["F", "M"], n)
    rows = []
    for s in seeds:
        noise = np.random.default_rng(s).normal(0, 1.5, n)
        prob = 1 / (1 + np.exp(-(2 * y - 1 + noise + shift)))
        rows.append(pd.DataFrame({"cohort": "c", "model": model, "modalities": mods, "n_modalities": 2,
                                  "seed": s, "stay_id": np.arange(n), "split": "test", "prob": prob,
                                  "pred": (prob >= 0.5).astype(int), "label": y, "race": race,
                                  "gender": gender, "race_gender": np.char.add(np.char.add(race, " "), gender)}))
    return pd.concat(rows, ignore_index=True)


def test_summarise_mean_sd_ci_and_seed_order_invariance():
    pr = _predictions(np.random.default_rng(0))
    s = metrics.summarise(pr, n_boot=100, progress=False)
    t = s.table
    auroc = t[(t.metric == "auroc")].iloc[0]
    per_seed = [roc_auc_score(g.label, g.prob) for _, g in pr.groupby("seed")]
    assert auroc["mean"] == pytest.approx(np.mean(per_seed))
    assert auroc["sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert auroc["ci_low"] < auroc["mean"] < auroc["ci_high"]
    assert auroc["n_seeds"] == 3 and auroc["n"] == 400
    assert set(t.attribute) == {"overall", "race", "gender", "race_gender"}
    # shuffling the rows changes nothing
    s2 = metrics.summarise(pr.sample(frac=1, random_state=1), n_boot=100, progress=False)
    pd.testing.assert_frame_equal(s.table, s2.table)


def test_paired_difference_of_identical_runs_is_exactly_zero():
    rng = np.random.default_rng(0)
    a = _predictions(rng, mods="a")
    b = a.assign(modalities="a+b")
    s = metrics.summarise(pd.concat([a, b]), n_boot=50, progress=False)
    d, lo, hi = s.difference("c", ("paper", "a"), ("paper", "a+b"), ("auroc", "overall", "all"))
    assert d == lo == hi == 0.0
    assert s.difference("c", ("paper", "a"), ("paper", "a+b"), ("auroc", "overall", "all")).verdict == "no clear change"


def test_summarise_rejects_mismatched_stays():
    pr = _predictions(np.random.default_rng(0))
    bad = pr.drop(index=pr.index[(pr.seed == 1)][:5])
    with pytest.raises(ValueError, match="same test stays"):
        metrics.summarise(bad, n_boot=10, progress=False)
    with pytest.raises(ValueError, match="lacks columns"):
        metrics.summarise(pr.drop(columns=["race"]), n_boot=10, progress=False)


def test_point_gaps_equal_fairlearn_functions():
    from fairlearn.metrics import demographic_parity_ratio, equal_opportunity_difference

    rng = np.random.default_rng(5)
    y, prob, pred, attrs = _random_case(rng, n=500)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    p = metrics.point_metrics(y, prob, pred, attrs, flags)
    for a in ("gender", "race_gender"):
        keep = np.isin(attrs[a], [g for g, why in flags[a].items() if not why])
        args = (y[keep], pred[keep])
        kw = {"sensitive_features": attrs[a][keep]}
        assert p[("dp_diff", a, "gap")] == pytest.approx(demographic_parity_difference(*args, **kw))
        assert p[("dp_ratio", a, "gap")] == pytest.approx(demographic_parity_ratio(*args, **kw))
        assert p[("tpr_diff", a, "gap")] == pytest.approx(equal_opportunity_difference(*args, **kw))
        assert p[("eo_diff", a, "gap")] == pytest.approx(equalized_odds_difference(*args, **kw))


def test_results_table_and_group_rates_format_every_estimate():
    from mmlib import tables

    pr = _predictions(np.random.default_rng(0))
    s = metrics.summarise(pr, n_boot=50, progress=False, min_group=150)  # race x gender cells (~100) too small
    t = tables.results_table(s.table, "c", "paper")
    assert list(t.index) == ["a+b"]
    cell = t.loc["a+b", "AUROC"]
    m = s.table[(s.table.metric == "auroc")].iloc[0]
    assert cell == tables.fmt_estimate(m["mean"], m["ci_low"], m["ci_high"], m["sd"])
    assert cell.count("±") == 1 and cell.count("[") == 1
    g = tables.group_rates(s.table, "c", "paper", "a+b", "race_gender")
    assert g["flag"].str.contains("too small").all()
    gap = s.table[(s.table.attribute == "race_gender") & (s.table.group == "gap")]
    assert gap["mean"].isna().all() and (gap["flag"] == "fewer than two estimable groups").all()
    assert tables.fmt_estimate(np.nan, np.nan, np.nan, np.nan) == "–"
    with pytest.raises(ValueError, match="no results"):
        tables.results_table(s.table, "c", "late")


def test_many_equals_point_metrics_row_by_row():
    rng = np.random.default_rng(7)
    y, _, _, attrs = _random_case(rng, n=400)
    probs = np.round(rng.random((6, 400)) * 0.5 + 0.4 * y, 2)  # ties
    probs[5] = 0.5  # a constant prediction (every modality missing)
    preds = (probs >= 0.5).astype(int)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    out = metrics.vector_metrics(y, probs, preds, attrs, flags)
    for k in range(6):
        ref = metrics.point_metrics(y, probs[k], preds[k], attrs, flags)
        for key, v in ref.items():
            assert out[key][k] == pytest.approx(v, abs=1e-12, nan_ok=True), (k, key)


def test_summarise_vectors_mean_sd_and_ci():
    rng = np.random.default_rng(3)
    y, _, _, attrs = _random_case(rng, n=300)
    probs = np.clip(0.35 * y + rng.random((8, 300)) * 0.65, 0, 1)
    preds = (probs >= 0.5).astype(int)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    boot = metrics.Bootstrap.draw(attrs["race_gender"], n_boot=60, seed=0)
    t, reps = metrics.summarise_vectors(y, probs, preds, attrs, flags, boot)
    auc = [roc_auc_score(y, p) for p in probs]
    row = t[t.metric == "auroc"].iloc[0]
    assert row["mean"] == pytest.approx(np.mean(auc)) and row["sd"] == pytest.approx(np.std(auc, ddof=1))
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    # the resampled mean of a count metric is the mean over vectors of each vector's resampled value
    one = [boot.replicates(y, probs[k], preds[k], attrs, flags)[("tpr", "race", "White")] for k in range(8)]
    assert np.allclose(reps[("tpr", "race", "White")], np.mean(one, axis=0))
    sub, reps2 = metrics.summarise_vectors(y, probs, preds, attrs, flags, boot, rank_vectors=[0])
    shift = np.mean(auc) - auc[0]
    assert np.allclose(reps2[("auroc", "overall", "all")],
                       metrics.weighted_auroc(boot.counts, y.astype(float), probs[0]) + shift)


def test_summarise_refuses_a_one_class_split():
    pr = _predictions(np.random.default_rng(0))
    pr["label"] = 0
    with pytest.raises(ValueError, match="all 400 test stays are negative"):
        metrics.summarise(pr, n_boot=10, progress=False)


def _null_or_planted(rng, n=600, tpr_shift=0.0):
    """A test set with two race groups and two genders, decisions with TPR 0.7 / FPR 0.2, except that the
    non-White group's TPR is shifted by ``tpr_shift`` (0: no difference between groups at all)."""
    race = np.where(rng.random(n) < 0.5, "White", "non-White")
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    y = (rng.random(n) < 0.3).astype(float)
    tpr = np.where(race == "White", 0.7, 0.7 + tpr_shift)
    pred = np.where(y == 1, rng.random(n) < tpr, rng.random(n) < 0.2).astype(float)
    attrs = {"race": race, "gender": gender, "race_gender": np.char.add(np.char.add(race, " "), gender)}
    flags = {a: metrics.estimable(y, g, min_group=20, min_events=5) for a, g in attrs.items()}
    return y, pred, attrs, flags


def test_signed_gaps_cover_zero_at_their_nominal_rate_and_contain_their_estimate():
    """Simulation: with no difference between groups, the 95% interval of the signed TPR gap (non-White minus
    White) covers 0 in about 95% of test sets and always contains its estimate; the paper's max - min TPR gap
    is never below 0, so its interval almost never covers 0 -- its percentile interval can lie wholly above the
    estimate, and is then extended down to it, so that it too contains its estimate. A planted TPR shift of -0.15 is
    recovered with its sign, the interval excluding 0 in most test sets of 1,500 stays."""
    rng = np.random.default_rng(7)
    covers, contains, paper_covers, paper_contains, paper_above, found = [], [], [], [], [], []
    for rep in range(160):
        y, pred, attrs, flags = _null_or_planted(rng)
        boot = metrics.Bootstrap.draw(attrs["race_gender"], n_boot=200, seed=rep)
        t, reps = metrics.summarise_vectors(y, pred[None], pred[None], attrs, flags, boot=boot)
        s = t[(t.metric == "tpr_signed") & (t.attribute == "race")].iloc[0]
        covers.append(s.ci_low <= 0 <= s.ci_high)
        contains.append(s.ci_low <= s["mean"] <= s.ci_high)
        p = t[(t.metric == "tpr_diff") & (t.attribute == "race")].iloc[0]
        paper_covers.append(p.ci_low <= 0)
        paper_contains.append(p.ci_low <= p["mean"] <= p.ci_high)
        paper_above.append(metrics.ci95(reps[("tpr_diff", "race", "gap")])[0] > p["mean"])
        if rep < 40:
            y, pred, attrs, flags = _null_or_planted(rng, n=1500, tpr_shift=-0.15)
            t, _ = metrics.summarise_vectors(y, pred[None], pred[None], attrs, flags,
                                             boot=metrics.Bootstrap.draw(attrs["race_gender"], n_boot=200, seed=rep))
            s = t[(t.metric == "tpr_signed") & (t.attribute == "race")].iloc[0]
            found.append(s["mean"] < 0 and s.ci_high < 0)
    assert 0.89 <= np.mean(covers) <= 0.99, np.mean(covers)
    assert np.mean(contains) >= 0.99
    assert np.mean(paper_covers) <= 0.05, "max - min cannot go below 0: its interval sits above it"
    assert all(paper_contains) and any(paper_above), \
        ("the percentile interval of max - min can miss its estimate (here 2 of 160); extended, it contains it",
         np.mean(paper_above))
    assert np.mean(found) >= 0.75, np.mean(found)


def test_signed_gap_definitions():
    """Two groups: the other minus the reference; more groups: the largest difference from the reference, with
    its sign; the reference not compared: NaN. Point estimates and bootstrap agree on the full sample."""
    rates = {"selection_rate": {"White": 0.5, "non-White": 0.3}, "tpr": {"White": 0.8, "non-White": 0.9},
             "fpr": {"White": 0.1, "non-White": 0.1}}
    g = metrics.signed_gaps(rates, ["White", "non-White"], "White")
    assert g["dp_signed"] == pytest.approx(-0.2) and g["tpr_signed"] == pytest.approx(0.1) and g["fpr_signed"] == 0
    three = {r: {**v, "Asian": {"selection_rate": 0.65, "tpr": 0.85, "fpr": 0.3}[r]} for r, v in rates.items()}
    g3 = metrics.signed_gaps(three, ["White", "non-White", "Asian"], "White")
    assert g3["dp_signed"] == pytest.approx(-0.2) and g3["fpr_signed"] == pytest.approx(0.2)
    assert np.isnan(metrics.signed_gaps(rates, ["non-White"], "White")["dp_signed"])
    rng = np.random.default_rng(1)
    y, pred, attrs, flags = _null_or_planted(rng, tpr_shift=-0.2)
    point = metrics.point_metrics(y, pred, pred, attrs, flags)
    counts = metrics.vector_metrics(y, pred[None], pred[None], attrs, flags)
    for a in ("race", "gender", "race_gender"):
        for k in metrics.SIGNED:
            assert counts[(k, a, "gap")][0] == pytest.approx(point[(k, a, "gap")])
    race = attrs["race"]
    tpr = {gr: pred[(race == gr) & (y == 1)].mean() for gr in ("White", "non-White")}
    assert point[("tpr_signed", "race", "gap")] == pytest.approx(tpr["non-White"] - tpr["White"])


def test_group_auroc_ece_and_worst_group():
    """Per-group AUROC equals scikit-learn's on the group; ECE equals a hand count over ten equal-width bins;
    the worst compared group has the lowest AUROC and highest ECE; unit bootstrap weights give the points."""
    rng = np.random.default_rng(11)
    y, prob, pred, attrs = _random_case(rng, n=500)
    flags = {a: metrics.estimable(y, g, min_group=5, min_events=2) for a, g in attrs.items()}
    point = metrics.point_metrics(y, prob, pred, attrs, flags)
    race = attrs["race"]
    for grp in ("White", "non-White"):
        sel = race == grp
        assert point[("auroc", "race", grp)] == pytest.approx(roc_auc_score(y[sel], prob[sel]))
        bins = pd.cut(prob[sel], np.linspace(0, 1, 11), include_lowest=True)
        df = pd.DataFrame({"p": prob[sel], "y": y[sel], "b": bins})
        by = df.groupby("b", observed=True).agg(p=("p", "mean"), y=("y", "mean"), n=("p", "size"))
        ece = float((by.n / by.n.sum() * (by.p - by.y).abs()).sum())
        assert point[("ece", "race", grp)] == pytest.approx(ece)
    compared = [g for g, why in flags["race"].items() if not why]
    assert point[("auroc_worst", "race", "gap")] == pytest.approx(min(point[("auroc", "race", g)] for g in compared))
    assert point[("ece_worst", "race", "gap")] == pytest.approx(max(point[("ece", "race", g)] for g in compared))
    perfect = metrics.weighted_ece(np.ones((1, 4)), np.array([0.0, 1, 0, 1]), np.array([0.0, 1, 0, 1]))
    assert perfect[0] == 0


def test_risk_shift_recovers_a_planted_shift_at_equal_need_and_covers_zero_without_one():
    """Scores built as logit = need + shift x [non-White] + noise, where non-White stays also have higher need:
    the recorded difference in mean risk mixes both, the shift at equal need recovers the planted one inside its
    interval; with no shift the interval covers 0."""
    rng = np.random.default_rng(5)
    n = 1200
    race = np.where(rng.random(n) < 0.5, "White", "non-White")
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    need = rng.normal(0, 1, n) + 0.5 * (race == "non-White")
    label = (rng.random(n) < 1 / (1 + np.exp(-need))).astype(int)
    for planted in (-0.4, 0.0):
        logits = need[None] + planted * (race == "non-White")[None] + rng.normal(0, 0.3, (2, n))
        prob = 1 / (1 + np.exp(-logits))
        pr = pd.concat([pd.DataFrame({"cohort": "c", "model": "m", "modalities": "all", "seed": s, "split": "test",
                                      "stay_id": np.arange(n), "prob": prob[s], "label": label, "need": need,
                                      "race": race, "gender": gender,
                                      "race_gender": np.char.add(np.char.add(race, " "), gender)}) for s in (0, 1)])
        t = metrics.risk_shift_table(pr, "race", n_boot=200)
        (row,) = t.itertuples()
        assert row.group == "non-White" and row.reference == "White"
        assert row.ci_low <= planted <= row.ci_high and abs(row.shift - planted) < 0.05
        if planted:
            assert row.ci_high < 0
    with pytest.raises(ValueError, match="against_truth"):
        metrics.risk_shift_table(pr.drop(columns="need"))


def test_signed_gap_over_many_groups_fixes_its_group_once_across_seeds():
    """With five race groups, one group (Black) has a clearly lower TPR in every seed while the others differ
    from White by noise only: the signed gap is Black minus White on the seed mean, paired on the resamples,
    and its interval excludes 0 -- not a mixture of whichever group was furthest in each seed or resample."""
    rng = np.random.default_rng(5)
    n = 2500
    groups = np.array(["White", "Black", "Hispanic", "Asian", "Other"])
    race = rng.choice(groups, n, p=[0.4, 0.15, 0.15, 0.15, 0.15])
    gender = rng.choice(["F", "M"], n)
    y = (rng.random(n) < 0.4).astype(int)
    rows = []
    for s in range(4):
        r = np.random.default_rng(100 + s)
        tpr = np.where(race == "Black", 0.55, 0.75)
        pred = np.where(y == 1, r.random(n) < tpr, r.random(n) < 0.2).astype(int)
        prob = np.clip(0.5 * pred + 0.25 + r.normal(0, 0.1, n), 0.01, 0.99)
        rows.append(pd.DataFrame({"cohort": "c", "model": "m", "modalities": "a", "n_modalities": 1, "seed": s,
                                  "stay_id": np.arange(n), "split": "test", "prob": prob, "pred": pred, "label": y,
                                  "race": race, "gender": gender,
                                  "race_gender": np.char.add(np.char.add(race.astype(str), " "), gender)}))
    summ = metrics.summarise(pd.concat(rows, ignore_index=True), n_boot=200, progress=False)
    gap = summ.estimate("tpr_signed", "race", cohort="c", model="m", modalities="a")
    black = summ.estimate("tpr", "race", group="Black", cohort="c", model="m", modalities="a").mean
    white = summ.estimate("tpr", "race", group="White", cohort="c", model="m", modalities="a").mean
    assert gap.mean == pytest.approx(black - white)
    assert gap.ci_low <= gap.mean <= gap.ci_high and gap.ci_high < -0.1
    reps = summ.replicates[("c", "m", "a")]
    np.testing.assert_allclose(reps[("tpr_signed", "race", "gap")],
                               reps[("tpr", "race", "Black")] - reps[("tpr", "race", "White")])


def _same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.equals(b) and a.index.equals(b.index) and list(a.dtypes) == list(b.dtypes) and list(a.columns) == list(b.columns)


def test_table_index_selects_what_select_selects():
    # a long table with repeated keys, NaN labels, a numeric label column and rows out of order
    rng = np.random.default_rng(0)
    n = 400
    t = pd.DataFrame({"cohort": rng.choice(["c", "d"], n).astype(object),
                      "model": rng.choice(["paper", "late", None], n).astype(object),
                      "modalities": rng.choice(["a", "a+b", "b"], n).astype(object),
                      "metric": rng.choice(["auroc", "tpr_diff", "f1"], n).astype(object),
                      "attribute": rng.choice(["overall", "race", "gender"], n).astype(object),
                      "group": rng.choice(["all", "gap", "White", np.nan], n).astype(object),
                      "rate": rng.choice([0.0, 0.3, np.nan], n), "mean": rng.random(n)})
    t.index = rng.permutation(n) + 1000
    index = metrics.TableIndex(t)
    cases = [("auroc", "overall", None, {}), ("tpr_diff", "race", None, {"cohort": "c"}),
             ("tpr_diff", "race", "White", {"cohort": "d", "model": "late"}), ("f1", "gender", "gap", {"rate": 0.3}),
             ("f1", "gender", "gap", {"rate": np.nan}), ("auroc", "overall", None, {"model": None}),
             ("auroc", "overall", None, {"cohort": "nowhere"}), ("missing", "overall", None, {}),
             ("auroc", "race", "gap", {"modalities": "a+b", "cohort": "c", "rate": 0.0})]
    for metric, attr, group, where in cases:
        want = metrics.select(t, metric, attr, group=group, **where)
        got = index.select(metric, attr, group=group, **where)
        assert _same_frame(want, got), (metric, attr, group, where)
        if len(want) and all(isinstance(v, str) for v in where.values()):
            assert index.first("mean", metric, attr, group=group, **where) == want["mean"].iloc[0]
    with pytest.raises(IndexError):
        index.first("mean", "auroc", cohort="nowhere")
    with pytest.raises(KeyError):
        index.select("auroc", nosuchcolumn="x")


def test_summary_reads_match_the_plain_filters():
    # Summary.select/difference/steps go through a TableIndex: the same numbers as filtering the whole table
    rng = np.random.default_rng(1)
    a = _predictions(rng, mods="a")
    b = _predictions(rng, mods="a+b")
    s = metrics.summarise(pd.concat([a, b], ignore_index=True), n_boot=50, progress=False)
    for key in [("auroc", "overall", "all"), ("tpr_diff", "race", "gap"), ("selection_rate", "gender", "F")]:
        want = metrics.select(s.table, *key[:2], group=key[2], cohort="c", model="paper")
        assert _same_frame(s.select(*key[:2], group=key[2], cohort="c", model="paper"), want)
        ma = want.loc[want.modalities == "a", "mean"].iloc[0]
        mb = want.loc[want.modalities == "a+b", "mean"].iloc[0]
        ra, rb = s.replicates[("c", "paper", "a")][key], s.replicates[("c", "paper", "a+b")][key]
        assert s.difference("c", ("paper", "a"), ("paper", "a+b"), key) == metrics.Change.paired(ma, mb, ra, rb)
        st = s.steps("c", "paper", ["a", "a+b"], key)
        assert st["before"].iloc[0] == ma and st["change"].iloc[0] == float(mb - ma)
    # replacing the table replaces the index
    s.table = s.table[s.table.cohort == "nowhere"]
    assert len(s.select("auroc")) == 0
