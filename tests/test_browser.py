"""Every chapter opens cleanly in Debian's chromium, offline.

The built site (``book_build`` fixture) is served on 127.0.0.1; each page of ``_toc.yml``
is opened through Playwright.  A page fails on any console error or uncaught exception,
any failed request (or HTTP status >= 400), any request to another host (aborted and
recorded), or any plotly figure that did not draw.  A viewport screenshot of each page
(and one of each plotly figure) is saved under ``_build/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_book import toc_files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "_build" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
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


def open_page(browser, url: str):
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
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
            try:
                page.wait_for_function(
                    """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                           .every(d => d.querySelector('.main-svg') || d.querySelector('canvas'))""",
                    timeout=PLOTLY_DRAW_TIMEOUT_MS,
                )
            except Exception:  # the assertion below names the figures
                pass
            state = page.evaluate(PLOTLY_STATE)
            not_drawn = [s["id"] for s in state if not s["drawn"] or not s["traces"]]
        name = shot_name(index, doc)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
        for k in range(n_plots):
            el = page.locator(".plotly-graph-div").nth(k)
            el.scroll_into_view_if_needed()
            el.screenshot(path=str(SHOTS / f"{name}_plotly{k + 1}.png"))
        problems = rec.problems() + [f"plotly figure did not draw: #{i}" for i in not_drawn]
        assert not problems, f"{doc}:\n" + "\n".join(problems)
    finally:
        context.close()
