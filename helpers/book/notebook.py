"""Set-up shared by every chapter: plotly, matplotlib and widget display for the book.

The first hidden cell of every chapter calls :func:`setup`, which makes three
things true (importing this module changes nothing):

* plotly figures display through the ``"book"`` renderer: a bundle with the
  plotly JSON (JupyterLab draws it live) and a ``text/html`` ``<div>`` plus its
  init script **without** plotly.js.  The book's Sphinx extension
  (``book/_ext/book_offline.py``) serves the pinned ``plotly.min.js`` from the
  built site and adds it only to the pages that contain such a ``<div>``, so the
  published pages need no network and no CDN.
* matplotlib draws grey-scale CT images with readable defaults.
* warnings show as one wrapped ``Category: message`` paragraph.

:func:`show_widget` displays an ipywidgets viewer together with a still PNG:
JupyterLab (or Binder) shows the live widget, while the static site shows the
PNG (``nb_mime_priority_overrides`` in ``_config.yml`` removes the widget view
from the HTML build, because a widget cannot recompute without a kernel).
"""

from __future__ import annotations

import base64
import io
import os
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike
    from pydicom import Dataset

    from ..volume import Volume

__all__ = [  # noqa: F822 (BookRenderer comes from __getattr__)
    "BookRenderer", "setup", "show_widget", "show_data_source", "figure_png", "widget_bundle", "header_table",
    "scratch_folder", "remove_scratch", "add_second_series", "sample_truth", "window_level_viewer", "RENDERER_NAME",
]

RENDERER_NAME = "book"

#: matplotlib settings used by every chapter (figure size in inches, dpi).
MPL_DEFAULTS: dict[str, Any] = {
    "figure.figsize": (8.0, 4.0),
    "figure.dpi": 90,
    "savefig.bbox": "tight",
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    "axes.titlesize": "medium",
    "font.size": 10,
}


def _plotly_renderer_class():
    from plotly.io._base_renderers import PlotlyRenderer

    class BookRenderer(PlotlyRenderer):
        """Plotly JSON for live kernels + a plotly.js-free HTML ``<div>`` for the book."""

        def to_mimebundle(self, fig_dict: dict) -> dict:
            import plotly.io as pio

            bundle = super().to_mimebundle(fig_dict)
            fig = bundle["application/vnd.plotly.v1+json"]
            html = pio.to_html(
                fig,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                config={"responsive": True, "displaylogo": False, **fig.get("config", {})},
                validate=False,
            )
            bundle["text/html"] = deferred_plot(html)
            return bundle

    return BookRenderer


#: Defines ``window.bookPlot``: it draws at once when plotly.js is there (a notebook), and
#: otherwise queues the figure for the book's loader (``book/_ext/book_offline.py``), which
#: fetches plotly.js after the page has loaded and then draws the queue.
DEFERRED_PLOT_JS = ("window.bookPlot = window.bookPlot || function () { if (window.Plotly) "
                    "{ return Plotly.newPlot.apply(Plotly, arguments); } "
                    "(window.bookPlotQueue = window.bookPlotQueue || []).push(arguments); };")


def deferred_plot(html: str) -> str:
    """Plotly's figure HTML with ``Plotly.newPlot(...)`` turned into ``window.bookPlot(...)``.

    The page's text then shows before plotly.js (4.8 MB) is fetched and parsed and before
    any WebGL is drawn: chapter 6's two meshes held its ``load`` event for 5 s.

    Examples
    --------
    >>> out = deferred_plot('<div id="a" class="plotly-graph-div"></div><script>Plotly.newPlot("a", [], {})</script>')
    >>> out.count("window.bookPlot("), out.count("Plotly.newPlot(")
    (1, 0)
    """
    if html.count("Plotly.newPlot(") != 1:
        return html
    return f"<script>{DEFERRED_PLOT_JS}</script>" + html.replace("Plotly.newPlot(", "window.bookPlot(")


def __getattr__(name: str) -> Any:  # lazy: importing plotly costs ~0.3 s
    if name == "BookRenderer":
        return _plotly_renderer_class()
    raise AttributeError(name)


#: Width (characters) of warnings shown in a chapter.
WARNING_WIDTH = 78


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """``SeriesWarning: message``, wrapped to fit the page (no file name and source line)."""
    return textwrap.fill(f"{category.__name__}: {message}", width=WARNING_WIDTH, subsequent_indent="    ") + "\n"


