"""The book's computed sentences and result tables (mmlib.findings), on small hand-made summaries whose
answers are known."""
import numpy as np
import pandas as pd
import pytest

from mmlib import findings, missing
from mmlib.metrics import Change, Summary
from mmlib.train import ModalityOrder

B = 40  # bootstrap resamples of the hand-made summaries


def _row(cohort, model, mods, metric, attribute, group, mean, lo, hi, sd=0.01):
    return {"cohort": cohort, "model": model, "modalities": mods, "n_modalities": len(mods.split("+")),
            "metric": metric, "attribute": attribute, "group": group, "mean": mean, "sd": sd,
            "ci_low": lo, "ci_high": hi, "n": 100, "n_pos": 30, "n_seeds": 3, "flag": ""}


def _summary(values: dict, spread: float = 0.01) -> Summary:
    """A Summary of cohort ``c``: ``values[(model, modalities, metric, attribute)] = mean``; every row's
    replicates are the mean plus the same small noise (so paired differences are exact and their CI tiny)."""
    noise = np.linspace(-spread, spread, B)
    rows, reps = [], {}
    for (model, mods, metric, attr), mean in values.items():
        group = "all" if attr == "overall" else "gap"
        rows.append(_row("c", model, mods, metric, attr, group, mean, mean - spread, mean + spread))
        reps.setdefault(("c", model, mods), {})[(metric, attr, group)] = mean + noise
    return Summary(pd.DataFrame(rows), reps)


ORDER = ModalityOrder(["a", "b", "c"])


@pytest.fixture
def rising():
    """AUROC rises along a -> a+b -> a+b+c (0.60, 0.70, 0.75); the race TPR gap falls then rises."""
    vals = {}
    auroc = {"a": 0.60, "b": 0.55, "c": 0.50, "a+b": 0.70, "a+c": 0.58, "b+c": 0.52, "a+b+c": 0.75}
    gap = {"a": 0.10, "b": 0.12, "c": 0.05, "a+b": 0.04, "a+c": 0.08, "b+c": 0.09, "a+b+c": 0.20}
    for lab in ORDER.subsets():
        vals[("paper", lab, "auroc", "overall")] = auroc[lab]
        vals[("paper", lab, "f1", "overall")] = 0.5
        for g in ("dp_diff", "tpr_diff"):
            for attr in ("race", "gender"):
                vals[("paper", lab, g, attr)] = gap[lab] if (g, attr) == ("tpr_diff", "race") else 0.03
        for g in ("dp_signed", "tpr_signed"):
            for attr in ("race", "gender"):
                vals[("paper", lab, g, attr)] = -gap[lab] if (g, attr) == ("tpr_signed", "race") else 0.0
    for lab in ORDER.prefixes():
        vals[("late", lab, "auroc", "overall")] = auroc[lab] - 0.01
        vals[("late", lab, "tpr_diff", "race")] = 0.07
        vals[("late", lab, "tpr_signed", "race")] = -0.07
    vals[("paper", "a+b+c", "auroc_worst", "race")] = 0.70
    return _summary(vals)


def test_direction_counts_reversals_and_skips_zero_steps():
    assert findings.direction([0.1, 0.0, 0.2]) == "never falls"
    assert findings.direction([-0.1, 0.0]) == "never rises"
    assert findings.direction([0.1, -0.1]) == "changes direction 1 time"
    assert findings.direction([0.1, -0.1, 0.0, 0.2]) == "changes direction 2 times"


def test_summary_estimate_difference_and_best(rising):
    e = rising.estimate("auroc", cohort="c", model="paper", modalities="a+b")
    assert e.mean == pytest.approx(0.70) and e.ci_low < e.mean < e.ci_high
    c = rising.difference("c", ("paper", "a"), ("paper", "a+b"), ("auroc", "overall", "all"))
    assert c.change == pytest.approx(0.10) and c.ci_low == pytest.approx(0.10) and c.verdict == "rises"
    assert rising.best("auroc", ["a", "b", "c"], cohort="c", model="paper") == "a"
    with pytest.raises(ValueError, match="expected exactly one"):
        rising.estimate("auroc", cohort="c", model="paper")


