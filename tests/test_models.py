"""Fusion models and training: masking semantics, modality dropout, determinism, thresholds, data loading."""
import numpy as np
import pandas as pd
import pytest
import torch

from mmlib import models, train

M, D = 3, 16


def _inputs(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, M, D, generator=g)
    mask = torch.rand(n, M, generator=g) > 0.4
    mask[:, 0] = True
    return x, mask


@pytest.mark.parametrize("name", models.NEURAL_MODELS)
def test_every_model_gives_one_logit_per_sample(name):
    torch.manual_seed(0)
    net = models.build_model(name, M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    out = net(x, mask)
    assert out.shape == (32,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resilient", "late", "linear"])
def test_a_masked_modality_cannot_change_the_output(name):
    torch.manual_seed(0)
    net = models.build_model(name, M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:, 2] = False
    other = x.clone()
    other[:, 2] = torch.randn(32, D) * 100
    other[:5, 2] = float("nan")
    assert torch.equal(net(x, mask), net(other, mask))
    # ...while a present modality's content does change it
    present = x.clone()
    present[:, 1] += 3.0
    assert not torch.allclose(net(x, mask | True), net(present, mask | True))


def test_masked_modality_gets_no_gradient_in_the_resilient_model():
    torch.manual_seed(0)
    net = models.build_model("resilient", M, D, width=8, heads=2)
    x, mask = _inputs()
    mask[:, 2] = False
    net(x, mask).sum().backward()
    assert net.project.proj[2].weight.grad.abs().sum() == 0
    assert net.project.proj[0].weight.grad.abs().sum() > 0


def test_the_paper_model_zero_fills_a_missing_modality():
    torch.manual_seed(0)
    net = models.build_model("paper", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:, :2] = True
    mask[:, 2] = False
    zero = x.clone()
    zero[:, 2] = 0.0
    other = x.clone()
    other[:, 2] = 7.0
    # missing == zero vector, whatever the stored content ...
    assert torch.equal(net(x, mask), net(zero, mask | True))
    assert torch.equal(net(x, mask), net(other, mask))
    # ... and that zero vector is not neutral: it shifts the output like any other input would
    unit = x.clone()
    unit[:, 2] = 1.0
    assert not torch.allclose(net(zero, mask | True), net(unit, mask | True))


def test_late_fusion_averages_the_present_heads():
    torch.manual_seed(0)
    net = models.build_model("late", M, D, width=8, heads=2).eval()
    x, _ = _inputs(4)
    per = torch.cat([h(x[:, m]) for m, h in enumerate(net.heads)], dim=1)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    out = net(x, mask)
    assert torch.allclose(out[0], per[0].mean())
    assert torch.allclose(out[1], per[1, 0])
    assert torch.allclose(out[2], per[2, 1:].mean())
    assert out[3] == net.none_present


def test_decision_weights_split_by_modality():
    torch.manual_seed(0)
    net = models.build_model("linear", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    mask[:] = True
    w = models.decision_weights(net, ["a", "b", "c"])
    assert [v.shape[0] for v in w.values()] == [8, 8, 8]
    h = net.features(x, mask)
    contrib = sum(h[:, i] @ w[m] for i, m in enumerate(["a", "b", "c"])) + net.decision.bias
    assert torch.allclose(contrib, net(x, mask), atol=1e-5)
    # zeroing modality b's block makes the model ignore b
    with torch.no_grad():
        net.decision.weight[0, 8:16] = 0
    other = x.clone()
    other[:, 1] = torch.randn(32, D)
    assert torch.allclose(net(x, mask), net(other, mask))


def test_modality_dropout_never_removes_every_modality():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(5000, 4, generator=g) > 0.3
    mask[0] = False  # a sample with nothing stays with nothing
    out = train.drop_modalities(mask, 0.9, g)
    assert not (out & ~mask).any(), "dropout only removes"
    assert out[mask.any(1)].any(1).all()
    assert not out[0].any()
    # a sample with k present modalities keeps 0.1 k of them on average, plus one rescued if all k drop
    k = mask.sum(1).double()
    expected = ((0.1 * k + 0.9 ** k * (k > 0)).sum() / k.sum()).item()
    assert out.sum().item() / mask.sum().item() == pytest.approx(expected, abs=0.01)
    assert torch.equal(train.drop_modalities(mask, 0.0, g), mask)


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="logreg"):
        models.build_model("logreg", M, D)
    with pytest.raises(ValueError, match="divisible"):
        models.build_model("paper", M, D, width=10, heads=3)


def test_train_config_checks_its_parameters():
    with pytest.raises(ValueError, match="threshold"):
        train.TrainConfig(threshold="median")
    with pytest.raises(ValueError, match="modality_dropout"):
        train.TrainConfig(modality_dropout=1.0)
    cfg = train.TrainConfig.from_params({"train_batch_size": 64, "lr": 0.01, "profile": "demo", "batch_size": 999})
    assert cfg.batch_size == 64 and cfg.lr == 0.01


# --------------------------------------------------------------------------------------- training
def _toy_data(n=300, seed=0):
    """Modality 0 carries the label; modality 1 is noise and missing for a third of the stays."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(size=(n, 2, D)).astype(np.float32)
    x[:, 0, 0] += 2.5 * (2 * y - 1)
    mask = np.ones((n, 2), bool)
    mask[rng.random(n) < 0.33, 1] = False
    x[~mask] = 0
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    race = rng.choice(["White", "non-White"], n)
    gender = rng.choice(["F", "M"], n)
    stays = pd.DataFrame({"split": split, "race": race, "gender": gender,
                          "race_gender": [f"{r} {g}" for r, g in zip(race, gender)]},
                         index=pd.Index(np.arange(1000, 1000 + n), name="stay_id"))
    return train.FusionData("toy", "y", ["good", "noise"], x, mask, y, stays,
                            pd.DataFrame([{"reason": "none", "stays": 0}]))


@pytest.mark.parametrize("name", ["paper", "resilient", "late", "linear"])
def test_training_is_deterministic_and_learns(name):
    data = _toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=8, patience=3, batch_size=32, lr=0.01)
    a = train.fit_network(data, name, ["good", "noise"], 3, cfg)
    b = train.fit_network(data, name, ["good", "noise"], 3, cfg)
    te = data.rows("test")
    pa = train.predict(a, data.x[te], data.mask[te])
    assert np.array_equal(pa, train.predict(b, data.x[te], data.mask[te]))
    c = train.fit_network(data, name, ["good", "noise"], 4, cfg)
    assert not np.array_equal(pa, train.predict(c, data.x[te], data.mask[te]))
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.y[te], pa) > 0.85
    assert 1 <= a.best_epoch <= a.epochs <= 8 and len(a.history) == a.epochs


def test_run_grid_predictions_table_and_parallel_equality():
    data = _toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, patience=2, batch_size=64)
    runs = [("paper", ["good"]), ("resilient", ["good", "noise"]), ("logreg", ["good", "noise"])]
    res = train.run_grid(data, runs, [0, 1], cfg, keep={("resilient", "good+noise")}, progress=False)
    p1, log1, fits = res.predictions, res.log, res.fits
    p2 = train.run_grid(data, runs, [0, 1], cfg, n_jobs=2, progress=False).predictions
    pd.testing.assert_frame_equal(p1, p2)
    assert len(log1) == 5, "logreg is fitted once"
    assert set(fits) == {("resilient", "good+noise", 0), ("resilient", "good+noise", 1)}
    n_eval = len(data.rows("val")) + len(data.rows("test"))
    assert len(p1) == 5 * n_eval
    single = p1[p1.modalities == "good"]
    assert not single["mask_noise"].any(), "a modality outside the set is never seen"
    both = p1[(p1.modalities == "good+noise")].drop_duplicates("stay_id").set_index("stay_id")
    assert (both["mask_noise"].to_numpy() == data.mask[np.r_[data.rows("val"), data.rows("test")], 1]).all()
    assert ((p1["prob"] >= p1["threshold"]) == p1["pred"].astype(bool)).all()
    assert {"race", "gender", "race_gender", "label", "seed", "model"} <= set(p1.columns)


def test_saved_fits_reload_to_the_same_predictions(tmp_path):
    data = _toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    fits = train.run_grid(data, [("resilient", ["good", "noise"])], [0], cfg,
                          keep={("resilient", "good+noise")}, progress=False).fits
    train.save_fits(fits, tmp_path / "m.pt", cfg)
    back = train.load_fits(tmp_path / "m.pt", in_dim=D)
    te = data.rows("test")
    key = ("resilient", "good+noise", 0)
    assert np.array_equal(train.predict(fits[key], data.x[te], data.mask[te]),
                          train.predict(back[key], data.x[te], data.mask[te]))
    assert back[key].threshold == fits[key].threshold


def test_threshold_policies():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.55, 0.7, 0.9])
    assert train.choose_threshold(y, p, 0.3) == 0.3
    assert train.choose_threshold(y, p, "val_f1") == pytest.approx(0.55)
    t = train.choose_threshold(y, p, "val_youden")
    assert 0.2 < t <= 0.7


def test_columns_and_rows_errors():
    data = _toy_data()
    with pytest.raises(ValueError, match="not in cohort toy"):
        data.columns(["good", "cxr"])
    with pytest.raises(ValueError, match="non-empty"):
        data.columns([])


def test_load_fusion_data_names_missing_files_and_columns(tmp_path):
    from mmlib.data import load_cohort, synth

    root, _ = synth.generate("mds_ed", {"n": 60, "seed": 1}, data_dir=tmp_path, progress=False)
    cohort = load_cohort("mds_ed", root, progress=False)
    cohort.save(tmp_path / "cohort")
    with pytest.raises(FileNotFoundError, match="run chapter 02"):
        train.load_fusion_data(tmp_path / "cohort", tmp_path / "nope.npz")
    n = len(cohort.stays)
    arrays = {"stay_id": cohort.stays.index.to_numpy()}
    for m in cohort.modalities:
        arrays[m] = np.zeros((n, 384), np.float32)
        arrays[f"mask_{m}"] = cohort.availability[m].to_numpy()
    np.savez(tmp_path / "emb.npz", **arrays)
    with pytest.raises(ValueError, match="target 'nope'"):
        train.load_fusion_data(tmp_path / "cohort", tmp_path / "emb.npz", target="nope")
    d = train.load_fusion_data(tmp_path / "cohort", tmp_path / "emb.npz")
    y = cohort.stays[cohort.primary_target]
    assert len(d.y) == int(y.notna().sum()) and d.excluded["stays"].iloc[0] == int(y.isna().sum())
    assert d.x.shape == (len(d.y), len(cohort.modalities), 384)
    del arrays["mask_ecg"], arrays["ecg"]
    np.savez(tmp_path / "emb2.npz", **arrays)
    with pytest.raises(ValueError, match="no embedding matrix for modalities"):
        train.load_fusion_data(tmp_path / "cohort", tmp_path / "emb2.npz")


def test_contributions_sum_to_the_logit_and_calibration_reweights_them():
    torch.manual_seed(0)
    net = models.build_model("linear", M, D, width=8, heads=2).eval()
    x, mask = _inputs()
    c, norms = models.contributions(net, x, mask)
    assert c.shape == norms.shape == (32, M)
    assert torch.allclose(c.sum(1) + net.decision.bias, net(x, mask), atol=1e-5)
    assert (c[~mask] == 0).all() and (norms[~mask] == 0).all(), "a missing modality contributes nothing"
    same = models.CalibratedDecision(net, torch.ones(M), net.decision.bias.item()).eval()
    assert torch.allclose(same(x, mask), net(x, mask), atol=1e-5)
    only0 = models.CalibratedDecision(net, torch.tensor([1.0, 0.0, 0.0]), 0.0).eval()
    assert torch.allclose(only0(x, mask), c[:, 0], atol=1e-6)


def test_calibrate_modalities_on_validation():
    data = _toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=5, batch_size=32, lr=0.01)
    fit = train.fit_network(data, "linear", ["good", "noise"], 0, cfg)
    cal = train.calibrate_modalities(fit, data)
    assert cal.name == "linear+calibrated" and cal.model.scale.shape == (2,)
    te = data.rows("test")
    p = train.predict(cal, data.x[te], data.mask[te])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.y[te], p) > 0.85
    assert np.array_equal(p, train.predict(train.calibrate_modalities(fit, data), data.x[te], data.mask[te]))
    with pytest.raises(ValueError, match="linear"):
        train.calibrate_modalities(train.fit_network(data, "late", ["good"], 0, cfg), data)
