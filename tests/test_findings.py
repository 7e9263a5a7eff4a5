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
    # a step whose gap is not estimable (NaN) is skipped; none estimable is said in words, never counted
    assert findings.direction([0.1, float("nan"), -0.1]) == "changes direction 1 time"
    assert findings.direction([float("nan")] * 3) == "cannot be followed (no step is estimable)"


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
    # for a gap the comparison is with the most predictive single modality (a), not the fairest (c, 0.05) nor
    # the one the gap itself ranks first (b, 0.12: the largest gap, i.e. the worst)
    gap = o.loc["TPR difference (equal opportunity) (race)"]
    assert gap[findings.BEST_SINGLE_COLUMN] == pytest.approx(0.20 - 0.10)
    assert (o[findings.BEST_SINGLE_NAME] == "a").all(), "one modality, chosen by AUROC, for every metric"
    assert gap[findings.BEST_SINGLE_CI] == "[+0.100, +0.100]"
    assert "AUROC" in findings.BEST_SINGLE_COLUMN and "same modality for every metric" in findings.BEST_SINGLE_COLUMN


def test_rq1_answer_states_the_path_and_counts(rising):
    orders = {"c": ORDER}
    steps = {"c": findings.step_table(rising, "c", "paper", ORDER)}
    text = findings.rq1_answer(rising, orders, steps, {"c": findings.order_table(rising, "c", "paper", ORDER)},
                               ["paper", "late"])
    assert "AUROC 0.600 → 0.700 → 0.750: the mean never falls; 2 steps are a clear rise and 0 a clear fall" in text
    assert "TPR difference (equal opportunity) by race: 0.100 → 0.040 → 0.200; it changes direction 1 time" in text
    assert "+b -0.060 [-0.060, -0.060]" in text
    assert "beat the best single modality (a, by AUROC) by +0.150 [+0.150, +0.150] AUROC (paired)" in text
    assert "`late` AUROC 0.740, signed race TPR gap -0.070" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- With all modalities, `paper`: "))
    assert line.startswith("- With all modalities, `paper`: signed TPR gap by race (largest difference from White) "
                           "-0.200 [-0.210, -0.190]: the group is clearly below the reference")
    assert "signed DP gap by gender" not in line and line.endswith("; no clear difference in the other 3 signed gaps.")
    tpr_race = next(ln for ln in text.splitlines() if ln.startswith("- TPR difference (equal opportunity) by race"))
    assert "(steps: +b -0.060 [-0.060, -0.060] (falls); +c +0.160 [+0.160, +0.160] (rises))" in tpr_race
    assert "(no clear change)" not in text and "(no clear difference)" not in text, "an unclear step is counted"
    assert "- Worst group, all modalities: worst-group AUROC (race) 0.700 [0.690, 0.710] (overall AUROC 0.750" in text


def test_clear_then_counted_states_the_clear_items_and_counts_each_kind_of_the_rest():
    c = findings.clear_then_counted
    assert c([("a -0.1 [-0.2, -0.05] (narrows)", "narrows"), ("b", "no clear difference"),
              ("c", "no clear difference")], "signed gaps") == (
        "a -0.1 [-0.2, -0.05] (narrows); no clear difference in the other 2 signed gaps")
    assert c([("b", "no clear change"), ("c", "no clear change")], "steps") == "no clear change in any of the 2 steps"
    assert c([("a", "falls"), ("b", "no clear change"), ("c", "not estimable")], "steps") == (
        "a; no clear change in 1 of the steps; 1 of the steps not estimable")
    assert c([("a", "widens"), ("b", "no clear difference")], "gaps") == "a; no clear difference in the other one"
    assert c([("only, stated in full (no clear difference)", "no clear difference")], "gaps") == (
        "only, stated in full (no clear difference)")
    assert c([("x", "not estimable"), ("y", "not estimable")], "gaps") == "not estimable"


def test_rq1_answer_says_no_clear_difference_when_the_full_set_is_inside_the_interval(rising):
    rising.replicates[("c", "paper", "a+b+c")][("auroc", "overall", "all")] = 0.75 + WIDE * 4
    o = findings.order_table(rising, "c", "paper", ORDER)
    text = findings.rq1_answer(rising, {"c": ORDER}, {"c": findings.step_table(rising, "c", "paper", ORDER)},
                               {"c": o}, ["paper"])
    assert "do **not** clearly beat the best single modality (a, by AUROC): +0.150 [" in text
    assert "AUROC (paired), no clear difference." in text


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


