"""Training and prediction for the fusion models of :mod:`mmlib.models`.

- :func:`load_fusion_data` joins chapter 01's cohort and chapter 02's embeddings into a :class:`FusionData`:
  one ``(stays, modalities, 384)`` array, its availability mask, the target and the sensitive attributes,
  on the cohort's fixed train/val/test split. Stays whose target is undefined are excluded and counted.
- :func:`fit_network` trains one network for one modality set and one seed: AdamW on class-weighted
  binary cross-entropy (``pos_weight`` = negatives/positives in train), mini-batches, early stopping on
  the validation loss (the best epoch's weights are kept), modality dropout for the resilient model.
  Seeded and deterministic on the CPU; runs on the GPU when one is present and ``device`` allows it.
- :func:`fit_logreg` fits the scikit-learn baseline (deterministic: one fit serves every seed).
- :func:`choose_threshold` applies the threshold policy: a fixed number, or chosen on validation.
- :func:`run_grid` trains a list of (model, modality set) runs over several seeds with a progress bar and
  returns the predictions table every metric in the book is computed from.
"""
from __future__ import annotations

import copy
import io
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .models import ALL_MODELS, NEURAL_MODELS, build_model, logistic_regression
from .schema import TRUTH_OF_TARGET, target_label

THRESHOLD_POLICIES = ("val_f1", "val_youden")


# ------------------------------------------------------------------------------------------- data
@dataclass
class FusionData:
    """One cohort ready for the models.

    ``x`` is ``(n, M, D)`` float32 (zero rows where a modality is missing), ``mask`` ``(n, M)`` bool,
    ``y`` ``(n,)`` float32 0/1, ``stays`` a frame aligned with them (index ``stay_id``; columns ``split``,
    ``race`` (the chosen race grouping), ``gender``, ``race_gender``). ``excluded`` counts the stays left out
    and why. ``truth``: for a synthetic cohort whose target has a latent truth
    (:data:`mmlib.schema.TRUTH_OF_TARGET`), a frame aligned with ``stays`` with ``label`` (the label without
    label bias) and ``need`` (the true need, log-odds); ``None`` otherwise.
    """

    cohort: str
    target: str
    modalities: list[str]
    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    stays: pd.DataFrame
    excluded: pd.DataFrame
    race_grouping: str = "race_binary"
    origin: str = "synthetic"
    truth: pd.DataFrame | None = None

    def columns(self, modalities) -> list[int]:
        """Positions of ``modalities`` in ``x`` (raises naming the unknown ones)."""
        bad = [m for m in modalities if m not in self.modalities]
        if bad:
            raise ValueError(f"modalities {bad} are not in cohort {self.cohort}; expected some of {self.modalities}")
        if len(set(modalities)) != len(modalities) or not modalities:
            raise ValueError(f"a modality set must be non-empty without repeats, got {list(modalities)}")
        return [self.modalities.index(m) for m in modalities]

    def rows(self, split: str) -> np.ndarray:
        """Row positions of one split."""
        return np.flatnonzero(self.stays["split"].to_numpy() == split)


def load_fusion_data(cohort_dir: Path | str, embeddings: Path | str, target: str | None = None,
                     race_grouping: str = "race_binary") -> FusionData:
    """Join a saved cohort (chapter 01) and its embeddings file (chapter 02).

    ``target`` defaults to the cohort's primary target. Stays whose target is undefined (NaN) are
    excluded; the count is in ``FusionData.excluded``.
    """
    from .data.cohort import Cohort

    cohort = Cohort.load(cohort_dir)
    target = target or cohort.primary_target
    if target not in cohort.stays.columns:
        raise ValueError(f"target {target!r} is not a column of cohort {cohort.name}; expected one of "
                         f"{cohort.targets}")
    if race_grouping not in cohort.stays.columns:
        raise ValueError(f"race_grouping {race_grouping!r} is not a column of cohort {cohort.name}; expected "
                         "race_binary or race5")
    path = Path(embeddings)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no embeddings file; run chapter 02 first (python -m mmlib run 02)")
    with np.load(path, allow_pickle=False) as emb:
        stay_id = emb["stay_id"]
        mods = [m for m in cohort.modalities if m in emb.files]
        missing = [m for m in cohort.modalities if m not in emb.files]
        if missing:
            raise ValueError(f"{path}: no embedding matrix for modalities {missing} of cohort {cohort.name}")
        x = np.stack([emb[m] for m in mods], axis=1).astype(np.float32)
        mask = np.stack([emb[f"mask_{m}"] for m in mods], axis=1).astype(bool)
    pos = pd.Series(np.arange(len(stay_id)), index=stay_id)
    stays = cohort.stays
    absent = stays.index.difference(pos.index)
    if len(absent):
        raise ValueError(f"{path}: {len(absent)} stays of cohort {cohort.name} have no embedding row "
                         f"(e.g. stay_id {absent[0]}); re-run chapter 02 on this cohort")
    y = stays[target].to_numpy(dtype=float)
    keep = ~np.isnan(y)
    excluded = pd.DataFrame([{"reason": f"target ({target_label(target)}) undefined", "stays": int((~keep).sum())}])
    stays = stays[keep]
    idx = pos.loc[stays.index].to_numpy()
    frame = pd.DataFrame({"split": stays["split"].astype(str), "race": stays[race_grouping].astype(str),
                          "gender": stays["gender"].astype(str)}, index=stays.index)
    frame["race_gender"] = frame["race"] + " " + frame["gender"]
    truth = None
    label_col, need_col = TRUTH_OF_TARGET.get(target, (None, None))
    if cohort.truth is not None and {label_col, need_col} <= set(cohort.truth.columns):
        tr = cohort.truth.reindex(stays.index)
        truth = pd.DataFrame({"label": tr[label_col].astype(float), "need": tr[need_col].astype(float)},
                             index=stays.index)
    return FusionData(cohort=cohort.name, target=target, modalities=mods, x=x[idx], mask=mask[idx],
                      y=y[keep].astype(np.float32), stays=frame, excluded=excluded, race_grouping=race_grouping,
                      origin=cohort.origin, truth=truth)


