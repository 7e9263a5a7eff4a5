"""The rendered book read as a reader reads it: every page of the ``ci``-profile book opened in headless Chromium.

Each page must load with no JavaScript error, every image must load (``naturalWidth > 0``), no table may be wider
than the content column (its full width, scrolled part included), and no text may show a traceback, a warning,
progress-bar debris (``it/s]``, ``%|``) or a machine path (``/work/``, ``/tmp/``, ``/root/``, ``/home/``) --
code inputs included for the paths, since one click shows them.

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
}
#: ... and to all of it, code inputs (folded, one click away), image alt texts and titles included.
ALL_TEXT = {
    "machine path": re.compile(r"(?<![\w.~-])/(work|tmp|root|home)/"),
}

#: Runs in the page: the measurements the assertions need (one round trip per page).
MEASURE = r"""
const done = arguments[arguments.length - 1];
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
  const reader = article.cloneNode(true);
  reader.querySelectorAll('.cell_input, .cell-code, details.code-fold, div.sourceCode.cell-code, script, style')
        .forEach(n => n.remove());
  const attrs = Array.from(document.querySelectorAll('img[alt], img[title], [aria-label]'))
                  .map(n => [n.getAttribute('alt'), n.getAttribute('title'), n.getAttribute('aria-label')].join(' '));
  done({tables: tables, images: images, reader_text: reader.textContent,
        all_text: document.body.textContent + '\n' + attrs.join('\n'), content_width: right - left});
})();
"""


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


def check_page(driver, url: str) -> list[str]:
    """Every problem a reader would meet on the page at ``url``, one line each."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(url)
    m = driver.execute_async_script(MEASURE)
    time.sleep(0.2)  # let late async scripts report
    problems = [f"JavaScript: {e['message'][:300]}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    problems += [f"image does not load: {src}" for src in m["images"]]
    problems += [f"table {t['index']} ({t['what']}, {t['columns']} columns) is {t['width']:.0f} px wide; the content "
                 f"column is {t['content_width']:.0f} px" for t in m["tables"]]
    for name, rx in READER_TEXT.items():
        problems += [f"{name}: ...{_around(m['reader_text'], hit)}..." for hit in list(rx.finditer(m["reader_text"]))[:3]]
    for name, rx in ALL_TEXT.items():
        problems += [f"{name}: ...{_around(m['all_text'], hit)}..." for hit in list(rx.finditer(m["all_text"]))[:3]]
    return problems


def _around(text: str, hit: re.Match, width: int = 50) -> str:
    return " ".join(text[max(0, hit.start() - width):hit.end() + width].split())


def test_patterns_catch_what_they_are_for():
    """The text checks themselves: each pattern finds its debris and leaves ordinary prose alone."""
    bad = {"traceback": "Traceback (most recent call last):\n  File x", "warning": "FutureWarning: the default",
           "progress-bar debris": "Executing: 100%|##########| 26/26 [00:16<00:00,  1.53cell/s]"}
    for name, text in bad.items():
        assert READER_TEXT[name].search(text), name
    assert ALL_TEXT["machine path"].search("cohort at /work/main/data/synthetic/x")
    assert ALL_TEXT["machine path"].search("(/tmp/pytest-of-root/x)")
    good = ("The error bars are 95% CIs; 3.4 items/s; see https://example.org/home/page and ~/home/x. "
            "A value error is not a ValueError unless it is raised. import warnings")
    for rx in (*READER_TEXT.values(), *ALL_TEXT.values()):
        assert not rx.search(good), rx.pattern


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


def _bad(report: dict, tables: bool) -> dict:
    return {p: [x for x in probs if x.startswith("table ") == tables] for p, probs in report.items()
            if any(x.startswith("table ") == tables for x in probs)}


@pytest.mark.slow
def test_every_page_reads_clean_in_chromium(report):
    """No JavaScript error, every image loads, no traceback, warning, progress bar or machine path."""
    bad = _bad(report, tables=False)
    assert not bad, "\n".join(f"{p}:\n  " + "\n  ".join(probs) for p, probs in bad.items())


@pytest.mark.slow
def test_no_table_is_wider_than_the_content_column(report):
    """Every table fits the content column (its full width; chapters show wide tables in parts,
    :func:`mmlib.tables.page_html`)."""
    bad = _bad(report, tables=True)
    assert not bad, "\n".join(f"{p}:\n  " + "\n  ".join(probs) for p, probs in bad.items())


@pytest.mark.slow
def test_the_check_finds_planted_problems(chromium, tmp_path):
    """A page with a JavaScript error, a broken image, a wide table, a traceback and a machine path: each is
    reported (the check can fail)."""
    page = tmp_path / "bad.html"
    cells = "".join(f"<td>column {i} with a long value</td>" for i in range(40))
    page.write_text(
        "<html><body><main><p>Saved to /work/main/build/x.parquet</p>"
        "<pre>Traceback (most recent call last):\n  File \"x\"\nValueError: boom</pre>"
        "<pre>fitting: 100%|##########| 8/8 [00:01<00:00, 7.9it/s]</pre>"
        "<img src=\"missing.png\" alt=\"a figure\">"
        f"<table><tr>{cells}</tr></table>"
        "<script>const a = 1;</script><script>const a = 2;</script>"
        "</main></body></html>")
    url, server = _serve(tmp_path)
    try:
        problems = "\n".join(check_page(chromium, f"{url}/bad.html"))
    finally:
        server.shutdown()
    for needle in ("JavaScript:", "image does not load: missing.png", "table 0", "traceback:",
                   "progress-bar debris:", "machine path:"):
        assert needle in problems, (needle, problems)


def test_ci_installs_chromium_before_the_tests():
    """CI never runs without the browser: .ci/run installs Debian's Chromium when absent, then runs the tests."""
    script = (REPO / ".ci" / "run").read_text()
    assert "chromium-driver" in script and "apt-get install" in script
    assert script.index("apt-get install") < script.index("make test")