def test_step_table_signs_and_verdicts(rising):
    st = findings.step_table(rising, "c", "paper", ORDER)
    au = st[st.metric == "AUROC"]
    assert list(au["added"]) == ["b", "c"] and list(au["verdict"]) == ["rises", "rises"]
    assert au["change"].tolist() == pytest.approx([0.10, 0.05])
    gap = st[st.metric == "TPR difference (equal opportunity) (race)"]
    assert gap["change"].tolist() == pytest.approx([-0.06, 0.16]) and list(gap["verdict"]) == ["falls", "rises"]
    flat = st[st.metric == "F1"]
    assert (flat["verdict"] == "no clear change").all(), "a change of exactly 0 has a CI of [0, 0]"


def test_order_table_counts_every_order(rising):
    o = findings.order_table(rising, "c", "paper", ORDER)
    assert (o["orders"] == 6).all()
    # AUROC falls at a step only where a pair is below its first member: a -> a+c and b -> b+c
    au = o.loc["AUROC"]
    assert au["mean rises at every step"] == 4 and au["some clear fall"] == 2 and au["mean falls at every step"] == 0
    assert au[findings.BEST_SINGLE_COLUMN] == pytest.approx(0.75 - 0.60)
    # for a gap the comparison is with the most predictive single modality (a), not the fairest (c)
    gap = o.loc["TPR difference (equal opportunity) (race)"]
    assert gap[findings.BEST_SINGLE_COLUMN] == pytest.approx(0.20 - 0.10)


def test_rq1_answer_states_the_path_and_counts(rising):
    orders = {"c": ORDER}
    steps = {"c": findings.step_table(rising, "c", "paper", ORDER)}
    text = findings.rq1_answer(rising, orders, steps, {"c": findings.order_table(rising, "c", "paper", ORDER)},
                               ["paper", "late"])
    assert "AUROC 0.600 → 0.700 → 0.750: the mean never falls; 2 steps are a clear rise and 0 a clear fall" in text
    assert "TPR difference (equal opportunity) by race: 0.100 → 0.040 → 0.200; it changes direction 1 time" in text
    assert "+b -0.060 [-0.060, -0.060]" in text
    assert "beat the best single modality by 0.150 AUROC" in text
    assert "`late` AUROC 0.740, signed race TPR gap -0.070" in text
    assert ("With all modalities, `paper`: the signed TPR gap by race (largest difference from White) -0.200 "
            "[-0.210, -0.190]: the group is clearly below the reference") in text
    assert "signed DP gap by gender (largest difference from M) +0.000 [-0.010, +0.010]: no clear difference" in text
    assert "- Worst group, all modalities: worst-group AUROC (race) 0.700 [0.690, 0.710] (overall AUROC 0.750" in text


def test_single_modality_answer_names_best_worst_and_overlap():
    vals = {}
    for m, au, g in (("a", 0.80, 0.02), ("b", 0.60, 0.10)):
        for model, shift in (("paper", 0.0), ("logreg", -0.3 if m == "a" else 0.0)):
            vals[(model, m, "auroc", "overall")] = au + shift
            vals[(model, m, "tpr_diff", "race")] = g
            vals[(model, m, "tpr_diff", "gender")] = 0.05
            vals[(model, m, "tpr_signed", "race")] = -g
            vals[(model, m, "tpr_signed", "gender")] = 0.0
    s = _summary(vals)
    text = findings.single_modality_answer(s, {"c": ["a", "b"]}, ["paper", "logreg"])
    assert "is **a** (AUROC 0.800 [0.790, 0.810]), the least is **b** (0.600 [0.590, 0.610])." in text
    assert "race: the paper's TPR gap (max − min) is largest with **b** (0.100 [0.090, 0.110]) and smallest with **a**" in text
    assert "with **a**, the signed TPR gap by race (largest difference from White) -0.020 [-0.030, -0.010]: the group is clearly below" in text
    assert "The logistic regression ranks **b** first (the `paper` model ranks a first)." in text
    # a single model (no logistic regression) is a documented choice, not an error
    assert "logistic regression ranks" not in findings.single_modality_answer(s, {"c": ["a", "b"]}, ["paper"])


def _sweep_rows(model, rates, values, metric="auroc", attribute="overall", group="all"):
    return pd.DataFrame({"metric": metric, "attribute": attribute, "group": group, "mean": values, "sd": 0.0,
                         "ci_low": np.nan, "ci_high": np.nan, "cohort": "mimic_eye", "model": model,
                         "protocol": "random", "rate": rates, "modality": "all"})


