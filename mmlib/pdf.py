"""The whole book as one PDF, from the executed chapter notebooks (``python -m mmlib pdf``, ``make pdf``).

Nothing is re-executed: :func:`build_pdf` stages the executed notebooks and the Markdown pages in the order of
``_quarto.yml`` exactly as the HTML render does (:func:`mmlib.book.stage_book` and :func:`mmlib.book.present`, so
each chapter opens with its findings box and the preface carries the chapters' boxes), writes them as one Pandoc
Markdown document, converts that to Typst with Pandoc (``--citeproc`` against the book's ``references.bib``, so
``[@key]`` citations render author-year and ``references.md``'s ``::: {#refs}`` is the bibliography) and compiles it
with Typst. Pandoc comes from the ``pypandoc_binary`` wheel and Typst from the ``typst`` wheel: no system tools.

What the PDF shows of a notebook:

- Markdown cells as they are (math ``$...$`` / ``$$...$$`` typeset by Typst; Quarto callouts ``::: {.callout-KIND}``
  become framed boxes, their ``## Title`` the box's bold title, collapsed solutions shown open);
- no code: the input of every code cell (the ``parameters`` cells included) is left out, as the HTML book folds it;
- outputs: figures (``image/png``, preferred to any other form of the same output; scaled to the text width, or
  smaller when the figure is tall, captioned by the output's ``caption`` metadata, a ``<figcaption>`` or a
  ``text/plain`` that is not a ``<Figure ...>`` repr), Markdown (the chapters' computed sentences), HTML (the
  DataFrames of :func:`mmlib.tables.page_html`, converted by Pandoc's HTML reader into Typst tables with the text
  width's columns; a ``data:`` CSV link keeps its words and adds "in the HTML book") and printed
  ``stdout`` lines. ``stderr`` (warnings), tracebacks and progress bars are left out; the project's own folder is
  written out of every path;
- a title page from ``_quarto.yml`` (title, subtitle, author), a table of contents, one page per part and numbered
  chapters (the first page -- the preface -- and the appendices unnumbered); links between pages become links
  inside the PDF.

The PDF is written to a temporary file beside ``out_pdf`` and renamed into place once complete. It is the same
bytes for the same inputs: the fonts are the ones inside the Typst wheel (system fonts are ignored) and the
creation date is fixed (``SOURCE_DATE_EPOCH`` when set, else 1970-01-01).
"""
from __future__ import annotations

import base64
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import book

