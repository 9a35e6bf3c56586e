"""Sphinx extension: keep the built book offline and light.

* Copies the pinned ``plotly.min.js`` shipped inside the installed ``plotly``
  package to ``_static/vendor/plotly.min.js`` and loads it only on the pages
  whose body contains a plotly figure ``<div>`` (the ``"book"`` renderer in
  :mod:`helpers.book.notebook` emits figures without plotly.js), after the page's
  ``load`` event: the text shows at once, then plotly.js (from the browser's
  cache after the first page) draws each figure the page queued when the reader
  comes within 200 px of it.
* Removes duplicated inline ``<script>`` bodies (sphinx-thebe's
  ``const THEBE_JS_URL = ...`` is registered twice by jupyter-book, which makes
  the browser log "Identifier 'THEBE_JS_URL' has already been declared").
* Removes the ipywidgets state myst-nb embeds in pages: the static site shows
  still images instead of widgets (``nb_mime_priority_overrides``), and the
  state would only add weight (it repeats every image a widget captured).
* Drops the theme's 1.5 MB ``fontawesome.js`` (its CSS web font draws the same icons).
* MathJax only on pages with math: Sphinx also adds it to a page whose toctree
  lists a page with math (the index loaded 1.2 MB of MathJax for no formula).
* Alt text for figures: an image output whose metadata has ``alt`` (set by
  ``helpers.display.register_alt_text`` for every matplotlib figure and by
  ``helpers.book.notebook.show_widget``) gets that text as its ``<img alt>``; myst-nb
  reads only ``width``/``height`` from output metadata, so without this every
  figure's alt text would be its file path.  ``mystnb: image: alt:`` in the cell's
  metadata still wins.
* Student build: with the environment variable ``BOOK_STUDENT=1`` the
  sphinx-exercise solutions are removed from the pages (they still execute), no
  source or notebook is copied into the site (``_sources``, download buttons), the
  executed notebooks and doctrees are deleted after the build, and the tag
  ``student`` is set (``{only} student`` text in the index).
* Figures on a phone: each image output at least :data:`ZOOM_MIN_NATURAL_PX` wide is
  wrapped in a plain link to its PNG (a tap opens it full size, offline) with the
  classes ``book-zoom`` and ``book-min-<N>``; ``_static/book-phone.css`` keeps such an
  image at least N CSS px wide (N = its own width, at most :data:`ZOOM_MIN_PX`) on a
  narrow screen, inside a box that scrolls sideways under a "swipe / tap" cue, so its
  labels stay >= 9 px instead of shrinking to half size.  Print (the PDF) is unchanged.
* Repository buttons only for a real repository: while ``repository.url`` in
  ``_config.yml`` is empty or a placeholder (``github.com/example/...``) no page shows
  a GitHub or Binder button and the build says so in one line; with a real URL the
  tag ``binder`` is set and each chapter's Binder button opens the generated student
  notebook ``notebooks/<chapter>.ipynb`` (``helpers.book.notebooks``, made by ``postBuild``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from docutils import nodes
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

PLOTLY_JS = "vendor/plotly.min.js"  # relative to _static
STATIC = Path(__file__).resolve().parent / "static"
PHONE_CSS = "book-phone.css"  # in STATIC: wide figures on a phone (see _zoomable_figures)
PLOTLY_MARKER = "plotly-graph-div"
STUDENT_ENV = "BOOK_STUDENT"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# owners that mark a repository URL as a placeholder, not a real repository
PLACEHOLDER_OWNERS = {"example", "your-name", "your-org", "username", "user", "owner", "org"}
PLACEHOLDER_HOSTS = {"example.com", "example.org", "example.net"}
NOTEBOOK_FOLDER = "notebooks"  # helpers.book.notebooks.NOTEBOOK_DIR, relative to the repository root
CHAPTER = re.compile(r"^\d\d_")
#: Loads plotly.js once the page has loaded; then each figure queued by ``window.bookPlot`` is
#: drawn when it comes within 200 px of the window (a WebGL scene costs ~1.7 s in
#: software GL), and ``window.bookPlotDrawAll()`` draws the rest at once (the PDF printer).
PLOTLY_LOADER = """window.addEventListener("load", function () {
  var s = document.createElement("script");
  s.src = PLOTLY_URL;
  s.onload = function () {
    if (window.performance && performance.mark) { performance.mark("book-plotly-ready"); }
    var waiting = [];
    function draw(args) { return Plotly.newPlot.apply(Plotly, args); }
    window.bookPlotDrawAll = function () {
      var all = waiting; waiting = [];
      all.forEach(function (item) { item.io.disconnect(); draw(item.args); });
    };
    window.bookPlot = function () {
      var args = arguments, el = document.getElementById(args[0]);
      if (!el || !window.IntersectionObserver) { return draw(args); }
      var item = {args: args};
      item.io = new IntersectionObserver(function (entries) {
        if (!entries.some(function (e) { return e.isIntersecting; })) { return; }
        item.io.disconnect();
        waiting = waiting.filter(function (x) { return x !== item; });
        draw(args);
      }, {rootMargin: "200px 0px"});
      waiting.push(item);
      item.io.observe(el);
    };
    var queue = window.bookPlotQueue || [];
    window.bookPlotQueue = [];
    queue.forEach(function (args) { window.bookPlot.apply(null, args); });
  };
  document.head.appendChild(s);
});"""
# myst-nb names an image output file after the SHA-256 of its bytes
HASHED_IMAGE = re.compile(r"([0-9a-f]{64})\.\w+$")
BINARY_IMAGES = {"image/png", "image/jpeg", "image/gif"}
#: Narrowest image (natural px) linked for zooming: smaller ones fit a phone's column as they are.
ZOOM_MIN_NATURAL_PX = 400
#: Smallest width (CSS px) a wide figure keeps on a narrow screen (book-phone.css); a figure
#: drawn for the 688 px column (helpers.display.PAGE_WIDTH_IN at 90 dpi) keeps ~0.87 of its
#: size: 8.5 pt tile labels (10.6 px) stay at ~9.3 px.
ZOOM_MIN_PX = 600
#: ``book-min-<N>`` classes come in steps of this many px (book-phone.css has one rule per step).
ZOOM_STEP_PX = 50


def plotly_js_source() -> Path:
    """Path of the plotly.js bundle inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"plotly.min.js not found at {path}: reinstall the pinned plotly (requirements.txt)"
        )
    return path


