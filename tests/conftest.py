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


#: The tests that read the session's ci book (:func:`ci_book`), by node id prefix: with workers (pytest-xdist, ``-n``)
#: they form one unit of work, so the worker that builds the book runs them all and no other worker builds it again.
#: A test that asks for ``ci_book`` elsewhere is refused at collection (add it here).
CI_BOOK_TESTS = ("tests/test_browser.py::", "tests/test_pipeline.py::test_the_chapters_execute_and_the_book_renders")
#: Whole-book tests whose cohorts, texts and fits are the ci book's (the real-source book reads copies of the same
#: generated folders): they join the ci book's unit of work, so that one of the two books embeds and trains and the
#: other finds the vectors and networks in the run's caches (:func:`_caches_outside_the_checkout`) instead of
#: computing the same things at the same time in another worker.
SAME_WORK_AS_CI_BOOK = ("tests/test_disclosure.py::test_a_real_source_book_publishes_aggregates_only",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """Workers of ``-n auto`` (pyproject's addopts): one per core this process may use, at most 4 -- each worker
    builds books whose chapters run side by side, and imports torch."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``-n`` (and the default ``--dist load``): xdist's per-scope scheduler with every test a scope of its own
    except the :data:`CI_BOOK_TESTS` and :data:`SAME_WORK_AS_CI_BOOK`, which are one. (xdist's ``loadgroup`` would
    do this from marks, but with pytest 9.2 it silently stops grouping: pytest-dev/pytest-xdist#1386.) Scopes go
    out largest first, then in collection order, which puts the whole-book tests first
    (:func:`pytest_collection_modifyitems`)."""
    if config.getvalue("dist") != "load":
        return None  # the user asked for another distribution
    from xdist.scheduler import LoadScopeScheduling

    class CiBookTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "ci_book" if nodeid.startswith(CI_BOOK_TESTS + SAME_WORK_AS_CI_BOOK) else nodeid

    return CiBookTogether(config, log)


def pytest_sessionstart(session):
    """The clock of the whole run (in the process that reports, not in xdist's workers): see
    :func:`pytest_terminal_summary`."""
    if not hasattr(session.config, "workerinput"):
        from mmlib.pipeline import BuildClock

        session.config._mmlib_clock = BuildClock()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The suite's last line says where its time went, as ``mmlib build``'s does: the cores' busy share and the
    CPU-seconds of the run, and the least time those take on this machine's cores (the speed issue's 5 minutes)."""
    clock = getattr(config, "_mmlib_clock", None)
    if clock is not None:
        terminalreporter.write_line(clock.report([], "test run"))


def pytest_collection_modifyitems(config, items):
    """Whole-book tests (``@pytest.mark.book``) first, otherwise in file order, so that the longest work starts
    first and the workers finish together; refuses a test that reads the ci book outside :data:`CI_BOOK_TESTS`."""
    stray = [i.nodeid for i in items if "ci_book" in getattr(i, "fixturenames", ()) and not i.nodeid.startswith(CI_BOOK_TESTS)]
    if stray:
        raise pytest.UsageError(f"{stray} use the ci_book fixture: add them to CI_BOOK_TESTS in tests/conftest.py, "
                                "so that they run in the worker that builds it")
    items.sort(key=lambda i: i.get_closest_marker("book") is None)


@pytest.fixture(scope="session", autouse=True)
def _caches_outside_the_checkout(tmp_path_factory):
    """run_grid's fit cache (mmlib.train.FitCache), the exported ONNX encoders and the embedding cache go to folders
    of this test session, never to the checkout's build/ or the user's ~/.cache; the books the session builds share
    them (graphs exported once, a text embedded once, not once per build folder: cached vectors are byte-identical
    to fresh ones, tests/test_embed.py). Tests that check a cache itself point it at a folder of their own."""
    import os

    names = ("MMLIB_FIT_CACHE", "MMLIB_ONNX_CACHE", "MMLIB_EMBEDDING_CACHE")
    saved = {k: os.environ.get(k) for k in names}
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder of the whole run: its workers share the caches (each writes atomically)
    for k in names:
        os.environ[k] = str(base / "caches" / k.lower())
        Path(os.environ[k]).mkdir(parents=True, exist_ok=True)
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
