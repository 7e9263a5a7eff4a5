"""Building blocks shared by the synthetic MIMIC-Eye and MDS-ED generators (:mod:`mmlib.data.synth`).

Identifiers, MIMIC-style times, the ED timeline, triage acuity with under-triage, the pulse oximeter with
its over-read, the latent need for care, and the two extras a synthetic root holds beyond the real layout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .latent import BiasKnobs


def unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """``n`` distinct sorted integer ids in ``[low, high)`` (MIMIC-style subject / stay / study ids)."""
    return low + np.sort(rng.choice(high - low, size=n, replace=False))


def fmt_time(t: np.ndarray) -> np.ndarray:
    """datetime64 -> 'YYYY-MM-DD HH:MM:SS' strings (MIMIC's format)."""
    return np.char.replace(np.datetime_as_string(t.astype("datetime64[s]"), unit="s"), "T", " ")


def as_timedelta(m) -> np.ndarray:
    """Minutes (float array) -> ``timedelta64[s]``, rounded to the second."""
    return (np.asarray(m, dtype=float) * 60).round().astype("timedelta64[s]")


def ed_timeline(rng: np.random.Generator, n: int, min_hours: float):
    """ED arrival times (MIMIC's shifted years 2150-2190, whole minutes), length of stay (h) and departure."""
    intime = np.datetime64("2150-01-01T00:00:00") + (rng.random(n) * 40 * 365 * 86400).astype("timedelta64[s]")
    intime = intime.astype("datetime64[m]").astype("datetime64[s]")
    los_h = np.clip(rng.gamma(3.0, 2.2, n) + 1.5, min_hours, 30)
    return intime, los_h, intime + as_timedelta(los_h * 60)


def f_from_c(c):
    """Degrees Celsius -> degrees Fahrenheit (MIMIC-IV-ED charts temperature in Fahrenheit)."""
    return c * 9 / 5 + 32


def triage_acuity(view: pd.DataFrame, knobs: BiasKnobs, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ESI triage level 1 (most severe) .. 5 as recorded, and as it would be without under-triage."""
    c = view
    score = (view["severity"].to_numpy() + 0.9 * c.sepsis + 0.7 * c.acs + 0.4 * c.pneumonia
             + 0.4 * c.heart_failure + rng.normal(0, 0.55, len(view)))
    cuts = np.array([-1.7, -0.6, 0.9, 2.2])  # score above cut k => at least that severe
    unbiased = 5 - np.searchsorted(cuts, score, side="right")
    recorded = 5 - np.searchsorted(cuts, score - knobs.effect("under_triage", view["race5"].to_numpy()),
                                   side="right")
    return recorded.astype(float), unbiased.astype(float)


def pulse_oximeter(sao2: np.ndarray, race5: np.ndarray, knobs: BiasKnobs, noise: np.ndarray) -> np.ndarray:
    """Pulse-oximeter reading: SaO2 + measurement noise + the group over-read, which grows as SaO2 falls."""
    over = knobs.effect("spo2_overread", race5) * (1 + np.clip(96 - sao2, 0, None) / 6)
    return np.clip(np.round(sao2 + noise + over), 50, 100)


def need_logit(view: pd.DataFrame) -> np.ndarray:
    """The log-odds of needing hospital care implied by a (modality view of the) latent state."""
    c = view
    return (-1.1 + 1.8 * view["severity"] + 1.2 * c.sepsis + 1.2 * c.pneumonia + 1.2 * c.heart_failure
            + 1.0 * c.acs + 0.9 * c.aki + 0.6 * c.copd + 0.25 * (view["age"] - 55) / 10).to_numpy(float)


@dataclass
class SyntheticTables:
    """Everything a generator writes, before writing: the real-layout tables, the latent truth, and the
    per-record inputs of the image / ECG renderers."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    render: pd.DataFrame


def write_extras(folder: Path, truth: pd.DataFrame, meta: dict | None) -> None:
    """The two files a synthetic root has beyond the real layout: latent truth and generator parameters."""
    truth.to_parquet(folder / "synthetic_truth.parquet")
    (folder / "synthetic_params.json").write_text(json.dumps(meta or {}, indent=2, sort_keys=True))
