"""Report vocabulary and parsing shared by the offline readers and the notes.

Free-text reports (the offline readers' templates, or a VLM's prose) are read back into findings by
:func:`findings_in_text` with a reader's patterns and negation; :func:`merge_thresholds` merges a
reader's decision thresholds with per-call overrides; :func:`worker_count` sizes the readers' worker
pools. :mod:`mmlib.cxr_reader`, :mod:`mmlib.ecg_reader` and :mod:`mmlib.text` import these; this module
imports nothing from them (nor anything else of mmlib).
"""
from __future__ import annotations

import os
import re

import numpy as np


def merge_thresholds(defaults: dict, overrides: dict | None) -> dict:
    """A reader's decision thresholds: ``defaults`` updated with ``overrides`` (unknown names raise)."""
    th = dict(defaults)
    if overrides:
        unknown = set(overrides) - set(th)
        if unknown:
            raise ValueError(f"thresholds: unknown name(s) {sorted(unknown)}; expected some of {sorted(th)}")
        th.update({k: float(v) for k, v in overrides.items()})
    return th


def findings_in_text(text, patterns: dict[str, list[str]], negation: re.Pattern, clause_split: str = r"[.;\n]",
                     section: str | None = None) -> dict[str, bool]:
    """Which findings a free-text report states, clause by clause, ignoring negated mentions.

    ``patterns`` maps each finding to regular expressions (matched on lower-cased text); a match counts
    unless ``negation`` matches earlier in the same clause ("no", "without", ...). With ``section`` (e.g.
    ``"impression:"``) only the text after its last occurrence is read, when present. ``None`` or NaN gives
    all False (a missing report is missing, not negative: the caller counts it).
    """
    out = {k: False for k in patterns}
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return out
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string or None, got {type(text).__name__}")
    low = text.lower()
    if section is not None and (k := low.rfind(section)) >= 0:
        low = low[k + len(section):]
    for clause in re.split(clause_split, low):
        for key, pats in patterns.items():
            if not out[key] and any(not negation.search(clause[: mt.start()])
                                    for pat in pats for mt in re.finditer(pat, clause)):
                out[key] = True
    return out


def worker_count(n_jobs: int | None, n: int, chunk: int) -> int:
    """Worker processes for ``n`` items read in chunks of ``chunk`` (the offline readers): ``n_jobs`` (``None`` or
    negative: the CPU cores this process may use), at most one per chunk; 1 when there are fewer than two chunks
    (a worker's start-up would cost more than it saves)."""
    if n_jobs is None or n_jobs < 0:
        try:
            n_jobs = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n_jobs = os.cpu_count() or 1
    chunks = -(-n // chunk)
    return max(1, min(int(n_jobs), chunks)) if chunks >= 2 else 1
