"""End-to-end tests of mmlib.book: a tiny project executed with papermill and rendered for real.

Kernel: notebooks run with kernel "python3". The venv ships ``.venv/share/jupyter/kernels/python3``
(argv "python", which jupyter_client maps to the running interpreter). If that spec is missing or
points at another interpreter, the ``kernel`` fixture registers a private "python3" spec for
``sys.executable`` in a temporary prefix (via JUPYTER_PATH) — the venv itself is never modified.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from mmlib import book
from mmlib.book import read_book_spec, render_book

QUARTO = """\
project:
  type: book
  output-dir: _book
book:
  title: "Tiny Test Book"
  author: "Test Author"
  chapters:
    - index.md
    - part: "Part One: Data"
      chapters:
        - chapters/01_demo.ipynb
execute:
  enabled: false
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """Make sure kernel "python3" starts the interpreter running the tests (see module doc)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        argv0 = KernelSpecManager().get_kernel_spec("python3").argv[0]
        ok = argv0 in ("python", "python3") or Path(argv0).resolve() == Path(sys.executable).resolve()
    except NoSuchKernel:
        ok = False
    old = os.environ.get("JUPYTER_PATH")
    if not ok:
        from ipykernel.kernelspec import install
        prefix = tmp_path_factory.mktemp("kernel")
        install(prefix=str(prefix), kernel_name="python3")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(prefix / "share/jupyter"), old]))
    yield "python3"
    if not ok:
        os.environ.pop("JUPYTER_PATH") if old is None else os.environ.update(JUPYTER_PATH=old)


def write_project(root: Path) -> Path:
    """Write the tiny project (preface + one notebook without outputs); return the notebook path."""
    (root / "chapters").mkdir(parents=True)
    (root / "_quarto.yml").write_text(QUARTO)
    (root / "index.md").write_text("# Preface\n\nPREFACE-MARKER: what this book reproduces, $a^2$.\n")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo chapter\n\nSome text."),
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import uuid\nprint('RUN-' + uuid.uuid4().hex)"),
        nbformat.v4.new_code_cell("import matplotlib\nmatplotlib.use('Agg')\n"
                                  "import matplotlib.pyplot as plt\n%matplotlib inline\n"
                                  "fig, ax = plt.subplots()\nax.plot(range(n))\nplt.show()"),
        nbformat.v4.new_code_cell("import pandas as pd\npd.DataFrame({'a': range(n), 'b': list('xyz')})"),
    ]
    nbformat.write(nb, root / "chapters/01_demo.ipynb")
    return root / "chapters/01_demo.ipynb"


@pytest.fixture(scope="module")
def project(tmp_path_factory, kernel):
    """The tiny project with its chapter executed for real by papermill, and its render result."""
    import papermill as pm
    root = tmp_path_factory.mktemp("proj")
    source = write_project(root)
    executed = root / "build/demo/executed"
    (executed / "chapters").mkdir(parents=True)
    pm.execute_notebook(str(source), str(executed / "chapters/01_demo.ipynb"),
                        kernel_name=kernel, progress_bar=False, cwd=str(root))
    res = render_book(root, executed)
    print(f"render_book: {res.renderer} in {res.seconds:.2f} s")
    return root, executed, res


def test_read_book_spec_flattens_parts(tmp_path):
    write_project(tmp_path)
    spec = read_book_spec(tmp_path)
    assert spec.title == "Tiny Test Book" and spec.author == "Test Author"
    assert spec.chapters == ["index.md", "chapters/01_demo.ipynb"]
    assert spec.parts == [(None, ["index.md"]), ("Part One: Data", ["chapters/01_demo.ipynb"])]
    assert spec.output_dir == "_book"


@pytest.mark.parametrize("text, key", [
    ("project: [unclosed", "invalid YAML"),
    ("project:\n  type: website\nbook:\n  chapters: [index.md]\n", "project.type"),
    ("project:\n  type: book\nbook:\n  title: x\n", "book.chapters"),
    ("project:\n  type: book\nbook:\n  chapters: [index.md, chapters/99_nope.ipynb]\n", "99_nope"),
])
def test_malformed_quarto_yml_names_file_and_key(tmp_path, text, key):
    (tmp_path / "index.md").write_text("# Hi\n")
    (tmp_path / "_quarto.yml").write_text(text)
    with pytest.raises(ValueError, match=re.escape(key)) as err:
        read_book_spec(tmp_path)
    assert "_quarto.yml" in str(err.value)


def test_missing_quarto_yml(tmp_path):
    with pytest.raises(ValueError, match="_quarto.yml"):
        read_book_spec(tmp_path)


@pytest.mark.slow
def test_render_jupyter_book(project):
    root, executed, res = project
    if shutil.which("quarto") is None:
        assert res.renderer == "jupyter-book"
    assert res.html_dir == root / "_book" and res.index_html == root / "_book/index.html"
    index = res.index_html.read_text()
    assert "PREFACE-MARKER" in index
    assert "Part One: Data" in index  # part caption in the navigation
    page = root / "_book/chapters/01_demo.html"
    html = page.read_text()
    assert "<table" in html  # the DataFrame
    srcs = re.findall(r'<img[^>]*\bsrc="([^"]+\.png)"', html)
    assert srcs and all((page.parent / s).is_file() for s in srcs)  # the matplotlib figure
    # rendered from the executed copy, never re-executed: same random token as papermill printed
    token = re.search(r"RUN-[0-9a-f]{32}", (executed / "chapters/01_demo.ipynb").read_text()).group()
    assert token in html
    # _config.yml / _toc.yml are generated in the staging folder
    toc = yaml.safe_load((executed.parent / "book_src/_toc.yml").read_text())
    assert toc["root"] == "index" and toc["parts"][0]["caption"] == "Part One: Data"
    assert not list(root.glob("._book.build-*"))  # temporary build folder cleaned up


@pytest.mark.slow
def test_failed_render_keeps_previous_book_then_rerender_replaces_it(project, tmp_path):
    root = tmp_path / "proj"
    shutil.copytree(project[0], root)
    executed = root / "build/demo/executed"
    (root / "_book/SENTINEL").write_text("old build")
    index_before = (root / "_book/index.html").read_text()

    # executed chapter missing -> error naming it; previous _book untouched
    shutil.move(executed / "chapters/01_demo.ipynb", tmp_path / "saved.ipynb")
    with pytest.raises(FileNotFoundError, match=r"chapters/01_demo\.ipynb.*python -m mmlib run 01"):
        render_book(root, executed)
    assert (root / "_book/SENTINEL").is_file()
    assert (root / "_book/index.html").read_text() == index_before
    shutil.move(tmp_path / "saved.ipynb", executed / "chapters/01_demo.ipynb")

    # a Sphinx ERROR -> RuntimeError with the log tail; previous _book untouched
    good = (root / "index.md").read_text()
    (root / "index.md").write_text(good + "\n```{figure}\n```\n")
    with pytest.raises(RuntimeError, match="(?s)build failed.*ERROR: Directive 'figure'"):
        render_book(root, executed, renderer="jupyter-book")
    assert (root / "_book/SENTINEL").is_file()

    # a good render replaces the whole folder
    (root / "index.md").write_text(good)
    res = render_book(root, executed, renderer="jupyter-book")
    assert res.index_html.is_file() and not (root / "_book/SENTINEL").exists()
    assert not list(root.glob("._book.build-*"))


def test_forced_quarto_without_binary_says_how_to_install(tmp_path, monkeypatch):
    write_project(tmp_path)
    monkeypatch.setattr(book.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="conda-forge"):
        render_book(tmp_path, tmp_path / "build/demo/executed", renderer="quarto")


def test_quarto_path_with_fake_binary(tmp_path, monkeypatch):
    """The Quarto branch: staged _quarto.yml, `quarto render <staging> --no-execute`, HTML moved."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "quarto"
    fake.write_text('#!/bin/sh\necho "$@" > "$2/args.txt"\ntest -f "$2/_quarto.yml" || exit 3\n'
                    'mkdir -p "$2/_book" && echo "<html>FAKE-QUARTO</html>" > "$2/_book/index.html"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "proj"
    source = write_project(root)
    executed = root / "build/demo/executed"
    (executed / "chapters").mkdir(parents=True)
    shutil.copy(source, executed / "chapters/01_demo.ipynb")  # stands in for the executed copy
    out = tmp_path / "site"
    res = render_book(root, executed, out_dir=out)
    assert res.renderer == "quarto" and "FAKE-QUARTO" in res.index_html.read_text()
    staging = executed.parent / "book_src"
    assert "--no-execute" in (staging / "args.txt").read_text()
    assert (staging / "chapters/01_demo.ipynb").read_text() == (
        executed / "chapters/01_demo.ipynb").read_text()
