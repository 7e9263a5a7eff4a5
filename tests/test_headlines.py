"""The findings box each chapter opens with (mmlib.headlines), on the hand-made summaries, sweeps and diagnoses of
tests/test_findings.py, whose answers are known."""
import pandas as pd
import pytest
from test_findings import ORDER, WIDE, _decision_inputs, _diagnosis, _summary, _sweep_world, _world

from mmlib import findings, headlines


def test_box_is_a_callout_with_one_bullet_per_sentence_and_refuses_nothing():
    text = headlines.box(["one.", "", "two."])
    assert text.splitlines() == ["::: {.callout-important}", f"## {headlines.TITLE}", "", "- one.", "- two.", ":::"]
    with pytest.raises(ValueError, match="at least one sentence"):
        headlines.box([])


def _singles():
    vals = {}
    for m, au, race, gender in (("a", 0.70, -0.10, 0.0), ("b", 0.65, 0.0, 0.0), ("c", 0.55, 0.0, 0.08)):
        vals[("paper", m, "auroc", "overall")] = au
        vals[("paper", m, "tpr_signed", "race")] = race
        vals[("paper", m, "tpr_signed", "gender")] = gender
    return _summary(vals)


def test_single_modalities_names_best_and_worst_and_counts_clear_signed_gaps():
    [s] = headlines.single_modalities(_singles(), {"c": ["a", "b", "c"]}, "paper")
    assert "alone, **a** predicts best (AUROC 0.700 [0.690, 0.710]) and **c** least (0.550 [0.540, 0.560])" in s
    # a's race gap (-0.10 ± 0.01) and c's gender gap (+0.08 ± 0.01) exclude 0; the four gaps at 0 do not
    assert "2 of 6 signed TPR gaps of the single modalities (race and gender) are clearly different from 0" in s


def test_adding_modalities_states_the_paired_gain_over_the_best_single_modality():
    vals = {}
    for lab, au in (("a", 0.60), ("b", 0.55), ("c", 0.50), ("a+b+c", 0.75)):
        vals[("paper", lab, "auroc", "overall")] = au
        vals[("paper", lab, "tpr_signed", "race")] = -0.10 if lab == "a+b+c" else 0.0
        vals[("paper", lab, "tpr_signed", "gender")] = 0.0
    [s] = headlines.adding_modalities(_summary(vals), {"c": ORDER}, "paper")
    assert "all modalities reach AUROC 0.750 against 0.600 for the best single one, **a**" in s
    assert "+0.150 [+0.150, +0.150]: adding modalities clearly helps" in s
    assert "signed TPR gap by race" in s and "-0.100 [-0.110, -0.090]: the group is clearly below the reference" in s
    assert "by gender" in s and "no clear difference" in s
    # a gain whose paired interval contains 0 is not called help
    vals[("paper", "a+b+c", "auroc", "overall")] = 0.605
    summary = _summary(vals)
    summary.replicates[("c", "paper", "a+b+c")][("auroc", "overall", "all")] = 0.605 + WIDE
    [s] = headlines.adding_modalities(summary, {"c": ORDER}, "paper")
    assert "for the best single one, **a**" in s and ": no clear difference); with all" in s
    assert "clearly helps" not in s


def test_losing_modalities_states_losses_widened_gaps_and_who_is_missing():
    sweep, rates = _sweep_world()
    [s] = headlines.losing_modalities(sweep, ["mimic_eye"], ["paper", "late"], rates)
    assert "from nothing missing to p = 0.4 missing at random, AUROC changes by `paper` -0.100 [-0.100, -0.100], " \
           "`late` -0.020 [-0.020, -0.020]" in s
    # the race TPR gap widens clearly (−0.05 → −0.10 ...); the gender gap's move at p = 0.1 is inside its interval
    assert "1 signed gap of `paper` clearly widens at some rate (race TPR gap (non-White − White))" in s
    # group-dependent at p = 0.1: non-White TPR 0.68 against 0.65 at random: the gap narrows by +0.03
    assert "at p = 0.1" in s and "(non-White − White, -0.100 at random) by +0.030 [+0.030, +0.030]: narrows" in s