def test_change_formatting_is_signed():
    c = Change(0.0123, -0.004, 0.031)
    assert c.verdict == "no clear change" and not c.clear
    assert Change(-0.02, -0.03, -0.01).verdict == "falls"


def test_largest_weight_only_when_largest_in_every_seed():
    per = pd.DataFrame({"seed": [0, 0, 1, 1], "modality": ["a", "b"] * 2, "share": [0.6, 0.4, 0.49, 0.51]})
    assert not findings.largest_in_every_seed(per, "a")
    per.loc[2, "share"] = 0.55
    assert findings.largest_in_every_seed(per, "a")


def test_group_factor_note():
    note = findings.group_factor_note({"mds_ed": {"White": 0.1, "non-White": 0.25}}, [])
    assert note == ("Relative missingness by race group (share of the cohort's sometimes-missing modalities that "
                    "are missing): MIMIC-IV-Ext-MDS-ED: White 0.100, non-White 0.250.")
    assert findings.group_factor_note({}, ["MIMIC-Eye p=0.9: too high"]).endswith(
        "Rates skipped because a group's rate would exceed 1: MIMIC-Eye p=0.9: too high.")
    # the groups in the book's order (White first, Unknown last), whatever order the factors come in
    note = findings.group_factor_note({"mimic_eye": {"Unknown": 0.3, "White": 0.31, "non-White": 0.38}}, [])
    assert note.endswith("MIMIC-Eye: White 0.310, non-White 0.380, Unknown 0.300.")


# ------------------------------------------------------------------ runs with per-group rows (chapters 05-07)
NOISE = np.linspace(-0.01, 0.01, B)
#: independent noise: a paired change between a run with NOISE and one with WIDE has a CI that contains 0
WIDE = np.random.default_rng(1).normal(0.0, 0.05, B)


def _world(auroc=0.8, tpr_w=0.75, tpr_n=0.70, sr_w=0.30, sr_n=0.30, tpr_m=0.70, tpr_f=0.70, sr_m=0.30, sr_f=0.30):
    """Every row chapters 05-07 read, for race (White / non-White / Unknown) and gender, consistent with the
    per-group rates: signed gaps = group − reference, the paper's gaps = |difference|."""
    v = {("auroc", "overall", "all"): auroc, ("f1", "overall", "all"): 0.5,
         ("tpr", "race", "White"): tpr_w, ("tpr", "race", "non-White"): tpr_n, ("tpr", "race", "Unknown"): 0.2,
         ("selection_rate", "race", "White"): sr_w, ("selection_rate", "race", "non-White"): sr_n,
         ("selection_rate", "race", "Unknown"): 0.9,
         ("tpr", "gender", "M"): tpr_m, ("tpr", "gender", "F"): tpr_f,
         ("selection_rate", "gender", "M"): sr_m, ("selection_rate", "gender", "F"): sr_f}
    for attr, (tr, tg, sr, sg) in (("race", (tpr_w, tpr_n, sr_w, sr_n)), ("gender", (tpr_m, tpr_f, sr_m, sr_f))):
        v.update({("tpr_signed", attr, "gap"): tg - tr, ("dp_signed", attr, "gap"): sg - sr,
                  ("tpr_diff", attr, "gap"): abs(tg - tr), ("dp_diff", attr, "gap"): abs(sg - sr),
                  ("eo_diff", attr, "gap"): abs(tg - tr)})
    return v


def _rows_reps(values: dict, wide=()):
    """Rows (metric, attribute, group, mean, sd, ci_low, ci_high) and replicates (mean + NOISE, or + WIDE for
    the keys in ``wide``)."""
    rows, reps = [], {}
    for key, mean in values.items():
        r = mean + (WIDE if key in wide else NOISE)
        lo, hi = np.percentile(r, [2.5, 97.5])
        rows.append({"metric": key[0], "attribute": key[1], "group": key[2], "mean": mean, "sd": 0.01,
                     "ci_low": lo, "ci_high": hi})
        reps[key] = r
    return pd.DataFrame(rows), reps


def _summary_of(runs: dict) -> Summary:
    """A Summary of cohort ``c`` from ``{(model, modalities): (rows, reps)}``."""
    tables, reps = [], {}
    for (model, mods), (rows, r) in runs.items():
        tables.append(rows.assign(cohort="c", model=model, modalities=mods, n_modalities=len(mods.split("+")),
                                  n=100, n_pos=30, n_seeds=3, flag=""))
        reps[("c", model, mods)] = r
    return Summary(pd.concat(tables, ignore_index=True), reps)


