"""Perturbations change only the targeted modality; consistency fine-tuning is deterministic and reduces
interference."""
import numpy as np
import pytest
import torch

from mmlib import interference, train

D = 16


def _vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=D).astype(np.float32), rng.normal(size=(5, D)).astype(np.float32)


@pytest.mark.parametrize("kind", interference.PERTURBATIONS)
def test_perturb_changes_only_the_target_modality_of_stays_that_have_it(toy_data, kind):
    data = toy_data()
    blank, irr = _vectors()
    x, mask = data.x, data.mask
    out = interference.perturb(x, mask, 1, kind, seed=3, blank=blank, irrelevant=irr)
    assert np.array_equal(out[:, 0], x[:, 0]), "the other modality is untouched"
    assert np.array_equal(out[~mask[:, 1], 1], x[~mask[:, 1], 1]), "a stay without the modality is untouched"
    changed = (out[mask[:, 1], 1] != x[mask[:, 1], 1]).any(axis=1)
    assert changed.all()
    if kind == "blank":
        assert (out[mask[:, 1], 1] == blank).all()
    if kind == "switch":
        # every perturbed stay now carries some other stay's (present) input
        src = {row.tobytes() for row in x[mask[:, 1], 1]}
        assert all(row.tobytes() in src for row in out[mask[:, 1], 1])
    assert np.array_equal(out, interference.perturb(x, mask, 1, kind, seed=3, blank=blank, irrelevant=irr))
    with pytest.raises(ValueError, match="perturbation"):
        interference.perturb(x, mask, 1, "shuffle", 0, blank, irr)


def test_perturb_batch_touches_one_present_modality_per_sample(toy_data):
    data = toy_data()
    blank, irr = _vectors()
    x, m = torch.as_tensor(data.x), torch.as_tensor(data.mask)
    out = interference.perturb_batch(x, m, x, m, torch.as_tensor(blank), torch.as_tensor(irr),
                                     torch.Generator().manual_seed(0))
    diff = (out != x).any(dim=2)
    assert (diff.sum(1) <= 1).all()
    assert not (diff & ~m).any(), "never a missing modality"
    assert diff.any(1).float().mean() > 0.9


def test_flip_rate_and_delta_p():
    p0 = np.array([[0.2, 0.6, 0.7, 0.4]])
    p1 = np.array([[0.6, 0.6, 0.3, 0.4]])
    rows = interference.perturbation_effects(p0, p1, np.array([0.5]), np.array([True, True, True, False]),
                                             {"race": np.array(["a", "a", "b", "b"])})
    overall = rows[0]
    assert overall["flip_rate"] == pytest.approx(2 / 3) and overall["mean_abs_dp"] == pytest.approx(0.8 / 3)
    b = [r for r in rows if r["group"] == "b"][0]
    assert b["n"] == 1 and b["flip_rate"] == 1.0


def test_group_effect_gaps_are_each_group_minus_the_reference_with_an_interval():
    from mmlib.metrics import Bootstrap

    rng = np.random.default_rng(0)
    n = 400
    race = np.array(["White", "non-White", "Unknown", "Other"])[rng.integers(0, 4, n)]
    p0 = rng.uniform(0.1, 0.9, (2, n))
    # non-White stays are moved by 0.2, White stays by 0.05: a clear difference; Unknown is never compared
    shift = np.where(race == "non-White", 0.2, 0.05)
    p1 = np.clip(p0 + shift, 0, 1)
    affected = rng.random(n) < 0.8
    flags = {"race": {"White": "", "non-White": "", "Unknown": "race not recorded: reported, not compared",
                      "Other": "too small to estimate (n=3 < 30)"}}
    boot = Bootstrap.draw(race, n_boot=50, seed=0)
    rows = interference.group_effect_gaps(p0, p1, np.array([0.5, 0.5]), affected, {"race": race}, flags, boot)
    assert {(r["group"], r["measure"]) for r in rows} == {("non-White", "flip_rate"), ("non-White", "mean_abs_dp")}
    dp = next(r for r in rows if r["measure"] == "mean_abs_dp")
    sel = affected & (race == "non-White")
    assert dp["value_group"] == pytest.approx(np.abs(p1 - p0)[:, sel].mean())
    assert dp["reference"] == "White" and dp["difference"] == pytest.approx(dp["value_group"] - dp["value_reference"])
    assert dp["ci_low"] > 0, "a clear difference: its CI excludes 0"
    # the same movement for every group: the interval of the difference contains 0
    same = interference.group_effect_gaps(p0, np.clip(p0 + 0.1, 0, 1), np.array([0.5, 0.5]), affected,
                                          {"race": race}, flags, boot)
    flip = next(r for r in same if r["measure"] == "flip_rate")
    assert flip["ci_low"] <= 0 <= flip["ci_high"]
    # a withheld group (a credentialed source's small group) is left out
    withheld = [{"attribute": "race", "group": "non-White", "flip_rate": np.nan}]
    assert interference.group_effect_gaps(p0, p1, np.array([0.5, 0.5]), affected, {"race": race}, flags, boot,
                                          withheld) == []


