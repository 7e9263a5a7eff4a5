"""What the loaders (:mod:`mmlib.data.mimic_eye`, :mod:`mmlib.data.mds_ed`) share: the cohort flow, and
checks that name the file, the column and what was expected when the input is not what the layout says."""
from __future__ import annotations

import numpy as np
import pandas as pd


class Flow:
    """Builds the cohort flow table: every exclusion is a named step with its count."""

    def __init__(self, n: int, what: str):
        self.rows = [{"step": what, "excluded": 0, "remaining": n}]

    def exclude(self, mask: np.ndarray, reason: str) -> np.ndarray:
        n_out = int(np.sum(mask))
        self.rows.append({"step": reason, "excluded": n_out, "remaining": self.rows[-1]["remaining"] - n_out})
        return ~np.asarray(mask, bool)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def require_columns(df: pd.DataFrame, cols, where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected at least {list(cols)}")


def parse_time(s: pd.Series, where: str, ids: pd.Series | None = None, id_name: str = "id") -> pd.Series:
    """``s`` as date-times; raise naming ``where``, an example value and (with ``ids``) a few ``id_name`` values
    of the rows that are not date-times. Empty cells stay NaT."""
    t = pd.to_datetime(s, errors="coerce", format="mixed")
    bad = t.isna() & s.notna()
    if bad.any():
        who = f" for {id_name} {_ids(ids[bad])}" if ids is not None else ""
        raise ValueError(f"{where}: {int(bad.sum())} value(s) are not date-times (e.g. {s[bad].iloc[0]!r}{who}); "
                         f"expected 'YYYY-MM-DD HH:MM:SS'")
    return t


# ------------------------------------------------------------------- checks that name the offending ids
def _ids(ids: pd.Series, k: int = 3) -> list:
    return [v.item() if hasattr(v, "item") else v for v in pd.unique(ids)[:k]]


def drop_duplicate_rows(df: pd.DataFrame, where: str, counts: dict) -> pd.DataFrame:
    """A new frame: ``df`` without exact duplicate rows (how many were removed is added to ``counts[where]``).
    Always a copy of its own, never a view of ``df``, so the loaders may assign columns on it without touching
    the caller's table."""
    dup = df.duplicated()
    if not dup.any():
        return df.copy()
    counts[where] = counts.get(where, 0) + int(dup.sum())
    return df.loc[~dup].copy()


def require_unique(df: pd.DataFrame, key, where: str, what: str) -> None:
    """Raise if rows that differ share ``key`` (run after :func:`drop_duplicate_rows`), naming a few keys."""
    dup = df.duplicated(key, keep=False)
    if dup.any():
        k = df.loc[dup, key]
        shown = _ids(k) if isinstance(key, str) else k.drop_duplicates().head(3).values.tolist()
        raise ValueError(f"{where}: {int(dup.sum())} rows share a {key} with different content (e.g. {shown}); "
                         f"expected one row per {what}")


def numeric_field(df: pd.DataFrame, col: str, where: str, id_col: str, *, integer: bool = False) -> pd.Series:
    """Column ``col`` as float; raise naming ``where``, ``col`` and a few ``id_col`` values if a value is not a
    number, is infinite, or (``integer``) has a fractional part. Blank stays NaN."""
    s = df[col]
    v = pd.to_numeric(s, errors="coerce").astype(float)
    bad = v.isna() & s.notna() & (s.astype("string").str.strip() != "")
    if bad.any():
        raise ValueError(f"{where} column {col!r}: {int(bad.sum())} value(s) are not numbers (e.g. "
                         f"{s[bad].iloc[0]!r} for {id_col} {_ids(df.loc[bad, id_col])}); expected a number")
    inf = np.isinf(v)
    if inf.any():
        raise ValueError(f"{where} column {col!r}: {int(inf.sum())} non-finite value(s) for {id_col} "
                         f"{_ids(df.loc[inf, id_col])}; expected finite numbers")
    if integer and (v.dropna() % 1 != 0).any():
        frac = v.notna() & (v % 1 != 0)
        raise ValueError(f"{where} column {col!r}: non-integer value(s) (e.g. {float(v[frac].iloc[0])!r}) for {id_col} "
                         f"{_ids(df.loc[frac, id_col])}; expected whole numbers")
    return v


def blank_out_of_range(v: pd.Series, lo: float, hi: float, where: str, counts: dict) -> pd.Series:
    """``v`` with values outside ``[lo, hi]`` set to NaN; their number is added to ``counts[where]``."""
    out = v.notna() & ((v < lo) | (v > hi))
    if out.any():
        counts[where] = counts.get(where, 0) + int(out.sum())
    return v.mask(out)


def check_split_classes(stays: pd.DataFrame, target: str, where: str) -> None:
    """Raise if a split holds only one class of ``target`` (or none defined): no AUROC can be computed there."""
    for name, g in stays.groupby("split"):
        classes = sorted(pd.unique(g[target].dropna()).tolist())
        if len(classes) < 2:
            raise ValueError(f"{where}: split {name!r} has only class(es) {classes} of the primary target "
                             f"{target!r} ({len(g)} stays); expected both 0 and 1 in every split (a larger cohort, "
                             f"other split fractions or another split seed)")


# ------------------------------------------------------------------ generic column checks (shared)
def _examples(ids: pd.Series | np.ndarray | None, mask, k: int = 5) -> list:
    """A few offending ids (the first ``k`` where ``mask`` holds), for error messages."""
    m = np.asarray(mask, bool)
    if ids is None:
        return [int(i) for i in np.flatnonzero(m)[:k]]
    vals = np.asarray(ids)[m][:k]
    return [v.item() if hasattr(v, "item") else v for v in vals]


def numeric_column(s: pd.Series, where: str, ids=None, expected: str = "numbers") -> pd.Series:
    """``s`` as float64; raise naming ``where`` (file and column), a few ``ids`` and what was expected when a
    value is not a number, or is +-infinity. Empty cells stay NaN. Used by the loaders on every numeric field."""
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
        if bad.any():
            raise ValueError(f"{where}: {int(bad.sum())} value(s) are not numbers (e.g. {s[bad].iloc[0]!r} at id(s) "
                             f"{_examples(ids, bad)}); expected {expected}")
        s = num
    out = s.astype(float)
    inf = np.isinf(out.to_numpy())
    if inf.any():
        raise ValueError(f"{where}: {int(inf.sum())} value(s) are infinite (id(s) {_examples(ids, inf)}); "
                         f"expected finite {expected}")
    return out


def integer_column(s: pd.Series, where: str, ids=None, lo: float | None = None, hi: float | None = None,
                   expected: str = "integers") -> pd.Series:
    """``s`` as int64: every value present, a whole number and within ``[lo, hi]``; otherwise raise naming
    ``where``, the offending values and a few ``ids`` (used for ids, folds and counters)."""
    x = numeric_column(s, where, ids, expected)
    bad = x.isna() | (x % 1 != 0)
    if lo is not None:
        bad |= x < lo
    if hi is not None:
        bad |= x > hi
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} value(s) are not {expected} (found "
                         f"{pd.unique(s[bad].astype(str))[:5].tolist()} at id(s) {_examples(ids, bad)}); "
                         f"expected {expected}")
    return x.astype(np.int64)


def unique_ids(s: pd.Series, where: str, what: str = "ids") -> None:
    """Raise naming ``where`` and a few duplicated values when ``s`` holds a value twice."""
    dup = s.duplicated(keep=False)
    if dup.any():
        raise ValueError(f"{where}: {int(s[dup].nunique())} duplicated {what} (e.g. "
                         f"{[v.item() if hasattr(v, 'item') else v for v in pd.unique(s[dup])[:5]]}); "
                         f"expected each once")


def clip_to_range(df: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Set values outside their column's closed range to NaN; return the frame and how many were set per
    column (only columns with any). ``ranges``: column -> (low, high). Used for physiological ranges."""
    df = df.copy()
    counts = {}
    for col, (lo, hi) in ranges.items():
        if col not in df:
            continue
        out = (df[col] < lo) | (df[col] > hi)
        if out.any():
            counts[col] = int(out.sum())
            df.loc[out, col] = np.nan
    return df, counts


def non_finite_rows(a: np.ndarray) -> np.ndarray:
    """Bool per record (first axis) of an array of records: True where any value is NaN or infinite."""
    a = np.asarray(a)
    return ~np.isfinite(a.reshape(len(a), -1)).all(1)