def against_truth(predictions: pd.DataFrame, data: dict) -> pd.DataFrame:
    """The rows of a predictions table whose cohort has a latent truth (``data``: ``{cohort: FusionData}``),
    with ``label`` replaced by the truth's label (the outcome without label bias) and a ``need`` column (the
    true need), so every metric can be computed against the truth as well as the recorded label (chapter 04)."""
    parts = []
    for name, d in data.items():
        if d.truth is None:
            continue
        sub = predictions[predictions["cohort"] == name]
        tr = d.truth.reindex(sub["stay_id"].to_numpy())
        parts.append(sub.assign(label=tr["label"].to_numpy().astype(np.int8), need=tr["need"].to_numpy()))
    return pd.concat(parts, ignore_index=True) if parts else predictions.iloc[:0]


# ---------------------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    """Hyper-parameters shared by every network (the paper's are not public; these are ours, exposed as
    chapter parameters)."""

    width: int = 32               # common token width
    heads: int = 2                # attention heads
    dropout: float = 0.1          # dropout in the classifier heads
    lr: float = 1e-3              # AdamW learning rate
    weight_decay: float = 1e-2    # AdamW weight decay
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 5             # epochs without a better validation loss before stopping
    modality_dropout: float = 0.3  # resilient model: chance of dropping each present modality in training
    threshold: float | str = 0.5  # 0-1, or "val_f1" / "val_youden" (chosen on the validation split)
    device: str | None = None     # None or "auto": the GPU when present, else the CPU; or "cpu" / "cuda"

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1) \
                and self.threshold not in THRESHOLD_POLICIES:
            raise ValueError(f"parameter threshold must be a number in (0, 1) or one of {THRESHOLD_POLICIES}, "
                             f"got {self.threshold!r}")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError(f"parameter modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.device not in (None, "cpu", "cuda", "auto"):
            raise ValueError(f"parameter device must be None, cpu, cuda or auto, got {self.device!r}")

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        """Build from a chapter's parameters (``globals()``): the fields by name, ``train_batch_size`` for
        ``batch_size``; other keys are ignored."""
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in params.items() if k in names and k != "batch_size"}
        if "train_batch_size" in params:
            kw["batch_size"] = params["train_batch_size"]
        return cls(**kw)

    def torch_device(self) -> torch.device:
        if self.device in (None, "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("parameter device is 'cuda' but torch sees no GPU; use device 'cpu' or 'auto'")
        return torch.device(self.device)


@dataclass
class FittedModel:
    """A trained model: the network (or scikit-learn pipeline), its training log and its threshold."""

    model: object
    name: str
    modalities: list[str]
    seed: int
    threshold: float
    best_epoch: int
    epochs: int
    val_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)


def drop_modalities(mask: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Modality dropout: each present modality is removed with probability ``rate``, but a sample never
    loses all of its present modalities (if it would, one of them, chosen at random, is kept)."""
    if rate <= 0:
        return mask
    keep = mask & (torch.rand(mask.shape, generator=generator, device=mask.device) >= rate)
    emptied = mask.any(dim=1) & ~keep.any(dim=1)
    if emptied.any():
        score = torch.rand(mask.shape, generator=generator, device=mask.device) * mask
        rescue = torch.zeros_like(mask).scatter_(1, score.argmax(dim=1, keepdim=True), True)
        keep = keep | (rescue & emptied[:, None])
    return keep


def predict_logits(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Logits of ``model`` (put in eval mode) for tensors ``x`` ``(n, M, D)`` and ``mask`` ``(n, M)``, in
    batches of ``batch``, without gradients (training's validation loss, chapter 07's fine-tuning)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch], mask[i:i + batch]) for i in range(0, len(x), batch)])


