"""Mask samplers and prediction under masks (mmlib.missing)."""
import numpy as np
import pytest

from mmlib import missing, train


def test_bernoulli_masks_rates_determinism_and_extremes():
    rng = np.random.default_rng(0)
    present = rng.random((2000, 3)) > 0.2
    m = missing.bernoulli_masks(present, 0.3, draws=10, seed=1)
    assert m.shape == (10, 2000, 3)
    assert not (m & ~present[None]).any(), "an absent modality never comes back"
    kept = m.sum() / (10 * present.sum())
    assert kept == pytest.approx(0.7, abs=0.01)
    assert np.array_equal(m, missing.bernoulli_masks(present, 0.3, draws=10, seed=1))
    assert not np.array_equal(m, missing.bernoulli_masks(present, 0.3, draws=10, seed=2))
    assert np.array_equal(missing.bernoulli_masks(present, 0.0, 2, 0)[1], present)
    assert not missing.bernoulli_masks(present, 1.0, 2, 0).any()
    per = missing.bernoulli_masks(present, [0.0, 1.0, 0.5], draws=4, seed=0)
    assert np.array_equal(per[:, :, 0], np.broadcast_to(present[:, 0], (4, 2000)))
    assert not per[:, :, 1].any()
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        missing.bernoulli_masks(present, 1.5, 2, 0)


def test_group_masks_hit_each_groups_rate():
    n = 20000
    groups = np.where(np.arange(n) % 4 == 0, "non-White", "White")
    present = np.ones((n, 2), bool)
    m = missing.group_masks(present, groups, {"White": 0.1, "non-White": 0.4}, draws=5, seed=0)
    for g, r in (("White", 0.1), ("non-White", 0.4)):
        lost = 1 - m[:, groups == g].mean()
        k = (groups == g).sum() * 2 * 5
        assert abs(lost - r) < 4 * np.sqrt(r * (1 - r) / k), (g, lost)
    with pytest.raises(ValueError, match="no missingness rate for groups"):
        missing.group_masks(present, groups, {"White": 0.1}, 1, 0)


def test_matched_group_rates_keep_the_mean_and_the_ratio():
    groups = np.array(["a"] * 300 + ["b"] * 100)
    r = missing.matched_group_rates(groups, {"a": 0.1, "b": 0.3}, mean_rate=0.3)
    assert r["b"] / r["a"] == pytest.approx(3.0)
    assert (0.75 * r["a"] + 0.25 * r["b"]) == pytest.approx(0.3)
    with pytest.raises(missing.GroupRatesAboveOne, match="exceed 1") as err:
        missing.matched_group_rates(groups, {"a": 0.1, "b": 0.9}, mean_rate=0.8)
    assert err.value.rates == pytest.approx({"a": 0.8 / 3, "b": 2.4}) and isinstance(err.value, ValueError)
    assert err.value.sentence() == "b would need a rate of 2.400 (a 0.267)", "in words, never a Python dict"
    both = missing.GroupRatesAboveOne(0.9, {"a": 1.2, "b": 1.5, "c": 0.5})
    assert both.sentence() == "b would need a rate of 1.500 and a 1.200 (c 0.500)"


def test_predict_masked_equals_predict_per_draw_and_all_missing_is_constant(toy_data):
    data = toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, batch_size=64)
    te = data.rows("test")
    for name in ("paper", "resilient", "late"):
        fit = train.fit_network(data, name, ["good", "noise"], 0, cfg)
        masks = missing.bernoulli_masks(data.mask[te], 0.5, draws=3, seed=0)
        p = missing.predict_masked(fit, data.x[te], masks, chunk=50)
        for d in range(3):
            assert np.allclose(p[d], train.predict(fit, data.x[te], masks[d]))
        none = missing.bernoulli_masks(data.mask[te], 1.0, draws=2, seed=0)
        q = missing.predict_masked(fit, data.x[te], none)
        assert np.allclose(q, q.flat[0]), f"{name}: with every modality missing the prediction is constant"
        zero = missing.predict_masked(fit, data.x[te], missing.bernoulli_masks(data.mask[te], 0.0, 1, 0))
        assert np.array_equal(zero[0], train.predict(fit, data.x[te], data.mask[te]))


