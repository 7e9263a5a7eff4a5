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

Chapter 05's four protocols, each filling a :class:`Sweep` with the loops the chapter would otherwise write
(:func:`random_protocol`, :func:`one_modality_protocol`, :func:`retrain_with_missingness` and
:func:`train_test_protocol`, :func:`group_protocol`), with fixed mask seeds per protocol and rate.

A modality that is already missing stays missing; the rates apply to what is present.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import display_name


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


class GroupRatesAboveOne(ValueError):
    """:func:`matched_group_rates` cannot reach ``mean_rate``: a group would need a rate above 1. ``rates`` holds
    the rates it would need (``{group: rate}``), :meth:`sentence` says so in words (chapter 05's skipped rates)."""

    def __init__(self, mean_rate: float, rates: dict):
        self.mean_rate, self.rates = float(mean_rate), {str(g): float(r) for g, r in rates.items()}
        super().__init__(f"mean_rate {mean_rate:g}: the group rates would exceed 1: {self.sentence()}")

    def sentence(self) -> str:
        """E.g. ``non-White would need a rate of 1.019 (White 0.818, Unknown 0.811)``: the groups above 1 first."""
        over = sorted(((g, r) for g, r in self.rates.items() if r > 1), key=lambda kv: -kv[1])
        rest = [f"{g} {r:.3f}" for g, r in self.rates.items() if r <= 1]
        said = " and ".join([f"{over[0][0]} would need a rate of {over[0][1]:.3f}"]
                            + [f"{g} {r:.3f}" for g, r in over[1:]])
        return said + (f" ({', '.join(rest)})" if rest else "")


def matched_group_rates(groups: np.ndarray, reference: dict, mean_rate: float) -> dict:
    """Per-group rates proportional to ``reference`` (e.g. each group's observed share of a modality
    missing), scaled so that their sample-weighted mean over ``groups`` equals ``mean_rate``; capped at 1
    (raises :class:`GroupRatesAboveOne` if the cap makes the target unreachable)."""
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
        raise GroupRatesAboveOne(mean_rate, out.to_dict())
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
    if not x.flags.writeable:  # e.g. joblib's read-only memory map in a worker: torch would warn about sharing it
        x = np.array(x)
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
    x, y = _test_inputs(data, fits)
    return _score(x, y, fits, masks, groups, boot, rank_draws)


def _test_inputs(data, fits: list) -> tuple[np.ndarray, np.ndarray]:
    """The test stays' embeddings of the modalities ``fits`` were trained on, ``(n_test, M, D)``, and their labels."""
    te = data.rows("test")
    return data.x[te][:, data.columns(fits[0].modalities)], data.y[te]


def _score(x: np.ndarray, y: np.ndarray, fits: list, masks: np.ndarray, groups, boot: bool,
           rank_draws: int) -> tuple[pd.DataFrame, dict]:
    """:func:`evaluate_condition` on the test inputs ``x``, ``y`` (:func:`_test_inputs`)."""
    from .metrics import summarise_vectors

    probs = np.concatenate([predict_masked(f, x, masks) for f in fits])
    preds = np.concatenate([np.full(masks.shape[:2], f.threshold) for f in fits]) <= probs
    draws = masks.shape[0]
    ranked = [s * draws + d for s in range(len(fits)) for d in range(min(rank_draws, draws))]
    return summarise_vectors(y, probs, preds.astype(int), groups.attrs, groups.flags,
                             groups.boot if boot else None, rank_vectors=ranked)


def _score_many(x: np.ndarray, y: np.ndarray, fits: list, conditions: list, groups, rank_draws: int) -> list:
    """:func:`_score` of one model's ``fits`` under each ``(masks, boot)`` of ``conditions``, in order, on one torch
    thread (:func:`mmlib.train.single_thread`: the same numbers in the chapter's process and in a worker)."""
    from .train import single_thread

    with single_thread():
        return [_score(x, y, fits, masks, groups, boot, rank_draws) for masks, boot in conditions]


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