def predict(fit: FittedModel, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class for ``x`` ``(n, M, D)`` with availability ``mask`` ``(n, M)``, the
    modalities in ``fit.modalities`` order."""
    if fit.name == "logreg":
        return fit.model.predict_proba(_flat(x, mask))[:, 1]
    dev = next(fit.model.parameters()).device
    xt = torch.as_tensor(x, device=dev)
    mt = torch.as_tensor(mask, device=dev)
    return torch.sigmoid(predict_logits(fit.model, xt, mt)).cpu().numpy().astype(np.float64)


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, policy: float | str) -> float:
    """The decision threshold: ``policy`` itself if it is a number, else the validation threshold that
    maximises F1 (``val_f1``) or Youden's J = TPR - FPR (``val_youden``)."""
    if not isinstance(policy, str):
        return float(policy)
    from sklearn.metrics import precision_recall_curve, roc_curve

    if len(np.unique(y_val)) < 2:
        return 0.5
    if policy == "val_f1":
        prec, rec, thr = precision_recall_curve(y_val, p_val)
        f1 = 2 * prec[:-1] * rec[:-1] / np.clip(prec[:-1] + rec[:-1], 1e-12, None)
        return float(thr[int(np.argmax(f1))])
    if policy == "val_youden":
        fpr, tpr, thr = roc_curve(y_val, p_val)
        return float(np.clip(thr[int(np.argmax(tpr - fpr))], 0, 1))
    raise ValueError(f"threshold policy {policy!r}: expected a number or one of {THRESHOLD_POLICIES}")


def fit_network(data: FusionData, name: str, modalities, seed: int, cfg: TrainConfig,
                modality_dropout: float | None = None) -> FittedModel:
    """Train network ``name`` on ``modalities`` of ``data`` with ``seed`` (see module docstring).

    ``modality_dropout`` defaults to ``cfg.modality_dropout`` for the resilient model and 0 otherwise.
    The global torch RNG state is restored afterwards.
    """
    cols = data.columns(modalities)
    dev = cfg.torch_device()
    if modality_dropout is None:
        modality_dropout = cfg.modality_dropout if name == "resilient" else 0.0
    tr, va = data.rows("train"), data.rows("val")
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"cohort {data.cohort}: the train and val splits must be non-empty "
                         f"(train {len(tr)}, val {len(va)})")
    t0 = time.perf_counter()
    model, best_loss, best_epoch, history = _train(data, name, cols, seed, cfg, dev, tr, va, modality_dropout)
    fit = FittedModel(model, name, list(modalities), seed, 0.5, best_epoch, len(history), best_loss,
              time.perf_counter() - t0, history)
    fit.threshold = choose_threshold(data.y[va], predict(fit, data.x[va][:, cols], data.mask[va][:, cols]),
                                     cfg.threshold)
    return fit


def training_tensors(data: FusionData, cols: list[int], dev: torch.device):
    """``(x, mask, y, loss)`` on ``dev``: the modalities ``cols`` of every stay, and the class-weighted
    binary cross-entropy of training (shared by :func:`fit_network` and chapter 07's fine-tuning) (positives weighted by negatives / positives in the train split)."""
    tr = data.rows("train")
    n_pos = float(data.y[tr].sum())
    pos_weight = torch.tensor((len(tr) - n_pos) / max(n_pos, 1.0), device=dev)
    return (torch.as_tensor(data.x[:, cols], device=dev), torch.as_tensor(data.mask[:, cols], device=dev),
            torch.as_tensor(data.y, device=dev), torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight))


