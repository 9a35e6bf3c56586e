"""Looking at a CT volume: montages, orthogonal views, overlays and slice viewers.

Every view here takes its geometry from the :class:`~helpers.volume.Volume`:

* pixels are drawn with their real shape (``aspect = row spacing / column
  spacing``), so a coronal reslice of 2.5 mm slices is not squashed;
* images are flipped into the radiological convention (patient's right on the
  image's left, anterior up on axial, superior up on coronal and sagittal) using
  ``volume.direction``, and the edges are labelled R/L, A/P, S/I;
* tiles are labelled with the slice index *and* its position in mm.

Matplotlib views return a :class:`matplotlib.figure.Figure` that is **not**
registered with pyplot (it is shown once when it is the last expression of a
notebook cell and never leaks); :func:`slice_viewer` returns a plotly figure
whose slider works in a static web page; :func:`widget_viewer` returns an
ipywidgets viewer for a live kernel.
"""

from __future__ import annotations

import base64
import io
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

import numpy as np

from .intensity import WINDOWS, WindowSpec, window_bounds
from .intensity import window as apply_window
from .volume import Volume, as_array, as_volume

if TYPE_CHECKING:
    import ipywidgets
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patheffects import AbstractPathEffect

_T = TypeVar("_T")

__all__ = [
    "PLANES",
    "axis_letters",
    "plane_image",
    "montage",
    "orthogonal_views",
    "overlay",
    "slice_viewer",
    "widget_viewer",
    "widget_with_still",
    "still_png",
    "png_bytes",
    "set_alt_text",
    "alt_text",
    "register_alt_text",
    "table",
]

#: For each plane: the array axis it cuts, and for the two image axes (rows,
#: columns) the LPS letter that should lie at the bottom / right of the image
#: (radiological convention).
PLANES: dict[str, dict[str, Any]] = {
    "axial": {"axis": 0, "rows": (1, "P"), "cols": (2, "L")},
    "coronal": {"axis": 1, "rows": (0, "I"), "cols": (2, "L")},
    "sagittal": {"axis": 2, "rows": (0, "I"), "cols": (1, "P")},
}
_AXIS_PLANE = {0: "axial", 1: "coronal", 2: "sagittal"}
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS axis -> (negative, positive) letter

#: Colours for label values 1, 2, 3... in overlays (colour-blind-safe Okabe-Ito).
LABEL_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")
_COLOR_NAMES = dict(zip(LABEL_COLORS, ("orange", "sky blue", "green", "yellow", "blue", "vermilion", "pink", "grey")))


# ---------------------------------------------------------------- small helpers
#: Attribute of a matplotlib figure (or a widget) that holds its alt text.
ALT_TEXT_ATTR = "alt_text"

#: Panels named one by one in an alt text made from a figure's titles.
ALT_MAX_PANELS = 6

#: Width (inches) a figure is drawn at so it shows 1:1 in the book's 688 px column
#: at ``figure.dpi`` 90 (:data:`helpers.book.notebook.MPL_DEFAULTS`): text in points
#: then renders at 1.25 px per point, a 9 pt label at about 11 px.
PAGE_WIDTH_IN = 7.6

#: Font sizes (points) of the views below: tile labels, titles, orientation letters.
LABEL_PT = 8.5
TITLE_PT = 9.5
LETTER_PT = 12.0

#: Largest side (CSS px) of the image in :func:`slice_viewer` on a wide page; on a
#: narrower one the figure shrinks with its column.
VIEWER_IMAGE_PX = 420


def set_alt_text(obj: _T, text: str) -> _T:
    """Attach alt text (what the figure shows, for a reader who cannot see it) to a figure.

    The book's set-up (:func:`register_alt_text`, called by
    ``helpers.book.notebook``) sends it with the figure's PNG as output metadata, and the
    book's Sphinx extension writes it into the page's ``<img alt="...">``.

    Parameters
    ----------
    obj : matplotlib.figure.Figure or ipywidgets.Widget
        The figure (or a widget whose still image :func:`helpers.book.notebook.show_widget`
        shows).
    text : str
        One or two sentences: what is drawn and what it shows, with the numbers
        computed from the data.  Whitespace is collapsed.

    Returns
    -------
    obj
        The same object, so ``return set_alt_text(fig, ...)`` reads naturally.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> alt_text(set_alt_text(Figure(), "A  grey   square."))
    'A grey square.'
    """
    setattr(obj, ALT_TEXT_ATTR, " ".join(str(text).split()))
    return obj


def alt_text(fig: Figure) -> str:
    """The alt text of a matplotlib figure: the one set, or one made from its titles and labels.

    Parameters
    ----------
    fig : matplotlib.figure.Figure

    Returns
    -------
    str
        The text given to :func:`set_alt_text`; otherwise a description built from
        the figure's own words (its title, each panel's title and axis labels), so
        even a figure drawn by hand in a chapter never gets its file name as alt text.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> fig = Figure(); ax = fig.subplots(); _ = ax.set_title("HU histogram")
    >>> _ = ax.set_xlabel("HU"); _ = ax.set_ylabel("voxels")
    >>> alt_text(fig)
    'Figure: HU histogram (x axis: HU; y axis: voxels).'
    """
    given = getattr(fig, ALT_TEXT_ATTR, None)
    if given:
        return given
    parts = []
    sup = " ".join(fig.get_suptitle().split())
    if sup:
        parts.append(sup + ".")
    panels = []
    for ax in fig.axes:
        title = " ".join(" ".join(ax.get_title(loc) for loc in ("left", "center", "right")).split())
        labels = (("x", ax.get_xlabel()), ("y", ax.get_ylabel()))
        axes_words = [f"{n} axis: {' '.join(lab.split())}" for n, lab in labels
                      if lab.strip()]
        words = title + (f" ({'; '.join(axes_words)})" if axes_words else "")
        if words.strip():
            panels.append(words.strip())
    if len(panels) > ALT_MAX_PANELS:  # a 6 x 6 grid: name the first few and the last
        panels = panels[:ALT_MAX_PANELS - 2] + ["...", panels[-1]]
    if len(panels) == 1:
        parts.append(panels[0] + ".")
    elif panels:
        parts.append(f"{len(fig.axes)} panels: " + "; ".join(panels) + ".")
    if not parts:
        kinds = "images" if any(ax.images for ax in fig.axes) else "plots"
        parts.append(f"{len(fig.axes)} panel(s) of {kinds}, without titles.")
    return "Figure: " + " ".join(parts)