def test_rate_zero_reproduces_the_unmasked_summary_exactly(toy_data):
    from mmlib import metrics

    data = toy_data(n=400)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, batch_size=64)
    res = train.run_grid(data, [("paper", ["good", "noise"])], [0, 1], cfg, keep={("paper", "good+noise")}, progress=False)
    ref = metrics.summarise(res.predictions, n_boot=20, min_group=5, min_events=2, progress=False).table
    te = data.rows("test")
    groups = metrics.evaluation_groups(data, "test", min_group=5, min_events=2)
    masks = missing.bernoulli_masks(data.mask[te], 0.0, draws=3, seed=0)
    got, _ = missing.evaluate_condition(data, res.fits_of("paper", "good+noise", [0, 1]), masks, groups, boot=False)
    merged = ref.merge(got, on=["metric", "attribute", "group"], suffixes=("", "_sweep"))
    assert len(merged) == len(got) == len(ref)
    assert np.allclose(merged["mean"], merged["mean_sweep"], equal_nan=True, atol=1e-12)


def test_training_missingness_touches_only_train_and_val(toy_data):
    data = toy_data()
    d2 = missing.with_training_missingness(data, 0.5, seed=0)
    te = data.rows("test")
    assert np.array_equal(d2.mask[te], data.mask[te]) and np.array_equal(d2.x[te], data.x[te])
    tr = data.rows("train")
    assert 0.4 < 1 - d2.mask[tr].sum() / data.mask[tr].sum() < 0.6
    assert (d2.x[~d2.mask] == 0).all()


