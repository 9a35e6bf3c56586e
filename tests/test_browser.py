"""Every chapter opens cleanly in Debian's chromium, offline.

The built site (``book_build`` fixture) is served on 127.0.0.1; each page of ``_toc.yml``
is opened through Playwright.  A page fails on any console error or uncaught exception,
any failed request (or HTTP status >= 400), any request to another host (aborted and
recorded), any plotly figure that did not draw, or any image in the content whose alt text
is empty or a file path.  A viewport screenshot of each page (and one of each plotly
figure) is saved under ``_build/screenshots/``, at 1280 px and at a phone's 390 px, where
nothing may stick out sideways.

``test_page_weights`` opens every page in reading order in one browser (as a reader
goes from chapter to chapter) and records what each page cost in
``_build/page-load.json``: load times there are for reading, never asserted (timings
belong in ``bench/bench_book.py``); the bytes, the plotly.js cache and MathJax are.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_book import toc_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.bench_book import draw_figures, page_loads  # noqa: E402 (one measurement of weights and times)

SHOTS = REPO / "_build" / "screenshots"
LOAD_RECORD = REPO / "_build" / "page-load.json"
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: A page's own bytes (HTML, its images and figure data; the shared _static files apart).
PAGE_OWN_BYTES_MAX = 3_000_000
#: Alt text that is a file name or path (what myst-nb writes when a figure has none).
PATH_LIKE = re.compile(r"\.(png|jpe?g|gif|svg|webp)\b|^[./]|_images/|^[0-9a-f]{16,}", re.IGNORECASE)
ALT_MIN_WORDS = 4
PLOTLY_DRAW_TIMEOUT_MS = 30_000
LOCAL_HOSTS = {"127.0.0.1"}


def shot_name(index: int, doc: str) -> str:
    """Screenshot file stem: the chapter file name when it is numbered (``04_histogram``), else ``NN_name``."""
    stem = Path(doc).name
    return stem if re.match(r"^\d\d_", stem) else f"{index:02d}_{stem}"



class PageRecord:
    """What one page did in the browser."""

    def __init__(self):
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.failed: list[str] = []
        self.remote: list[str] = []

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"uncaught exception: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed]
            + [f"request to another host (aborted): {m}" for m in self.remote]
        )


def bad_alt_texts(images: list[dict]) -> list[str]:
    """``src: alt`` of each image whose alt text is missing, too short or a file path."""
    out = []
    for im in images:
        alt = (im.get("alt") or "").strip()
        if not alt or PATH_LIKE.search(alt) or len(alt.split()) < ALT_MIN_WORDS:
            out.append(f"{im['src']}: alt={alt!r}")
    return out


CONTENT_IMAGES = """() => Array.from(document.querySelectorAll('article img'))
    .map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt')}))"""

SIDEWAYS = """() => {
  const w = window.innerWidth, out = [];
  for (const el of document.querySelectorAll('.plotly-graph-div, article img, article table')) {
    const r = el.getBoundingClientRect();
    const box = el.tagName === 'IMG' ? el.closest('a.book-zoom')
      : el.closest('.cell_output, .output, .table-wrapper, .pst-scrollable-table-container');
    const clip = box ? box.getBoundingClientRect() : null;
    const scrolls = box && getComputedStyle(box).overflowX !== 'visible' && clip.right <= w + 1;
    if (r.width > 0 && r.right > w + 1 && !scrolls)
      out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} right edge ${Math.round(r.right)} px`);
  }
  if (document.documentElement.scrollWidth > w + 1)
    out.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px wide`);
  return out;
}"""


#: On a phone a figure at least this wide (natural px) keeps min(PHONE_FIGURE_SCALE x its width,
#: PHONE_FIGURE_MIN_PX) CSS px (book/_ext/static/book-phone.css): the 8.5 pt labels of
#: helpers.display (10.6 px at 1:1, 90 dpi) then show at >= 9 px instead of ~5.5 px.
PHONE_FIGURE_NATURAL_PX = 400
PHONE_FIGURE_MIN_PX = 600
PHONE_FIGURE_SCALE = 0.85

#: Loads every content image (lazy ones too) so their natural sizes are known.
LOAD_IMAGES = """async () => { await Promise.all(Array.from(document.querySelectorAll('article img')).map(
    i => { i.loading = 'eager'; return i.decode().catch(() => null); })); }"""

FIGURE_SIZES = """(args) => Array.from(document.querySelectorAll('article img')).filter(
    i => i.complete && i.naturalWidth >= args.natural).map(i => {
  const a = i.closest('a.book-zoom'), r = i.getBoundingClientRect();
  const cue = a ? getComputedStyle(a, '::before').content : 'none';
  return {src: i.getAttribute('src'), natural: i.naturalWidth, shown: r.width,
          href: a ? a.getAttribute('href') : null, cue: cue};
})"""


