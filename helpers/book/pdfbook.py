"""The book as one PDF, offline: every built page printed by Chromium, then merged.

``python -m helpers.book.pdfbook [HTML_DIR] [OUT_PDF]`` (what ``./tasks.sh pdf`` runs
after building the book) opens each page of the built site in Debian's
Chromium through Playwright, in ``_toc.yml`` order, and prints it to PDF:

* **plotly figures become images first**: ``Plotly.toImage`` draws each figure,
  3-D meshes included (WebGL prints blank otherwise), in the same browser that
  renders the site, so the PDF shows what a reader sees (no second renderer);
* a print stylesheet (:data:`PRINT_CSS`) hides the navigation, wraps long code
  lines instead of cutting them at the margin, and keeps every figure on one
  page; solution drop-downs are opened (the student build has none);
* a title page and a table of contents with the first page of every chapter
  come first; every page's footer shows its chapter and its number in the
  merged PDF (the number the contents give and a PDF viewer shows), and the
  PDF gets an outline (bookmarks).

Pages are merged with ``pypdf``.  The output is written atomically.  Without
Chromium the command prints one line saying what to install (exit code 2).
"""

from __future__ import annotations

import argparse
import functools
import html as html_lib
import http.server
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..data import REPO  # the repository root: one definition, in helpers.data

__all__ = ["PRINT_CSS", "BookPage", "find_chromium", "book_pages", "toc_html", "build_pdf", "main"]

#: Chromium binaries tried, in order (``CHROMIUM`` in the environment wins).
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Browser window used to lay pages out before printing (CSS px); A4 minus margins is ~700 px.
VIEWPORT = {"width": 1000, "height": 1300}
#: Plotly figures are drawn to PNG at this many device pixels per CSS pixel.
PLOTLY_SCALE = 2
#: Milliseconds to wait for a page's plotly figures and MathJax.
RENDER_TIMEOUT_MS = 60_000
PAPER = "A4"
MARGINS = {"top": "16mm", "bottom": "18mm", "left": "15mm", "right": "15mm"}

#: Print stylesheet added to every page before printing.
PRINT_CSS = """
@page { size: A4; }
html, body { background: #fff !important; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-header-article, .header-article,
.prev-next-area, .bd-footer, .bd-footer-content, footer, .headerlink, .copybtn, .toggle-button,
#pst-skip-link, .skip-link, .bd-search, .search-button, .theme-switch-button, .sidebar-toggle,
.pst-scrollable-table-container::-webkit-scrollbar { display: none !important; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-content, .bd-article-container,
.bd-article, article { max-width: 100% !important; width: 100% !important; margin: 0 !important;
  padding-left: 0 !important; padding-right: 0 !important; }
body { font-size: 10.5pt; }
/* code: wrapped at the margin, never cut */
pre, .highlight pre, div.highlight, .cell_output pre, code {
  white-space: pre-wrap !important; overflow-wrap: anywhere !important; word-break: break-word;
  overflow: visible !important; max-height: none !important; }
pre { font-size: 8.5pt !important; }
/* figures whole, on one page */
img, svg, figure, .pdf-figure, .cell_output img, table { break-inside: avoid; page-break-inside: avoid; }
img, .pdf-figure { max-width: 100% !important; max-height: 235mm !important; height: auto; object-fit: contain; }
.cell_output { overflow: visible !important; }
h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
/* a code cell, its output, an exercise or a solution moves whole to the next page when it fits on one */
.cell, .cell_input, .cell_output, div.highlight, div.exercise, div.solution { break-inside: avoid; }
/* drop-downs (solutions) opened; an exercise's title stays with its text */
.toggle-hidden, .toggle-details__container, details > * { display: block !important; visibility: visible !important;
  height: auto !important; opacity: 1 !important; }
.admonition-title, p.admonition-title { break-after: avoid; page-break-after: avoid; }
"""

