"""The build pipeline: profiles, keyed artifacts, papermill execution, reuse, failures, rendering.

The end-to-end tests execute the real chapter 01 with papermill on the ``ci`` profile and render the real
book with the renderer the machine has; the mechanism tests use a tiny throw-away project.
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from mmlib import pipeline
from mmlib.__main__ import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated_build(tmp_path, monkeypatch):
    """Build and data folders in tmp, so tests never touch the developer's build/."""
    monkeypatch.setenv("MMLIB_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MMLIB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _nb(path: Path, params: str, body: str, needs: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(textwrap.dedent(params))
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), p,
                nbformat.v4.new_code_cell(textwrap.dedent(body))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["mmlib"] = {"needs": needs}
    nbformat.write(nb, path)


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    """A two-chapter project: 01 writes a number, 02 reads it (needs 01)."""
    root = tmp_path / "proj"
    (root / "chapters").mkdir(parents=True)
    (root / "params").mkdir()
    (root / "index.md").write_text("# Preface\n\nToy book.\n")
    (root / "_quarto.yml").write_text(textwrap.dedent("""
        project: {type: book, output-dir: _book}
        book:
          title: Toy
          chapters: [index.md, chapters/01_make.ipynb, chapters/02_use.ipynb]
    """))
    # source "real": the pipeline does not generate the synthetic cohorts for this toy book
    (root / "params" / "demo.yml").write_text("value: 3\nfail: false\nsource: real\n")
    _nb(root / "chapters" / "01_make.ipynb", """
        profile = "demo"
        artifact_dir = None
        inputs = None
        value = 1
        fail = False
        source = "real"
    """, """
        from mmlib import pipeline
        from mmlib.artifacts import write_json
        ctx = pipeline.context("01", globals())
        if fail:
            raise RuntimeError("asked to fail")
        write_json({"value": value * 10}, ctx.out / "value.json")
        print("made", value * 10)
    """, [])
    _nb(root / "chapters" / "02_use.ipynb", """
        profile = "demo"
        artifact_dir = None
        inputs = None
    """, """
        import json
        from mmlib import pipeline
        from mmlib.artifacts import write_json
        ctx = pipeline.context("02", globals())
        v = json.loads((ctx.input("01") / "value.json").read_text())["value"]
        write_json({"double": 2 * v}, ctx.out / "double.json")
    """, ["01"])
    monkeypatch.setenv("MMLIB_ROOT", str(root))
    monkeypatch.setenv("MMLIB_BUILD_DIR", str(root / "build"))
    return root


def test_profile_merges_overrides_with_dotted_names():
    p = pipeline.load_profile("ci", [("seed", 7), ("bias_knobs.label_bias", 0)])
    assert p["seed"] == 7 and p["bias_knobs"] == {"label_bias": 0} and p["profile"] == "ci"
    assert pipeline.parse_value("[0.5, 0.5]") == [0.5, 0.5] and pipeline.parse_value("null") is None
    with pytest.raises(FileNotFoundError, match="no such profile"):
        pipeline.load_profile("nope")


def test_broken_profile_yaml_names_file_and_line(toy_project):
    (toy_project / "params" / "broken.yml").write_text("value: 3\nfail: [true\n")
    with pytest.raises(ValueError, match=r"broken\.yml:3:1: not valid YAML"):
        pipeline.load_profile("broken")


@pytest.mark.parametrize("name, text, expected", [
    ("seed", "abc", "parameter seed: got 'abc'; expected a whole number >= 0"),
    ("seeds", "[]", "parameter seeds: got []; expected a list of at least 1 items, got 0"),
    ("seeds", "3", "parameter seeds: got 3; expected a list (at least 1 items)"),
    ("lr", "-1", "parameter lr: got -1; expected a number > 0"),
    ("dropout", "1.5", "parameter dropout: got 1.5; expected a number >= 0 and < 1"),
    ("split_fractions", "[0.6, 0.2, 0.2", "parameter split_fractions: got '[0.6, 0.2, 0.2'; expected a list "
                                          "(exactly 3 items) (it was read as text"),
    ("split_fractions", "[0.6, 0.2, 0.1]", "a list summing to 1 (it sums to 0.9)"),
    ("fusion_models", "[paper, nope]", "item 'nope' is not"),
    ("threshold", "median", "expected a number >= 0 and <= 1 or one of 'val_f1', 'val_youden'"),
    ("every_order", "1", "parameter every_order: got 1; expected true or false"),
    ("source", "local", "parameter source: got 'local'; expected one of 'synthetic', 'real'"),
    ("race_grouping", "race", "parameter race_grouping: got 'race'; expected one of 'race_binary', 'race5'"),
    ("cohorts", "[mimic_eye, eicu]", "parameter cohorts: got ['mimic_eye', 'eicu']; expected a list whose every item"
                                     " is one of 'mimic_eye', 'mds_ed' (item 'eicu' is not)"),
    ("cohorts", "mds_ed", "parameter cohorts: got 'mds_ed'; expected a list (at least 1 items)"),
])
def test_parameters_are_checked_before_any_chapter_runs(name, text, expected):
    params = pipeline.load_profile("ci", [(name, pipeline.parse_value(text))])
    with pytest.raises(ValueError) as err:
        pipeline.plan(params)
    assert expected in str(err.value)