# ------------------------------------------------------------------------------------------ chapter 05's protocols
@dataclass(frozen=True)
class ProtocolRun:
    """What a protocol of chapter 05 did besides filling its :class:`Sweep`: the conditions it evaluated, the
    prediction vectors' length summed over them (stays x draws x seeds), its wall time, and the conditions it
    skipped (a sentence each: group-dependent rates that cannot reach the target)."""

    conditions: int
    predictions: int
    seconds: float
    skipped: list = field(default_factory=list)

    def note(self, what: str) -> str:
        """The sentence chapter 05 prints after ``what`` (a protocol's name): predictions, time and rate."""
        return (f"{what}: {self.predictions:,} predictions and their metrics in {self.seconds:.1f} s "
                f"({self.predictions / self.seconds:,.0f} predictions/s)")


@dataclass(frozen=True)
class _Condition:
    """One condition of a protocol: every model of ``fits`` (``{model: fitted models, one per seed}``) of cohort
    ``cohort`` scored under ``masks``, labelled ``cohort, model`` then ``labels``; bootstrapped when ``boot``."""

    cohort: str
    fits: dict
    masks: np.ndarray
    labels: dict
    boot: bool = True


def _evaluate_conditions(sweep: Sweep, data: dict, groups: dict, conditions: list, rank_draws: int,
                         n_jobs: int) -> tuple[int, int]:
    """Score every condition of ``conditions`` (:class:`_Condition`) and keep them in ``sweep`` in order (each
    condition's models in the order of its ``fits``: the sweep table's row order). The scoring runs as one task per
    cohort and model (its test inputs and fits sent once, with every mask of its conditions), in ``n_jobs`` worker
    processes (joblib; 1: in this process); the numbers do not depend on ``n_jobs`` (:func:`_score_many`).
    Returns (conditions, predictions)."""
    tasks: dict = {}
    for i, c in enumerate(conditions):
        for m, fl in c.fits.items():
            tasks.setdefault((c.cohort, m, id(fl)), []).append(i)

    def args(key, idx):
        n, m, _ = key
        fl = conditions[idx[0]].fits[m]
        x, y = _test_inputs(data[n], fl)
        return x, y, fl, [(conditions[i].masks, conditions[i].boot) for i in idx], groups[n], rank_draws

    if n_jobs == 1 or len(tasks) < 2:
        results = [_score_many(*args(k, idx)) for k, idx in tasks.items()]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(delayed(_score_many)(*args(k, idx)) for k, idx in tasks.items())
    scored = {(i, k[1]): r for (k, idx), res in zip(tasks.items(), results) for i, r in zip(idx, res)}
    predictions = 0
    for i, c in enumerate(conditions):
        for m, fl in c.fits.items():
            sweep.add(*scored[(i, m)], cohort=c.cohort, model=m, **c.labels)
            predictions += c.masks.shape[0] * c.masks.shape[1] * len(fl)
    return sum(len(c.fits) for c in conditions), predictions


def random_protocol(sweep: Sweep, data: dict, fits: dict, present: dict, groups: dict, rates, draws: int, *,
                    mask_seed: int, rank_draws: int = 2, n_jobs: int = 1) -> ProtocolRun:
    """Random missingness (the paper's Algorithm 1), evaluated into ``sweep``: for every cohort ``n`` of ``data``
    (``{cohort: FusionData}``) and every rate ``rates[i]``, ``draws`` masks of the test availability ``present[n]``
    (:func:`bernoulli_masks`, seed ``mask_seed * 1000 + i``), and every model of ``fits[n]`` (``{model: fitted
    models, one per seed}``) scored under them on ``groups[n]`` (:meth:`Sweep.evaluate`), labelled
    ``cohort, model, protocol="random", rate, modality="all"``; scored in ``n_jobs`` processes
    (:func:`_evaluate_conditions`: the same numbers whatever ``n_jobs``). Used by chapter 05."""
    t0 = time.perf_counter()
    todo = [_Condition(n, fits[n], bernoulli_masks(present[n], p, draws, seed=mask_seed * 1000 + i),
                       dict(protocol="random", rate=p, modality="all"))
            for n in data for i, p in enumerate(rates)]
    conditions, predictions = _evaluate_conditions(sweep, data, groups, todo, rank_draws, n_jobs)
    return ProtocolRun(conditions, predictions, time.perf_counter() - t0)