def test_degradation_areas_and_rq2_answer():
    rates = [0.0, 0.1, 0.2, 0.4]
    sweep = missing.Sweep()
    for model, vals in (("paper", [0.8, 0.78, 0.74, 0.70]), ("late", [0.8, 0.8, 0.79, 0.78])):
        for p, v in zip(rates, vals):
            t = pd.concat([_sweep_rows(model, [p], [v]).iloc[:, :7],
                           _sweep_rows(model, [p], [0.05 + p / 2], "tpr_diff", "race", "gap").iloc[:, :7]])
            reps = {("auroc", "overall", "all"): v + np.linspace(-0.001, 0.001, B),
                    ("tpr_diff", "race", "gap"): 0.05 + p / 2 + np.linspace(-0.001, 0.001, B)}
            sweep.add(t, reps, cohort="mimic_eye", model=model, protocol="random", rate=p, modality="all")
    areas = findings.degradation_areas(sweep.table)
    paper = areas[(areas.model == "paper") & (areas.metric == "AUROC")].iloc[0]
    assert paper["cohort"] == "MIMIC-Eye" and paper["change"] == pytest.approx(-0.10)
    assert paper["area"] == pytest.approx(np.trapezoid([0.8, 0.78, 0.74, 0.70], rates) / 0.4)
    text = findings.rq2_answer(sweep, areas, pd.DataFrame(), ["mimic_eye"], ["paper", "late"], rates)
    assert "`paper`: at p=0.1 AUROC -0.020 [-0.020, -0.020], race TPR gap +0.050 [+0.050, +0.050]" in text
    assert "(clearly wider: race TPR gap)" in text
    assert "race DP gap –" in text, "a gap the sweep did not bootstrap is shown as not estimable"
    assert "Smoothest degradation: `late` loses 0.020 AUROC from p=0 to p=0.4; `paper` 0.100." in text


def test_modality_harm_reports_compared_groups_only():
    base = pd.DataFrame({"cohort": "c", "model": "paper", "metric": "tpr", "attribute": ["race", "race", "gender"],
                         "group": ["White", "Unknown", "F"], "mean": [0.8, 0.7, 0.75]})
    one = base.assign(modality="x", rate=1.0, mean=[0.6, 0.1, 0.74])
    harm = findings.modality_harm(one, base, "paper", {"c": ["x"]})
    assert list(harm["group"]) == ["White", "F"]
    assert harm["change"].tolist() == pytest.approx([-0.2, -0.01])
    assert findings.group_word("F") == "women" and findings.group_word("White") == "White stays"


def test_change_mitigation_and_control_tables_and_answer():
    changes = pd.DataFrame([{"cohort": "c", "model": "paper", "modality": "x", "perturbation": "blank", "metric": m,
                             "attribute": a, "group": g, "change": ch, "ci_low": ch - 0.01, "ci_high": ch + 0.01}
                            for (m, a, g), ch in zip(findings.CHANGE_KEYS, (-0.05, 0.02, 0.0, 0.01))])
    ct = findings.change_table(changes, "c", "paper")
    assert ct.loc[("x", "blank"), "AUROC"] == "-0.050 [-0.060, -0.040]"
    effects = pd.DataFrame([{"cohort": "c", "model": mod, "modality": "x", "perturbation": k, "attribute": "overall",
                             "group": "all", "flip_rate": fr, "mean_abs_dp": 0.1}
                            for mod, k, fr in (("paper", "blank", 0.20), ("paper", "switch", 0.40),
                                               ("paper+consistency", "blank", 0.05),
                                               ("paper+consistency", "switch", 0.30))])
    clean = pd.DataFrame([{"cohort": "c", "model": mod, "metric": m, "attribute": a, "group": g, "mean": v,
                           "ci_low": v - 0.1, "ci_high": v + 0.1}
                          for mod, v in (("paper", 0.7), ("paper+consistency", 0.6))
                          for m, a, g in findings.MITIGATION_KEYS])
    side = findings.mitigation_table(effects, clean, ["c"], ["paper"], ["blank", "switch"])
    assert side.loc[("c", "paper", "original"), "flip rate, blank (%)"] == 20.0
    assert side.loc[("c", "paper", "consistency"), "AUROC"] == "0.600 [0.500, 0.700]"
    shuffled = effects[effects.model == "paper"].assign(flip_rate=[0.01, 0.02])
    control = findings.control_table(effects[effects.model == "paper"], shuffled, "c", "x", ["blank", "switch"])
    assert control["flip rate, shuffled (%)"].tolist() == pytest.approx([1.0, 2.0])
    text = findings.interference_answer(effects[effects.model == "paper"], effects.iloc[:0], control, side, ["c"],
                                        ["paper"], ["blank", "switch"])
    assert "switching **x** flips the most decisions (40.0%); blank or irrelevant content flips 20.0-20.0%" in text
    assert "flips 40.0% of decisions when it is real and 2.0% when it was shuffled (no signal); the diagnostic separates them." in text
    assert "interference flip rate (blank and irrelevant) 20.0% → 5.0%; AUROC 0.700 [0.600, 0.800] → 0.600 [0.500, 0.700]" in text
    assert "gaps are wider" not in text, "the gaps did not change"


