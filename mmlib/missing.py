"""Missing modalities at inference: mask samplers and vectorised prediction under masks (chapter 05).

- :func:`bernoulli_masks`: the paper's Algorithm 1. Each modality of each sample that is present goes
  missing independently with probability ``rate`` (one rate for all modalities, or one per modality: the
  per-modality stress protocol of arXiv 2605.12031 sets one modality's rate and leaves the others at 0).
  ``draws`` independent masks at once, as one boolean array, from a seeded generator.
- :func:`group_masks`: the same, with a rate per group (group-dependent missingness).
- :func:`matched_group_rates`: per-group rates that keep the relative access gap of a reference set of
  rates but average, over the samples, to a given overall rate, so an MCAR run and a group-dependent run
  lose the same share of modalities and differ only in *who* loses them.
- :func:`predict_masked`: probabilities of one fitted model for every draw, ``(draws, n)``, computed in
  chunks without a Python loop per sample. Each model handles a missing modality its own way (zero vector,
  attention mask, dropped from the average), exactly as in training.

A modality that is already missing stays missing; the rates apply to what is present.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _check_rate(rate, n_modalities: int, name: str = "rate") -> np.ndarray:
    r = np.broadcast_to(np.asarray(rate, dtype=float), (n_modalities,)).copy()
    if ((r < 0) | (r > 1)).any() or not np.isfinite(r).all():
        raise ValueError(f"{name} must be in [0, 1] (one value, or one per modality), got {rate!r}")
    return r


def bernoulli_masks(present: np.ndarray, rate, draws: int, seed: int) -> np.ndarray:
    """``(draws, n, M)`` masks: ``present`` with each True entry switched off with probability ``rate``
    (a number, or one per modality), independently across draws, samples and modalities."""
    present = np.asarray(present, dtype=bool)
    r = _check_rate(rate, present.shape[1])
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    u = np.random.default_rng(seed).random((draws, *present.shape))
    return present[None] & (u >= r)


def group_masks(present: np.ndarray, groups: np.ndarray, rates: dict, draws: int, seed: int) -> np.ndarray:
    """``(draws, n, M)`` masks with a missingness rate per group: ``rates[g]`` (a number, or one per
    modality) for the samples of group ``g``. Every group in ``groups`` needs a rate."""
    present = np.asarray(present, dtype=bool)
    groups = np.asarray(groups).astype(str)
    lacking = sorted(set(groups) - set(map(str, rates)))
    if lacking:
        raise ValueError(f"rates: no missingness rate for groups {lacking}; got rates for {sorted(map(str, rates))}")
    r = np.stack([_check_rate(rates[g], present.shape[1], f"rates[{g!r}]") for g in groups])
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    u = np.random.default_rng(seed).random((draws, *present.shape))
    return present[None] & (u >= r[None])


def matched_group_rates(groups: np.ndarray, reference: dict, mean_rate: float) -> dict:
    """Per-group rates proportional to ``reference`` (e.g. each group's observed share of a modality
    missing), scaled so that their sample-weighted mean over ``groups`` equals ``mean_rate``; capped at 1
    (raises if the cap makes the target unreachable)."""
    groups = np.asarray(groups).astype(str)
    share = pd.Series(groups).value_counts(normalize=True)
    ref = pd.Series({str(g): float(reference[g]) for g in reference}).reindex(share.index)
    if ref.isna().any():
        raise ValueError(f"reference: no rate for groups {list(ref.index[ref.isna()])}")
    base = float((ref * share).sum())
    if mean_rate == 0 or base == 0:
        return {g: (0.0 if mean_rate == 0 else float(mean_rate)) for g in ref.index}
    out = ref * (mean_rate / base)
    if (out > 1).any():
        raise ValueError(f"mean_rate {mean_rate}: the group rates would exceed 1 ({out.round(3).to_dict()})")
    return out.to_dict()


def predict_masked(fit, x: np.ndarray, masks: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Probabilities ``(draws, n)`` of a fitted model (:class:`mmlib.train.FittedModel`) for ``x`` ``(n, M, D)``
    under each of ``masks`` ``(draws, n, M)``, in chunks of ``chunk`` rows.

    A network's per-modality input layers run once per stay (:func:`mmlib.models.encode_inputs`, on the modalities
    present in some draw), and each draw replaces the modalities it removes by their layer's bias
    (:func:`mmlib.models.mask_encoded`) before the rest of the network: the same numbers as
    ``predict(fit, x, masks[d])`` for every draw ``d`` (``tests/test_missing.py``), without pushing every draw's
    embeddings through the input layers (chapters 05-06's sweeps predict hundreds of draws). The rest of the network
    runs once per distinct (stay, mask) pair: with M modalities a stay has at most 2^M masks, so the draws repeat
    them (at rate 0 every draw is the stay's own mask)."""
    import torch

    from .models import encode_inputs, mask_encoded
    from .train import predict

    draws, n, m = masks.shape
    if x.shape[:2] != (n, m):
        raise ValueError(f"x has shape {x.shape}, masks {masks.shape}: expected x (n, M, D) with n={n}, M={m}")
    flat = masks.reshape(draws * n, m)
    out = np.empty(draws * n)
    if fit.name == "logreg" or not hasattr(fit.model, "fuse"):
        for i in range(0, draws * n, chunk):
            rows = np.arange(i, min(i + chunk, draws * n))
            out[rows] = predict(fit, x[rows % n], flat[rows])
        return out.reshape(draws, n)
    # every (stay, mask pattern) once: a stay has at most 2^M patterns, and many draws share one (all of them at p = 0)
    key = (np.arange(draws * n) % n) * (1 << m) + (flat.astype(np.int64) << np.arange(m)).sum(axis=1)
    unique, back = np.unique(key, return_inverse=True)
    stay = unique >> m
    pattern = ((unique[:, None] & (1 << m) - 1) >> np.arange(m)) & 1 == 1
    probs = np.empty(len(unique))
    model = fit.model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad():
        union = torch.as_tensor(masks.any(axis=0), device=dev)
        enc = torch.cat([encode_inputs(model, torch.as_tensor(x[i:i + chunk], device=dev), union[i:i + chunk])
                         for i in range(0, n, chunk)])
        for i in range(0, len(unique), chunk):
            rows = slice(i, i + chunk)
            mk = torch.as_tensor(pattern[rows], device=dev)
            logits = model.fuse(mask_encoded(model, enc[torch.as_tensor(stay[rows], device=dev)], mk), mk)
            probs[rows] = torch.sigmoid(logits).cpu().numpy().astype(np.float64)
    out = probs[back.reshape(-1)]
    return out.reshape(draws, n)