def register_alt_text(shell: Any = None) -> bool:
    """Send every matplotlib figure's alt text with its PNG (output metadata ``alt``).

    Wraps the PNG formatter IPython's inline backend registered for
    :class:`matplotlib.figure.Figure` so it returns ``(png, {"alt": alt_text(fig)})``.
    Jupyter keeps that as the output's metadata; the book's Sphinx extension
    (``book/_ext/book_offline.py``) turns it into the ``alt`` of the page's
    ``<img>`` (myst-nb itself only reads ``width`` and ``height`` there).

    Parameters
    ----------
    shell : IPython.core.interactiveshell.InteractiveShell, optional
        Default: the running shell.

    Returns
    -------
    bool
        False outside IPython or when no PNG formatter is registered for figures.

    Examples
    --------
    >>> register_alt_text()  # outside IPython: nothing to do
    False
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython ships with the kernel
            return False
        shell = get_ipython()
    if shell is None:
        return False
    from matplotlib.figure import Figure

    png = shell.display_formatter.formatters["image/png"]
    try:
        current = png.lookup_by_type(Figure)
    except KeyError:
        return False
    if getattr(current, "_with_alt_text", False):
        return True

    def png_with_alt(fig: Figure, _png: Any = current) -> Any:
        data = _png(fig)
        return (data, {"alt": alt_text(fig)}) if data is not None else data

    png_with_alt._with_alt_text = True  # type: ignore[attr-defined]  # a mark read back above
    png.for_type(Figure, png_with_alt)
    return True


def png_bytes(image_u8: np.ndarray, *, optimize: bool = False) -> bytes:
    """A PNG file of a 2-D uint8 image (grey) or ``(h, w, 3|4)`` uint8 image (colour).

    The one PNG encoder of the package (the still images, the slice viewer's
    frames, the window/level widget).

    Parameters
    ----------
    image_u8 : ndarray of uint8
    optimize : bool, default False, keyword-only
        Let Pillow search for a smaller encoding (slower).

    Returns
    -------
    bytes

    Examples
    --------
    >>> png_bytes(np.zeros((2, 3), np.uint8))[:4], png_size(png_bytes(np.zeros((2, 3), np.uint8)))
    (b'\\x89PNG', (3, 2))
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image_u8)).save(buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def _display_unit(arr: np.ndarray, window: WindowSpec | None) -> tuple[np.ndarray, str]:
    """Float32 [0, 1] image and a short description of the window used."""
    if window is None:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        hi = hi if hi > lo else lo + 1.0
        return np.clip((arr.astype(np.float32) - lo) / (hi - lo), 0, 1), f"min-max ({lo:g}..{hi:g})"
    low, high = window_bounds(window)
    name = window if isinstance(window, str) else "custom"
    level, width = (low + high) / 2, high - low
    return apply_window(arr, window), f"{name} window (L {level:g}, W {width:g} HU)"


def axis_letters(direction: Any) -> list[tuple[str, str]]:
    """Orientation letters of the three array axes from a direction matrix.

    Parameters
    ----------
    direction : array_like, shape (3, 3)
        Columns are the LPS unit vectors of array axes ``z``, ``y``, ``x``
        (``Volume.direction``).

    Returns
    -------
    list of 3 (str, str)
        For each array axis, the letter at its low-index end and at its
        high-index end, from the dominant LPS component.

    Examples
    --------
    >>> import numpy as np
    >>> axis_letters(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))  # default axial, feet first
    [('I', 'S'), ('A', 'P'), ('R', 'L')]
    >>> axis_letters(np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]))  # head-first table order
    [('S', 'I'), ('A', 'P'), ('R', 'L')]
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    out = []
    for a in range(3):
        c = int(np.argmax(np.abs(d[:, a])))
        neg, pos = _LETTERS[c]
        out.append((neg, pos) if d[c, a] > 0 else (pos, neg))
    return out


def plane_image(volume: Volume, plane: str = "axial", index: int | None = None, *,
                array: np.ndarray | None = None) -> dict[str, Any]:
    """One 2-D cut of a volume, flipped to the radiological convention.

    Parameters
    ----------
    volume : Volume
        Supplies geometry (and the data unless ``array`` is given).
    plane : {"axial", "coronal", "sagittal"}
        Which cut (array axis 0, 1 or 2).
    index : int, optional
        Index along that axis; default the middle.
    array : ndarray, optional, keyword-only
        Another array of the same shape to cut (a mask) with the same flips.

    Returns
    -------
    dict
        ``image`` (2-D view), ``index``, ``row_spacing``, ``col_spacing`` (mm),
        ``flip_rows``/``flip_cols`` (bool), ``row_axis``/``col_axis`` (array
        axes), and ``top``, ``bottom``, ``left``, ``right`` orientation letters.

    Raises
    ------
    ValueError
        Unknown plane or index out of range.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((10, 4, 6)), spacing=(2.5, 0.7, 0.7))
    >>> p = plane_image(v, "coronal", 1)
    >>> p["image"].shape, p["row_spacing"], p["top"], p["left"]
    ((10, 6), 2.5, 'S', 'R')
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {list(PLANES)}; got {plane!r}")
    spec = PLANES[plane]
    axis = spec["axis"]
    data = volume.hu if array is None else array
    n = data.shape[axis]
    if index is None:
        index = n // 2
    index = int(index)
    if not 0 <= index < n:
        raise ValueError(f"{plane} index {index} is outside 0..{n - 1} (array axis {axis} has {n} planes)")
    img = np.take(data, index, axis=axis)
    letters = axis_letters(volume.direction)
    (row_axis, want_bottom), (col_axis, want_right) = spec["rows"], spec["cols"]
    flip_rows = letters[row_axis][0] == want_bottom  # the low end holds what should be at the bottom
    flip_cols = letters[col_axis][0] == want_right
    if flip_rows:
        img = img[::-1, :]
    if flip_cols:
        img = img[:, ::-1]
    rl = letters[row_axis][::-1] if flip_rows else letters[row_axis]
    cl = letters[col_axis][::-1] if flip_cols else letters[col_axis]
    return {
        "image": img,
        "index": index,
        "plane": plane,
        "row_axis": row_axis,
        "col_axis": col_axis,
        "row_spacing": volume.spacing[row_axis],
        "col_spacing": volume.spacing[col_axis],
        "flip_rows": flip_rows,
        "flip_cols": flip_cols,
        "top": rl[0],
        "bottom": rl[1],
        "left": cl[0],
        "right": cl[1],
    }


