"""The whole book builds with every chapter executed, offline and light.

One build per session (``book_build`` fixture in conftest.py):
``jupyter-book build . -W -n --keep-going --all``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PAGE_LIMIT_BYTES = 8 * 1024 * 1024
PLOTLY_JS = "_static/vendor/plotly.min.js"
PLOTLY_DIV = 'class="plotly-graph-div'

# Build-log lines that mean a problem. The kernel's "[IPKernelApp] WARNING | Kernel is
# running over TCP without encryption" is ipykernel noise about a local socket, not the book.
BAD_LOG = re.compile(r"WARNING:|ERROR:|Traceback \(most recent call last\)|CellExecutionError")


def toc_files() -> list[str]:
    """Every ``file:`` in ``_toc.yml`` (root first), without extension."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return out


def chapter_files() -> list[str]:
    """The chapters (every toc file but the root)."""
    return toc_files()[1:]


def source_of(doc: str) -> Path:
    for ext in (".md", ".ipynb"):
        p = REPO / (doc + ext)
        if p.is_file():
            return p
    raise FileNotFoundError(doc)


class Resources(HTMLParser):
    """Collects the URLs a page loads (not plain ``<a href>`` links)."""

    LOADING = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
               "audio": "src", "embed": "src", "object": "data", "link": "href"}

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        key = self.LOADING.get(tag)
        if key and a.get(key):
            if tag == "link" and (a.get("rel") or "") in ("canonical", "next", "prev", "search", "index"):
                return
            self.urls.append((tag, a[key]))
        if a.get("srcset"):
            self.urls.append((tag, a["srcset"]))


def loaded_urls(html: str) -> list[tuple[str, str]]:
    p = Resources()
    p.feed(html)
    return p.urls


def is_remote(url: str) -> bool:
    s = urlsplit(url.strip())
    return bool(s.netloc) or s.scheme in ("http", "https") or url.strip().startswith("//")


def page_weight(page: Path, html_root: Path) -> int:
    """Bytes of the HTML plus every local script, stylesheet and image it loads."""
    total = page.stat().st_size
    seen = set()
    text = page.read_text(errors="replace")
    if PLOTLY_DIV in text:  # fetched by the page's loader after the load event, not by a <script src>
        seen.add((html_root / PLOTLY_JS).resolve())
        total += (html_root / PLOTLY_JS).stat().st_size
    for _tag, url in loaded_urls(text):
        if is_remote(url) or url.startswith("data:"):
            continue
        target = (page.parent / urlsplit(url).path).resolve()
        if target in seen or not target.is_file():
            continue
        seen.add(target)
        total += target.stat().st_size
    return total


@pytest.fixture(scope="module")
def built(book_build):
    return book_build


class TestBuild:
    def test_exit_code_zero(self, built):
        assert built.returncode == 0, built.log[-4000:]

    def test_no_warning_error_or_traceback(self, built):
        bad = [line for line in built.log.splitlines() if BAD_LOG.search(line)]
        assert not bad, "\n".join(bad[:30])

    def test_build_log_and_time_on_disk(self, built):
        """Failures point at _build/book-build.log: it holds this build's output and its time.

        The time is recorded, never compared with a threshold (timings live in bench/).
        """
        if built.log == "(reused existing build)":  # BOOK_REUSE_BUILD=1: nothing was built, nothing timed
            assert built.seconds == 0.0
            return
        text = (REPO / "_build" / "book-build.log").read_text()
        assert built.seconds > 0
        assert text.startswith(built.log) and text.endswith(f"\n[test] {built.seconds:.1f} s\n")