def student_mode() -> bool:
    """True when ``BOOK_STUDENT`` is set to something else than ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(STUDENT_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_placeholder_repository(url) -> bool:
    """True when ``url`` is empty or a placeholder (``https://github.com/example/...``)."""
    url = (url or "").strip()
    if not url or "<" in url:
        return True
    parts = urlsplit(url)
    owner = parts.path.strip("/").split("/")[0].lower()
    return (parts.hostname or "").lower() in PLACEHOLDER_HOSTS or owner in PLACEHOLDER_OWNERS or not owner


def _config_inited(app, config):
    _drop_fontawesome_js(app, config)
    _repository_buttons(app, config)
    if student_mode():
        app.tags.add("student")
        config.html_copy_source = False      # no _sources/*.md or .ipynb with the solutions
        config.html_show_sourcelink = False


def _repository_buttons(app, config):
    """Buttons to GitHub/Binder only when ``repository.url`` names a real repository."""
    opts = dict(config.html_theme_options or {})
    url = opts.get("repository_url", "")
    if is_placeholder_repository(url) or student_mode():
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button", "use_source_button"):
            opts[key] = False
        opts.pop("launch_buttons", None)
        opts.pop("repository_url", None)
        if student_mode():
            opts["use_download_button"] = False  # it would offer the sources with the solutions
        config.html_theme_options = opts
        why = ("the student build has none" if student_mode() and not is_placeholder_repository(url) else
               f"repository.url in _config.yml is {'unset' if not url else 'a placeholder (' + url + ')'}; "
               "set it to the published repository to add them (README: Publishing)")
        LOGGER.info(f"book: no GitHub or Binder buttons: {why}")
    else:
        opts["use_repository_button"] = True
        config.html_theme_options = opts
        app.tags.add("binder")
        LOGGER.info(f"book: GitHub and Binder buttons point to {url} "
                    f"(Binder opens {NOTEBOOK_FOLDER}/<chapter>.ipynb)")


def _launch_to_student_notebook(pagename, context):
    """Point the page's Binder button at ``notebooks/<chapter>.ipynb`` (drop it on other pages)."""
    buttons = context.get("header_buttons")
    if not buttons:
        return
    name = pagename.rsplit("/", 1)[-1]
    for group in list(buttons):
        if not isinstance(group, dict) or group.get("label") != "launch-buttons":
            continue
        if not CHAPTER.match(name):
            buttons.remove(group)
            continue
        for b in group.get("buttons", []):
            if b.get("url") and "urlpath=" in b["url"]:
                b["url"] = re.sub(r"urlpath=([^/]*/tree)/.*$", rf"urlpath=\1/{NOTEBOOK_FOLDER}/{name}.ipynb", b["url"])


def _remove_solutions(app, doctree, docname):
    """Student build: drop every sphinx-exercise solution (gated or not) from the page.

    sphinx-exercise's own ``hide_solutions`` drops ``solution-start`` but leaves
    ``solution-end`` behind, which the HTML writer cannot render (1.2.1), so the
    student build removes the merged solution nodes here instead.
    """
    if not student_mode():
        return
    try:
        from sphinx_exercise.nodes import solution_end_node, solution_node, solution_start_node
    except ImportError:  # pragma: no cover - sphinx_exercise is a pinned dependency
        return
    for cls in (solution_node, solution_start_node, solution_end_node):
        for node in list(doctree.findall(cls)):
            node.parent.remove(node)


def output_alt_texts(notebook: dict) -> dict[str, str]:
    """``{sha256 of an image output's bytes: its alt text}`` from an executed notebook's JSON.

    The hash is computed the way myst-nb names the image file it writes
    (``myst_nb.core.render.NbElementRenderer.render_image``).
    """
    out = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            for mime, meta in (output.get("metadata") or {}).items():
                alt = meta.get("alt") if isinstance(meta, dict) else None
                content = data.get(mime)
                if not alt or content is None:
                    continue
                content = "".join(content) if isinstance(content, list) else content
                if mime in BINARY_IMAGES:
                    raw = base64.b64decode(content)
                else:
                    raw = os.linesep.join(content.splitlines()).encode("utf-8")
                out[hashlib.sha256(raw).hexdigest()] = " ".join(str(alt).split())
    return out


def _alt_from_output_metadata(app, doctree):
    """Give each image output the ``alt`` its output metadata holds (see the module docstring)."""
    config = getattr(app.env, "mystnb_config", None)
    folder = getattr(config, "output_folder", None)
    if not folder:
        return
    executed = Path(folder) / f"{app.env.docname}.ipynb"
    if not executed.is_file():
        return
    alts = output_alt_texts(json.loads(executed.read_text(encoding="utf-8")))
    if not alts:
        return
    for node in doctree.findall(nodes.image):
        m = HASHED_IMAGE.search(node.get("uri", ""))
        if m and m.group(1) in alts and not node.get("alt"):
            node["alt"] = alts[m.group(1)]


def _drop_fontawesome_js(app, config):
    """Override the theme's ``static/webpack-macros.html`` without ``fontawesome.js``.

    pydata-sphinx-theme loads a 1.5 MB ``fontawesome.js`` (SVG icons drawn by
    JavaScript) on every page, although its stylesheet already ships the same
    icons as a web font: without the script the icons still show, and every page
    is 1.5 MB lighter.  The override is generated from the installed theme's own
    file at each build, so it follows the pinned theme version.
    """
    try:
        import pydata_sphinx_theme
    except ImportError:  # another theme: nothing to do
        return
    src = Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / "static" / "webpack-macros.html"
    if not src.is_file():
        return
    lines = src.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if "scripts/fontawesome.js" not in ln]
    if len(kept) == len(lines):
        return
    out = Path(app.doctreedir).parent / "_book_templates"
    (out / "static").mkdir(parents=True, exist_ok=True)
    target = out / "static" / "webpack-macros.html"
    text = "".join(kept)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)
    config.templates_path = [str(out)] + list(config.templates_path or [])