def test_consistency_finetuning_is_deterministic_and_reduces_interference(toy_data):
    data = toy_data(n=400)
    blank, irr = _vectors()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=10, batch_size=32, lr=0.01)
    fit = train.fit_network(data, "paper", ["good", "noise"], 0, cfg)
    tuned = interference.finetune_consistency(fit, data, cfg, weight=5.0, epochs=4, blank=blank, irrelevant=irr)
    again = interference.finetune_consistency(fit, data, cfg, weight=5.0, epochs=4, blank=blank, irrelevant=irr)
    te = data.rows("test")
    x, mk = data.x[te], data.mask[te]
    assert np.array_equal(train.predict(tuned, x, mk), train.predict(again, x, mk))
    assert tuned.name == "paper+consistency"
    xb = interference.perturb(x, mk, 0, "blank", 0, blank, irr)
    moved = lambda f: np.abs(train.predict(f, xb, mk) - train.predict(f, x, mk)).mean()
    assert moved(tuned) < moved(fit)


def test_shuffled_modality_keeps_its_distribution_within_each_split(toy_data):
    data = toy_data()
    sh = interference.shuffle_modality(data, "noise", seed=1)
    assert np.array_equal(sh.x[:, 0], data.x[:, 0]) and np.array_equal(sh.mask[:, 0], data.mask[:, 0])
    for split in ("train", "val", "test"):
        r = data.rows(split)
        before = sorted(row.tobytes() for row in data.x[r, 1])
        after = sorted(row.tobytes() for row in sh.x[r, 1])
        assert before == after and sh.mask[r, 1].sum() == data.mask[r, 1].sum()
    assert not np.array_equal(sh.x[:, 1], data.x[:, 1])


def test_diagnose_covers_every_modality_and_perturbation(toy_data):
    data = toy_data(n=400)
    blank, irr = _vectors()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=4, batch_size=32, lr=0.01)
    fits = [train.fit_network(data, "paper", ["good", "noise"], s, cfg) for s in (0, 1)]
    dg = interference.diagnose(data, fits, interference.PERTURBATIONS, blank, irr, seed=0,
                               min_group=5, min_events=2, n_boot=10)
    eff, chg, clean = dg.effects, dg.changes, dg.clean
    same = dg.clean_change(dg, ("tpr_diff", "race", "gap"))
    assert same.change == same.ci_low == same.ci_high == 0.0, "a model against itself changes nothing"
    assert dg.labelled(cohort="toy").clean_replicates is dg.clean_replicates
    assert dg.flags["race"] == {"White": "", "non-White": ""}, "which groups are compared travels with the diagnosis"
    gaps = dg.labelled(cohort="toy").group_gaps
    assert set(gaps["attribute"]) == {"race", "gender"} and (gaps["cohort"] == "toy").all()
    assert len(gaps[(gaps.attribute == "race")]) == 2 * 3 * 2, "every modality x perturbation x measure"
    assert set(gaps.loc[gaps.attribute == "gender", "group"]) == {"F"} and set(gaps["reference"]) == {"White", "M"}
    assert gaps["difference"].notna().all() and (gaps["ci_low"] <= gaps["ci_high"]).all()
    both = interference.Diagnosis.concat([dg.labelled(model="a"), dg.labelled(model="b")])
    assert len(both.group_gaps) == 2 * len(gaps)
    overall = eff[eff.attribute == "overall"]
    assert len(overall) == 2 * 3 and overall["flip_rate"].between(0, 1).all()
    # the label lives in modality "good": replacing it moves predictions more than replacing the noise
    by = overall.groupby("modality")["mean_abs_dp"].mean()
    assert by["good"] > by["noise"]
    auc = chg[(chg.metric == "auroc") & (chg.modality == "good") & (chg.perturbation == "switch")].iloc[0]
    assert auc["change"] < 0 and auc["clean"] == pytest.approx(
        clean.set_index("metric").loc["auroc", "mean"])


