"""Decision-layer analysis of the linear fusion model (mmlib.decision) on the toy data: per-seed weight norms and
shares, contributions, the mean ± sd table, the long contribution frame and the group shares."""
import re

import numpy as np
import pytest
import torch

from mmlib import decision, findings, metrics, train

ORDER = ["good", "noise"]
SEEDS = [0, 1]
WIDTH = 8


@pytest.fixture(scope="module")
def trained(toy_data):
    data = toy_data()
    cfg = train.TrainConfig(width=WIDTH, heads=2, max_epochs=2, batch_size=64)
    runs = [("linear", ORDER), ("linear", ["good"]), ("linear", ["noise"])]
    fits = train.run_grid(data, runs, SEEDS, cfg, keep={("linear", "good+noise"), ("linear", "good"),
                                                        ("linear", "noise")}, progress=False).fits
    return data, fits, decision.analyse(fits, data, ORDER, SEEDS)


def test_analyse_per_seed_norms_shares_and_alone(trained):
    data, fits, res = trained
    ps = res.per_seed
    assert len(ps) == len(SEEDS) * len(ORDER)
    assert sorted(zip(ps["seed"], ps["modality"])) == [(s, m) for s in SEEDS for m in ORDER]
    assert np.allclose(ps.groupby("seed")["share"].sum(), 1.0)
    for s in SEEDS:
        w = fits[("linear", "good+noise", s)].model.decision.weight.detach()[0].numpy()
        assert w.shape == (2 * WIDTH,)
        for j, m in enumerate(ORDER):
            row = ps[(ps.seed == s) & (ps.modality == m)].iloc[0]
            assert row["norm"] == pytest.approx(np.linalg.norm(w[j * WIDTH:(j + 1) * WIDTH]), rel=1e-6)
            total = np.linalg.norm(w[:WIDTH]) + np.linalg.norm(w[WIDTH:])
            assert row["share"] == pytest.approx(row["norm"] / total, rel=1e-6)
            # the unimodal model has a single block: its whole decision weight
            alone = fits[("linear", m, s)].model.decision.weight.detach()[0].numpy()
            assert alone.shape == (WIDTH,)
            assert row["alone"] == pytest.approx(np.linalg.norm(alone), rel=1e-6)
    assert (ps["feature"] > 0).all() and (ps["abs_c"] >= 0).all()


def test_analyse_contributions_sum_to_the_logit_and_vanish_when_missing(trained):
    data, fits, res = trained
    te = data.rows("test")
    have = data.mask[te]
    assert (~have[:, 1]).sum() > 0, "the toy data has test stays without noise"
    assert set(res.contributions) == set(SEEDS)
    for s in SEEDS:
        c = res.contributions[s]
        assert c.shape == (len(te), 2)
        assert (c[~have[:, 1], 1] == 0).all()
        model = fits[("linear", "good+noise", s)].model.eval()
        with torch.no_grad():
            logit = model(torch.as_tensor(data.x[te]), torch.as_tensor(have)).numpy()
        assert np.allclose(c.sum(1) + model.decision.bias.item(), logit, atol=1e-5)
        for j, m in enumerate(ORDER):
            row = res.per_seed[(res.per_seed.seed == s) & (res.per_seed.modality == m)].iloc[0]
            assert row["abs_c"] == pytest.approx(np.abs(c[have[:, j], j]).mean(), rel=1e-6)


def test_analyse_weights_long_frame(trained):
    data, fits, res = trained
    w = res.weights
    assert len(w) == len(SEEDS) * len(ORDER) * 2 * WIDTH
    assert set(w["training"]) == {"with all modalities", "alone"} and set(w["cohort"]) == {"toy"}
    one = w[(w.seed == 1) & (w.modality == "noise") & (w.training == "with all modalities")]["weight"].to_numpy()
    full = fits[("linear", "good+noise", 1)].model.decision.weight.detach()[0].numpy()
    assert np.allclose(one, full[WIDTH:])


def test_means_follow_the_given_order(trained):
    _, _, res = trained
    m = res.means(["noise", "good"])
    assert list(m.index) == ["noise", "good"]
    ps = res.per_seed
    assert m.loc["good", "norm"] == pytest.approx(ps[ps.modality == "good"]["norm"].mean())
    assert m.loc["noise", "share"] == pytest.approx(ps[ps.modality == "noise"]["share"].mean())
    assert m.loc["good", "share"] + m.loc["noise", "share"] == pytest.approx(1.0)