def test_curve_area_is_the_mean_over_the_grid():
    assert missing.curve_area([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert missing.curve_area([0.5, 0.0], [0.2, 0.8]) == pytest.approx(0.5)  # unsorted input
    assert np.isnan(missing.curve_area([0.3], [0.7]))


# ------------------------------------------------------------------------------------ sweeps and availability
@pytest.fixture(scope="module")
def sweep_setup(toy_data):
    from mmlib import metrics

    data = toy_data(n=400)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    res = train.run_grid(data, [("paper", ["good", "noise"])], [0, 1], cfg, keep={("paper", "good+noise")},
                         progress=False)
    groups = metrics.evaluation_groups(data, "test", min_group=5, min_events=2, n_boot=20)
    return data, res, groups


def _masks(data, rate, draws=3):
    return missing.bernoulli_masks(data.mask[data.rows("test")], rate, draws=draws, seed=0)


def test_sweep_labels_concatenates_and_knows_its_conditions(sweep_setup):
    data, res, groups = sweep_setup
    fits = res.fits_of("paper", "good+noise", [0, 1])
    sweep = missing.Sweep()
    assert sweep.table.empty and not sweep.has(cohort="toy")
    t0 = sweep.evaluate(data, fits, _masks(data, 0.0), groups, cohort="toy", model="paper", rate=0.0)
    assert list(t0.columns) == ["metric", "attribute", "group", "mean", "sd", "ci_low", "ci_high", "cohort", "model",
                                "rate"], "labels are added in keyword order after the metric columns"
    assert (t0["cohort"] == "toy").all() and (t0["rate"] == 0.0).all()
    t1 = sweep.evaluate(data, fits, _masks(data, 0.5), groups, model="paper", rate=0.5, cohort="toy")
    assert list(t1.columns[-3:]) == ["model", "rate", "cohort"]
    table = sweep.table
    assert len(table) == len(t0) + len(t1)
    assert list(table.index) == list(range(len(table)))
    assert (table["rate"].iloc[:len(t0)] == 0.0).all() and (table["rate"].iloc[len(t0):] == 0.5).all()
    assert np.array_equal(table["mean"].iloc[len(t0):].to_numpy(), t1["mean"].to_numpy(), equal_nan=True)
    assert sweep.has(cohort="toy", model="paper", rate=0.0)
    assert sweep.has(rate=0.5, model="paper", cohort="toy"), "keyword order does not matter"
    assert not sweep.has(cohort="toy", model="paper"), "labels must match exactly, not a subset"
    assert not sweep.has(cohort="toy", model="paper", rate=0.3)
    rows, reps = sweep.condition(rate=0.5, model="paper", cohort="toy")
    assert rows is t1 and reps is sweep.replicates[sweep._key(dict(cohort="toy", model="paper", rate=0.5))]
    with pytest.raises(KeyError, match="no condition labelled"):
        sweep.condition(cohort="toy", model="paper")


def test_sweep_difference(sweep_setup):
    from mmlib import metrics

    data, res, groups = sweep_setup
    fits = res.fits_of("paper", "good+noise", [0, 1])
    sweep = missing.Sweep()
    a, b = dict(cohort="toy", model="paper", rate=0.0), dict(cohort="toy", model="paper", rate=0.5)
    sweep.evaluate(data, fits, _masks(data, 0.0), groups, **a)
    sweep.evaluate(data, fits, _masks(data, 0.5), groups, **b)
    key = ("auroc", "overall", "all")
    same = sweep.difference(key, a, a)
    assert (same.change, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    assert same.verdict == "no clear change"
    gap = ("tpr_diff", "race", "gap")
    assert tuple(sweep.difference(gap, b, b)) == (0.0, 0.0, 0.0)
    ch = sweep.difference(key, a, b)
    ma = metrics.select(sweep.table, "auroc", cohort="toy", rate=0.0)["mean"].iloc[0]
    mb = metrics.select(sweep.table, "auroc", cohort="toy", rate=0.5)["mean"].iloc[0]
    assert ch.change == pytest.approx(mb - ma)
    assert ch.ci_low <= ch.ci_high
    assert ch.change < 0, "losing half the modalities costs AUROC on data where one modality carries the label"
    back = sweep.difference(key, b, a)
    assert back.change == pytest.approx(-ch.change)
    # a condition scored without the bootstrap, or never scored: NaN
    c = dict(cohort="toy", model="paper", rate=0.3)
    sweep.evaluate(data, fits, _masks(data, 0.3), groups, boot=False, **c)
    assert sweep.has(**c)
    for other in (sweep.difference(key, a, c), sweep.difference(key, c, a),
                  sweep.difference(key, a, dict(cohort="toy", model="paper", rate=0.9))):
        assert isinstance(other, metrics.Change) and np.isnan(other).all()


def test_sweep_add_keeps_rows_scored_elsewhere(sweep_setup):
    data, res, groups = sweep_setup
    fits = res.fits_of("paper", "good+noise", [0, 1])
    t, reps = missing.evaluate_condition(data, fits, _masks(data, 0.0), groups)
    sweep = missing.Sweep()
    sweep.add(t, cohort="toy", model="paper", kind="clean")
    assert sweep.has(cohort="toy", model="paper", kind="clean")
    assert list(sweep.table.columns[-3:]) == ["cohort", "model", "kind"] and len(sweep.table) == len(t)
    a, b = dict(cohort="toy", model="paper", kind="clean"), dict(cohort="toy", model="paper", kind="copy")
    sweep.add(t, reps, **b)
    key = ("f1", "overall", "all")
    assert np.isnan(sweep.difference(key, a, b)).all(), "rows added without replicates have no CI"
    assert tuple(sweep.difference(key, b, b)) == (0.0, 0.0, 0.0)
    assert len(sweep.table) == 2 * len(t) and list(sweep.table["kind"].iloc[[0, -1]]) == ["clean", "copy"]


def test_check_unmasked(sweep_setup):
    from mmlib import metrics

    data, res, groups = sweep_setup
    fits = res.fits_of("paper", "good+noise", [0, 1])
    ref = metrics.summarise(res.predictions, n_boot=20, min_group=5, min_events=2, progress=False).table
    sweep = missing.Sweep()
    sweep.evaluate(data, fits, _masks(data, 0.0), groups, boot=False, cohort="toy", model="paper", protocol="random",
                   rate=0.0)
    sweep.evaluate(data, fits, _masks(data, 0.5), groups, boot=False, cohort="toy", model="paper", protocol="random",
                   rate=0.5)
    # rate 0 of another protocol is not compared (its rows would not match: they are perturbed below)
    grp = sweep.evaluate(data, fits, _masks(data, 0.0), groups, boot=False, cohort="toy", model="paper",
                         protocol="group", rate=0.0)
    table = sweep.table
    table.loc[table.protocol == "group", "mean"] += 1.0
    n_zero = ((table.protocol == "random") & (table.rate == 0.0)).sum()
    assert n_zero == len(grp)
    n, worst = missing.check_unmasked(table, ref, {"toy": "good+noise"})
    assert n == n_zero and worst <= 1e-9
    # a perturbed value
    bad = table.copy()
    row = bad.index[(bad.protocol == "random") & (bad.rate == 0.0) & (bad.metric == "f1")][0]
    bad.loc[row, "mean"] += 1e-4
    with pytest.raises(RuntimeError, match=r"p = 0 does not reproduce the unmasked estimates \(max difference 1\.00e-04"):
        missing.check_unmasked(bad, ref, {"toy": "good+noise"})
    # a value that is NaN on one side only
    bad.loc[row, "mean"] = np.nan
    with pytest.raises(RuntimeError, match="p = 0 does not reproduce"):
        missing.check_unmasked(bad, ref, {"toy": "good+noise"})
    # a row missing from the reference
    short = ref.drop(ref.index[(ref.metric == "auroc") & (ref.attribute == "overall")])
    with pytest.raises(RuntimeError, match=f"over {n_zero - 1} of {n_zero} estimates"):
        missing.check_unmasked(table, short, {"toy": "good+noise"})
    # the reference of another modality set does not count
    with pytest.raises(RuntimeError, match=f"over 0 of {n_zero} estimates"):
        missing.check_unmasked(table, ref, {"toy": "good"})


def _hand_made(split=None):
    """8 stays, modalities a (always present), b, c; White stays 0-3, Black stays 4-7."""
    import pandas as pd

    mask = np.ones((8, 3), bool)
    mask[0, 1] = mask[1, 1] = False           # White: two stays lack b
    mask[4, 2] = False                        # Black: one stay lacks c,
    mask[5, 1] = mask[5, 2] = False           # one lacks b and c
    race = ["White"] * 4 + ["Black"] * 4
    gender = ["F", "M"] * 4
    split = split or ["test", "train"] * 4
    stays = pd.DataFrame({"split": split, "race": race, "gender": gender,
                          "race_gender": [f"{r} {g}" for r, g in zip(race, gender)]},
                         index=pd.Index(range(8), name="stay_id"))
    x = np.where(mask[..., None], 1.0, 0.0).astype(np.float32) * np.ones((8, 3, 2), np.float32)
    return train.FusionData("hand", "y", ["a", "b", "c"], x, mask, np.zeros(8, np.float32), stays,
                            pd.DataFrame([{"reason": "none", "stays": 0}]))


def test_relative_missingness_by_hand():
    data = _hand_made()
    # b and c are sometimes missing, a never: White (.5 + .5 + 0 + 0) / 4, Black (.5 + 1 + 0 + 0) / 4
    assert missing.relative_missingness(data, ["a", "b", "c"]) == pytest.approx({"White": 0.25, "Black": 0.375})
    assert missing.relative_missingness(data, ["c", "b"]) == pytest.approx({"White": 0.25, "Black": 0.375})
    # only b: White 2 of 4 stays, Black 1 of 4
    assert missing.relative_missingness(data, ["b", "a"]) == pytest.approx({"White": 0.5, "Black": 0.25})
    assert missing.relative_missingness(data, ["c"]) == pytest.approx({"White": 0.0, "Black": 0.5})
    with pytest.raises(ValueError, match="not in cohort hand"):
        missing.relative_missingness(data, ["a", "ecg"])


def test_availability_of_the_test_stays_in_order():
    data = _hand_made()  # test stays: 0, 2, 4, 6
    got = missing.test_availability(data, ["c", "b"])
    assert got.dtype == bool
    assert got.tolist() == [[True, False], [True, True], [False, True], [True, True]]
    assert missing.test_availability(data, ["a", "b", "c"]).tolist() == data.mask[[0, 2, 4, 6]].tolist()


def test_predict_masked_runs_each_input_layer_once_per_stay_and_each_mask_once(toy_data):
    # the input layers see each test stay once, the rest of the network each distinct (stay, mask) pair once, and the
    # probabilities are those of predicting every draw on its own, for every network (and the logistic regression)
    from mmlib import models

    data = toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    te = data.rows("test")
    masks = missing.bernoulli_masks(data.mask[te], 0.3, draws=6, seed=1)
    pairs = len({(i, tuple(mk)) for d in range(6) for i, mk in enumerate(masks[d])})
    assert pairs < 6 * len(te), "the draws repeat masks (2 modalities: at most 4 per stay)"
    for name in ("paper", "resilient", "late", "linear", "linear+calibrated", "logreg"):
        if name == "linear+calibrated":
            fit = train.calibrate_modalities(train.fit_network(data, "linear", ["good", "noise"], 0, cfg), data)
        elif name == "logreg":
            fit = train.fit_logreg(data, ["good", "noise"], cfg)
        else:
            fit = train.fit_network(data, name, ["good", "noise"], 0, cfg)
        seen = {"input": 0, "fuse": 0}
        if name != "logreg":
            hooks = [layer.register_forward_hook(lambda mod, inp, out: seen.__setitem__("input", seen["input"] + len(out)))
                     for layer in models.input_layers(fit.model)[:1]]
            real_fuse = fit.model.fuse
            fit.model.fuse = lambda e, mk: (seen.__setitem__("fuse", seen["fuse"] + len(e)), real_fuse(e, mk))[1]
        p = missing.predict_masked(fit, data.x[te], masks, chunk=70)
        if name != "logreg":
            for h in hooks:
                h.remove()
            del fit.model.fuse
            assert seen == {"input": len(te), "fuse": pairs}, name
        per_draw = np.stack([train.predict(fit, data.x[te], masks[d]) for d in range(6)])
        assert np.allclose(p, per_draw, rtol=0, atol=1e-6), name  # float32 rounding of other batch shapes at most


# ------------------------------------------------------------------------------ chapter 05's protocols, as functions
def _protocol_inputs(sweep_setup):
    """Chapter 05's arguments for the toy cohort: data, fits of two models (the same networks under two names, so
    the model order shows), test availability, evaluation groups and the modality order."""
    data, res, groups = sweep_setup
    fl = res.fits_of("paper", "good+noise", [0, 1])
    return ({"toy": data}, {"toy": {"paper": fl, "copy": fl}}, {"toy": data.mask[data.rows("test")]},
            {"toy": groups}, {"toy": train.ModalityOrder(["good", "noise"])})


def _same_sweep(got: missing.Sweep, want: missing.Sweep):
    import pandas as pd

    pd.testing.assert_frame_equal(got.table, want.table)
    assert list(got.replicates) == list(want.replicates)
    for k, reps in want.replicates.items():
        assert list(got.replicates[k]) == list(reps)
        assert all(np.array_equal(got.replicates[k][r], reps[r], equal_nan=True) for r in reps)


def test_random_protocol_is_the_chapters_loop(sweep_setup):
    data, fits, present, groups, _ = _protocol_inputs(sweep_setup)
    got = missing.Sweep()
    run = missing.random_protocol(got, data, fits, present, groups, [0.0, 0.5], 3, mask_seed=2, rank_draws=1)
    want = missing.Sweep()
    for i, p in enumerate([0.0, 0.5]):
        masks = missing.bernoulli_masks(present["toy"], p, 3, seed=2000 + i)
        for m in ("paper", "copy"):
            want.evaluate(data["toy"], fits["toy"][m], masks, groups["toy"], rank_draws=1, cohort="toy", model=m,
                          protocol="random", rate=p, modality="all")
    _same_sweep(got, want)
    assert list(got.table.columns[-5:]) == ["cohort", "model", "protocol", "rate", "modality"]
    assert (run.conditions, run.predictions) == (4, 4 * 3 * len(present["toy"]) * 2) and run.seconds > 0
    assert run.skipped == []
    # the mask seed matters: another seed gives other numbers at p = 0.5
    other = missing.Sweep()
    missing.random_protocol(other, data, fits, present, groups, [0.0, 0.5], 3, mask_seed=3, rank_draws=1)
    assert not np.allclose(other.table["mean"], got.table["mean"], equal_nan=True)


def test_one_modality_protocol_and_its_table(sweep_setup):
    data, fits, present, groups, orders = _protocol_inputs(sweep_setup)
    got = missing.Sweep()
    missing.random_protocol(got, data, fits, present, groups, [0.0], 2, mask_seed=0)
    run = missing.one_modality_protocol(got, data, fits, present, groups, orders, [0.5, 1.0], 2, mask_seed=1)
    want = missing.Sweep()
    missing.random_protocol(want, data, fits, present, groups, [0.0], 2, mask_seed=0)
    for j, mod in enumerate(["good", "noise"]):
        for i, p in enumerate([0.5, 1.0]):
            rate = [p, 0.0] if j == 0 else [0.0, p]
            masks = missing.bernoulli_masks(present["toy"], rate, 2, seed=1000 + 100 * (j + 1) + i)
            for m in ("paper", "copy"):
                want.evaluate(data["toy"], fits["toy"][m], masks, groups["toy"], cohort="toy", model=m,
                              protocol="one modality", rate=p, modality=mod)
    _same_sweep(got, want)
    assert run.conditions == 8
    # at rate 1 the modality is gone from every stay: "good" carries the label, so AUROC falls to chance
    t = got.table
    auroc = t[(t.metric == "auroc") & (t.attribute == "overall") & (t.protocol == "one modality") & (t.rate == 1.0)]
    assert auroc.set_index(["model", "modality"])["mean"].loc[("paper", "good")] < 0.6
    plotted = missing.one_modality_table(t, "toy", orders["toy"])
    base = t[(t.protocol == "random") & (t.rate == 0.0)]
    assert len(plotted) == (t.protocol == "one modality").sum() + 2 * len(base)
    assert set(plotted.modality) == {"good", "noise"} and set(plotted.rate) == {0.0, 0.5, 1.0}
    assert (plotted[plotted.rate == 0.0].protocol == "random").all()
    assert missing.one_modality_table(t, "other", orders["toy"]).empty


def test_group_factors_and_protocol(sweep_setup):
    data, fits, present, groups, orders = _protocol_inputs(sweep_setup)
    assert missing.group_factors(data, orders) == {"toy": missing.relative_missingness(data["toy"], orders["toy"])}
    factors = missing.group_factors(data, orders, {"White": 1, "non-White": 4})
    assert factors == {"toy": {"White": 1.0, "non-White": 4.0}}
    # a mapping must name every group (a group without a factor used to skip every rate, silently)
    with pytest.raises(ValueError, match=r"parameter group_missing: no factor for race group\(s\) non-White of TOY.*"
                                         r"-p group_missing '\{White: 3, non-White: 1\}'"):
        missing.group_factors({"TOY": data["toy"]}, {"TOY": orders["toy"]}, {"White": 3})
    with pytest.raises(ValueError, match="parameter group_missing: Whte is not a race group"):
        missing.group_factors(data, orders, {"White": 1, "non-White": 4, "Whte": 2})
    assert missing.group_factors(data, orders, {"White": 1, "non-White": 4, "Unknown": 2})["toy"]["Unknown"] == 2.0
    got = missing.Sweep()
    run = missing.group_protocol(got, data, fits, present, groups, factors, [0.2, 0.9], 2, mask_seed=1,
                                 name=str.upper)
    assert run.conditions == 2 and len(run.skipped) == 1, "p = 0.9 needs a non-White rate above 1: skipped"
    assert run.skipped[0].startswith("TOY at p = 0.9: non-White would need a rate of ") and "{" not in run.skipped[0]
    want = missing.Sweep()
    race = groups["toy"].attrs["race"]
    rates = missing.matched_group_rates(race, factors["toy"], 0.2)
    masks = missing.group_masks(present["toy"], race, rates, 2, seed=1000 + 700 + 0)
    for m in ("paper", "copy"):
        want.evaluate(data["toy"], fits["toy"][m], masks, groups["toy"], cohort="toy", model=m,
                      protocol="group-dependent", rate=0.2, modality="all")
    _same_sweep(got, want)


def test_retraining_and_the_train_x_test_protocol(sweep_setup):
    data, fits, present, groups, orders = _protocol_inputs(sweep_setup)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    reuse = {"toy": {"paper": fits["toy"]["paper"]}}
    grid_fits, seconds = missing.retrain_with_missingness(data, orders, ["paper"], [0.0, 0.5], [0, 1], cfg,
                                                          mask_seed=1, reuse=reuse)
    assert list(grid_fits) == [("toy", 0.0), ("toy", 0.5)] and seconds > 0
    assert grid_fits[("toy", 0.0)]["paper"] is reuse["toy"]["paper"], "p_train = 0 reuses the given fits"
    direct = train.run_grid(missing.with_training_missingness(data["toy"], 0.5, seed=1000 + 500 + 1),
                            [("paper", ["good", "noise"])], [0, 1], cfg, keep={("paper", "good+noise")}, progress=False)
    te = data["toy"].rows("test")
    x, mask = data["toy"].x[te], data["toy"].mask[te]
    for a, b in zip(grid_fits[("toy", 0.5)]["paper"], direct.fits_of("paper", "good+noise", [0, 1])):
        assert np.array_equal(train.predict(a, x, mask), train.predict(b, x, mask))
    fresh, _ = missing.retrain_with_missingness(data, orders, ["paper"], [0.0], [0, 1], cfg, mask_seed=1)
    assert fresh[("toy", 0.0)]["paper"] is not reuse["toy"]["paper"], "without reuse every rate is trained"
    got = missing.Sweep()
    run = missing.train_test_protocol(got, data, grid_fits, present, groups, [0.0, 0.5], [0.0, 0.6], 2, mask_seed=1,
                                      rank_draws=1)
    want = missing.Sweep()
    for pt in (0.0, 0.5):
        for i, pe in enumerate([0.0, 0.6]):
            masks = missing.bernoulli_masks(present["toy"], pe, 2, seed=1000 + 900 + i)
            want.evaluate(data["toy"], grid_fits[("toy", pt)]["paper"], masks, groups["toy"], boot=False,
                          rank_draws=1, cohort="toy", model="paper", protocol="train x test", rate=pe, modality="all",
                          train_rate=pt)
    _same_sweep(got, want)
    assert run.conditions == 4 and not got.table["ci_low"].notna().any(), "scored without the bootstrap"


def test_predict_masked_reads_a_read_only_array_without_a_warning(sweep_setup):
    """A worker of chapter 05's sweeps gets the test embeddings as joblib's read-only memory map: the predictions are
    the same, and torch's "not writable" warning (which the chapter would print) is not raised."""
    import warnings

    data, res, _ = sweep_setup
    fit = res.fits_of("paper", "good+noise", [0])[0]
    te = data.rows("test")
    x = data.x[te].copy()
    masks = missing.bernoulli_masks(data.mask[te], 0.3, 2, seed=0)
    want = missing.predict_masked(fit, x, masks)
    x.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = missing.predict_masked(fit, x, masks)
    assert np.array_equal(got, want)


def test_protocols_give_the_same_sweep_in_two_worker_processes(sweep_setup):
    """Chapter 05 scores its protocols with ``n_jobs`` worker processes (one task per cohort and model): the sweep
    -- rows, order, replicates -- is the one a single process gives, for each of the four protocols."""
    data, fits, present, groups, orders = _protocol_inputs(sweep_setup)
    factors = missing.group_factors(data, orders, {"White": 1, "non-White": 2})
    grid = {("toy", 0.0): fits["toy"], ("toy", 0.5): {"paper": fits["toy"]["paper"][::-1]}}
    sweeps = []
    for n_jobs in (1, 2):
        sw = missing.Sweep()
        missing.random_protocol(sw, data, fits, present, groups, [0.0, 0.5], 3, mask_seed=2, n_jobs=n_jobs)
        missing.one_modality_protocol(sw, data, fits, present, groups, orders, [1.0], 2, mask_seed=1, n_jobs=n_jobs)
        missing.train_test_protocol(sw, data, grid, present, groups, [0.0, 0.5], [0.6], 2, mask_seed=1,
                                    n_jobs=n_jobs)
        missing.group_protocol(sw, data, fits, present, groups, factors, [0.2], 2, mask_seed=1, n_jobs=n_jobs)
        sweeps.append(sw)
    _same_sweep(sweeps[1], sweeps[0])
    assert len(sweeps[0].replicates) == 4 + 4 + 3 + 2


def test_protocol_run_note_is_chapter_05s_sentence():
    run = missing.ProtocolRun(conditions=4, predictions=12345, seconds=2.5)
    n_pred, sweep_seconds = run.predictions, run.seconds
    want = (f"random-missingness sweep: {n_pred:,} predictions and their metrics in {sweep_seconds:.1f} s "
            f"({n_pred / sweep_seconds:,.0f} predictions/s)")
    assert run.note("random-missingness sweep") == want
    assert want == "random-missingness sweep: 12,345 predictions and their metrics in 2.5 s (4,938 predictions/s)"