def _orientation_marks(ax: Axes, p: dict[str, Any], *, fontsize: float = LETTER_PT) -> None:
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    style: dict[str, Any] = dict(color="yellow", fontsize=fontsize, fontweight="bold", transform=ax.transAxes,
                                 path_effects=outline)
    ax.text(0.5, 0.99, p["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.01, p["bottom"], ha="center", va="bottom", **style)
    ax.text(0.01, 0.5, p["left"], ha="left", va="center", **style)
    ax.text(0.99, 0.5, p["right"], ha="right", va="center", **style)


def _outline(width: float = 2.5) -> list[AbstractPathEffect]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width, foreground="black")]


def _new_figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _wrap_title(text: str, width_in: float, pt: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``pt`` points."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.55 * pt)))  # an average character is ~0.55 em wide
    return textwrap.fill(text, width=chars, break_on_hyphens=False)


# --------------------------------------------------------------------- montage
def montage(
    volume: Volume | np.ndarray,
    *,
    rows: int | None = 4,
    cols: int = 6,
    window: WindowSpec | None = "lung",
    start: int | None = None,
    stop: int | None = None,
    step: int | None = None,
    ax_size_in: float | None = None,
    label: bool = True,
) -> Figure:
    """A grid of axial slices, evenly spaced, each labelled with index and position.

    Parameters
    ----------
    volume : Volume or ndarray (z, y, x)
        The CT (an array is taken as 1 mm isotropic).
    rows : int or None, default 4, keyword-only
        Grid rows; ``None`` = as many as the chosen slices need.
    cols : int, default 6
        Grid columns.  Any ``rows x cols`` works (the 2017 ``sample_stack``
        hard-coded 6 x 6 and failed on other grids).
    window : str, (level, width) or None, default "lung"
        Display window (see :data:`helpers.intensity.WINDOWS`); ``None`` scales
        each montage to its min..max (for masks).
    start, stop : int, optional
        Slice range ``[start, stop)``; default the whole volume.
    step : int, optional
        Show every ``step``-th slice from ``start``.  Default: ``rows * cols``
        slices evenly spread over the range (first and last included).
    ax_size_in : float, optional
        Width of one tile in inches.  Default: the grid fills the book's column
        (:data:`PAGE_WIDTH_IN`), so the labels show at their size in points.
    label : bool, default True
        Write ``index`` and slice position (mm along the slice normal) on each tile.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; display it by making it the last expression
        of a cell, or ``fig.savefig(path)``.  Its alt text (:func:`alt_text`) says
        which slices, which window and where the patient's right is.

    Raises
    ------
    ValueError
        Bad grid, empty range, or a ``step`` giving more slices than tiles.

    Notes
    -----
    Tiles are drawn with ``aspect = spacing_y / spacing_x`` so non-square
    pixels keep their real shape.  Tiles beyond the chosen slices are blank.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((30, 16, 16), np.int16) - 1000, spacing=(2.5, 0.7, 0.7))
    >>> fig = montage(v, rows=2, cols=5)
    >>> len([ax for ax in fig.axes if ax.images])
    10
    >>> fig = montage(v, rows=None, cols=4, step=10)   # slices 0, 10, 20
    >>> len([ax for ax in fig.axes if ax.images]), len(fig.axes)
    (3, 4)
    """
    vol = as_volume(volume)
    n = vol.shape[0]
    idx = _montage_slices(n, rows=rows, cols=cols, start=start, stop=stop, step=step)
    if rows is None:
        rows = math.ceil(idx.size / cols)

    unit, wdesc = _display_unit(vol.hu[idx], window)
    sy, sx = vol.spacing[1], vol.spacing[2]
    if ax_size_in is None:
        ax_size_in = PAGE_WIDTH_IN / cols
    tile_h = ax_size_in * (vol.shape[1] * sy) / (vol.shape[2] * sx)
    what = f"slices {idx[0]}..{idx[-1]}" + (f" every {step}" if step else "")
    title = _wrap_title(f"{idx.size} of {n} axial slices ({what}); {wdesc}; "
                        "labels: index, position along the slice normal", cols * ax_size_in, TITLE_PT)
    title_in = 0.12 + (title.count("\n") + 1) * TITLE_PT * 1.35 / 72
    fig = _new_figure((cols * ax_size_in, rows * tile_h + title_in))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - title_in / (rows * tile_h + title_in))
    pos = vol.slice_positions
    _montage_tiles(axes.ravel(), unit, idx, pos, axis_letters(vol.direction), aspect=sy / sx, label=label)
    fig.suptitle(title, fontsize=TITLE_PT, y=1 - 0.04 / (rows * tile_h + title_in), va="top")
    return set_alt_text(fig, (
        f"Montage of {idx.size} of the {n} axial slices, {what}, {wdesc}, in a grid of {rows} rows and {cols} "
        f"columns; each tile is labelled with its slice index and its position in mm "
        f"({pos[idx[0]]:+.1f} to {pos[idx[-1]]:+.1f} mm); radiological orientation (the patient's right "
        "on the image's left, anterior up)."))