@contextmanager
def single_thread():
    """Run a block on one torch CPU thread (the caller's thread count restored afterwards): its numbers are then
    the same in a chapter's process and in a worker, whatever ``n_jobs``. Used by :func:`seeded_single_thread` and
    chapter 05's sweeps (:mod:`mmlib.missing`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def seeded_single_thread(seed: int, dev: torch.device):
    """Run a block on one CPU thread (:func:`single_thread`) with torch seeded by ``seed`` (the caller's RNG state
    is restored afterwards); yields a generator seeded the same way, for shuffling and masks. One thread makes the
    numbers independent of how many fits run side by side."""
    with single_thread(), torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        yield torch.Generator(device=dev).manual_seed(seed)


def adamw(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The optimiser of every network: AdamW with the configuration's learning rate and weight decay, in PyTorch's
    fused implementation (one kernel per step for all parameters; on the CPU a step of these small networks takes a
    third of the time of the ``foreach`` one: ~150 against ~450 us). Used by :func:`fit_network` and chapter 07's
    fine-tuning (:mod:`mmlib.interference`)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def _train(data, name, cols, seed, cfg, dev, tr, va, modality_dropout):
    """The training loop of :func:`fit_network`; returns (model, best val loss, best epoch, history)."""
    x, m, y, loss_fn = training_tensors(data, cols, dev)
    with seeded_single_thread(seed, dev) as gen:
        model = build_model(name, len(cols), data.x.shape[2], width=cfg.width, heads=cfg.heads,
                            dropout=cfg.dropout).to(dev)
        opt = adamw(model, cfg)
        tr_t = torch.as_tensor(tr, device=dev)
        best, best_loss, best_epoch, history = None, float("inf"), 0, []
        x_va, m_va, y_va = x[va], m[va], y[va]  # gathered once, not every epoch
        for epoch in range(1, cfg.max_epochs + 1):
            model.train()
            order = tr_t[torch.randperm(len(tr_t), generator=gen, device=dev)]
            total = 0.0
            for i in range(0, len(order), cfg.batch_size):
                b = order[i:i + cfg.batch_size]
                # index_select: the rows of a mini-batch copied 4x faster than by x[b] (the same values)
                mb = drop_modalities(m.index_select(0, b), modality_dropout, gen)
                loss = loss_fn(model(x.index_select(0, b), mb), y.index_select(0, b))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            val_loss = float(loss_fn(predict_logits(model, x_va, m_va), y_va))
            history.append({"epoch": epoch, "train_loss": total / len(tr), "val_loss": val_loss})
            if val_loss < best_loss - 1e-6:
                best, best_loss, best_epoch = copy.deepcopy(model.state_dict()), val_loss, epoch
            elif epoch - best_epoch >= cfg.patience:
                break
        model.load_state_dict(best)
    model.eval()
    return model, best_loss, best_epoch, history


def calibrate_modalities(fit: FittedModel, data: FusionData, threshold: float | str = 0.5) -> FittedModel:
    """Per-modality logit calibration on the validation split for a ``linear`` fit: a logistic regression
    (class-balanced, as the training loss) of the outcome on the per-modality contributions ``c_m`` gives
    one scale per modality and a bias (:class:`mmlib.models.CalibratedDecision`). Returns a new fit named
    ``linear+calibrated`` with its threshold chosen by ``threshold``."""
    from sklearn.linear_model import LogisticRegression

    from .models import CalibratedDecision, contributions

    if fit.name != "linear":
        raise ValueError(f"calibrate_modalities needs a 'linear' fit (one linear decision layer), got {fit.name!r}")
    cols = data.columns(fit.modalities)
    va = data.rows("val")
    c, _ = contributions(fit.model, torch.as_tensor(data.x[va][:, cols]), torch.as_tensor(data.mask[va][:, cols]))
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(c.numpy(), data.y[va])
    model = CalibratedDecision(fit.model, torch.as_tensor(lr.coef_[0]), float(lr.intercept_[0])).eval()
    out = FittedModel(model, "linear+calibrated", list(fit.modalities), fit.seed, 0.5, fit.best_epoch, fit.epochs,
              fit.val_loss, fit.seconds)
    out.threshold = choose_threshold(data.y[va], predict(out, data.x[va][:, cols], data.mask[va][:, cols]), threshold)
    return out


def _flat(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Concatenated, zero-filled embeddings ``(n, M*D)``: the logistic regression's input."""
    return (x * mask[..., None]).reshape(len(x), -1)


def fit_logreg(data: FusionData, modalities, cfg: TrainConfig, C: float = 0.1) -> FittedModel:
    """FittedModel the scikit-learn baseline on the train split (deterministic; seed 0 stands for every seed)."""
    cols = data.columns(modalities)
    tr, va = data.rows("train"), data.rows("val")
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    with threadpool_limits(1):  # one BLAS thread: the same numbers serially and in parallel workers
        model = logistic_regression(C=C).fit(_flat(data.x[tr][:, cols], data.mask[tr][:, cols]), data.y[tr])
    fit = FittedModel(model, "logreg", list(modalities), 0, 0.5, 0, 0, float("nan"), time.perf_counter() - t0)
    fit.threshold = choose_threshold(data.y[va], predict(fit, data.x[va][:, cols], data.mask[va][:, cols]),
                                     cfg.threshold)
    return fit


def fit_model(data: FusionData, name: str, modalities, seed: int, cfg: TrainConfig) -> FittedModel:
    """:func:`fit_network` for the networks, :func:`fit_logreg` for ``logreg``."""
    if name == "logreg":
        return fit_logreg(data, modalities, cfg)
    if name not in NEURAL_MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(ALL_MODELS)}")
    return fit_network(data, name, modalities, seed, cfg)


# ------------------------------------------------------------------------------------ experiments
def modality_label(modalities) -> str:
    """The canonical name of a modality set in tables: ``arrival+vitals+cxr`` (training order kept)."""
    return "+".join(modalities)