def test_change_words_never_call_a_change_inside_its_interval_a_narrowing_or_a_widening():
    assert findings.difference_word(Change(0.02, -0.01, 0.05)) == "no clear difference"
    assert findings.difference_word(Change(0.02, 0.01, 0.05)) == "rises"
    assert findings.difference_word(Change(np.nan, np.nan, np.nan)) == "not estimable"
    # a signed gap: widens / narrows by its size, only when the change is clear
    assert findings.signed_change_word(-0.03, Change(-0.02, -0.03, -0.01)) == "widens"
    assert findings.signed_change_word(-0.03, Change(0.02, 0.01, 0.03)) == "narrows"
    assert findings.signed_change_word(-0.01, Change(0.03, 0.02, 0.04)) == "widens, reversing its sign"
    assert findings.signed_change_word(-0.03, Change(-0.02, -0.05, 0.01)) == "no clear difference"
    # the paper's gap (max − min)
    assert findings.gap_change_text(Change(0.026, 0.01, 0.04)) == "widens, +0.026 [+0.010, +0.040]"
    assert findings.gap_change_text(Change(-0.02, -0.03, -0.01)).startswith("narrows")
    assert findings.gap_change_text(Change(0.01, -0.01, 0.03)) == "no clear difference, +0.010 [-0.010, +0.030]"


def _gaps_text(run, *keys) -> str:
    """findings.signed_gap_items' texts, joined as an answer that spells every gap out would."""
    return "; ".join(t for t, _ in findings.signed_gap_items(run, *keys))


def test_run_signed_gaps_two_groups_use_the_signed_row_more_groups_each_minus_white():
    rows, reps = _rows_reps(_world(tpr_w=0.80, tpr_n=0.70))
    run = findings.Run(rows, reps)
    assert run.compared("race") == ["White", "non-White"], "Unknown is reported, not compared"
    [(g, ref, e)] = run.signed("tpr_signed", "race")
    assert (g, ref) == ("non-White", "White") and e[0] == pytest.approx(-0.10)
    text = _gaps_text(run)
    assert "race TPR gap (non-White − White) -0.100 [-0.110, -0.09" in text
    assert "(the group is clearly below); race DP gap (non-White − White) +0.000 [" in text
    assert "gender TPR gap (women − men) +0.000" in text and "(no clear difference)" in text
    # race5: each group minus White, paired on the resamples, and the worst group
    five = {("tpr", "race", "White"): 0.80, ("tpr", "race", "Black"): 0.65, ("tpr", "race", "Asian"): 0.82,
            ("tpr", "race", "Hispanic"): 0.78, ("tpr", "race", "Other"): 0.10, ("tpr", "race", "Unknown"): 0.1,
            ("tpr_signed", "race", "gap"): 0.0}  # the largest-in-size row is not what race5 reads
    rows, reps = _rows_reps(five, wide={("tpr", "race", "Asian")})
    run = findings.Run(rows, reps, flags={"race": {"Other": "too small to estimate (n=12 < 30)"}})
    gaps = {g: e for g, _, e in run.signed("tpr_signed", "race")}
    assert list(gaps) == ["Asian", "Black", "Hispanic"], "flagged and Unknown groups are not compared"
    assert gaps["Black"][0] == pytest.approx(-0.15) and gaps["Black"][1] == pytest.approx(-0.15)
    assert gaps["Asian"][1] < 0 < gaps["Asian"][2], "Asian's replicates are noisy: its CI contains 0"
    assert run.worst("tpr_signed", "race")[0] == "Black"
    text = _gaps_text(run, (("tpr_signed", "race"),))
    assert "race TPR gap (Black − White) -0.150 [-0.150, -0.150] (the group is clearly below)" in text
    assert "race TPR gap (Asian − White) +0.020" in text and "worst race group for the TPR gap: Black (-0.150" in text


def test_gaps_of_groups_too_small_to_compare_are_said_to_be_not_estimable():
    vals = _world()
    vals.update({k: np.nan for k in vals if k[1] == "race" and k[2] == "gap"})
    rows, reps = _rows_reps(vals)
    run = findings.Run(rows, reps, flags={"race": {"non-White": "too few events to estimate"}})
    text = _gaps_text(run)
    assert "race TPR gap not estimable (no other group large enough to compare with White stays)" in text
    run = findings.Run(rows, reps, flags={"race": {"White": "too few events to estimate"}})
    assert "race DP gap not estimable (White stays too few to compare)" in _gaps_text(run)
    text = findings.gap_effects_text(findings.gap_effects(run, run), "The calibration")
    assert "Not estimable (a group too small to compare): race TPR gap (max − min), race DP gap (max − min)" in text
    assert "nan" not in text