def _montage_slices(n: int, *, rows: int | None, cols: int, start: int | None, stop: int | None,
                    step: int | None) -> np.ndarray:
    """The slice indices a montage shows: every ``step``-th, or ``rows * cols`` spread evenly; checked."""
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if not (0 <= start < stop <= n):
        raise ValueError(f"slice range start={start}, stop={stop} is empty or outside 0..{n} for {n} slices")
    if cols < 1 or (rows is not None and rows < 1):
        raise ValueError(f"rows and cols must be at least 1; got rows={rows}, cols={cols}")
    if step is None:
        tiles = (rows if rows is not None else math.ceil((stop - start) / cols)) * cols
        count = min(tiles, stop - start)
        return np.unique(np.round(np.linspace(start, stop - 1, count)).astype(int))
    if step < 1:
        raise ValueError(f"step must be a positive number of slices; got {step}")
    idx = np.arange(start, stop, step)
    if rows is not None and idx.size > rows * cols:
        raise ValueError(
            f"step={step} over slices {start}..{stop - 1} gives {idx.size} slices but the grid "
            f"has {rows} x {cols} = {rows * cols} tiles; raise step, pass rows=None, or narrow start/stop"
        )
    return idx


def _montage_tiles(axes: Sequence[Axes], unit: np.ndarray, idx: np.ndarray, pos: np.ndarray,
                   letters: list[tuple[str, str]], *, aspect: float, label: bool) -> None:
    """Draw slice ``idx[t]`` (``unit[t]``, in 0..1) in tile ``t``, radiological orientation; blank the rest."""
    for t, ax in enumerate(axes):
        ax.set_axis_off()
        if t >= idx.size:
            continue
        k = int(idx[t])
        img = unit[t]
        # same flips as plane_image: radiological convention
        if letters[1][0] == "P":
            img = img[::-1, :]
        if letters[2][0] == "L":
            img = img[:, ::-1]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="antialiased")
        if label:
            ax.text(
                0.03, 0.97, f"{k}\n{pos[k]:+.1f} mm", transform=ax.transAxes, ha="left", va="top",
                color="yellow", fontsize=LABEL_PT, linespacing=1.1,
                path_effects=_outline(),
            )


# ----------------------------------------------------------- orthogonal views
def orthogonal_views(
    volume: Volume | np.ndarray,
    *,
    point: Sequence[int] | None = None,
    window: WindowSpec | None = "lung",
    crosshair: bool = True,
    size_in: float | None = None,
) -> Figure:
    """Axial, coronal and sagittal cuts through one point, each with its real aspect.

    Parameters
    ----------
    volume : Volume
        The CT.
    point : (k, j, i) ints, optional, keyword-only
        Voxel index of the point the three planes pass through; default the
        centre of the volume.
    window : str, (level, width) or None, default "lung"
        Display window.
    crosshair : bool, default True
        Draw the positions of the two other planes on each view.
    size_in : float, optional
        Height in inches of the tallest panel.  Default: the three panels fill the
        book's column (:data:`PAGE_WIDTH_IN`), so titles and letters show at
        their size in points (about 12 px; letters 15 px) instead of being shrunk.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels, widths proportional to their physical widths, edges
        labelled with orientation letters from ``volume.direction``; its alt text
        names the point, the slices and the window.

    Raises
    ------
    ValueError
        A point outside the volume.

    Notes
    -----
    The coronal and sagittal reslices have pixels ``spacing_z`` mm tall and
    ``spacing_x`` (or ``spacing_y``) mm wide.  ``plt.imshow(vol[:, j, :])``
    with its default ``aspect="equal"`` draws them square and squashes the
    body by ``spacing_z / spacing_x`` (3.6 times for 2.5 mm slices of 0.7 mm
    pixels); here ``aspect`` is set to that ratio.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((20, 32, 32), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> fig = orthogonal_views(v, point=(10, 16, 16))
    >>> [round(ax.get_aspect(), 2) for ax in fig.axes]
    [1.0, 3.57, 3.57]
    """
    vol = as_volume(volume)
    if point is None:
        point = tuple(s // 2 for s in vol.shape)
    point = tuple(int(round(p)) for p in point)
    if len(point) != 3 or not all(0 <= p < s for p, s in zip(point, vol.shape)):
        raise ValueError(f"point {point} (k, j, i) is outside the volume of shape {vol.shape}")
    panels = [plane_image(vol, name, point[PLANES[name]["axis"]]) for name in ("axial", "coronal", "sagittal")]
    _, wdesc = _display_unit(np.zeros(1, np.float32), window) if window is not None else (None, "min-max")
    lo_hi = (float(np.min(vol.hu)), float(np.max(vol.hu))) if window is None else (0.0, 1.0)  # used without a window
    widths = [p["image"].shape[1] * p["col_spacing"] for p in panels]
    heights = [p["image"].shape[0] * p["row_spacing"] for p in panels]
    gaps_in = 0.4  # margins and the two gaps between panels
    if size_in is None:
        size_in = (PAGE_WIDTH_IN - gaps_in) * max(heights) / sum(widths)
    scale = size_in / max(heights)  # inches per mm
    lps = vol.index_to_lps(point)
    title = _wrap_title(f"point (k, j, i) = {point}  ->  LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm; {wdesc}",
                        sum(widths) * scale + gaps_in, TITLE_PT)
    head_in = 0.2 + (title.count("\n") + 3) * TITLE_PT * 1.3 / 72  # the figure title, two lines per panel
    fig = _new_figure((sum(widths) * scale + gaps_in, size_in + head_in))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": widths, "wspace": 0.06})
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (head_in - 0.05) / (size_in + head_in))
    pos_along = {"axial": 0, "coronal": 1, "sagittal": 2}
    for ax, p in zip(axes, panels):
        if window is None:
            img = np.clip((p["image"].astype(np.float32) - lo_hi[0]) / max(lo_hi[1] - lo_hi[0], 1e-6), 0, 1)
        else:
            img = apply_window(p["image"], window)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect=p["row_spacing"] / p["col_spacing"],
                  interpolation="antialiased")
        ax.set_xticks([])
        ax.set_yticks([])
        _orientation_marks(ax, p)
        if crosshair:
            r = point[p["row_axis"]]
            c = point[p["col_axis"]]
            nr, nc = p["image"].shape
            r = nr - 1 - r if p["flip_rows"] else r
            c = nc - 1 - c if p["flip_cols"] else c
            ax.axhline(r, color="cyan", lw=0.6, alpha=0.7)
            ax.axvline(c, color="cyan", lw=0.6, alpha=0.7)
        a = pos_along[p["plane"]]
        ax.set_title(
            f"{p['plane']} {'kji'[a]}={point[a]}\npixels {p['row_spacing']:.3g} x {p['col_spacing']:.3g} mm",
            fontsize=TITLE_PT,
        )
    fig.suptitle(title, fontsize=TITLE_PT)
    return set_alt_text(fig, (
        f"Three views through voxel (k, j, i) = {point}, at LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm, "
        f"{wdesc}: axial slice {point[0]} (the patient's right on the image's left, anterior up), "
        f"coronal row {point[1]} and sagittal column {point[2]} (superior up), each drawn with "
        f"its real millimetre proportions"
        + ("; cyan lines mark where the other two planes cut it." if crosshair else ".")))