class TestChapters:
    @pytest.mark.parametrize("doc", toc_files())
    def test_page_built(self, built, doc):
        assert (built.html / f"{doc}.html").is_file(), f"{doc}.html missing in {built.html}"

    @pytest.mark.parametrize("doc", chapter_files())
    def test_executed_outputs(self, built, doc):
        src = source_of(doc).read_text()
        html = (built.html / f"{doc}.html").read_text()
        if "{code-cell}" in src:
            assert 'class="cell_output' in html, f"{doc}: no executed output in the page"
        # error outputs only in cells tagged raises-exception (intentional errors)
        cells = re.split(r'<div class="cell(?=[ "])', html)[1:]
        untagged = [c[:200] for c in cells
                    if "output traceback" in c and "tag_raises-exception" not in c.split(">", 1)[0]]
        assert not untagged, f"{doc}: an error output in a cell not tagged raises-exception: {untagged[0]!r}"

    @pytest.mark.parametrize("doc", chapter_files())
    def test_chapter_skeleton(self, doc):
        """Objectives, at least two exercises, key points and what's next (issue 3)."""
        src = source_of(doc).read_text()
        low = src.lower()
        assert "objectives" in low, f"{doc}: no objectives"
        assert "key points" in low, f"{doc}: no key points"
        assert "what's next" in low or "what’s next" in low, f"{doc}: no what's next"
        assert src.count("```{exercise}") >= 2, f"{doc}: fewer than two exercises"
        assert src.count("```{solution-start}") == src.count("```{solution-end}"), doc


class TestOffline:
    def pages(self, built):
        return sorted(built.html.rglob("*.html"))

    def test_no_remote_resources(self, built):
        bad = []
        for page in self.pages(built):
            for tag, url in loaded_urls(page.read_text(errors="replace")):
                if is_remote(url):
                    bad.append(f"{page.relative_to(built.html)}: <{tag}> {url}")
        assert not bad, "\n".join(bad[:30])

    def test_no_cdn_in_inline_loaders(self, built):
        """No require.js / widget html-manager / MathJax CDN, even as inline loader config."""
        cdn = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs|cdn\.plot\.ly|require\.js|embed-amd\.js")
        bad = []
        for page in self.pages(built):
            text = page.read_text(errors="replace")
            text = re.sub(r'<script type="text/x-thebe-config">.*?</script>', "", text, flags=re.S)
            text = re.sub(r"const THEBE_JS_URL = [^;]*;", "", text)  # only used on a click of 'live code'
            for m in cdn.finditer(text):
                bad.append(f"{page.relative_to(built.html)}: {text[max(0, m.start() - 60):m.end() + 20]!r}")
        assert not bad, "\n".join(bad[:20])

    def test_every_page_under_8_mb(self, built):
        heavy = {}
        for page in self.pages(built):
            w = page_weight(page, built.html)
            if w >= PAGE_LIMIT_BYTES:
                heavy[str(page.relative_to(built.html))] = w
        assert not heavy, heavy

    def test_plotly_js_only_on_plotly_pages(self, built):
        assert (built.html / PLOTLY_JS).is_file(), "plotly.min.js was not copied into the site"
        wrong = []
        for page in self.pages(built):
            text = page.read_text(errors="replace")
            has_div = PLOTLY_DIV in text
            has_js = "vendor/plotly.min.js" in text
            if has_div != has_js:
                wrong.append(f"{page.relative_to(built.html)}: div={has_div} script={has_js}")
        assert not wrong, "\n".join(wrong)

    def test_mathjax_local(self, built):
        assert (built.html / "_static" / "mathjax" / "tex-chtml.js").is_file()


@pytest.mark.realdata
class TestRealFolder:
    """Every chapter runs end to end on a real scan (DICOM_DIR), not only on the sample."""

    @pytest.mark.parametrize("doc", chapter_files())
    def test_chapter_executes(self, doc, real_case, monkeypatch, tmp_path):
        import jupytext
        from nbclient import NotebookClient

        monkeypatch.setenv("DICOM_DIR", str(real_case / "ct-b40f"))  # the kernel inherits it
        kernel_tmp = tmp_path / "kernel-tmp"
        kernel_tmp.mkdir()
        monkeypatch.setenv("TMPDIR", str(kernel_tmp))  # what the chapter leaves there is litter
        nb = jupytext.read(source_of(doc))
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "book")}})
        client.execute()  # raises CellExecutionError on an unexpected error
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"
                  and "raises-exception" not in c.get("metadata", {}).get("tags", [])]
        assert not errors, f"{doc}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        left = sorted(p.name for p in kernel_tmp.iterdir())
        assert not left, f"{doc} left {len(left)} entries in the temporary folder: {left[:5]}"
