"""Patient-level split assignment, shared by the loader (MIMIC-Eye's train/val/test) and the generator
(MDS-ED's ``strat_fold``): exact fractions within every stratum, deterministic given the seed."""
from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_assign(strata: np.ndarray, fractions: tuple[float, ...], seed: int) -> np.ndarray:
    """Assign each row to bucket 0..k-1 with the given fractions, exactly within every stratum.

    Rows are shuffled within each stratum by a generator seeded with ``seed``; the first ``fractions[0]``
    of each stratum go to bucket 0, and so on. Deterministic given ``seed`` and the order of ``strata``.
    """
    fr = np.asarray(fractions, dtype=float)
    if (fr < 0).any() or abs(fr.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions: expected non-negative numbers summing to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(strata), dtype=np.int64)
    for s in pd.unique(strata):
        idx = np.flatnonzero(strata == s)
        idx = idx[rng.permutation(idx.size)]
        edges = np.round(np.cumsum(fr) * idx.size).astype(int)
        out[idx] = np.searchsorted(edges, np.arange(idx.size), side="right")
    return out
