"""Synthetic MIMIC-Eye and MIMIC-IV-Ext-MDS-ED cohorts, written in the real datasets' on-disk layouts.

The generators draw one latent state per patient (:mod:`mmlib.data.latent`), derive every modality and
outcome from it, apply the bias knobs, and write the files a credentialed user would have on disk
(``../shared/STUDY.md`` section 2), so that :func:`mmlib.data.load_cohort` reads synthetic and real data
with the same code. Besides the real layout, each synthetic root holds two clearly-named extras that a
real copy does not have: ``synthetic_params.json`` (how it was made) and ``synthetic_truth.parquet``
(the latent state, so the book can check that its measurements recover what was put in).

Table-level generation (:func:`mimic_eye_tables`, :func:`mds_ed_tables`) is separate from rendering
images and ECGs and writing files (:func:`generate`), so tests can check the bias knobs quickly.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..schema import COHORTS

from .latent import BiasKnobs
from .synth_base import SyntheticTables
from .synth_mds_ed import mds_ed_tables, write_mds_ed
from .synth_mimic_eye import mimic_eye_tables, write_mimic_eye

__all__ = ["DEFAULT_GENERATOR", "SyntheticTables", "from_chapter_params", "generate", "generator_params",
           "is_generated", "mds_ed_tables", "mimic_eye_tables", "synthetic_root", "write_mds_ed", "write_mimic_eye"]


DEFAULT_GENERATOR = {"n": 4000, "seed": 0, "bias_knobs": {}, "informativeness": {}, "race_mix": None,
                     "image_size": 256}


def generator_params(cohort: str, params: dict | None = None) -> dict:
    """The full generator parameters of ``cohort``: :data:`DEFAULT_GENERATOR` updated with ``params``."""
    if cohort not in COHORTS:
        raise ValueError(f"cohort: expected one of {COHORTS}, got {cohort!r}")
    p = dict(DEFAULT_GENERATOR) | dict(params or {})
    unknown = set(p) - set(DEFAULT_GENERATOR)
    if unknown:
        raise ValueError(f"synthetic generator parameters: unknown name(s) {sorted(unknown)}; "
                         f"expected {sorted(DEFAULT_GENERATOR)}")
    p["bias_knobs"] = BiasKnobs.from_dict(p["bias_knobs"]).as_dict()
    if cohort == "mds_ed":  # no images; its 20 strat folds are fixed (the loader maps them to splits)
        p.pop("image_size")
    return {"cohort": cohort, **p}


def synthetic_root(cohort: str, params: dict | None = None, data_dir: Path | str = "data/synthetic") -> Path:
    """Where the synthetic cohort with these parameters lives: ``{data_dir}/{cohort}-n{n}-s{seed}-{key}``,
    ``key`` hashing the parameters and the generator's source code (with :mod:`mmlib.schema`)."""
    p = generator_params(cohort, params)
    h = hashlib.sha256(json.dumps(p, sort_keys=True).encode())
    here = Path(__file__).parent
    # the generator's code, and the layouts' names it writes (mmlib/schema.py), are part of the key
    for f in ("latent.py", "races.py", "splits.py", "synth.py", "synth_base.py", "synth_mimic_eye.py",
              "synth_mds_ed.py", "cxr.py", "ecg.py", "../schema.py"):
        h.update((here / f).read_bytes())
    key = h.hexdigest()[:10]
    return Path(data_dir) / f"{cohort}-n{p['n']}-s{p['seed']}-{key}"


def is_generated(root: Path) -> bool:
    """Whether ``root`` (:func:`synthetic_root`) holds a generated cohort: its ``synthetic_params.json``, written
    into the temporary folder that is renamed into place, so a cohort that has one is complete."""
    return (Path(root) / "synthetic_params.json").is_file()


def generate(cohort: str, params: dict | None = None, data_dir: Path | str = "data/synthetic",
             progress: bool = True, force: bool = False) -> tuple[Path, bool]:
    """Generate the synthetic ``cohort`` with ``params`` unless it already exists; return (root, reused).

    The folder name carries a hash of the parameters, so different knobs never overwrite each other.
    """
    p = generator_params(cohort, params)
    root = synthetic_root(cohort, params, data_dir)
    if is_generated(root) and not force:
        return root, True
    t0 = time.perf_counter()
    knobs = BiasKnobs.from_dict(p["bias_knobs"])
    if cohort == "mimic_eye":
        st = mimic_eye_tables(p["n"], p["seed"], knobs, p["informativeness"], p["race_mix"])
        write_mimic_eye(st, root, p["seed"], p["image_size"], progress, meta=p)
    else:
        st = mds_ed_tables(p["n"], p["seed"], knobs, p["informativeness"], p["race_mix"])
        write_mds_ed(st, root, p["seed"], progress, meta=p)
    if progress:
        print(f"generated synthetic {cohort} ({p['n']} stays) in {time.perf_counter() - t0:.1f} s -> {root}")
    return root, False


def from_chapter_params(cohort: str, params: dict) -> dict:
    """Generator parameters of ``cohort`` from chapter 01's parameters (``n_patients``, ``seed``,
    ``bias_knobs``, ``informativeness``, ``image_size``), so the pipeline and the chapter agree on which
    synthetic folder a profile means. ``split_fractions`` is not a generator parameter: MDS-ED's twin writes
    20 equal strat folds and :func:`mmlib.data.load_cohort` maps them to splits."""
    p = {"n": int(params.get("n_patients", DEFAULT_GENERATOR["n"])), "seed": int(params.get("seed", 0)),
         "bias_knobs": dict(params.get("bias_knobs") or {}),
         "informativeness": dict(params.get("informativeness") or {})}
    if cohort == "mimic_eye":
        p["image_size"] = int(params.get("image_size", DEFAULT_GENERATOR["image_size"]))
    return p
