"""mmlib.pdf: a real PDF (real papermill, pandoc and typst) of a tiny book, read back from its bytes.

The PDF's text is read with a small reader of Typst's PDFs (:func:`pdf_text`: page tree, each page's fonts and
their ToUnicode maps, the text operators of its content streams), so the checks are on what a reader of the PDF
sees, not on the intermediate Typst source.
"""
from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

import nbformat
import pytest

from mmlib import pdf
from mmlib.pdf import build_pdf
from test_book import BIB, MATH_CELL, kernel  # noqa: F401 (the kernel fixture: "python3" runs this interpreter)

QUARTO = """\
project:
  type: book
  output-dir: _book
book:
  title: "Tiny PDF Book"
  subtitle: "A subtitle for the title page"
  author: "Test Author"
  chapters:
    - index.md
    - part: "Part One: Data"
      chapters:
        - chapters/01_demo.ipynb
  appendices:
    - references.md
bibliography: references.bib
"""

CODE = [
    ("n = 3", ["parameters"]),
    ("# CODE-INPUT-MARKER: a comment the PDF must not show\nprint('PRINTED-OUTPUT-MARKER')\n"
     "import sys, warnings\nwarnings.warn('WARNING-MARKER')\nprint('WARNING-MARKER on stderr', file=sys.stderr)\n"
     "print('\\r 50%|#####     | 1/2 [00:01<00:01, 1.0it/s]', end='')", []),
    ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n%matplotlib inline\n"
     "fig, ax = plt.subplots(figsize=(6, 3))\nax.plot(range(n))\nplt.show()", []),
    # a DataFrame shown as the chapters show them: mmlib.tables.page_html, in parts of <= 4 columns + a CSV link
    ("import pandas as pd\nfrom IPython.display import HTML\nfrom mmlib import tables\n"
     "df = pd.DataFrame({f'column_{i}': [f'CELLVALUE{i}{j}' for j in range(n)] for i in range(6)},\n"
     "                  index=pd.Index(['a', 'b', 'c'], name='row'))\nHTML(tables.page_html(df))", []),
    ("from IPython.display import Markdown\nMarkdown('OUTPUT-MARKER as [@gamma2021] found (-0.006 [-0.030, +0.024]).')",
     []),
    ("Markdown('FINDINGS-MARKER: the box each chapter opens with.')", ["findings"]),
]


def write_project(root: Path) -> Path:
    """A tiny book: preface, one part with one chapter notebook (no outputs), references."""
    (root / "chapters").mkdir(parents=True)
    (root / "_quarto.yml").write_text(QUARTO)
    (root / "references.bib").write_text(BIB)
    (root / "references.md").write_text("# References\n\n::: {#refs}\n:::\n")
    (root / "index.md").write_text("# Preface\n\nPREFACE-MARKER: this book reproduces [@alpha2020], $a^2 + b^2$; "
                                   "see [the chapter](chapters/01_demo.ipynb).\n\n<!-- findings: 01 -->\n")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo chapter\n\nChapter text [see @alpha2020, p. 3].\n\n" + MATH_CELL)]
    nb.cells += [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in CODE[:5]]
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "## LATER-SECTION\n\n::: {.callout-note collapse=\"true\"}\n## Solution\n\nSOLUTION-MARKER text.\n:::\n"))
    nb.cells.append(nbformat.v4.new_code_cell(CODE[5][0], metadata={"tags": CODE[5][1]}))
    nbformat.write(nb, root / "chapters/01_demo.ipynb")
    return root / "chapters/01_demo.ipynb"


@pytest.fixture(scope="module")
def executed_book(tmp_path_factory, kernel):  # noqa: F811
    """The tiny book with its chapter executed by papermill: (project root, executed folder)."""
    import papermill as pm
    root = tmp_path_factory.mktemp("pdfbook")
    source = write_project(root)
    executed = root / "build/demo/executed"
    (executed / "chapters").mkdir(parents=True)
    pm.execute_notebook(str(source), str(executed / "chapters/01_demo.ipynb"), kernel_name=kernel,
                        progress_bar=False, cwd=str(root))
    return root, executed


@pytest.fixture(scope="module")
def built(executed_book):
    root, executed = executed_book
    res = build_pdf(root, executed, root / "out/book.pdf")
    return root, executed, res, res.pdf.read_bytes()


# ------------------------------------------------------------------------------ reading the PDF back
def _objects(data: bytes) -> dict[int, bytes]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)\s*endobj", data, re.S)}


def _stream(obj: bytes) -> bytes:
    m = re.search(rb"stream\r?\n(.*)\r?\nendstream", obj, re.S)
    return zlib.decompress(m.group(1)) if b"/FlateDecode" in obj[:m.start()] else m.group(1)