#: JavaScript run in each page before printing: plotly figures to PNG, drop-downs opened,
#: links to the other pages (of the temporary local server) unlinked.
PREPARE_JS = """
async (scale) => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  // links to other pages of the local server would be dead in the PDF: keep their text only
  document.querySelectorAll('a[href]').forEach(a => {
    const u = new URL(a.href, location.href);
    if (u.origin === location.origin && u.pathname !== location.pathname) a.removeAttribute('href');
  });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  let done = 0;
  for (const d of divs) {
    if (!window.Plotly) break;
    const w = Math.round(d.getBoundingClientRect().width) || 700;
    const h = Math.round(d.getBoundingClientRect().height) || 450;
    const url = await window.Plotly.toImage(d, {format: 'png', width: w, height: h, scale: scale});
    const img = document.createElement('img');
    img.className = 'pdf-figure';
    img.style.width = w + 'px';
    img.src = url;
    await img.decode();
    window.Plotly.purge(d);
    d.replaceWith(img);
    done += 1;
  }
  return [divs.length, done];
}
"""


class PdfBookError(RuntimeError):
    """The PDF cannot be made; the message says what to install or run."""


@dataclass
class BookPage:
    """One page of the book: its document name (``book/03_resample``) and title."""

    doc: str
    title: str


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$CHROMIUM`` first), or ``None``.

    >>> find_chromium() is None or Path(find_chromium()).exists()
    True
    """
    env = os.environ.get("CHROMIUM")
    for c in ([env] if env else []) + list(CHROMIUM_CANDIDATES) + [shutil.which("chromium") or ""]:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def toc_docs(toc_path: os.PathLike = REPO / "_toc.yml") -> list[str]:
    """Document names of ``_toc.yml`` in reading order, root first.

    >>> toc_docs()[0]
    'book/index'
    """
    import yaml

    toc = yaml.safe_load(Path(toc_path).read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(str(Path(e["file"]).with_suffix("")) if e["file"].endswith((".md", ".ipynb")) else e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return out


def page_title(page_html: str) -> str:
    """The first ``<h1>`` of a built page, as text (without the ``#`` permalink).

    >>> page_title('<h1>3. Voxel spacing<a class="headerlink" href="#x">#</a></h1>')
    '3. Voxel spacing'
    """
    m = re.search(r"<h1[^>]*>(.*?)</h1>", page_html, re.S)
    if not m:
        return ""
    inner = re.sub(r'<a class="headerlink".*?</a>', "", m.group(1), flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", inner)).strip()


def book_pages(html_dir: os.PathLike, toc_path: os.PathLike = REPO / "_toc.yml") -> list[BookPage]:
    """The built pages in reading order, with their titles.

    Raises
    ------
    PdfBookError
        When a page of ``_toc.yml`` was not built (the message says which and what to run).
    """
    html_dir = Path(html_dir)
    pages = []
    for doc in toc_docs(toc_path):
        f = html_dir / f"{doc}.html"
        if not f.is_file():
            raise PdfBookError(f"{f} is missing: build the book first (./tasks.sh book), then run ./tasks.sh pdf")
        pages.append(BookPage(doc, page_title(f.read_text(errors="replace")) or doc))
    return pages


def _book_config() -> dict:
    import yaml

    try:
        return yaml.safe_load((REPO / "_config.yml").read_text()) or {}
    except OSError:
        return {}


def toc_html(pages: list[BookPage], starts: list[int], *, title: str, author: str, edition: str) -> str:
    """HTML of the title page and the table of contents (page numbers of the merged PDF).

    >>> html = toc_html([BookPage("book/01_load", "1. Load")], [3], title="T", author="A", edition="")
    >>> "1. Load" in html and ">3<" in html
    True
    """
    esc = html_lib.escape
    rows = "\n".join(
        f'<tr><td class="t">{esc(p.title)}</td><td class="n">{n}</td></tr>' for p, n in zip(pages, starts)
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font-family: "Liberation Sans", Arial, sans-serif; color: #222; margin: 0; }}
.title {{ height: 250mm; display: flex; flex-direction: column; justify-content: center; text-align: center;
  break-after: page; }}
.title h1 {{ font-size: 30pt; margin: 0 10mm 12mm; }}
.title p {{ font-size: 13pt; margin: 2mm; }}
.toc h2 {{ font-size: 20pt; margin: 0 0 8mm; }}
.toc table {{ width: 100%; border-collapse: collapse; font-size: 12pt; }}
.toc td {{ padding: 2.5mm 0; border-bottom: 1px dotted #999; }}
.toc td.n {{ text-align: right; width: 20mm; }}
</style></head><body>
<section class="title"><h1>{esc(title)}</h1><p>{esc(author)}</p>
<p>{esc(edition)}</p><p>{date.today().isoformat()}</p></section>
<section class="toc"><h2>Contents</h2><table>{rows}</table></section>
</body></html>"""


class _Server:
    """``html_dir`` served on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, html_dir: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(html_dir))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _css_string(text: str) -> str:
    r"""``text`` as a CSS string literal (quotes and backslashes escaped).

    >>> print(_css_string('say "hi"'))
    "say \"hi\""
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def page_css(footer: str, first_page: int) -> str:
    """``@page`` rules: A4 margins, ``footer`` bottom left, the page number in the merged PDF bottom right.

    The page counter starts at ``first_page`` (``html { counter-reset }``), so the
    numbers printed on the pages are those of the contents page and the PDF viewer.
    """
    m = MARGINS
    font = 'font-family: "Liberation Sans", Arial, sans-serif; font-size: 7.5pt; color: #666;'
    return (f"html {{ counter-reset: page {int(first_page) - 1}; }}\n"
            f"@page {{ size: {PAPER}; margin: {m['top']} {m['right']} {m['bottom']} {m['left']};\n"
            f"  @bottom-left {{ content: {_css_string(footer)}; {font} }}\n"
            f"  @bottom-right {{ content: counter(page); {font} }} }}\n")


def _print_page(browser: Any, url: str, out: Path, footer: str, first_page: int) -> dict:
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    try:
        page = context.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                   else r.abort())
        page.goto(url, wait_until="load", timeout=RENDER_TIMEOUT_MS)
        if page.query_selector(".plotly-graph-div"):
            # the book draws a figure when it scrolls near; bookPlotDrawAll draws them all now
            page.wait_for_function("() => { if (window.bookPlotDrawAll) { window.bookPlotDrawAll(); } "
                                   "return window.Plotly !== undefined && Array.from(document.querySelectorAll("
                                   "'.plotly-graph-div')).every(d => d._fullLayout); }", timeout=RENDER_TIMEOUT_MS)
        page.add_style_tag(content=PRINT_CSS + page_css(footer, first_page))
        found, drawn = page.evaluate(PREPARE_JS, PLOTLY_SCALE)
        page.evaluate("() => document.fonts.ready.then(() => true)")
        page.emulate_media(media="print")
        page.pdf(path=str(out), prefer_css_page_size=True, print_background=True)
        return {"plotly": found, "plotly_images": drawn}
    finally:
        context.close()