def with_training_missingness(data, rate: float, seed: int):
    """A copy of a :class:`mmlib.train.FusionData` whose *train and validation* stays each lose every present
    modality with probability ``rate`` (one fixed draw: the training-time protocol of arXiv 2605.12031);
    the test stays are unchanged. Content of removed modalities is zeroed, as for recorded missingness."""
    import dataclasses

    rows = np.flatnonzero(data.stays["split"].to_numpy() != "test")
    mask = data.mask.copy()
    mask[rows] = bernoulli_masks(data.mask[rows], rate, 1, seed)[0]
    x = np.where(mask[..., None], data.x, np.float32(0))
    return dataclasses.replace(data, x=x, mask=mask)


def test_availability(data, order) -> np.ndarray:
    """The recorded availability ``(n_test, M)`` of the test stays of ``data`` for the modalities of ``order``
    (in that order): what every mask sampler starts from (chapters 05-06)."""
    return data.mask[data.rows("test")][:, data.columns(list(order))]


def relative_missingness(data, order) -> dict:
    """Each race group's mean share of the cohort's sometimes-missing modalities of ``order`` that are missing
    (chapter 01's availability, which the unequal-access knob drives): chapter 05's default group factors
    for group-dependent missingness (:func:`matched_group_rates`)."""
    avail = data.mask[:, data.columns(list(order))]
    can = ~avail.all(axis=0)  # modalities that are ever missing in this cohort
    share = pd.Series((~avail[:, can]).mean(axis=1)).groupby(data.stays["race"].to_numpy()).mean()
    return share.to_dict()


def check_unmasked(sweep: pd.DataFrame, reference: pd.DataFrame, labels: dict, tolerance: float = 1e-6) -> tuple[int, float]:
    """Check that the ``random`` protocol at rate 0 of a sweep table reproduces the unmasked estimates of
    ``reference`` (chapter 04's summary table; ``labels``: ``{cohort: all-modality label}``) for every
    cohort, model, metric and group. Returns ``(rows compared, largest difference)``; raises RuntimeError
    when a row is missing or differs by more than ``tolerance`` (1e-6: calibration errors are continuous in the
    probabilities, which two forward passes over different batches may round differently in the last float32
    digit; every other metric is a rank or a count and agrees exactly)."""
    zero = sweep[(sweep.protocol == "random") & (sweep.rate == 0.0)]
    keys = ["cohort", "model", "metric", "attribute", "group"]
    ref = reference[reference.modalities.isin(labels.values())][keys + ["mean"]]
    check = zero.merge(ref, on=keys, suffixes=("", "_ref"))
    diff = np.abs(check["mean"] - check["mean_ref"]).to_numpy()
    diff[check["mean"].isna().to_numpy() != check["mean_ref"].isna().to_numpy()] = np.inf  # NaN on one side only
    worst = float(np.nanmax(diff)) if len(check) else np.inf
    if len(check) != len(zero) or worst > tolerance:
        raise RuntimeError(f"p = 0 does not reproduce the unmasked estimates (max difference {worst:.2e} over "
                           f"{len(check)} of {len(zero)} estimates)")
    return len(check), worst


