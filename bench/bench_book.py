"""The whole book: ``jupyter-book build`` with every chapter executed, from scratch.

One build (about a minute and a half here; repeats would only measure the same
thing again) into a scratch folder outside the repo, so ``_build/`` is left
alone and nothing is cached.  The sample is generated first (not timed) when it
is missing.  Notes give the target of the book issue (under 5 minutes on the
2-core machine), the heaviest page and the chapters' own execution times as
myst-nb logs them.

A second row opens every page of that build in Debian's chromium from a local
server, in reading order in one browser (so plotly.js, fetched once, comes from
the cache afterwards, as for a reader), and reports the load time of each page
(navigation start to the ``load`` event, and to the last plotly figure drawn)
against the book's target of 2 s.  :func:`page_loads` is the measurement;
``tests/test_browser.py`` uses it too, for the page weights it asserts.

Run alone: ``.venv/bin/python bench/bench_book.py``; in the report:
``python -m bench --only book``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
else:
    from . import common

STEP = "build the executed book"
TARGET_S = 300.0
LOAD_STEP = "open a chapter page in chromium (local server)"
LOAD_TARGET_S = 2.0
PLOTLY_DRAW_TIMEOUT_MS = 30_000

#: What a page did, read from the browser's Performance API after it loaded.
PAGE_METRICS_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').map(r => ({
      url: r.name, transfer: r.transferSize, body: r.encodedBodySize}));
  return {
    load_ms: nav.loadEventEnd - nav.startTime,
    dom_ms: nav.domContentLoadedEventEnd - nav.startTime,
    html_bytes: nav.encodedBodySize,
    html_transfer: nav.transferSize,
    plotly_ready_ms: (performance.getEntriesByName('book-plotly-ready')[0] || {startTime: null}).startTime,
    resources: res,
    has_math: !!document.querySelector('article .math, article mjx-container, article span.math'),
    plotly_divs: document.querySelectorAll('.plotly-graph-div').length,
    scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth,
  };
}"""

def build(out: Path) -> tuple[int, str, float]:
    """``(exit code, log, seconds)`` of a full, forced, executed build into ``out``."""
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(common.REPO), "--path-output", str(out), "--all", "-v"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def execution_times(log: str) -> list[tuple[str, str]]:
    """``[(chapter number, seconds)]`` from myst-nb's verbose log, in build order."""
    out, current = [], None
    for line in log.splitlines():
        m = re.search(r"book/(\d\d)_\w+", line)
        if m and "xecut" in line:
            current = m.group(1)
        m = re.search(r"Executed notebook in ([\d.]+) seconds", line)
        if m and current:
            out.append((current, m.group(1)))
            current = None
    return out


def heaviest_html(html: Path) -> str:
    pages = sorted(html.glob("book/*.html"), key=lambda p: p.stat().st_size)
    if not pages:
        return "no pages"
    p = pages[-1]
    return f"largest page HTML {p.name} {p.stat().st_size / 1e6:.1f} MB"


def draw_figures(page, *, timeout_ms: int = PLOTLY_DRAW_TIMEOUT_MS) -> list[float]:
    """Scroll to each plotly figure in turn (the book draws one when it comes near) and wait for it.

    Returns
    -------
    list of float
        Milliseconds from scrolling each figure into view to its being drawn (NaN when it
        did not draw within ``timeout_ms``; the browser test then names it).
    """
    out = []
    divs = page.locator(".plotly-graph-div")
    for k in range(divs.count()):
        el = divs.nth(k)
        el.scroll_into_view_if_needed()
        t0 = page.evaluate("() => performance.now()")
        try:
            el.locator(".main-svg, canvas").first.wait_for(state="attached", timeout=timeout_ms)
            out.append(page.evaluate("() => performance.now()") - t0)
        except Exception:
            out.append(float("nan"))
    return out


def page_metrics(page) -> dict:
    """Weights and times of the page open in ``page`` (a Playwright page), once it has loaded.

    Returns
    -------
    dict
        ``load_ms`` (navigation start to the ``load`` event), ``plotly_ready_ms`` (to
        plotly.js fetched and run by the book's loader; NaN without figures),
        ``figure_ms`` (for each figure, from scrolling it into view to its being drawn),
        ``drawn_ms`` (navigation start to the last figure drawn, scrolling to each in turn;
        ``load_ms`` when there is none), ``html_bytes``;
        ``own_bytes`` (the HTML and everything outside ``_static/``: the page's images
        and data), ``transferred`` (bytes that came over the network, cache hits
        excluded), ``plotly_js_transferred``, ``mathjax`` (a MathJax file was
        requested), ``has_math``, ``plotly_divs``, ``scroll_width`` / ``inner_width``
        (px) and ``resources`` (url, transfer, body).
    """
    m = page.evaluate(PAGE_METRICS_JS)
    drawn_ms, figure_ms = m["load_ms"], []
    if m["plotly_divs"]:
        page.wait_for_function("() => window.bookPlotDrawAll !== undefined || window.Plotly !== undefined",
                               timeout=PLOTLY_DRAW_TIMEOUT_MS)
        figure_ms = draw_figures(page)
        drawn_ms = max(drawn_ms, page.evaluate("() => performance.now()"))
        m = {**page.evaluate(PAGE_METRICS_JS), "load_ms": m["load_ms"], "dom_ms": m["dom_ms"]}
    m["figure_ms"] = figure_ms
    m["plotly_ready_ms"] = m.get("plotly_ready_ms") or float("nan")
    res = m["resources"]
    m["drawn_ms"] = drawn_ms
    m["own_bytes"] = m["html_bytes"] + sum(r["body"] for r in res if "/_static/" not in r["url"])
    m["transferred"] = m["html_transfer"] + sum(r["transfer"] for r in res)
    m["plotly_js_transferred"] = sum(r["transfer"] for r in res if r["url"].endswith("plotly.min.js"))
    m["mathjax"] = any("mathjax" in r["url"].lower() for r in res)
    return m


