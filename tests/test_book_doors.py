"""The book's doors to the notebooks: repository buttons only for a real repository, and a
student build that leaks no solution through any file.

Each build here is a quick one (``execute_notebooks: off``, a copy of ``_config.yml`` with
one setting changed): what is checked is where solutions and buttons go, not the outputs.
Three builds, about 10 + 10 + 40 s on the 2-core machine.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from helpers.book.notebooks import chapters

pytestmark = pytest.mark.slow

REAL_URL = "https://github.com/someone/dicom-book"
PLACEHOLDER_URL = "https://github.com/example/dicom-teaching-book"


def quick_build(out: Path, *, url: str, student: bool, only: list[str] | None = None) -> tuple[Path, str]:
    """``jupyter-book build`` of the repository without execution; returns (html folder, log)."""
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    cfg["repository"]["url"] = url
    # the copy lives outside the repository: its relative paths must become absolute
    cfg["sphinx"]["local_extensions"] = {k: str(REPO / v) for k, v in cfg["sphinx"]["local_extensions"].items()}
    cfg["html"]["favicon"] = str(REPO / cfg["html"]["favicon"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "_config.yml").write_text(yaml.safe_dump(cfg))
    args = ["--config", str(out / "_config.yml")]
    if only is not None:
        toc = {"format": "jb-book", "root": "book/index", "chapters": [{"file": f} for f in only]}
        (out / "_toc.yml").write_text(yaml.safe_dump(toc))
        args += ["--toc", str(out / "_toc.yml")]
    env = {k: v for k, v in os.environ.items() if k != "BOOK_STUDENT"}
    if student:
        env["BOOK_STUDENT"] = "1"
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(REPO), "--path-output", str(out / "site"), "-W", "-n", "--keep-going", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return out / "site" / "_build" / "html", log


def solution_lines() -> dict[str, list[str]]:
    """Every code line of every solution, per chapter, that no chapter has outside a solution.

    (An import line such as ``from helpers.segment import segment_lungs`` in one chapter's
    solution may stand in another chapter's set-up cell: that is no leak.)
    """
    solution = r"````\{solution-start\}.*?````\{solution-end\}"
    outside = "\n".join(re.sub(solution, "", p.read_text(), flags=re.S) for p in chapters())
    found = {}
    for path in chapters():
        src = path.read_text()
        lines = []
        for block in re.findall(r"````\{solution-start\}.*?````\{solution-end\}", src, re.S):
            for cell in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", block, re.S):
                for line in map(str.strip, cell.splitlines()):
                    if len(line) >= 8 and not line.startswith(":") and line not in outside:
                        lines.append(" ".join(line.split()))
        found[path.stem] = lines
    return found


def readable_text(path: Path) -> str:
    """The text a file carries, whitespace collapsed: HTML without tags, JSON strings joined."""
    raw = path.read_bytes().decode("utf-8", errors="replace")
    texts = [raw]
    if path.suffix in (".html", ".htm", ".xml"):
        texts.append(html.unescape(re.sub(r"<[^>]+>", "", raw)))
    if path.suffix in (".ipynb", ".json"):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None

        def strings(o):
            if isinstance(o, str):
                yield o
            elif isinstance(o, dict):
                for v in o.values():
                    yield from strings(v)
            elif isinstance(o, list):
                for v in o:
                    yield from strings(v)

        texts.append("\n".join(strings(data)))
    return " ".join(" ".join(texts).split())


def leaks(root: Path, lines: dict[str, list[str]]) -> list[str]:
    found = []
    files = [p for p in root.rglob("*") if p.is_file()]
    for p in files:
        text = readable_text(p)
        for chapter, chapter_lines in lines.items():
            for line in chapter_lines:
                if line in text:
                    found.append(f"{p.relative_to(root)}: {chapter}: {line}")
    return found


def launch_links(page: Path) -> list[str]:
    return re.findall(r'href="(https://mybinder\.org[^"]*)"', page.read_text())


def repo_links(page: Path) -> list[str]:
    return re.findall(r'href="(https://github\.com/[^"]*)"', page.read_text())


def index_text(html_dir: Path) -> str:
    s = (html_dir / "book" / "index.html").read_text()
    main = s[s.find("<main"):]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


@pytest.fixture(scope="module")
def real_url_build(tmp_path_factory):
    return quick_build(tmp_path_factory.mktemp("real-url"), url=REAL_URL, student=False, only=["book/02_normalize"])


@pytest.fixture(scope="module")
def placeholder_build(tmp_path_factory):
    return quick_build(tmp_path_factory.mktemp("placeholder"), url=PLACEHOLDER_URL, student=False,
                       only=["book/02_normalize"])


@pytest.fixture(scope="module")
def student_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    html_dir, log = quick_build(out, url=REAL_URL, student=True)
    return out / "site", html_dir, log


class TestRepositoryUrl:
    def test_real_url_binder_opens_the_student_notebook(self, real_url_build):
        html_dir, log = real_url_build
        links = launch_links(html_dir / "book" / "02_normalize.html")
        assert links == ["https://mybinder.org/v2/gh/someone/dicom-book/main?urlpath=lab/tree/notebooks/02_normalize.ipynb"]
        assert any(u.startswith(REAL_URL) for u in repo_links(html_dir / "book" / "02_normalize.html"))
        assert "GitHub and Binder buttons point to " + REAL_URL in log

    def test_real_url_index_mentions_binder(self, real_url_build):
        assert "rocket button" in index_text(real_url_build[0])

    def test_placeholder_no_button_no_promise_one_line(self, placeholder_build):
        html_dir, log = placeholder_build
        for page in html_dir.rglob("*.html"):
            assert not launch_links(page), page
            assert not [u for u in repo_links(page) if "example" in u], page
            assert "mybinder" not in page.read_text(), page
        text = index_text(html_dir)
        assert "rocket" not in text and "Binder" not in text
        assert "./tasks.sh lab" in text
        said = [ln for ln in log.splitlines() if "no GitHub or Binder buttons" in ln]
        assert len(said) == 1 and "placeholder" in said[0] and "repository.url" in said[0]

    @pytest.mark.parametrize("url,placeholder", [
        ("", True), (None, True), ("https://github.com/example/dicom-teaching-book", True),
        ("https://example.com/x/y", True), ("https://github.com/<you>/<repo>", True),
        ("https://github.com/someone/dicom-book", False), ("https://gitlab.com/group/book", False)])
    def test_is_placeholder(self, url, placeholder):
        sys.path.insert(0, str(REPO / "book" / "_ext"))
        try:
            from book_offline import is_placeholder_repository
        finally:
            sys.path.remove(str(REPO / "book" / "_ext"))
        assert is_placeholder_repository(url) is placeholder


class TestStudentBuild:
    def test_detector_finds_solutions_in_a_normal_build(self, real_url_build):
        """Positive control: the same grep finds chapter 2's solutions in a build with them."""
        lines = solution_lines()
        assert lines["02_normalize"]
        found = leaks(real_url_build[0], {"02_normalize": lines["02_normalize"]})
        assert any(f.startswith("book/02_normalize.html") for f in found)
        assert any(f.startswith("_sources/") for f in found)

    def test_no_solution_code_in_any_file(self, student_build):
        site, _html, _log = student_build
        lines = solution_lines()
        assert sum(map(len, lines.values())) > 20
        found = leaks(site, lines)
        assert not found, "\n".join(found[:20])

    def test_no_sources_no_download_no_binder(self, student_build):
        _site, html_dir, log = student_build
        assert not (html_dir / "_sources").exists()
        page = (html_dir / "book" / "02_normalize.html").read_text()
        assert "_sources/" not in page and ".ipynb" not in page
        assert not launch_links(html_dir / "book" / "02_normalize.html")
        assert "the student build has none" in log

    def test_index_says_what_it_is(self, student_build):
        text = index_text(student_build[1])
        assert "student edition" in text and "solutions are left out" in text
        assert "drop-downs" not in text and "rocket" not in text

    def test_exercises_still_there(self, student_build):
        page = (student_build[1] / "book" / "02_normalize.html").read_text()
        assert "Stored values to HU" in page and "check_hu" in page