def test_every_profile_passes_the_parameter_checks():
    for profile in ("ci", "demo", "full"):
        pipeline.plan(pipeline.load_profile(profile))


def test_undeclared_parameters_keep_the_type_of_their_default(toy_project):
    with pytest.raises(ValueError, match=r"parameter value: got 'x'; expected a number \(like its default\)"):
        pipeline.plan(pipeline.load_profile("demo", [("value", "x")]))


def test_unknown_parameter_is_named():
    params = pipeline.load_profile("ci", [("sed", 1)])
    with pytest.raises(ValueError, match=r"\['sed'\] are not parameters of any chapter"):
        pipeline.plan(params)


def test_keys_follow_parameters_and_inputs(toy_project):
    a = dict(pipeline.plan(pipeline.load_profile("demo"))[i][::-1] for i in range(2))
    same = [k for _, k in pipeline.plan(pipeline.load_profile("demo"))]
    changed = [k for _, k in pipeline.plan(pipeline.load_profile("demo", [("value", 4)]))]
    assert list(a) == same
    assert changed[0] != same[0], "chapter 01's key must change with its parameter"
    assert changed[1] != same[1], "chapter 02's key must change when its input's key changes"


def test_run_reuse_and_missing_upstream(toy_project, capfd):
    params = pipeline.load_profile("demo")
    with pytest.raises(RuntimeError, match=r"needs the artifact of chapter 01.*python -m mmlib run 01"):
        pipeline.run("02", params)
    s1 = pipeline.run("01", params, force=False)
    # the kernel logs errors only (pipeline.KERNEL_ARGUMENTS): no warning about unencrypted TCP in the output
    assert "running over TCP" not in capfd.readouterr().err
    assert s1.status == "executed" and "value.json" in s1.artifacts
    assert json.loads((pipeline.artifact_dir("01", s1.key) / "value.json").read_text()) == {"value": 30}
    s2 = pipeline.run("02", params)
    assert json.loads((pipeline.artifact_dir("02", s2.key) / "double.json").read_text()) == {"double": 60}
    again = pipeline.build(params, render=False, progress=False)
    assert [s.status for s in again] == ["reused", "reused"]
    assert "reused" in again[0].line() and "value.json" in again[0].line()


def test_a_rerun_that_writes_the_same_bytes_leaves_downstream_keys_unchanged(toy_project):
    # chapter 02's key hashes what chapter 01 wrote, not chapter 01's key: an edit that changes only how chapter 01
    # shows its result re-runs chapter 01 and reuses chapter 02; an edit that changes what it writes re-runs both
    params = pipeline.load_profile("demo")
    nb_path = toy_project / "chapters" / "01_make.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    # wall-clock measurements differ on every run and are not content (pipeline.TIMING_NAME)
    nb.cells[-1].source += ('\nimport time, pandas as pd\nwrite_json({"n": 1, "fit_seconds": time.perf_counter()}, '
                            'ctx.out / "timing.json")\npd.DataFrame({"fit": [1, 2], "seconds": [time.perf_counter()] * 2})'
                            '.to_parquet(ctx.out / "log.parquet")')
    nbformat.write(nb, nb_path)
    first = pipeline.build(params, render=False, progress=False)
    assert [s.status for s in first] == ["executed", "executed"]
    done = json.loads((pipeline.artifact_dir("01", first[0].key) / pipeline.DONE).read_text())
    assert done["content"] == pipeline.content_digest(pipeline.artifact_dir("01", first[0].key))
    nb.cells[-1].source += '\nprint("the same number, said differently")'
    nbformat.write(nb, nb_path)
    shown = pipeline.build(params, render=False, progress=False)
    assert shown[0].key != first[0].key and shown[0].status == "executed"
    assert (shown[1].key, shown[1].status) == (first[1].key, "reused")
    nb.cells[-1].source = nb.cells[-1].source.replace("value * 10}", "value * 10 + 1}")
    nbformat.write(nb, nb_path)
    written = pipeline.build(params, render=False, progress=False)
    assert [s.status for s in written] == ["executed", "executed"] and written[1].key != first[1].key
    # a zip archive is compared by its members, not by the time stamped into its headers
    import numpy as np

    folder = toy_project / "zips"
    folder.mkdir()
    np.savez(folder / "a.npz", x=np.arange(3))
    before = pipeline.content_digest(folder)
    import time
    time.sleep(2.1)  # zip headers count time in 2-second steps
    np.savez(folder / "a.npz", x=np.arange(3))
    assert pipeline.content_digest(folder) == before
    np.savez(folder / "a.npz", x=np.arange(4))
    assert pipeline.content_digest(folder) != before
    # a timing is left out, every other number counts, in JSON and in tables
    import pandas as pd

    (folder / "a.npz").unlink()
    (folder / "s.json").write_text(json.dumps({"auroc": 0.7, "train_seconds": 1.0, "fits": [{"seconds": 2}]}))
    pd.DataFrame({"auroc": [0.7], "seconds": [1.0]}).to_parquet(folder / "t.parquet")
    before = pipeline.content_digest(folder)
    (folder / "s.json").write_text(json.dumps({"train_seconds": 9.0, "auroc": 0.7, "fits": [{"seconds": 5}]}))
    pd.DataFrame({"auroc": [0.7], "seconds": [3.0]}).to_parquet(folder / "t.parquet")
    assert pipeline.content_digest(folder) == before
    pd.DataFrame({"auroc": [0.71], "seconds": [3.0]}).to_parquet(folder / "t.parquet")
    assert pipeline.content_digest(folder) != before
    pd.DataFrame({"auroc": [0.7], "seconds": [3.0]}).to_parquet(folder / "t.parquet")
    (folder / "s.json").write_text(json.dumps({"train_seconds": 9.0, "auroc": 0.71, "fits": [{"seconds": 5}]}))
    assert pipeline.content_digest(folder) != before