#: The page: A4 with 2 cm side margins and 2.5 cm top and bottom, so the text is 17 x 24.7 cm.
TEXT_WIDTH_CM, TEXT_HEIGHT_CM = 17.0, 24.7
#: A figure is at most this share of the text height tall (room for its caption).
MAX_FIGURE_HEIGHT = 0.72

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: A progress bar line (tqdm's ``42%|####  | 5/12 [00:01<00:02, 3.1it/s]``).
_PROGRESS = re.compile(r"\d+%\|.*\||\d+/\d+ \[\d\d:\d\d")
#: A ``repr`` standing in for an object (``<Figure size 640x480 with 1 Axes>``), not worth printing.
_REPR = re.compile(r"^<[\w.]+(?: [^<>]*)?>$|^<[^<>]* at 0x[0-9a-f]+>$", re.S)
_FIGCAPTION = re.compile(r"<figcaption[^>]*>(.*?)</figcaption>", re.S | re.I)
#: A hyphen-minus that is a number's sign -- not one inside a word, a range, a date or an exponent (``a-1``,
#: ``11.7-22.9``, ``2026-12-04``, ``1e-6``) -- for :func:`minus_signs`.
_SIGN = re.compile(r"(?<![\w.\-/\u2212])-(?=\.?\d)")
#: What :func:`minus_signs` leaves as it is: HTML blocks (whose tags it skips, converting only their text), fenced
#: blocks (printed output, raw Typst), inline code and math.
_PROTECTED = re.compile(r"(?P<html>^`{8}\{=html\}\n.*?\n`{8}$)|(?P<fence>^(?P<tick>`{3,})[^\n]*\n.*?\n(?P=tick)$)"
                        r"|(?P<code>`[^`\n]+`)|(?P<math>\$\$.*?\$\$|\$[^$\n]+\$)", re.M | re.S)


@dataclass
class PdfResult:
    """Where the PDF went, how many pages it has, how long it took, and what Pandoc or Typst warned about."""
    pdf: Path
    pages: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def build_pdf(project_root: Path, executed_dir: Path, out_pdf: Path) -> PdfResult:
    """Build one PDF of the book declared in ``<project_root>/_quarto.yml`` from the executed notebooks in
    ``executed_dir`` (which mirrors the project's paths, e.g. ``build/demo/executed``) into ``out_pdf``.

    Raises ``FileNotFoundError`` naming every chapter whose executed notebook is missing (run
    ``python -m mmlib build`` first), ``ValueError`` for a citation missing from the bibliography, and
    ``RuntimeError`` with Pandoc's or Typst's message when a conversion fails; ``out_pdf`` is then left as it was.
    """
    t0 = time.perf_counter()
    project_root, executed_dir = Path(project_root).resolve(), Path(executed_dir).resolve()
    out_pdf = Path(out_pdf).resolve()
    spec = book.read_book_spec(project_root)
    missing = [c for c in spec.chapters if c.endswith(".ipynb") and not (executed_dir / c).is_file()]
    if missing:
        raise FileNotFoundError(
            "no executed notebook for " + ", ".join(f"'{c}' (expected at {executed_dir / c})" for c in missing)
            + "; the PDF is made from the executed chapters: run `python -m mmlib build` (with the same "
            "--profile) first")
    with tempfile.TemporaryDirectory(prefix="mmlib-pdf-") as tmp:
        staging = Path(tmp) / "src"
        book.stage_book(project_root, executed_dir, staging, spec)
        book.present(staging, spec)
        book.check_citations(staging, spec)
        markdown = book_markdown(staging, spec, roots=[project_root, executed_dir.parent, staging])
        (staging / "book.md").write_text(markdown, encoding="utf-8")
        body, warnings = _pandoc_typst(staging, spec)
        (staging / "book.typ").write_text(preamble(spec) + body, encoding="utf-8")
        pdf, typst_warnings = _typst_pdf(staging / "book.typ", staging)
    out_pdf.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{out_pdf.name}.", suffix=".part", dir=out_pdf.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(part, 0o666 & ~umask)  # mkstemp's file is private; the PDF is an ordinary file
        os.replace(part, out_pdf)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return PdfResult(out_pdf, page_count(pdf), time.perf_counter() - t0, warnings + typst_warnings)


def page_count(pdf: bytes) -> int:
    """The number of pages of a PDF written by Typst (its page tree's ``/Count``)."""
    counts = re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)
    return max((int(a or b) for a, b in counts), default=0)


# ------------------------------------------------------------------------------------------- Markdown
def book_markdown(staging: Path, spec: book.BookSpec, roots: list[Path] = ()) -> str:
    """The whole book as one Pandoc Markdown document: a Typst part heading per part, then each page in a Div
    ``{#page-STEM .mmlib-page}`` (``.unnumbered`` for the first page and the appendices) that the Lua filter
    unwraps. Figures are written to ``<staging>/media/``. Numbers' signs are minus signs (:func:`minus_signs`).
    Occurrences of the folders ``roots`` are removed from the text (no machine paths in the PDF)."""
    media = staging / "media"
    media.mkdir(exist_ok=True)
    numerals = iter(["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"])
    out: list[str] = []
    first = spec.chapters[0]
    for caption, pages in spec.parts:
        appendix = caption is not None and caption == "Appendices" and pages == spec.appendices
        if caption:
            title = caption if appendix else f"Part {next(numerals, '')}. {caption}"
            out.append(_raw_typst(f"#mmlib-part[{_typst_text(title)}]"))
        for page in pages:
            path = staging / page
            if path.suffix == ".ipynb":
                text = notebook_markdown(json.loads(path.read_text(encoding="utf-8")), page_id(page), media)
            else:
                text = path.read_text(encoding="utf-8")
            classes = ".mmlib-page" + (" .unnumbered" if page == first or page in spec.appendices else "")
            folder = Path(page).parent.as_posix()
            attrs = f' dir="{folder}"' if folder != "." else ""
            out.append(f"::::::::: {{#{page_id(page)} {classes}{attrs}}}\n\n{text.strip()}\n\n:::::::::")
    text = minus_signs("\n\n".join(out) + "\n")
    for root in sorted({str(r) for r in roots}, key=len, reverse=True):  # a path inside a root -> relative
        text = re.sub(re.escape(root) + r"(?:/|(?![\w-]|\.\w))", lambda m: "" if m.group().endswith("/") else ".",
                      text)
    return text