# ------------------------------------------------------------------------ chapter 07's loops, as functions
@pytest.fixture(scope="module")
def two_models(toy_data):
    """Toy data of one cohort and two fitted models (two seeds each), in chapter 07's shapes."""
    data = toy_data(n=400)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, batch_size=32, lr=0.01)
    fits = {("toy", m): [train.fit_network(data, m, ["good", "noise"], s, cfg) for s in (0, 1)]
            for m in ("paper", "late")}
    return {"toy": data}, fits, cfg


SETTINGS = dict(seed=0, min_group=5, min_events=2, n_boot=10)


def _same_diagnosis(a: interference.Diagnosis, b: interference.Diagnosis):
    import pandas as pd

    for k in ("effects", "changes", "clean", "group_gaps"):
        pd.testing.assert_frame_equal(getattr(a, k), getattr(b, k))


def test_diagnose_many_is_diagnose_of_each_model_labelled(two_models):
    data, fits, _ = two_models
    blank, irr = _vectors()
    each, both = interference.diagnose_many(data, fits, ["switch", "blank"], blank, irr, label="{model}+x", **SETTINGS)
    assert list(each) == [("toy", "paper"), ("toy", "late")]
    for (n, m), fl in fits.items():
        _same_diagnosis(each[(n, m)], interference.diagnose(data[n], fl, ["switch", "blank"], blank, irr, **SETTINGS))
    want = interference.Diagnosis.concat([each[k].labelled(cohort="toy", model=f"{k[1]}+x") for k in each])
    _same_diagnosis(both, want)
    assert list(both.effects["model"].unique()) == ["paper+x", "late+x"] and (both.clean["cohort"] == "toy").all()


def test_finetune_all_is_finetune_many_of_each_model(two_models):
    data, fits, cfg = two_models
    blank, irr = _vectors()
    one = {("toy", "paper"): fits[("toy", "paper")]}
    tuned, seconds = interference.finetune_all(one, data, cfg, 1.0, 1, blank, irr)
    assert list(tuned) == [("toy", "paper")] and seconds > 0
    direct = interference.finetune_many(fits[("toy", "paper")], data["toy"], cfg, 1.0, 1, blank, irr)
    te = data["toy"].rows("test")
    x, mk = data["toy"].x[te], data["toy"].mask[te]
    assert [f.name for f in tuned[("toy", "paper")]] == ["paper+consistency"] * 2
    for a, b in zip(tuned[("toy", "paper")], direct):
        assert np.array_equal(train.predict(a, x, mk), train.predict(b, x, mk))