def _add_side_chapter(root: Path, stall: str = "") -> None:
    """A third toy chapter, 03, that needs only 01 (so it can run beside 02), recording when it ran; with
    ``stall``, chapter 02 waits until that file exists."""
    _nb(root / "chapters" / "03_side.ipynb", """
        profile = "demo"
        artifact_dir = None
        inputs = None
        fail_side = False
    """, """
        import json, time
        from mmlib import pipeline
        from mmlib.artifacts import write_json
        ctx = pipeline.context("03", globals())
        v = json.loads((ctx.input("01") / "value.json").read_text())["value"]
        if fail_side:
            raise ValueError("side chapter asked to fail")
        write_json({"plus": v + 1}, ctx.out / "plus.json")
    """, ["01"])
    cfg = (root / "_quarto.yml").read_text().replace("chapters/02_use.ipynb]", "chapters/02_use.ipynb, chapters/03_side.ipynb]")
    (root / "_quarto.yml").write_text(cfg)
    (root / "params" / "demo.yml").write_text("value: 3\nfail: false\nfail_side: false\nsource: real\n")
    if stall:  # 02 finishes only once 03 has started: proof that both ran at once
        nb = nbformat.read(root / "chapters" / "02_use.ipynb", as_version=4)
        nb.cells[-1].source = (f"import pathlib, time\nt0 = time.time()\nwhile not pathlib.Path({stall!r}).exists():\n"
                               f"    assert time.time() - t0 < 120, 'chapter 03 never started'\n    time.sleep(0.05)\n"
                               + nb.cells[-1].source)
        nbformat.write(nb, root / "chapters" / "02_use.ipynb")
        nb = nbformat.read(root / "chapters" / "03_side.ipynb", as_version=4)
        nb.cells[-1].source = f"import pathlib\npathlib.Path({stall!r}).touch()\n" + nb.cells[-1].source
        nbformat.write(nb, root / "chapters" / "03_side.ipynb")