class ModalityOrder(tuple):
    """An order in which modalities are added (chapters 04-07): ``ModalityOrder(["arrival", "vitals", "ecg"])``.

    - ``.full``: the label of all of them (``arrival+vitals+ecg``);
    - ``.prefixes()``: the labels of its prefixes (``[arrival, arrival+vitals, arrival+vitals+ecg]``);
    - ``.canonical(label)``: a modality-set label rewritten in this order, so every permutation of a set
      names the same run;
    - ``.subsets()``: the labels of every non-empty subset (size, then this order);
    - ``.all_orders()``: every permutation, each as the canonical labels of its prefixes.
    """

    def __new__(cls, modalities):
        mods = tuple(modalities)
        if not mods or len(set(mods)) != len(mods):
            raise ValueError(f"a modality order must name each modality once, got {list(mods)}")
        return super().__new__(cls, mods)

    @property
    def full(self) -> str:
        return modality_label(self)

    def prefixes(self) -> list[str]:
        return [modality_label(self[:k]) for k in range(1, len(self) + 1)]

    def canonical(self, label: str) -> str:
        parts = set(label.split("+"))
        return modality_label(m for m in self if m in parts)

    def subsets(self) -> list[str]:
        import itertools

        return [modality_label(c) for k in range(1, len(self) + 1) for c in itertools.combinations(self, k)]

    def all_orders(self) -> list[list[str]]:
        import itertools

        return [[self.canonical(modality_label(p[:k])) for k in range(1, len(p) + 1)]
                for p in itertools.permutations(self)]


def prediction_frame(data: FusionData, fit: FittedModel, splits=("val", "test")) -> pd.DataFrame:
    """One row per stay of ``splits``: probability, decision, label, sensitive attributes, the modality mask
    the model saw (``mask_<modality>``, False for modalities outside its set), seed, model, modality set."""
    cols = data.columns(fit.modalities)
    rows = np.concatenate([data.rows(s) for s in splits])
    p = predict(fit, data.x[rows][:, cols], data.mask[rows][:, cols])
    st = data.stays.iloc[rows]
    out = pd.DataFrame({"cohort": data.cohort, "model": fit.name, "modalities": modality_label(fit.modalities),
                        "n_modalities": len(fit.modalities), "seed": fit.seed, "stay_id": st.index.to_numpy(),
                        "split": st["split"].to_numpy(), "prob": p, "threshold": fit.threshold,
                        "pred": (p >= fit.threshold).astype(np.int8), "label": data.y[rows].astype(np.int8),
                        "race": st["race"].to_numpy(), "gender": st["gender"].to_numpy(),
                        "race_gender": st["race_gender"].to_numpy()})
    for j, m in enumerate(data.modalities):
        out[f"mask_{m}"] = data.mask[rows, j] & (m in fit.modalities)
    return out


def _run_one(data: FusionData, name: str, mods: list[str], seed: int, cfg: TrainConfig, keep: bool):
    fit = fit_model(data, name, mods, seed, cfg)
    log = {"cohort": data.cohort, "model": name, "modalities": modality_label(mods), "n_modalities": len(mods),
           "seed": seed, "epochs": fit.epochs, "best_epoch": fit.best_epoch, "val_loss": fit.val_loss,
           "threshold": fit.threshold, "seconds": fit.seconds}
    return prediction_frame(data, fit), log, (fit if keep else None)


# ------------------------------------------------------------------------------------ the fit cache
#: Environment variable naming the folder of :class:`FitCache` (``off``: no cache); unset, it is
#: ``fit_cache/`` in the build folder (``MMLIB_BUILD_DIR``, else ``build/`` of ``MMLIB_ROOT`` or of this checkout,
#: as :func:`mmlib.pipeline.build_dir` resolves it).
FIT_CACHE_ENV = "MMLIB_FIT_CACHE"


