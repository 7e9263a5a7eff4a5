"""Render the executed chapter notebooks into an HTML book.

``_quarto.yml`` at the project root is the single list of chapters. The
source notebooks in ``chapters/`` carry no outputs; a separate pipeline
executes them (papermill) into an *executed* folder that mirrors the project
paths. :func:`render_book` stages the executed copies together with the plain
Markdown pages and assets, renders them with Quarto when it is installed and
with Jupyter Book 1.x otherwise (its ``_config.yml`` / ``_toc.yml`` are
generated from ``_quarto.yml``), and swaps the finished HTML into
``out_dir`` only once the build has succeeded. Nothing is re-executed.

One source renders the same in both renderers. Citations are written in Pandoc syntax (``[@key]``,
``[@a; @b]``, ``[see @key, p. 3]``, ``[-@key]``, narrative ``@key``) against the ``bibliography:`` of
``_quarto.yml``, and a page holding ``::: {#refs}`` / ``:::`` is where the bibliography goes; Quarto reads
them natively, and for Jupyter Book the staged copies get sphinxcontrib-bibtex roles (``{cite:p}``,
``{cite:t}``, ``{cite:yearpar}``) and a ``{bibliography}`` directive. Code is folded as ``code-fold: true``
asks: for Jupyter Book every staged code cell gets the ``hide-input`` tag (a cell opts out with the tag
``show-input`` or ``#| code-fold: show``; ``#| echo: false`` removes the input, ``#| include: false`` the
cell). A citation of a key that the bibliography lacks is an error in both renderers.

Math (``$...$`` inline, ``$$...$$`` display, as Pandoc reads them) is typeset as MathML, which browsers render
natively, so no page loads MathJax from a CDN: Quarto with ``html-math-method: mathml`` (``_quarto.yml``), Jupyter
Book through the Sphinx math renderer ``mmlib_mathml`` (:data:`MATHML_EXTENSION`, :func:`mathml`). A formula that
cannot be converted stops the render with its page and TeX. The PDF of the book is :mod:`mmlib.pdf`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

#: Files / folders copied next to the pages when present (project root and chapter folders).
ASSETS = ("references.bib", "figures", "images", "assets")
QUARTO_HINT = ("Quarto is not installed (no `quarto` on PATH). Install it from conda-forge "
               "(add `quarto` to environment.yml) or with the installer from "
               "https://quarto.org/docs/get-started/, or use renderer='jupyter-book'.")
_SPHINX_ERROR = re.compile(r"^(?:.*: )?(?:ERROR|CRITICAL|SEVERE):.*$", re.MULTILINE)

#: Pandoc citation keys (letters, digits, and internal punctuation; a trailing punctuation mark is not part).
_KEY = r"[A-Za-z0-9_][\w:.#$%&+?<>~/-]*(?<![:.#$%&+?<>~/-])"
#: A bracketed Pandoc citation: ``[`` ... ``@key`` ... ``]`` with no nested brackets, not a link's text.
_BRACKETED = re.compile(r"\[([^\[\]]*?-?@" + _KEY + r"[^\[\]]*)\](?![(\[])")
_CITE_ITEM = re.compile(r"^\s*(?P<pre>(?:.*?\s)?)(?P<minus>-?)@(?P<key>" + _KEY + r")(?P<post>(?:[\s,].*?)?)\s*$", re.S)
#: A narrative ``@key`` (not inside a word or an e-mail address).
_NARRATIVE = re.compile(r"(?<![\w@.\-/`])@(" + _KEY + r")")
#: Fenced code blocks and inline code spans are never rewritten.
_CODE = re.compile(r"(^(?P<fence>```+|~~~+)[^\n]*\n.*?^(?P=fence)[ \t]*$|`+[^`\n]*`+)", re.S | re.M)
_REFS_DIV = re.compile(r"^:::+\s*\{#refs[^}]*\}\s*\n\s*:::+[ \t]*$", re.M)
_CELL_OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$", re.M)
#: Tags of a code cell that already say how its input is shown (Jupyter Book / MyST-NB tags).
_INPUT_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell", "show-input"}


@dataclass
class BookSpec:
    """The book as declared in ``_quarto.yml``: chapter paths in reading order and their parts."""
    title: str
    author: str | None
    chapters: list[str]                          # flattened, in order (index first)
    parts: list[tuple[str | None, list[str]]]    # (caption or None for loose chapters, paths)
    output_dir: str
    bibliography: list[str]
    subtitle: str | None = None
    appendices: list[str] = field(default_factory=list)   # the pages of ``book.appendices``, in order


@dataclass
class RenderResult:
    """Which renderer built the book, where the HTML lives, and how long the build took."""
    renderer: str
    html_dir: Path
    index_html: Path
    seconds: float


def read_book_spec(project_root: Path) -> BookSpec:
    """Parse ``<project_root>/_quarto.yml`` into a :class:`BookSpec`.

    Chapter entries may be paths or Quarto part dicts ``{part: title, chapters: [...]}``;
    ``book.appendices`` becomes a final "Appendices" part. Raises ``ValueError`` naming the file
    and key when the file is missing or malformed or a listed chapter does not exist.
    """
    path = Path(project_root) / "_quarto.yml"
    if not path.is_file():
        raise ValueError(f"{path}: file not found (the book is declared in _quarto.yml)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc

    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{path}: key '{key}' {why}")

    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping at top level")
    project, book = cfg.get("project"), cfg.get("book")
    if not isinstance(project, dict) or project.get("type") != "book":
        raise bad("project.type", "must be 'book'")
    if not isinstance(book, dict) or not isinstance(book.get("chapters"), list) or not book["chapters"]:
        raise bad("book.chapters", "must be a non-empty list")

    parts: list[tuple[str | None, list[str]]] = []

    def add(group: list[str], entry: object, key: str) -> None:
        if not isinstance(entry, str) or not entry.strip():
            raise bad(key, f"has an invalid chapter entry: {entry!r}")
        if not (Path(project_root) / entry).is_file():
            raise bad(key, f"lists '{entry}', which does not exist in {project_root}")
        group.append(entry)

    for entry in book["chapters"]:
        if isinstance(entry, dict) and "part" in entry:
            caption, sub, key = str(entry["part"]), entry.get("chapters") or [], "book.chapters.part"
            if not isinstance(sub, list):
                raise bad(key, "must be a list")
            parts.append((caption, []))
            for item in sub:
                add(parts[-1][1], item, key)
        else:
            if not parts or parts[-1][0] is not None:
                parts.append((None, []))
            add(parts[-1][1], entry, "book.chapters")
    if book.get("appendices"):
        if not isinstance(book["appendices"], list):
            raise bad("book.appendices", "must be a list")
        parts.append(("Appendices", []))
        for item in book["appendices"]:
            add(parts[-1][1], item, "book.appendices")

    bib = cfg.get("bibliography") or book.get("bibliography") or []
    author = book.get("author")
    if isinstance(author, list):
        author = ", ".join(a if isinstance(a, str) else str(a.get("name", a)) for a in author)
    return BookSpec(title=str(book.get("title") or "Untitled"), author=author,
                    chapters=[c for _, cs in parts for c in cs], parts=parts,
                    output_dir=str(project.get("output-dir") or "_book"),
                    bibliography=[bib] if isinstance(bib, str) else list(bib),
                    subtitle=str(book["subtitle"]) if book.get("subtitle") else None,
                    appendices=list(parts[-1][1]) if book.get("appendices") else [])


def bib_keys(paths: list[Path]) -> set[str]:
    """The entry keys of the BibTeX files ``paths`` (``@type{key,``; ``@comment``/``@string``/``@preamble`` skipped)."""
    keys: set[str] = set()
    for path in paths:
        for kind, key in re.findall(r"^\s*@(\w+)\s*[{(]\s*([^,\s]+)\s*,", Path(path).read_text(encoding="utf-8"),
                                    re.M):
            if kind.lower() not in ("comment", "string", "preamble"):
                keys.add(key)
    return keys


def _bib_files(spec: BookSpec, staging: Path) -> list[str]:
    """The staged bibliography files (``references.bib`` when ``_quarto.yml`` names none)."""
    return [b for b in spec.bibliography or ["references.bib"] if (staging / b).is_file()]


def _outside_code(text: str, fn) -> str:
    """Apply ``fn`` to the parts of Markdown ``text`` that are not fenced code blocks or inline code spans."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out += [fn(text[pos:m.start()]), m.group(0)]
        pos = m.end()
    return "".join(out + [fn(text[pos:])])


def citations(text: str, keys: set[str] | None = None) -> list[str]:
    """The keys cited in Markdown ``text``: every key of a bracketed citation, and narrative ``@key`` whose key
    is in ``keys`` (when ``keys`` is given; without it, every narrative ``@word`` counts)."""
    found: list[str] = []

    def scan(part: str) -> str:
        for m in _BRACKETED.finditer(part):
            items = [_CITE_ITEM.match(i) for i in m.group(1).split(";")]
            found.extend(i["key"] for i in items if all(items))
        rest = _BRACKETED.sub(" ", part)
        found.extend(k for k in _NARRATIVE.findall(rest) if keys is None or k in keys)
        return part
    _outside_code(text, scan)
    return found


def pandoc_to_myst(text: str, keys: set[str]) -> str:
    """Pandoc citations in Markdown ``text`` as sphinxcontrib-bibtex roles, and a ``::: {#refs}`` div as a
    ``{bibliography}`` directive. ``[@a; @b]`` -> ``{cite:p}`a,b```; ``[see @a, p. 3]`` ->
    ``{cite:p}`{see}a{p. 3}```; ``[-@a]`` -> ``{cite:yearpar}`a```; a narrative ``@a`` whose key is in ``keys``
    -> ``{cite:t}`a```. Code is left alone; so is a bracket whose items are not all citations."""
    def bracket(m: re.Match) -> str:
        items = [_CITE_ITEM.match(i) for i in m.group(1).split(";")]
        if not all(items):
            return m.group(0)
        parts = [(i["pre"].strip(), i["key"], i["post"].strip().lstrip(",").strip(), i["minus"]) for i in items]
        if len(parts) == 1 and parts[0][3] and not parts[0][0] and not parts[0][2]:
            return "{cite:yearpar}`%s`" % parts[0][1]
        body = ",".join((f"{{{pre}}}" if pre else "") + key + (f"{{{post}}}" if post else "")
                        for pre, key, post, _ in parts)
        return "{cite:p}`%s`" % body

    def convert(part: str) -> str:
        part = _BRACKETED.sub(bracket, part)
        return _NARRATIVE.sub(lambda m: "{cite:t}`%s`" % m.group(1) if m.group(1) in keys else m.group(0), part)
    text = _REFS_DIV.sub("```{bibliography}\n```", text)
    return _outside_code(text, convert)


def _cell_options(source: str) -> dict[str, str]:
    """Quarto cell options (``#| name: value`` lines at the top of a code cell)."""
    head = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        head.append(line)
    return {k: v.strip("'\"").lower() for k, v in _CELL_OPTION.findall("\n".join(head))}


def fold_code(cell: dict) -> None:
    """Give a code cell the Jupyter Book tag that matches ``code-fold: true``: ``hide-input`` (collapsed, one
    click to show), unless the cell already has an input tag or says otherwise in its Quarto options."""
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if _INPUT_TAGS & set(tags):
        return
    opts = _cell_options("".join(cell.get("source", "")))
    if opts.get("include") == "false":
        tags.append("remove-cell")
    elif opts.get("echo") == "false":
        tags.append("remove-input")
    elif opts.get("code-fold") not in ("show", "false"):
        tags.append("hide-input")


def check_citations(staging: Path, spec: BookSpec) -> None:
    """Every key cited by the staged pages is in the bibliography; ValueError naming page and key otherwise."""
    bibs = _bib_files(spec, staging)
    keys = bib_keys([staging / b for b in bibs])
    problems = []
    for page in spec.chapters:
        for text in _markdown_texts(staging / page):
            problems += [f"{page} cites @{k}, which is not in {', '.join(bibs) or 'any bibliography'}"
                         for k in citations(text, keys) if k not in keys]
    if problems:
        raise ValueError("unknown citation keys (add them to the .bib file or fix the key):\n"
                         + "\n".join(sorted(set(problems))))


def _markdown_texts(path: Path) -> list[str]:
    """The Markdown of a page: the whole file for ``.md``/``.qmd``; a notebook's Markdown cells and outputs."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        texts = []
        for c in nb.get("cells", []):
            if c.get("cell_type") == "markdown":
                texts.append("".join(c.get("source", "")))
            for out in c.get("outputs", []):
                md = out.get("data", {}).get("text/markdown")
                if md is not None:
                    texts.append("".join(md) if isinstance(md, list) else md)
        return texts
    return [path.read_text(encoding="utf-8")]


#: A Quarto callout: ``::: {.callout-KIND attrs}`` ... ``:::`` (the first line of its body may be a ``## Title``).
_CALLOUT = re.compile(r"^(?P<fence>:::+)[ \t]*\{\.callout-(?P<kind>[\w-]+)(?P<attrs>[^}]*)\}[ \t]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                      re.S | re.M)
#: The tag of the cell whose Markdown output is a chapter's findings box (:mod:`mmlib.headlines`).
FINDINGS_TAG = "findings"
#: In a Markdown page, where the findings box of chapter NN goes: ``<!-- findings: NN -->`` on its own line.
_FINDINGS_MARK = re.compile(r"^<!--\s*findings:\s*(\d\d)\s*-->[ \t]*$", re.M)
#: Where a Markdown page links the book's PDF (:func:`present`): ``<!-- pdf -->`` on a line of its own.
_PDF_MARK = re.compile(r"^<!-- pdf -->[ \t]*$", re.M)
#: The PDF's name in the rendered HTML book, beside ``index.html``.
PDF_NAME = "book.pdf"
#: A machine path to an artifact folder in papermill's injected parameters (build folders may live anywhere).
_ARTIFACT_PATH = re.compile(r"""(["'])[^"'\n]*?/(artifacts/[^"'\n]*)\1""")


def callouts_to_myst(text: str) -> str:
    """Quarto callouts in Markdown ``text`` as MyST admonitions (Jupyter Book): ``::: {.callout-tip}`` with a
    ``## Title`` line becomes an ``admonition`` with that title and the class ``tip``; ``collapse="true"`` adds the
    class ``dropdown`` (collapsed, one click to open). The body keeps its code blocks (the fence is longer)."""
    def one(m: re.Match) -> str:
        body = m.group("body")
        title = m.group("kind").replace("-", " ").capitalize()
        first, _, rest = body.partition("\n")
        if re.match(r"^#{1,6}\s+\S", first):
            title, body = re.sub(r"^#{1,6}\s+", "", first).strip(), rest
        classes = [m.group("kind")] + (["dropdown"] if re.search(r"collapse\s*=\s*[\"']?true", m.group("attrs")) else [])
        return f"`````{{admonition}} {title}\n:class: {' '.join(classes)}\n{body.rstrip()}\n`````"
    return _CALLOUT.sub(one, text)


def _markdown_output(cell: dict) -> str | None:
    for out in cell.get("outputs", []):
        md = out.get("data", {}).get("text/markdown")
        if md is not None:
            return "".join(md) if isinstance(md, list) else md
    return None


def _findings_box(nb: dict) -> str | None:
    """The Markdown of a notebook's findings box: the output of its cell tagged :data:`FINDINGS_TAG`."""
    for cell in nb.get("cells", []):
        if FINDINGS_TAG in cell.get("metadata", {}).get("tags", []):
            return _markdown_output(cell)
    return None


def _pdf_line(page: str, pdf: Path | bool | None) -> str:
    """What a page's ``<!-- pdf -->`` line becomes: a link to the PDF beside the HTML book (``pdf`` a file), how
    to make one (``False``: the HTML book has none), or nothing (``None``: inside the PDF itself)."""
    if pdf is None:
        return ""
    if pdf is False:
        return ("The whole book is also available as one PDF: `make pdf` (or `python -m mmlib pdf`) writes it to "
                "`build/<profile>/book.pdf`.")
    href = "../" * (len(Path(page).parts) - 1) + PDF_NAME
    size = Path(pdf).stat().st_size / 1e6
    return (f'<p class="mmlib-pdf"><a href="{href}" download>The whole book as one PDF</a> ({size:.1f} MB), '
            "made from the same executed chapters as these pages.</p>")


def present(staging: Path, spec: BookSpec, pdf: Path | bool | None = None) -> None:
    """What a reader sees first, for both renderers (the staged copies only; the executed notebooks keep their
    order and paths):

    - a chapter's findings box (the output of its cell tagged :data:`FINDINGS_TAG`) moves under the chapter's
      opening cell, its code hidden (``#| echo: false``), so each chapter opens with what it found;
    - a Markdown page's ``<!-- findings: NN -->`` line is replaced by chapter NN's findings box (the preface states
      what the book found; a chapter without a box there leaves a sentence saying so);
    - papermill's injected parameters show artifact folders relative to the build folder, never a machine path;
    - a Markdown page's ``<!-- pdf -->`` line links the book's PDF (``pdf``: the file, which :func:`render_book`
      puts beside the pages), says how to make one (``False``), or goes (``None``, the PDF's own pages)."""
    boxes = {}
    for page in spec.chapters:
        path = staging / page
        if path.suffix != ".ipynb":
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb.get("cells", [])
        for cell in cells:
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                cell["source"] = _ARTIFACT_PATH.sub(lambda m: f"{m.group(1)}build/{m.group(2)}{m.group(1)}",
                                                    "".join(cell.get("source", "")))
        box = [i for i, c in enumerate(cells) if FINDINGS_TAG in c.get("metadata", {}).get("tags", [])
               and _markdown_output(c) is not None]
        if box and cells and cells[0].get("cell_type") == "markdown":
            cell = cells.pop(box[0])
            cell["source"] = "#| echo: false\n" + "".join(cell.get("source", ""))
            cells.insert(1, cell)
            boxes[Path(page).name[:2]] = _markdown_output(cell)
        path.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for page in spec.chapters:
        path = staging / page
        if path.suffix in (".md", ".qmd"):
            text = path.read_text(encoding="utf-8")
            text = _FINDINGS_MARK.sub(lambda m: boxes.get(m.group(1), f"*(Chapter {m.group(1)} states no findings in "
                                                                    "this build.)*"), text)
            text = _PDF_MARK.sub(lambda m: _pdf_line(page, pdf), text)
            path.write_text(text, encoding="utf-8")


def prepare_for_jupyter_book(staging: Path, spec: BookSpec) -> None:
    """Rewrite the staged pages for Jupyter Book: citations as roles, ``{#refs}`` as a bibliography, code folded.

    Notebooks are rewritten as JSON (outputs and metadata untouched apart from the cell tags)."""
    keys = bib_keys([staging / b for b in _bib_files(spec, staging)])
    for page in spec.chapters:
        path = staging / page
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            for cell in nb.get("cells", []):
                if cell.get("cell_type") == "markdown":
                    cell["source"] = callouts_to_myst(pandoc_to_myst("".join(cell.get("source", "")), keys))
                elif cell.get("cell_type") == "code":
                    fold_code(cell)
                    for out in cell.get("outputs", []):  # Markdown a chapter prints (findings) may cite too
                        if "text/markdown" in out.get("data", {}):
                            md = out["data"]["text/markdown"]
                            out["data"]["text/markdown"] = callouts_to_myst(pandoc_to_myst(
                                "".join(md) if isinstance(md, list) else md, keys))
            path.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        else:
            path.write_text(callouts_to_myst(pandoc_to_myst(path.read_text(encoding="utf-8"), keys)), encoding="utf-8")


def stage_book(project_root: Path, executed_dir: Path, staging: Path, spec: BookSpec) -> None:
    """Fill ``staging`` (wiped first) with the pages: executed notebooks, Markdown pages, assets."""
    project_root, executed_dir = Path(project_root), Path(executed_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for chapter in spec.chapters:
        src = (executed_dir if chapter.endswith(".ipynb") else project_root) / chapter
        if not src.is_file():
            raise FileNotFoundError(
                f"chapter '{chapter}' has no executed copy at {src}; execute it first, "
                f"e.g. with `python -m mmlib run {Path(chapter).stem.split('_')[0]}`")
        (staging / chapter).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, staging / chapter)
    folders = {"."} | {str(Path(c).parent) for c in spec.chapters}
    for rel in sorted({str(Path(f) / a) for f in folders for a in ASSETS} | set(spec.bibliography)):
        src, dst = project_root / rel, staging / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


#: A TeX command that latex2mathml does not know: it copies the command into an identifier, ``<mi>\\foo</mi>``.
_UNKNOWN_TEX = re.compile(r"<mi>(\\[A-Za-z]+)</mi>")


def mathml(tex: str, display: bool = False) -> str:
    """TeX math (the inside of ``$...$`` or ``$$...$$``) as a MathML ``<math>`` element (``display="block"`` for
    display math), which browsers render without any script; the Jupyter Book render's math (:data:`MATHML_EXTENSION`).

    ValueError naming the formula when latex2mathml cannot convert it, or would print a command it does not know
    (``\\foo``) or an alignment ``&`` as text."""
    from latex2mathml.converter import convert

    try:
        out = convert(tex.strip(), display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises its own exception types, and IndexError etc. on bad input
        raise ValueError(f"cannot convert the math ${tex}$ to MathML: {type(exc).__name__}: {exc}") from exc
    unknown = _UNKNOWN_TEX.findall(out)
    if unknown or re.search(r"&(?!#?\w+;)", out):
        what = f"the command(s) {', '.join(sorted(set(unknown)))}" if unknown else "an alignment '&'"
        raise ValueError(f"cannot convert the math ${tex}$ to MathML: latex2mathml does not support {what}")
    return out


#: A Sphinx extension written next to the staged pages (Jupyter Book): math nodes (MyST ``$...$``, ``$$...$$``,
#: ``{math}``) rendered as MathML by :func:`mathml` instead of MathJax, so no page loads a script from a CDN (with
#: this renderer Sphinx never adds MathJax). A formula it cannot convert is a Sphinx error naming page and line.
MATHML_EXTENSION = """\
from docutils import nodes
from sphinx.util import logging

from mmlib.book import mathml

logger = logging.getLogger(__name__)


def _convert(self, node, display):
    try:
        return mathml(node.astext(), display)
    except ValueError as exc:
        logger.error(str(exc), location=node)
        return '<code class="math">' + self.encode(node.astext()) + '</code>'


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate nohighlight"))
    self.body.append(_convert(self, node, False) + "</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate nohighlight"))
    if node.get("number"):
        from sphinx.util.math import get_node_equation_number
        self.body.append('<span class="eqno">(%s)</span>' % get_node_equation_number(self, node))
    self.body.append(_convert(self, node, True) + "</div>\\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mmlib_mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
"""


def _jb_files(spec: BookSpec, staging: Path) -> tuple[dict, dict]:
    """Jupyter Book ``_config.yml`` and ``_toc.yml`` (format jb-book) equivalent to ``spec``."""
    for c in spec.chapters:
        if Path(c).suffix not in (".md", ".ipynb"):
            raise ValueError(f"Jupyter Book fallback renders .md and .ipynb pages only, not '{c}'")
    bibs = _bib_files(spec, staging)
    sphinx_config: dict = {
        "html_show_copyright": False,
        "suppress_warnings": ["mystnb.unknown_mime_type"],
        # Jupyter Book's own extension list without sphinx_thebe: the book runs nothing in the browser, and
        # sphinx-thebe writes its `const THEBE_JS_URL ...` script twice into every page (a JavaScript
        # SyntaxError) and a Binder configuration for its default, unrelated repository.
        "extensions": [e for e in _jb_default_extensions() if e != "sphinx_thebe"]
                      + (["sphinxcontrib.bibtex", "mmlib_bibstyle"] if bibs else []) + ["mmlib_mathml"],
        # math as MathML (mmlib_mathml, written by render_book): no MathJax, so no script from a CDN
        "html_math_renderer": "mmlib_mathml",
        # `$` math as Pandoc (Quarto, the PDF) reads it: no space inside the dollars, no digit right after the
        # closing one, so "$5 and $10" stays text; `$$...$$` inside a paragraph is display math
        "myst_dmath_allow_space": False, "myst_dmath_allow_digits": False, "myst_dmath_double_inline": True,
        "html_static_path": ["_static"],
        "html_css_files": [OUTPUT_CSS_NAME],  # written into _static by render_book
        # a page's own icon, so the browser does not ask the server for /favicon.ico (a 404 in the console)
        "html_favicon": "_static/mmlib-favicon.svg",
        # pydata-sphinx-theme logs "Got invalid theme mode" on a first visit unless a default mode is set
        "html_context": {"default_mode": "light"},
        # Markdown outputs (the findings a chapter prints) are parsed as MyST, so their citations resolve too,
        # as Pandoc resolves them under Quarto
        "nb_render_markdown_format": "myst",
    }
    if bibs:
        # author-year citations, as Quarto's default CSL style prints them
        sphinx_config |= {"bibtex_reference_style": "author_year_round", "bibtex_default_style": "plain"}
    config = {
        "title": spec.title, "author": spec.author or "", "copyright": "",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence", "deflist"]},
        "html": {"use_download_button": True, "use_repository_button": False,
                 "use_issues_button": False, "use_edit_page_button": False,
                 "home_page_in_navbar": True},
        # no launch buttons and no repository: Jupyter Book's defaults point at its own GitHub repository
        "launch_buttons": {"notebook_interface": "classic", "binderhub_url": "", "jupyterhub_url": "",
                           "colab_url": "", "deepnote_url": "", "thebe": False},
        "repository": {"url": "", "path_to_book": "", "branch": ""},
        "sphinx": {"config": sphinx_config,
                   # the folder of mmlib_bibstyle.py and mmlib_mathml.py (written by render_book), put on sys.path
                   # by Jupyter Book
                   "local_extensions": {"mmlib_mathml": "_ext", **({"mmlib_bibstyle": "_ext"} if bibs else {})}},
    }
    if bibs:
        config["bibtex_bibfiles"] = bibs
    stem = lambda p: str(Path(p).with_suffix("")).replace("\\", "/")  # noqa: E731
    root = spec.chapters[0]
    groups = [(cap, [{"file": stem(c)} for c in cs if c != root]) for cap, cs in spec.parts]
    groups = [(cap, files) for cap, files in groups if files]
    toc: dict = {"format": "jb-book", "root": stem(root)}
    if any(cap for cap, _ in groups):
        toc["parts"] = [({"caption": cap} if cap else {}) | {"chapters": files} for cap, files in groups]
    elif groups:
        toc["chapters"] = [f for _, files in groups for f in files]
    return config, toc


#: A Sphinx extension written next to the staged pages: sphinxcontrib-bibtex's author-year citations with
#: round brackets and "; " between works, as Quarto's default (Chicago author-date) style prints them.
BIB_STYLE_EXTENSION = """\
import dataclasses

import sphinxcontrib.bibtex.plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle


def _round():
    return BracketStyle(left="(", right=")", sep="; ")


@dataclasses.dataclass
class RoundAuthorYear(AuthorYearReferenceStyle):
    bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_textual: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_author: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_label: BracketStyle = dataclasses.field(default_factory=_round)
    bracket_year: BracketStyle = dataclasses.field(default_factory=_round)


sphinxcontrib.bibtex.plugin.register_plugin(
    "sphinxcontrib.bibtex.style.referencing", "author_year_round", RoundAuthorYear, force=True)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
"""

#: The pages' icon (a plain "M" on the theme's blue).
#: The book's stylesheet, written beside the staged pages by :func:`render_book` for both renderers (Quarto:
#: ``css:`` in ``_quarto.yml``; Jupyter Book: ``html_css_files``): a chapter's printed output (``print``, a cell's
#: text) wraps at the content column's width instead of running out of it, behind a scroll bar, as a long line
#: otherwise does. Code stays as written (it is folded, and wrapping would misalign it).
OUTPUT_CSS_NAME = "mmlib-output.css"
OUTPUT_CSS = """/* mmlib: printed output wraps at the page's width (mmlib/book.py) */
div.cell_output pre, div.cell-output pre, div.cell-output-stdout pre, div.cell-output-stderr pre {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}
"""

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           'fill="#2e5c8a"/><path d="M7 24V8h3l6 9 6-9h3v16h-3V13l-6 9-6-9v11z" fill="#fff"/></svg>\n')


def _jb_default_extensions() -> list[str]:
    """Jupyter Book 1.x's default Sphinx extensions (what it loads when the config names none)."""
    from jupyter_book.config import get_default_sphinx_config
    return list(get_default_sphinx_config()["extensions"])


def _run(cmd: list[str], log: Path, what: str) -> str:
    """Run ``cmd``, save its combined output to ``log``; RuntimeError with the log tail on failure. The command
    imports this checkout's ``mmlib`` first (the Sphinx extension ``mmlib_mathml`` does)."""
    path = os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                           + [p for p in [os.environ.get("PYTHONPATH")] if p])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": path})
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)  # Sphinx colours even when piped
    log.write_text(text, encoding="utf-8")
    errors = _SPHINX_ERROR.findall(text) if what == "jupyter-book" else []
    if proc.returncode != 0 or errors:
        raise RuntimeError(f"{what} build failed (exit {proc.returncode}); full log: {log}\n"
                           + "".join(f"{e}\n" for e in errors[:20]) + f"...\n{text[-4000:]}")
    return text


