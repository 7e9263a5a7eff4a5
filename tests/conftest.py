"""Shared test data: small hand-made inputs that several test files use (pytest fixtures)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

#: embedding width of the toy fusion data
TOY_DIM = 16


def make_toy_data(n: int = 300, seed: int = 0):
    """A :class:`mmlib.train.FusionData` of ``n`` stays: modality ``good`` carries the label, ``noise`` is noise
    and missing for a third of the stays; half train, a quarter validation, a quarter test; random race
    (White / non-White) and gender."""
    from mmlib import train

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(size=(n, 2, TOY_DIM)).astype(np.float32)
    x[:, 0, 0] += 2.5 * (2 * y - 1)
    mask = np.ones((n, 2), bool)
    mask[rng.random(n) < 0.33, 1] = False
    x[~mask] = 0
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    race = rng.choice(["White", "non-White"], n)
    gender = rng.choice(["F", "M"], n)
    stays = pd.DataFrame({"split": split, "race": race, "gender": gender,
                          "race_gender": [f"{r} {g}" for r, g in zip(race, gender)]},
                         index=pd.Index(np.arange(1000, 1000 + n), name="stay_id"))
    return train.FusionData("toy", "y", ["good", "noise"], x, mask, y, stays,
                            pd.DataFrame([{"reason": "none", "stays": 0}]))


@pytest.fixture(scope="session")
def toy_data():
    """Factory of toy fusion data: ``toy_data(n=300, seed=0)`` (see :func:`make_toy_data`); session-scoped, so
    module-scoped fixtures can use it too."""
    return make_toy_data