def build_pdf(html_dir: os.PathLike, out: os.PathLike, *, student: bool = False,
              log: Callable[..., object] = print) -> dict:
    """Print every page of the built book and merge them into ``out``.

    Parameters
    ----------
    html_dir : path-like
        The built site (``_build/html``, or the student build's).
    out : path-like
        The PDF to write (atomically; its folder is created).
    student : bool, keyword-only
        Only changes the title page's wording ("student edition, without solutions");
        the solutions are absent because the student site has none.
    log : callable
        Progress messages.

    Returns
    -------
    dict
        ``pages`` (count), ``bytes``, ``seconds``, ``starts`` (first page of every
        entry), ``plotly`` (figures found / drawn as images).

    Raises
    ------
    PdfBookError
        No Chromium, Playwright or pypdf, or a page missing from the build.
    """
    t0 = time.perf_counter()
    html_dir, out = Path(html_dir), Path(out)
    chromium = find_chromium()
    if chromium is None:
        raise PdfBookError("the PDF needs Chromium: install it (Debian: apt-get install chromium, or ./tasks.sh setup) "
                           "or set CHROMIUM=/path/to/chromium")
    try:
        from playwright.sync_api import sync_playwright
        from pypdf import PdfReader, PdfWriter
    except ImportError as exc:
        raise PdfBookError(f"the PDF needs {exc.name}: run ./tasks.sh setup (installs requirements.txt)") from None
    pages = book_pages(html_dir)
    cfg = _book_config()
    from helpers.export import atomic_write

    work = out.parent / f".{out.stem}-pages"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stats = {"plotly": 0, "plotly_images": 0}
    try:
        with _Server(html_dir) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                front = work / "front.pdf"
                title = cfg.get("title") or "The book"
                edition = "Student edition: exercises without solutions" if student else "With solutions"

                def print_front(starts):
                    ctx = browser.new_context()
                    pg = ctx.new_page()
                    author = cfg.get("author") or ""
                    pg.set_content(toc_html(pages, starts, title=title, author=author, edition=edition))
                    pg.pdf(path=str(front), format=PAPER, margin=MARGINS, print_background=True)
                    ctx.close()
                    return len(PdfReader(front).pages)

                # the contents' length (not its numbers) decides where the first page starts; each
                # page is printed knowing its first page number, then the contents get the numbers
                n_front = print_front([0] * len(pages))
                parts, starts, n = [], [], n_front + 1
                for i, bp in enumerate(pages):
                    f = work / f"{i:02d}.pdf"
                    s = _print_page(browser, f"{base}/{bp.doc}.html", f, bp.title, n)
                    stats["plotly"] += s["plotly"]
                    stats["plotly_images"] += s["plotly_images"]
                    parts.append(f)
                    starts.append(n)
                    n += len(PdfReader(f).pages)
                    log(f"  printed {bp.doc}.html ({s['plotly']} plotly figures as images)")
                if print_front(starts) != n_front:  # pragma: no cover - numbers never add a line
                    raise PdfBookError("the contents changed length when the page numbers were filled in")
            finally:
                browser.close()
        writer = PdfWriter()
        writer.append(str(front))
        for bp, f, start in zip(pages, parts, starts):
            writer.append(str(f))
            writer.add_outline_item(title=bp.title, page_number=start - 1)
        writer.add_metadata({"/Title": title, "/Author": cfg.get("author") or ""})

        def write(tmp):
            with open(tmp, "wb") as fh:
                writer.write(fh)
            os.chmod(tmp, 0o644)  # a document to share, not a private temporary file

        atomic_write(out, write)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_pages = len(PdfReader(str(out)).pages)
    return {"pages": n_pages, "bytes": out.stat().st_size, "seconds": time.perf_counter() - t0,
            "starts": dict(zip([p.doc for p in pages], starts)), **stats}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m helpers.book.pdfbook [HTML_DIR] [OUT_PDF] [--student]``."""
    ap = argparse.ArgumentParser(prog="python -m helpers.book.pdfbook", description=__doc__.splitlines()[0])
    ap.add_argument("html_dir", nargs="?", default=str(REPO / "_build" / "html"))
    ap.add_argument("out", nargs="?", default=str(REPO / "_build" / "pdf" / "book.pdf"))
    ap.add_argument("--student", action="store_true", help="title page says: without solutions")
    a = ap.parse_args(argv)
    try:
        res = build_pdf(a.html_dir, a.out, student=a.student)
    except PdfBookError as exc:
        print(f"pdf: {exc}", file=sys.stderr)
        return 2
    print(f"{a.out}: {res['pages']} pages, {res['bytes'] / 1e6:.1f} MB, {res['seconds']:.0f} s "
          f"({res['plotly_images']}/{res['plotly']} plotly figures as images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