def test_gap_effects_say_a_mitigation_hurts_when_a_gap_widens_or_a_group_tpr_falls():
    # chapter 06's case: the calibration widened MDS-ED's race DP gap from 0.030 to 0.056 without a word
    before = findings.Run(*_rows_reps(_world(auroc=0.70, sr_w=0.30, sr_n=0.33, tpr_n=0.75)))
    after = findings.Run(*_rows_reps(_world(auroc=0.71, sr_w=0.30, sr_n=0.356, tpr_n=0.70, tpr_f=0.72),
                                     wide={("auroc", "overall", "all"), ("tpr_signed", "gender", "gap"),
                                           ("tpr", "gender", "F"), ("tpr_diff", "gender", "gap"),
                                           ("eo_diff", "gender", "gap")}))
    eff = findings.gap_effects(before, after).set_index("what")
    dp = eff.loc["race DP gap (non-White − White)"]
    assert dp["before"] == pytest.approx(0.030) and dp["after"] == pytest.approx(0.056)
    assert dp["verdict"] == "widens" and dp["hurts"]
    paper = eff[eff.kind == findings.PAPER_GAP].set_index("attribute", append=True)
    assert paper.loc[("race DP gap (max − min)", "race"), "verdict"] == "widens"
    assert eff.loc["TPR of non-White stays", "verdict"] == "falls" and eff.loc["TPR of non-White stays", "hurts"]
    assert eff.loc["gender TPR gap (women − men)", "verdict"] == "no clear difference"
    assert not eff.loc["gender TPR gap (women − men)", "hurts"]
    assert eff.loc["AUROC", "verdict"] == "no clear difference"
    text = findings.gap_effects_text(findings.gap_effects(before, after), "The calibration")
    assert "race DP gap (non-White − White) +0.030 → +0.056 (+0.026 [+0.026, +0.026]: **it hurts**: the gap widens)" in text
    assert "TPR of non-White stays 0.750 → 0.700 (-0.050 [-0.050, -0.050]: **it hurts non-White stays**: their TPR falls)" in text
    # a change that is not clear is counted, not spelled out: the chapter's table holds it
    assert "gender TPR gap (women − men) +0.000 → +0.020" not in text
    line = next(ln for ln in text.splitlines() if "Signed gaps" in ln)
    n_unclear = int((eff[eff.kind == "signed gap"].verdict == "no clear difference").sum())
    assert n_unclear >= 1 and line.endswith(f"; no clear difference in the other {n_unclear} signed gaps.")
    assert "AUROC 0.700 → 0.710 (+0.010 [" in text and "]: no clear difference)" in text, "one item: stated in full"
    assert ("**The calibration hurts** the race TPR gap (non-White − White) (it widens), the race DP gap (non-White − "
            "White) (it widens), non-White stays (their TPR falls)") in text
    # nothing changes: nothing hurts, and no change is called a narrowing
    same = findings.gap_effects_text(findings.gap_effects(before, before), "The calibration")
    assert "makes no gap clearly wider and lowers no group's TPR clearly" in same
    assert "narrows" not in same and "widens" not in same


def test_area_change_is_paired_over_the_grid():
    sweep = missing.Sweep()
    for model, vals in (("a", [0.8, 0.7, 0.6]), ("b", [0.8, 0.75, 0.7])):
        for p, v in zip([0.0, 0.5, 1.0], vals):
            rows, reps = _rows_reps({("auroc", "overall", "all"): v})
            sweep.add(rows, reps, cohort="c", model=model, rate=p)
    c = findings.area_change(sweep, ("auroc", "overall", "all"), dict(cohort="c", model="a"),
                             dict(cohort="c", model="b"), [0.0, 0.5, 1.0])
    assert c.change == pytest.approx(missing.curve_area([0, 0.5, 1], [0.8, 0.75, 0.7])
                                     - missing.curve_area([0, 0.5, 1], [0.8, 0.7, 0.6]))
    assert c.ci_low == pytest.approx(c.change) and c.verdict == "rises"