def minus_signs(text: str) -> str:
    """``text`` (the book's Pandoc Markdown) with every number's sign written as the minus sign U+2212: Typst draws a
    hyphen-minus before a digit as a minus after a space or ``[`` but not after ``(``, so the PDF mixed the two
    (``(-0.006 [−0.030, +0.024]``). Printed output, raw Typst, inline code, math and HTML tags are left as they are
    (an HTML table's cells are converted). Used by :func:`book_markdown`; the HTML book keeps the hyphen-minus."""
    out, pos = [], 0
    for m in _PROTECTED.finditer(text):
        out.append(_SIGN.sub("\u2212", text[pos:m.start()]))
        block = m.group()
        if m.group("html"):
            block = re.sub(r">([^<]*)<", lambda t: ">" + _SIGN.sub("\u2212", t.group(1)) + "<", block)
        out.append(block)
        pos = m.end()
    out.append(_SIGN.sub("\u2212", text[pos:]))
    return "".join(out)


def page_id(page: str) -> str:
    """The PDF's label of a page (``chapters/04_x.ipynb`` -> ``page-04_x``)."""
    return "page-" + re.sub(r"[^\w-]", "-", Path(page).stem)


def notebook_markdown(nb: dict, page: str, media: Path) -> str:
    """A notebook's Markdown cells and its code cells' outputs (never their input) as Pandoc Markdown; figures
    are written to ``media`` as ``<page>-<cell>-<output>.png``. A cell tagged ``remove-cell``/``remove-output``, or
    whose Quarto options say ``include: false`` or ``output: false``, shows nothing."""
    blocks = []
    for i, cell in enumerate(nb.get("cells", [])):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            blocks.append(source)
            continue
        if cell.get("cell_type") != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        opts = book._cell_options(source)
        if tags & {"remove-cell", "remove-output"} or "false" in (opts.get("include"), opts.get("output")):
            continue
        for j, output in enumerate(cell.get("outputs", [])):
            text = output_markdown(output, f"{page}-{i}-{j}", media)
            if text:
                blocks.append(text)
    return "\n\n".join(b.strip("\n") for b in blocks if b.strip())


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_markdown(output: dict, name: str, media: Path) -> str:
    """One cell output as Pandoc Markdown (see the module docstring for what is kept); ``""`` for nothing."""
    kind = output.get("output_type")
    if kind == "stream":
        return _fence(clean_stream(_text(output.get("text", "")))) if output.get("name") == "stdout" else ""
    if kind not in ("display_data", "execute_result"):
        return ""  # errors: a traceback is never printed
    data, meta = output.get("data", {}), output.get("metadata", {})
    for mime, ext in (("image/png", "png"), ("image/jpeg", "jpg"), ("image/svg+xml", "svg")):
        if mime in data:
            raw = _text(data[mime])
            blob = raw.encode("utf-8") if ext == "svg" else base64.b64decode(raw)
            (media / f"{name}.{ext}").write_bytes(blob)
            width = figure_width_cm(blob, ext, (meta.get(mime) or {}))
            caption = _caption(data, meta)
            return f"![{_md_escape(caption)}](media/{name}.{ext}){{width={width:.2f}cm}}"
    if "text/markdown" in data:
        return _text(data["text/markdown"])
    if "text/html" in data:
        fence = "`" * 8
        return f"{fence}{{=html}}\n{_text(data['text/html']).strip()}\n{fence}"
    if "text/latex" in data:
        tex = _text(data["text/latex"]).strip()
        return tex if tex.startswith("$") else f"$${tex}$$"
    if "text/plain" in data:
        plain = _ANSI.sub("", _text(data["text/plain"])).strip()
        return "" if _REPR.match(plain) else _fence(plain)
    return ""


