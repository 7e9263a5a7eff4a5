"""Render the executed chapter notebooks into an HTML book.

``_quarto.yml`` at the project root is the single list of chapters. The
source notebooks in ``chapters/`` carry no outputs; a separate pipeline
executes them (papermill) into an *executed* folder that mirrors the project
paths. :func:`render_book` stages the executed copies together with the plain
Markdown pages and assets, renders them with Quarto when it is installed and
with Jupyter Book 1.x otherwise (its ``_config.yml`` / ``_toc.yml`` are
generated from ``_quarto.yml``), and swaps the finished HTML into
``out_dir`` only once the build has succeeded. Nothing is re-executed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

#: Files / folders copied next to the pages when present (project root and chapter folders).
ASSETS = ("references.bib", "figures", "images", "assets")
QUARTO_HINT = ("Quarto is not installed (no `quarto` on PATH). Install it from conda-forge "
               "(add `quarto` to environment.yml) or with the installer from "
               "https://quarto.org/docs/get-started/, or use renderer='jupyter-book'.")
_SPHINX_ERROR = re.compile(r"^(?:.*: )?(?:ERROR|CRITICAL|SEVERE):.*$", re.MULTILINE)


@dataclass
class BookSpec:
    """The book as declared in ``_quarto.yml``: chapter paths in reading order and their parts."""
    title: str
    author: str | None
    chapters: list[str]                          # flattened, in order (index first)
    parts: list[tuple[str | None, list[str]]]    # (caption or None for loose chapters, paths)
    output_dir: str
    bibliography: list[str]


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
                    bibliography=[bib] if isinstance(bib, str) else list(bib))


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


def _jb_files(spec: BookSpec, staging: Path) -> tuple[dict, dict]:
    """Jupyter Book ``_config.yml`` and ``_toc.yml`` (format jb-book) equivalent to ``spec``."""
    for c in spec.chapters:
        if Path(c).suffix not in (".md", ".ipynb"):
            raise ValueError(f"Jupyter Book fallback renders .md and .ipynb pages only, not '{c}'")
    bibs = [b for b in spec.bibliography or ["references.bib"] if (staging / b).is_file()]
    config = {
        "title": spec.title, "author": spec.author or "", "copyright": "",
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence", "deflist"]},
        "html": {"use_download_button": True, "use_repository_button": False,
                 "home_page_in_navbar": True},
        "launch_buttons": {"notebook_interface": "classic", "thebe": False},
        "sphinx": {"config": {"html_show_copyright": False,
                              "suppress_warnings": ["mystnb.unknown_mime_type"]}},
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


def _run(cmd: list[str], log: Path, what: str) -> str:
    """Run ``cmd``, save its combined output to ``log``; RuntimeError with the log tail on failure."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "NO_COLOR": "1"})
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)  # Sphinx colours even when piped
    log.write_text(text, encoding="utf-8")
    errors = _SPHINX_ERROR.findall(text) if what == "jupyter-book" else []
    if proc.returncode != 0 or errors:
        raise RuntimeError(f"{what} build failed (exit {proc.returncode}); full log: {log}\n"
                           + "".join(f"{e}\n" for e in errors[:20]) + f"...\n{text[-4000:]}")
    return text


def render_book(project_root: Path, executed_dir: Path, out_dir: Path | None = None,
                renderer: str = "auto") -> RenderResult:
    """Render the executed notebooks listed in ``_quarto.yml`` to HTML in ``out_dir``.

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
    stage_book(project_root, executed_dir, staging, spec)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    try:
        if renderer == "quarto":
            shutil.copy2(project_root / "_quarto.yml", staging / "_quarto.yml")
            _run([shutil.which("quarto"), "render", str(staging), "--no-execute"], log, "quarto")
            shutil.move(str(staging / spec.output_dir), work / "html")
        else:
            config, toc = _jb_files(spec, staging)
            (staging / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            (staging / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
            _run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
                  "build", str(staging), "--path-output", str(work), "--builder", "html"],
                 log, "jupyter-book")
            shutil.move(str(work / "_build" / "html"), work / "html")
        if not (work / "html" / "index.html").is_file():
            raise RuntimeError(f"{renderer} produced no index.html; see {log}")
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
