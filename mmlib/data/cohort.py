"""One canonical cohort object for MIMIC-Eye and MIMIC-IV-Ext-MDS-ED, real or synthetic.

:func:`load_cohort` reads a dataset from its on-disk layout (``../shared/STUDY.md`` section 2) with the
same code whether the copy is a credentialed PhysioNet download or a synthetic cohort from
:mod:`mmlib.data.synth`. It returns a :class:`Cohort`: one row per ED stay with its split, sensitive
attributes and targets; per-modality raw content restricted to what was recorded before the prediction
time; a per-stay modality-availability mask; and the cohort flow (stays in, excluded and why).
The layouts' names come from :mod:`mmlib.schema`; this loader never imports the generator or its simulators.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import atomic_dir
from ..schema import COHORTS, MODALITIES, PREDICTION_HOURS, PREDICTION_TIME, SPLITS

from .mds_ed import Memmap, load_mds_ed
from .mimic_eye import load_mimic_eye
from .races import age_band, race5_of, race_binary_of
from .splits import stratified_assign


@dataclass
class Cohort:
    """A loaded cohort: stays, targets, modalities, availability and flow (see module docstring).

    - ``stays``: index ``stay_id``; columns ``subject_id, split, intime, race_raw, race5, race_binary,
      gender (M/F), age, age_band`` and one column per target (float 0/1, NaN where undefined).
    - ``modalities``: name -> DataFrame indexed like ``stays`` with that modality's raw content.
    - ``availability``: bool DataFrame, stays x modalities.
    - ``flow``: one row per step: ``step, excluded, remaining`` (the cohort flow diagram as a table).
    - ``truth``: for synthetic cohorts, the latent state per stay (``None`` for real data).
    """

    name: str
    origin: str
    root: Path
    prediction_time: str
    stays: pd.DataFrame
    targets: list[str]
    primary_target: str
    modalities: dict[str, pd.DataFrame]
    availability: pd.DataFrame
    flow: pd.DataFrame
    truth: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.origin == "synthetic"

    def split(self, name: str) -> pd.DataFrame:
        """The stays of one split (``train``, ``val`` or ``test``)."""
        return self.stays[self.stays["split"] == name]

    # --- raw signal access -------------------------------------------------------------------------
    def cxr_path(self, stay_id: int) -> Path:
        """Path of the stay's chest X-ray JPG (raises ``KeyError`` if the stay has none before prediction)."""
        row = self.modalities["cxr"].loc[stay_id]
        if not isinstance(row["path"], str):
            raise KeyError(f"stay {stay_id} has no chest X-ray before the prediction time")
        return self.root / row["path"]

    def cxr_image(self, stay_id: int) -> np.ndarray:
        """The stay's chest X-ray as a uint8 grayscale array."""
        from PIL import Image

        with Image.open(self.cxr_path(stay_id)) as im:
            return np.asarray(im.convert("L"))

    def ecg(self, stay_ids) -> np.ndarray:
        """ECG waveforms of the given stays: float32 array (k, time, 12 leads) in mV, 100 Hz.

        Raises ``KeyError`` for a stay whose ECG was recorded after the prediction time (not a feature).
        """
        ids = list(np.atleast_1d(stay_ids))
        late = [s for s in ids if not self.availability.at[s, "ecg"]]
        if late:
            raise KeyError(f"stay(s) {late[:3]} have no ECG before the prediction time")
        mm = Memmap(self.root)
        idx = self.modalities["ecg"].loc[ids, "record"].to_numpy()
        return np.stack([mm.record(int(i)) for i in idx])

    # --- persistence -----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the cohort to ``folder`` (parquet + JSON), atomically: temp folder, then rename.

        A synthetic cohort's folder (generated under the data folder, which moves with the checkout) is recorded
        relative to ``folder``, so that the same parameters give the same bytes in any checkout (and the keys of
        the chapters downstream do not depend on where the project lies); a real copy's folder is recorded as an
        absolute path, as it stays where its user keeps it. :meth:`load` resolves either."""
        root = Path(self.root).resolve()
        recorded = str(root)
        if self.origin == "synthetic":
            try:
                recorded = os.path.relpath(root, Path(folder).resolve())
            except ValueError:  # another drive (Windows): no relative path
                pass
        with atomic_dir(folder) as tmp:
            self.stays.to_parquet(tmp / "stays.parquet")
            self.availability.to_parquet(tmp / "availability.parquet")
            self.flow.to_parquet(tmp / "flow.parquet")
            for m, df in self.modalities.items():
                df.to_parquet(tmp / f"modality_{m}.parquet")
            if self.truth is not None:
                self.truth.to_parquet(tmp / "truth.parquet")
            meta = {"name": self.name, "origin": self.origin, "root": recorded,
                    "prediction_time": self.prediction_time, "targets": self.targets,
                    "primary_target": self.primary_target, "modalities": list(self.modalities),
                    "info": self.info}
            (tmp / "cohort.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Cohort":
        """Read a cohort written by :meth:`save`."""
        folder = Path(folder)
        if not (folder / "cohort.json").exists():
            raise FileNotFoundError(f"{folder}: no cohort.json; expected a cohort artifact written by Cohort.save")
        meta = json.loads((folder / "cohort.json").read_text())
        truth = pd.read_parquet(folder / "truth.parquet") if (folder / "truth.parquet").exists() else None
        root = Path(meta["root"])
        root = root if root.is_absolute() else Path(os.path.normpath(folder.resolve() / root))
        return cls(name=meta["name"], origin=meta["origin"], root=root,
                   prediction_time=meta["prediction_time"], stays=pd.read_parquet(folder / "stays.parquet"),
                   targets=meta["targets"], primary_target=meta["primary_target"],
                   modalities={m: pd.read_parquet(folder / f"modality_{m}.parquet") for m in meta["modalities"]},
                   availability=pd.read_parquet(folder / "availability.parquet"),
                   flow=pd.read_parquet(folder / "flow.parquet"), truth=truth, info=meta.get("info", {}))


def _assign_splits(stays: pd.DataFrame, fractions, seed: int) -> pd.Series:
    """Patient-level split, stratified by race (White / non-White / Unknown) x gender."""
    subj = stays.drop_duplicates("subject_id").sort_values("subject_id")
    strata = (subj["race_binary"] + "|" + subj["gender"]).to_numpy()
    bucket = stratified_assign(strata, fractions, seed)
    by_subject = pd.Series(np.asarray(SPLITS)[bucket], index=subj["subject_id"].to_numpy())
    return stays["subject_id"].map(by_subject)


def _check_origin(root: Path, expected: str | None) -> str:
    """The origin of a cohort folder: ``expected`` (the chapter's ``source`` parameter) when given, which must
    agree with the folder (a synthetic copy holds ``synthetic_params.json``, a real one does not); without it,
    what the folder says."""
    on_disk = "synthetic" if (root / "synthetic_params.json").exists() else "real"
    if expected is None:
        return on_disk
    if expected not in ("synthetic", "real"):
        raise ValueError(f"source: expected 'synthetic' or 'real', got {expected!r}")
    if expected != on_disk:
        raise ValueError(f"{root}: source is {expected!r} but the folder is a {on_disk} copy "
                         + ("(it holds synthetic_params.json); point roots at your credentialed copy or set "
                            "source: synthetic" if on_disk == "synthetic" else
                            "(no synthetic_params.json); set source: real to read credentialed data, which the "
                            "book then shows as aggregates only"))
    return expected


def _check_splits(stays: pd.DataFrame, where: str) -> None:
    counts = stays["split"].value_counts()
    empty = [s for s in SPLITS if counts.get(s, 0) == 0]
    if empty:
        raise ValueError(f"{where}: split(s) {empty} are empty after exclusions ({dict(counts)}); expected every "
                         f"split to hold stays (check the split fractions or the data)")


# ----------------------------------------------------------------------------------------------- API
def load_cohort(source: str, root: Path | str, *, primary_target: str | None = None,
                split_fractions=(0.7, 0.1, 0.2), split_seed: int = 0, prediction_hours: float | None = None,
                bad_files: str = "error", progress: bool = True, expected_origin: str | None = None) -> Cohort:
    """Load the ``source`` dataset (``"mimic_eye"`` or ``"mds_ed"``) from its on-disk layout under ``root``.

    Real and synthetic copies are read by the same code; a synthetic copy is recognised by its
    ``synthetic_params.json`` and its latent truth is attached as ``Cohort.truth``.

    - ``primary_target``: MIMIC-Eye ``admitted`` (default); MDS-ED any ``deterioration_*`` / ``diagnoses_*``
      column (default ``deterioration_icu_24h``). Stays whose primary target is undefined are excluded
      and counted.
    - ``split_fractions`` / ``split_seed``: MIMIC-Eye has no split on disk, so patients are split
      (train, val, test) within race x gender strata. MDS-ED deals its 20 strat folds to the splits in
      twentieths (default (0.7, 0.1, 0.2): folds 0-13 / 14-15 / 16-19; the release's own split 0-17 / 18 / 19
      is (0.9, 0.05, 0.05); fractions must be multiples of 0.05); the rule is in ``Cohort.info["split_rule"]``.
    - ``prediction_hours``: hours after arrival at which the prediction is made (defaults: MIMIC-Eye 3,
      MDS-ED 1.5); nothing recorded later enters a modality.
    - ``expected_origin``: ``"synthetic"`` or ``"real"``, the chapter's ``source`` parameter; a folder that says
      otherwise is an error (the origin decides disclosure control, so it is never guessed silently).
    - ``bad_files``: ``"error"`` (default) stops at a missing or unreadable CXR image naming the file;
      ``"mark_missing"`` marks that stay's CXR modality missing and counts it in ``Cohort.info``.
    """
    if source not in COHORTS:
        raise ValueError(f"source: expected one of {COHORTS}, got {source!r}")
    if bad_files not in ("error", "mark_missing"):
        raise ValueError(f"bad_files: expected 'error' or 'mark_missing', got {bad_files!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: cohort folder not found; expected a local copy of {source} "
                                f"(or generate the synthetic one with `python -m mmlib generate {source}`)")
    hours = PREDICTION_HOURS[source] if prediction_hours is None else float(prediction_hours)
    if source == "mimic_eye":
        target = primary_target or "admitted"
        out = load_mimic_eye(root, split_fractions, split_seed, hours, bad_files, progress)
        if target not in out["targets"]:
            raise ValueError(f"primary_target: {target!r} is not a MIMIC-Eye target; expected one of {out['targets']}")
    else:
        target = primary_target or "deterioration_icu_24h"
        out = load_mds_ed(root, hours, target, progress, split_fractions)
    stays = out["stays"]
    stays["race5"] = stays["race_raw"].map(race5_of) if "race5" not in stays else stays["race5"]
    stays["race_binary"] = stays["race_raw"].map(race_binary_of)
    stays["age_band"] = age_band(stays["age"])
    if "split" not in stays:
        stays["split"] = _assign_splits(stays, split_fractions, split_seed)
    _check_splits(stays, str(root))
    first = ["subject_id", "split", "intime", "race_raw", "race5", "race_binary", "gender", "age", "age_band"]
    stays = stays[first + [c for c in stays.columns if c not in first]]
    origin = _check_origin(root, expected_origin)
    truth = None
    if origin == "synthetic" and (root / "synthetic_truth.parquet").exists():
        tr = pd.read_parquet(root / "synthetic_truth.parquet")
        key = "stay_id" if "stay_id" in tr.columns else "general_ed_stay_id"
        truth = tr.set_index(key).reindex(stays.index)
        truth.index.name = "stay_id"
    unit = "hours" if source == "mimic_eye" else "minutes"
    h = hours if unit == "hours" else hours * 60
    return Cohort(name=source, origin=origin, root=root, prediction_time=PREDICTION_TIME[source].format(h=h),
                  stays=stays, targets=out["targets"], primary_target=target,
                  modalities={m: out["modalities"][m].reindex(stays.index) for m in MODALITIES[source]},
                  availability=out["availability"].reindex(stays.index).fillna(False).astype(bool),
                  flow=out["flow"].frame(), truth=truth, info=out["info"])