def clean_stream(text: str) -> str:
    """Printed text as a reader should see it: no colour codes, a carriage-return-overwritten line reduced to its
    last state, no progress-bar lines."""
    lines = []
    for line in _ANSI.sub("", text).split("\n"):
        line = line.rstrip("\r").split("\r")[-1].rstrip()
        if line and not _PROGRESS.search(line):
            lines.append(line)
    return "\n".join(lines)


def _fence(text: str) -> str:
    if not text.strip():
        return ""
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks} {{.output}}\n{text}\n{ticks}"


def _caption(data: dict, meta: dict) -> str:
    """A figure's caption: the output's ``caption`` metadata, else a ``<figcaption>`` of its HTML form, else its
    ``text/plain`` when that is not a ``<Figure ...>`` repr."""
    for m in (meta, meta.get("image/png") or {}):
        if isinstance(m, dict) and m.get("caption"):
            return " ".join(str(m["caption"]).split())
    found = _FIGCAPTION.search(_text(data.get("text/html", "")))
    if found:
        return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())
    plain = _text(data.get("text/plain", "")).strip()
    return "" if not plain or _REPR.match(plain) else " ".join(plain.split())


def _md_escape(text: str) -> str:
    return re.sub(r"([\\\[\]*_`$<>#@])", r"\\\1", text)


