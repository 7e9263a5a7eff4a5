"""The rendered book read as a reader reads it: every page of the ``ci``-profile book opened in headless Chromium.

Each page must load with no JavaScript error, every image must load (``naturalWidth > 0``), no table may be wider
than the content column (its full width, scrolled part included), and no text may show a traceback, a warning,
progress-bar debris (``it/s]``, ``%|``) or a machine path (``/work/``, ``/tmp/``, ``/root/``, ``/home/``) --
code inputs included for the paths, since one click shows them. On a chapter page every content image (a figure)
must have alt text that is not a file name or path, and sit in a ``<figure>`` with a non-empty ``<figcaption>``
that is its plotting function's own, not the generic fallback of :func:`mmlib.plots.figure_text`.

Chromium is Debian's (``/usr/bin/chromium`` and ``/usr/bin/chromedriver``, ``apt-get install -y chromium
chromium-driver``; ``.ci/run`` installs them when absent), driven by Selenium (the ``dev`` extra); nothing is
downloaded. Without Chromium the test fails, never skips. ``MMLIB_CHROMIUM`` / ``MMLIB_CHROMEDRIVER`` point at
other binaries.

The book: the test session's ``ci`` build (``tests/conftest.py::ci_book``: every chapter executed once in a
temporary build folder and rendered with the renderer the machine has), which the end-to-end pipeline test reads
too. ``MMLIB_BROWSER_BOOK=<folder>`` checks an already rendered book instead (e.g. the demo book in ``_book/``).
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading
import time
from pathlib import Path

import pytest

from mmlib.attribution import KNOBS
from mmlib.schema import COHORT_NAMES, CXR_TARGETS, DETERIORATION, DIAGNOSES, MODALITIES, target_label
from mmlib.tables import HEADER_LABELS

#: whole-book tests run first; with the suite's workers, this module runs in the worker that builds the session's
#: ci book, beside the end-to-end test (tests/conftest.py: CI_BOOK_TESTS)
pytestmark = pytest.mark.book

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MMLIB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MMLIB_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = ("install Debian's Chromium and its driver: `apt-get install -y chromium chromium-driver` "
                "(.ci/run does this before `make test`), or set MMLIB_CHROMIUM / MMLIB_CHROMEDRIVER")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")

#: What a reader must never see. Applied to the page's text without code inputs (prose and outputs) ...
READER_TEXT = {
    "traceback": re.compile(r"Traceback \(most recent call last\)|^-{30,}\s*\n\s*\w*(Error|Exception)\b"
                            r"|^\s*\w+(Error|Exception): ", re.M),
    "warning": re.compile(r"\b[A-Z]\w*Warning: |^\s*WARNING[:\]]|^\s*warnings\.warn\(", re.M),
    "progress-bar debris": re.compile(r"(it/s|s/it|cell/s|s/cell|chunk/s)\]|\d\s*%\s*\|"),
    "not a number": re.compile(r"(?<![\w.])[+-]?(nan|NaN|NAN)(?![\w(])"),
    # a Python dict, list of strings or NumPy scalar as Python prints it, where a sentence should say it in words
    # (its quotes straight, or curly as the renderer's smart quotes print them)
    "Python literal": re.compile(r"\{[\'‘’][^\'‘’{}]{1,60}[\'‘’]: |\[[\'‘’][^\'‘’\]]{1,60}[\'‘’](, [\'‘’][^\'‘’\]]{1,60}[\'‘’])*\]"
                                 r"|\bnp\.(float|int)\d+\("),
}
#: ... and to all of it, code inputs (folded, one click away), image alt texts and titles included.
ALL_TEXT = {
    "machine path": re.compile(r"(?<![\w.~-])/(work|tmp|root|home)/"),
}

#: The target columns by the names in words the book gives them ("admitted", an English word, left out).
TARGET_NAMES = {t: target_label(t) for t in (*CXR_TARGETS.values(), *(f"deterioration_{d}" for d in DETERIORATION),
                                              *(f"diagnoses_{c}" for c in DIAGNOSES))}
#: Names code uses that a table on the page shows as words (:func:`mmlib.tables.page_frame`): a header or cell that
#: is exactly one of them escaped the page's labels.
CODE_NAMES = {**COHORT_NAMES, **HEADER_LABELS, **TARGET_NAMES}
#: ... and one of them as a word of the text (prose, notes, printed output) rather than as marked-up code; a file
#: name (``mds_ed.csv``) or an identifier it is part of (``embeddings_mimic_eye``) is not such a word. The bias knobs
#: are named by their parameter names (chapter 01's table lists them so), so in the text they are marked as code.
WORD_NAMES = {**CODE_NAMES, **{k: f"`{k}`, marked as code (a parameter name)" for k in KNOBS}}
CODE_NAME_IN_TEXT = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, sorted(WORD_NAMES, key=len, reverse=True)))
                               + r")(?![\w(/-]|\.\w)")

#: A table cell that is a count of 1,000 or more written without separators (``4305``, ``2285 (53.1%)``): every count of
#: the book is written ``4,305``.
UNSEPARATED_COUNT = re.compile(r"^\s*\d{4,}(\s*\(\d+(\.\d+)?%\))?\s*$")

#: An estimate with its interval as the book prints it: ``0.757 [0.720, 0.785]``, ``+0.030 [-0.085, +0.137]``,
#: ``0.565 ± 0.024 [0.522, 0.601]`` (the mean, not the sd, is the estimate), ``21.1% [18.0%, 24.3%]``.
ESTIMATE_WITH_INTERVAL = re.compile(r"(?<![\d.])(?<!± )([+-]?\d+\.\d+)%?(?: ± \d+\.\d+%?)? "
                                    r"\[([+-]?\d+\.\d+)%?, ([+-]?\d+\.\d+)%?\]")


def intervals_missing_their_estimate(text: str) -> list[re.Match]:
    """The printed estimates of ``text`` that lie outside their own printed interval (a reader cannot read those)."""
    return [m for m in ESTIMATE_WITH_INTERVAL.finditer(text)
            if not float(m[2]) <= float(m[1]) <= float(m[3])]


#: Runs in the page: the measurements the assertions need (one round trip per page).
MEASURE = r"""
const done = arguments[arguments.length - 1], undescribed = arguments[0];
const article = document.querySelector('article.bd-article') || document.querySelector('main#quarto-document-content')
             || document.querySelector('main') || document.body;
