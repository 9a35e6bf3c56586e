"""Set-up shared by every chapter: plotly, matplotlib and widget display for the book.

Importing this module (the first hidden cell of every chapter does) makes three
things true:

* plotly figures display through the ``"book"`` renderer: a bundle with the
  plotly JSON (JupyterLab draws it live) and a ``text/html`` ``<div>`` plus its
  init script **without** plotly.js.  The book's Sphinx extension
  (``book/_ext/book_offline.py``) serves the pinned ``plotly.min.js`` from the
  built site and adds it only to the pages that contain such a ``<div>``, so the
  published pages need no network and no CDN.
* matplotlib draws grey-scale CT images with readable defaults.
* :func:`show_widget` displays an ipywidgets viewer together with a still PNG:
  JupyterLab (or Binder) shows the live widget, while the static site shows the
  PNG (``nb_mime_priority_overrides`` in ``_config.yml`` removes the widget
  view from the HTML build, because a widget cannot recompute without a kernel).
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

__all__ = ["BookRenderer", "setup", "show_widget", "figure_png", "RENDERER_NAME"]

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

        def to_mimebundle(self, fig_dict):
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
            bundle["text/html"] = html
            return bundle

    return BookRenderer


def __getattr__(name):  # lazy: importing plotly costs ~0.3 s
    if name == "BookRenderer":
        return _plotly_renderer_class()
    raise AttributeError(name)


def setup(*, plotly: bool = True, matplotlib: bool = True) -> None:
    """Register the book's plotly renderer as default and set matplotlib defaults.

    Parameters
    ----------
    plotly : bool, default True
        Register the ``"book"`` plotly renderer and make it the default.
    matplotlib : bool, default True
        Apply :data:`MPL_DEFAULTS` to ``matplotlib.rcParams``.

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

        mpl.rcParams.update(MPL_DEFAULTS)


def figure_png(fig, *, dpi: int | None = None, close: bool = True) -> bytes:
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


def widget_bundle(widget, still) -> dict[str, Any]:
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


def show_widget(widget, still) -> None:
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

    Returns
    -------
    None
    """
    from IPython.display import display

    display(widget_bundle(widget, still), raw=True)


def is_plotly_div(html: str) -> bool:
    """True when an HTML fragment holds a plotly figure ``<div>``.

    Examples
    --------
    >>> is_plotly_div('<div class="plotly-graph-div" id="x"></div>')
    True
    """
    return "plotly-graph-div" in html


def _json_default(o):  # pragma: no cover - used by json.dumps in chapters
    return str(o)


def dumps(obj: Any) -> str:
    """Pretty JSON text of a small result dict (numbers rounded by the caller).

    Examples
    --------
    >>> print(dumps({"a": 1}))
    {
      "a": 1
    }
    """
    return json.dumps(obj, indent=2, default=_json_default)


setup()