def test_weight_table_mean_and_sd_cells(trained):
    _, _, res = trained
    t = decision.weight_table(res, ["noise", "good"])
    assert list(t.index) == ["noise", "good"]
    assert list(t.columns) == ["‖W_m‖ with all", "share of weight norm", "‖W_m‖ alone", "mean ‖h_m‖",
                               "mean |c_m|"]
    assert all(re.fullmatch(r"\d+\.\d{3} ± \d+\.\d{3}", v) for v in t.to_numpy().ravel())
    a, b = res.per_seed[res.per_seed.modality == "good"].sort_values("seed")["norm"]
    # two values: mean (a + b) / 2, sample sd |a - b| / sqrt(2)
    assert t.loc["good", "‖W_m‖ with all"] == f"{(a + b) / 2:.3f} ± {abs(a - b) / np.sqrt(2):.3f}"
    one = decision.DecisionLayer(res.per_seed[res.per_seed.seed == 0], res.weights, res.contributions)
    single = decision.weight_table(one, ORDER)
    assert single.loc["good", "‖W_m‖ alone"] == f"{one.per_seed.iloc[0]['alone']:.3f}", "one seed: no sd"


def test_contribution_frame_rows_are_the_stays_with_each_modality(trained):
    data, _, res = trained
    te = data.rows("test")
    f = decision.contribution_frame(res, data, ORDER, seed=1)
    assert list(f.columns) == ["cohort", "modality", "contribution", "outcome", "race", "gender"]
    assert (f.modality == "good").sum() == data.mask[te, 0].sum() == len(te)
    assert (f.modality == "noise").sum() == data.mask[te, 1].sum() < len(te)
    noise = f[f.modality == "noise"]
    keep = data.mask[te, 1]
    assert np.array_equal(noise["contribution"].to_numpy(), res.contributions[1][keep, 1])
    assert np.array_equal(noise["outcome"].to_numpy() == "positive", data.y[te][keep] == 1)
    assert np.array_equal(noise["race"].to_numpy(), data.stays["race"].to_numpy()[te][keep])


def test_group_shares(trained):
    data, _, res = trained
    boot = metrics.evaluation_groups(data, "test", min_group=5, min_events=2, n_boot=50).boot
    g = decision.group_shares(res, data, ORDER, SEEDS, boot)
    assert list(g.columns) == ["cohort", "modality", "attribute", "groups", "share in first", "share in second",
                               "difference", "ci_low", "ci_high", "clear"]
    assert len(g) == 4 and set(g["cohort"]) == {"toy"}, "labelled with the cohort's display name"
    assert list(zip(g.modality, g.attribute, g.groups)) == [
        ("good", "race", "non-White − White"), ("good", "gender", "F − M"),
        ("noise", "race", "non-White − White"), ("noise", "gender", "F − M")]
    assert np.allclose(g["difference"], g["share in first"] - g["share in second"])
    assert (g["ci_low"] <= g["ci_high"]).all()
    assert (g["clear"] == np.where((g.ci_low > 0) | (g.ci_high < 0), "yes", "no")).all()
    # every stay's shares sum to 1, so the two modalities' shares in one group do too
    for attr in ("race", "gender"):
        rows = g[g.attribute == attr]
        assert rows["share in first"].sum() == pytest.approx(1.0)
        assert rows["share in second"].sum() == pytest.approx(1.0)
    # the share of good in White stays, by hand: |c_good| / (|c_good| + |c_noise|), averaged over seeds
    te = data.rows("test")
    white = data.stays["race"].to_numpy()[te] == "White"
    share = np.mean([np.abs(res.contributions[s][:, 0]) / np.abs(res.contributions[s]).sum(1) for s in SEEDS], axis=0)
    assert g.iloc[0]["share in first"] == pytest.approx(share[~white].mean()), "group minus the reference (White)"
    assert g.iloc[0]["share in second"] == pytest.approx(share[white].mean())
    # as the page shows it: each difference beside its interval, in one cell
    shown = findings.group_share_table(g)
    assert list(shown.columns) == ["share, group", "share, reference", "group − reference [95% CI]"]
    assert shown.index.names == ["cohort", "modality", "groups"] and len(shown) == len(g)
    r = g.iloc[0]
    assert shown.iloc[0, 2] == f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
    one = findings.group_share_table(g, "toy")
    assert one.index.names == ["modality", "groups"] and one.equals(shown.droplevel("cohort"))
    assert findings.group_share_table(g, "other").empty


# ------------------------------------------------------------------------ chapter 06's training and remedy, as functions
@pytest.fixture(scope="module")
def chapter06(toy_data):
    data = {"toy": toy_data()}
    orders = {"toy": train.ModalityOrder(ORDER)}
    cfg = train.TrainConfig(width=WIDTH, heads=2, max_epochs=2, batch_size=64)
    grids, seconds = decision.train_linear(data, orders, SEEDS, cfg)
    return data, orders, cfg, grids, seconds