def fit_cache_dir() -> Path | None:
    """The folder :func:`run_grid` keeps trained networks in by default (:data:`FIT_CACHE_ENV`), or None."""
    import os

    value = os.environ.get(FIT_CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none", "false", "no") else Path(value)
    build = os.environ.get("MMLIB_BUILD_DIR")
    if build:
        return Path(build) / "fit_cache"
    return Path(os.environ.get("MMLIB_ROOT", Path(__file__).resolve().parents[1])) / "build" / "fit_cache"


class FitCache:
    """Trained networks on disk, by everything that determines them, so that a chapter re-run whose training is
    unchanged (chapter 05 with other mask draws, rates or resamples; chapter 04 with another ``n_boot``) loads
    them instead of training them again.

    An entry is one :func:`run_grid` job: the network's weights and training record (``{key}.pt``) and its
    :func:`prediction_frame` rows (``{key}.parquet``), written atomically, the ``.pt`` last. Its key hashes the
    cohort's arrays and stays (``x``, ``mask``, ``y``, split, race, gender, race x gender, stay ids), the model,
    modality set and seed, the whole :class:`TrainConfig`, the sources of :mod:`mmlib.train` and
    :mod:`mmlib.models`, and the torch and NumPy versions. Only CPU fits are cached: training on the CPU is seeded
    and single-threaded, hence bit for bit reproducible, so an entry holds exactly what training again would give
    (``tests/test_train.py`` checks the predictions and weights of a cached fit against a fresh one). The
    logistic regression (refitted in a second) is not cached. An entry that cannot be read is trained again.
    """

    def __init__(self, folder: Path | str, data: FusionData, cfg: TrainConfig):
        import hashlib

        self.folder, self.cfg = Path(folder), cfg
        h = hashlib.sha256()
        here = Path(__file__).resolve().parent
        for f in (here / "train.py", here / "models.py"):
            h.update(f.read_bytes())
        h.update(f"torch {torch.__version__} numpy {np.__version__}".encode())
        h.update(repr(sorted(asdict(cfg).items())).encode())
        h.update(repr((data.cohort, data.target, list(data.modalities))).encode())
        for a in (data.x, data.mask, data.y):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype} {a.shape}".encode())
            h.update(a.data)
        st = data.stays[["split", "race", "gender", "race_gender"]]
        h.update(pd.util.hash_pandas_object(st, index=True).to_numpy().tobytes())
        h.update(repr(list(st.columns) + [str(st.index.dtype)]).encode())
        self._base = h.hexdigest()

    def key(self, name: str, mods: list[str], seed: int) -> str:
        import hashlib

        return hashlib.sha256(f"{self._base} {name} {list(mods)!r} {seed}".encode()).hexdigest()[:32]

    def load(self, data: FusionData, name: str, mods: list[str], seed: int):
        """``(predictions, log, fit)`` of a cached job, or None."""
        k = self.key(name, mods, seed)
        pt, pq = self.folder / f"{k}.pt", self.folder / f"{k}.parquet"
        if not pt.exists() or not pq.exists():
            return None
        try:
            blob = torch.load(pt, map_location="cpu", weights_only=True)
            frame = pd.read_parquet(pq)
            meta = blob["fit"]
            model = build_model(name, len(mods), data.x.shape[2], width=self.cfg.width, heads=self.cfg.heads,
                                dropout=self.cfg.dropout)
            model.load_state_dict(blob["state_dict"])
            model.eval()
        except Exception:  # noqa: BLE001 - a damaged or foreign entry: train again
            return None
        fit = FittedModel(model, name, list(mods), seed, meta["threshold"], meta["best_epoch"], meta["epochs"],
                          meta["val_loss"], meta["seconds"], meta["history"])
        return frame, dict(blob["log"]), fit

    def store(self, frame: pd.DataFrame, log: dict, fit: FittedModel) -> None:
        from .artifacts import atomic_path

        k = self.key(fit.name, fit.modalities, fit.seed)
        with atomic_path(self.folder / f"{k}.parquet") as tmp:
            frame.to_parquet(tmp)
        meta = {"threshold": fit.threshold, "best_epoch": fit.best_epoch, "epochs": fit.epochs,
                "val_loss": fit.val_loss, "seconds": fit.seconds, "history": fit.history}
        blob = {"fit": meta, "log": log, "state_dict": {k_: v.cpu() for k_, v in fit.model.state_dict().items()}}
        with atomic_path(self.folder / f"{k}.pt") as tmp:
            torch.save(blob, tmp)


@dataclass
class GridResult:
    """What :func:`run_grid` returns: the predictions table of every run, one log row per fit, and the
    fitted models that were asked to be kept (``{(model, modality label, seed): FittedModel}``)."""

    predictions: pd.DataFrame
    log: pd.DataFrame
    fits: dict

    def fits_of(self, model: str, label: str, seeds) -> list:
        """The kept fits of one ``model`` and modality set ``label``, one per seed of ``seeds`` (in order)."""
        return [self.fits[(model, label, s)] for s in seeds]