def _ref(obj: bytes, key: bytes) -> int | None:
    m = re.search(rb"/" + key + rb"\s*(\d+) 0 R", obj)
    return int(m.group(1)) if m else None


def _cmap(data: bytes) -> dict[int, str]:
    """A ToUnicode CMap: glyph code -> text."""
    out = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", data, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            out[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", data, re.S):
        for lo, hi, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            start = int(dst, 16)
            for k, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                out[code] = chr(start + k)
    return out


def _literal(raw: bytes) -> bytes:
    """The bytes of a PDF literal string's body (escapes resolved)."""
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C:  # backslash
            nxt = raw[i + 1:i + 2]
            if nxt.isdigit():
                m = re.match(rb"[0-7]{1,3}", raw[i + 1:])
                out.append(int(m.group(), 8) & 0xFF)
                i += 1 + len(m.group())
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(nxt, nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


_TOKEN = re.compile(rb"\((?:\\.|[^\\)])*\)|<[0-9A-Fa-f\s]*>|/[^\s/\[\]()<>]+|-?\d*\.?\d+|[A-Za-z'\"*]+|\[|\]", re.S)


def pdf_text(data: bytes) -> list[str]:
    """The text of each page of a PDF written by Typst (Type0 fonts with ToUnicode maps, 2-byte codes)."""
    objs = _objects(data)
    root = next(v for v in objs.values() if re.search(rb"/Type\s*/Catalog", v))
    pages, todo = [], [_ref(root, b"Pages")]
    while todo:
        node = objs[todo.pop(0)]
        if re.search(rb"/Type\s*/Pages\b", node):
            kids = re.search(rb"/Kids\s*\[(.*?)\]", node, re.S).group(1)
            todo = [int(k) for k in re.findall(rb"(\d+) 0 R", kids)] + todo
        else:
            pages.append(node)
    texts = []
    for page in pages:
        res = objs[_ref(page, b"Resources")] if _ref(page, b"Resources") else page
        font_dict = re.search(rb"/Font\s*<<(.*?)>>", res, re.S)  # a page without text has none
        fonts = {name.decode(): _cmap(_stream(objs[_ref(objs[int(num)], b"ToUnicode")]))
                 for name, num in re.findall(rb"/(\w+)\s+(\d+) 0 R", font_dict.group(1) if font_dict else b"")}
        contents = re.search(rb"/Contents\s*(\[.*?\]|\d+ 0 R)", page, re.S).group(1)
        text, font, operands = [], {}, []
        for num in re.findall(rb"(\d+) 0 R", contents):
            for tok in _TOKEN.findall(_stream(objs[int(num)])):
                if tok == b"Tf":
                    font = fonts.get(operands[-2][1:].decode(), {}) if len(operands) >= 2 else {}
                elif tok in (b"Tj", b"TJ", b"'", b'"'):
                    for op in operands:
                        if op[:1] in b"(<":
                            raw = _literal(op[1:-1]) if op[:1] == b"(" else bytes.fromhex(op[1:-1].decode())
                            text.append("".join(font.get(int.from_bytes(raw[k:k + 2], "big"), "")
                                                for k in range(0, len(raw) - 1, 2)))
                        elif re.fullmatch(rb"-?\d*\.?\d+", op) and float(op) < -150:
                            text.append(" ")
                elif tok in (b"ET", b"T*", b"Td", b"TD"):
                    text.append("\n")
                if tok[:1].isalpha() or tok in (b"'", b'"'):
                    operands = []
                elif tok not in (b"[", b"]"):
                    operands.append(tok)
        texts.append(re.sub(r"[ \t]+", " ", "".join(text)))
    return texts


def images(data: bytes) -> list[tuple[int, int]]:
    """(width, height) of every image XObject (soft masks left out)."""
    objs = _objects(data)
    masks = {int(m) for v in objs.values() for m in re.findall(rb"/SMask\s*(\d+) 0 R", v)}
    return [(int(re.search(rb"/Width\s*(\d+)", v).group(1)), int(re.search(rb"/Height\s*(\d+)", v).group(1)))
            for k, v in objs.items() if re.search(rb"/Subtype\s*/Image", v) and k not in masks]


# ------------------------------------------------------------------------------------------ the tests
@pytest.mark.slow
def test_pdf_of_the_book_has_its_chapters_citations_tables_figures_and_math_but_no_code(built):
    root, executed, res, data = built
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = pdf_text(data)
    assert res.pages == len(pages) > 1 and res.pdf == root / "out/book.pdf"
    assert all(p.strip() for p in pages), "no blank page"
    text = "\n".join(pages)
    squeeze = lambda s: re.sub(r"[\s\u200b]+", "", s)  # noqa: E731 (text runs and lines split words apart)
    flat = squeeze(text)

    def has(words: str, where: str = text) -> bool:
        return squeeze(words) in squeeze(where)
    # title page from _quarto.yml, then the table of contents
    assert has("Tiny PDF Book", pages[0]) and has("A subtitle for the title page", pages[0])
    assert "Test Author" in pages[0]
    assert "Contents" in pages[1] and has("Demo chapter", pages[1]) and has("Part I. Part One: Data", pages[1])
    # the chapter, numbered, in its part; the preface and the appendix unnumbered
    assert has("Chapter 1 Demo chapter") and has("Part I. Part One: Data") and has("Preface PREFACE-MARKER")
    assert "Chapter 2" not in text
    # citations rendered author-year, the bibliography is the last page
    assert has("reproduces (Alpha and Beta 2020)") and has("Chapter text (see Alpha and Beta 2020, 3).")
    assert has("OUTPUT-MARKER as (Gamma 2021) found")  # a Markdown output's citation too
    assert has("found (\u22120.006 [\u22120.030, +0.024])."), "every sign a minus sign, after '(' as after '['"
    assert has("References Alpha, Ann, and Ben Beta. 2020. “A First Paper.” Journal of Tests.", pages[-1])
    assert "@alpha2020" not in text and "[@" not in text
    # the DataFrame: 6 columns + index shown in parts of <= 4 columns, every cell there, the CSV link as words
    assert all(f"CELLVALUE{i}{j}" in text for i in range(6) for j in range(3))
    assert has("6 columns, shown in 2 parts; download the full table (CSV) in the HTML book.")
    assert has("column_0 column_1 column_2 column_3 column_4 row a CELLVALUE00") and "data:text/csv" not in text
    # the figure is embedded, at the resolution of the executed notebook's PNG
    nb = nbformat.read(executed / "chapters/01_demo.ipynb", as_version=4)
    png = [base64.b64decode(o.data["image/png"]) for c in nb.cells for o in c.get("outputs", [])
           if "image/png" in o.get("data", {})]
    assert len(png) == 1
    assert images(data) == [(int.from_bytes(png[0][16:20], "big"), int.from_bytes(png[0][20:24], "big"))]
    # math typeset with Typst's math font (ŷ, ∣, Δ as glyphs), no TeX left in the text; code spans stay code
    assert b"NewCMMath" in data and "∣" in text and "Δ" in text
    assert not re.search(r"\\(frac|mathrm|Delta|hat|mid)|\$\$", text) and has("Code stays code: $not_math$.")
    # no code, no warnings, no progress bars, no machine paths; printed lines stay
    assert "CODE-INPUT-MARKER" not in text and "n = 3" not in text and "import" not in text
    assert "PRINTED-OUTPUT-MARKER" in text and "WARNING-MARKER" not in text and "it/s" not in text
    assert str(root) not in text and "/tmp/" not in text and "pytest" not in text
    # the findings box opens the chapter (before its text) and is copied into the preface
    chapter = flat[flat.index("Chapter1"):]
    assert chapter.index("FINDINGS-MARKER") < chapter.index("PRINTED-OUTPUT-MARKER") < chapter.index("LATER-SECTION")
    assert has("see the chapter. FINDINGS-MARKER")
    # the collapsed solution callout is shown open, as a box with its title
    assert has("LATER-SECTION Solution SOLUTION-MARKER text.")


@pytest.mark.slow
def test_same_executed_notebooks_give_the_same_pdf_bytes(built):
    root, executed, res, data = built
    again = build_pdf(root, executed, root / "out/again.pdf")
    assert again.pdf.read_bytes() == data
    assert not list((root / "out").glob(".*.part"))  # no temporary file left behind


@pytest.mark.slow
def test_a_failed_build_leaves_the_previous_pdf_in_place(built, monkeypatch):
    root, executed, res, data = built
    out = root / "out/keep.pdf"
    out.write_bytes(b"previous")

    def fail(source, root_):
        raise RuntimeError("typst could not compile the book: boom")
    monkeypatch.setattr(pdf, "_typst_pdf", fail)
    with pytest.raises(RuntimeError, match="boom"):
        build_pdf(root, executed, out)
    assert out.read_bytes() == b"previous" and not list(out.parent.glob(".keep.pdf.*"))


def test_a_missing_executed_notebook_is_named_with_the_command_to_run(tmp_path, capsys, monkeypatch):
    write_project(tmp_path)
    executed = tmp_path / "build/demo/executed"
    with pytest.raises(FileNotFoundError, match=r"'chapters/01_demo\.ipynb'.*run `python -m mmlib build`"):
        build_pdf(tmp_path, executed, tmp_path / "book.pdf")
    assert not (tmp_path / "book.pdf").exists()
    # the command line says the same, with exit status 2
    from mmlib.__main__ import main
    monkeypatch.setenv("MMLIB_ROOT", str(tmp_path))
    monkeypatch.setenv("MMLIB_BUILD_DIR", str(tmp_path / "build"))
    assert main(["pdf", "--profile", "demo"]) == 2
    err = capsys.readouterr().err
    assert "01_demo.ipynb" in err and "python -m mmlib build" in err


def test_numbers_signs_become_minus_signs_and_nothing_else_changes():
    """Typst draws '-0.03' with a minus sign after '[' or a space but keeps the hyphen after '(': pdf.minus_signs
    writes every sign as U+2212 in prose and in HTML tables' cells, and leaves hyphens, ranges, dates, exponents,
    printed output, code, math and HTML attributes alone."""
    from mmlib.pdf import minus_signs

    fence, html = "`" * 3, "`" * 8
    text = (f"A (-0.006 [-0.030, +0.024]); p=-0.1; a-1, 11.7-22.9, 2026-12-04, 1e-6, `code -1`, $x = -1$.\n\n"
            f"{fence}\nprinted (-1)\n{fence}\n\n"
            f'{html}{{=html}}\n<td style="margin:-1px">(-4)</td><td class="a-1">-0.5 [-0.7, -0.2]</td>\n{html}\n')
    assert minus_signs(text) == (
        "A (\u22120.006 [\u22120.030, +0.024]); p=\u22120.1; a-1, 11.7-22.9, 2026-12-04, 1e-6, `code -1`, $x = -1$.\n\n"
        f"{fence}\nprinted (-1)\n{fence}\n\n"
        f'{html}{{=html}}\n<td style="margin:-1px">(\u22124)</td><td class="a-1">\u22120.5 [\u22120.7, \u22120.2]</td>\n{html}\n')


def test_outputs_the_pdf_shows(tmp_path):
    """Figures first (a figure bundle's PNG, with its caption), Markdown and HTML as they are, stdout cleaned,
    stderr, tracebacks and object reprs left out."""
    png = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (400).to_bytes(4, "big") + (800).to_bytes(4, "big")
           + b"\x08\x02\x00\x00\x00")
    bundle = {"output_type": "display_data", "metadata": {}, "data": {
        "image/png": base64.b64encode(png).decode(), "text/plain": ["<Figure size 400x800 with 1 Axes>"],
        "text/html": '<figure><img alt="ALT" src="x.png"><figcaption>Rates by <b>group</b></figcaption></figure>'}}
    md = pdf.output_markdown(bundle, "p-1-0", tmp_path)
    assert md.startswith("![Rates by group](media/p-1-0.png)") and (tmp_path / "p-1-0.png").read_bytes() == png
    # a tall figure is narrowed so that it takes at most MAX_FIGURE_HEIGHT of the text height
    width = float(re.search(r"width=([\d.]+)cm", md).group(1))
    assert width == pytest.approx(pdf.MAX_FIGURE_HEIGHT * pdf.TEXT_HEIGHT_CM / 2, abs=0.01)
    assert width < pdf.TEXT_WIDTH_CM
    no_caption = dict(bundle, data={k: v for k, v in bundle["data"].items() if k != "text/html"})
    assert pdf.output_markdown(no_caption, "p-1-1", tmp_path).startswith("![](media/p-1-1.png)")
    meta_caption = dict(no_caption, metadata={"caption": "From metadata"})
    assert pdf.output_markdown(meta_caption, "p-1-2", tmp_path).startswith("![From metadata](")
    stream = lambda name, text: {"output_type": "stream", "name": name, "text": text}  # noqa: E731
    assert pdf.output_markdown(stream("stderr", "FutureWarning: x\n"), "s", tmp_path) == ""
    assert pdf.output_markdown(stream("stdout", "\x1b[1mdone\x1b[0m in 3 s\n 10%|#  | 1/10 [00:01<00:09]\n"), "s",
                               tmp_path) == "``` {.output}\ndone in 3 s\n```"
    assert pdf.output_markdown({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["T"]}, "e",
                               tmp_path) == ""
    obj = {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "<object object at 0x7f00>"}}
    assert pdf.output_markdown(obj, "o", tmp_path) == ""
    html = {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<table><tr><td>1</td></tr></table>",
                                                                    "text/plain": "x"}}
    assert pdf.output_markdown(html, "h", tmp_path).startswith("````````{=html}\n<table>")
