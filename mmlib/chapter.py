"""The chapter API: what a chapter of the book asks for, by name, and what it writes, by name.

Every chapter starts with one call, ``ch = chapter.start("NN", globals())``, and then asks for its inputs as
named objects instead of spelling upstream file names or JSON keys:

- ``ch.cohorts()`` -- chapter 01's cohorts (:class:`mmlib.data.Cohort`, by cohort name);
- ``ch.fusion_data()`` -- each cohort joined with chapter 02's embeddings (:class:`mmlib.train.FusionData`);
- ``ch.train_config()`` -- the :class:`mmlib.train.TrainConfig` of the chapter's own parameters;
- ``ch.orders()`` -- the modality orders of the parameters ``order_<cohort>``, checked against the data;
- ``ch.training_record("04")`` -- what an upstream chapter recorded of its training, as a
  :class:`TrainingRecord` (configuration, seeds, models, orders);
- ``ch.fits("04", cohort)`` -- the networks chapter 04 saved;
- ``ch.frame("04", "summary")`` -- an upstream table, by its declared name;
- ``ch.save("summary", table)`` -- write one of the chapter's own artifacts, by its declared name.

:data:`ARTIFACTS` declares, in one place, every file a chapter writes and what it holds. Chapters 01-08 use
this module; the build pipeline (:mod:`mmlib.pipeline`) only executes them and resolves where their artifact
folders are.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .schema import COHORT_NAMES, display_name

# chapter -> artifact name -> (file name, with {cohort} where there is one per cohort; what it holds)
ARTIFACTS: dict[str, dict[str, tuple[str, str]]] = {
    "01": {"cohort": ("cohort_{cohort}", "the loaded cohort (mmlib.data.Cohort.save): stays, targets, "
                                         "availability, flow, truth"),
           "summary": ("summary.json", "stays per cohort, origin and flow")},
    "02": {"texts": ("texts_{cohort}.parquet", "one text per stay and modality (None = missing)"),
           "embeddings": ("embeddings_{cohort}.npz", "stay_id, one (stays x dim) matrix per modality, mask_<modality>"),
           "fidelity": ("fidelity.parquet", "transcription sensitivity/specificity by group (synthetic only)"),
           "summary": ("summary.json", "text and embedding counts")},
    "03": {"predictions": ("predictions.parquet", "one row per stay, split, model, modality set and seed"),
           "summary": ("summary.parquet", "every estimate with its CI and flag (mmlib.metrics.Summary.table)"),
           "training_log": ("training_log.parquet", "one row per fit"),
           "config": ("config.json", "TrainingRecord: configuration, seeds, models, race grouping"),
           "findings": ("summary.json", "fits and best single modality per cohort, training time")},
    "04": {"predictions": ("predictions.parquet", "every run of chapter 04 and the chapter 03 runs it reused"),
           "summary": ("summary.parquet", "every estimate with its CI and flag"),
           "training_log": ("training_log.parquet", "one row per fit"),
           "models": ("models_{cohort}.pt", "the networks trained on all modalities, every seed"),
           "config": ("config.json", "TrainingRecord: configuration, seeds, models, orders, every_order"),
           "targets": ("targets.parquet", "the paper's findings on adding modalities as targets, and whether this run meets them")},
    "05": {"sweep": ("sweep.parquet", "every missingness condition's metrics with their CIs"),
           "degradation_areas": ("degradation_areas.parquet", "area under each degradation curve"),
           "findings": ("summary.json", "timings, grid, skipped rates, group factors")},
    "06": {"weights": ("weights.parquet", "every decision-layer weight by modality, seed and training"),
           "predictions": ("predictions.parquet", "linear model and its calibrated version"),
           "summary": ("summary.parquet", "estimates of the linear model and its calibrated version"),
           "group_shares": ("group_shares.parquet", "each modality's share of the logit by group"),
           "robustness": ("robustness.parquet", "missingness sweep of both"),
           "findings": ("summary.json", "timings and seeds")},
    "07": {"effects": ("effects.parquet", "flip rate and mean |dp| by model, modality, perturbation and group"),
           "changes": ("changes.parquet", "every metric's change under every perturbation, paired CIs"),
           "clean": ("clean.parquet", "clean performance and fairness of original and fine-tuned models"),
           "findings": ("summary.json", "timings and settings")},
    "08": {"attribution": ("attribution.parquet", "every estimand of every knob setting, model and group with its CI "
                                                  "and its paired change from all knobs off"),
           "recovery": ("recovery.parquet", "each knob's injected effect at the strong setting and all off: recovered "
                                            "or not, and which of the paper's gaps see it"),
           "power": ("power.parquet", "per estimand and knob: response per unit of knob scale, SE, smallest "
                                      "detectable scale at each profile's size"),
           "inputs": ("inputs.parquet", "where each setting enters: stays whose input or target differs from all off"),
           "predictions": ("predictions.parquet", "every run's validation and test predictions, with its setting"),
           "findings": ("summary.json", "settings, what was rebuilt and reused, timings")},
}

#: chapter -> resumable pieces -> folder name (under :func:`mmlib.pipeline.resume_dir`, not in the artifact):
#: long steps that are naturally chunked keep their finished chunks there, so a re-run after a crash continues.
RESUMABLE: dict[str, dict[str, str]] = {
    "02": {"shards": "shards_{cohort}_{modality}"},  # VLM transcription shards (mmlib.vlm.run_sharded)
}


def artifact_name(chapter: str, name: str, **fmt) -> str:
    """The file name of artifact ``name`` of ``chapter`` (``cohort=...`` and the like fill its pattern)."""
    try:
        pattern = ARTIFACTS[chapter][name][0]
    except KeyError:
        known = sorted(ARTIFACTS.get(chapter, {}))
        raise KeyError(f"chapter {chapter} declares no artifact {name!r} in mmlib.chapter.ARTIFACTS; "
                       f"it declares {known}") from None
    try:
        return pattern.format(**fmt)
    except KeyError as e:
        raise KeyError(f"artifact {name!r} of chapter {chapter} ({pattern}) needs {e.args[0]}=...") from None


@dataclass(frozen=True)
class TrainingRecord:
    """What a training chapter (03, 04) records of its runs, so that a later chapter can reuse them or check
    that it trains the same way: the :class:`mmlib.train.TrainConfig` as a dict, the seeds, the models, the
    race grouping and (chapter 04) the modality order of each cohort and whether every order was trained."""

    config: dict
    seeds: list
    models: list
    race_grouping: str | None = None
    orders: dict = field(default_factory=dict)
    every_order: bool | None = None
    extra: dict = field(default_factory=dict)

    FIELDS = ("config", "seeds", "models", "race_grouping", "orders", "every_order")

    def to_json(self) -> dict:
        out = {"config": self.config, "seeds": list(self.seeds), "models": list(self.models)}
        if self.race_grouping is not None:
            out["race_grouping"] = self.race_grouping
        if self.orders:
            out["orders"] = {k: list(v) for k, v in self.orders.items()}
        if self.every_order is not None:
            out["every_order"] = self.every_order
        return out | self.extra

    @classmethod
    def from_json(cls, blob: dict, path: Path | str = "config.json") -> "TrainingRecord":
        missing = [k for k in ("config", "seeds", "models") if k not in blob]
        if missing:
            raise ValueError(f"{path}: training record lacks {missing}; re-run the chapter that wrote it")
        return cls(blob["config"], list(blob["seeds"]), list(blob["models"]), blob.get("race_grouping"),
                   dict(blob.get("orders") or {}), blob.get("every_order"),
                   {k: v for k, v in blob.items() if k not in cls.FIELDS})

    def order(self, cohort: str):
        """The :class:`mmlib.train.ModalityOrder` this chapter trained ``cohort`` in."""
        from .train import ModalityOrder

        if cohort not in self.orders:
            raise KeyError(f"the training record has no modality order for cohort {cohort!r} "
                           f"(it has {sorted(self.orders)})")
        return ModalityOrder(self.orders[cohort])

    def same_training(self, cfg, seeds, race_grouping: str | None = None, ignore=()) -> bool:
        """Whether runs recorded here were trained as ``cfg`` and ``seeds`` would train them (configuration
        keys in ``ignore`` left out; the race grouping compared when given)."""
        from .train import config_dict

        mine = {k: v for k, v in self.config.items() if k not in ignore}
        theirs = {k: v for k, v in config_dict(cfg).items() if k not in ignore}
        same = mine == theirs and list(self.seeds) == list(seeds)
        if race_grouping is not None:
            same = same and self.race_grouping == race_grouping
        return same


@dataclass
class SavedModels:
    """The all-modality networks a training chapter saved (:meth:`Chapter.saved_models`), with its
    :class:`TrainingRecord`: ``of(cohort, model)`` gives one fitted model per seed (in ``seeds`` order)."""

    record: TrainingRecord
    fits: dict  # cohort -> {(model, label, seed): FittedModel}

    @property
    def seeds(self) -> list:
        first = next(iter(self.fits.values()))
        return sorted({k[2] for k in first})

    def order(self, cohort: str):
        return self.record.order(cohort)

    def of(self, cohort: str, model: str) -> list:
        full = self.order(cohort).full
        return [self.fits[cohort][(model, full, s)] for s in self.seeds]


class Chapter:
    """A running chapter: its parameters, where it writes (``out``) and its inputs, by name (module doc)."""

    names = COHORT_NAMES

    def __init__(self, context):
        self.id = context.chapter
        self.params = context.params
        self.out = context.out
        self._ctx = context
        self._cache: dict = {}

    # ---------------------------------------------------------------------------------- parameters
    @property
    def cohort_names(self) -> list[str]:
        """The cohorts of the ``cohorts`` parameter."""
        return list(self.params["cohorts"])

    @staticmethod
    def name(cohort: str) -> str:
        """The display name of a cohort (``MIMIC-Eye``, ``MIMIC-IV-Ext-MDS-ED``)."""
        return display_name(cohort)

    def models(self, parameter: str) -> list[str]:
        """The model names of list parameter ``parameter`` (e.g. ``fusion_models``), each checked to be a model of
        :mod:`mmlib.models`."""
        from .models import MODEL_DOCS

        names = list(self.params[parameter])
        unknown = [m for m in names if m not in MODEL_DOCS]
        if unknown:
            raise ValueError(f"parameter {parameter}: unknown models {unknown}; expected some of {list(MODEL_DOCS)}")
        return names

    def choices(self, parameter: str, allowed) -> list:
        """The values of list parameter ``parameter``, each checked to be one of ``allowed``."""
        values = list(self.params[parameter])
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"parameter {parameter}: unknown {bad}; expected some of {list(allowed)}")
        return values

    @property
    def embedding_cache(self) -> dict:
        """Where embeddings and exported encoders are cached (keyword arguments of
        :func:`mmlib.embed.embed_texts`): ``embedding_cache/`` and ``onnx/`` of this build folder, shared by every
        chapter, profile and run that uses it; the folders named by ``MMLIB_EMBEDDING_CACHE`` and
        ``MMLIB_ONNX_CACHE`` instead when they are set. Either may be shared between build folders: a graph
        depends on the encoder only, and a cached vector is the one embedding the text again would give, byte for
        byte (its key holds the encoder, settings and numerics; see :mod:`mmlib.embed`). The test suite's books
        share both, so a book the suite builds after another embeds only texts the earlier ones did not."""
        from .pipeline import embedding_caches

        # not through mmlib.embed: importing it from this module would put it in every chapter's code closure, so
        # an edit to the encoder would re-run chapters that never embed
        return embedding_caches()

    def train_config(self):
        """The :class:`mmlib.train.TrainConfig` of this chapter's parameters."""
        from .train import TrainConfig

        return TrainConfig.from_params(self.params)

    # -------------------------------------------------------------------------------------- inputs
    def resume(self, name: str, **fmt) -> Path:
        """The folder of resumable pieces ``name`` of this run (:data:`RESUMABLE`), outside its temporary folder
        and keyed by its inputs (:func:`mmlib.pipeline.resume_dir`): an interrupted run's finished pieces are
        found there by the re-run; the folder goes once the chapter completes."""
        if name not in RESUMABLE.get(self.id, {}):
            raise KeyError(f"chapter {self.id} declares no resumable pieces {name!r}; "
                           f"expected one of {sorted(RESUMABLE.get(self.id, {}))}")
        return self._ctx.resume(RESUMABLE[self.id][name].format(**fmt))

    def path(self, chapter: str, name: str, **fmt) -> Path:
        """The path of artifact ``name`` of ``chapter`` (this chapter's own folder when ``chapter`` is its id)."""
        base = self.out if chapter == self.id else self._ctx.input(chapter)
        return base / artifact_name(chapter, name, **fmt)

    def cohorts(self, names=None) -> dict:
        """Chapter 01's cohorts, by name (``names`` default: the ``cohorts`` parameter, or every cohort
        chapter 01 wrote when the chapter has no such parameter)."""
        from .data import Cohort
        from .schema import COHORTS

        if names is None:
            names = self.params.get("cohorts") or [c for c in COHORTS if self.path("01", "cohort", cohort=c).exists()]
        return {n: Cohort.load(self.path("01", "cohort", cohort=n)) for n in names}

    def fusion_data(self) -> dict:
        """Each cohort of the ``cohorts`` parameter joined with chapter 02's embeddings, grouped by the
        ``race_grouping`` parameter (:func:`mmlib.train.load_fusion_data`); loaded once per chapter."""
        from .train import load_fusion_data

        if "fusion_data" not in self._cache:
            self._cache["fusion_data"] = {
                n: load_fusion_data(self.path("01", "cohort", cohort=n), self.path("02", "embeddings", cohort=n),
                                    race_grouping=self.params["race_grouping"]) for n in self.cohort_names}
        return self._cache["fusion_data"]

    def check_source(self) -> None:
        """Refuse to run with ``source: synthetic`` on cohorts that chapter 01 read as real (its ``summary``
        records each cohort's origin, which the loader checked against chapter 01's own ``source``): the
        ``source`` parameter decides disclosure control, so every chapter must be given the same one."""
        if self.id == "01" or "01" not in self._ctx.inputs:
            return
        path = self.path("01", "summary")
        if not path.exists():
            return
        origins = {n: s.get("origin") for n, s in json.loads(path.read_text()).items()}
        real = sorted(n for n, o in origins.items() if o == "real")
        if real and not self.is_real():
            raise ValueError(f"parameter source: got {self.params.get('source', 'synthetic')!r}, but chapter 01 read "
                             f"{real} as real (credentialed) data; expected source: real, so that the chapter shows "
                             f"aggregates only")

    def is_real(self) -> bool:
        """Whether this chapter reads real (credentialed) data -- its ``source`` parameter, never what is on disk
        (:func:`mmlib.data.load_cohort` checks that the two agree): the book then shows aggregates only."""
        return self.params.get("source", "synthetic") == "real"

    def orders(self) -> dict:
        """The :class:`mmlib.train.ModalityOrder` of each cohort from the parameters ``order_<cohort>``, each
        checked to name every modality of the cohort once."""
        from .train import ModalityOrder

        data = self.fusion_data()
        out = {}
        for n in self.cohort_names:
            order = list(self.params[f"order_{n}"])
            if sorted(order) != sorted(data[n].modalities):
                raise ValueError(f"parameter order_{n} must name each modality of {self.name(n)} once "
                                 f"({data[n].modalities}), got {order}")
            out[n] = ModalityOrder(order)
        return out

    def training_record(self, chapter: str) -> TrainingRecord:
        """What ``chapter`` (03 or 04) recorded of its training."""
        import json

        p = self.path(chapter, "config")
        return TrainingRecord.from_json(json.loads(p.read_text()), p)

    def fits(self, chapter: str, cohort: str) -> dict:
        """The networks ``chapter`` saved for ``cohort``: ``{(model, modality label, seed): FittedModel}``."""
        from .train import load_fits

        return load_fits(self.path(chapter, "models", cohort=cohort))

    def saved_models(self, chapter: str, parameter: str) -> SavedModels:
        """The all-modality networks ``chapter`` saved for each cohort, checked to include every model of list
        parameter ``parameter`` (e.g. ``sweep_models``)."""
        out = SavedModels(self.training_record(chapter), {n: self.fits(chapter, n) for n in self.cohort_names})
        for n, f in out.fits.items():
            have = {k[0] for k in f}
            lacking = [m for m in self.params[parameter] if m not in have]
            if lacking:
                raise ValueError(f"parameter {parameter}: chapter {chapter} saved no all-modality fits of {lacking} "
                                 f"for {self.name(n)} (it has {sorted(have)}); add them to chapter {chapter}'s "
                                 "fusion_models")
        return out

    def frame(self, chapter: str, name: str, **fmt) -> pd.DataFrame:
        """An upstream (or this chapter's) table artifact, by name."""
        return pd.read_parquet(self.path(chapter, name, **fmt))

    # -------------------------------------------------------------------------------------- outputs
    def save(self, name: str, obj, **fmt) -> Path:
        """Write this chapter's artifact ``name`` (declared in :data:`ARTIFACTS`): a DataFrame as parquet, a
        :class:`TrainingRecord` or dict as JSON, a ``Cohort`` with its own ``save``; atomically."""
        from .artifacts import write_frame, write_json

        path = self.path(self.id, name, **fmt)
        if isinstance(obj, pd.DataFrame):
            return write_frame(obj, path)
        if isinstance(obj, TrainingRecord):
            return write_json(obj.to_json(), path)
        if isinstance(obj, dict):
            return write_json(obj, path)
        if hasattr(obj, "save"):
            obj.save(path)
            return path
        raise TypeError(f"artifact {name!r}: cannot write a {type(obj).__name__}")

    def save_fits(self, cohort: str, fits: dict, cfg) -> Path:
        """Write the networks ``fits`` of ``cohort`` (:func:`mmlib.train.save_fits`) as artifact ``models``."""
        from .train import save_fits

        return save_fits(fits, self.path(self.id, "models", cohort=cohort), cfg)


def start(chapter_id: str, namespace: dict) -> Chapter:
    """The :class:`Chapter` of a running chapter, from its parameters (pass the notebook's ``globals()``).

    Under the build pipeline the artifact folders are injected; run by hand (e.g. in Jupyter) they are
    resolved from the ``profile`` parameter the same way the pipeline would (:func:`mmlib.pipeline.context`).

    The ``source`` parameter decides disclosure control (:mod:`mmlib.disclosure`): with ``source: real`` every
    table, note and figure the chapter shows is aggregates only, and every displayed DataFrame passes through
    :func:`mmlib.disclosure.frame`. Every figure it shows carries its alt text and caption
    (:func:`mmlib.plots.install_figure_captions`).
    """
    from . import disclosure, tables
    from .pipeline import context

    ch = Chapter(context(chapter_id, namespace))
    disclosure.enforce(ch.params.get("source", "synthetic") == "real")
    if disclosure.active():
        disclosure.install_display_filter()
    tables.install_page_tables()  # wide tables in parts with a CSV download (after the disclosure filter)
    from .plots import install_figure_captions

    install_figure_captions()  # every figure shown with its alt text and caption (mmlib.plots)
    ch.check_source()
    return ch
