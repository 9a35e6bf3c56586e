"""The book as a PDF: seconds to print the built site with Chromium, pages and size.

Prints the existing HTML build (``_build/html``, made by ``./tasks.sh book``)
with :func:`helpers.book.pdfbook.build_pdf` into a scratch folder, once (the build
itself is measured by ``bench_book``).  Skipped with ``--quick``, and reported
as skipped when there is no build or no Chromium.

Run in the report: ``python -m bench --only pdf``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import common
else:
    from . import common

STEP = "print the built book to one PDF"


def run(*, quick: bool = False) -> list[dict]:
    """One row: seconds, pages and MB of the PDF of ``_build/html``."""
    if quick:
        return []
    from helpers.book import pdfbook

    html = common.REPO / "_build" / "html"
    impl = "helpers.book.pdfbook (Chromium page.pdf per page, pypdf merge)"
    if not (html / "index.html").is_file() or pdfbook.find_chromium() is None:
        why = "no _build/html: run ./tasks.sh book first" if pdfbook.find_chromium() else "no Chromium"
        return [common.row(step=STEP, implementation=impl, data="", notes=f"skipped: {why}")]
    scratch = common.scratch_dir()
    try:
        res = pdfbook.build_pdf(html, scratch / "book.pdf", log=lambda *_: None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [common.row(step=STEP, implementation=impl, data=f"the sample book, {res['pages']} pages",
                       times=[res["seconds"]],
                       notes=f"{res['bytes'] / 1e6:.1f} MB; {res['plotly_images']}/{res['plotly']} plotly figures "
                             "drawn as images; one run, 2 cores shared")]


if __name__ == "__main__":
    for r in run():
        print(r)