_DATA_IMAGE = re.compile(r'src="data:image/(png|jpeg|svg\+xml);base64,([A-Za-z0-9+/=\s]+)"')


def externalise_images(html_dir: Path, folder: str = "_images") -> int:
    """Move every image written into a rendered page as inline data (``src="data:image/...;base64,..."``, how
    :mod:`mmlib.plots` emits a figure with its caption and alt text) into a file of ``html_dir/folder`` named by
    its content's digest, and point the page at it (a relative path): pages load and print faster, a figure
    shown twice is stored once, and the alt text and caption stay where they were. Returns the number of images
    moved. Used by :func:`render_book` for both renderers."""
    import base64

    out = Path(html_dir) / folder
    moved = 0
    for page in sorted(Path(html_dir).rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        if "data:image/" not in text:
            continue
        up = "../" * (len(page.relative_to(html_dir).parts) - 1)

        def save(m: re.Match) -> str:
            nonlocal moved
            data = base64.b64decode("".join(m.group(2).split()))
            name = f"{hashlib.sha256(data).hexdigest()[:16]}.{'svg' if m.group(1) == 'svg+xml' else m.group(1)}"
            out.mkdir(exist_ok=True)
            if not (out / name).exists():
                (out / name).write_bytes(data)
            moved += 1
            return f'src="{up}{folder}/{name}"'

        page.write_text(_DATA_IMAGE.sub(save, text), encoding="utf-8")
    return moved


def render_book(project_root: Path, executed_dir: Path, out_dir: Path | None = None,
                renderer: str = "auto", pdf: Path | None = None) -> RenderResult:
    """Render the executed notebooks listed in ``_quarto.yml`` to HTML in ``out_dir``.

    ``pdf``: the book's PDF (:func:`mmlib.pdf.build_pdf` of the same executed notebooks), copied beside the pages
    as :data:`PDF_NAME` and linked where a page has a ``<!-- pdf -->`` line; without it that line says how to
    make one.

    ``renderer``: "auto" (Quarto if on PATH, else Jupyter Book 1.x), "quarto" or "jupyter-book".
    Pages are staged in ``<executed_dir>/../book_src``; the build goes to a temporary folder
    beside ``out_dir`` (default ``<project_root>/<project.output-dir>``), which replaces the old
    ``out_dir`` only after the build succeeded.
    """
    t0 = time.perf_counter()
    project_root, executed_dir = Path(project_root).resolve(), Path(executed_dir).resolve()
    spec = read_book_spec(project_root)
    if renderer == "auto":
        renderer = "quarto" if shutil.which("quarto") else "jupyter-book"
    if renderer not in ("quarto", "jupyter-book"):
        raise ValueError(f"renderer must be 'auto', 'quarto' or 'jupyter-book', not {renderer!r}")
    if renderer == "quarto" and not shutil.which("quarto"):
        raise RuntimeError(QUARTO_HINT)
    out_dir = Path(out_dir).resolve() if out_dir else project_root / spec.output_dir
    staging = executed_dir.parent / "book_src"
    log = executed_dir.parent / "book_build.log"
    if pdf is not None and not Path(pdf).is_file():
        raise FileNotFoundError(f"pdf={pdf}: no such file (build it with `python -m mmlib pdf`, or leave pdf out)")
    stage_book(project_root, executed_dir, staging, spec)
    present(staging, spec, pdf=Path(pdf) if pdf is not None else False)
    check_citations(staging, spec)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        if renderer == "quarto":
            shutil.copy2(project_root / "_quarto.yml", staging / "_quarto.yml")
            (staging / OUTPUT_CSS_NAME).write_text(OUTPUT_CSS, encoding="utf-8")
            _run([shutil.which("quarto"), "render", str(staging), "--no-execute"], log, "quarto")
            shutil.move(str(staging / spec.output_dir), work / "html")
        else:
            prepare_for_jupyter_book(staging, spec)
            config, toc = _jb_files(spec, staging)
            (staging / "_static").mkdir(exist_ok=True)
            (staging / "_static" / "mmlib-favicon.svg").write_text(FAVICON, encoding="utf-8")
            (staging / "_static" / OUTPUT_CSS_NAME).write_text(OUTPUT_CSS, encoding="utf-8")
            (staging / "_ext").mkdir(exist_ok=True)
            (staging / "_ext" / "mmlib_bibstyle.py").write_text(BIB_STYLE_EXTENSION, encoding="utf-8")
            (staging / "_ext" / "mmlib_mathml.py").write_text(MATHML_EXTENSION, encoding="utf-8")
            (staging / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            (staging / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
            _run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
                  "build", str(staging), "--path-output", str(work), "--builder", "html"],
                 log, "jupyter-book")
            shutil.move(str(work / "_build" / "html"), work / "html")
        if not (work / "html" / "index.html").is_file():
            raise RuntimeError(f"{renderer} produced no index.html; see {log}")
        externalise_images(work / "html")
        if pdf is not None:
            shutil.copy2(pdf, work / "html" / PDF_NAME)
        old = work / "previous"
        if out_dir.exists():
            out_dir.rename(old)
        try:
            (work / "html").rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RenderResult(renderer, out_dir, out_dir / "index.html", time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """``python -m mmlib.book``: render the book of the project in the current directory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path("."), help="folder holding _quarto.yml")
    ap.add_argument("--executed", type=Path, default=Path("build/demo/executed"),
                    help="folder of executed notebooks (relative to --project)")
    ap.add_argument("--out", type=Path, default=None, help="HTML output (default: output-dir)")
    ap.add_argument("--renderer", choices=["auto", "quarto", "jupyter-book"], default="auto")
    args = ap.parse_args(argv)
    res = render_book(args.project, args.project / args.executed, args.out, args.renderer)
    print(f"{res.renderer}: {res.index_html} ({res.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
