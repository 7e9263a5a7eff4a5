"""Training and prediction (mmlib.train): modality dropout, configuration, determinism, parallel grids, saved
fits, threshold policies, data loading, calibration, run plans and modality orders."""
import numpy as np
import pandas as pd
import pytest
import torch

from mmlib import train


@pytest.fixture(autouse=True)
def _fit_cache_in_tmp(monkeypatch, tmp_path):
    """run_grid's fit cache (mmlib.train.FitCache) goes to this test's folder, not the checkout's build/."""
    monkeypatch.setenv("MMLIB_FIT_CACHE", str(tmp_path / "fit_cache"))

D = 16  # embedding width of the toy data (conftest.TOY_DIM)


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


def test_train_config_checks_its_parameters():
    with pytest.raises(ValueError, match="threshold"):
        train.TrainConfig(threshold="median")
    with pytest.raises(ValueError, match="modality_dropout"):
        train.TrainConfig(modality_dropout=1.0)
    cfg = train.TrainConfig.from_params({"train_batch_size": 64, "lr": 0.01, "profile": "demo", "batch_size": 999})
    assert cfg.batch_size == 64 and cfg.lr == 0.01


@pytest.mark.parametrize("name", ["paper", "resilient", "late", "linear"])
def test_training_is_deterministic_and_learns(toy_data, name):
    data = toy_data()
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


def test_run_grid_predictions_table_and_parallel_equality(toy_data):
    data = toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, patience=2, batch_size=64)
    runs = [("paper", ["good"]), ("resilient", ["good", "noise"]), ("logreg", ["good", "noise"])]
    res = train.run_grid(data, runs, [0, 1], cfg, keep={("resilient", "good+noise")}, progress=False, cache_dir=None)
    p1, log1, fits = res.predictions, res.log, res.fits
    p2 = train.run_grid(data, runs, [0, 1], cfg, n_jobs=2, progress=False, cache_dir=None).predictions
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


def test_saved_fits_reload_to_the_same_predictions(toy_data, tmp_path):
    data = toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, batch_size=64)
    fits = train.run_grid(data, [("resilient", ["good", "noise"])], [0, 1], cfg,
                          keep={("resilient", "good+noise")}, progress=False).fits
    train.save_fits(fits, tmp_path / "m.pt", cfg)
    back = train.load_fits(tmp_path / "m.pt", in_dim=D)
    te = data.rows("test")
    key = ("resilient", "good+noise", 0)
    assert np.array_equal(train.predict(fits[key], data.x[te], data.mask[te]),
                          train.predict(back[key], data.x[te], data.mask[te]))
    assert back[key].threshold == fits[key].threshold
    # the same networks saved again, under another name, are the same bytes (downstream keys hash them)
    train.save_fits(fits, tmp_path / "again.pt", cfg)
    assert (tmp_path / "again.pt").read_bytes() == (tmp_path / "m.pt").read_bytes()
    # ... also when two fits' equal names are other string objects (as fits returned by joblib workers hold them,
    # where fits trained here share one): pickle would write such a name once per object
    import dataclasses

    def fresh(s):
        return (s + "#")[:-1]  # an equal string, another object

    other = {k: dataclasses.replace(f, name=fresh(f.name), modalities=[fresh(m) for m in f.modalities])
             for k, f in fits.items()}
    assert all(o.name is not f.name for o, f in zip(other.values(), fits.values(), strict=True))
    train.save_fits(other, tmp_path / "fresh.pt", cfg)
    assert (tmp_path / "fresh.pt").read_bytes() == (tmp_path / "m.pt").read_bytes()


def test_threshold_policies():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.55, 0.7, 0.9])
    assert train.choose_threshold(y, p, 0.3) == 0.3
    assert train.choose_threshold(y, p, "val_f1") == pytest.approx(0.55)
    t = train.choose_threshold(y, p, "val_youden")
    assert 0.2 < t <= 0.7


def test_columns_and_rows_errors(toy_data):
    data = toy_data()
    with pytest.raises(ValueError, match="not in cohort toy"):
        data.columns(["good", "cxr"])
    with pytest.raises(ValueError, match="non-empty"):
        data.columns([])


def test_load_fusion_data_names_missing_files_and_columns(tmp_path):
    from mmlib.data import load_cohort, synth

    root, _ = synth.generate("mds_ed", {"n": 60, "seed": 1}, data_dir=tmp_path, progress=False)
    cohort = load_cohort("mds_ed", root, primary_target="diagnoses_i10", progress=False)  # common: both classes
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


