"""Shared test data: small hand-made inputs that several test files use (pytest fixtures)."""
from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(scope="session", autouse=True)
def _caches_outside_the_checkout(tmp_path_factory):
    """run_grid's fit cache (mmlib.train.FitCache), the exported ONNX encoders and the embedding cache go to folders
    of this test session, never to the checkout's build/ or the user's ~/.cache; the books the session builds share
    them (graphs exported once, a text embedded once, not once per build folder: cached vectors are byte-identical
    to fresh ones, tests/test_embed.py). Tests that check a cache itself point it at a folder of their own."""
    import os

    names = ("MMLIB_FIT_CACHE", "MMLIB_ONNX_CACHE", "MMLIB_EMBEDDING_CACHE")
    saved = {k: os.environ.get(k) for k in names}
    for k in names:
        os.environ[k] = str(tmp_path_factory.mktemp(k.lower()))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def toy_data():
    """Factory of toy fusion data: ``toy_data(n=300, seed=0)`` (see :func:`make_toy_data`); session-scoped, so
    module-scoped fixtures can use it too."""
    return make_toy_data


class CiBook:
    """The ``ci``-profile book built once per test session (see :func:`ci_book`): its build root (``build/`` and
    ``data/`` below it), the parameters, the chapters' run summaries and the rendered HTML folder."""

    def __init__(self, root, params, summaries, html):
        self.root, self.params, self.summaries, self.html = root, params, summaries, html

    def use(self, monkeypatch):
        """Point the pipeline at this build (as the build itself ran): MMLIB_BUILD_DIR and MMLIB_DATA_DIR."""
        monkeypatch.setenv("MMLIB_BUILD_DIR", str(self.root / "build"))
        monkeypatch.setenv("MMLIB_DATA_DIR", str(self.root / "data"))
        return self


@pytest.fixture(scope="session")
def ci_book(tmp_path_factory):
    """Every chapter executed once with papermill on the ``ci`` profile (240 patients) in a build folder of its
    own, and the book rendered from it with the renderer the machine has. The end-to-end test
    (tests/test_pipeline.py) reads its artifacts and pages, and the browser check (tests/test_browser.py) opens the
    pages: one build for both, as the two would otherwise each execute the whole book."""
    import os

    from mmlib import pipeline
    from mmlib.book import render_book

    root = tmp_path_factory.mktemp("ci_book")
    saved = {k: os.environ.get(k) for k in ("MMLIB_BUILD_DIR", "MMLIB_DATA_DIR")}
    os.environ["MMLIB_BUILD_DIR"], os.environ["MMLIB_DATA_DIR"] = str(root / "build"), str(root / "data")
    try:
        params = pipeline.load_profile("ci", [("n_patients", 240)])
        summaries = pipeline.build(params, render=False, progress=False)
        res = render_book(Path(__file__).resolve().parents[1], pipeline.build_dir() / "ci" / "executed",
                          out_dir=root / "book")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CiBook(root, params, summaries, res.html_dir)