def test_train_linear_is_the_grid_of_all_and_each_modality(chapter06):
    import pandas as pd

    data, orders, cfg, grids, seconds = chapter06
    assert list(grids) == ["toy"] and seconds > 0
    assert sorted(grids["toy"].fits) == sorted(("linear", lab, s) for lab in ("good+noise", "good", "noise")
                                               for s in SEEDS)
    direct = train.run_grid(data["toy"], [("linear", ORDER), ("linear", ["good"]), ("linear", ["noise"])], SEEDS, cfg,
                            progress=False)
    pd.testing.assert_frame_equal(grids["toy"].predictions, direct.predictions)


def test_calibration_scales_and_predictions(chapter06):
    data, orders, cfg, grids, _ = chapter06
    cal = decision.calibrate_all(grids, data, orders, SEEDS, threshold=0.5)
    assert [f.name for f in cal["toy"]] == ["linear+calibrated"] * len(SEEDS)
    te = data["toy"].rows("test")
    x, mk = data["toy"].x[te], data["toy"].mask[te]
    for s, f in zip(SEEDS, cal["toy"]):
        want = train.calibrate_modalities(grids["toy"].fits[("linear", "good+noise", s)], data["toy"], 0.5)
        assert np.array_equal(train.predict(f, x, mk), train.predict(want, x, mk))
    scales = decision.scale_table(cal, orders)
    assert list(scales.columns) == ["cohort", "good", "noise"] and len(scales) == len(SEEDS)
    assert scales["good"].tolist() == [f.model.scale.tolist()[0] for f in cal["toy"]]
    pred = decision.with_calibrated(grids, cal, data)
    n_base = len(grids["toy"].predictions)
    assert len(pred) == n_base + len(SEEDS) * len(data["toy"].rows("val")) + len(SEEDS) * len(te)
    assert (pred["model"].iloc[n_base:] == "linear+calibrated").all() and list(pred.index) == list(range(len(pred)))


def test_robustness_sweep_is_the_chapters_loop(chapter06):
    from mmlib import missing

    data, orders, cfg, grids, _ = chapter06
    cal = decision.calibrate_all(grids, data, orders, SEEDS)
    got, seconds = decision.robustness_sweep(data, orders, grids, cal, SEEDS, [0.0, 0.5], 2, mask_seed=3,
                                             min_group=5, min_events=2, n_boot=10)
    assert seconds > 0
    want = missing.Sweep()
    d = data["toy"]
    groups = metrics.evaluation_groups(d, "test", min_group=5, min_events=2, n_boot=10)
    for i, p in enumerate([0.0, 0.5]):
        masks = missing.bernoulli_masks(missing.test_availability(d, ORDER), p, 2, seed=3000 + i)
        want.evaluate(d, grids["toy"].fits_of("linear", "good+noise", SEEDS), masks, groups, cohort="toy",
                      model="linear", rate=p)
        want.evaluate(d, cal["toy"], masks, groups, cohort="toy", model="linear+calibrated", rate=p)
    import pandas as pd

    pd.testing.assert_frame_equal(got.table, want.table)
    assert list(got.table.columns[-3:]) == ["cohort", "model", "rate"]
    assert got.has(cohort="toy", model="linear+calibrated", rate=0.5)


def test_chapter_06s_figures_are_its_loops(trained):
    """plots.weight_figures and plots.contribution_figures (chapter 06) draw, cohort by cohort, the figures chapter 06
    drew in its loops: the same titles, captions and pixels (the toy cohort under two names)."""

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    from mmlib import plots
    from mmlib.schema import display_name

    from figure_bytes import png  # tests/figure_bytes.py

    data, _, res = trained
    names = ["mimic_eye", "mds_ed"]
    weights = pd.concat([res.weights.assign(cohort=n) for n in names], ignore_index=True)
    new = plots.weight_figures(weights, names)
    old = [plots.weight_distributions(weights[weights.cohort == n],
                                      title=f"{display_name(n)}: decision-layer weights by modality (all seeds)")
           for n in names]
    frames = {n: decision.contribution_frame(res, data, ORDER, SEEDS[0]) for n in names}
    new += plots.contribution_figures(frames, {n: data.target for n in names})
    for n in names:
        sub = decision.contribution_frame(res, data, ORDER, SEEDS[0])
        old.append(plots.contribution_boxes(sub, "outcome", order=["negative", "positive"],
                                            title=f"{display_name(n)}: contributions by outcome ({data.target})"))
        old.append(plots.contribution_boxes(sub, "race", title=f"{display_name(n)}: contributions by race group"))
    assert len(new) == len(old) == 6
    for a, b in zip(new, old):
        assert plots.figure_text(a) == plots.figure_text(b) and png(a) == png(b)
    assert plots._title(new[3]).startswith("MIMIC-Eye: contributions by race")
    matplotlib.pyplot.close("all")