def page_loads(browser, base_url: str, docs, *, viewport=None) -> list[dict]:
    """Open ``docs`` (``book/05_montage``...) in order in one browser context; metrics of each.

    One context keeps the browser's cache across pages, as when a reader goes from
    chapter to chapter: plotly.js is fetched on the first page that needs it and
    then comes from the cache.
    """
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, service_workers="block")
    out = []
    try:
        page = context.new_page()
        for doc in docs:
            page.goto(f"{base_url}/{doc}.html", wait_until="load")
            out.append({"doc": doc, **page_metrics(page)})
    finally:
        context.close()
    return out


def measure_site(html: Path) -> list[dict]:
    """Serve ``html`` on 127.0.0.1 and run :func:`page_loads` over the pages of ``_toc.yml``."""
    import functools
    import http.server
    import threading

    import yaml
    from playwright.sync_api import sync_playwright

    from helpers.book.pdfbook import CHROMIUM_ARGS, find_chromium

    toc = yaml.safe_load((common.REPO / "_toc.yml").read_text())
    docs = [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
            try:
                return page_loads(b, f"http://127.0.0.1:{server.server_address[1]}", docs)
            finally:
                b.close()
    finally:
        server.shutdown()
        server.server_close()


def load_row(pages: list[dict]) -> dict:
    """The page-load row: the slowest page's load event; each page's load, slowest figure and MB in the notes."""
    worst = max(pages, key=lambda m: m["load_ms"])
    per = ", ".join(f"{Path(m['doc']).name.split('_')[0]} {m['load_ms'] / 1e3:.1f} s"
                    + (f" (figures {max(m['figure_ms']) / 1e3:.1f} s)" if m["figure_ms"] else "")
                    + f" {m['transferred'] / 1e6:.1f} MB" for m in pages)
    return common.row(step=LOAD_STEP, implementation="chromium (Playwright), pages in reading order, one cache",
                      data="the build above, every page of _toc.yml", median_s=worst["load_ms"] / 1e3,
                      ratio=worst["load_ms"] / 1e3 / LOAD_TARGET_S, ratio_vs="the 2-s target",
                      notes=f"slowest {worst['doc']}; per page: load event (figures: scroll into view to "
                            f"drawn, slowest) and MB over the network: {per}")


def run(repeats: int = 1, *, quick: bool = False) -> list[dict]:
    """One row: seconds of a fresh executed build; skipped with ``quick``."""
    if quick:
        return []
    from helpers.sample import ensure_sample

    ensure_sample()  # generation is not part of the build time
    scratch = common.scratch_dir()
    try:
        code, log, seconds = build(scratch)
        per = ", ".join(f"ch{c} {float(s):.0f} s" for c, s in execution_times(log))
        notes = [f"exit code {code}", f"target < {TARGET_S:.0f} s", heaviest_html(scratch / "_build" / "html")]
        if per:
            notes.append(f"execution: {per}")
        notes.append("one run, sample CT, 2 cores")
        rows = [common.row(step=STEP, implementation="jupyter-book build --all (execution forced)",
                           data="8 chapters + index, bundled sample", times=[seconds],
                           ratio=seconds / TARGET_S, ratio_vs="the 5-minute target", notes="; ".join(notes))]
        html = scratch / "_build" / "html"
        if code == 0 and (html / "index.html").is_file():
            from helpers.book.pdfbook import find_chromium

            if find_chromium() is not None:
                rows.append(load_row(measure_site(html)))
        return rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pages"]:  # only the page loads, of an existing build: --pages [HTML_DIR]
        site = Path(sys.argv[2]) if len(sys.argv) > 2 else common.REPO / "_build" / "html"
        for m in measure_site(site):
            print(f"{m['doc']:<22} load {m['load_ms']:6.0f} ms  plotly.js ready {m['plotly_ready_ms']:6.0f} ms  "
                  f"figures {' '.join(f'{t:.0f}' for t in m['figure_ms']) or '-'} ms  "
                  f"{m['transferred'] / 1e6:5.2f} MB transferred, own {m['own_bytes'] / 1e6:5.2f} MB, "
                  f"mathjax {m['mathjax']}, math {m['has_math']}")
        sys.exit(0)
    for r in run():
        print(f"{r['median_s']:.1f} s  {r['notes']}")
