"""The book as a PDF (``helpers.book.pdfbook``): printed from the session's HTML build.

The slow test reuses the ``book_build`` fixture (the book is executed once per
session) and prints it with Chromium into ``tmp_path``: about a minute here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from helpers.book import pdfbook

REPO = Path(__file__).resolve().parents[1]
#: A figure whose pixels vary less than this (grey levels, 0-255) is blank.
BLANK_STD = 2.0


def chapter_titles() -> list[str]:
    """Every entry of ``_toc.yml``, titled by the first ``# `` heading of its source."""
    out = []
    for doc in pdfbook.toc_docs(REPO / "_toc.yml"):
        text = (REPO / f"{doc}.md").read_text()
        m = re.search(r"^# (.+)$", text, re.M)
        assert m, f"{doc}.md has no '# ' title"
        out.append(m.group(1).strip())
    return out


def _flat(text: str) -> str:
    """Whitespace collapsed, ligatures (the PDF's 'ﬁ') and soft hyphens undone."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).replace("\u00ad", "")).strip()


@pytest.fixture(scope="module")
def printed(book_build, tmp_path_factory):
    if book_build.returncode != 0 or not (book_build.html / "index.html").is_file():
        pytest.fail("the book did not build; see _build/book-build.log")
    if pdfbook.find_chromium() is None:
        pytest.fail("Chromium is missing: run ./tasks.sh setup (installs Debian's chromium)")
    out = tmp_path_factory.mktemp("pdf") / "book.pdf"
    stats = pdfbook.build_pdf(book_build.html, out, log=lambda *_: None)
    print(f"pdf: {stats['pages']} pages, {stats['bytes'] / 1e6:.1f} MB, {stats['seconds']:.0f} s")
    return out, stats


@pytest.mark.slow
class TestPdf:
    def test_page_count(self, printed):
        out, stats = printed
        from pypdf import PdfReader

        n = len(PdfReader(out).pages)
        entries = len(pdfbook.toc_docs())
        assert n == stats["pages"]
        assert entries + 2 <= n <= 40 * entries, f"{n} pages for {entries} entries"
        starts = list(stats["starts"].values())
        assert starts == sorted(starts) and starts[0] >= 3, starts  # title page and contents come first

    def test_every_chapter_title_in_text(self, printed):
        out, stats = printed
        from pypdf import PdfReader

        reader = PdfReader(out)
        text = _flat(" ".join(p.extract_text() or "" for p in reader.pages))
        missing = [t for t in chapter_titles() if _flat(t) not in text]
        assert not missing, f"titles not in the PDF text: {missing}"
        contents = _flat(reader.pages[1].extract_text() or "")
        assert "Contents" in contents and all(_flat(t) in contents for t in chapter_titles()[1:])

    def test_page_numbers_match_contents(self, printed):
        """Each chapter's first page carries the number the contents page gives it (bottom right)."""
        out, stats = printed
        if shutil.which("pdftotext") is None:
            pytest.fail("pdftotext is missing: ./tasks.sh setup installs Debian's poppler-utils")
        wrong = []
        for doc, start in stats["starts"].items():
            text = subprocess.run(["pdftotext", "-layout", "-f", str(start), "-l", str(start), str(out), "-"],
                                  capture_output=True, text=True, check=True).stdout
            footer = [ln for ln in text.splitlines() if ln.strip()][-1]  # pypdf does not read @page boxes
            if not footer.rstrip().endswith(f" {start}"):
                wrong.append(f"{doc}: page {start} ends with {footer.strip()!r}")
        assert not wrong, wrong

    def test_no_link_to_the_local_server(self, printed):
        """Pages are served on 127.0.0.1 while printing; no link in the PDF may point there."""
        out, _ = printed
        from pypdf import PdfReader

        local = []
        for i, page in enumerate(PdfReader(out).pages, start=1):
            for annot in page.get("/Annots") or []:
                action = annot.get_object().get("/A")
                uri = str(action.get_object().get("/URI", "")) if action is not None else ""
                if "127.0.0.1" in uri or "localhost" in uri:
                    local.append(f"page {i}: {uri}")
        assert not local, local[:5]

    def test_plotly_figures_became_images(self, printed):
        _, stats = printed
        assert stats["plotly"] > 0, "no plotly figure found in the book"
        assert stats["plotly_images"] == stats["plotly"], stats

    def test_no_blank_figure(self, printed):
        out, _ = printed
        from pypdf import PdfReader

        blank, n_images = [], 0
        for i, page in enumerate(PdfReader(out).pages, start=1):
            for img in page.images:
                a = np.asarray(img.image.convert("L"), dtype=np.float32)
                if min(a.shape) < 32:  # icons, not figures
                    continue
                n_images += 1
                if a.std() < BLANK_STD:
                    blank.append(f"page {i}: {img.name} {a.shape} std {a.std():.2f}")
        assert n_images >= 10, f"only {n_images} figures in the PDF"
        assert not blank, "\n".join(blank)


class TestBadInput:
    def test_no_chromium_one_line(self, monkeypatch, tmp_path, capsys):
        monkeypatch.setattr(pdfbook, "find_chromium", lambda: None)
        assert pdfbook.main([str(tmp_path), str(tmp_path / "book.pdf")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "install" in err and "chromium" in err.lower()
        assert "Traceback" not in err and not (tmp_path / "book.pdf").exists()

    def test_missing_build_one_line(self, tmp_path, capsys):
        if pdfbook.find_chromium() is None:
            pytest.skip("no Chromium here")
        assert pdfbook.main([str(tmp_path / "nothing"), str(tmp_path / "book.pdf")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "./tasks.sh book" in err, err