def test_positive_control_and_its_summary(two_models):
    from mmlib import findings

    data, fits, cfg = two_models
    blank, irr = _vectors()
    orders = {"toy": train.ModalityOrder(["noise", "good"])}  # the last modality, "good", is shuffled
    got = interference.positive_control(data, orders, "paper", [0], cfg, ["switch"], blank, irr, shuffle_seed=1,
                                        **SETTINGS)
    shuffled = interference.shuffle_modality(data["toy"], "good", seed=1)
    g = train.run_grid(shuffled, [("paper", ["noise", "good"])], [0], cfg, keep={("paper", "noise+good")},
                       progress=False)
    want = interference.diagnose(shuffled, g.fits_of("paper", "noise+good", [0]), ["switch"], blank, irr, **SETTINGS)
    assert list(got) == ["toy"]
    _same_diagnosis(got["toy"], want)
    _, real = interference.diagnose_many(data, fits, ["switch"], blank, irr, **SETTINGS)
    overall = real.effects[real.effects.attribute == "overall"]
    table = findings.control_summary(overall, got, orders, "paper", ["switch"])
    assert list(table["modality"]) == ["good"] and list(table["perturbation"]) == ["switch"]
    row, eff = table.iloc[0], got["toy"].effects
    real_rate = overall[(overall.model == "paper") & (overall.modality == "good")]["flip_rate"].iloc[0]
    shuffled_rate = eff[(eff.attribute == "overall") & (eff.modality == "good")]["flip_rate"].iloc[0]
    assert (row["flip rate, real (%)"], row["flip rate, shuffled (%)"]) == (round(100 * real_rate, 1),
                                                                          round(100 * shuffled_rate, 1))
    # the shuffled modality carries no signal: switching it moves the predictions less than in the real model
    moved = lambda e: e[(e.attribute == "overall") & (e.modality == "good")]["mean_abs_dp"].iloc[0]  # noqa: E731
    assert moved(eff) < moved(overall[overall.model == "paper"])
    assert findings.control_summary(overall, {}, orders, "paper", ["switch"]).empty


def test_chapter_07s_figures_and_tables_are_its_loops(two_models):
    """plots.flip_rate_figures and plots.group_interference draw, cohort by cohort, the figures chapter 07 drew in its
    loops (same titles, captions, pixels), and findings.mean_abs_dp_table / flip_rate_table are its pivots."""

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    from mmlib import findings, metrics, plots
    from mmlib.schema import display_name

    from figure_bytes import png  # tests/figure_bytes.py

    data, fits, _ = two_models
    blank, irr = _vectors()
    kinds, models = ["switch", "blank"], ["paper", "late"]
    _, diagnosis = interference.diagnose_many(data, fits, kinds, blank, irr, **SETTINGS)
    # the toy cohort under two names, so that the display names show
    effects = pd.concat([diagnosis.effects.assign(cohort=n) for n in ("mimic_eye", "mds_ed")], ignore_index=True)
    names, orders = ["mimic_eye", "mds_ed"], {n: ["good", "noise"] for n in ("mimic_eye", "mds_ed")}
    overall = effects[effects.attribute == "overall"]
    new = plots.flip_rate_figures(overall, names, models, orders, kinds)
    old = [plots.interference_heatmaps(overall[overall.cohort == n], models, orders[n], kinds,
                                       title=f"{display_name(n)}: share of decisions that flip when one modality is "
                                             "replaced") for n in names]
    groups_all = effects[effects.attribute.isin(["race", "gender"])]
    new += plots.group_interference(effects, names, orders, kinds, "paper")
    by = groups_all[(groups_all.model == "paper") & ~groups_all.group.map(metrics.not_compared)]
    old += [plots.interference_by_group(by[by.cohort == n], orders[n], kinds,
                                        title=f"{display_name(n)}: mean |Δp| by group when one modality is replaced "
                                              "(paper model)") for n in names]
    assert len(new) == len(old) == 4
    for a, b in zip(new, old):
        assert plots.figure_text(a) == plots.figure_text(b) and png(a) == png(b)
    matplotlib.pyplot.close("all")
    pd.testing.assert_frame_equal(
        findings.mean_abs_dp_table(overall),
        overall.pivot_table(index=["cohort", "model", "modality"], columns="perturbation",
                            values="mean_abs_dp").round(3).rename_axis(columns="mean |Δp|"))
    want = (100 * groups_all.pivot_table(index=["cohort", "model", "perturbation"], columns=["attribute", "group"],
                                         values="flip_rate")).round(1)
    got = findings.flip_rate_table(effects)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == 2 * len(models) * len(kinds) and set(got.columns.get_level_values(0)) == {"race", "gender"}