def test_calibrate_modalities_on_validation(toy_data):
    data = toy_data()
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


def test_saved_fits_record_their_embedding_width(toy_data, tmp_path):
    """load_fits rebuilds the networks at the width they were trained on (not the 384 default): chapters 05 and 07
    load chapter 04's networks without knowing it (e.g. 768-d MedBERT embeddings)."""
    data = toy_data(n=120)
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=1, batch_size=64)
    runs = [(m, ["good", "noise"]) for m in ("paper", "resilient", "late", "linear")]
    fits = train.run_grid(data, runs, [0], cfg, keep={(m, "good+noise") for m, _ in runs}, progress=False).fits
    train.save_fits(fits, tmp_path / "m.pt", cfg)
    back = train.load_fits(tmp_path / "m.pt")
    te = data.rows("test")
    assert set(back) == set(fits)
    for key, f in fits.items():
        assert np.array_equal(train.predict(f, data.x[te], data.mask[te]),
                              train.predict(back[key], data.x[te], data.mask[te])), key


# ------------------------------------------------------------------------------------------ modality orders
def test_modality_order_full_prefixes_and_canonical():
    o = train.ModalityOrder(["a", "b", "c"])
    assert o == ("a", "b", "c") and isinstance(o, tuple)
    assert o.full == "a+b+c"
    assert o.prefixes() == ["a", "a+b", "a+b+c"]
    assert o.canonical("c+a") == "a+c" and o.canonical("b") == "b" and o.canonical("c+b+a") == "a+b+c"
    r = train.ModalityOrder(["c", "a", "b"])
    assert r.full == "c+a+b" and r.prefixes() == ["c", "c+a", "c+a+b"]
    assert r.canonical("a+c") == "c+a"


def test_modality_order_subsets_by_size_then_order():
    assert train.ModalityOrder(["a", "b", "c"]).subsets() == ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]
    assert train.ModalityOrder(["c", "a", "b"]).subsets() == ["c", "a", "b", "c+a", "c+b", "a+b", "c+a+b"]
    four = train.ModalityOrder(["w", "x", "y", "z"]).subsets()
    assert len(four) == 2 ** 4 - 1 == len(set(four))
    assert [lab.count("+") + 1 for lab in four] == sorted(lab.count("+") + 1 for lab in four)
    assert train.ModalityOrder(["solo"]).subsets() == ["solo"]


def test_modality_order_all_orders():
    import math

    o = train.ModalityOrder(["a", "b", "c"])
    seqs = o.all_orders()
    assert len(seqs) == math.factorial(3) == len({tuple(s) for s in seqs})
    assert seqs[0] == o.prefixes(), "the order itself comes first"
    assert all(len(s) == 3 and s[-1] == o.full for s in seqs)
    assert ["b", "a+b", "a+b+c"] in seqs and ["c", "b+c", "a+b+c"] in seqs, "labels are canonical"
    assert {s[0] for s in seqs} == {"a", "b", "c"}
    assert len(train.ModalityOrder(["w", "x", "y", "z"]).all_orders()) == 24


def test_modality_order_rejects_repeats_and_empty():
    with pytest.raises(ValueError, match=r"must name each modality once, got \['a', 'b', 'a'\]"):
        train.ModalityOrder(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"must name each modality once, got \[\]"):
        train.ModalityOrder([])


def test_grid_result_fits_of_returns_one_fit_per_seed_in_order():
    fits = {("paper", "a", 0): "p0", ("paper", "a", 1): "p1", ("paper", "a+b", 0): "pab0", ("late", "a", 0): "l0"}
    res = train.GridResult(pd.DataFrame(), pd.DataFrame(), fits)
    assert res.fits_of("paper", "a", [1, 0]) == ["p1", "p0"]
    assert res.fits_of("paper", "a+b", [0]) == ["pab0"]
    assert res.fits_of("late", "a", []) == []
    with pytest.raises(KeyError):
        res.fits_of("late", "a", [0, 1])