def test_chapters_that_do_not_need_each_other_run_side_by_side_with_the_same_results(toy_project, tmp_path, capsys):
    # 02 and 03 both need only 01: with two jobs they run at once (02 waits for 03 to start, so a build that ran
    # them one after the other would fail), and the artifacts are the bytes a one-at-a-time build writes
    _add_side_chapter(toy_project, stall=str(tmp_path / "03-started"))
    params = pipeline.load_profile("demo")
    together = pipeline.build(params, render=False, progress=False, jobs=2)
    assert [(s.chapter, s.status) for s in together] == [("01", "executed"), ("02", "executed"), ("03", "executed")]
    out = capsys.readouterr().out
    assert re.search(r"chapter 0[23]: executing \(alongside 0[23]\)", out), out
    assert json.loads((pipeline.artifact_dir("03", together[2].key) / "plus.json").read_text()) == {"plus": 31}
    digests = {s.chapter: pipeline.content_digest(pipeline.artifact_dir(s.chapter, s.key)) for s in together}
    shutil.rmtree(pipeline.build_dir())
    (tmp_path / "03-started").touch()  # one at a time, 02 runs first: let it through
    assert main(["build", "--no-render", "-j", "1"]) == 0  # the command line, which ends with where the time went
    out = capsys.readouterr().out
    times = {c: float(t) for c, t in re.findall(r"^chapter (\d\d): executed in ([\d.]+) s", out, re.M)}
    assert sorted(times) == ["01", "02", "03"], out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"chapters executed in ([\d.]+) s; the machine's (\d+) cores were (\d+)% busy \((\d+) CPU-seconds, "
                     r"which take at least (\d+) s on \2 cores\); the longest chain of chapters, 01 -> (0[23]), executed "
                     r"in ([\d.]+) s", last)
    assert m, last
    slower = max(times["02"], times["03"])  # the chain's last chapter is the slower of the two (the times printed
    assert times[m[6]] == pytest.approx(slower, abs=0.11)  # are rounded to 0.1 s: a tie may go either way)
    assert float(m[7]) == pytest.approx(times["01"] + slower, abs=0.11)
    # the busy share: system-wide CPU ticks (1/100 s) over the wall time, so a fully busy machine may read 101%
    assert float(m[1]) >= float(m[7]) and int(m[2]) >= 1 and 0 < int(m[3]) <= 102 and int(m[4]) > 0
    assert [k for _, k in pipeline.plan(params)] == [s.key for s in together]  # same keys, and the same bytes:
    assert {s.chapter: pipeline.content_digest(pipeline.artifact_dir(s.chapter, s.key)) for s in together} == digests
    assert main(["build", "--no-render", "-j", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(": reused in") == 3 and "chain" not in out.splitlines()[-1], out  # nothing executed: no chain


def test_a_cold_build_generates_the_cohorts_side_by_side_and_prepares_the_encoder_alongside(
        isolated_build, monkeypatch, capfd):
    # what build() does before the chapters with two jobs: each cohort in a process of its own and chapter 02's
    # ONNX graphs exported beside them (the session's ONNX cache: exported once per test run); the cohorts are
    # the bytes of one-after-the-other generation, and a second call reuses them and prepares nothing
    params = pipeline.load_profile("ci", [("n_patients", 120)])
    pipeline.ensure_synthetic_cohorts(params, progress=False, jobs=2)
    out = capfd.readouterr().out
    assert re.search(r"encoder all-MiniLM-L6-v2: ONNX graphs ready in [\d.]+ s \(numerics [0-9a-f]{12}\)", out), out
    n = params["n_patients"]
    assert len(re.findall(rf"^generated synthetic (mimic_eye|mds_ed) \({n} stays\)", out, re.M)) == 2, out
    onnx = pipeline.embedding_caches()["onnx_dir"]
    assert sorted(p.suffix for p in onnx.rglob("*.onnx")) == [".onnx", ".onnx"], list(onnx.rglob("*"))
    side = {p.name: pipeline.content_digest(p) for p in pipeline.data_dir().iterdir()}
    monkeypatch.setenv("MMLIB_DATA_DIR", str(isolated_build / "one_by_one"))
    pipeline.ensure_synthetic_cohorts(params, progress=False, jobs=1)
    assert "encoder" not in capfd.readouterr().out  # one job: chapter 02 exports the graphs itself
    assert {p.name: pipeline.content_digest(p) for p in pipeline.data_dir().iterdir()} == side
    assert len(side) == 2
    pipeline.ensure_synthetic_cohorts(params, progress=False, jobs=2)
    again = capfd.readouterr().out
    assert again.count("reusing") == 2 and "generated" not in again and "encoder" not in again, again


def test_a_chapter_failing_beside_another_lets_it_finish_then_names_the_failure(toy_project, monkeypatch):
    _add_side_chapter(toy_project)
    params = pipeline.load_profile("demo", [("fail_side", True)])
    with pytest.raises(pipeline.ChapterFailed) as err:
        pipeline.build(params, render=False, progress=False, jobs=2)
    msg = str(err.value)
    assert msg.startswith("chapter 03 (03_side.ipynb) failed: ValueError: side chapter asked to fail"), msg
    assert err.value.chapter == "03" and "raise ValueError" in msg
    keys = {c.id: k for c, k in pipeline.plan(params)}
    assert pipeline.is_complete("02", keys["02"]), "the chapter running beside the failure still publishes"
    assert not pipeline.artifact_dir("03", keys["03"]).exists()
    assert not [p for p in (pipeline.build_dir() / "artifacts").rglob("*") if ".tmp-" in p.name]
    monkeypatch.setenv("MMLIB_BUILD_JOBS", "two")
    with pytest.raises(ValueError, match="MMLIB_BUILD_JOBS='two'"):
        pipeline.build_jobs()
    with pytest.raises(ValueError, match="jobs=0"):
        pipeline.build_jobs(0)


def test_failed_chapter_leaves_no_artifact(toy_project):
    params = pipeline.load_profile("demo", [("fail", True)])
    (ch, key), = [(c, k) for c, k in pipeline.plan(params) if c.id == "01"]
    with pytest.raises(pipeline.ChapterFailed) as err:
        pipeline.run("01", params)
    # the user learns what failed and where without opening the notebook
    msg = str(err.value)
    assert msg.startswith("chapter 01 (01_make.ipynb) failed: RuntimeError: asked to fail")
    assert "line 5:\n    raise RuntimeError(\"asked to fail\")" in msg and "01_make.ipynb" in msg.splitlines()[-1]
    folder = pipeline.artifact_dir("01", key)
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if ".tmp" in p.name]
    assert (pipeline.build_dir() / "failed" / "01_make.ipynb").exists()


def _png_images(page: str, folder: Path) -> list[bytes]:
    """The PNG images of a rendered page, as bytes: inline (``data:image/png;base64,...``, how the figures with
    captions and alt text are written) or files beside the page; an image that does not decode or is missing
    fails the test."""
    import base64

    found = []
    for src in re.findall(r'<img[^>]+src="([^"]+)"', page):
        if src.startswith("data:image/png;base64,"):
            found.append(base64.b64decode(src.split(",", 1)[1], validate=True))
        elif src.endswith(".png"):
            assert (folder / src).resolve().exists(), src
            found.append((folder / src).resolve().read_bytes())
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in found), "every image is a PNG"
    return found


