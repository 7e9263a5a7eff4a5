"""Mask samplers and prediction under masks (mmlib.missing)."""
import numpy as np
import pytest

from mmlib import missing, train
from test_models import _toy_data


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
    with pytest.raises(ValueError, match="exceed 1"):
        missing.matched_group_rates(groups, {"a": 0.1, "b": 0.9}, mean_rate=0.8)


def test_predict_masked_equals_predict_per_draw_and_all_missing_is_constant():
    data = _toy_data()
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


def test_rate_zero_reproduces_the_unmasked_summary_exactly():
    from mmlib import metrics

    data = _toy_data(n=400)
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


def test_training_missingness_touches_only_train_and_val():
    data = _toy_data()
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