def figure_width_cm(blob: bytes, ext: str, meta: dict) -> float:
    """The width a figure gets: the text width, or less when the figure is so tall that it would take more than
    :data:`MAX_FIGURE_HEIGHT` of the page at that width."""
    w, h = meta.get("width"), meta.get("height")
    if not (w and h) and ext == "png" and blob[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")
    if not (w and h):
        return TEXT_WIDTH_CM
    return round(min(TEXT_WIDTH_CM, MAX_FIGURE_HEIGHT * TEXT_HEIGHT_CM * float(w) / float(h)), 2)


def _raw_typst(code: str) -> str:
    return f"```{{=typst}}\n{code}\n```"


def _typst_text(text: str) -> str:
    """Plain text safe inside a Typst content block ``[...]``."""
    return re.sub(r"([\\\[\]#*_`$<>@=~/-])", r"\\\1", text)


def _typst_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------- Pandoc
#: Pandoc Lua filter: page Divs unwrapped (the first heading gets the page's label), callouts as boxes, links
#: between pages as links inside the PDF, ``data:`` links and images reduced to their text, HTML blocks (the
#: DataFrames) read by Pandoc's HTML reader so they become Typst tables.
LUA_FILTER = r"""
local pages = PAGES

local function page_target(target)
  if target:match('^%a[%w+.-]*:') or target:sub(1, 1) == '#' then return nil end
  local path = target:gsub('#.*$', '')
  local base = path:match('([^/]+)$') or path
  return pages[base] or pages[(base:gsub('%.[^.]+$', ''))]
end

local function link(el)
  if el.target:match('^data:') then
    local words = el.content
    words:extend({pandoc.Space(), pandoc.Str('in'), pandoc.Space(), pandoc.Str('the'), pandoc.Space(),
                  pandoc.Str('HTML'), pandoc.Space(), pandoc.Str('book')})
    return words
  end
  local id = page_target(el.target)
  if id then el.target = '#' .. id; return el end
end

local function image(el)
  if el.src:match('^data:') or el.src:match('^%a[%w+.-]*://') then return {} end
end

local function header_as_title(h) return pandoc.Para({pandoc.Strong(h.content)}) end

local colours = {note = 'rgb("#2e5c8a")', tip = 'rgb("#2e7d4f")', important = 'rgb("#b03a2e")',
                 warning = 'rgb("#c77700")', caution = 'rgb("#c77700")'}

local function callout(el, kind)
  local blocks = pandoc.List(el.content)
  local title
  if el.attributes.title then title = pandoc.Inlines(el.attributes.title) end
  if not title and #blocks > 0 and blocks[1].t == 'Header' then title = blocks[1].content; blocks:remove(1) end
  if not title then title = pandoc.Inlines(kind:sub(1, 1):upper() .. kind:sub(2)) end
  blocks = pandoc.Blocks(blocks):walk({Header = header_as_title})
  local out = pandoc.List({pandoc.RawBlock('typst', '#mmlib-callout(' .. (colours[kind] or colours.note) .. ')[')})
  out:insert(pandoc.Para({pandoc.Strong(title)}))
  out:extend(blocks)
  out:insert(pandoc.RawBlock('typst', ']'))
  return out
end

function Div(el)
  for _, c in ipairs(el.classes) do
    local kind = c:match('^callout%-(.+)$')
    if kind then return callout(el, kind) end
  end
  if el.classes:includes('mmlib-page') then
    local unnumbered = el.classes:includes('unnumbered')
    local dir = el.attributes.dir
    local labelled = false
    local blocks = pandoc.Blocks(el.content):walk({
      Header = function(h)
        if not labelled then h.identifier = el.identifier; labelled = true end
        if unnumbered and not h.classes:includes('unnumbered') then h.classes:insert('unnumbered') end
        return h
      end,
      Image = function(img)  -- a page's own images are relative to its folder; Typst reads from the book's
        if dir and not img.src:match('^media/') and not img.src:match('^/') then img.src = dir .. '/' .. img.src end
        return img
      end})
    return blocks
  end
end

function RawBlock(el)
  if el.format == 'html' then
    local doc = pandoc.read(el.text, 'html')
    return doc.blocks:walk({Link = link, Image = image})
  end
end

function RawInline(el)
  if el.format == 'html' then return {} end
end

return {
  {Link = link, Image = image, RawBlock = RawBlock, RawInline = RawInline},
  {Div = Div},
}
"""


def pandoc_path() -> str:
    """The pandoc binary inside the ``pypandoc_binary`` wheel."""
    import pypandoc
    return pypandoc.get_pandoc_path()


def _pandoc_typst(staging: Path, spec: book.BookSpec) -> tuple[str, list[str]]:
    """``<staging>/book.md`` -> Typst body (citations rendered by citeproc); returns it and Pandoc's warnings."""
    pages = {}
    for page in spec.chapters:
        pages[Path(page).name] = pages[Path(page).stem] = page_id(page)
    lua_pages = "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in sorted(pages.items())) + "}"
    (staging / "mmlib.lua").write_text(LUA_FILTER.replace("PAGES", lua_pages), encoding="utf-8")
    bibs = [str(staging / b) for b in book._bib_files(spec, staging)]
    # Markdown as Pandoc reads it, except that a list may follow a paragraph line directly (as in MyST, so the
    # chapters' printed lists read as in the HTML book)
    cmd = [pandoc_path(), "book.md", "--from", "markdown+lists_without_preceding_blankline", "--to", "typst",
           "--wrap=none",
           "--lua-filter", "mmlib.lua", "--metadata", "link-citations=true", "--metadata", "lang=en-US"]
    if bibs:
        cmd += ["--citeproc"] + [f"--bibliography={b}" for b in bibs]
    proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pandoc could not convert the book to Typst (exit {proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    warnings = [w.strip() for w in re.split(r"^(?=\[WARNING\])", proc.stderr, flags=re.M) if w.strip()]
    return proc.stdout, warnings


# ------------------------------------------------------------------------------------------- Typst
def preamble(spec: book.BookSpec) -> str:
    """The Typst set-up before the body: page, fonts, headings (chapters open a page; parts have a page of their
    own), tables that fit the text width and break across pages, callout boxes, title page, table of contents."""
    title = _typst_text(spec.title)
    subtitle = _typst_text(spec.subtitle or "")
    author = _typst_text(spec.author or "")
    return f"""\
#set document(title: {_typst_string(spec.title)}, author: {_typst_string(spec.author or "")})
#set page(paper: "a4", margin: (x: 2cm, y: 2.5cm), numbering: "1")
#set text(font: "Libertinus Serif", size: 10.5pt, lang: "en", region: "us")
#set par(justify: true)
#show raw: set text(font: "DejaVu Sans Mono", size: 8pt)
#show raw.where(block: true): it => block(width: 100%, fill: luma(246), inset: 6pt, radius: 2pt, it)
#show link: it => if type(it.dest) == str {{ text(fill: rgb("#2e5c8a"), it) }} else {{ it }}
#set heading(numbering: "1.1")
#show heading: set block(above: 1.4em, below: 0.8em)
#show heading.where(level: 1): it => {{
  pagebreak(weak: true)
  if it.supplement == [Part] {{
    v(30%)
    align(center, text(size: 24pt, weight: "bold", it.body))
  }} else {{
    v(1.2cm)
    if it.numbering != none {{
      text(size: 13pt, fill: luma(90))[Chapter #counter(heading).display("1")]
      linebreak()
    }}
    text(size: 21pt, weight: "bold", it.body)
    v(0.6cm)
  }}
}}
#show heading.where(level: 2): set text(size: 14pt)
#show heading.where(level: 3): it => block(above: 1.2em, below: 0.7em, text(size: 11pt, weight: "bold", it.body))
#show heading.where(level: 4): it => block(above: 1em, below: 0.6em, text(weight: "bold", style: "italic", it.body))
#let mmlib-part(title) = heading(level: 1, numbering: none, supplement: [Part], title)
#let mmlib-callout(colour, body) = block(width: 100%, inset: (x: 10pt, y: 8pt), radius: 2pt, breakable: true,
  fill: colour.lighten(92%), stroke: (left: 2.5pt + colour), body)
#let horizontalrule = line(start: (25%, 0%), end: (75%, 0%))
#set table(inset: 4pt, stroke: 0.4pt + luma(170))
#show table: set text(size: 8pt)
#show table: set par(justify: false)
#show table: it => {{ show "_": "_" + sym.zws; it }}
#show table.cell: set align(left)
#show figure.where(kind: table): set block(breakable: true)
#show figure.where(kind: image): set block(breakable: false)
#show figure.caption: set text(size: 9pt)
#show terms.item: it => block(breakable: false)[
  #text(weight: "bold")[#it.term]
  #block(inset: (left: 1.5em, top: -0.4em))[#it.description]
]

#page(numbering: none)[
  #v(28%)
  #align(center)[
    #text(size: 26pt, weight: "bold")[{title}]
    #v(1em)
    #text(size: 14pt)[{subtitle}]
    #v(3em)
    #text(size: 12pt)[{author}]
  ]
]
#set page(numbering: none)
#outline(title: [Contents], depth: 2, indent: auto)
#set page(numbering: "1")
#counter(page).update(1)

"""


def _typst_pdf(source: Path, root: Path) -> tuple[bytes, list[str]]:
    """Compile ``source`` with the fonts inside the Typst wheel and a fixed creation date."""
    import typst

    stamp = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    try:
        pdf, warnings = typst.compile_with_warnings(str(source), root=str(root), ignore_system_fonts=True,
                                                     timestamp=stamp)
    except typst.TypstError as exc:  # pragma: no cover - a bug in the conversion, shown with Typst's diagnostic
        raise RuntimeError(f"typst could not compile the book: {exc.message}\n{exc.diagnostic}") from exc
    return pdf, [f"typst: {getattr(w, 'message', w)}" for w in warnings or []]
