"""Modality interference (after arXiv 2505.19616, adapted to clinical fusion; chapter 07).

Diagnostic: replace *one* modality's input and see how far the prediction moves.

- ``switch``: another patient's embedding of that modality, from the same split (a random donor that has
  the modality; never the stay itself);
- ``blank``: the embedding of an empty note (the modality is "present" but says nothing);
- ``irrelevant``: the embedding of a clinically irrelevant sentence (:data:`IRRELEVANT_TEXTS`).

Only stays that have the modality are perturbed; every other modality, and the availability mask, are left
as they are (:func:`perturb`). :func:`perturbation_effects` gives the flip rate (decision changes) and the
mean absolute change of the probability, overall and by group.

Mitigation: :func:`finetune_consistency` continues training a fitted network on clean inputs and on
perturbed copies (one random modality of each stay, one random perturbation), with a consistency loss: the
KL divergence between the clean and the perturbed predicted distributions, weighted by ``weight``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import disclosure

PERTURBATIONS = ("switch", "blank", "irrelevant")
BLANK_TEXT = ""
IRRELEVANT_TEXTS = [
    "The cafeteria will serve vegetable soup and a grilled cheese sandwich at noon.",
    "Parking level three is closed for repainting until Friday.",
    "The quarterly newsletter is available in the staff lounge.",
    "Please remember to update your email signature with the new logo.",
    "The elevator on the east side has been serviced this morning.",
    "A lost umbrella was handed in at the front desk.",
    "The printer on the second floor is out of toner.",
    "Volunteers are needed for the charity run next month.",
    "The garden outside the main entrance was replanted with tulips.",
    "The wifi password for guests changes every Monday.",
    "The vending machine now accepts contactless payment.",
    "The library will extend its opening hours during the holidays.",
]


def perturb(x: np.ndarray, mask: np.ndarray, m: int, kind: str, seed: int, blank: np.ndarray,
            irrelevant: np.ndarray, donors: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``x`` ``(n, M, D)`` where modality ``m`` of every stay that has it (``mask[:, m]``) is replaced
    according to ``kind`` (see the module docstring). ``donors``: row indices the ``switch`` may draw from
    (default: every row that has the modality). The mask is not changed."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation {kind!r}: expected one of {PERTURBATIONS}")
    rng = np.random.default_rng(seed)
    out = x.copy()
    have = np.flatnonzero(mask[:, m])
    if len(have) == 0:
        return out
    if kind == "blank":
        out[have, m] = blank
    elif kind == "irrelevant":
        out[have, m] = irrelevant[rng.integers(len(irrelevant), size=len(have))]
    else:
        pool = np.intersect1d(have, donors) if donors is not None else have
        if len(pool) < 2:
            raise ValueError(f"switch: modality {m} needs at least two stays that have it, got {len(pool)}")
        pick = pool[rng.integers(len(pool), size=len(have))]
        same = pick == have
        while same.any():  # never the stay's own input
            pick[same] = pool[rng.integers(len(pool), size=int(same.sum()))]
            same = pick == have
        out[have, m] = x[pick, m]
    return out


def perturbation_effects(p_clean: np.ndarray, p_pert: np.ndarray, t_clean: np.ndarray, affected: np.ndarray,
                         groups: dict[str, np.ndarray]) -> list[dict]:
    """Flip rate and mean |delta p| among the ``affected`` stays, overall and for each group of each attribute
    in ``groups``. ``p_*``: ``(seeds, n)`` probabilities; ``t_clean``: ``(seeds,)`` thresholds (the same for the
    perturbed run). Rows: ``attribute, group, n, flip_rate, mean_abs_dp`` (means over seeds). For a credentialed
    source, a group's numbers are withheld (NaN) when it has fewer than 11 affected stays or when its flip rate
    would give a count of 1-10 flipped or unflipped stays back (:func:`mmlib.disclosure.share`)."""
    t = np.asarray(t_clean)[:, None]
    flips = (p_clean >= t) != (p_pert >= t)
    dp = np.abs(p_pert - p_clean)
    rows = [{"attribute": "overall", "group": "all", "n": int(affected.sum()),
             "flip_rate": float(flips[:, affected].mean()) if affected.any() else np.nan,
             "mean_abs_dp": float(dp[:, affected].mean()) if affected.any() else np.nan}]
    for attr, g in groups.items():
        for k in sorted(pd.unique(g)):
            sel = affected & (g == k)
            rate = float(flips[:, sel].mean()) if sel.any() else np.nan
            n = int(sel.sum())
            hide = disclosure.active() and (not sel.any() or np.isnan(disclosure.share(round(rate * n), n)))
            rows.append({"attribute": attr, "group": k, "n": n, "flip_rate": np.nan if hide else rate,
                         "mean_abs_dp": np.nan if hide or not sel.any() else float(dp[:, sel].mean())})
    return rows


def group_effect_gaps(p_clean: np.ndarray, p_pert: np.ndarray, t_clean: np.ndarray, affected: np.ndarray,
                      groups: dict[str, np.ndarray], flags: dict, boot, effect_rows: list[dict] | None = None) -> list[dict]:
    """How differently a perturbation moves the groups: for each attribute of ``groups`` and each compared group
    (``flags``: :func:`mmlib.metrics.estimable`'s) other than the reference (:data:`mmlib.metrics.REFERENCE`),
    its flip rate and mean |delta p| among the ``affected`` stays minus the reference group's, with the 95% CI of
    the difference on the resamples of ``boot`` (:func:`mmlib.metrics.group_mean_difference`; stratified, so
    paired with every other number of the diagnostic). Rows: ``attribute, group, reference, measure
    (flip_rate / mean_abs_dp), value_group, value_reference, difference, ci_low, ci_high``. Groups whose
    :func:`perturbation_effects` row (``effect_rows``) is withheld, or without affected stays, are left out
    (chapter 07)."""
    from .metrics import REFERENCE, group_mean_difference

    t = np.asarray(t_clean)[:, None]
    values = {"flip_rate": ((p_clean >= t) != (p_pert >= t)).astype(np.float64),
              "mean_abs_dp": np.abs(p_pert - p_clean)}
    withheld = {(r["attribute"], r["group"]) for r in (effect_rows or [])
                if r["attribute"] != "overall" and not np.isfinite(r["flip_rate"])}
    rows = []
    for attr, g in groups.items():
        ref = REFERENCE.get(attr)
        compared = [k for k, why in flags.get(attr, {}).items() if not why]
        if ref not in compared or (attr, ref) in withheld:
            continue
        labels = np.where(affected, np.asarray(g).astype(str), "")
        for k in compared:
            if k == ref or (attr, k) in withheld or not ((labels == k).any() and (labels == ref).any()):
                continue
            for measure, v in values.items():
                ma, mb, diff, lo, hi = group_mean_difference(v, labels, k, ref, boot)
                rows.append({"attribute": attr, "group": k, "reference": ref, "measure": measure,
                             "value_group": ma, "value_reference": mb, "difference": diff, "ci_low": lo,
                             "ci_high": hi})
    return rows


def _bernoulli_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KL(p || q) between Bernoulli distributions, elementwise."""
    p, q = p.clamp(eps, 1 - eps), q.clamp(eps, 1 - eps)
    return p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()


def perturb_batch(x: torch.Tensor, mask: torch.Tensor, pool_x: torch.Tensor, pool_mask: torch.Tensor,
                  blank: torch.Tensor, irrelevant: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Training-time augmentation: for every sample with at least one modality, one of its present modalities
    (at random) gets one of the three perturbations (at random); the donor of a ``switch`` is a random row of
    ``pool_x`` that has that modality. Returns the perturbed copy of ``x``."""
    n, M, _ = x.shape
    out = x.clone()
    score = torch.rand(mask.shape, generator=gen, device=x.device) * mask
    mod = score.argmax(dim=1)
    kind = torch.randint(0, 3, (n,), generator=gen, device=x.device)
    rows = torch.arange(n, device=x.device)
    has = mask.any(dim=1)
    for m in range(M):
        sel = has & (mod == m)
        blank_rows = rows[sel & (kind == 1)]
        out[blank_rows, m] = blank
        irr_rows = rows[sel & (kind == 2)]
        out[irr_rows, m] = irrelevant[torch.randint(0, len(irrelevant), (len(irr_rows),), generator=gen,
                                                    device=x.device)]
        sw_rows = rows[sel & (kind == 0)]
        donors = torch.nonzero(pool_mask[:, m]).squeeze(1)
        if len(sw_rows) and len(donors):
            out[sw_rows, m] = pool_x[donors[torch.randint(0, len(donors), (len(sw_rows),), generator=gen,
                                                          device=x.device)], m]
    return out


def finetune_consistency(fit, data, cfg, weight: float = 1.0, epochs: int = 5, blank: np.ndarray | None = None,
                         irrelevant: np.ndarray | None = None, seed: int | None = None):
    """Continue training a fitted network (:class:`mmlib.train.FittedModel`) for ``epochs`` epochs with perturbation
    augmentation and a consistency loss: ``BCE(clean) + BCE(perturbed) + weight * KL(p_clean || p_perturbed)``
    (class-weighted BCE as in training; the clean prediction is the target of the KL, without gradient).
    The epoch (the starting point included) with the lowest value of that objective on the validation split,
    perturbed once with a fixed draw, is kept. Returns a new fit named ``<model>+consistency``."""
    from .train import (FittedModel, adamw, choose_threshold, predict, predict_logits, seeded_single_thread,
                        training_tensors)

    if fit.name == "logreg":
        raise ValueError("finetune_consistency fine-tunes networks; the logistic regression has no such training")
    seed = fit.seed if seed is None else seed
    cols = data.columns(fit.modalities)
    tr, va = data.rows("train"), data.rows("val")
    dev = next(fit.model.parameters()).device
    x, mk, y, bce = training_tensors(data, cols, dev)
    b = torch.as_tensor(blank, device=dev, dtype=x.dtype)
    irr = torch.as_tensor(irrelevant, device=dev, dtype=x.dtype)
    t0 = time.perf_counter()
    with seeded_single_thread(seed, dev) as gen:
        model = copy.deepcopy(fit.model)
        opt = adamw(model, cfg)
        tr_t = torch.as_tensor(tr, device=dev)
        va_t = torch.as_tensor(va, device=dev)
        xv_pert = perturb_batch(x[va_t], mk[va_t], x[tr_t], mk[tr_t], b, irr, gen)  # one fixed draw

        def objective() -> float:
            lc, lp = predict_logits(model, x[va_t], mk[va_t]), predict_logits(model, xv_pert, mk[va_t])
            kl = _bernoulli_kl(torch.sigmoid(lc), torch.sigmoid(lp)).mean()
            return float(bce(lc, y[va_t]) + bce(lp, y[va_t]) + weight * kl)

        best, best_loss = copy.deepcopy(model.state_dict()), objective()
        pool_x, pool_mask = x[tr_t], mk[tr_t]  # the switch donors: the training split, gathered once
        for _ in range(epochs):
            model.train()
            order = tr_t[torch.randperm(len(tr_t), generator=gen, device=dev)]
            for i in range(0, len(order), cfg.batch_size):
                bi = order[i:i + cfg.batch_size]
                xb, mb, yb = x.index_select(0, bi), mk.index_select(0, bi), y.index_select(0, bi)
                xp = perturb_batch(xb, mb, pool_x, pool_mask, b, irr, gen)
                lc, lp = model(xb, mb), model(xp, mb)
                kl = _bernoulli_kl(torch.sigmoid(lc).detach(), torch.sigmoid(lp)).mean()
                loss = bce(lc, yb) + bce(lp, yb) + weight * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            val = objective()
            if val < best_loss:
                best, best_loss = copy.deepcopy(model.state_dict()), val
        model.load_state_dict(best)
        model.eval()
    out = FittedModel(model, f"{fit.name}+consistency", list(fit.modalities), fit.seed, 0.5, fit.best_epoch,
                      fit.epochs + epochs, best_loss, time.perf_counter() - t0)
    out.threshold = choose_threshold(data.y[va], predict(out, data.x[va][:, cols], data.mask[va][:, cols]),
                                     cfg.threshold)
    return out


def finetune_many(fits: list, data, cfg, weight: float, epochs: int, blank: np.ndarray, irrelevant: np.ndarray,
                  n_jobs: int = 1) -> list:
    """:func:`finetune_consistency` for several fits, in parallel worker processes (joblib; CPU only).
    Each fine-tune runs on one thread with its fit's seed, so the result does not depend on ``n_jobs``."""
    from joblib import Parallel, delayed

    if cfg.torch_device().type != "cpu":
        n_jobs = 1
    return list(Parallel(n_jobs=n_jobs)(delayed(finetune_consistency)(f, data, cfg, weight, epochs, blank, irrelevant)
                                         for f in fits))


def shuffle_modality(data, modality: str, seed: int):
    """A copy of a :class:`mmlib.train.FusionData` in which ``modality`` (its embedding and its availability)
    is permuted across the stays of each split: the modality keeps its distribution but no longer belongs
    to its stay, so it carries no signal about the outcome (a positive control for the diagnostics)."""
    import dataclasses

    j = data.columns([modality])[0]
    rng = np.random.default_rng(seed)
    x, mask = data.x.copy(), data.mask.copy()
    for split in ("train", "val", "test"):
        rows = data.rows(split)
        perm = rng.permutation(rows)
        x[rows, j], mask[rows, j] = data.x[perm, j], data.mask[perm, j]
    return dataclasses.replace(data, x=x, mask=mask)


@dataclass
class Diagnosis:
    """:func:`diagnose`'s result for one model: ``effects`` (flip rate and mean |dp| per modality,
    perturbation and group), ``changes`` (every metric clean, perturbed and the paired change with its CI),
    ``clean`` (the clean predictions' metrics with CIs) and ``clean_replicates`` (their bootstrap resamples,
    ``{(metric, attribute, group): (B,) array}``, for paired comparisons of two models diagnosed on the same
    stays: :meth:`clean_change`), ``flags`` (which groups are compared, :func:`mmlib.metrics.estimable`'s, by
    attribute) and ``group_gaps`` (each compared group's flip rate and mean |dp| minus the reference group's
    under every modality and perturbation, with CIs: :func:`group_effect_gaps`). :meth:`labelled` adds
    ``cohort`` and ``model`` columns to the tables."""

    effects: pd.DataFrame
    changes: pd.DataFrame
    clean: pd.DataFrame
    clean_replicates: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    group_gaps: pd.DataFrame = field(default_factory=pd.DataFrame)

    def labelled(self, **labels) -> "Diagnosis":
        return Diagnosis(*(t.assign(**labels) for t in (self.effects, self.changes, self.clean)),
                         self.clean_replicates, self.flags, self.group_gaps.assign(**labels))

    @staticmethod
    def concat(items: list["Diagnosis"]) -> "Diagnosis":
        """Several labelled diagnoses as one (rows in order; the replicates and flags are per diagnosis and
        dropped)."""
        def cat(frames):  # empty frames (e.g. no group large enough) add no rows and, for pandas, no dtypes
            kept = [f for f in frames if len(f)]
            return pd.concat(kept, ignore_index=True) if kept else pd.concat(frames, ignore_index=True)

        return Diagnosis(*(cat([getattr(d, k) for d in items]) for k in ("effects", "changes", "clean")),
                         group_gaps=cat([d.group_gaps for d in items]))

    def clean_change(self, other: "Diagnosis", key: tuple[str, str, str]):
        """Paired change of clean metric ``key`` from this model to ``other`` (both diagnosed on the same test
        stays with the same resamples, e.g. a model and its fine-tuned version): a
        :class:`mmlib.metrics.Change`."""
        from .metrics import Change

        def mean(d):
            c = d.clean
            return float(c[(c.metric == key[0]) & (c.attribute == key[1]) & (c.group == key[2])]["mean"].iloc[0])

        if key not in self.clean_replicates or key not in other.clean_replicates:
            return Change(np.nan, np.nan, np.nan)
        return Change.paired(mean(self), mean(other), self.clean_replicates[key], other.clean_replicates[key])


def diagnose(data, fits: list, perturbations, blank: np.ndarray, irrelevant: np.ndarray, *, seed: int = 0,
             min_group: int = 30, min_events: int = 10, n_boot: int = 100) -> Diagnosis:
    """The interference diagnostic for one model (``fits``: its seeds, all on the same modalities) on the test
    stays of ``data``: every modality x perturbation of :func:`perturb` (seeded by ``seed``, the same for all
    seeds), chapter 07. Returns a :class:`Diagnosis`:

    - ``effects``: rows of :func:`perturbation_effects` with ``modality`` and ``perturbation``;
    - ``changes``: every metric clean, perturbed, and the change with its paired 95% bootstrap CI (the same
      resamples for both, stratified by race x gender);
    - ``clean``: :func:`mmlib.metrics.summarise_vectors` of the clean predictions (mean over seeds, CI);
    - ``group_gaps``: :func:`group_effect_gaps` of every modality x perturbation (race and gender).
    """
    from .metrics import ci95, evaluation_groups, summarise_vectors
    from .train import predict

    order = fits[0].modalities
    te = data.rows("test")
    cols = data.columns(order)
    x, mk = data.x[te][:, cols], data.mask[te][:, cols]
    y = data.y[te]
    groups = evaluation_groups(data, "test", min_group=min_group, min_events=min_events, n_boot=n_boot)
    attrs, flags, boot = groups.attrs, groups.flags, groups.boot
    thr = np.array([f.threshold for f in fits])

    def scored(xx):
        p = np.stack([predict(f, xx, mk) for f in fits])
        return p, summarise_vectors(y, p, (p >= thr[:, None]).astype(int), attrs, flags, boot)

    clean_p, (clean, clean_reps) = scored(x)
    effects, changes, gaps = [], [], []
    by = {"race": attrs["race"], "gender": attrs["gender"]}
    for j, m in enumerate(order):
        for i, kind in enumerate(perturbations):
            xp = perturb(x, mk, j, kind, seed * 1000 + 10 * j + i, blank, irrelevant)
            pert_p, (t, reps) = scored(xp)
            rows = perturbation_effects(clean_p, pert_p, thr, mk[:, j], by)
            effects += [{"modality": m, "perturbation": kind, **r} for r in rows]
            gaps += [{"modality": m, "perturbation": kind, **r}
                     for r in group_effect_gaps(clean_p, pert_p, thr, mk[:, j], by, flags, boot, rows)]
            for r in t.merge(clean, on=["metric", "attribute", "group"], suffixes=("", "_clean")).itertuples():
                key = (r.metric, r.attribute, r.group)  # metrics without replicates (per-group AUROC/ECE): no CI
                lo, hi = ci95(reps[key] - clean_reps[key]) if key in reps else (np.nan, np.nan)
                changes.append({"modality": m, "perturbation": kind, "metric": r.metric, "attribute": r.attribute,
                                "group": r.group, "clean": r.mean_clean, "perturbed": r.mean,
                                "change": r.mean - r.mean_clean, "ci_low": lo, "ci_high": hi})
    gap_columns = ["modality", "perturbation", "attribute", "group", "reference", "measure", "value_group",
                   "value_reference", "difference", "ci_low", "ci_high"]
    return Diagnosis(pd.DataFrame(effects), pd.DataFrame(changes), clean, clean_reps, flags,
                     pd.DataFrame(gaps, columns=gap_columns))


def reference_inputs(encoder: str, max_length: int, cache: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """The blank and irrelevant perturbations' inputs embedded with chapter 02's encoder (:data:`BLANK_TEXT`,
    :data:`IRRELEVANT_TEXTS`; ``cache``: the chapter's embedding cache folders, so these vectors are chapter 02's
    bytes): ``(blank vector, irrelevant vectors, a sentence saying what was embedded)``. Used by chapter 07."""
    from .embed import embed_texts

    vecs, st = embed_texts([BLANK_TEXT] + IRRELEVANT_TEXTS, encoder=encoder, max_length=max_length, progress=False,
                           **cache)
    note = (f"Blank and irrelevant inputs embedded with `{encoder}` ({st['precision']}): an empty note and "
            f"{len(vecs) - 1} irrelevant sentences, e.g. *{IRRELEVANT_TEXTS[0]}*")
    return vecs[0], vecs[1:], note


def diagnose_many(data: dict, fits: dict, perturbations, blank: np.ndarray, irrelevant: np.ndarray, *,
                  label: str = "{model}", **settings) -> tuple[dict, Diagnosis]:
    """:func:`diagnose` for every ``(cohort, model)`` of ``fits`` (``{(cohort, model): fitted models, one per
    seed}``) on ``data[cohort]``, with the same ``settings`` (``seed``, ``min_group``, ``min_events``, ``n_boot``).
    Returns the diagnoses by ``(cohort, model)`` and their concatenation (:meth:`Diagnosis.concat`, in the order
    of ``fits``) labelled ``cohort`` and ``model=label.format(model=model)`` (e.g. ``"{model}+consistency"``).
    Used by chapter 07 (the original and the fine-tuned models)."""
    out = {(n, m): diagnose(data[n], fl, perturbations, blank, irrelevant, **settings) for (n, m), fl in fits.items()}
    return out, Diagnosis.concat([d.labelled(cohort=n, model=label.format(model=m)) for (n, m), d in out.items()])


def finetune_all(fits: dict, data: dict, cfg, weight: float, epochs: int, blank: np.ndarray, irrelevant: np.ndarray,
                 n_jobs: int = 1) -> tuple[dict, float]:
    """:func:`finetune_many` (consistency fine-tuning) of every ``(cohort, model)`` of ``fits`` (``{(cohort,
    model): fitted models, one per seed}``) on ``data[cohort]``. Returns ``({(cohort, model): fine-tuned
    models}, seconds)``. Used by chapter 07."""
    t0 = time.perf_counter()
    out = {(n, m): finetune_many(fl, data[n], cfg, weight, epochs, blank, irrelevant, n_jobs)
           for (n, m), fl in fits.items()}
    return out, time.perf_counter() - t0


def positive_control(data: dict, orders: dict, model: str, seeds, cfg, perturbations, blank: np.ndarray,
                     irrelevant: np.ndarray, *, shuffle_seed: int, n_jobs: int = 1, **settings) -> dict:
    """Chapter 07's positive control: for every cohort ``n``, ``model`` retrained (:func:`mmlib.train.run_grid`,
    ``seeds``, ``cfg``) on all modalities of ``orders[n]`` with the last of them shuffled across the stays of each
    split (:func:`shuffle_modality`, seed ``shuffle_seed``), and diagnosed on that shuffled data (:func:`diagnose`
    with ``settings``). Returns ``{cohort: Diagnosis}``; :func:`mmlib.findings.control_summary` compares it with
    the model trained on the real modality. Used by chapter 07."""
    from .train import run_grid

    out = {}
    for n, d in data.items():
        shuffled = shuffle_modality(d, orders[n][-1], seed=shuffle_seed)
        g = run_grid(shuffled, [(model, list(orders[n]))], seeds, cfg, n_jobs=n_jobs, progress=False,
                     keep={(model, orders[n].full)})
        out[n] = diagnose(shuffled, g.fits_of(model, orders[n].full, seeds), perturbations, blank, irrelevant,
                          **settings)
    return out