def run_grid(data: FusionData, runs, seeds, cfg: TrainConfig, *, keep: set | None = None, n_jobs: int = 1,
             progress: bool = True, desc: str | None = None, cache_dir: Path | str | None = "auto") -> GridResult:
    """Train every ``(model, modalities)`` in ``runs`` for every seed (``logreg`` once: it is deterministic).

    ``n_jobs`` fits run in parallel worker processes (joblib; ``-1`` = one per CPU core; CPU only). Each
    fit runs on one thread, so the numbers do not depend on ``n_jobs``.

    Returns a :class:`GridResult`: the :func:`prediction_frame` rows of all runs, one log row per fit
    (epochs, best epoch, validation loss, threshold, seconds), and the fitted models for the runs whose
    ``(model, modality label)`` is in ``keep`` (as ``{(model, label, seed): FittedModel}``). Used by
    chapters 03-07.

    Networks trained on the CPU are kept in a :class:`FitCache` in ``cache_dir`` (``"auto"``:
    :func:`fit_cache_dir`; ``None``: no cache) and loaded from it when the same job comes again (same data,
    configuration, model, modalities, seed and code): the same weights, predictions and log row as training
    again, which a re-run of a chapter with a parameter that does not change its training then skips.

    Example::

        res = run_grid(data, [("paper", ["arrival", "vitals"])], seeds=[0, 1], cfg=cfg, keep={("paper", "arrival+vitals")})
        res.predictions.groupby("seed").prob.mean(); res.fits_of("paper", "arrival+vitals", [0, 1])
    """
    from joblib import Parallel, delayed

    keep = keep or set()
    jobs = [(name, list(mods), s) for name, mods in runs for s in (seeds if name != "logreg" else seeds[:1])]
    on_cpu = cfg.torch_device().type == "cpu"
    if not on_cpu:
        n_jobs = 1
    if cache_dir == "auto":
        cache_dir = fit_cache_dir()
    cache = FitCache(cache_dir, data, cfg) if cache_dir is not None and on_cpu and jobs else None
    bar = tqdm(total=len(jobs), desc=desc or f"training on {data.cohort}", disable=not progress, unit="fit")
    results: list = [None] * len(jobs)
    todo = []
    for i, (name, mods, s) in enumerate(jobs):
        hit = cache.load(data, name, mods, s) if cache is not None and name != "logreg" else None
        if hit is None:
            todo.append(i)
        else:
            results[i] = (hit[0], hit[1], hit[2] if (name, modality_label(mods)) in keep else None)
            bar.update(1)
    store = {i for i in todo if cache is not None and jobs[i][0] != "logreg"}
    tasks = (delayed(_run_one)(data, *jobs[i], cfg, i in store or (jobs[i][0], modality_label(jobs[i][1])) in keep)
             for i in todo)
    for i, res in zip(todo, Parallel(n_jobs=n_jobs, return_as="generator")(tasks) if todo else ()):
        if i in store:
            try:
                cache.store(*res)
            except OSError as err:  # a full or read-only disk costs the cache, not the run
                print(f"fit cache: could not write to {cache.folder} ({err}); continuing without it")
                store.clear()
            if (jobs[i][0], modality_label(jobs[i][1])) not in keep:
                res = (res[0], res[1], None)
        results[i] = res
        bar.update(1)
    bar.close()
    preds = pd.concat([r[0] for r in results], ignore_index=True)
    fits = {(f.name, modality_label(f.modalities), f.seed): f for _, _, f in results if f is not None}
    return GridResult(preds, pd.DataFrame([r[1] for r in results]), fits)


def config_dict(cfg: TrainConfig) -> dict:
    """The configuration as a plain dict (for summaries)."""
    return asdict(cfg)


def save_fits(fits: dict, path: Path | str, cfg: TrainConfig) -> Path:
    """Write fitted networks (``{(model, label, seed): FittedModel}`` from :func:`run_grid`) to one file, atomically:
    their weights, modality sets, seeds, thresholds and the configuration to rebuild them."""
    from .artifacts import atomic_path

    items = []
    for f in fits.values():
        if f.name == "logreg":
            raise ValueError("save_fits stores networks; the logistic regression is refitted in a second")
        in_dim = next(m.in_features for m in f.model.modules() if isinstance(m, torch.nn.Linear))  # embedding width
        items.append({"name": f.name, "modalities": f.modalities, "seed": f.seed, "threshold": f.threshold,
                      "best_epoch": f.best_epoch, "in_dim": in_dim,
                      "state_dict": {k: v.cpu() for k, v in f.model.state_dict().items()}})
    buf = io.BytesIO()  # saved to memory first: a file's archive is named after it, and atomic_path's is random
    torch.save(_interned({"config": asdict(cfg), "fits": items}), buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())  # the same networks give the same bytes
    return Path(path)


def _interned(obj):
    """``obj`` (nested dicts, lists and tuples) with every string replaced by its interned copy. Pickle writes a
    string once per *object*: the same names held as one object or as several (as fits trained in this process
    or returned from joblib workers hold them) would otherwise give different bytes for the same networks."""
    import sys

    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_interned(k): _interned(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_interned(v) for v in obj)
    return obj