@pytest.mark.slow
@pytest.mark.book  # reads the session's ci book: in the worker that builds it (conftest.CI_BOOK_TESTS)
def test_the_chapters_execute_and_the_book_renders(ci_book, monkeypatch, tmp_path):
    ci_book.use(monkeypatch)  # the session's ci build (conftest.ci_book): every chapter executed once, rendered
    params, summaries = ci_book.params, ci_book.summaries
    assert [x.chapter for x in summaries] == list(pipeline.chapters())
    s = summaries[0]
    assert s.status == "executed"
    assert {"cohort_mimic_eye", "cohort_mds_ed", "summary.json"} <= set(s.artifacts)
    nb = nbformat.read(pipeline.artifact_dir("01", s.key) / "executed.ipynb", as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]
    assert ".tmp-" not in injected[0].source and s.key in injected[0].source
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) >= 6, "availability, prevalence (x2 cohorts), X-ray and ECG figures"
    summary = json.loads((pipeline.artifact_dir("01", s.key) / "summary.json").read_text())
    assert summary["mimic_eye"]["stays"] > 200 and summary["mds_ed"]["origin"] == "synthetic"
    # the same parameters reuse everything; the cohort artifact reloads
    again = pipeline.build(params, render=False, progress=False)
    assert again[0].status == "reused"
    from mmlib.data import Cohort

    c = Cohort.load(pipeline.artifact_dir("01", s.key) / "cohort_mimic_eye")
    assert set(c.availability.columns) == {"arrival", "vitals", "codes", "cxr"}
    # chapter 02: one text per stay and modality, one embedding matrix per modality, fidelity by group
    s2 = summaries[1]
    assert {"texts_mimic_eye.parquet", "embeddings_mds_ed.npz", "fidelity.parquet"} <= set(s2.artifacts)
    nb2 = nbformat.read(pipeline.artifact_dir("02", s2.key) / "executed.ipynb", as_version=4)
    assert not [o for c in nb2.cells for o in c.get("outputs", []) if o.output_type == "error"]
    import numpy as np
    import pandas as pd

    texts = pd.read_parquet(pipeline.artifact_dir("02", s2.key) / "texts_mimic_eye.parquet")
    assert list(texts.columns) == ["arrival", "vitals", "codes", "cxr"]
    assert texts.index.equals(c.stays.index)
    assert (texts.notna() <= c.availability).all().all(), "no text for a missing modality"
    assert texts["cxr"].dropna().str.contains("IMPRESSION").all()
    emb = np.load(pipeline.artifact_dir("02", s2.key) / "embeddings_mimic_eye.npz")
    assert emb["cxr"].shape == (len(c.stays), 384) and (emb["mask_cxr"] == texts["cxr"].notna().to_numpy()).all()
    assert np.allclose(emb["cxr"][~emb["mask_cxr"]], 0) and (np.abs(emb["cxr"][emb["mask_cxr"]]).sum(1) > 0).all()
    fid = pd.read_parquet(pipeline.artifact_dir("02", s2.key) / "fidelity.parquet")
    assert {"recorded labels", "offline reader"} <= set(fid["source"])
    # chapters 03-04: every run and seed predicted, estimates with CIs, the full-modality networks saved
    from mmlib import train

    for sx in summaries[2:]:
        nbx = nbformat.read(pipeline.artifact_dir(sx.chapter, sx.key) / "executed.ipynb", as_version=4)
        assert not [o for c in nbx.cells for o in c.get("outputs", []) if o.output_type == "error"], sx.chapter
    # every figure of every chapter was checked when displayed (plots.figure_bundle), and no legend covers a plot
    figures = {sx.chapter: [o for c in nbformat.read(pipeline.artifact_dir(sx.chapter, sx.key) / "executed.ipynb",
                                                     as_version=4).cells
                            for o in c.get("outputs", []) if "image/png" in o.get("data", {})] for sx in summaries}
    assert all(figures.values()), "every chapter shows figures"
    for chapter, outs in figures.items():
        for o in outs:
            assert o.metadata["mmlib"]["legends_over_plot"] == [], (chapter, o.metadata["mmlib"])
    # every file a chapter writes is declared in the chapter API's artifact schema, and nothing else
    from mmlib.chapter import ARTIFACTS

    for sx in summaries:
        declared = [re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p)) + "$") for p, _ in ARTIFACTS[sx.chapter].values()]
        undeclared = [a for a in sx.artifacts if not any(d.match(a) for d in declared)]
        assert not undeclared, f"chapter {sx.chapter} writes {undeclared}, not declared in mmlib.chapter.ARTIFACTS"
    s3, s4, s5, s6, s7 = summaries[2:7]
    p3 = pd.read_parquet(pipeline.artifact_dir("03", s3.key) / "predictions.parquet")
    assert set(p3["model"]) == {"paper", "logreg"}
    assert set(p3.loc[p3.cohort == "mimic_eye", "modalities"]) == {"arrival", "vitals", "codes", "cxr"}
    assert p3.loc[p3.model == "paper", "seed"].nunique() == len(params["seeds"])
    t4 = pd.read_parquet(pipeline.artifact_dir("04", s4.key) / "summary.parquet")
    assert {"mean", "sd", "ci_low", "ci_high", "n_seeds", "flag"} <= set(t4.columns)
    paper = t4[(t4.cohort == "mds_ed") & (t4.model == "paper")]
    assert paper["modalities"].nunique() == 15, "every order: all non-empty subsets"
    assert set(t4["model"]) == {"paper", "resilient", "late", "logreg"}
    full = "arrival+vitals+codes+cxr"
    fits = train.load_fits(pipeline.artifact_dir("04", s4.key) / "models_mimic_eye.pt")
    assert {(k[0], k[1]) for k in fits} == {("paper", full), ("resilient", full), ("late", full)}
    data = train.load_fusion_data(pipeline.artifact_dir("01", s.key) / "cohort_mimic_eye",
                                  pipeline.artifact_dir("02", s2.key) / "embeddings_mimic_eye.npz")
    p4 = pd.read_parquet(pipeline.artifact_dir("04", s4.key) / "predictions.parquet")
    run = p4[(p4.model == "resilient") & (p4.modalities == full) & (p4.seed == 0) & (p4.split == "test")]
    te = data.rows("test")
    assert np.allclose(run.set_index("stay_id").loc[data.stays.index[te], "prob"],
                       train.predict(fits[("resilient", full, 0)], data.x[te], data.mask[te]))
    # chapter 05: the sweep starts from chapter 04's numbers and covers every protocol
    sw = pd.read_parquet(pipeline.artifact_dir("05", s5.key) / "sweep.parquet")
    assert set(sw["protocol"]) == {"random", "one modality", "train x test", "group-dependent"}
    assert sorted(sw.loc[sw.protocol == "random", "rate"].unique()) == params["missing_rates"]
    z = sw[(sw.protocol == "random") & (sw.rate == 0) & (sw.metric == "auroc")
           & (sw.attribute == "overall")].set_index(["cohort", "model"])["mean"]
    ref = t4[(t4.metric == "auroc") & (t4.attribute == "overall") & t4.modalities.isin([full, "arrival+vitals+labs+ecg"])
             & t4.model.isin(["paper", "resilient", "late"])].set_index(["cohort", "model"])["mean"]
    assert np.allclose(z.sort_index(), ref.sort_index(), atol=1e-12)
    # chapters 06-07: the decision layer split by modality; interference measured before and after mitigation
    w6 = pd.read_parquet(pipeline.artifact_dir("06", s6.key) / "weights.parquet")
    assert set(w6["training"]) == {"with all modalities", "alone"}
    per = w6[(w6.cohort == "mds_ed") & (w6.training == "alone") & (w6.seed == 0)].groupby("modality").size()
    assert (per == params.get("width", 32)).all() and len(per) == 4, "one weight block per modality, equal widths"
    p6 = pd.read_parquet(pipeline.artifact_dir("06", s6.key) / "predictions.parquet")
    assert {"linear", "linear+calibrated"} <= set(p6["model"])
    e7 = pd.read_parquet(pipeline.artifact_dir("07", s7.key) / "effects.parquet")
    assert {"paper", "paper+consistency"} <= set(e7["model"])
    assert set(e7["perturbation"]) == {"switch", "blank", "irrelevant"}
    assert e7["flip_rate"].between(0, 1).all()
    # the real book rendered from the executed chapters
    out = ci_book.html
    page = (out / "chapters" / "01_data_preparation.html").read_text()
    imgs = _png_images(page, out / "chapters")
    assert len(imgs) >= 6
    assert "Table 1" in page and "<table" in page
    page2 = (out / "chapters" / "02_transcription_and_embeddings.html").read_text()
    assert len(_png_images(page2, out / "chapters")) >= 6 and "fidelity" in page2
    page4 = (out / "chapters" / "04_incremental_fusion.html").read_text()
    assert len(_png_images(page4, out / "chapters")) >= 4 and "Answer to RQ1" in page4
    page5 = (out / "chapters" / "05_missing_modalities.html").read_text()
    assert len(_png_images(page5, out / "chapters")) >= 8 and "reproduces chapter 04" in page5
    for page_name, needle in (("06_decision_layer", "decision layer"), ("07_modality_interference", "Mitigation")):
        page_x = (out / "chapters" / f"{page_name}.html").read_text()
        assert len(_png_images(page_x, out / "chapters")) >= 4 and needle in page_x
    assert "Preface" in (out / "index.html").read_text()
    # the same texts embedded in other batch compositions, from an empty cache: byte-identical embeddings, so
    # chapter 03's key is unchanged and its artifact is reused, not trained again (artifact keys mean what they say)
    monkeypatch.setenv("MMLIB_EMBEDDING_CACHE", str(tmp_path / "empty_embedding_cache"))
    other = {**params, "batch_size": 7}
    s2b = pipeline.run("02", other, progress=False)
    assert s2b.key != s2.key and s2b.status == "executed"
    assert any((tmp_path / "empty_embedding_cache").rglob("*.npy")), "chapter 02 used MMLIB_EMBEDDING_CACHE"
    for n in ("mimic_eye", "mds_ed"):
        a = np.load(pipeline.artifact_dir("02", s2.key) / f"embeddings_{n}.npz")
        b = np.load(pipeline.artifact_dir("02", s2b.key) / f"embeddings_{n}.npz")
        assert a.files == b.files and all(a[k].tobytes() == b[k].tobytes() for k in a.files), n
    s3b = pipeline.run("03", other, force=False, progress=False)
    assert (s3b.key, s3b.status) == (s3.key, "reused")


