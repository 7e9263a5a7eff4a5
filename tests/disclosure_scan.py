"""A scanner for credentialed-data leaks in an executed book (used by tests/test_disclosure.py).

It reads what a reader would see -- every output of every executed notebook (text, HTML, Markdown, errors)
and every rendered HTML page -- and reports:

- identifiers: any of the cohort's subject / stay / admission / study / image ids, as a whole token;
- timestamps: any MIMIC-style date-time (shifted years 2100-2299), or any of the cohort's own time strings;
- small counts: an integer 1-10 in a count column of a table (``n``, ``stays``, ``excluded``, ``positives``...)
  or a ``k (p%)`` cell with ``k`` 1-10, and two published flow counts that differ by 1-10;
- per-stay marks: captions or notes that present a single stay (``stay 123``, "example").

It is deliberately independent of :mod:`mmlib.disclosure` (it parses the published text, not the code).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup

COUNT_HEADER = re.compile(r"^(n|n_pos|count|stays|.* stays|stays .*|excluded|remaining|positives|negatives|"
                          r"patients|events|texts)$", re.I)
TIMESTAMP = re.compile(r"\b2[12]\d\d-[01]\d-[0-3]\d[ T][0-2]\d:[0-5]\d")
COUNT_CELL = re.compile(r"^\s*(\d{1,3}(?:,\d{3})*)\s*\(")
PER_STAY = re.compile(r"\bstay \d{5,}|\bexample (stay|note|image)s?\b", re.I)


def _texts_of_notebook(path: Path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            continue  # the chapter's own prose (written before any data was seen)
        for out in cell.get("outputs", []):
            where = f"{path.name} cell {i}"
            if out.output_type == "stream":
                yield where, "text", out.text
            elif out.output_type == "error":
                yield where, "text", "\n".join(out.get("traceback", []))
            else:
                data = out.get("data", {})
                for mime in ("text/html", "text/markdown", "text/plain"):
                    if mime in data:
                        yield where, "html" if mime == "text/html" else "text", data[mime]


def _count(text: str) -> int | None:
    """A count as the tables write it (``4305`` or ``4,305``), else None (``<11``, ``–``, a rate)."""
    t = text.strip()
    return int(t.replace(",", "")) if re.fullmatch(r"\d+|\d{1,3}(,\d{3})+", t) else None


def _small(text: str) -> bool:
    n = _count(text)
    return n is not None and 0 < n < 11


def _table_leaks(html: str) -> list[str]:
    leaks = []
    for table in BeautifulSoup(html, "html.parser").find_all("table"):
        rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in table.find_all("tr")]
        if not rows:
            continue
        header = rows[0]
        count_cols = [j for j, h in enumerate(header) if COUNT_HEADER.match(h)]
        for r in rows[1:]:
            # pandas writes the index as leading <th> cells: align the row's last cells with the header's
            offset = len(r) - len(header)
            for j in count_cols:
                k = j + offset
                if 0 <= k < len(r) and _small(r[k]):
                    leaks.append(f"small count {r[k]!r} in column {header[j]!r} (row {r[:2]})")
            for cell in r:
                m = COUNT_CELL.match(cell)
                if m and _small(m.group(1)):
                    leaks.append(f"small count in cell {cell!r}")
        if {"excluded", "remaining"} <= set(header):
            j = header.index("remaining")
            shown = [n for r in rows[1:] if (n := _count(r[j + len(r) - len(header)])) is not None]
            leaks += [f"flow counts {a} -> {b} differ by a small number" for a, b in zip(shown, shown[1:])
                      if 0 < a - b < 11]
    return leaks


def scan_text(where: str, kind: str, text: str, identifiers: set[str], times: set[str]) -> list[str]:
    """The leaks in one published text (``kind``: ``"html"`` or ``"text"``)."""
    leaks = []
    plain = BeautifulSoup(text, "html.parser").get_text(" ") if kind == "html" else text
    tokens = set(re.findall(r"\b\d{5,}\b", plain))
    leaks += [f"identifier {t}" for t in sorted(tokens & identifiers)]
    leaks += [f"timestamp {m}" for m in sorted(set(TIMESTAMP.findall(plain)))]
    leaks += [f"timestamp {t}" for t in sorted(times) if t in plain]
    leaks += [f"per-stay mark {m.group(0)!r}" for m in PER_STAY.finditer(plain)]
    if kind == "html":
        leaks += _table_leaks(text)
    return [f"{where}: {x}" for x in leaks]


def scan_book(notebooks: list[Path], pages: list[Path], identifiers: set[str], times: set[str]) -> list[str]:
    """Every leak in the executed ``notebooks`` and rendered HTML ``pages``."""
    leaks = []
    for nb in notebooks:
        for where, kind, text in _texts_of_notebook(nb):
            leaks += scan_text(where, kind, text, identifiers, times)
    for page in pages:
        soup = BeautifulSoup(page.read_text(), "html.parser")
        for tag in soup(["script", "style"]):
            tag.decompose()
        main = soup.find("main") or soup
        leaks += scan_text(page.name, "html", str(main), identifiers, times)
    return leaks
