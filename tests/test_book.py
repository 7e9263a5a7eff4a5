"""End-to-end tests of mmlib.book: a tiny project executed with papermill and rendered for real.

Kernel: notebooks run with kernel "python3". The venv ships ``.venv/share/jupyter/kernels/python3``
(argv "python", which jupyter_client maps to the running interpreter). If that spec is missing or
points at another interpreter, the ``kernel`` fixture registers a private "python3" spec for
``sys.executable`` in a temporary prefix (via JUPYTER_PATH) — the venv itself is never modified.
"""
from __future__ import annotations

import html
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

REPO = Path(__file__).resolve().parents[1]

QUARTO = """\
project:
  type: book
  output-dir: _book
book:
  title: "Tiny Test Book"
  subtitle: "A subtitle"
  author: "Test Author"
  chapters:
    - index.md
    - part: "Part One: Data"
      chapters:
        - chapters/01_demo.ipynb
  appendices:
    - references.md
bibliography: references.bib
execute:
  enabled: false
"""

BIB = """\
@article{alpha2020,
  author  = {Alpha, Ann and Beta, Ben},
  title   = {A First Paper},
  journal = {Journal of Tests},
  year    = {2020},
}

@misc{gamma2021,
  author = {Gamma, Gina},
  title  = {A Second Work},
  year   = {2021},
}
"""


#: A Markdown cell with the kinds of math the chapters write, and code that only looks like math.
MATH_CELL = ("The signed gap $\\Delta_{\\mathrm{TPR}} = \\mathrm{TPR}_b - \\mathrm{TPR}_w$ and the parity ratio:\n\n"
             "$$\\mathrm{DPR} = \\frac{\\min_g \\Pr(\\hat{y} = 1 \\mid G = g)}"
             "{\\max_g \\Pr(\\hat{y} = 1 \\mid G = g)}$$\n\n"
             "Code stays code: `$not_math$`. In a paragraph, $$y = 2$$ is displayed.")


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
    (root / "index.md").write_text("# Preface\n\nPREFACE-MARKER: what this book reproduces [@alpha2020], $a^2$; "
                                   "@gamma2021 says so. Write to me@example.org; `[@not_a_citation]` is code. "
                                   "It costs $5 and $10 a run.\n\n<!-- pdf -->\n")
    (root / "references.md").write_text("# References\n\n::: {#refs}\n:::\n")
    (root / "references.bib").write_text(BIB)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo chapter\n\nSome text [see @alpha2020, p. 3; @gamma2021].\n\n"
                                      + MATH_CELL),
        nbformat.v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import uuid\nprint('RUN-' + uuid.uuid4().hex)"),
        nbformat.v4.new_code_cell("import matplotlib\nmatplotlib.use('Agg')\n"
                                  "import matplotlib.pyplot as plt\n%matplotlib inline\n"
                                  "fig, ax = plt.subplots()\nax.plot(range(n))\nplt.show()"),
        nbformat.v4.new_code_cell("import pandas as pd\npd.DataFrame({'a': range(n), 'b': list('xyz')})"),
        nbformat.v4.new_code_cell("from IPython.display import Markdown\nMarkdown('OUTPUT-MARKER as [@gamma2021] found.')"),
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
    assert spec.chapters == ["index.md", "chapters/01_demo.ipynb", "references.md"]
    assert spec.parts == [(None, ["index.md"]), ("Part One: Data", ["chapters/01_demo.ipynb"]),
                          ("Appendices", ["references.md"])]
    assert spec.output_dir == "_book" and spec.bibliography == ["references.bib"]
    assert spec.subtitle == "A subtitle" and spec.appendices == ["references.md"]


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
def test_the_preface_links_the_pdf_beside_the_pages_or_says_how_to_make_it(project, tmp_path):
    root, executed, res = project
    without = re.sub(r"<[^>]+>", "", res.index_html.read_text())  # Sphinx wraps each word of inline code
    assert "make pdf" in without and "book.pdf" in without and "<!-- pdf -->" not in without
    assert not (res.html_dir / "book.pdf").exists()
    pdf = tmp_path / "made.pdf"
    pdf.write_bytes(b"%PDF-1.7 stand-in\n" * 1000)
    out = render_book(root, executed, out_dir=tmp_path / "html", pdf=pdf)
    index = out.index_html.read_text()
    link = re.search(r'<a href="([^"]+)" download>The whole book as one PDF</a> \(0\.0 MB\)', index)
    assert link and (out.html_dir / link.group(1)).read_bytes() == pdf.read_bytes()
    assert "make pdf" not in index
    with pytest.raises(FileNotFoundError, match="no_such.pdf: no such file"):
        render_book(root, executed, out_dir=tmp_path / "html2", pdf=tmp_path / "no_such.pdf")