def test_change_formatting_is_signed():
    c = Change(0.0123, -0.004, 0.031)
    assert c.verdict == "no clear change" and not c.clear
    assert Change(-0.02, -0.03, -0.01).verdict == "falls"


def test_largest_weight_only_when_largest_in_every_seed():
    per = pd.DataFrame({"seed": [0, 0, 1, 1], "modality": ["a", "b"] * 2, "share": [0.6, 0.4, 0.49, 0.51]})
    assert not findings.largest_in_every_seed(per, "a")
    per.loc[2, "share"] = 0.55
    assert findings.largest_in_every_seed(per, "a")


def test_gap_change_words():
    assert findings.gap_change_text(Change(0.026, 0.01, 0.04)) == "widens, +0.026 [+0.010, +0.040]"
    assert findings.gap_change_text(Change(-0.02, -0.03, -0.01)).startswith("narrows")
    assert findings.gap_change_text(Change(0.01, -0.01, 0.03)).startswith("no clear change")


def test_decision_layer_answer_says_when_the_remedy_widens_a_gap():
    from mmlib.decision import DecisionLayer

    order = ModalityOrder(["a", "b"])
    vals = {}
    for model, au, race_dp in (("linear", 0.70, 0.03), ("linear+calibrated", 0.71, 0.06)):
        vals[(model, order.full, "auroc", "overall")] = au
        for g in ("tpr_diff", "dp_diff"):
            for attr in ("race", "gender"):
                vals[(model, order.full, g, attr)] = race_dp if (g, attr) == ("dp_diff", "race") else 0.02
    s = _summary(vals)
    per = pd.DataFrame({"seed": [0, 0, 1, 1], "modality": ["a", "b"] * 2, "share": [0.7, 0.3, 0.6, 0.4],
                        "norm": [2.0, 1.0, 2.0, 1.0], "alone": [1.5, 1.0, 1.6, 1.1]})
    layers = {"c": DecisionLayer(per, pd.DataFrame(), {})}
    shares = pd.DataFrame(columns=["cohort", "modality", "attribute", "clear"])
    robust = pd.DataFrame({"cohort": "c", "model": ["linear"] * 2 + ["linear+calibrated"] * 2, "metric": "auroc",
                           "attribute": "overall", "group": "all", "rate": [0.0, 0.5] * 2,
                           "mean": [0.7, 0.6, 0.71, 0.65]})
    text = findings.decision_layer_answer(layers, {"c": order}, shares, s, robust)
    assert "gives **a** the largest weight norm in every seed (65.0% of the total on average" in text
    assert "race DP gap widens, +0.030 [+0.030, +0.030]" in text and "race TPR gap no clear change" in text
    assert "**The remedy widens the race DP gap**" in text
    assert "mean AUROC over the missingness grid 0.650 → 0.680" in text


def test_group_factor_note():
    note = findings.group_factor_note({"mds_ed": {"White": 0.1, "non-White": 0.25}}, [])
    assert note == ("Relative missingness by race group (share of the cohort's sometimes-missing modalities that "
                    "are missing): MIMIC-IV-Ext-MDS-ED: White 0.100, non-White 0.250.")
    assert findings.group_factor_note({}, ["MIMIC-Eye p=0.9: too high"]).endswith(
        "Rates skipped because a group's rate would exceed 1: MIMIC-Eye p=0.9: too high")