def setup(*, plotly: bool = True, matplotlib: bool = True) -> None:
    """Register the book's plotly renderer as default and set matplotlib defaults.

    Parameters
    ----------
    plotly : bool, default True
        Register the ``"book"`` plotly renderer and make it the default.
    matplotlib : bool, default True
        In a kernel, switch to the inline backend (``%matplotlib inline``, so a
        returned :class:`~matplotlib.figure.Figure` displays as a PNG) and show
        warnings as one wrapped ``Category: message`` paragraph; apply
        :data:`MPL_DEFAULTS` to ``matplotlib.rcParams``.

    Examples
    --------
    >>> setup(matplotlib=False)
    >>> import plotly.io as pio
    >>> pio.renderers.default
    'book'
    """
    if plotly:
        import plotly.io as pio

        pio.renderers[RENDERER_NAME] = _plotly_renderer_class()()
        pio.renderers.default = RENDERER_NAME
    if matplotlib:
        import matplotlib as mpl

        try:  # in a kernel: the inline backend, so a returned Figure displays as PNG
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:  # pragma: no cover - IPython ships with the kernel
            shell = None
        if shell is not None and hasattr(shell, "kernel"):
            shell.run_line_magic("matplotlib", "inline")
            warnings.formatwarning = _format_warning
            from ..display import register_alt_text

            register_alt_text(shell)  # each figure's PNG carries its alt text (book/_ext writes it in <img>)
        mpl.rcParams.update(MPL_DEFAULTS)  # type: ignore[arg-type]  # matplotlib's stubs list the keys as literals