def _sweep_world():
    """A random-missingness sweep of two models on MIMIC-Eye: `paper` loses AUROC and its signed race TPR gap
    widens from −0.05 at p=0 to −0.10 at p=0.1 (clear); its gender TPR gap moves by +0.02 with a CI containing 0;
    `late` barely moves. One-modality and group-dependent conditions for `paper`."""
    sweep = missing.Sweep()
    rates = [0.0, 0.1, 0.2, 0.4]
    paper = {"auroc": [0.80, 0.78, 0.74, 0.70], "tpr_n": [0.70, 0.65, 0.62, 0.55], "tpr_f": [0.70, 0.72, 0.70, 0.70]}
    for i, p in enumerate(rates):
        wide = {("tpr_signed", "gender", "gap"), ("tpr", "gender", "F")} if p == 0.1 else set()
        rows, reps = _rows_reps(_world(auroc=paper["auroc"][i], tpr_n=paper["tpr_n"][i], tpr_f=paper["tpr_f"][i]), wide)
        sweep.add(rows, reps, cohort="mimic_eye", model="paper", protocol="random", rate=p, modality="all")
        rows, reps = _rows_reps(_world(auroc=[0.80, 0.80, 0.79, 0.78][i]))
        sweep.add(rows, reps, cohort="mimic_eye", model="late", protocol="random", rate=p, modality="all")
    rows, reps = _rows_reps(_world(tpr_n=0.60, tpr_f=0.69), wide={("tpr", "gender", "F")})
    sweep.add(rows, reps, cohort="mimic_eye", model="paper", protocol="one modality", rate=1.0, modality="x")
    rows, reps = _rows_reps(_world(tpr_n=0.68, auroc=0.78))
    sweep.add(rows, reps, cohort="mimic_eye", model="paper", protocol="group-dependent", rate=0.1, modality="all")
    return sweep, rates


def test_degradation_areas_label_the_papers_gaps_and_include_the_signed_ones():
    sweep, rates = _sweep_world()
    rnd = sweep.table[sweep.table.protocol == "random"]
    areas = findings.degradation_areas(rnd)
    paper = areas[(areas.model == "paper") & (areas.metric == "AUROC")].iloc[0]
    assert paper["cohort"] == "MIMIC-Eye" and paper["change"] == pytest.approx(-0.10)
    assert paper["area"] == pytest.approx(np.trapezoid([0.8, 0.78, 0.74, 0.70], rates) / 0.4)
    signed = areas[(areas.model == "paper") & (areas.metric == "signed TPR gap (race)")].iloc[0]
    assert signed["at p=0"] == pytest.approx(-0.05) and signed["change"] == pytest.approx(-0.15)
    assert "TPR difference (race), the paper's gap (max − min)" in set(areas.metric)


def test_modality_harm_has_paired_intervals_and_leaves_unknown_out():
    sweep, _ = _sweep_world()
    harm = findings.modality_harm(sweep, "paper", {"mimic_eye": ["x"]})
    assert list(harm["group"]) == ["White", "non-White", "F", "M"]
    h = harm.set_index("group")
    assert h.loc["non-White", "change"] == pytest.approx(-0.10) and h.loc["non-White", "verdict"] == "falls"
    assert h.loc["non-White", "ci_high"] == pytest.approx(-0.10)
    assert h.loc["White", "verdict"] == "no clear difference", "a change of exactly 0 is no clear difference"
    assert h.loc["F", "verdict"] == "no clear difference" and h.loc["F", "ci_low"] < 0 < h.loc["F", "ci_high"]
    assert h.loc["non-White", "change [95% CI]"] == "-0.100 [-0.100, -0.100]"


def test_rq2_answer_states_what_is_clear_with_its_interval_and_counts_the_rest():
    sweep, rates = _sweep_world()
    harm = findings.modality_harm(sweep, "paper", {"mimic_eye": ["x"]})
    text = findings.rq2_answer(sweep, harm, ["mimic_eye"], ["paper", "late"], rates)
    assert "- `paper`, nothing missing: race TPR gap (non-White − White) -0.050 [-0.060, -0.04" in text
    assert "] (the group is clearly below); no clear difference in the other 3 signed gaps." in text
    p1 = next(ln for ln in text.splitlines() if ln.startswith("  - at p=0.1") and "-0.020 [-0.020, -0.020]" in ln)
    assert "AUROC -0.020 [-0.020, -0.020] (falls)" in p1
    assert ("race TPR gap (non-White − White) -0.050 [-0.050, -0.050] (widens); no clear difference in the other 3 "
            "signed gaps.") in p1
    assert "race DP gap" not in p1 and "gender TPR gap" not in p1, "a gap that does not clearly move is counted"
    assert "Clearly wider: race TPR gap (non-White − White)." in p1
    assert "The paper's race TPR gap (max − min) 0.050 → 0.100 (+0.050 [+0.050, +0.050]: widens)" in p1
    assert "AUROC lost from p=0 to p=0.4: `late` +0.020 [+0.020, +0.020], `paper` +0.100 [+0.100, +0.100]." in text
    assert "`late` loses least; against `paper` the difference is -0.080 [-0.080, -0.080]: it degrades clearly more smoothly." in text
    assert ("losing **x** lowers the TPR of **non-White stays** from 0.700 to 0.600 (-0.100 [-0.100, -0.100]): it "
            "hurts non-White stays; 1 of 4 modality x group TPR changes are clear falls.") in text
    assert "p=0.1: race TPR gap (non-White − White) +0.030 [+0.030, +0.030] (narrows)" in text
    assert "narrows" not in p1


