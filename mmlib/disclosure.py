"""Disclosure control: what a chapter may show when its source is credentialed (real) data.

MIMIC's data use agreement allows aggregates only: no identifiers, timestamps, examples or per-stay marks,
no count under :data:`MIN_CELL` (11), and no number from which such a count can be derived. This module is
the one place where that rule lives; every table, note and figure of the book passes through it:

- :func:`enforce` switches the rule on for the running chapter; :func:`mmlib.chapter.start` calls it from the
  chapter's ``source`` parameter (never from what is on disk), and on a real source installs
  :func:`install_display_filter`, so that every DataFrame a chapter displays goes through :func:`frame`.
- :func:`count` and :func:`share` are how tables print a count and a percentage; :func:`flow` prints a cohort
  flow whose remaining counts cannot be differenced into a small exclusion; :func:`group_floor` raises the
  smallest group and event count a per-group rate is reported for to :data:`MIN_CELL`
  (:func:`mmlib.metrics.estimable`), and :func:`withheld` says which groups' rates are withheld.
- :func:`per_stay` stops a figure or note that would draw single stays (scatter points, example images,
  ECG strips, outliers): callers draw an aggregate view instead (:mod:`mmlib.plots`).

With a synthetic source every function is the identity: the synthetic book shows everything.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: The smallest count the book publishes for real data (MIMIC: "no cell under 11 patients").
MIN_CELL = 11

#: Shown in place of a suppressed count.
SUPPRESSED = f"<{MIN_CELL}"

_STATE = {"real": False}

#: Column names that hold counts of stays or patients (checked by :func:`frame`).
COUNT_COLUMN = re.compile(r"^(n|n_pos|count|stays|.* stays|stays .*|excluded|remaining|positives|negatives|"
                          r"patients|events|texts)$", re.I)

#: Column or index names that are identifiers (never shown for real data).
ID_COLUMN = re.compile(r"^(general_)?(ed_)?(subject|stay|hadm|study|dicom)(_id)?$", re.I)

_COUNT_CELL = re.compile(r"^\s*(\d+)\s*\(")


class DisclosureError(RuntimeError):
    """Something would publish row-level or small-cell content of a credentialed source."""


def enforce(real: bool) -> None:
    """Switch disclosure control on (``real``) or off for this process (one chapter kernel)."""
    _STATE["real"] = bool(real)


def active() -> bool:
    """Whether the running chapter reads credentialed data (disclosure control on)."""
    return _STATE["real"]


def small(k) -> bool:
    """Whether a count is one the book must not publish for real data (1 to 10; 0 is publishable)."""
    return 0 < int(k) < MIN_CELL


def count(k, *, real: bool | None = None):
    """A count as the book shows it: :data:`SUPPRESSED` when it is small and the source real, else ``k``."""
    real = active() if real is None else real
    return SUPPRESSED if real and small(k) else k


def share(k: int, n: int, *, real: bool | None = None) -> float:
    """``100 * k / n`` (a percentage), or NaN for real data when ``k``, ``n - k`` or ``n`` is a small count
    (a percentage of a known total gives its count back)."""
    real = active() if real is None else real
    if n == 0 or (real and (small(k) or small(n - k) or n < MIN_CELL)):
        return np.nan
    return 100.0 * k / n


def group_floor(min_group: int, min_events: int) -> tuple[int, int]:
    """The smallest group size and event count (positives, negatives) for which per-group rates are reported:
    the caller's values, raised to :data:`MIN_CELL` for real data (a rate of a smaller group gives a count)."""
    if active():
        return max(int(min_group), MIN_CELL), max(int(min_events), MIN_CELL)
    return int(min_group), int(min_events)


def withheld(flag: str) -> bool:
    """Whether a group's per-group numbers are withheld: for real data, groups flagged as too small or with
    too few events (:func:`mmlib.metrics.estimable`)."""
    return active() and str(flag).startswith("too ")


def per_stay(what: str) -> None:
    """Refuse ``what`` (a figure or note drawn from single stays) for real data, with the reason."""
    if active():
        raise DisclosureError(f"{what}: shows single stays, which the book never does for a credentialed source "
                              f"(MIMIC data use agreement); use an aggregate view")


