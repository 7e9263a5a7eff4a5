"""Race and demographic groupings shared by the generators and the loaders.

MIMIC-IV records race as one of about 33 raw strings. The study uses three views of it:

- ``race_raw``: the raw MIMIC string, kept as recorded;
- ``race5``: MDS-ED's five groups (White, Black, Hispanic, Asian, Other), mapped by substring exactly as
  MDS-ED builds its ``demographics_ethnicity_*`` one-hot columns;
- ``race_binary``: the Multimodal Paradox paper's White / non-White grouping; stays whose race was not
  obtained (UNKNOWN, UNABLE TO OBTAIN, PATIENT DECLINED TO ANSWER) are ``Unknown`` and are reported
  separately rather than silently folded into non-White.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The raw race strings of MIMIC-IV (hosp ``admissions.race`` and ED ``edstays.race``).
MIMIC_RACES: tuple[str, ...] = (
    "WHITE", "WHITE - OTHER EUROPEAN", "WHITE - RUSSIAN", "WHITE - EASTERN EUROPEAN", "WHITE - BRAZILIAN",
    "PORTUGUESE",
    "BLACK/AFRICAN AMERICAN", "BLACK/CAPE VERDEAN", "BLACK/CARIBBEAN ISLAND", "BLACK/AFRICAN",
    "HISPANIC/LATINO - PUERTO RICAN", "HISPANIC/LATINO - DOMINICAN", "HISPANIC/LATINO - GUATEMALAN",
    "HISPANIC/LATINO - SALVADORAN", "HISPANIC/LATINO - MEXICAN", "HISPANIC/LATINO - COLUMBIAN",
    "HISPANIC/LATINO - HONDURAN", "HISPANIC/LATINO - CUBAN", "HISPANIC/LATINO - CENTRAL AMERICAN",
    "HISPANIC OR LATINO", "SOUTH AMERICAN",
    "ASIAN", "ASIAN - CHINESE", "ASIAN - SOUTH EAST ASIAN", "ASIAN - ASIAN INDIAN", "ASIAN - KOREAN",
    "AMERICAN INDIAN/ALASKA NATIVE", "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "MULTIPLE RACE/ETHNICITY",
    "OTHER", "UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER",
)
UNKNOWN_RACES = frozenset({"UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER"})

#: MDS-ED's five groups, in the order of its one-hot columns.
RACE5 = ("White", "Black", "Hispanic", "Asian", "Other")
#: MDS-ED one-hot column suffix of each group (``demographics_ethnicity_<suffix>``).
RACE5_COLUMNS = {"White": "white", "Black": "black/african", "Hispanic": "hispanic/latino",
                 "Asian": "asian", "Other": "other"}
RACE_BINARY = ("White", "non-White", "Unknown")


def race5_of(raw: str) -> str:
    """MDS-ED's five-group label of one raw MIMIC race string (substring rule, case-insensitive)."""
    s = raw.upper()
    if "WHITE" in s:
        return "White"
    if "BLACK" in s:
        return "Black"
    if "HISPANIC" in s or "LATINO" in s:
        return "Hispanic"
    if "ASIAN" in s:
        return "Asian"
    return "Other"


def race_binary_of(raw: str) -> str:
    """The paper's White / non-White label of one raw MIMIC race string (``Unknown`` if not obtained)."""
    s = raw.upper().strip()
    if s in UNKNOWN_RACES:
        return "Unknown"
    return "White" if race5_of(s) == "White" else "non-White"


def check_races(values: pd.Series, where: str) -> pd.Series:
    """Return ``values`` upper-cased and stripped; raise if any is not a known MIMIC race string.

    ``where`` names the file and column in the error message.
    """
    clean = values.astype("string").str.strip().str.upper()
    if clean.isna().any():
        n = int(clean.isna().sum())
        raise ValueError(f"{where}: {n} row(s) have an empty race; expected one of MIMIC-IV's race strings "
                         f"(use 'UNKNOWN' when race was not recorded)")
    unknown = sorted(set(clean) - set(MIMIC_RACES))
    if unknown:
        raise ValueError(f"{where}: unknown race string(s) {unknown[:5]}; expected one of MIMIC-IV's "
                         f"{len(MIMIC_RACES)} race strings, e.g. 'WHITE', 'BLACK/AFRICAN AMERICAN', "
                         f"'HISPANIC/LATINO - PUERTO RICAN', 'ASIAN - CHINESE', 'UNKNOWN' "
                         f"(full list: mmlib.data.races.MIMIC_RACES)")
    return clean.astype(object)


def age_band(age: np.ndarray | pd.Series) -> pd.Categorical:
    """Age bands used in every table: 18-39, 40-59, 60-79, 80+."""
    return pd.cut(np.asarray(age, dtype=float), [0, 40, 60, 80, 200], right=False,
                  labels=["18-39", "40-59", "60-79", "80+"])


#: Coarse race values of the older MIMIC-IV / MIMIC-IV-ED 1.x ``ethnicity`` column that are not among
#: :data:`MIMIC_RACES` (the others, e.g. ``WHITE``, ``ASIAN``, ``OTHER``, are); MIMIC-Eye's tables carry them.
MIMIC_COARSE_RACES: tuple[str, ...] = ("HISPANIC/LATINO",)


def check_mimic_races(values: pd.Series, where: str) -> tuple[pd.Series, int]:
    """Like :func:`check_races` for a MIMIC-IV(-ED) race column as released: an empty value becomes ``UNKNOWN``
    (returned count, for the loader's ``Cohort.info``), coarse 1.x values (:data:`MIMIC_COARSE_RACES`) are
    accepted, anything else unknown raises naming ``where``. Used by :mod:`mmlib.data.mimic_eye`."""
    clean = values.astype("string").str.strip().str.upper()
    empty = clean.isna() | (clean == "")
    clean = clean.mask(empty, "UNKNOWN")
    unknown = sorted(set(clean) - set(MIMIC_RACES) - set(MIMIC_COARSE_RACES))
    if unknown:
        raise ValueError(f"{where}: unknown race string(s) {unknown[:5]}; expected one of MIMIC-IV's "
                         f"{len(MIMIC_RACES)} race strings, e.g. 'WHITE', 'BLACK/AFRICAN AMERICAN', "
                         f"'HISPANIC/LATINO - PUERTO RICAN', 'ASIAN - CHINESE', 'UNKNOWN', or a coarse 1.x value "
                         f"{list(MIMIC_COARSE_RACES)} (full list: mmlib.data.races.MIMIC_RACES)")
    return clean.astype(object), int(empty.sum())
