"""The book's Sphinx extension (book/_ext/book_offline.py) on a tiny Sphinx project.

Fast (a few seconds): plotly.js only where a plotly div is, no fontawesome.js,
duplicate inline scripts removed, and the student build without solutions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONF = f"""
import sys
sys.path.insert(0, {str(REPO / "book" / "_ext")!r})
extensions = ["myst_parser", "sphinx_exercise", "book_offline"]
html_theme = "sphinx_book_theme"
myst_enable_extensions = ["colon_fence"]
def setup(app):
    app.add_js_file(None, body="const DUPLICATED = 1;")
    app.connect("builder-inited", lambda a: a.add_js_file(None, body="const DUPLICATED = 1;", priority=501))
"""

INDEX = """# Index

```{toctree}
plot
plain
```
"""

PLOT = """# With a figure

```{raw} html
<div class="plotly-graph-div" id="f1"></div>
```
"""

PLAIN = """# Without a figure

```{exercise} Add two numbers
:label: ex-add
:nonumber:

What is 1 + 1?
```

````{solution-start} ex-add
:class: dropdown
````

The answer is SECRET-TWO.

````{solution-end}
````
"""


def build(tmp_path: Path, *, student: bool) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF)
    (src / "index.md").write_text(INDEX)
    (src / "plot.md").write_text(PLOT)
    (src / "plain.md").write_text(PLAIN)
    out = tmp_path / "html"
    env = {**os.environ, "BOOK_STUDENT": "1" if student else "0"}
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", str(src), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("teacher"), student=False)


class TestPlotlyJs:
    def test_copied_from_the_plotly_package(self, site):
        import plotly

        src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        assert (site / "_static" / "vendor" / "plotly.min.js").stat().st_size == src.stat().st_size

    def test_only_on_pages_with_a_plotly_div(self, site):
        assert "vendor/plotly.min.js" in (site / "plot.html").read_text()
        assert "vendor/plotly.min.js" not in (site / "plain.html").read_text()
        assert "vendor/plotly.min.js" not in (site / "index.html").read_text()


class TestPageHygiene:
    def test_no_fontawesome_js(self, site):
        assert "fontawesome.js" not in (site / "plain.html").read_text()
        assert "fa-solid-900" in (site / "_static" / "styles" / "pydata-sphinx-theme.css").read_text()

    def test_inline_script_once(self, site):
        assert (site / "plain.html").read_text().count("const DUPLICATED = 1;") == 1


class TestStudentBuild:
    def test_teacher_build_keeps_solutions(self, site):
        assert "SECRET-TWO" in (site / "plain.html").read_text()

    def test_student_build_removes_solutions(self, tmp_path):
        html = (build(tmp_path, student=True) / "plain.html").read_text()
        assert "SECRET-TWO" not in html
        assert "What is 1 + 1?" in html


# ------------------------------------------------------------------ alt text of figure outputs
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
PNG_2 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _png_wide(width: int = 684, height: int = 4) -> str:
    """Base64 PNG as wide as a figure drawn for the page's column (helpers.display.PAGE_WIDTH_IN)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _notebook() -> dict:
    def cell(png, metadata, outputs_md):
        return {"cell_type": "code", "execution_count": 1, "metadata": metadata, "source": "fig",
                "outputs": [{"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"},
                             "metadata": outputs_md}]}

    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Figures"},
            cell(PNG_1PX, {}, {"image/png": {"alt": "Axial slice 41 of 120,  lung window."}}),
            cell(PNG_2, {"mystnb": {"image": {"alt": "Given in the cell"}}}, {"image/png": {"alt": "from output"}}),
            cell(_png_wide(), {}, {"image/png": {"alt": "Three orthogonal views, wide."}}),
        ],
    }


class TestAltText:
    """An image output's ``alt`` metadata becomes the ``<img alt>`` (myst-nb alone writes the path)."""

    def test_output_alt_texts_hashes_like_myst_nb(self):
        import base64
        import hashlib

        sys.path.insert(0, str(REPO / "book" / "_ext"))
        from book_offline import output_alt_texts

        alts = output_alt_texts(_notebook())
        key = hashlib.sha256(base64.b64decode(PNG_1PX)).hexdigest()
        assert alts[key] == "Axial slice 41 of 120, lung window."

    def test_img_alt_in_the_page(self, nb_site):
        import re

        alts = re.findall(r'<img alt="([^"]*)"', (nb_site / "figs.html").read_text())
        assert alts == ["Axial slice 41 of 120, lung window.", "Given in the cell", "Three orthogonal views, wide."]


class TestFiguresOnAPhone:
    """A wide image output is a link to its own file, classed for book-phone.css; small ones are not."""

    def test_zoom_class(self):
        sys.path.insert(0, str(REPO / "book" / "_ext"))
        from book_offline import ZOOM_MIN_PX, zoom_class

        assert zoom_class(1106) == f"book-min-{ZOOM_MIN_PX}"
        assert zoom_class(420) == "book-min-400"
        assert zoom_class(1) is None

    def test_wide_image_links_to_its_file(self, nb_site):
        import re

        html = (nb_site / "figs.html").read_text()
        links = re.findall(r'<a class="([^"]*book-zoom[^"]*)" href="([^"]*)"><img alt="([^"]*)" src="([^"]*)"', html)
        assert len(links) == 1, links
        classes, href, alt, src = links[0]
        assert "book-min-600" in classes.split() and alt == "Three orthogonal views, wide."
        assert href == src and (nb_site / href).is_file()

    def test_phone_css_served(self, nb_site):
        css = (nb_site / "_static" / "book-phone.css").read_text()
        assert "@media screen and" in css and "a.book-min-600 > img { min-width: 600px; }" in css
        assert "book-phone.css" in (nb_site / "figs.html").read_text()


@pytest.fixture(scope="module")
def nb_site(tmp_path_factory) -> Path:
    """A myst-nb project: a notebook with figure outputs, a page with math, an index listing both."""
    import json

    tmp = tmp_path_factory.mktemp("nb")
    src = tmp / "src"
    src.mkdir()
    (src / "conf.py").write_text(CONF.replace('"myst_parser", ', '"myst_nb", ') + '\nnb_execution_mode = "off"\n'
                                 'myst_enable_extensions = ["colon_fence", "dollarmath"]\n')
    (src / "index.md").write_text("# Index\n\n```{toctree}\nfigs\nformula\n```\n")
    (src / "figs.ipynb").write_text(json.dumps(_notebook()))
    (src / "formula.md").write_text("# A formula\n\nHU = $m \\cdot SV + b$\n")
    out = tmp / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


class TestMathJax:
    """MathJax only on a page that has math, not on the index whose toctree lists one."""

    def test_on_the_page_with_math(self, nb_site):
        formula = (nb_site / "formula.html").read_text()
        assert "tex-chtml.js" in formula or "mathjax" in formula.lower()

    def test_not_on_pages_without_math(self, nb_site):
        for page in ("index.html", "figs.html"):
            html = (nb_site / page).read_text()
            assert "mathjax" not in html.replace("mathjax_ignore", "").lower(), page