def test_rq2_answer_says_when_no_loss_clearly_hurts_a_group():
    sweep, rates = _sweep_world()
    harm = findings.modality_harm(sweep, "paper", {"mimic_eye": ["x"]})
    harm = harm[harm.group != "non-White"]
    text = findings.rq2_answer(sweep, harm, ["mimic_eye"], ["paper"], rates)
    assert "No modality's loss clearly lowers any group's TPR (paper model): the largest drop, women without **x**, is -0.010 [" in text
    assert "]: no clear difference." in text


def test_a_lead_of_0_001_is_not_called_largest():
    # chapter 06 called one modality's weight "largest" by a margin of 0.001 (in every seed)
    per = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1, 2, 2, 2], "modality": ["a", "b", "c"] * 3,
                        "share": [0.3345, 0.3335, 0.332, 0.3345, 0.3335, 0.332, 0.3345, 0.3335, 0.332]})
    assert findings.largest_in_every_seed(per, "a"), "on top in every seed ..."
    lead = findings.clear_lead(per)
    assert lead["modality"] == "a" and lead["runner_up"] == "b" and lead["lead"] == pytest.approx(0.001)
    assert not lead["clear"], "... but by 0.001: not a clear lead"
    # a large lead that one seed contradicts is not clear either; a large consistent lead is
    per2 = per.assign(share=[0.5, 0.3, 0.2, 0.5, 0.3, 0.2, 0.3, 0.5, 0.2])
    assert not findings.clear_lead(per2)["clear"] and findings.clear_lead(per2)["seeds_on_top"] == 2
    per3 = per.assign(share=[0.5, 0.3, 0.2, 0.52, 0.28, 0.2, 0.49, 0.31, 0.2])
    assert findings.clear_lead(per3)["clear"]
    # a lead whose seed spread is as large as itself is not clear
    per4 = per.assign(share=[0.36, 0.34, 0.30, 0.45, 0.25, 0.30, 0.345, 0.335, 0.32])
    assert findings.largest_in_every_seed(per4, "a") and not findings.clear_lead(per4)["clear"]


def _decision_inputs(shares):
    from mmlib.decision import DecisionLayer

    order = ModalityOrder(["a", "b"])
    s = _summary_of({("linear", order.full): _rows_reps(_world(auroc=0.70, sr_w=0.30, sr_n=0.33)),
                     ("linear+calibrated", order.full): _rows_reps(_world(auroc=0.71, sr_w=0.30, sr_n=0.356))})
    per = pd.DataFrame({"seed": [0, 0, 1, 1], "modality": ["a", "b"] * 2, "share": shares,
                        "norm": [2.0, 1.0, 2.0, 1.0], "alone": [1.5, 1.0, 1.6, 1.1]})
    layers = {"c": DecisionLayer(per, pd.DataFrame(), {})}
    shares_t = pd.DataFrame(columns=["cohort", "modality", "attribute", "clear"])
    robust = missing.Sweep()
    for m, vals in (("linear", [0.7, 0.6]), ("linear+calibrated", [0.71, 0.65])):
        for p, v in zip([0.0, 0.5], vals):
            robust.add(*_rows_reps({("auroc", "overall", "all"): v}), cohort="c", model=m, rate=p)
    return layers, {"c": order}, shares_t, s, robust


def test_decision_layer_answer_states_every_gap_and_says_the_remedy_hurts():
    text = findings.decision_layer_answer(*_decision_inputs([0.7, 0.3, 0.6, 0.4]))
    assert "gives **a** the largest weight norm, clearly: 65.0% of the total on average" in text
    assert "leads b by 30.0 points on average" in text
    assert "Trained alone, **a** has the largest weight norm, clearly" in text
    assert "the disparity persists without fusion, as the paper claims" in text
    assert "race DP gap (non-White − White) +0.030 → +0.056 (+0.026 [+0.026, +0.026]: **it hurts**: the gap widens)" in text
    assert "race DP gap (max − min) 0.030 → 0.056" in text
    assert "race TPR gap (non-White − White) -0.050 → -0.050" not in text and "no clear difference in the other" in text
    assert "**The calibration hurts** the race DP gap (non-White − White) (it widens)" in text
    assert "Mean AUROC over the missingness grid 0.650 → 0.680 (+0.030 [+0.030, +0.030]: rises)" in text