def test_decision_layer_says_whether_a_modality_leads_and_what_calibration_hurts():
    layers, orders, _, summary, _ = _decision_inputs([0.7, 0.3, 0.6, 0.4])
    [s] = headlines.decision_layer(layers, orders, summary)
    assert "**a** has the largest share of the decision layer's weight, clearly (65.0%)" in s
    assert "changes AUROC by +0.010 [+0.010, +0.010]" in s
    assert "**hurts**: race DP gap (non-White − White), race DP gap (max − min)" in s
    layers, orders, _, summary, _ = _decision_inputs([0.5005, 0.4995, 0.5005, 0.4995])
    [s] = headlines.decision_layer(layers, orders, summary)
    assert "no modality clearly dominates the decision layer (shares a 50.0%, b 50.0%)" in s


def test_interference_states_switch_noise_and_what_the_fine_tuning_hurts():
    original = _diagnosis(_world(tpr_w=0.800, tpr_n=0.785))
    tuned = _diagnosis(_world(tpr_w=0.800, tpr_n=0.776))
    changes = findings.mitigation_gap_changes({("mimic_eye", "paper"): original}, {("mimic_eye", "paper"): tuned})
    rows = [("paper", "x", "switch", 0.30), ("paper", "y", "switch", 0.10), ("paper", "x", "blank", 0.20),
            ("paper", "y", "irrelevant", 0.10), ("paper+consistency", "x", "blank", 0.05),
            ("paper+consistency", "y", "irrelevant", 0.05)]
    effects = pd.DataFrame([{"cohort": "mimic_eye", "model": m, "modality": mod, "perturbation": p,
                             "attribute": "overall", "group": "all", "flip_rate": f} for m, mod, p, f in rows])
    [s] = headlines.interference(effects, changes, ["mimic_eye"], "paper")
    assert "switching **x** for another stay's flips the most decisions (30.0%)" in s
    assert "blank or irrelevant content flips 15.0% of decisions on average, 5.0% after consistency fine-tuning" in s
    assert "the fine-tuning **hurts**: race TPR gap (non-White − White), TPR of non-White stays" in s


def test_lab_counts_null_coverage_and_names_what_is_recovered_by_what():
    recovery = pd.DataFrame([
        {"cohort": "MIMIC-Eye", "knob": "label_bias", "model": "(data)", "recovered": "yes"},
        {"cohort": "MIMIC-Eye", "knob": "under_triage", "model": "structured probe", "recovered": "yes"},
        {"cohort": "MIMIC-Eye", "knob": "under_triage", "model": "paper", "recovered": "no"},
        {"cohort": "MIMIC-Eye", "knob": "spo2_overread", "model": "paper", "recovered": "no"},
        {"cohort": "MIMIC-Eye", "knob": "cxr_underdocumentation", "model": "", "recovered": "n/a"}])
    null = pd.DataFrame({"covers 0": ["yes", "yes", "no", "n/a"]})
    first, eye = headlines.lab(recovery, null, 3.0)
    assert first.startswith("With every knob off, 2 of 3 signed estimands have a 95% interval that covers 0")
    assert eye == ("**MIMIC-Eye**, each knob at ×3: recovered: `label_bias` (by the data); `under_triage` (by structured "
                   "probe); not recovered: `spo2_overread`; not measurable here (no race group large enough, or no such "
                   "data): `cxr_underdocumentation`."), "knobs by their parameter names, marked as code"
    [_, only] = headlines.lab(recovery.assign(recovered="n/a"), null, 3.0)
    assert "no knob recovered" not in only and "each knob at ×3: not measurable here" in only
    assert headlines.lab(pd.DataFrame(), pd.DataFrame(), 3.0) == [
        "No race group was large enough to measure any knob's effect at this cohort size."]


def test_gaps_that_cannot_be_estimated_are_said_so_in_words():
    vals = {}
    for lab, au in (("a", 0.60), ("b", 0.55), ("c", 0.50), ("a+b+c", 0.75)):
        vals[("paper", lab, "auroc", "overall")] = au
        for attr in ("race", "gender"):
            vals[("paper", lab, "tpr_signed", attr)] = float("nan")
    s = _summary(vals)
    [one] = headlines.single_modalities(s, {"c": ["a", "b", "c"]}, "paper")
    assert one.endswith("no signed TPR gap could be estimated (no group large enough to compare).")
    [add] = headlines.adding_modalities(s, {"c": ORDER}, "paper")
    assert "the signed TPR gap by race is not estimable (no group large enough to compare)" in add and "–" not in add