def figure_png(fig: Figure, *, dpi: int | None = None, close: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards so it is not shown twice).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    dpi : int, optional
        Resolution; default: the figure's own.
    close : bool, default True
        Close the figure after rendering.

    Returns
    -------
    bytes
        The PNG file content.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> figure_png(plt.figure(figsize=(1, 1)))[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def widget_bundle(widget: Any, still: Figure | bytes) -> dict[str, Any]:
    """The display bundle :func:`show_widget` emits (widget view + still PNG + text).

    Parameters
    ----------
    widget : ipywidgets.Widget
        The live viewer.
    still : matplotlib.figure.Figure or bytes
        What the static page shows instead: a figure or PNG bytes.

    Returns
    -------
    dict
        Mime type -> data, with ``application/vnd.jupyter.widget-view+json``,
        ``image/png`` (base64 text) and ``text/plain``.

    Examples
    --------
    >>> import ipywidgets as w
    >>> b = widget_bundle(w.IntSlider(), b"\\x89PNG fake")
    >>> sorted(b)
    ['application/vnd.jupyter.widget-view+json', 'image/png', 'text/plain']
    """
    png = still if isinstance(still, (bytes, bytearray)) else figure_png(still)
    bundle = dict(widget._repr_mimebundle_() or {})
    bundle["image/png"] = base64.b64encode(png).decode("ascii")
    bundle["text/plain"] = (
        "Interactive viewer: run this notebook in Jupyter (or Binder) to use it; "
        "the static page shows a still image."
    )
    return bundle


def show_widget(widget: Any, still: Figure | bytes, *, alt: str | None = None) -> None:
    """Display a live ipywidgets viewer with a still image for the static book.

    In JupyterLab (or on Binder) the widget view wins and the viewer is live.
    On the published site the HTML build drops the widget view
    (``nb_mime_priority_overrides`` in ``_config.yml``) and shows the PNG,
    because a static page has no kernel to recompute the image.

    Parameters
    ----------
    widget : ipywidgets.Widget
        The live viewer (e.g. a slider and an output area).
    still : matplotlib.figure.Figure or bytes
        The still image shown on the static site.
    alt : str, optional, keyword-only
        Alt text of the still image; default the widget's (``helpers.display.set_alt_text``)
        or the figure's (``helpers.display.alt_text``).

    Returns
    -------
    None
    """
    from IPython.display import display

    from ..display import ALT_TEXT_ATTR
    from ..display import alt_text as figure_alt

    if alt is None:
        alt = getattr(widget, ALT_TEXT_ATTR, None)
    if alt is None and not isinstance(still, (bytes, bytearray)):
        alt = figure_alt(still)
    metadata = {"image/png": {"alt": alt}} if alt else None
    display(widget_bundle(widget, still), raw=True, metadata=metadata)


def show_data_source(path: str | os.PathLike) -> None:
    """Show the citation of the public dataset a chapter reads; nothing for the synthetic sample.

    Every chapter calls this with the folder it reads, so a resident who runs the
    book on a fetched case (``DATASET=NAME``) sees whose data it is, with its DOI
    and licence, at the top of each chapter.

    Parameters
    ----------
    path : path
        The folder the chapter reads (``helpers.sample.default_dicom_dir()``).

    Returns
    -------
    None
        Displays ``Data: <citation>`` when ``path`` is inside a dataset fetched by
        :mod:`helpers.data`; nothing for the sample or a folder of your own
        (:func:`helpers.data.citation_for_path` gives the text itself).

    Examples
    --------
    >>> show_data_source("/nonexistent/folder")  # not a fetched dataset: shows nothing
    """
    import html

    from ..data import citation_for_path

    text = citation_for_path(path)
    if text:
        from IPython.display import display

        para = f'<p class="data-citation" style="font-size: 0.85em"><strong>Data:</strong> {html.escape(text)}</p>'
        display({"text/html": para,
                 "text/plain": f"Data: {text}"}, raw=True)


#: Header tags shown in chapter 1, in reading order (keyword, what it tells you).
HEADER_TAGS: tuple[tuple[str, str], ...] = (
    ("Modality", "CT, MR, PT...: the loader refuses non-CT unless asked"),
    ("SeriesDescription", "what the technologist called the series"),
    ("SeriesInstanceUID", "which series the file belongs to (one folder may hold several)"),
    ("InstanceNumber", "the image's number: an order of acquisition, not a position"),
    ("ImagePositionPatient", "x, y, z (mm) of the first pixel's centre: the slice's real position"),
    ("ImageOrientationPatient", "directions of rows and columns: the slice normal follows from them"),
    ("PixelSpacing", "row, column spacing (mm) inside the slice"),
    ("SliceThickness", "how thick the reconstructed slice is (not the step between slices)"),
    ("Rows", "image height in pixels"),
    ("Columns", "image width in pixels"),
    ("BitsStored", "bits actually used per pixel"),
    ("PixelRepresentation", "0 = unsigned, 1 = signed stored values"),
    ("RescaleSlope", "HU = stored value x slope + intercept"),
    ("RescaleIntercept", "usually -1024 (or -1000, 0, -8192...)"),
    ("PixelPaddingValue", "the stored value used outside the scanned field of view"),
    ("WindowCenter", "the window level the scanner suggests"),
    ("WindowWidth", "the window width the scanner suggests"),
    ("ConvolutionKernel", "reconstruction kernel: soft (B30f) or sharp (B70f)"),
)

#: Never shown by :func:`header_table`, whatever is asked.
PATIENT_TAGS = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "OtherPatientIDs",
    "OtherPatientNames", "AccessionNumber", "InstitutionName", "ReferringPhysicianName",
    "OperatorsName", "PerformingPhysicianName",
})