def test_mitigation_gap_changes_are_paired_and_say_when_a_gap_widens():
    from mmlib.interference import Diagnosis

    def diag(race_tpr):
        clean = pd.DataFrame([{"metric": g, "attribute": a, "group": "gap",
                               "mean": race_tpr if (g, a) == ("tpr_diff", "race") else 0.05}
                              for (g, a) in findings.GAP_NAMES])
        reps = {(g, a, "gap"): (race_tpr if (g, a) == ("tpr_diff", "race") else 0.05) + np.linspace(-0.01, 0.01, B)
                for (g, a) in findings.GAP_NAMES}
        return Diagnosis(pd.DataFrame(), pd.DataFrame(), clean, reps)

    changes = findings.mitigation_gap_changes({("mimic_eye", "paper"): diag(0.014)}, {("mimic_eye", "paper"): diag(0.034)})
    row = changes.set_index("gap").loc["race TPR gap"]
    assert row["change"] == pytest.approx(0.020) and row["ci_low"] == pytest.approx(0.020) and row["verdict"] == "rises"
    assert (changes.set_index("gap").drop(index="race TPR gap")["verdict"] == "no clear change").all()
    effects = pd.DataFrame([{"cohort": "mimic_eye", "model": "paper", "modality": "x", "perturbation": "blank",
                             "attribute": "overall", "group": "all", "flip_rate": 0.2, "mean_abs_dp": 0.1}])
    side = pd.DataFrame([{"cohort": "MIMIC-Eye", "model": "paper", "variant": v, "flip rate, blank (%)": f,
                          "AUROC": "0.800", "TPR difference (race)": t}
                         for v, f, t in (("original", 20.0, "0.014"), ("consistency", 8.0, "0.034"))]
                        ).set_index(["cohort", "model", "variant"])
    text = findings.interference_answer(effects, effects.iloc[:0], pd.DataFrame(), side, ["mimic_eye"], ["paper"],
                                        ["blank"], changes)
    assert "Fine-tuning **widens** the race TPR gap (+0.020 [+0.020, +0.020]) (paired)" in text


def test_signed_gap_text_names_the_groups_and_says_whether_the_difference_is_clear():
    rows = [_row("c", "paper", "a", "tpr_signed", "race", "gap", -0.08, -0.12, -0.04),
            _row("c", "paper", "a", "tpr_signed", "gender", "gap", 0.01, -0.03, 0.05)]
    rows += [_row("c", "paper", "a", "tpr", attr, g, 0.7, 0.6, 0.8)
             for attr, gs in (("race", ("White", "non-White", "Unknown")), ("gender", ("F", "M"))) for g in gs]
    s = Summary(pd.DataFrame(rows).assign(flag=lambda d: np.where(d.group == "Unknown", "race not recorded", "")), {})
    race = findings.signed_gap_text(s, "tpr_signed", "race", cohort="c", model="paper", modalities="a")
    assert race == "signed TPR gap by race (non-White − White) -0.080 [-0.120, -0.040]: the group is clearly below the reference"
    gender = findings.signed_gap_text(s, "tpr_signed", "gender", cohort="c", model="paper", modalities="a")
    assert gender.startswith("signed TPR gap by gender (women − men) +0.010") and gender.endswith("no clear difference")


def test_truth_table_and_answer_put_recorded_and_truth_side_by_side():
    def summ(gap):
        rows = [_row("c", "paper", "a+b", "auroc", "overall", "all", 0.8, 0.78, 0.82),
                _row("c", "paper", "a+b", "tpr_signed", "race", "gap", gap, gap - 0.03, gap + 0.03),
                _row("c", "paper", "a+b", "tpr_signed", "gender", "gap", 0.0, -0.02, 0.02)]
        return Summary(pd.DataFrame(rows), {})
    shifts = pd.DataFrame([{"cohort": "c", "model": "paper", "modalities": "a+b", "group": "non-White",
                            "reference": "White", "shift": -0.3, "ci_low": -0.45, "ci_high": -0.15}])
    t = findings.truth_table(summ(-0.01), summ(-0.08), shifts, "c", ["paper"], "a+b")
    assert t.loc["paper", "signed TPR gap, race (recorded label)"] == "-0.010 [-0.040, +0.020]"
    assert t.loc["paper", "signed TPR gap, race (truth)"] == "-0.080 [-0.110, -0.050]"
    assert t.loc["paper", "risk shift at equal need, non-White − White (log-odds)"] == "-0.300 [-0.450, -0.150]"
    text = findings.truth_answer(summ(-0.01), summ(-0.08), shifts, {"c": "a+b"}, ["paper"])
    assert "signed race TPR gap -0.010 [-0.040, +0.020] against the recorded label, -0.080 [-0.110, -0.050] against the truth" in text
    assert "non-White stays get log-odds -0.300 [-0.450, -0.150] against White stays (a clear shift down)" in text