def zoom_class(natural_width: int) -> str | None:
    """The ``book-min-<N>`` class of an image ``natural_width`` px wide, or None when it fits a phone.

    Examples
    --------
    >>> zoom_class(684), zoom_class(575), zoom_class(399)
    ('book-min-600', 'book-min-550', None)
    """
    if natural_width < ZOOM_MIN_NATURAL_PX:
        return None
    n = min(int(natural_width), ZOOM_MIN_PX) // ZOOM_STEP_PX * ZOOM_STEP_PX
    return f"book-min-{n}"


def _zoomable_figures(app, doctree, docname):
    """Wrap each wide image in a link to its file (a tap opens it), classed for book-phone.css."""
    if app.builder.format != "html":
        return
    from sphinx.util.images import get_image_size
    from sphinx.util.osutil import relative_uri

    images = app.env.images
    imgdir = relative_uri(app.builder.get_target_uri(docname), "_images")
    for node in list(doctree.findall(nodes.image)):
        uri = node.get("uri", "")
        key = uri if uri in images else next((c for c in (node.get("candidates") or {}).values() if c in images), None)
        if isinstance(node.parent, nodes.reference) or key is None:
            continue
        size = get_image_size(os.path.join(app.srcdir, key))
        cls = zoom_class(size[0]) if size else None
        if cls is None:
            continue
        ref = nodes.reference("", "", internal=True, refuri=f"{imgdir}/{images[key][1]}",
                              classes=["book-zoom", cls])
        node.replace_self(ref)
        ref.append(node)