def test_inline_images_become_files_named_by_their_content(tmp_path):
    import base64

    from mmlib.book import externalise_images

    png = b"\x89PNG\r\n\x1a\n" + b"fake image bytes"
    data = base64.b64encode(png).decode()
    (tmp_path / "chapters").mkdir()
    fig = (f'<figure><img alt="AUROC by rate (0-1)" src="data:image/png;base64,{data}" /><figcaption>c</figcaption>'
           "</figure>")
    (tmp_path / "index.html").write_text(f"<p>x</p>{fig}")
    (tmp_path / "chapters" / "05.html").write_text(fig + fig + '<img src="_images/kept.png">')
    assert externalise_images(tmp_path) == 3
    files = list((tmp_path / "_images").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == png, "one file for one image shown three times"
    index, page = (tmp_path / "index.html").read_text(), (tmp_path / "chapters" / "05.html").read_text()
    assert f'alt="AUROC by rate (0-1)" src="_images/{files[0].name}"' in index
    assert page.count(f'src="../_images/{files[0].name}"') == 2 and 'src="_images/kept.png"' in page
    assert "base64" not in index + page and "<figcaption>c</figcaption>" in page
    assert externalise_images(tmp_path) == 0


@pytest.mark.slow
def test_jupyter_book_render_cites_folds_code_and_has_no_binder(project):
    """The same Pandoc citations Quarto reads become linked author-year citations and a bibliography page; every
    code cell (the parameters cells too) is folded; no sphinx-thebe script (its duplicated `const` was a
    JavaScript error on every page) and no Binder or repository setting pointing at another project."""
    root, executed, res = project
    if res.renderer != "jupyter-book":
        pytest.skip("Quarto rendered the book; this checks the Jupyter Book render")
    index = res.index_html.read_text()
    page = (root / "_book/chapters/01_demo.html").read_text()
    refs = (root / "_book/references.html").read_text()
    text = lambda page: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))  # noqa: E731
    assert "@alpha2020" not in text(index + page) and "@gamma2021" not in text(index) and "{cite" not in text(index + page)
    assert re.search(r'href="references\.html#id\d+"[^>]*>Alpha and Beta', index)  # linked, author-year
    assert "(Alpha and Beta, 2020)" in text(index) and "Gamma (2021)" in text(index)  # [@key] and narrative @key
    assert "(see Alpha and Beta, 2020, p. 3; Gamma, 2021)" in text(page)  # prefix and locator kept
    assert "OUTPUT-MARKER as (Gamma, 2021) found." in text(page)  # a Markdown output's citation resolves too
    assert "me@example.org" in text(index) and "[@not_a_citation]" in text(index)  # e-mail and code untouched
    assert "a first paper" in text(refs).lower() and "a second work" in text(refs).lower()  # the bibliography page
    # code folded: every code cell of the staged notebook carries hide-input, the parameters cells included
    nb = nbformat.read(executed.parent / "book_src/chapters/01_demo.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all("hide-input" in c.metadata["tags"] for c in code)
    assert any("parameters" in c.metadata["tags"] for c in code)
    assert page.count('class="admonition hide above-input"') == len(code)  # one "show code" toggle per cell
    # the executed notebook itself is not modified
    assert not any("hide-input" in c.metadata.get("tags", []) for c in nbformat.read(
        executed / "chapters/01_demo.ipynb", as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    config = yaml.safe_load((executed.parent / "book_src/_config.yml").read_text())
    assert "sphinx_thebe" not in config["sphinx"]["config"]["extensions"]
    assert config["repository"]["url"] == "" and config["launch_buttons"]["binderhub_url"] == ""
    for doc in (index, page, refs):
        assert "THEBE_JS_URL" not in doc and "binder" not in doc.lower()
        assert "executablebooks/jupyter-book" not in doc
        assert len(re.findall(r"<script>\s*const ", doc)) == len(set(re.findall(r"<script>\s*const (\w+)", doc)))


@pytest.mark.slow
def test_jupyter_book_render_typesets_math_as_mathml_and_loads_no_mathjax(project):
    """`$...$` and `$$...$$` in pages and notebooks become MathML (the browser typesets it, no script); Sphinx adds
    no MathJax <script> to any page; code spans and dollar amounts are not math."""
    root, executed, res = project
    if res.renderer != "jupyter-book":
        pytest.skip("Quarto rendered the book; this checks the Jupyter Book render")
    index = res.index_html.read_text()
    page = (root / "_book/chapters/01_demo.html").read_text()
    text = lambda doc: html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", doc)))  # noqa: E731
    assert re.search(r'<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"><mrow><msup><mi>a</mi>'
                     r"<mn>2</mn></msup></mrow></math>", index)
    inline = re.findall(r'<math [^>]*display="inline".*?</math>', page)
    block = re.findall(r'<math [^>]*display="block".*?</math>', page)
    assert len(inline) == 1 and "<mi mathvariant=\"normal\">T</mi>" in inline[0] and "<msub>" in inline[0]
    assert len(block) == 2 and "<mfrac>" in block[0] and "<mo>&#x02223;</mo>" in block[0]  # \\mid
    assert "<mi>y</mi><mo>&#x0003D;</mo><mn>2</mn>" in block[1]  # $$...$$ inside a paragraph: display, as in Pandoc
    assert "$not_math$" in text(page) and "It costs $5 and $10 a run." in text(index)
    assert "\\Delta" not in text(page) and "\\frac" not in text(page)  # no TeX left as text
    for doc in root.glob("_book/**/*.html"):
        content = doc.read_text()
        # no MathJax script, by URL or inline configuration (MyST's class "mathjax_ignore" on sections is no script)
        assert not re.search(r"<script[^>]*(src=\"[^\"]*mathjax|>[^<]*mathjax)", content, re.I), doc
        assert not re.search(r"<script[^>]+src=\"(https?:)?//", content), doc


def test_mathml_converts_tex_and_names_what_it_cannot():
    out = book.mathml(r"\mathrm{TPR}_g = \frac{TP_g}{TP_g + FN_g}", display=True)
    assert out.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') and "<mfrac>" in out
    assert 'display="inline"' in book.mathml("x^2")
    with pytest.raises(ValueError, match=r"\$\\foo\{x\}\$.*\\foo"):
        book.mathml(r"\foo{x}")
    with pytest.raises(ValueError, match="alignment"):
        book.mathml(r"a &= b")


def test_quarto_typesets_math_as_mathml():
    """Quarto renders math as MathML too (its default would load MathJax from a CDN)."""
    cfg = yaml.safe_load((REPO / "_quarto.yml").read_text())
    assert cfg["format"]["html"]["html-math-method"] == "mathml"


@pytest.mark.parametrize("source, expected", [
    ("[@alpha2020]", "{cite:p}`alpha2020`"),
    ("as [@alpha2020; @gamma2021] show", "as {cite:p}`alpha2020,gamma2021` show"),
    ("[see @alpha2020, p. 3]", "{cite:p}`{see}alpha2020{p. 3}`"),
    ("[-@alpha2020]", "{cite:yearpar}`alpha2020`"),
    ("@alpha2020 shows.", "{cite:t}`alpha2020` shows."),
    ("(@gamma2021)", "({cite:t}`gamma2021`)"),
    ("@unknown and me@alpha2020.org", "@unknown and me@alpha2020.org"),  # not a key, an e-mail address
    ("`[@alpha2020]` and\n```\n@alpha2020\n```\n", "`[@alpha2020]` and\n```\n@alpha2020\n```\n"),  # code
    ("[a link @alpha2020](https://x.org)", "[a link {cite:t}`alpha2020`](https://x.org)"),
    ("[write to me@alpha2020]", "[write to me@alpha2020]"),
    ("::: {#refs}\n:::\n", "```{bibliography}\n```\n"),
])
def test_pandoc_citations_become_sphinxcontrib_bibtex_roles(source, expected):
    assert book.pandoc_to_myst(source, {"alpha2020", "gamma2021"}) == expected


def test_fold_code_follows_tags_and_quarto_cell_options():
    def tags(source, given=()):
        cell = {"cell_type": "code", "source": source, "metadata": {"tags": list(given)}}
        book.fold_code(cell)
        return cell["metadata"]["tags"]
    assert tags("x = 1") == ["hide-input"]
    assert tags("n = 3", ["parameters"]) == ["parameters", "hide-input"]
    assert tags("#| code-fold: show\nx = 1") == []
    assert tags("#| echo: false\nx = 1") == ["remove-input"]
    assert tags("#| include: false\nx = 1") == ["remove-cell"]
    assert tags("x", ["remove-cell"]) == ["remove-cell"] and tags("x", ["show-input"]) == ["show-input"]


def test_a_citation_missing_from_the_bibliography_is_an_error(tmp_path):
    source = write_project(tmp_path)
    (tmp_path / "index.md").write_text("# Preface\n\nAs shown [@alpha2020; @nobody1999].\n")
    executed = tmp_path / "build/demo/executed"
    (executed / "chapters").mkdir(parents=True)
    shutil.copy(source, executed / "chapters/01_demo.ipynb")
    with pytest.raises(ValueError, match=r"index\.md cites @nobody1999, which is not in references\.bib"):
        render_book(tmp_path, executed, renderer="jupyter-book")


def test_the_books_bibliography_parses_and_covers_its_citations():
    """references.bib is valid BibTeX (pybtex, as sphinxcontrib-bibtex reads it); every key the preface cites is
    in it; every entry names where to find it (DOI, URL, arXiv id, or a PMID note)."""
    import pybtex.database

    bib = pybtex.database.parse_file(str(REPO / "references.bib"))
    assert len(bib.entries) >= 20
    for key, entry in bib.entries.items():
        f = entry.fields
        assert {"title", "year"} <= set(f) and entry.persons.get("author"), key
        assert "doi" in f or "url" in f or "eprint" in f or "PMID" in f.get("note", "") or entry.type in (
            "inproceedings", "book", "article"), key
    spec = read_book_spec(REPO)
    assert spec.bibliography == ["references.bib"] and "references.md" in spec.chapters
    cited = set(book.citations((REPO / "index.md").read_text(), set(bib.entries)))
    assert cited and cited <= set(bib.entries)
    for key in ("sampath2025paradox", "hsieh2023mimiceye", "lopezalcaraz2024mdsed", "johnson2023mimiciv",
                "johnson2023mimicived", "sjoding2020pulseox", "hardt2016equality", "weerts2023fairlearn"):
        assert key in cited, key


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


def test_callouts_become_admonitions_collapsed_where_quarto_collapses_them():
    text = ("Intro.\n\n::: {.callout-note collapse=\"true\"}\n## Solution\n\nIt is `x`.\n\n```bash\nrun it\n```\n:::\n\n"
            "::: {.callout-tip}\n## In this chapter\n\n- learn\n:::\n")
    out = book.callouts_to_myst(text)
    assert "`````{admonition} Solution\n:class: note dropdown\n\nIt is `x`.\n\n```bash\nrun it\n```\n`````" in out
    assert "`````{admonition} In this chapter\n:class: tip\n\n- learn\n`````" in out
    assert ":::" not in out and out.startswith("Intro.")
    assert book.callouts_to_myst("no callout ::: here") == "no callout ::: here"


def _staged(tmp_path, box: bool):
    """A staged one-chapter book whose notebook ends with a findings cell (``box``) and whose preface marks where
    chapter 01's box goes."""
    (tmp_path / "chapters").mkdir()
    (tmp_path / "_quarto.yml").write_text("project: {type: book}\nbook:\n  title: T\n"
                                          "  chapters: [index.md, chapters/01_a.ipynb]\n")
    (tmp_path / "index.md").write_text("# Preface\n\nWhat we found:\n\n<!-- findings: 01 -->\n\nMore.\n")
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell('artifact_dir = "/tmp/x/build/artifacts/01/abc"\n'
                                         'inputs = {"00": "/work/main/build/artifacts/00/k"}')
    injected.metadata["tags"] = ["injected-parameters"]
    last = nbformat.v4.new_code_cell("display(Markdown(box))")
    if box:
        last.metadata["tags"] = ["findings"]
        last.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "::: {.callout-important}\n"
                                                                     "## Found\n\n- a +0.1 [+0.0, +0.2]\n:::"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# A\n\nIntro."), injected, nbformat.v4.new_markdown_cell("## Evidence"),
                last]
    nbformat.write(nb, tmp_path / "chapters" / "01_a.ipynb")
    spec = read_book_spec(tmp_path)
    book.present(tmp_path, spec)
    return nbformat.read(tmp_path / "chapters" / "01_a.ipynb", as_version=4), (tmp_path / "index.md").read_text()


def test_present_opens_each_chapter_with_its_findings_and_puts_them_in_the_preface(tmp_path):
    nb, preface = _staged(tmp_path, box=True)
    assert "findings" in nb.cells[1].metadata["tags"], "the findings box comes right after the opening cell"
    assert nb.cells[1].source.startswith("#| echo: false\n")
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "markdown"]
    assert "- a +0.1 [+0.0, +0.2]" in preface and "<!-- findings" not in preface and preface.endswith("More.\n")
    injected = nb.cells[2].source
    assert "/tmp/" not in injected and "/work/" not in injected
    assert '"build/artifacts/01/abc"' in injected and '"build/artifacts/00/k"' in injected


def test_present_says_when_a_chapter_has_no_findings_box(tmp_path):
    nb, preface = _staged(tmp_path, box=False)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code"], "nothing moves"
    assert "*(Chapter 01 states no findings in this build.)*" in preface


def test_the_chapters_cite_the_bibliography_link_each_other_and_write_no_plain_arxiv_ids():
    """Every key the chapters' Markdown cells cite is in references.bib (the check the build runs), every entry of
    it is cited somewhere in the book, the literature each chapter rests on is cited where it is used, no chapter
    names a paper by a bare arXiv id, and a link to another chapter names a notebook of the book."""
    spec = read_book_spec(REPO)
    book.check_citations(REPO, spec)  # raises naming page and key
    keys = book.bib_keys([REPO / "references.bib"])
    cited: dict[str, set[str]] = {}
    for page in spec.chapters:
        for text in book._markdown_texts(REPO / page):
            cited.setdefault(page, set()).update(book.citations(text, keys))
    assert set().union(*cited.values()) == keys, sorted(keys - set().union(*cited.values()))
    expected = {"01": {"hsieh2023mimiceye", "lopezalcaraz2024mdsed", "johnson2019mimiccxr", "goldberger2000physionet",
                       "sjoding2020pulseox", "schrager2019imaging", "obermeyer2019dissecting", "sax2023esi"},
                "02": {"seyyedkalantari2021underdiagnosis"},
                "03": {"efron1993bootstrap", "weerts2023fairlearn", "hardt2016equality", "naeini2015ece"},
                "04": {"sampath2025paradox", "caruso2026resilient"}, "05": {"caruso2026resilient"},
                "06": {"ma2025decisionlayer"}, "07": {"cai2025interference"}, "08": {"obermeyer2019dissecting"}}
    notebooks = {Path(p).name for p in spec.chapters if p.endswith(".ipynb")}
    for page in spec.chapters:
        if not page.startswith("chapters/"):
            continue
        num = Path(page).name[:2]
        assert expected[num] <= cited[page], (page, expected[num] - cited[page])
        prose = "\n".join(book._markdown_texts(REPO / page))
        assert not re.search(r"arXiv \d{4}\.\d{4,5}", prose), page
        for target in re.findall(r"\]\(([^)#\s]+\.ipynb)(?:#[^)]*)?\)", prose):
            assert target in notebooks, (page, target)