# --------------------------------------------------------------------- overlay
def overlay(
    volume: Volume | np.ndarray,
    mask_or_labels: np.ndarray,
    *,
    plane: str = "axial",
    index: int | None = None,
    window: WindowSpec | None = "lung",
    alpha: float = 0.4,
    legend: Mapping[int, str] | None = None,
    contour: bool = True,
    size_in: float = 5.0,
) -> Figure:
    """One slice with a mask or label image drawn over it in colour.

    Parameters
    ----------
    volume : Volume
        The CT.
    mask_or_labels : ndarray or Volume, same shape as the volume
        Boolean mask or integer labels (0 = background, not drawn).
    plane : {"axial", "coronal", "sagittal"}, default "axial", keyword-only
    index : int, optional
        Slice index along the plane's axis; default the slice with the most
        labelled voxels.
    window : str, (level, width) or None, default "lung"
    alpha : float, default 0.4
        Opacity of the colour fill.
    legend : mapping int -> str, optional
        Names of label values (e.g. ``{1: "right lung", 2: "left lung"}``).
    contour : bool, default True
        Outline each label as well as filling it.
    size_in : float, default 5.0
        Height of the image in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Shape mismatch, unknown plane, index out of range.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((8, 20, 20), np.int16) - 800, spacing=(2.5, 0.7, 0.7))
    >>> lab = np.zeros(v.shape, np.uint8); lab[3:5, 5:10, 5:15] = 1
    >>> fig = overlay(v, lab, legend={1: "lesion"})
    >>> fig.axes[0].get_title().split(";")[0]
    'axial k=3'
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    vol = as_volume(volume)
    lab = as_array(mask_or_labels, shape=vol.shape, name="mask/labels")
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {list(PLANES)}; got {plane!r}")
    axis = PLANES[plane]["axis"]
    if index is None:
        other = tuple(a for a in range(3) if a != axis)
        counts = np.count_nonzero(lab, axis=other)
        index = int(np.argmax(counts)) if counts.any() else vol.shape[axis] // 2
    p = plane_image(vol, plane, index)
    q = plane_image(vol, plane, index, array=lab)
    img = _display_unit(p["image"], window)[0]
    lab2 = np.asarray(q["image"])
    values = [int(v) for v in np.unique(lab2) if v != 0]
    all_values = [int(v) for v in np.unique(lab) if v != 0]
    ny, nx = img.shape
    aspect = p["row_spacing"] / p["col_spacing"]
    fig = _new_figure((size_in * nx / (ny * aspect) + 0.4, size_in + 0.6))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (size_in + 0.6))
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="antialiased")
    colors = {v: LABEL_COLORS[(v - 1) % len(LABEL_COLORS)] for v in all_values}
    handles = []
    if all_values:
        vmax = max(all_values)
        lut = ["#000000"] + [colors.get(v, "#000000") for v in range(1, vmax + 1)]
        cmap = ListedColormap(lut)
        shown = np.ma.masked_equal(lab2.astype(np.int32), 0)
        ax.imshow(shown, cmap=cmap, vmin=0, vmax=vmax, alpha=alpha, aspect=aspect, interpolation="nearest")
        for v in values:
            if contour:
                ax.contour(lab2 == v, levels=[0.5], colors=[colors[v]], linewidths=1.0)
        for v in all_values:
            name = (legend or {}).get(v, f"label {v}")
            handles.append(Patch(color=colors[v], label=name + ("" if v in values else " (not on this slice)")))
        ax.legend(handles=handles, loc="lower right", fontsize=LABEL_PT, framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    _orientation_marks(ax, p)
    a = PLANES[plane]["axis"]
    ax.set_title(f"{plane} {'kji'[a]}={index}; {len(values)} label(s) on this slice", fontsize=TITLE_PT)
    names = [(legend or {}).get(v, f"label {v}") for v in values]
    shown_names = ", ".join(f"{nm} ({_COLOR_NAMES.get(colors[v], colors[v])})" for nm, v in zip(names, values))
    missing = [(legend or {}).get(v, f"label {v}") for v in all_values if v not in values]
    return set_alt_text(fig, (
        f"{plane.capitalize()} slice {'kji'[a]} = {index} of the CT, "
        f"{_display_unit(np.zeros(1), window)[1] if window is not None else 'min-max'}, "
        + (f"with {shown_names} drawn over it" if values else "with no label on this slice")
        + (f"; not on this slice: {', '.join(missing)}" if missing else "")
        + f". Orientation letters {p['top']} (top), {p['bottom']} (bottom), {p['left']} (left), {p['right']} (right)."))


# ----------------------------------------------------------------------- tables
class Table:
    """Rows of text cells that show as an HTML table in a notebook and as aligned text elsewhere."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[str] = ()):
        self.columns, self.rows, self.wrap = list(columns), [list(r) for r in rows], set(wrap)

    def __repr__(self) -> str:
        cells = [self.columns] + self.rows
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)

    def _repr_html_(self) -> str:
        from html import escape

        def td(c, text, tag="td"):
            style = "overflow-wrap:anywhere;min-width:8em" if c in self.wrap else "white-space:nowrap"
            return f'<{tag} style="text-align:left;{style}">{escape(text)}</{tag}>'

        head = "".join(td(c, c, "th") for c in self.columns)
        body = "".join("<tr>" + "".join(td(c, x) for c, x in zip(self.columns, r)) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(rows: Sequence[Any], *, first: Sequence[str] = (), wrap: Sequence[str] = ("series_uid",)) -> Table:
    """A table of ``rows`` with the columns a text talks about first.

    Parameters
    ----------
    rows : sequence of objects or dicts
        For example :func:`helpers.io.list_series`'s ``SeriesTable``; its own column
        order (``_columns``) gives the order of the other columns.
    first : sequence of str, keyword-only
        Columns (attribute names or keys) shown first, in this order.
    wrap : sequence of str, default ("series_uid",)
        Columns whose long values wrap inside the cell (UIDs), so the table fits the page
        instead of hiding its last columns behind a sideways scroll.

    Returns
    -------
    Table
        Shows as HTML in a notebook, as aligned text in ``print``.

    Examples
    --------
    >>> print(table([{"slices": 120, "description": "chest"}], first=["description"]))
    description  slices
    chest        120
    """
    order = getattr(rows, "_columns", None)
    rows = list(rows)
    if not rows:
        return Table(list(first), [])
    if isinstance(rows[0], Mapping):
        names = list(order or rows[0].keys())

        def get(r, c):
            return r.get(c)
    else:
        names = list(order or vars(rows[0]))

        def get(r, c):
            return getattr(r, c, None)
    columns = list(first) + [c for c in names if c not in first]
    cells = [["" if get(r, c) is None else str(get(r, c)) for c in columns] for r in rows]
    return Table(columns, cells, wrap=[c for c in wrap if c in columns])


# ------------------------------------------------------ plotly slider viewer
def _resized_square(img: np.ndarray, row_mm: float, col_mm: float, max_px: int,
                    downsample: int | None) -> tuple[np.ndarray, float]:
    """Resample a 2-D image to square pixels, largest side <= max_px; returns (img, pixel mm)."""
    from skimage.transform import resize

    h_mm, w_mm = img.shape[0] * row_mm, img.shape[1] * col_mm
    if downsample is not None:
        px = min(row_mm, col_mm) * max(1, int(downsample))
    else:
        px = max(min(row_mm, col_mm), max(h_mm, w_mm) / max_px)
    out_shape = (max(1, int(round(h_mm / px))), max(1, int(round(w_mm / px))))
    if out_shape == img.shape:
        return img, px
    return resize(img, out_shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32), px


def _encode(img_u8: np.ndarray, fmt: str, quality: int) -> str:
    from PIL import Image

    if fmt == "png":
        data, mime = png_bytes(img_u8, optimize=True), "image/png"
    elif fmt == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(img_u8).save(buf, format="JPEG", quality=quality)
        data, mime = buf.getvalue(), "image/jpeg"
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg'; got {fmt!r}")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _viewer_indices(n: int, step: int, max_slices: int) -> np.ndarray:
    idx = np.arange(0, n, max(1, int(step)))
    if idx.size > max_slices:
        idx = np.unique(np.round(np.linspace(0, n - 1, max_slices)).astype(int))
    return idx


def slice_viewer(
    volume: Volume | np.ndarray,
    *,
    window: WindowSpec = "lung",
    axis: int = 0,
    step: int = 1,
    max_slices: int = 60,
    max_size_px: int = 256,
    downsample: int | None = None,
    image_format: str = "jpeg",
    jpeg_quality: int = 90,
    title: str | None = None,
) -> Any:
    """A plotly figure with a slider that pages through slices, with no kernel.

    Each slider step swaps the image source (a small PNG/JPEG embedded in the
    page), so the viewer works on the static book site.  To keep pages light
    the images are windowed to ``uint8``, resampled to square pixels with the
    largest side ``<= max_size_px`` and at most ``max_slices`` slices are kept.

    Parameters
    ----------
    volume : Volume
    window : str or (level, width), default "lung", keyword-only
    axis : {0, 1, 2}, default 0
        0 = axial, 1 = coronal, 2 = sagittal (radiological orientation).
    step : int, default 1
        Keep every ``step``-th slice (then evenly thinned to ``max_slices``).
    max_slices : int, default 60
    max_size_px : int, default 256
        Largest image side in pixels (ignored if ``downsample`` is given).
    downsample : int, optional
        Fixed factor instead: pixel size = finest spacing x ``downsample``.
    image_format : {"jpeg", "png"}, default "jpeg"
        JPEG pages are ~3x lighter than PNG; at quality 90 the difference is
        invisible at this size.  Use "png" for masks or exact grey levels.
    jpeg_quality : int, default 90
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Image`` trace; axes in mm from the first pixel; a slider whose
        label is the slice index and whose title shows the position in mm.

    Raises
    ------
    ValueError
        Bad axis, step or format.

    Notes
    -----
    Page weight (measured on a 512 x 512 chest CT, 256 px images): about
    45 kB per slice as PNG and 15-20 kB as JPEG, so 60 slices cost roughly
    2.7 MB or 1 MB; measure with ``len(fig.to_html(include_plotlyjs=False))``.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((12, 40, 40), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> fig = slice_viewer(v, max_slices=5)
    >>> len(fig.layout.sliders[0].steps), fig.data[0].type
    (5, 'image')
    """
    import plotly.graph_objects as go

    vol = as_volume(volume)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (axial), 1 (coronal) or 2 (sagittal); got {axis!r}")
    if step < 1 or max_slices < 1:
        raise ValueError(f"step and max_slices must be >= 1; got step={step}, max_slices={max_slices}")
    plane = _AXIS_PLANE[axis]
    idx = _viewer_indices(vol.shape[axis], step, max_slices)
    lps_axis = int(np.argmax(np.abs(vol.direction[:, axis])))
    positions = vol.index_to_lps(np.eye(3)[axis][None] * idx[:, None])[:, lps_axis]
    sources, px = [], 1.0
    p: dict[str, Any] = {}
    for k in idx:
        p = plane_image(vol, plane, int(k))
        img, px = _resized_square(p["image"].astype(np.float32), p["row_spacing"], p["col_spacing"], max_size_px,
                                  downsample)
        sources.append(_encode(apply_window(img, window, out="uint8"), image_format, jpeg_quality))
    mid = len(idx) // 2
    low, high = window_bounds(window)
    wname = window if isinstance(window, str) else "custom"
    wdesc = f"{wname} window (L {(low + high) / 2:g}, W {high - low:g})"

    def _title(t: int) -> str:
        return (title + " - " if title else "") + (
            f"{plane} slice {idx[t]} ({'xyz'[lps_axis]} = {positions[t]:+.1f} mm)<br>{wdesc}"
        )

    fig = go.Figure(go.Image(source=sources[mid], dx=px, dy=px, x0=px / 2, y0=px / 2, hoverinfo="x+y"))
    steps = [
        {"method": "update", "label": str(int(k)),
         "args": [{"source": [src]}, {"title.text": _title(t)}]}
        for t, (k, src) in enumerate(zip(idx, sources))
    ]
    h_px = int(round(p["image"].shape[0] * p["row_spacing"] / px))
    w_px = int(round(p["image"].shape[1] * p["col_spacing"] / px))
    scale = VIEWER_IMAGE_PX / max(h_px, w_px)
    fig.update_layout(
        title={"text": _title(mid), "font": {"size": 13}},
        sliders=[{
            "active": mid, "steps": steps, "pad": {"t": 30},
            "currentvalue": {"prefix": "slice ", "font": {"size": 12}},
            "font": {"color": "rgba(0,0,0,0)"}, "ticklen": 2,
        }],
        # no width: the figure fills its column (the renderer's config is responsive), so on a
        # phone it shrinks instead of sticking out and cutting off the right-hand letter
        autosize=True, height=int(h_px * scale) + 200,
        margin={"l": 50, "r": 20, "t": 70, "b": 20},  # a two-line title: it fits a phone's width
        template="none",
        xaxis={"title": {"text": f"{p['left']}  <-  mm  ->  {p['right']}"}, "showgrid": False},
        yaxis={"title": {"text": f"{p['bottom']}  <-  mm  ->  {p['top']}"}, "showgrid": False,
               "scaleanchor": "x", "autorange": "reversed"},
    )
    return fig


# -------------------------------------------------- ipywidgets (live kernels)
def still_png(
    volume: Volume | np.ndarray,
    *,
    axis: int = 0,
    index: int | None = None,
    window: WindowSpec = "lung",
    max_size_px: int = 384,
) -> bytes:
    """PNG bytes of one slice, windowed, square pixels, radiological orientation.

    Parameters
    ----------
    volume : Volume
    axis : {0, 1, 2}, default 0, keyword-only
    index : int, optional
        Default the middle slice.
    window : str or (level, width), default "lung"
    max_size_px : int, default 384

    Returns
    -------
    bytes
        A PNG file.

    Examples
    --------
    >>> import numpy as np
    >>> still_png(Volume(np.zeros((4, 8, 8)), spacing=(1, 1, 1)))[:4]
    b'\\x89PNG'
    """
    vol = as_volume(volume)
    p = plane_image(vol, _AXIS_PLANE[axis], index)
    img, _ = _resized_square(p["image"].astype(np.float32), p["row_spacing"], p["col_spacing"], max_size_px, None)
    return png_bytes(apply_window(img, window, out="uint8"))


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, read from its header.

    Examples
    --------
    >>> png_size(still_png(Volume(np.zeros((3, 20, 10)), spacing=(1, 1, 1))))
    (10, 20)
    """
    import struct

    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image (no IHDR header)")
    return struct.unpack(">II", png[16:24])


def image_layout(png: bytes, *, width_px: int | None = None) -> ipywidgets.Layout:
    """An ``ipywidgets.Layout`` that shows an ``Image`` widget at the PNG's own size (or ``width_px``).

    Inside a ``VBox`` (a flex column) an image widget without a width is stretched to the
    output's full width: a 384 px slice became ~960 px wide and pushed its slider off screen.
    This layout fixes the width to the image's pixels (never wider than the output) and keeps
    the aspect ratio.

    Parameters
    ----------
    png : bytes
        The image the widget shows first.
    width_px : int, optional, keyword-only
        Displayed width in CSS pixels (default: the PNG's width).

    Returns
    -------
    ipywidgets.Layout

    Examples
    --------
    >>> lay = image_layout(still_png(Volume(np.zeros((3, 20, 10)), spacing=(1, 1, 1))))
    >>> lay.width, lay.max_width, lay.height
    ('10px', '100%', 'auto')
    """
    import ipywidgets as widgets

    w = int(width_px) if width_px is not None else png_size(png)[0]
    return widgets.Layout(width=f"{w}px", max_width="100%", height="auto", align_self="flex-start",
                          object_fit="contain")


def widget_viewer(
    volume: Volume | np.ndarray,
    *,
    window: WindowSpec = "lung",
    axis: int = 0,
    index: int | None = None,
    max_size_px: int = 384,
) -> ipywidgets.VBox:
    """An ipywidgets viewer: a slice slider and a window-preset dropdown.

    Needs a live kernel (Jupyter, Binder): each move re-renders the slice in
    Python.  On a static page use :func:`slice_viewer`, or show the widget
    with a still image through :func:`widget_with_still` and
    ``helpers.book.notebook.show_widget``.

    Parameters
    ----------
    volume : Volume
    window : str or (level, width), default "lung", keyword-only
        Initial window; a custom pair is added to the dropdown.
    axis : {0, 1, 2}, default 0
    index : int, optional
        Initial slice; default the middle.
    max_size_px : int, default 384

    Returns
    -------
    ipywidgets.VBox
        Attributes ``slider``, ``dropdown`` and ``image`` give access to the
        parts (tests and exercises use them).

    Examples
    --------
    >>> import numpy as np
    >>> w = widget_viewer(Volume(np.zeros((5, 8, 8)), spacing=(1, 1, 1)))
    >>> w.slider.max, w.dropdown.value
    (4, 'lung')
    >>> w.slider.value = 0  # re-renders the image
    """
    import ipywidgets as widgets

    vol = as_volume(volume)
    n = vol.shape[axis]
    index = n // 2 if index is None else int(index)
    options: list[tuple[str, WindowSpec]] = [(f"{k} (L {lev:g}, W {wid:g})", k) for k, (lev, wid) in WINDOWS.items()]
    if not isinstance(window, str):
        level, width = (float(v) for v in window)
        options.append((f"custom (L {level:g}, W {width:g})", (level, width)))
        window = (level, width)
    else:
        window_bounds(window)  # validate the name
    slider = widgets.IntSlider(value=index, min=0, max=n - 1, description=_AXIS_PLANE[axis],
                               continuous_update=True)
    dropdown = widgets.Dropdown(options=options, value=window, description="window")
    first = still_png(vol, axis=axis, index=index, window=window, max_size_px=max_size_px)
    image = widgets.Image(format="png", value=first, layout=image_layout(first))
    caption = widgets.HTML()
    lps_axis = int(np.argmax(np.abs(vol.direction[:, axis])))
    positions = vol.index_to_lps(np.eye(3)[axis][None] * np.arange(n)[:, None])[:, lps_axis]

    def _update(_change=None):
        image.value = still_png(vol, axis=axis, index=slider.value, window=dropdown.value, max_size_px=max_size_px)
        caption.value = (
            f"slice {slider.value} of {n} &middot; {'xyz'[lps_axis]} = {positions[slider.value]:+.1f} mm (LPS)"
        )

    slider.observe(_update, names="value")
    dropdown.observe(_update, names="value")
    _update()
    box = widgets.VBox([widgets.HBox([slider, dropdown]), image, caption])
    box.slider, box.dropdown, box.image = slider, dropdown, image
    wname = window if isinstance(window, str) else "custom"
    low, high = window_bounds(window)
    set_alt_text(box, f"Still image of {_AXIS_PLANE[axis]} slice {index} of {n} "
                      f"({'xyz'[lps_axis]} = {positions[index]:+.1f} mm), {wname} window "
                      f"(L {(low + high) / 2:g}, W {high - low:g} HU), "
                      "radiological orientation; in Jupyter a slider pages through the slices and a menu "
                      "changes the window.")
    return box


def widget_with_still(volume: Volume | np.ndarray, **options: Any) -> tuple[ipywidgets.VBox, bytes]:
    """The live widget and a still PNG of its first view, for ``show_widget``.

    Parameters
    ----------
    volume : Volume
    **options
        Passed to :func:`widget_viewer` (``window``, ``axis``, ``index``,
        ``max_size_px``).

    Returns
    -------
    (ipywidgets.VBox, bytes)
        The widget and a PNG of the slice it shows first.  In a chapter:
        ``helpers.book.notebook.show_widget(*widget_with_still(vol))``.

    Examples
    --------
    >>> import numpy as np
    >>> w, png = widget_with_still(Volume(np.zeros((5, 8, 8)), spacing=(1, 1, 1)), window="bone")
    >>> png[:4], w.dropdown.value
    (b'\\x89PNG', 'bone')
    """
    w = widget_viewer(volume, **options)
    return w, bytes(w.image.value)