def flow(table: pd.DataFrame, *, real: bool | None = None) -> pd.DataFrame:
    """A cohort flow (``step, excluded, remaining``; first row: what was read) as the book shows it.

    For real data, steps that exclude 1-10 stays are merged with the steps after them (their reasons joined
    with ``;``) until the merged exclusion reaches :data:`MIN_CELL`; trailing small steps are merged into the
    last shown one, or, when there is none, shown as :data:`SUPPRESSED` with the count read withheld. So every
    published exclusion is 0 or at least 11 and no two published counts differ by a small number."""
    real = active() if real is None else real
    if not real:
        return table
    rows = [dict(table.iloc[0])]
    pending: list[dict] = []
    for r in table.iloc[1:].to_dict("records"):
        if not pending and not small(r["excluded"]):
            rows.append(r)
            continue
        pending.append(r)
        total = sum(p["excluded"] for p in pending)
        if total >= MIN_CELL:
            rows.append({"step": "; ".join(p["step"] for p in pending), "excluded": total,
                         "remaining": r["remaining"]})
            pending = []
    if pending:
        total = sum(p["excluded"] for p in pending)
        last = next((i for i in range(len(rows) - 1, 0, -1) if rows[i]["excluded"] >= MIN_CELL), None)
        if last is not None:
            merged = rows[last:] + pending
            rows[last:] = [{"step": "; ".join(p["step"] for p in merged),
                            "excluded": sum(p["excluded"] for p in merged), "remaining": pending[-1]["remaining"]}]
        else:
            rows[0]["remaining"] = "–"
            rows.append({"step": "; ".join(p["step"] for p in pending), "excluded": SUPPRESSED,
                         "remaining": pending[-1]["remaining"]})
    return pd.DataFrame(rows, columns=table.columns)


def frame(df: pd.DataFrame, *, real: bool | None = None) -> pd.DataFrame:
    """A DataFrame as a real-source chapter may display it: an error for identifier columns or index levels
    and for date-times; counts of 1-10 in count columns (:data:`COUNT_COLUMN`) and ``"k (p%)"`` cells with
    a small ``k`` suppressed. The identity for synthetic data."""
    real = active() if real is None else real
    if not real:
        return df
    names = [str(c) for c in (df.columns.get_level_values(-1) if isinstance(df.columns, pd.MultiIndex) else df.columns)]
    index_names = [str(n) for n in df.index.names if n is not None]
    ids = [c for c in names + index_names if ID_COLUMN.match(c)]
    if ids:
        raise DisclosureError(f"a table with identifier column(s) {ids} would be shown; a credentialed source "
                              f"is shown as aggregates only")
    dates = [str(c) for c, t in df.dtypes.items() if pd.api.types.is_datetime64_any_dtype(t)]
    if dates or isinstance(df.index, pd.DatetimeIndex):
        raise DisclosureError(f"a table with date-times ({dates or 'index'}) would be shown; a credentialed source "
                              f"is shown as aggregates only")
    out = df.copy()
    for j, c in enumerate(names):
        col = out.iloc[:, j]
        if COUNT_COLUMN.match(c) and pd.api.types.is_numeric_dtype(col):
            out.isetitem(j, col.astype(object).where(~col.between(1, MIN_CELL - 1), SUPPRESSED))
        elif col.dtype == object:
            out.isetitem(j, col.map(_suppress_cell))
    return out


def _suppress_cell(v):
    m = _COUNT_CELL.match(v) if isinstance(v, str) else None
    return SUPPRESSED if m and small(m.group(1)) else v


def install_display_filter() -> None:
    """In an IPython kernel: route every displayed DataFrame through :func:`frame` (its HTML and plain-text
    forms). Figures are not filtered here: the plotting functions that would draw single stays refuse
    themselves (:func:`per_stay`). No-op outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the chapters only
        return
    ip = get_ipython()
    if ip is None:
        return
    formatters = ip.display_formatter.formatters
    formatters["text/html"].for_type(pd.DataFrame, lambda df: frame(df).to_html())
    formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(frame(df).to_string()))