def small_figures(figures: list[dict], *, min_px: int = PHONE_FIGURE_MIN_PX) -> list[str]:
    """What is wrong with each wide figure on a phone: shrunk, not a link to its PNG, no cue."""
    out = []
    for f in figures:
        want = min(PHONE_FIGURE_SCALE * f["natural"], min_px)
        if f["shown"] < want - 1:
            out.append(f"{f['src']}: {f['natural']} px figure shown {f['shown']:.0f} px wide (at least {want}); "
                       f"its labels shrink to {f['shown'] / f['natural']:.2f} of their size")
        if not f["href"] or Path(f["href"]).name != Path(f["src"]).name:
            out.append(f"{f['src']}: a tap does not open it full size (link: {f['href']!r})")
        if f["cue"] in ("none", "normal", ""):
            out.append(f"{f['src']}: no 'swipe / tap' cue above it")
    return out


def open_page(browser, url: str, viewport=None):
    context = browser.new_context(viewport=viewport or VIEWPORT, service_workers="block")
    page = context.new_page()
    rec = PageRecord()

    def route(r):
        u = urlsplit(r.request.url)
        if u.scheme in ("data", "blob") or u.hostname in LOCAL_HOSTS:
            r.continue_()
        else:
            rec.remote.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and rec.console_errors.append(f"{m.text} @ {m.location}"))
    page.on("pageerror", lambda e: rec.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: r.url not in rec.remote and rec.failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and rec.failed.append(f"{r.url} HTTP {r.status}"))
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return context, page, rec


PLOTLY_STATE = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
    id: d.id,
    drawn: !!(d.querySelector('.main-svg') || d.querySelector('canvas')),
    traces: (d.data || []).length
}))"""


@pytest.mark.parametrize("index,doc", list(enumerate(toc_files())))
def test_page_in_chromium(browser, book_site, index, doc):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, rec = open_page(browser, f"{book_site}/{doc}.html")
    try:
        n_plots = page.locator(".plotly-graph-div").count()
        not_drawn = []
        if n_plots:
            draw_figures(page, timeout_ms=PLOTLY_DRAW_TIMEOUT_MS)  # each is drawn when scrolled near
            page.evaluate("() => window.scrollTo(0, 0)")
            state = page.evaluate(PLOTLY_STATE)
            not_drawn = [s["id"] for s in state if not s["drawn"] or not s["traces"]]
        name = shot_name(index, doc)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
        for k in range(n_plots):
            el = page.locator(".plotly-graph-div").nth(k)
            el.scroll_into_view_if_needed()
            el.screenshot(path=str(SHOTS / f"{name}_plotly{k + 1}.png"))
        problems = rec.problems() + [f"plotly figure did not draw: #{i}" for i in not_drawn]
        problems += [f"image without real alt text: {b}" for b in bad_alt_texts(page.evaluate(CONTENT_IMAGES))]
        assert not problems, f"{doc}:\n" + "\n".join(problems)
    finally:
        context.close()


@pytest.mark.parametrize("index,doc", list(enumerate(toc_files())))
def test_page_on_a_phone(browser, book_site, index, doc):
    """At 390 px nothing sticks out sideways (plotly viewers; wide tables and figures scroll in their box),
    and every wide figure keeps a legible width, opens full size on a tap and has a cue saying so."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, rec = open_page(browser, f"{book_site}/{doc}.html", viewport=PHONE)
    try:
        if page.locator(".plotly-graph-div").count():
            draw_figures(page, timeout_ms=PLOTLY_DRAW_TIMEOUT_MS)  # test_page_in_chromium names a failure
            page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / f"{shot_name(index, doc)}_390px.png"))
        problems = rec.problems() + page.evaluate(SIDEWAYS)
        page.evaluate(LOAD_IMAGES)
        problems += small_figures(page.evaluate(FIGURE_SIZES, {"natural": PHONE_FIGURE_NATURAL_PX}))
        assert not problems, f"{doc} at {PHONE['width']} px:\n" + "\n".join(problems)
    finally:
        context.close()


def test_page_weights(browser, book_site):
    """Every page, in reading order, in one browser: bytes, plotly.js fetched once, MathJax only with math."""
    docs = toc_files()
    pages = page_loads(browser, book_site, docs, viewport=VIEWPORT)
    LOAD_RECORD.parent.mkdir(parents=True, exist_ok=True)
    LOAD_RECORD.write_text(json.dumps([{k: v for k, v in m.items() if k != "resources"} for m in pages], indent=1))
    problems = []
    for m in pages:
        if m["own_bytes"] > PAGE_OWN_BYTES_MAX:
            problems.append(f"{m['doc']}: {m['own_bytes'] / 1e6:.1f} MB of its own (HTML, images, figure data); "
                            f"at most {PAGE_OWN_BYTES_MAX / 1e6:.0f} MB (fewer triangles, fewer viewer slices)")
        if m["mathjax"] and not m["has_math"]:
            problems.append(f"{m['doc']}: loads MathJax but has no math")
        if m["has_math"] and not m["mathjax"]:
            problems.append(f"{m['doc']}: has math but MathJax was not loaded")
    fetched = [m["doc"] for m in pages if m["plotly_js_transferred"] > 100_000]
    if len(fetched) > 1:
        problems.append(f"plotly.min.js came over the network on {len(fetched)} pages ({', '.join(fetched)}): "
                        "it should be fetched once and then come from the browser's cache")
    assert not problems, "\n".join(problems)
