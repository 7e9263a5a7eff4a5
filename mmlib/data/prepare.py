"""Chapter 01's cohorts from its parameters: the parameters checked, each cohort generated (synthetic) or
located (real) and loaded, and the summary the chapter writes.

The chapter's parameters (``chapters/01_data_preparation.ipynb``) arrive as one dict, ``ch.params``:
``cohorts``, ``source``, ``roots``, ``race_grouping``, ``mds_ed_target``, ``split_fractions``, ``seed`` and
the generator's ``n_patients``, ``bias_knobs``, ``informativeness``, ``image_size``
(:func:`mmlib.data.synth.from_chapter_params`).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from ..schema import display_name
from .cohort import Cohort, load_cohort
from .synth import from_chapter_params, generate
from .validate import check_split_classes

#: The values of chapter 01's ``source`` parameter (checked with the others by :mod:`mmlib.parameters`).
SOURCES = ("synthetic", "real")

#: The values of the ``race_grouping`` parameter: race columns of :class:`mmlib.data.Cohort` ``stays`` (the
#: paper's White / non-White, MDS-ED's five groups), with the label the book's tables and figures give them.
RACE_GROUPINGS = {"race_binary": "Race (White / non-White)", "race5": "Race (five groups)"}


def cohort_root(cohort: str, params: dict, *, data_dir: Path | str) -> tuple[Path, bool]:
    """The folder chapter 01 loads ``cohort`` from, and whether it was there already: for a synthetic source,
    the generated copy (generated now unless a copy of the same generator parameters exists, under
    ``roots[cohort]`` when given, else ``data_dir``); for a real source, ``roots[cohort]``, which must be given."""
    roots = params.get("roots") or {}
    if params["source"] not in SOURCES:  # checked before any chapter runs; this guards direct calls
        raise ValueError(f"parameter source: expected one of {list(SOURCES)}, got {params['source']!r}")
    if params["source"] == "synthetic":
        return generate(cohort, from_chapter_params(cohort, params), data_dir=roots.get(cohort) or data_dir,
                        progress=False)
    if not roots.get(cohort):
        raise ValueError(f"roots[{cohort!r}]: source is 'real', so give the folder of your local copy "
                         f"(e.g. -p roots.{cohort} /path/to/copy)")
    return Path(roots[cohort]), True


def load_cohorts(params: dict, *, data_dir: Path | str) -> tuple[dict[str, Cohort], pd.DataFrame]:
    """Chapter 01's cohorts, by name, loaded as its parameters say, and how long that took.

    Each cohort of ``params["cohorts"]`` is located or generated (:func:`cohort_root`) and read by
    :func:`mmlib.data.load_cohort` (MDS-ED's primary target ``mds_ed_target``, MIMIC-Eye's patient split by
    ``split_fractions`` and ``seed``, unreadable X-rays counted as missing). Returns the cohorts and a table,
    one row per cohort: display name, origin, stays, generation time (``reused`` when the copy existed) and
    load time.
    """
    loaded, timing = {}, []
    for name in params["cohorts"]:
        t0 = time.perf_counter()
        root, reused = cohort_root(name, params, data_dir=data_dir)
        t1 = time.perf_counter()
        cohort = load_cohort(name, root, primary_target=None if name == "mimic_eye" else params["mds_ed_target"],
                             split_fractions=tuple(params["split_fractions"]), split_seed=params["seed"],
                             bad_files="mark_missing", progress=False, expected_origin=params["source"])
        # every split must hold both classes of the primary target, or AUROC and the gaps are undefined
        check_split_classes(cohort.stays, cohort.primary_target, f"{root} ({display_name(name)})")
        loaded[name] = cohort
        timing.append({"cohort": display_name(name), "origin": cohort.origin, "stays": len(cohort.stays),
                       "generated": "reused" if reused else f"{t1 - t0:.1f} s",
                       "loaded in": f"{time.perf_counter() - t1:.1f} s"})
    return loaded, pd.DataFrame(timing).set_index("cohort")


def cohort_summary(cohorts: dict) -> dict:
    """What chapter 01 records of each loaded cohort (its ``summary`` artifact): stays, origin, folder (a
    synthetic cohort's folder name under the data folder, so that the record is the same in every checkout; a real
    copy's path), stays per split, share of stays with each modality (4 decimals) and primary target, by cohort
    name."""
    return {name: {"stays": len(c.stays), "origin": c.origin,
                   "root": Path(c.root).name if c.origin == "synthetic" else str(c.root),
                   "splits": c.stays["split"].value_counts().to_dict(),
                   "availability": c.availability.mean().round(4).to_dict(), "primary_target": c.primary_target}
            for name, c in cohorts.items()}