def evaluate_condition(data, fits: list, masks: np.ndarray, groups, *, boot: bool = True,
                       rank_draws: int = 2) -> tuple[pd.DataFrame, dict]:
    """Metrics of the test stays of ``data`` for the fitted models ``fits`` (one per seed, all of one model on
    the same modalities) under the mask draws ``masks`` ``(draws, n_test, M)``: every (seed, draw) prediction
    vector is scored, then :func:`mmlib.metrics.summarise_vectors` gives the mean and sd over them and, with
    ``boot``, the bootstrap CI of the mean on the resamples of ``groups``
    (:class:`mmlib.metrics.EvaluationGroups`; AUROC/AUPRC resampled on the first ``rank_draws`` draws of
    every seed). Returns ``(table, replicates)``."""
    from .metrics import summarise_vectors

    te = data.rows("test")
    x = data.x[te][:, data.columns(fits[0].modalities)]
    probs = np.concatenate([predict_masked(f, x, masks) for f in fits])
    preds = np.concatenate([np.full(masks.shape[:2], f.threshold) for f in fits]) <= probs
    draws = masks.shape[0]
    ranked = [s * draws + d for s in range(len(fits)) for d in range(min(rank_draws, draws))]
    return summarise_vectors(data.y[te], probs, preds.astype(int), groups.attrs, groups.flags,
                             groups.boot if boot else None, rank_vectors=ranked)


class Sweep:
    """The conditions of a missingness experiment, collected in order (chapters 05 and 06).

    :meth:`evaluate` scores one condition (:func:`evaluate_condition`) and labels its rows with the keyword
    ``labels`` (e.g. ``cohort``, ``model``, ``protocol``, ``rate``, ``modality``); :attr:`table` is every row
    so far; :meth:`condition` is one condition's rows and replicates; :meth:`difference` is the paired change of
    a metric between two conditions of one cohort (the same bootstrap resamples), as a
    :class:`mmlib.metrics.Change`.

    Example::

        sweep = Sweep()
        for p in (0.0, 0.3):
            sweep.evaluate(data, fits, bernoulli_masks(present, p, 20, seed=0), groups, cohort="c", model="paper", rate=p)
        sweep.difference(("auroc", "overall", "all"), dict(cohort="c", model="paper", rate=0.0), dict(cohort="c", model="paper", rate=0.3))
    """

    def __init__(self):
        self._rows: list[pd.DataFrame] = []
        self._table: pd.DataFrame | None = None  # the concatenation, kept until a condition is added
        self._by_key: dict[tuple, pd.DataFrame] = {}
        self.replicates: dict[tuple, dict] = {}

    @staticmethod
    def _key(labels: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in labels.items()))

    def evaluate(self, data, fits: list, masks: np.ndarray, groups, *, boot: bool = True, rank_draws: int = 2,
                 **labels) -> pd.DataFrame:
        """Score one condition and keep its rows (labelled) and replicates; returns its rows."""
        t, r = evaluate_condition(data, fits, masks, groups, boot=boot, rank_draws=rank_draws)
        t = t.assign(**labels)
        self._rows.append(t)
        self._table = None
        self._by_key[self._key(labels)] = t
        self.replicates[self._key(labels)] = r
        return t

    def add(self, table: pd.DataFrame, replicates: dict | None = None, **labels) -> None:
        """Keep rows scored elsewhere (e.g. chapter 07's clean predictions) under ``labels``."""
        self._rows.append(table.assign(**labels))
        self._table = None
        self._by_key[self._key(labels)] = self._rows[-1]
        self.replicates[self._key(labels)] = replicates or {}

    @property
    def table(self) -> pd.DataFrame:
        """Every condition's rows, in the order they were evaluated."""
        if self._table is None:
            self._table = pd.concat(self._rows, ignore_index=True) if self._rows else pd.DataFrame()
        return self._table

    def condition(self, **labels) -> tuple[pd.DataFrame, dict]:
        """The rows and the replicates of the condition with exactly these labels (chapters 05-06 read them
        through :class:`mmlib.findings.Run`)."""
        key = self._key(labels)
        if key not in self._by_key:
            raise KeyError(f"no condition labelled {labels}; the sweep has {len(self._by_key)} conditions")
        return self._by_key[key], self.replicates[key]

    def has(self, **labels) -> bool:
        """Whether a condition with exactly these labels was evaluated."""
        return self._key(labels) in self.replicates

    def difference(self, key: tuple[str, str, str], a: dict, b: dict):
        """Paired change of metric ``key`` (metric, attribute, group) from condition ``a`` to ``b`` (their
        labels): difference of the means, 95% CI of the difference of their resampled means. NaN when either
        condition was not bootstrapped."""
        from .metrics import Change, select

        ra, rb = self.replicates.get(self._key(a), {}), self.replicates.get(self._key(b), {})
        if key not in ra or key not in rb:
            return Change(np.nan, np.nan, np.nan)
        t = self.table
        mean = lambda lab: select(t, *key[:2], group=key[2], **lab)["mean"].iloc[0]  # noqa: E731
        return Change.paired(mean(a), mean(b), ra[key], rb[key])


def curve_area(rates, values) -> float:
    """Area under a degradation curve, normalised by the range of rates (the trapezoid-rule mean of the
    metric over the grid); NaN with fewer than two distinct rates."""
    order = np.argsort(np.asarray(rates, dtype=float))
    r, v = np.asarray(rates, dtype=float)[order], np.asarray(values, dtype=float)[order]
    return float(np.trapezoid(v, r) / (r[-1] - r[0])) if len(r) > 1 and r[-1] > r[0] else np.nan
