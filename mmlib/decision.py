"""Decision-layer analysis of the ``linear`` fusion model (chapter 06).

The model's logit is a sum of per-modality contributions ``c_m = W_m · h_m`` plus a bias
(:func:`mmlib.models.decision_weights`, :func:`mmlib.models.contributions`). This module turns the fitted
models of every seed into the chapter's tables:

- :func:`analyse`: per seed and modality, the weight-block norm with all modalities and alone, its share of
  the total norm, the mean feature norm and mean absolute contribution; every weight (long format); and the
  per-stay contributions of the test stays;
- :func:`weight_table`: those numbers as ``mean ± sd`` over seeds, one row per modality;
- :func:`contribution_frame`: one seed's contributions in long format with outcome and groups, for plots;
- :func:`group_shares`: each modality's share of the absolute logit by race and gender group, with the
  difference between each group and the reference group (White, men; the signed-gap convention of
  :data:`mmlib.metrics.REFERENCE`) and its stratified bootstrap CI;
- chapter 06's training and remedy: :func:`train_linear` (the model on all modalities and on each alone),
  :func:`calibrate_all`, :func:`scale_table` and :func:`with_calibrated` (per-modality calibration and its
  predictions), :func:`robustness_sweep` (baseline against calibrated under random missingness).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .metrics import REFERENCE, group_mean_difference, group_order, not_compared
from .models import contributions, decision_weights
from .schema import display_name


@dataclass
class DecisionLayer:
    """:func:`analyse`'s result for one cohort: ``per_seed`` (one row per seed and modality: ``norm``,
    ``share``, ``alone``, ``feature``, ``abs_c``), ``weights`` (every weight, long) and ``contributions``
    (``{seed: (n_test, M) array}``)."""

    per_seed: pd.DataFrame
    weights: pd.DataFrame
    contributions: dict

    def means(self, order) -> pd.DataFrame:
        """Mean over seeds of every per-seed number, one row per modality in ``order``."""
        return self.per_seed.groupby("modality", sort=False).mean(numeric_only=True).reindex(list(order))


def analyse(fits: dict, data, order, seeds) -> DecisionLayer:
    """Weights, feature norms and contributions of the ``linear`` models in ``fits`` (``{("linear", label,
    seed): FittedModel}``, trained on all of ``order`` and on each modality alone) on the test stays of
    ``data`` (a :class:`mmlib.train.FusionData`)."""
    order = list(order)
    full = "+".join(order)
    te = data.rows("test")
    x = torch.as_tensor(data.x[te][:, data.columns(order)])
    mk = torch.as_tensor(data.mask[te][:, data.columns(order)])
    per_seed, weight_rows, contrib = [], [], {}
    for s in seeds:
        w = decision_weights(fits[("linear", full, s)].model, order)
        c, hn = contributions(fits[("linear", full, s)].model, x, mk)
        contrib[s] = c.numpy()
        total = sum(float(v.norm()) for v in w.values())
        for j, m in enumerate(order):
            alone = decision_weights(fits[("linear", m, s)].model, [m])[m]
            have = mk[:, j].numpy()
            per_seed.append({"modality": m, "seed": s, "norm": float(w[m].norm()), "share": float(w[m].norm()) / total,
                             "alone": float(alone.norm()), "feature": float(hn[have, j].mean()),
                             "abs_c": float(c[have, j].abs().mean())})
            weight_rows += [{"cohort": data.cohort, "modality": m, "training": "with all modalities", "seed": s,
                             "weight": v} for v in w[m].tolist()]
            weight_rows += [{"cohort": data.cohort, "modality": m, "training": "alone", "seed": s, "weight": v}
                            for v in alone.tolist()]
    return DecisionLayer(pd.DataFrame(per_seed), pd.DataFrame(weight_rows), contrib)


def _mean_sd(v) -> str:
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def weight_table(result: DecisionLayer, order) -> pd.DataFrame:
    """One row per modality (in ``order``): weight-block norm with all modalities, its share, norm alone,
    mean feature norm and mean |contribution|, each ``mean ± sd`` over seeds."""
    g = result.per_seed.groupby("modality", sort=False)
    return pd.DataFrame({"‖W_m‖ with all": g["norm"].apply(_mean_sd),
                         "share of weight norm": g["share"].apply(_mean_sd),
                         "‖W_m‖ alone": g["alone"].apply(_mean_sd), "mean ‖h_m‖": g["feature"].apply(_mean_sd),
                         "mean |c_m|": g["abs_c"].apply(_mean_sd)}).reindex(list(order))


def contribution_frame(result: DecisionLayer, data, order, seed: int) -> pd.DataFrame:
    """The contributions of one ``seed`` for the test stays that have each modality, long: ``cohort,
    modality, contribution, outcome, race, gender``."""
    te = data.rows("test")
    st = data.stays.iloc[te]
    have = data.mask[te][:, data.columns(list(order))]
    c = result.contributions[seed]
    out = []
    for j, m in enumerate(order):
        keep = have[:, j]
        out.append(pd.DataFrame({"cohort": data.cohort, "modality": m, "contribution": c[keep, j],
                                 "outcome": np.where(data.y[te][keep] == 1, "positive", "negative"),
                                 "race": st["race"].to_numpy()[keep], "gender": st["gender"].to_numpy()[keep]}))
    return pd.concat(out, ignore_index=True)


def group_shares(result: DecisionLayer, data, order, seeds, boot) -> pd.DataFrame:
    """Each modality's share of the stay's total absolute contribution, ``|c_m| / sum_k |c_k|``, averaged over
    ``seeds``, in each race group other than the reference (White; ``Unknown`` left out) against the reference,
    and in women against men -- group minus reference, as the signed gaps -- with the difference and its 95%
    bootstrap CI (``boot``: a :class:`mmlib.metrics.Bootstrap` of the test stays). ``clear`` says whether
    the CI excludes 0."""
    te = data.rows("test")
    st = data.stays.iloc[te]
    shares = np.stack([np.abs(result.contributions[s])
                       / np.clip(np.abs(result.contributions[s]).sum(1, keepdims=True), 1e-12, None) for s in seeds])
    pairs = []
    for attr in ("race", "gender"):
        present = [g for g in group_order(st[attr]) if not not_compared(g)]
        ref = REFERENCE[attr]
        if ref in present:
            pairs += [(attr, g, ref) for g in present if g != ref]
    rows = []
    for j, m in enumerate(order):
        for attr, a, b in pairs:
            ma, mb, diff, lo, hi = group_mean_difference(shares[:, :, j], st[attr].to_numpy(), a, b, boot)
            rows.append({"cohort": display_name(data.cohort), "modality": m, "attribute": attr, "groups": f"{a} − {b}",
                         "share in first": ma, "share in second": mb, "difference": diff,
                         "ci_low": lo, "ci_high": hi, "clear": "yes" if lo > 0 or hi < 0 else "no"})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ chapter 06's training and remedy
def train_linear(data: dict, orders: dict, seeds, cfg, n_jobs: int = 1) -> tuple[dict, float]:
    """The ``linear`` decision-layer model of every cohort ``n`` of ``data``, trained
    (:func:`mmlib.train.run_grid`, ``seeds``, ``cfg``) on all modalities of ``orders[n]`` and on each modality
    alone, every fit kept. Returns ``({cohort: GridResult}, seconds)``. Used by chapter 06."""
    import time

    from .train import run_grid

    t0 = time.perf_counter()
    grids = {n: run_grid(d, [("linear", list(orders[n]))] + [("linear", [m]) for m in orders[n]], seeds, cfg,
                         n_jobs=n_jobs, progress=False, keep={("linear", lab) for lab in [orders[n].full, *orders[n]]})
             for n, d in data.items()}
    return grids, time.perf_counter() - t0


def calibrate_all(grids: dict, data: dict, orders: dict, seeds, threshold=0.5) -> dict:
    """Per-modality calibration (:func:`mmlib.train.calibrate_modalities`, decision threshold ``threshold``) of
    every seed's all-modality ``linear`` fit in ``grids`` (:func:`train_linear`): ``{cohort: [calibrated fit per
    seed]}``. Used by chapter 06."""
    from .train import calibrate_modalities

    return {n: [calibrate_modalities(grids[n].fits[("linear", orders[n].full, s)], d, threshold) for s in seeds]
            for n, d in data.items()}


def scale_table(calibrated: dict, orders: dict) -> pd.DataFrame:
    """The fitted per-modality scales of :func:`calibrate_all`'s models (1 = unchanged): one row per cohort
    (display name) and seed, one column per modality of ``orders[cohort]``. Used by chapter 06."""
    return pd.DataFrame([{"cohort": display_name(n), **dict(zip(orders[n], f.model.scale.tolist()))}
                         for n, fl in calibrated.items() for f in fl])


def with_calibrated(grids: dict, calibrated: dict, data: dict) -> pd.DataFrame:
    """Every prediction of ``grids`` (:func:`train_linear`) followed by those of the calibrated models
    (:func:`calibrate_all`, :func:`mmlib.train.prediction_frame` on ``data[cohort]``), as one frame. Used by
    chapter 06."""
    from .train import prediction_frame

    return pd.concat([g.predictions for g in grids.values()]
                     + [prediction_frame(data[n], f) for n in data for f in calibrated[n]], ignore_index=True)


def robustness_sweep(data: dict, orders: dict, grids: dict, calibrated: dict, seeds, rates, draws: int, *,
                     mask_seed: int, min_group: int = 30, min_events: int = 10, n_boot: int = 100):
    """The baseline ``linear`` model (``grids``, :func:`train_linear`) against its calibrated version
    (``calibrated``, :func:`calibrate_all`) under random missingness: for every cohort ``n`` and rate
    ``rates[i]``, ``draws`` masks of the test availability (:func:`mmlib.missing.bernoulli_masks`, seed
    ``mask_seed * 1000 + i``) scored for both (:meth:`mmlib.missing.Sweep.evaluate` on
    :func:`mmlib.metrics.evaluation_groups` with ``min_group``, ``min_events`` and ``n_boot``), labelled
    ``cohort, model, rate``. Returns ``(Sweep, seconds)``. Used by chapter 06."""
    import time

    from .metrics import evaluation_groups
    from .missing import Sweep, bernoulli_masks, test_availability

    t0, sweep = time.perf_counter(), Sweep()
    for n, d in data.items():
        groups = evaluation_groups(d, "test", min_group=min_group, min_events=min_events, n_boot=n_boot)
        for i, p in enumerate(rates):
            masks = bernoulli_masks(test_availability(d, orders[n]), p, draws, seed=mask_seed * 1000 + i)
            for name, fl in (("linear", grids[n].fits_of("linear", orders[n].full, seeds)),
                             ("linear+calibrated", calibrated[n])):
                sweep.evaluate(d, fl, masks, groups, cohort=n, model=name, rate=p)
    return sweep, time.perf_counter() - t0
