"""Shared fixtures: the repo root, the bundled sample, the real case in ../shared/data.

The whole session, and every process it starts (the book build, kernels, Dask
workers, browsers), uses a temporary folder of its own that is removed when the
session ends, so a test run leaves nothing in the system's temporary folder.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SESSION_TMP = Path(tempfile.mkdtemp(prefix="dicom-book-tests-"))
os.environ["TMPDIR"] = str(SESSION_TMP)
tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_TMP, ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_CASE = SHARED_DATA / "lung-pet-ct-dx-A0002"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_case() -> Path:
    """../shared/data/lung-pet-ct-dx-A0002 (two series + tumour boxes); skips when absent."""
    if not (REAL_CASE / "ct-b40f").is_dir():
        pytest.skip("../shared/data is absent: real-data tests skipped")
    return REAL_CASE


# ---------------------------------------------------------------- the book (test_book, test_browser)
@dataclass
class BookBuild:
    """Result of one ``jupyter-book build`` of the whole book."""

    returncode: int
    log: str
    html: Path
    seconds: float


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """Build the whole book once per session (execution forced, warnings are errors).

    ``BOOK_REUSE_BUILD=1`` reuses an existing ``_build/html`` (for iterating on tests).
    """
    html = REPO / "_build" / "html"
    if os.environ.get("BOOK_REUSE_BUILD") == "1" and (html / "index.html").is_file():
        return BookBuild(0, "(reused existing build)", html, 0.0)
    # jupyter_book has no __main__: call its click entry point through the same interpreter
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(REPO), "-W", "-n", "--keep-going", "--all"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    (REPO / "_build").mkdir(exist_ok=True)
    log = proc.stdout + proc.stderr
    (REPO / "_build" / "book-build.log").write_text(log + f"\n[test] {seconds:.1f} s\n")
    return BookBuild(proc.returncode, log, html, seconds)


@pytest.fixture(scope="session")
def book_site(book_build):
    """Serve ``_build/html`` on 127.0.0.1 (random free port) in a thread; yields the base URL."""
    import functools
    import http.server
    import threading

    if book_build.returncode != 0 or not (book_build.html / "index.html").is_file():
        pytest.fail("the book did not build; see _build/book-build.log")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(book_build.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- Debian's chromium (test_browser, test_jupyterlab)
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (never Playwright's own browser download)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./tasks.sh setup (installs Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    from helpers.book.pdfbook import CHROMIUM_ARGS  # the same flags the PDF printer uses

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