def one_modality_protocol(sweep: Sweep, data: dict, fits: dict, present: dict, groups: dict, orders: dict, rates,
                          draws: int, *, mask_seed: int, rank_draws: int = 2, n_jobs: int = 1) -> ProtocolRun:
    """One modality missing at a time (the inference protocol of arXiv 2605.12031), evaluated into ``sweep``: for
    every cohort ``n``, every modality ``orders[n][j]`` and every rate ``rates[i]``, ``draws`` masks in which only
    that modality goes missing, at that rate (seed ``mask_seed * 1000 + 100 * (j + 1) + i``), and every model of
    ``fits[n]`` scored under them (arguments as :func:`random_protocol`), labelled ``cohort, model,
    protocol="one modality", rate, modality``. Used by chapter 05."""
    t0 = time.perf_counter()
    todo = [_Condition(n, fits[n], bernoulli_masks(present[n], np.where(np.arange(len(orders[n])) == j, p, 0.0),
                                                   draws, seed=mask_seed * 1000 + 100 * (j + 1) + i),
                       dict(protocol="one modality", rate=p, modality=mod))
            for n in data for j, mod in enumerate(orders[n]) for i, p in enumerate(rates)]
    conditions, predictions = _evaluate_conditions(sweep, data, groups, todo, rank_draws, n_jobs)
    return ProtocolRun(conditions, predictions, time.perf_counter() - t0)


def one_modality_table(table: pd.DataFrame, cohort: str, order) -> pd.DataFrame:
    """The one-modality rows of ``cohort`` in a sweep table, with the random protocol's rate-0 rows (nothing
    missing) added once per modality of ``order`` as that modality's rate 0: what chapter 05's one-modality
    curves plot."""
    one = table[(table.protocol == "one modality") & (table.cohort == cohort)]
    base = table[(table.protocol == "random") & (table.rate == 0.0) & (table.cohort == cohort)]
    return pd.concat([one] + [base.assign(modality=mod) for mod in order])


def retrain_with_missingness(data: dict, orders: dict, models, train_rates, seeds, cfg, *, mask_seed: int,
                             reuse: dict | None = None, n_jobs: int = 1) -> tuple[dict, float]:
    """The models of the train x test protocol: for every cohort ``n`` and training rate ``train_rates[i]``, each of
    ``models`` retrained (:func:`mmlib.train.run_grid`, ``seeds``, ``cfg``) on all modalities of ``orders[n]`` on a
    copy of ``data[n]`` whose train and validation stays lose modalities at that rate
    (:func:`with_training_missingness`, seed ``mask_seed * 1000 + 500 + i``). At rate 0 the fits of ``reuse``
    (``{cohort: {model: fits}}``, e.g. chapter 04's when trained the same way) are taken instead when given.
    Returns ``({(cohort, train rate): {model: fits, one per seed}}, seconds)``. Used by chapter 05."""
    from .train import run_grid

    t0, out = time.perf_counter(), {}
    for n, d in data.items():
        for i, pt in enumerate(train_rates):
            if pt == 0.0 and reuse is not None:
                out[(n, pt)] = {m: reuse[n][m] for m in models}
                continue
            g = run_grid(with_training_missingness(d, pt, seed=mask_seed * 1000 + 500 + i),
                         [(m, list(orders[n])) for m in models], seeds, cfg, n_jobs=n_jobs,
                         keep={(m, orders[n].full) for m in models}, progress=False)
            out[(n, pt)] = {m: g.fits_of(m, orders[n].full, seeds) for m in models}
    return out, time.perf_counter() - t0


def train_test_protocol(sweep: Sweep, data: dict, fits: dict, present: dict, groups: dict, train_rates, test_rates,
                        draws: int, *, mask_seed: int, rank_draws: int = 2, n_jobs: int = 1) -> ProtocolRun:
    """The train x test protocol, evaluated into ``sweep`` without bootstrap: for every cohort ``n``, training rate
    ``pt`` and test rate ``test_rates[i]``, ``draws`` random masks of ``present[n]`` (seed
    ``mask_seed * 1000 + 900 + i``: the same masks for every training rate), and every model of ``fits[(n, pt)]``
    (:func:`retrain_with_missingness`) scored under them, labelled ``cohort, model, protocol="train x test", rate,
    modality="all", train_rate``. Used by chapter 05."""
    t0 = time.perf_counter()
    masks = {(n, i): bernoulli_masks(present[n], pe, draws, seed=mask_seed * 1000 + 900 + i)
             for n in data for i, pe in enumerate(test_rates)}
    todo = [_Condition(n, fits[(n, pt)], masks[(n, i)],
                       dict(protocol="train x test", rate=pe, modality="all", train_rate=pt), boot=False)
            for n in data for pt in train_rates for i, pe in enumerate(test_rates)]
    conditions, predictions = _evaluate_conditions(sweep, data, groups, todo, rank_draws, n_jobs)
    return ProtocolRun(conditions, predictions, time.perf_counter() - t0)