def test_sigterm_stops_the_kernel_and_leaves_no_temporary_folder(toy_project):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    nb = toy_project / "chapters" / "01_make.ipynb"
    book = nbformat.read(nb, as_version=4)
    book.cells[2].source = "import time\ntime.sleep(120)\n" + book.cells[2].source
    nbformat.write(book, nb)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mmlib", "run", "01"], cwd=toy_project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    kernels = []
    while time.time() < deadline and not kernels:  # wait until the chapter's kernel runs
        kernels = [c for c in parent.children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]
        time.sleep(0.5)
    assert kernels, "the kernel never started"
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    psutil.wait_procs(kernels, timeout=30)
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "orphan kernel"
    arts = pipeline.build_dir() / "artifacts" / "01"
    assert not arts.exists() or not [p for p in arts.iterdir() if ".tmp-" in p.name or not p.name.startswith(".")]


def test_an_interrupted_run_resumes_from_its_finished_pieces(toy_project):
    """SIGTERM mid-chapter, then the same command again: the pieces finished before the interrupt (kept in
    ``build/resume/<chapter>-<key>/``, outside the run's temporary folder) are reused, not recomputed; no kernel
    or temporary folder is left; the resume folder goes once the chapter completes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    nb = toy_project / "chapters" / "01_make.ipynb"
    book = nbformat.read(nb, as_version=4)
    book.cells[2].source = textwrap.dedent("""
        import json, os, time
        from mmlib import pipeline
        from mmlib.artifacts import write_json
        ctx = pipeline.context("01", globals())
        pieces, made = ctx.resume("pieces"), 0
        for i in range(6):
            p = pieces / f"{i}.json"
            if not p.exists():
                time.sleep(float(os.environ.get("PIECE_SECONDS", "0")))
                p.write_text(json.dumps(i * value))
                made += 1
        write_json({"made": made, "total": sum(json.loads((pieces / f"{i}.json").read_text()) for i in range(6))},
                   ctx.out / "value.json")
    """)
    nbformat.write(book, nb)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIECE_SECONDS": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "mmlib", "run", "01"], cwd=toy_project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resume = pipeline.build_dir() / "resume"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(resume.glob("01-*/pieces/*.json"))) < 2:
        time.sleep(0.3)
    done_before = len(list(resume.glob("01-*/pieces/*.json")))
    assert 2 <= done_before < 6, "the chapter should be interrupted while making its pieces"
    kernels = [c for c in psutil.Process(proc.pid).children(recursive=True) if "ipykernel" in " ".join(c.cmdline())]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    psutil.wait_procs(kernels, timeout=30)
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "orphan kernel"
    kept = len(list(resume.glob("01-*/pieces/*.json")))
    assert kept >= done_before, "finished pieces survive the interrupt"
    rerun = subprocess.run([sys.executable, "-m", "mmlib", "run", "01"], cwd=toy_project,
                           env={**env, "PIECE_SECONDS": "0"}, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    (key,) = [p.name for p in (pipeline.build_dir() / "artifacts" / "01").iterdir() if not p.name.startswith(".")]
    out = json.loads((pipeline.artifact_dir("01", key) / "value.json").read_text())
    assert out == {"made": 6 - kept, "total": sum(range(6)) * 3}, "the re-run made only the missing pieces"
    assert not list(resume.glob("01-*")), "the resume folder is removed once the chapter completes"
    arts = pipeline.build_dir() / "artifacts" / "01"
    assert not [p for p in arts.iterdir() if ".tmp-" in p.name]


def test_three_cli_processes_on_one_key_with_a_reader_polling(toy_project):
    """Three real ``mmlib run`` processes re-run the same chapter key at once, twice over, while a reader polls
    the published artifact: every process succeeds, and the reader never sees a partial folder (one listing
    with the done-marker but not the chapter's file) or an unreadable or mixed file. Publishing is by renames
    only, so the folder may be absent for an instant between the old and the new one (README); that is not a
    torn read."""
    import os
    import subprocess
    import sys
    import threading
    import time

    from mmlib.pipeline import DONE

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "mmlib", "run", "01"], cwd=toy_project, env=env, check=True,
                   capture_output=True, timeout=300)
    arts = pipeline.build_dir() / "artifacts" / "01"
    (key,) = [p.name for p in arts.iterdir() if not p.name.startswith(".")]
    folder = arts / key
    torn, reads, stop = [], [0], threading.Event()

    def poll():
        import os

        while not stop.is_set():
            try:
                names = set(os.listdir(folder))  # one listing of one folder
                if DONE in names and "value.json" not in names:
                    torn.append(f"done-marker without value.json: {sorted(names)}")
                value = json.loads((folder / "value.json").read_text())
                if value != {"value": 30}:
                    torn.append(value)
                reads[0] += 1
            except FileNotFoundError:  # swapped out for an instant: allowed
                continue
            except json.JSONDecodeError as e:
                torn.append(f"unreadable value.json: {e}")

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(2):
            procs = [subprocess.Popen([sys.executable, "-m", "mmlib", "run", "01"], cwd=toy_project, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
            results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
            assert all(rc == 0 for rc, _ in results), [err[-1500:] for rc, err in results if rc]
    finally:
        stop.set()
        reader.join()
    assert reads[0] > 100 and not torn, torn[:5]
    time.sleep(0.1)
    assert (folder / DONE).exists() and not [p for p in arts.iterdir() if ".tmp-" in p.name]


#: Documented alternatives to the defaults (the parameters cells' comments and README), all in one build:
#: one cohort, five race groups, other model lists, a single seed, a threshold chosen on validation, only
#: the default order, one perturbation, no control, explicit group-dependent missingness factors (one per group of
#: the five, and Unknown), and training
#: in worker processes (one per core, the chapters' default; the ci profile trains in the chapter's process).
ALTERNATIVES = [("cohorts", ["mds_ed"]), ("race_grouping", "race5"), ("single_models", ["paper"]),
                ("fusion_models", ["resilient", "paper"]), ("every_order", False), ("sweep_models", ["resilient"]),
                ("grid_models", ["resilient"]), ("interference_models", ["resilient"]), ("seeds", [3]),
                ("threshold", "val_youden"), ("perturbations", ["blank"]), ("control", False),
                ("group_missing", {"White": 1.0, "Black": 2.0, "Hispanic": 1.5, "Asian": 1.0, "Other": 1.0, "Unknown": 1.0}),
                ("n_patients", 240), ("n_jobs", -1)]


@pytest.mark.book
def test_every_chapter_runs_with_documented_alternative_parameters(isolated_build):
    """The whole book on the ci profile with the documented alternatives of ALTERNATIVES: every chapter
    executes without an error output (e.g. chapter 03 with ``single_models: [paper]``, chapter 07 with one
    perturbation and no control), and the results follow the parameters."""
    import pandas as pd

    params = pipeline.load_profile("ci", ALTERNATIVES)
    summaries = pipeline.build(params, render=False, progress=False)
    assert [s.chapter for s in summaries] == list(pipeline.chapters())
    for s in summaries:
        nb = nbformat.read(pipeline.artifact_dir(s.chapter, s.key) / "executed.ipynb", as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert not errors, (s.chapter, errors[:1])
    s3, s4, s5, _, s7 = summaries[2:7]
    p3 = pd.read_parquet(pipeline.artifact_dir("03", s3.key) / "predictions.parquet")
    assert set(p3["model"]) == {"paper"} and set(p3["cohort"]) == {"mds_ed"} and set(p3["seed"]) == {3}
    t4 = pd.read_parquet(pipeline.artifact_dir("04", s4.key) / "summary.parquet")
    assert t4.loc[t4.model == "resilient", "modalities"].nunique() == 4, "the default order's prefixes only"
    assert {"Black", "White"} <= set(t4.loc[t4.attribute == "race", "group"]), "five race groups"
    sw5 = pd.read_parquet(pipeline.artifact_dir("05", s5.key) / "sweep.parquet")
    assert (sw5["protocol"] == "group-dependent").any(), "the explicit factors were used (no rate skipped for want of one)"
    e7 = pd.read_parquet(pipeline.artifact_dir("07", s7.key) / "effects.parquet")
    assert set(e7["perturbation"]) == {"blank"} and set(e7["model"]) == {"resilient", "resilient+consistency"}


def test_a_chapter_key_hashes_only_the_mmlib_code_the_chapter_runs():
    """Artifact keys hash the chapter's import closure (less the build infrastructure): editing the decision
    layer re-runs chapter 06 only, the encoder chapters 02 and 07 only, and the pipeline or parameter checks
    nothing; a module imported only inside a function of an imported module still counts."""
    closures = {}
    for cid, ch in pipeline.chapters().items():
        nb = nbformat.read(ch.path, as_version=4)
        closures[cid] = {p.name for p in pipeline.code_closure("\n".join(c.source for c in nb.cells
                                                                          if c.cell_type == "code"))}
    assert [c for c, f in closures.items() if "decision.py" in f] == ["06"]
    assert [c for c, f in closures.items() if "embed.py" in f] == ["02", "07", "08"]
    assert not [c for c, f in closures.items() if {"pipeline.py", "parameters.py", "book.py"} & f]
    assert all({"chapter.py", "schema.py"} <= f for f in closures.values())
    src = "from mmlib import tables\n"
    assert "prepare.py" in {p.name for p in pipeline.code_closure(src)}, "tables imports data.prepare in a function"
    assert {p.name for p in pipeline.code_closure("import numpy\n!ls\n")} == set()


def test_the_longest_chain_is_the_slowest_path_through_the_chapters_needs():
    """longest_chain follows the book's own ``needs``: with the demo book's times the chain is 01 -> 02 -> 03 -> 04
    -> 05; made slow enough, chapter 08 (which needs only 01 and 02) takes its place; only the chapters given count
    (the build gives the executed ones)."""
    secs = {"01": 10.8, "02": 181.5, "03": 38.9, "04": 144.6, "05": 93.7, "06": 37.1, "07": 60.9, "08": 78.6}
    runs = [pipeline.RunSummary(c, "k", "executed", t) for c, t in secs.items()]
    chain, total = pipeline.longest_chain(runs)
    assert chain == ["01", "02", "03", "04", "05"] and total == pytest.approx(469.5)
    runs[-1].seconds = 300.0
    assert pipeline.longest_chain(runs) == (["01", "02", "08"], pytest.approx(492.3))
    assert pipeline.longest_chain(runs[5:7]) == (["07"], pytest.approx(60.9)), "a chain of the chapters given only"
    assert pipeline.longest_chain([]) == ([], 0.0)