def test_decision_layer_answer_says_no_modality_clearly_dominates_by_a_small_margin():
    text = findings.decision_layer_answer(*_decision_inputs([0.5005, 0.4995, 0.5005, 0.4995]))
    assert "No modality clearly dominates the decision layer: **a** has the largest mean share (50.0%" in text
    assert "leads b by 0.1 points on average" in text and "gives **a** the largest weight norm" not in text
    assert "The clear lead is not the same with and without fusion" in text
    layers, orders, shares, s, robust = _decision_inputs([0.5005, 0.4995, 0.5005, 0.4995])
    layers["c"].per_seed["alone"] = [1.0, 1.001, 1.0, 1.001]
    text = findings.decision_layer_answer(layers, orders, shares, s, robust)
    assert "Trained alone, no modality's weight norm clearly leads: b leads a by 0.0 points" in text
    assert "so there is no clear disparity to persist" in text
    assert "remedy_effects" in findings.__all__
    eff = findings.remedy_effects(_decision_inputs([0.7, 0.3, 0.6, 0.4])[3], {"c": ModalityOrder(["a", "b"])})
    assert list(eff.columns[:2]) == ["cohort", "kind"] and eff["hurts"].sum() == 2


def _diagnosis(values, wide=()):
    from mmlib.interference import Diagnosis

    rows, reps = _rows_reps(values, wide)
    return Diagnosis(pd.DataFrame(), pd.DataFrame(), rows, reps)


def test_change_mitigation_and_control_tables_and_answer():
    keys = findings.CHANGE_KEYS
    changes = pd.DataFrame([{"cohort": "c", "model": "paper", "modality": "x", "perturbation": "blank", "metric": m,
                             "attribute": a, "group": g, "change": ch, "ci_low": ch - 0.01, "ci_high": ch + 0.01}
                            for (m, a, g), ch in zip(keys, (-0.05, 0.02, 0.0, 0.01, 0.03))])
    ct = findings.change_table(changes, "c", "paper")
    assert list(ct.columns) == ["AUROC", "signed TPR gap (race)", "signed DP gap (race)", "signed TPR gap (gender)",
                                "TPR difference (race), the paper's gap (max − min)"]
    assert ct.loc[("x", "blank"), "AUROC"] == "-0.050 [-0.060, -0.040]"
    effects = pd.DataFrame([{"cohort": "c", "model": mod, "modality": "x", "perturbation": k, "attribute": "overall",
                             "group": "all", "flip_rate": fr, "mean_abs_dp": 0.1}
                            for mod, k, fr in (("paper", "blank", 0.20), ("paper", "switch", 0.40),
                                               ("paper+consistency", "blank", 0.05),
                                               ("paper+consistency", "switch", 0.30))])
    original, tuned = _diagnosis(_world(auroc=0.7)), _diagnosis(_world(auroc=0.6))
    clean = pd.concat([original.clean.assign(cohort="c", model="paper"),
                       tuned.clean.assign(cohort="c", model="paper+consistency")], ignore_index=True)
    side = findings.mitigation_table(effects, clean, ["c"], ["paper"], ["blank", "switch"])
    assert side.loc[("c", "paper", "original"), "flip rate, blank (%)"] == 20.0
    assert side.loc[("c", "paper", "consistency"), "AUROC"] == "0.600 [0.591, 0.609]"
    assert side.loc[("c", "paper", "original"), "signed TPR gap (race)"] == "-0.050 [-0.060, -0.041]"
    assert "TPR difference (race), the paper's gap (max − min)" in side.columns
    shuffled = effects[effects.model == "paper"].assign(flip_rate=[0.01, 0.02])
    control = findings.control_table(effects[effects.model == "paper"], shuffled, "c", "x", ["blank", "switch"])
    assert control["flip rate, shuffled (%)"].tolist() == pytest.approx([1.0, 2.0])
    gaps = pd.DataFrame([{"cohort": "c", "model": "paper", "modality": "x", "perturbation": "blank", "attribute": "race",
                          "group": "non-White", "reference": "White", "measure": "mean_abs_dp", "value_group": v + d,
                          "value_reference": v, "difference": d, "ci_low": lo, "ci_high": hi}
                         for v, d, lo, hi in ((0.03, 0.02, 0.01, 0.03),)])
    assert findings.group_gap_table(gaps, "paper").loc[("c", "x", "blank"), "race: non-White − White"] == \
        "+0.020 [+0.010, +0.030]"
    gap_changes = findings.mitigation_gap_changes({("c", "paper"): original}, {("c", "paper"): tuned})
    text = findings.interference_answer(effects[effects.model == "paper"], gaps, control, side, ["c"], ["paper"],
                                        ["blank", "switch"], gap_changes)
    assert "switching **x** flips the most decisions (40.0%); blank or irrelevant content flips 20.0-20.0%" in text
    assert "flips 40.0% of decisions when it is real and 2.0% when it was shuffled (no signal); the diagnostic separates them." in text
    assert ("1 of 1 modality x perturbation x group differences are clear. The largest, blank **x**, moves non-White "
            "stays by 0.050 against 0.030 (+0.020 [+0.010, +0.030]: non-White stays are moved clearly more)") in text
    assert "interference flip rate (blank and irrelevant) 20.0% → 5.0%" in text
    assert "AUROC 0.700 → 0.600 (-0.100 [-0.100, -0.100]: **it hurts**: AUROC falls)" in text
    assert "**The fine-tuning hurts** AUROC (it falls)" in text
    # a group difference whose CI contains 0 is no clear difference
    text = findings.interference_answer(effects[effects.model == "paper"], gaps.assign(ci_low=-0.01), control, side,
                                        ["c"], ["paper"], ["blank", "switch"], gap_changes)
    assert "0 of 1 modality x perturbation x group differences are clear" in text
    assert "(+0.020 [-0.010, +0.030]: no clear difference)" in text