# ---------------------------------------------------------------------------------------------- run plans
def test_plan_runs_without_and_with_every_order():
    o = train.ModalityOrder(["a", "b", "c"])
    p = train.plan_runs("toy", o, ["paper", "logreg"], every_order=False)
    assert p.cohort == "toy" and p.reused == []
    assert p.train == [("paper", "a"), ("paper", "a+b"), ("paper", "a+b+c"),
                       ("logreg", "a"), ("logreg", "a+b"), ("logreg", "a+b+c")]
    p = train.plan_runs("toy", o, ["paper", "logreg"], every_order=True)
    # the first model on every subset (size, then label), the others on the prefixes
    assert p.train == [("paper", "a"), ("paper", "b"), ("paper", "c"), ("paper", "a+b"), ("paper", "a+c"),
                       ("paper", "b+c"), ("paper", "a+b+c"), ("logreg", "a"), ("logreg", "a+b"), ("logreg", "a+b+c")]
    # models keep the given order, not the alphabet
    p = train.plan_runs("toy", train.ModalityOrder(["b", "a"]), ["resilient", "late"], every_order=False)
    assert p.train == [("resilient", "b"), ("resilient", "b+a"), ("late", "b"), ("late", "b+a")]
    assert p.runs() == [("resilient", ["b"]), ("resilient", ["b", "a"]), ("late", ["b"]), ("late", ["b", "a"])]
    assert train.plan_runs("toy", o, [], every_order=True).train == []


def test_plan_runs_reuses_upstream_runs():
    o = train.ModalityOrder(["a", "b", "c"])
    rows = [("toy", "paper", "a"), ("toy", "paper", "a"), ("toy", "paper", "a+b"), ("toy", "paper", "b+c"),
            ("other", "paper", "a+b+c"), ("toy", "late", "a"), ("toy", "logreg", "b")]
    preds = pd.DataFrame(rows, columns=["cohort", "model", "modalities"]).assign(seed=range(len(rows)))
    p = train.plan_runs("toy", o, ["paper", "logreg"], every_order=False, reusable=preds)
    assert p.reused == [("paper", "a"), ("paper", "a+b")]
    assert p.train == [("paper", "a+b+c"), ("logreg", "a"), ("logreg", "a+b"), ("logreg", "a+b+c")]
    assert p.runs() == [("paper", ["a", "b", "c"]), ("logreg", ["a"]), ("logreg", ["a", "b"]),
                        ("logreg", ["a", "b", "c"])]
    got = p.reused_predictions(preds)
    assert list(got.index) == [0, 1, 2]
    pd.testing.assert_frame_equal(got, preds.iloc[[0, 1, 2]])
    assert p.reused_predictions(None) is None
    q = train.plan_runs("toy", o, ["paper", "logreg"], every_order=True, reusable=preds)
    assert q.reused == [("paper", "a"), ("paper", "a+b"), ("paper", "b+c")]
    assert list(q.reused_predictions(preds)["seed"]) == [0, 1, 2, 3]
    fresh = train.plan_runs("mds_ed", o, ["paper"], every_order=False, reusable=preds)
    assert fresh.reused == [] and len(fresh.train) == 3
    assert fresh.reused_predictions(preds) is None
    assert train.plan_runs("toy", o, ["paper"], reusable=None).reused_predictions(preds) is None