class HeaderTable:
    """A small tag table that prints as text and as HTML in a notebook."""

    def __init__(self, rows: list[tuple[str, str, str, str]]):
        self.rows = rows

    def __repr__(self) -> str:
        w = [max(len(r[i]) for r in self.rows) for i in range(3)] if self.rows else [0, 0, 0]
        return "\n".join(f"{a.ljust(w[0])}  {b.ljust(w[1])}  {c.ljust(w[2])}  {d}" for a, b, c, d in self.rows)

    def _repr_html_(self) -> str:
        from html import escape

        td = 'style="padding:2px 8px;vertical-align:top;{}"'
        styles = ("white-space:nowrap", "white-space:nowrap", "overflow-wrap:anywhere", "")
        body = "".join(
            "<tr>" + "".join(f"<td {td.format(st)}>{escape(x)}</td>" for x, st in zip(r, styles)) + "</tr>"
            for r in self.rows
        )
        head = "".join(f'<th style="padding:2px 8px;text-align:left">{h}</th>'
                       for h in ("tag", "keyword", "value", "what it tells you"))
        return ('<table style="width:100%;font-size:0.85em;border-collapse:collapse;table-layout:auto">'
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def header_table(dataset: Dataset, tags: Sequence[tuple[str, str]] = HEADER_TAGS, *,
                 max_chars: int = 28) -> HeaderTable:
    """The header tags that matter for CT, never the patient-identifying ones.

    Parameters
    ----------
    dataset : pydicom.Dataset
        One file's header (``pydicom.dcmread(path, stop_before_pixels=True)``).
    tags : sequence of (keyword, explanation)
        Default :data:`HEADER_TAGS`.  Keywords in :data:`PATIENT_TAGS` are skipped.
    max_chars : int, default 28
        Longer values (UIDs) are shortened with an ellipsis.

    Returns
    -------
    HeaderTable
        Rows of ``(tag, keyword, value, explanation)``; a missing tag shows "(absent)".

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.Modality = "CT"; ds.PatientName = "Doe^Jane"
    >>> t = header_table(ds, [("Modality", "m"), ("PatientName", "p")])
    >>> [r[1] for r in t.rows]
    ['Modality']
    """
    from pydicom.datadict import tag_for_keyword

    rows = []
    for keyword, why in tags:
        if keyword in PATIENT_TAGS:
            continue
        tag = tag_for_keyword(keyword)
        tag_text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else ""
        value = dataset.get(keyword, None)
        if value is None:
            text = "(absent)"
        elif hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
            text = "[" + ", ".join(f"{float(v):.6g}" if isinstance(v, (int, float)) else str(v) for v in value) + "]"
        else:
            text = str(value)
        if len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        rows.append((tag_text, keyword, text, why))
    return HeaderTable(rows)


#: Folders made by :func:`scratch_folder` in this process, removed when it exits.
_SCRATCH: list = []


def scratch_folder(files: Iterable[str | os.PathLike], *, names: Sequence[str] | None = None,
                   prefix: str = "dicom-book-") -> Path:
    """A new temporary folder with links (copies where links fail) to ``files``.

    Used by the chapters to show what happens to a folder a PACS export or a
    colleague could have made (other file names, a missing slice) without ever
    writing to the source folder.  Every such folder is removed when the Python
    process (the chapter's kernel) exits, or earlier by :func:`remove_scratch`,
    so running the chapters again and again leaves nothing behind.

    Parameters
    ----------
    files : sequence of path
        Source files (left untouched).
    names : sequence of str, optional
        New file names, one per file (default: the original names).
    prefix : str
        Prefix of the temporary folder's name.

    Returns
    -------
    pathlib.Path
        The new folder (in the system's temporary directory).

    Examples
    --------
    >>> empty = scratch_folder([])
    >>> d = scratch_folder([empty], names=["IM1"])
    >>> sorted(p.name for p in d.iterdir())
    ['IM1']
    >>> remove_scratch()
    >>> d.exists()
    False
    """
    import atexit
    import shutil
    import tempfile

    sources = [Path(f) for f in files]
    names = [f.name for f in sources] if names is None else list(names)
    if len(names) != len(sources):
        raise ValueError(f"{len(names)} names for {len(sources)} files")
    out = Path(tempfile.mkdtemp(prefix=prefix))
    if not _SCRATCH:
        atexit.register(remove_scratch)
    _SCRATCH.append(out)
    for f, n in zip(sources, names):
        try:
            os.symlink(f.resolve(), out / n)
        except OSError:
            shutil.copyfile(f, out / n)
    return out


def remove_scratch() -> None:
    """Remove every folder :func:`scratch_folder` made in this process (the links, never their targets)."""
    import shutil

    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def add_second_series(folder: str | os.PathLike, files: Iterable[str | os.PathLike], *,
                      description: str = "second reconstruction") -> list[Path]:
    """Write copies of ``files`` into ``folder`` as another series (new UIDs, numbers 1..n).

    This is what a study folder with two reconstructions of the same scan looks
    like (a soft and a sharp kernel, or a thin and a thick series): the same
    positions and Instance Numbers, another (0020,000E) Series Instance UID.

    Parameters
    ----------
    folder : path
        A scratch folder (never a source folder).
    files : sequence of path
        DICOM files to copy.
    description : str
        (0008,103E) Series Description of the copies.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from pathlib import Path

    import pydicom
    from pydicom.uid import generate_uid

    folder = Path(folder)
    series_uid = generate_uid(entropy_srcs=[str(folder), description])
    written = []
    for number, f in enumerate(files, start=1):
        ds = pydicom.dcmread(f)
        uid = generate_uid(entropy_srcs=[series_uid, str(number)])
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 99
        ds.InstanceNumber = number
        out = folder / f"second_{number:04d}.dcm"
        ds.save_as(out)
        written.append(out)
    return written


def sample_truth(dicom_dir: str | os.PathLike, volume: Volume) -> dict[str, Any] | None:
    """Ground truth for the chapters when ``dicom_dir`` is the bundled sample, else None.

    Parameters
    ----------
    dicom_dir : path
        The folder the chapter loaded (``default_dicom_dir()``).
    volume : Volume
        The volume loaded from it (the labels must have its shape).

    Returns
    -------
    dict or None
        ``lungs`` (uint8, 0 / 1 right / 2 left), ``tumour`` and ``nodule`` (bool
        masks), ``tumour_index`` ``(k, j, i)`` of the tumour's centre (int), and
        ``info`` (the sample's ``labels.json`` entries); None when the folder has
        no ``labels.npz`` beside it (your own data) or the shapes differ.
    """
    from pathlib import Path

    import numpy as np

    sample_dir = Path(dicom_dir).parent
    if not (sample_dir / "labels.npz").is_file():
        return None
    from ..sample import load_labels

    lab = load_labels(sample_dir)
    if lab["lungs"].shape != tuple(volume.shape):
        return None
    legend = lab.get("legend", {})
    tumour = lab["tissue"] == legend["tumour"] if "tumour" in legend else np.zeros(volume.shape, bool)
    nodule = lab["tissue"] == legend["nodule"] if "nodule" in legend else np.zeros(volume.shape, bool)
    if tumour.any():
        idx = tuple(int(round(float(c))) for c in np.argwhere(tumour).mean(axis=0))
    else:
        idx = tuple(n // 2 for n in volume.shape)
    return {"lungs": lab["lungs"], "tumour": tumour, "nodule": nodule, "tumour_index": idx, "info": lab}


def window_level_viewer(image_hu: ArrayLike, *, level: float = -600.0, width: float = 1500.0,
                        level_range: tuple[int, int] = (-1200, 1200), width_range: tuple[int, int] = (50, 4000),
                        size_px: int = 384) -> tuple[Any, bytes]:
    """A live window/level viewer of one slice: two sliders and the image.

    The image is an ``ipywidgets.Image`` whose PNG is replaced when a slider
    moves (no Output widget, no matplotlib), so executing the cell in CI sends
    no output-capture traffic.

    Parameters
    ----------
    image_hu : ndarray, shape (y, x)
        One slice in HU.
    level, width : float
        Initial window in HU.
    level_range, width_range : (int, int)
        Slider ranges in HU.
    size_px : int
        Displayed width of the image in pixels.

    Returns
    -------
    (ipywidgets.VBox, bytes)
        The viewer and the PNG it shows first: pass both to :func:`show_widget`.

    Examples
    --------
    >>> import numpy as np
    >>> box, png = window_level_viewer(np.zeros((4, 4)))
    >>> png[:4], len(box.children)
    (b'\x89PNG', 3)
    """
    import ipywidgets as widgets
    import numpy as np

    from ..display import png_bytes
    from ..intensity import window

    hu = np.asarray(image_hu)

    def png(lv: float, wd: float) -> bytes:
        return png_bytes(window(hu, (float(lv), float(wd)), out="uint8"))

    lev = widgets.IntSlider(value=int(level), min=level_range[0], max=level_range[1], step=10,
                            description="level (HU)")
    wid = widgets.IntSlider(value=int(width), min=width_range[0], max=width_range[1], step=50,
                            description="width (HU)")
    from ..display import image_layout

    first = png(level, width)
    img = widgets.Image(value=first, format="png", width=size_px, layout=image_layout(first, width_px=size_px))

    def update(*_):
        img.value = png(lev.value, wid.value)

    lev.observe(update, "value")
    wid.observe(update, "value")
    box = widgets.VBox([lev, wid, img])
    box.alt_text = (f"Still image of the slice at window level {level:g} HU, width {width:g} HU; "
                    "in Jupyter two sliders change the level and the width.")
    return box, first