def test_mitigation_gap_changes_say_the_fine_tuning_hurts_when_a_gap_widens():
    # chapter 07's case: consistency fine-tuning widened MIMIC-Eye's race TPR gap (0.015 -> 0.024) without a word
    original = _diagnosis(_world(tpr_w=0.800, tpr_n=0.785))
    tuned = _diagnosis(_world(tpr_w=0.800, tpr_n=0.776, sr_f=0.31), wide={("dp_signed", "gender", "gap"),
                                                                          ("selection_rate", "gender", "F"),
                                                                          ("dp_diff", "gender", "gap")})
    changes = findings.mitigation_gap_changes({("mimic_eye", "paper"): original}, {("mimic_eye", "paper"): tuned})
    assert list(changes.columns[:3]) == ["cohort", "model", "kind"]
    c = changes.set_index("what")
    row = c.loc["race TPR gap (non-White − White)"]
    assert row["before"] == pytest.approx(-0.015) and row["after"] == pytest.approx(-0.024)
    assert row["change"] == pytest.approx(-0.009) and row["verdict"] == "widens" and row["hurts"]
    assert c.loc["TPR of non-White stays", "hurts"] and not c.loc["TPR of White stays", "hurts"]
    assert c.loc["gender DP gap (women − men)", "verdict"] == "no clear difference"
    effects = pd.DataFrame([{"cohort": "mimic_eye", "model": "paper", "modality": "x", "perturbation": "blank",
                             "attribute": "overall", "group": "all", "flip_rate": 0.2, "mean_abs_dp": 0.1}])
    side = pd.DataFrame([{"cohort": "MIMIC-Eye", "model": "paper", "variant": v, "flip rate, blank (%)": f}
                         for v, f in (("original", 20.0), ("consistency", 8.0))]).set_index(["cohort", "model", "variant"])
    text = findings.interference_answer(effects, None, pd.DataFrame(), side, ["mimic_eye"], ["paper"], ["blank"],
                                        changes)
    assert "race TPR gap (non-White − White) -0.015 → -0.024 (-0.009 [-0.009, -0.009]: **it hurts**: the gap widens)" in text
    assert "race TPR gap (max − min) 0.015 → 0.024 (+0.009 [+0.009, +0.009]: **it hurts**: the gap widens)" in text
    assert ("**The fine-tuning hurts** the race TPR gap (non-White − White) (it widens), non-White stays (their TPR "
            "falls), the race TPR gap (max − min) (it widens), the race EO gap (max − min) (it widens)") in text
    assert "gender DP gap (women − men) +0.000 → +0.010" not in text, "not clear: counted, in the table"
    assert "no clear difference in the other" in text and "narrows" not in text


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


def test_harm_table_is_chapter_05s_pivot():
    sweep, _ = _sweep_world()
    harm = findings.modality_harm(sweep, "paper", {"mimic_eye": ["x"]})
    got = findings.harm_table(harm)
    want = harm.pivot_table(index=["cohort", "modality lost"], columns=["attribute", "group"],
                            values="change [95% CI]", aggfunc="first")
    pd.testing.assert_frame_equal(got, want)
    assert got.loc[("MIMIC-Eye", "x"), ("race", "non-White")] == "-0.100 [-0.100, -0.100]"