def test_fit_cache_returns_what_training_again_gives(toy_data, tmp_path):
    # run_grid keeps CPU fits in a FitCache: a second call loads them instead of training, with the same
    # predictions (values and dtypes), log rows, thresholds and weights as training again without the cache
    import torch

    data = toy_data()
    cfg = train.TrainConfig(width=8, heads=2, max_epochs=3, patience=2, batch_size=64)
    runs = [("paper", ["good"]), ("late", ["good", "noise"]), ("logreg", ["good", "noise"])]
    keep = {("late", "good+noise")}
    fresh = train.run_grid(data, runs, [0, 1], cfg, keep=keep, progress=False, cache_dir=None)
    first = train.run_grid(data, runs, [0, 1], cfg, keep=keep, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 4, "one entry per network fit; the logistic regression is not cached"
    calls = []
    real = train._run_one
    train._run_one = lambda *a: (calls.append(a[1]), real(*a))[1]
    try:
        again = train.run_grid(data, runs, [0, 1], cfg, keep=keep, progress=False, cache_dir=tmp_path)
    finally:
        train._run_one = real
    assert calls == ["logreg"], "only the logistic regression is fitted again"
    for res in (first, again):
        pd.testing.assert_frame_equal(res.predictions, fresh.predictions, check_exact=True)
        assert list(res.predictions.dtypes) == list(fresh.predictions.dtypes)
        pd.testing.assert_frame_equal(res.log.drop(columns="seconds"), fresh.log.drop(columns="seconds"), check_exact=True)
        assert set(res.fits) == set(fresh.fits) == {("late", "good+noise", 0), ("late", "good+noise", 1)}
        te = data.rows("test")
        for k, f in fresh.fits.items():
            g = res.fits[k]
            assert g.threshold == f.threshold and g.best_epoch == f.best_epoch and g.history == f.history
            for (n1, a), (n2, b) in zip(f.model.state_dict().items(), g.model.state_dict().items()):
                assert n1 == n2 and torch.equal(a, b)
            assert np.array_equal(train.predict(g, data.x[te], data.mask[te]), train.predict(f, data.x[te], data.mask[te]))
    # another configuration, seed or cohort content is another entry
    other = train.run_grid(data, runs[:1], [2], cfg, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 5 and len(other.predictions)
    changed = toy_data(seed=1)
    train.run_grid(changed, runs[:1], [0], cfg, progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 6
    # a damaged entry is trained again
    for f in tmp_path.glob("*.pt"):
        f.write_bytes(b"not a torch file")
    redo = train.run_grid(data, runs, [0, 1], cfg, keep=keep, progress=False, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(redo.predictions, fresh.predictions, check_exact=True)


def test_fit_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MMLIB_FIT_CACHE", "off")
    assert train.fit_cache_dir() is None
    monkeypatch.setenv("MMLIB_FIT_CACHE", str(tmp_path / "fits"))
    assert train.fit_cache_dir() == tmp_path / "fits"
    monkeypatch.delenv("MMLIB_FIT_CACHE")
    monkeypatch.setenv("MMLIB_BUILD_DIR", str(tmp_path / "b"))
    assert train.fit_cache_dir() == tmp_path / "b" / "fit_cache"


def test_plan_fusion_trains_what_the_per_cohort_plans_and_grids_trained(toy_data):
    """plan_fusion + FusionPlan.train (chapter 04) give what chapter 04 computed cohort by cohort with plan_runs and
    run_grid: the same runs, predictions (trained, then reused rows), log and kept networks on all modalities."""
    from dataclasses import replace

    cfg = train.TrainConfig(width=8, heads=2, max_epochs=2, patience=1, batch_size=64)
    data = {"c1": replace(toy_data(n=160, seed=0), cohort="c1"), "c2": replace(toy_data(n=160, seed=1), cohort="c2")}
    orders = {"c1": train.ModalityOrder(["good", "noise"]), "c2": train.ModalityOrder(["noise", "good"])}
    models, seeds = ["paper", "logreg"], [0, 1]
    upstream = train.run_grid(data["c1"], [("paper", ["good"])], seeds, cfg, progress=False, cache_dir=None).predictions
    plan = train.plan_fusion(orders, models, every_order=True, reusable=upstream)
    assert plan.n_reused == 1 and plan.note() == f"{plan.n_train} runs to train, 1 reused from chapter 03"
    got = plan.train(data, seeds, cfg, cache_dir=None)
    # the code it replaced
    plans = {n: train.plan_runs(n, orders[n], models, True, reusable=upstream) for n in data}
    assert {n: p.train for n, p in plans.items()} == {n: p.train for n, p in plan.plans.items()}
    grids = {n: train.run_grid(d, plans[n].runs(), seeds, cfg, progress=False, cache_dir=None,
                               keep={(m, orders[n].full) for m in models if m in train.NEURAL_MODELS})
             for n, d in data.items()}
    parts = [p for n in data for p in (grids[n].predictions, plans[n].reused_predictions(upstream)) if p is not None]
    pd.testing.assert_frame_equal(got.predictions, pd.concat(parts, ignore_index=True))
    log = pd.concat([g.log for g in grids.values()], ignore_index=True)
    pd.testing.assert_frame_equal(got.log.drop(columns="seconds"), log.drop(columns="seconds"))
    assert {n: set(f) for n, f in got.fits.items()} == {n: set(g.fits) for n, g in grids.items()}
    assert set(got.fits["c2"]) == {("paper", orders["c2"].full, 0), ("paper", orders["c2"].full, 1)}
    assert (got.predictions.query("cohort == 'c1' and modalities == 'good' and model == 'paper'")
            .reset_index(drop=True).equals(upstream.reset_index(drop=True)))
    assert got.seconds > 0
    none = train.plan_fusion(orders, models, every_order=False, reusable=None)
    assert none.n_reused == 0 and none.note().endswith("nothing reused)")