def has_math(doctree) -> bool:
    """True when the page itself holds math (inline or display)."""
    return doctree is not None and any(True for _ in doctree.findall(lambda n: isinstance(n, (nodes.math, nodes.math_block))))


def _is_mathjax(js) -> bool:
    attrs = getattr(js, "attributes", None) or {}
    return "mathjax" in str(js).lower() or (attrs.get("body") or "").lstrip().startswith("window.MathJax")


def _page_context(app, pagename, templatename, context, doctree):
    _launch_to_student_notebook(pagename, context)
    body = context.get("body") or ""
    if PLOTLY_MARKER in body:
        # plotly.js is fetched after the page's load event (then drawn from the browser's
        # cache on the next page), and the queued figures are drawn (helpers.book.notebook.deferred_plot)
        url = context["pathto"](f"_static/{PLOTLY_JS}", 1)
        app.add_js_file(None, body=PLOTLY_LOADER.replace("PLOTLY_URL", json.dumps(url)), priority=400)
    # Sphinx adds MathJax to a page when a page in its toctree has math (the index lists
    # chapter 2, so it loaded 1.2 MB of MathJax for nothing): keep it only where the page has math
    scripts = context.get("script_files")
    if scripts and doctree is not None and not has_math(doctree):
        scripts[:] = [js for js in scripts if not _is_mathjax(js)]
    # drop inline scripts whose body appears twice (THEBE_JS_URL), and the ipywidgets
    # state myst-nb embeds: widget views are not rendered on the static site (the still
    # PNG is), so the state is dead weight (it holds every captured image again)
    scripts = context.get("script_files")
    if scripts:
        seen, kept = set(), []
        for js in scripts:
            attrs = getattr(js, "attributes", None) or {}
            if attrs.get("type") == WIDGET_STATE:
                continue
            body_text = attrs.get("body")
            key = ("body", body_text) if body_text else ("file", str(js))
            if key in seen:
                continue
            seen.add(key)
            kept.append(js)
        scripts[:] = kept


def _build_finished(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    if student_mode():
        # the executed notebooks (myst-nb) and the pickled doctrees still hold every solution
        for folder in (Path(app.outdir).parent / "jupyter_execute", Path(app.doctreedir)):
            shutil.rmtree(folder, ignore_errors=True)
    dest = Path(app.outdir) / "_static" / PLOTLY_JS
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = plotly_js_source()
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)


def _add_static(app):
    """Serve ``book/_ext/static`` (book-phone.css) with the theme's static files."""
    app.config.html_static_path = list(app.config.html_static_path or []) + [str(STATIC)]


def setup(app):
    app.connect("builder-inited", _add_static)
    app.add_css_file(PHONE_CSS)
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("doctree-read", _alt_from_output_metadata)
    app.connect("doctree-resolved", _remove_solutions)
    app.connect("doctree-resolved", _zoomable_figures)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