document.querySelectorAll('img[loading="lazy"]').forEach(i => { i.loading = 'eager'; });
const t0 = Date.now();
(function wait() {
  const pending = Array.from(document.images).filter(i => !i.complete);
  if (pending.length && Date.now() - t0 < 15000) { setTimeout(wait, 100); return; }
  const cs = getComputedStyle(article), r = article.getBoundingClientRect();
  const left = r.left + parseFloat(cs.paddingLeft) + parseFloat(cs.borderLeftWidth);
  const right = r.right - parseFloat(cs.paddingRight) - parseFloat(cs.borderRightWidth);
  const describe = t => {
    const cap = t.querySelector('caption');
    const head = Array.from(t.querySelectorAll('th')).find(th => th.textContent.trim());
    const sec = t.closest('section'), h = sec && sec.querySelector('h1, h2, h3, h4');
    return (cap ? 'caption "' + cap.textContent.trim().slice(0, 60) + '"' :
            head ? 'first header "' + head.textContent.trim().slice(0, 40) + '"' : 'no header')
           + (h ? ' in section "' + h.textContent.replace('#', '').trim().slice(0, 60) + '"' : '');
  };
  const tables = Array.from(article.querySelectorAll('table')).map((t, i) => {
    const tr = t.getBoundingClientRect();
    const width = Math.max(tr.width, t.scrollWidth);   // a table scrolled inside its own box still counts
    return {index: i, what: describe(t), left: tr.left, width: width, columns: t.rows.length ? t.rows[0].cells.length : 0};
  }).filter(t => t.left + t.width > right + 1 || t.left < left - 1)
    .map(t => Object.assign(t, {content_width: right - left}));
  const images = Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                   .map(i => i.getAttribute('src'));
  const figures = Array.from(article.querySelectorAll('img')).map(i => {
    const fig = i.closest('figure'), cap = fig && fig.querySelector('figcaption');
    return {src: (i.getAttribute('src') || '').slice(0, 60), alt: i.getAttribute('alt'),
            caption: cap ? cap.textContent.trim() : null, fallback: !!(fig && fig.classList.contains(undescribed))};
  });
  const reader = article.cloneNode(true);
  reader.querySelectorAll('.cell_input, .cell-code, details.code-fold, div.sourceCode.cell-code, script, style')
        .forEach(n => n.remove());
  const attrs = Array.from(document.querySelectorAll('img[alt], img[title], [aria-label]'))
                  .map(n => [n.getAttribute('alt'), n.getAttribute('title'), n.getAttribute('aria-label')].join(' '));
  const outputs = Array.from(article.querySelectorAll(
      'div.cell_output pre, div.cell-output pre, div.cell-output-stdout pre, div.cell-output-stderr pre'))
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.trim().slice(0, 60));
  const cells = Array.from(new Set(Array.from(article.querySelectorAll('table th, table td'))
                                    .map(c => c.textContent.trim())));
  const words = reader.cloneNode(true);  // what the page says in words: no tables, no code named as code
  words.querySelectorAll('table, code:not(pre code)').forEach(n => n.remove());
  done({tables: tables, images: images, figures: figures, reader_text: reader.textContent, cells: cells,
        outputs: outputs, words: words.textContent,
        all_text: document.body.textContent + '\n' + attrs.join('\n'), content_width: right - left});
})();
"""


#: An alt text that is a file name or path (what a renderer writes when it has no alt text: Sphinx writes the URI).
FILE_NAME_ALT = re.compile(r"^\S*\.(png|jpe?g|gif|svg|webp)$|^\.{0,2}/|_images/|^data:", re.I)


def figure_problems(figures: list[dict]) -> list[str]:
    """What a reader who cannot see the images misses on a chapter page, one line per content image: no alt text,
    an alt text that is a file name, no ``<figure>``/``<figcaption>`` around it, or the generic fallback caption
    (:data:`mmlib.plots.UNDESCRIBED`: a figure no plotting function described)."""
    problems = []
    for i, f in enumerate(figures):
        what = f"figure {i} ({f['src']}...)"
        alt = (f["alt"] or "").strip()
        if not alt:
            problems.append(f"{what}: no alt text")
        elif FILE_NAME_ALT.search(alt):
            problems.append(f"{what}: alt text is a file name: {alt[:80]!r}")
        if not f["caption"]:
            problems.append(f"{what}: not in a <figure> with a <figcaption>")
        if f["fallback"]:
            problems.append(f"{what}: generic caption, no plotting function described it: {f['caption'][:80]!r}")
    return problems


def _serve(folder: Path):
    """Serve ``folder`` over HTTP on localhost (pages as a web server would deliver them; file:// URLs break
    the search pages' fetches). Returns (base URL, server)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - no access log in the test output
        pass


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """A headless Chromium (Selenium + Debian's chromedriver), a fresh profile, browser console captured."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(f"headless Chromium is needed for the browser check, but {', '.join(missing)} is missing: "
                    + INSTALL_HINT, pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser check drives Chromium with Selenium: `.venv/bin/python -m pip install -e "
                    "'.[dev]'` (or `pip install selenium`)", pytrace=False)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def book(request):
    """The rendered book, served on localhost: (base URL, folder). The session's ci build (``conftest.ci_book``,
    shared with the end-to-end test), or ``MMLIB_BROWSER_BOOK=<folder>``, an already rendered book."""
    folder = os.environ.get("MMLIB_BROWSER_BOOK")
    if folder:
        folder = Path(folder).resolve()
        assert (folder / "index.html").is_file(), f"MMLIB_BROWSER_BOOK={folder} holds no index.html"
    else:
        folder = request.getfixturevalue("ci_book").html
    url, server = _serve(folder)
    yield url, folder
    server.shutdown()


def _pages(folder: Path) -> list[str]:
    skip = ("_static", "_sources", "_images", "site_libs", "_build")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.html")
                  if not any(part in skip for part in p.relative_to(folder).parts))


#: url -> the number of content images the last :func:`check_page` of that page found (so a test can tell that the
#: figure checks saw figures at all).
FIGURES_SEEN: dict[str, int] = {}


def check_page(driver, url: str) -> list[str]:
    """Every problem a reader would meet on the page at ``url``, one line each (figure checks on chapter pages,
    ``.../chapters/...``)."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(url)
    from mmlib.plots import UNDESCRIBED

    m = driver.execute_async_script(MEASURE, UNDESCRIBED)
    time.sleep(0.2)  # let late async scripts report
    problems = [f"JavaScript: {e['message'][:300]}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems += [f"image does not load: {src}" for src in m["images"]]
    FIGURES_SEEN[url] = len(m["figures"])
    if "/chapters/" in url:
        problems += figure_problems(m["figures"])
    problems += [f"table {t['index']} ({t['what']}, {t['columns']} columns) is {t['width']:.0f} px wide; the content "
                 f"column is {t['content_width']:.0f} px" for t in m["tables"]]
    problems += [f"printed output runs past its box (a scroll bar, not wrapped): {t!r}..." for t in m["outputs"]]
    problems += [f"code name in a table: {v!r} (the page shows {CODE_NAMES[v]!r})" for v in m["cells"]
                 if v in CODE_NAMES]
    problems += [f"a count without thousands separators in a table: {v!r}" for v in m["cells"]
                 if UNSEPARATED_COUNT.match(v)][:3]
    problems += out_of_book_order(driver.page_source)[:3]
    problems += [f"code name in the text: ...{_around(m['words'], hit)}... (the page shows {WORD_NAMES[hit[0]]!r})"
                 for hit in list(CODE_NAME_IN_TEXT.finditer(m["words"]))[:3]]
    for name, rx in READER_TEXT.items():
        problems += [f"{name}: ...{_around(m['reader_text'], hit)}..." for hit in list(rx.finditer(m["reader_text"]))[:3]]
    problems += [f"an estimate outside its own interval: ...{_around(m['reader_text'], hit)}..."
                 for hit in intervals_missing_their_estimate(m["reader_text"])[:3]]
    for name, rx in ALL_TEXT.items():
        problems += [f"{name}: ...{_around(m['all_text'], hit)}..." for hit in list(rx.finditer(m["all_text"]))[:3]]
    return problems


MODALITY_NAMES = {m for ms in MODALITIES.values() for m in ms}


def out_of_book_order(html: str) -> list[str]:
    """Tables whose headers list race groups or modalities out of the book's order (as a ``groupby`` sorts them:
    ``Unknown`` before ``White``, ``codes`` before ``vitals``)."""
    from bs4 import BeautifulSoup

    found = []
    for i, table in enumerate(BeautifulSoup(html, "html.parser").find_all("table")):
        th = [c.get_text(" ", strip=True) for c in table.find_all("th")]
        if "Unknown" in th and "White" in th and th.index("Unknown") < th.index("White"):
            found.append(f"table {i} lists Unknown before White: {th[:10]}")
        mods = [c for c in th if c in MODALITY_NAMES]
        if "codes" in mods and "vitals" in mods and mods.index("codes") < mods.index("vitals"):
            found.append(f"table {i} lists the modalities alphabetically: {mods[:6]}")
    return found


def _around(text: str, hit: re.Match, width: int = 50) -> str:
    return " ".join(text[max(0, hit.start() - width):hit.end() + width].split())


def test_patterns_catch_what_they_are_for():
    """The text checks themselves: each pattern finds its debris and leaves ordinary prose alone."""
    bad = {"traceback": "Traceback (most recent call last):\n  File x", "warning": "FutureWarning: the default",
           "progress-bar debris": "Executing: 100%|##########| 26/26 [00:16<00:00,  1.53cell/s]",
           "not a number": "signed race TPR gap +nan; AUROC nan [nan, nan]"}
    for name, text in bad.items():
        assert READER_TEXT[name].search(text), name
    for text in ("rates would exceed 1 ({‘White’: 0.818, ‘non-White’: 1.019})", "kinds ['blank', 'irrelevant']",
                 "{'a': 1}", "a gap of np.float64(0.25)"):
        assert READER_TEXT["Python literal"].search(text), text
    assert [bool(UNSEPARATED_COUNT.match(v)) for v in ("4305", "2285 (53.1%)", "4,305", "2,285 (53.1%)", "970",
                                                        "0.1234", "12.5")] == [True, True, False, False, False, False,
                                                                              False]
    assert len(out_of_book_order("<table><tr><th>Unknown</th><th>White</th></tr></table>"
                                 "<table><tr><th>arrival</th><th>codes</th><th>cxr</th><th>vitals</th></tr></table>"
                                 "<table><tr><th>White</th><th>non-White</th><th>Unknown</th></tr></table>")) == 2
    outside = "MIMIC-Eye paper original -0.078 [-0.186, +0.023] 0.010 [0.012, 0.114]; F1 0.5 ± 0.6 [0.7, 0.9]"
    assert [h[0] for h in intervals_missing_their_estimate(outside)] == ["0.010 [0.012, 0.114]", "0.5 ± 0.6 [0.7, 0.9]"]
    assert not intervals_missing_their_estimate("AUROC 0.757 [0.720, 0.785]; 0.565 ± 0.024 [0.522, 0.601]; "
                                                "+0.030 [-0.085, +0.137]; 21.1% [18.0%, 24.3%]; seeds [0, 1]")
    assert not READER_TEXT["Python literal"].search("non-White would need a rate of 1.019 (White 0.818); "
                                                    "AUROC 0.757 [0.720, 0.785]; {0, 1}; the ‘paper’ model")
    assert ALL_TEXT["machine path"].search("cohort at /work/main/data/synthetic/x")
    assert ALL_TEXT["machine path"].search("(/tmp/pytest-of-root/x)")
    good = ("The error bars are 95% CIs; 3.4 items/s; see https://example.org/home/page and ~/home/x. "
            "A value error is not a ValueError unless it is raised. import warnings. Nancy, nano, financial; "
            "np.nan and math.nan() are code.")
    for rx in (*READER_TEXT.values(), *ALL_TEXT.values()):
        assert not rx.search(good), rx.pattern
    assert [h[0] for h in CODE_NAME_IN_TEXT.finditer("Test stays by race_binary and gender; mds_ed, ci_low.")] == \
        ["race_binary", "mds_ed", "ci_low"]
    assert [h[0] for h in CODE_NAME_IN_TEXT.finditer("one panel per colouring (deterioration_icu_24h and race)")] == \
        ["deterioration_icu_24h"]
    assert [h[0] for h in CODE_NAME_IN_TEXT.finditer("recovered: spo2_overread (by the data)")] == ["spo2_overread"]
    assert not CODE_NAME_IN_TEXT.search("ECG rows in mds_ed.csv; embeddings_mimic_eye.npz; data/mimic_eye/x; "
                                        "race (White / non-White)")


@pytest.fixture(scope="module")
def report(chromium, book):
    """Every page's problems (:func:`check_page`), checked once for the tests below."""
    url, folder = book
    pages = _pages(folder)
    assert "index.html" in pages and any(p.startswith("chapters/") for p in pages), pages
    t0 = time.perf_counter()
    found = {page: check_page(chromium, f"{url}/{page}") for page in pages}
    print(f"{len(pages)} pages checked in Chromium in {time.perf_counter() - t0:.1f} s")
    return found


def _kind(problem: str) -> str:
    return "table" if problem.startswith("table ") else "figure" if problem.startswith("figure ") else "page"


def _bad(report: dict, kind: str) -> dict:
    return {p: [x for x in probs if _kind(x) == kind] for p, probs in report.items()
            if any(_kind(x) == kind for x in probs)}


@pytest.mark.slow
def test_every_page_reads_clean_in_chromium(report):
    """No JavaScript error, every image loads, no traceback, warning, progress bar or machine path, no table
    header or cell that is a name code uses (a cohort key, a computed column's code name) nor such a name as a word
    of the text outside marked-up code, and no printed output line running out of its box
    (:data:`mmlib.book.OUTPUT_CSS` wraps them)."""
    bad = _bad(report, "page")
    assert not bad, "\n".join(f"{p}:\n  " + "\n  ".join(probs) for p, probs in bad.items())


@pytest.mark.slow
def test_no_table_is_wider_than_the_content_column(report):
    """Every table fits the content column (its full width; chapters show wide tables in parts,
    :func:`mmlib.tables.page_html`)."""
    bad = _bad(report, "table")
    assert not bad, "\n".join(f"{p}:\n  " + "\n  ".join(probs) for p, probs in bad.items())


@pytest.mark.slow
def test_every_chapter_figure_has_alt_text_and_a_caption(report):
    """Every content image of a chapter page has an alt text that is not a file name and a caption of its own, in
    a ``<figure>`` (:func:`mmlib.plots.install_figure_captions`), whichever renderer made the page."""
    bad = _bad(report, "figure")
    assert not bad, "\n".join(f"{p}:\n  " + "\n  ".join(probs) for p, probs in bad.items())
    seen = sum(n for u, n in FIGURES_SEEN.items() if "/chapters/" in u)
    assert seen >= 8, f"only {seen} figures found on the chapter pages: is the figure check looking at the content?"


def test_figure_checks_catch_what_they_are_for():
    """Each figure check finds its problem and passes a described figure."""
    good = {"src": "data:image/png;base64,AAA", "alt": "Grouped bar chart. X axis: modality; y axis: stays (%).",
            "caption": "Stays with each modality by group.", "fallback": False}
    assert figure_problems([good]) == []
    for change, needle in [({"alt": ""}, "no alt text"), ({"alt": None}, "no alt text"),
                           ({"alt": "../_images/3f2a.png"}, "file name"), ({"alt": "fig.png"}, "file name"),
                           ({"caption": None}, "<figcaption>"), ({"caption": ""}, "<figcaption>"),
                           ({"fallback": True}, "generic caption")]:
        problems = figure_problems([good | change])
        assert len(problems) == 1 and needle in problems[0], (change, problems)


@pytest.mark.slow
def test_the_check_finds_planted_problems(chromium, tmp_path):
    """A chapter page with a JavaScript error, a broken image, a wide table, a traceback, a machine path, a figure
    whose alt text is its file name and has no caption, one with the generic fallback caption, a table that
    shows code names (a cohort key, a column's code name) and a printed line that runs out of its box: each is
    reported (the check can fail)."""
    from mmlib.plots import FIGURE_CLASS, UNDESCRIBED

    (tmp_path / "chapters").mkdir()
    page = tmp_path / "chapters" / "bad.html"
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    cells = "".join(f"<td>column {i} with a long value</td>" for i in range(40))
    page.write_text(
        "<html><body><main><p>Saved to /work/main/build/x.parquet</p>"
        "<pre>Traceback (most recent call last):\n  File \"x\"\nValueError: boom</pre>"
        "<pre>fitting: 100%|##########| 8/8 [00:01<00:00, 7.9it/s]</pre>"
        "<p>signed race TPR gap +nan.</p>"
        "<img src=\"missing.png\" alt=\"a figure\">"
        f"<img src=\"data:image/png;base64,{png}\" alt=\"../_images/0a1b2c.png\">"
        f"<figure class=\"{FIGURE_CLASS} {UNDESCRIBED}\"><img src=\"data:image/png;base64,{png}\" alt=\"Chart: x.\">"
        "<figcaption>Figure: x.</figcaption></figure>"
        f"<table><tr>{cells}</tr></table>"
        "<table><tr><th>ci_low</th></tr><tr><td>mds_ed</td></tr></table>"
        f"<div class=\"cell_output\"><pre>a long printed line: {'0123456789' * 300}</pre></div>"
        "<script>const a = 1;</script><script>const a = 2;</script>"
        "</main></body></html>")
    url, server = _serve(tmp_path)
    try:
        problems = "\n".join(check_page(chromium, f"{url}/chapters/bad.html"))
    finally:
        server.shutdown()
    for needle in ("JavaScript:", "image does not load: missing.png", "table 0", "traceback:",
                   "progress-bar debris:", "not a number:", "machine path:", "alt text is a file name: '../_images/0a1b2c.png'",
                   "not in a <figure> with a <figcaption>", "generic caption", "code name in a table: 'ci_low'",
                   "code name in a table: 'mds_ed' (the page shows 'MIMIC-IV-Ext-MDS-ED')",
                   "printed output runs past its box"):
        assert needle in problems, (needle, problems)


def test_ci_installs_chromium_before_the_tests():
    """CI never runs without the browser: .ci/run installs Debian's Chromium when absent, then runs the tests."""
    script = (REPO / ".ci" / "run").read_text()
    assert "chromium-driver" in script and "apt-get install" in script
    assert script.index("apt-get install") < script.index("make test")