def load_fits(path: Path | str, in_dim: int = 384) -> dict:
    """Read :func:`save_fits`'s file back into ``{(model, label, seed): FittedModel}`` (networks on the CPU, eval mode);
    the embedding width is the one the file records (``in_dim`` only for files written without it)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig(**blob["config"])
    out = {}
    for it in blob["fits"]:
        model = build_model(it["name"], len(it["modalities"]), it.get("in_dim", in_dim), width=cfg.width,
                            heads=cfg.heads, dropout=cfg.dropout)
        model.load_state_dict(it["state_dict"])
        model.eval()
        out[(it["name"], modality_label(it["modalities"]), it["seed"])] = FittedModel(
            model, it["name"], it["modalities"], it["seed"], it["threshold"], it["best_epoch"], 0, float("nan"), 0.0)
    return out


@dataclass
class RunPlan:
    """Chapter 04's runs for one cohort: ``train`` (``(model, label)`` pairs to train) and ``reused`` (those
    an upstream chapter already trained the same way), in training order."""

    cohort: str
    train: list
    reused: list

    def runs(self) -> list:
        """The runs to train, as :func:`run_grid` takes them: ``(model, [modality, ...])``."""
        return [(m, lab.split("+")) for m, lab in self.train]

    def reused_predictions(self, predictions: pd.DataFrame | None) -> pd.DataFrame | None:
        """The rows of ``predictions`` (the upstream chapter's) that belong to the reused runs (None if none)."""
        if not self.reused or predictions is None:
            return None
        keys = pd.MultiIndex.from_frame(predictions[["cohort", "model", "modalities"]])
        return predictions[keys.isin([(self.cohort, m, lab) for m, lab in self.reused])]


def plan_runs(cohort: str, order: ModalityOrder, models, every_order: bool = True,
              reusable: pd.DataFrame | None = None) -> RunPlan:
    """The runs of chapter 04 for one cohort: every model of ``models`` on every prefix of ``order``, and with
    ``every_order`` the first model on every subset; sorted by model, size, label. Runs present in
    ``reusable`` (a predictions table trained with the same configuration and seeds) are marked reused."""
    models = list(models)
    wanted = {(m, lab) for m in models for lab in order.prefixes()}
    if every_order and models:
        wanted |= {(models[0], lab) for lab in order.subsets()}
    todo, reused = [], []
    for m, lab in sorted(wanted, key=lambda r: (models.index(r[0]), len(r[1].split("+")), r[1])):
        have = reusable is not None and ((reusable.cohort == cohort) & (reusable.model == m)
                                         & (reusable.modalities == lab)).any()
        (reused if have else todo).append((m, lab))
    return RunPlan(cohort, todo, reused)


@dataclass
class FusionRuns:
    """What :meth:`FusionPlan.train` returns (chapter 04): the predictions of every run, trained now or reused (per
    cohort, the trained runs' rows then the reused ones), one log row per fit, the networks trained on all
    modalities (``fits[cohort]``: ``{(model, label, seed): FittedModel}``) and the wall-clock ``seconds`` of training."""

    predictions: pd.DataFrame
    log: pd.DataFrame
    fits: dict
    seconds: float


@dataclass
class FusionPlan:
    """Chapter 04's runs for every cohort (:func:`plan_fusion`): one :class:`RunPlan` per cohort, the orders and
    models they come from, and ``reusable``: the upstream predictions the reused runs are taken from (``None``
    when the upstream chapter trained another way, so that nothing is reused)."""

    plans: dict
    orders: dict
    models: list
    reusable: pd.DataFrame | None = None

    @property
    def n_train(self) -> int:
        return sum(len(p.train) for p in self.plans.values())

    @property
    def n_reused(self) -> int:
        return sum(len(p.reused) for p in self.plans.values())

    def note(self) -> str:
        """How many runs are trained and how many reused, as chapter 04 says it."""
        if self.reusable is None:
            return (f"{self.n_train} runs to train (chapter 03 used another configuration or other seeds: "
                    "nothing reused)")
        return f"{self.n_train} runs to train, {self.n_reused} reused from chapter 03"

    def train(self, data: dict, seeds, cfg: TrainConfig, n_jobs: int = 1, **grid) -> FusionRuns:
        """Train every cohort's runs (:func:`run_grid`, keeping the networks on all modalities) and join their
        predictions with the reused runs' (:meth:`RunPlan.reused_predictions`) into one table; ``grid``: further
        keywords of :func:`run_grid`."""
        t0 = time.perf_counter()
        grids = {n: run_grid(d, self.plans[n].runs(), seeds, cfg, n_jobs=n_jobs, progress=False,
                             keep={(m, self.orders[n].full) for m in self.models if m in NEURAL_MODELS}, **grid)
                 for n, d in data.items()}
        parts = [p for n in data for p in (grids[n].predictions, self.plans[n].reused_predictions(self.reusable))
                 if p is not None]
        predictions = pd.concat(parts, ignore_index=True)
        log = pd.concat([g.log for g in grids.values()], ignore_index=True)
        return FusionRuns(predictions, log, {n: g.fits for n, g in grids.items()}, time.perf_counter() - t0)


def plan_fusion(orders: dict, models, every_order: bool = True, reusable: pd.DataFrame | None = None) -> FusionPlan:
    """Chapter 04's plan: :func:`plan_runs` for every cohort of ``orders`` (``{cohort: ModalityOrder}``), runs in
    ``reusable`` (an upstream predictions table trained the same way, or ``None``) marked reused; train it with
    :meth:`FusionPlan.train`."""
    models = list(models)
    return FusionPlan({n: plan_runs(n, o, models, every_order, reusable=reusable) for n, o in orders.items()},
                      dict(orders), models, reusable)