def group_factors(data: dict, orders: dict, given=None) -> dict:
    """Each cohort's relative missingness by race group for the group-dependent protocol: ``given`` (a mapping
    group -> factor, the same for every cohort; chapter 05's ``group_missing``) when set, else
    :func:`relative_missingness` of the cohort. A mapping must give every race group of every cohort a factor
    (``Unknown`` included where a cohort has it) and name no group that none has: a ValueError names the parameter,
    the groups and an example. Used by chapter 05."""
    if given is not None:
        given = {str(k): float(v) for k, v in dict(given).items()}
        present = {n: sorted(map(str, pd.unique(d.stays["race"]))) for n, d in data.items()}
        for n, groups in present.items():
            lacking = [g for g in groups if g not in given]
            if lacking:
                example = "{" + ", ".join(f"{g}: {given.get(g, 1):g}" for g in groups) + "}"
                raise ValueError(f"parameter group_missing: no factor for race group(s) {', '.join(lacking)} of "
                                 f"{display_name(n)}, whose groups are {', '.join(groups)}; give every group a factor, "
                                 f"e.g. -p group_missing '{example}'")
        unknown = [g for g in given if g != "Unknown" and not any(g in groups for groups in present.values())]
        if unknown:
            raise ValueError(f"parameter group_missing: {', '.join(unknown)} is not a race group of "
                             + "; ".join(f"{display_name(n)} ({', '.join(gs)})" for n, gs in present.items()))
        return {n: dict(given) for n in data}
    return {n: relative_missingness(d, orders[n]) for n, d in data.items()}


def group_protocol(sweep: Sweep, data: dict, fits: dict, present: dict, groups: dict, factors: dict, rates,
                   draws: int, *, mask_seed: int, rank_draws: int = 2, name=str, n_jobs: int = 1) -> ProtocolRun:
    """Group-dependent missingness, evaluated into ``sweep``: for every cohort ``n`` and rate ``rates[i]``, per race
    group rates proportional to ``factors[n]`` with mean ``rates[i]`` over the test stays (:func:`matched_group_rates`
    on ``groups[n].attrs["race"]``), ``draws`` masks of ``present[n]`` (:func:`group_masks`, seed
    ``mask_seed * 1000 + 700 + i``) and every model of ``fits[n]`` scored under them, labelled ``cohort, model,
    protocol="group-dependent", rate, modality="all"``. A rate whose group rates would exceed 1 is skipped, with a
    sentence in :attr:`ProtocolRun.skipped` naming the cohort as ``name(cohort)``. Used by chapter 05."""
    t0, todo, skipped = time.perf_counter(), [], []
    for n in data:
        race_te = groups[n].attrs["race"]
        for i, p in enumerate(rates):
            try:
                group_rates = matched_group_rates(race_te, factors[n], p)
            except GroupRatesAboveOne as err:
                skipped.append(f"{name(n)} at p = {p:g}: {err.sentence()}")
                continue
            todo.append(_Condition(n, fits[n], group_masks(present[n], race_te, group_rates, draws,
                                                           seed=mask_seed * 1000 + 700 + i),
                                   dict(protocol="group-dependent", rate=p, modality="all")))
    conditions, predictions = _evaluate_conditions(sweep, data, groups, todo, rank_draws, n_jobs)
    return ProtocolRun(conditions, predictions, time.perf_counter() - t0, skipped)


def curve_area(rates, values) -> float:
    """Area under a degradation curve, normalised by the range of rates (the trapezoid-rule mean of the
    metric over the grid); NaN with fewer than two distinct rates."""
    order = np.argsort(np.asarray(rates, dtype=float))
    r, v = np.asarray(rates, dtype=float)[order], np.asarray(values, dtype=float)[order]
    return float(np.trapezoid(v, r) / (r[-1] - r[0])) if len(r) > 1 and r[-1] > r[0] else np.nan
