"""Shared test helper: parameters of normal sinus ECG records for mmlib.data.ecg.simulate_ecg."""
from __future__ import annotations

import numpy as np


def make_params(n: int, **overrides) -> dict[str, np.ndarray]:
    """n normal sinus records (70 bpm, QRS 90 ms, axis 60 deg, no ST change, no LVH) + overrides."""
    p = {
        "heart_rate": np.full(n, 70.0),
        "af": np.zeros(n, dtype=bool),
        "qrs_ms": np.full(n, 90.0),
        "st_mv": np.zeros(n),
        "st_territory": np.ones(n, dtype=int),
        "lvh": np.zeros(n),
        "axis_deg": np.full(n, 60.0),
    }
    for key, value in overrides.items():
        p[key] = np.broadcast_to(np.asarray(value, dtype=p[key].dtype), (n,)).copy()
    return p
