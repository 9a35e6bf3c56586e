"""Histograms of Hounsfield units with the tissue bands a radiologist expects.

The 2017 tutorial drew ``plt.hist(pixels.flatten(), bins=80)`` and read the
peaks by eye.  On real scans that plot is dominated by things that are not
tissue: the circular field-of-view padding (often -2000 or -3024 HU), the air
around the patient and the table.  :func:`hu_histogram` removes the padding (and
says how many voxels it removed), can be restricted to a mask, and shades named
HU bands so the peaks can be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from .hu import PADDING_BELOW_HU
from .volume import Volume, as_array, as_mask

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

__all__ = ["BANDS", "PADDING_BELOW_HU", "RANGE_HU", "padding_mask", "hu_histogram", "tissue_histograms"]

#: Named HU ranges ``name -> (low, high, colour)`` shaded on histograms.
#:
#: Sources: air -1000 HU and water 0 HU by definition of the scale; aerated
#: lung about -950 to -500 (normal parenchyma near -850 to -700; below -950 is
#: the usual emphysema threshold); adipose tissue -190 to -30 and skeletal
#: muscle -29 to +150, the ranges used in CT body-composition work (Mitsiopoulos
#: et al., J Appl Physiol 1998;85:115-22; Mourtzakis et al., Appl Physiol Nutr
#: Metab 2008;33:997-1006); bone from about +300 (cancellous) to +1900
#: (cortical) -- see Radiopaedia, "Hounsfield unit"
#: (https://radiopaedia.org/articles/hounsfield-unit).  The bands are teaching
#: aids: partial-volume voxels fall between them, and iodinated contrast pushes
#: blood up to 200-400 HU.
BANDS: dict[str, tuple[float, float, str]] = {
    "air": (-1100.0, -950.0, "#9ecae1"),
    "lung": (-950.0, -500.0, "#6baed6"),
    "fat": (-190.0, -30.0, "#fdd49e"),
    "soft tissue, water, blood": (-29.0, 150.0, "#fc9272"),
    "bone": (300.0, 1900.0, "#d9d9d9"),
}

# PADDING_BELOW_HU (values below it are not tissue but the padding outside the
# reconstructed circle, (0028,0120) Pixel Padding Value) comes from helpers.hu.

#: Default x range of the histograms (HU): from the padding limit to dense bone.
RANGE_HU = (PADDING_BELOW_HU, 1500.0)


def padding_mask(volume: Volume | np.ndarray, *, padding_below: float = PADDING_BELOW_HU,
                 padding_value: float | None = None) -> np.ndarray:
    """Boolean mask of voxels that are padding, not tissue.

    Parameters
    ----------
    volume : Volume or ndarray
        HU values.
    padding_below : float, default -1100, keyword-only
        Voxels strictly below this HU are padding (air is -1000 HU).
    padding_value : float, optional
        An explicit padding value in HU (e.g. from (0028,0120) Pixel Padding
        Value after rescale) also counted as padding.

    Returns
    -------
    ndarray of bool, same shape

    Examples
    --------
    >>> padding_mask(np.array([-3024, -1024, -1000, 40]))
    array([ True, False, False, False])
    """
    hu = as_array(volume)
    pad = hu < padding_below
    if padding_value is not None:
        pad |= hu == padding_value
    return pad


def _select(volume, mask, padding_below):
    vol_hu = as_array(volume)
    pad = padding_mask(volume, padding_below=padding_below)
    keep = ~pad
    if mask is not None:
        m = as_mask(mask, shape=vol_hu.shape)
        keep &= m
    return vol_hu[keep], int(np.count_nonzero(pad if mask is None else pad & m))


def _shade_bands(ax, bands, range_hu):
    """Shade each band and return legend handles naming it with its HU range."""
    from matplotlib.patches import Patch

    handles = []
    for name, (lo, hi, color) in bands.items():
        lo_c, hi_c = max(lo, range_hu[0]), min(hi, range_hu[1])
        if lo_c >= hi_c:
            continue
        ax.axvspan(lo_c, hi_c, color=color, alpha=0.45, lw=0, zorder=0)
        handles.append(Patch(color=color, alpha=0.6, label=f"{name}: {lo:g} to {hi:g} HU"))
    return handles


def hu_histogram(
    volume: Volume | np.ndarray,
    *,
    mask: Volume | np.ndarray | None = None,
    bins: int = 260,
    range_hu: tuple[float, float] = RANGE_HU,
    bands: Mapping[str, tuple[float, float, str]] | None = BANDS,
    padding_below: float = PADDING_BELOW_HU,
    log: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure | SubFigure:
    """Histogram of HU with tissue bands shaded; padding excluded and reported.

    Parameters
    ----------
    volume : Volume or ndarray
        CT in HU.
    mask : ndarray or Volume of bool, optional, keyword-only
        Only count voxels inside this mask (e.g. a lung mask).
    bins : int, default 260
        Number of bins over ``range_hu`` (10 HU each by default).
    range_hu : (float, float), default (-1100, 1500)
        HU range drawn; voxels outside it are not counted (their number is
        written on the figure).
    bands : mapping or None, default :data:`BANDS`
        ``name -> (low, high, colour)`` shaded and labelled; ``None`` for none.
    padding_below : float, default -1100
        Voxels below this HU are FOV padding and are excluded.
    log : bool, default False
        Logarithmic y axis (shows the small bone and fat peaks).
    ax : matplotlib Axes, optional
        Draw into this axes instead of a new figure.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        The y axis is the percentage of counted voxels per bin.

    Raises
    ------
    ValueError
        Mask shape mismatch, empty selection or a bad range.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.full((2, 10, 10), -3024, np.int16); hu[:, 2:8, 2:8] = 40
    >>> fig = hu_histogram(Volume(hu, spacing=(1, 1, 1)))
    >>> print(fig.axes[0].texts[-1].get_text())
    72 voxels counted; 128 padding voxels (< -1100 HU) excluded; 0 outside -1100..1500 HU
    """
    if not range_hu[0] < range_hu[1]:
        raise ValueError(f"range_hu must be (low, high) with low < high; got {range_hu}")
    values, n_pad = _select(volume, mask, padding_below)
    inside = (values >= range_hu[0]) & (values <= range_hu[1])
    n_out = int(values.size - np.count_nonzero(inside))
    values = values[inside]
    if values.size == 0:
        raise ValueError(
            f"no voxel left to count: {n_pad} padding voxels, {n_out} outside {range_hu} HU"
            + ("; is the mask empty?" if mask is not None else "")
        )
    counts, edges = np.histogram(values, bins=bins, range=range_hu)
    pct = 100.0 * counts / values.size
    if ax is None:
        from matplotlib.figure import Figure

        fig: Figure | SubFigure = Figure(figsize=(9, 3.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    handles = _shade_bands(ax, bands, range_hu) if bands else []
    ax.stairs(pct, edges, fill=True, color="#3b3b3b", alpha=0.85, zorder=2)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right", title="HU bands", title_fontsize=7)
    ax.set_xlim(*range_hu)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Hounsfield units (HU)")
    ax.set_ylabel("% of counted voxels per bin")
    width = (range_hu[1] - range_hu[0]) / bins
    ax.set_title(title or f"HU histogram ({bins} bins of {width:g} HU)" + (" inside mask" if mask is not None else ""),
                 fontsize=10)
    note = f"{values.size:,} voxels counted; {n_pad:,} padding voxels (< {padding_below:g} HU) excluded; " \
           f"{n_out:,} outside {range_hu[0]:g}..{range_hu[1]:g} HU"
    meta = volume.meta if isinstance(volume, Volume) else {}
    # padding lies outside the field of view, so a mask (body, lungs) never holds it
    if mask is None and meta.get("padding_voxels") and meta.get("padding_hu", -np.inf) >= padding_below:
        note += (f"\nthe loader had set {meta['padding_voxels']:,} padding voxels to {meta['padding_hu']:g} HU: "
                 "they count as air here (load with padding_hu=-3024 to exclude them)")
    # below the x axis label, where it covers no bar
    ax.text(1.0, -0.2, note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    return fig


def tissue_histograms(
    volume: Volume | np.ndarray,
    labels: Volume | np.ndarray,
    legend: Mapping,
    *,
    bins: int = 260,
    range_hu: tuple[float, float] = RANGE_HU,
    bands: Mapping[str, tuple[float, float, str]] | None = BANDS,
    density: bool = True,
    log: bool = False,
    title: str | None = None,
) -> Figure:
    """One HU histogram per labelled tissue, overlaid.

    Parameters
    ----------
    volume : Volume or ndarray
        CT in HU.
    labels : ndarray or Volume of int, same shape
        Tissue label per voxel (0 = unlabelled, skipped unless in ``legend``).
    legend : mapping
        ``{label_value: name}`` (or ``{name: label_value}``; both are accepted).
    bins : int, default 260, keyword-only
    range_hu : (float, float), default (-1100, 1500)
    bands : mapping or None, default :data:`BANDS`
    density : bool, default True
        Each curve sums to 100 % (compare shapes); ``False`` plots voxel counts
        (compare sizes).
    log : bool, default False
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Step curves, one per tissue, with median HU in the legend.

    Raises
    ------
    ValueError
        Shape mismatch or a legend that names no label present.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.zeros((1, 4, 4)); hu[0, :2] = -800
    >>> lab = np.ones((1, 4, 4), np.uint8); lab[0, :2] = 2
    >>> fig = tissue_histograms(Volume(hu, spacing=(1, 1, 1)), lab, {1: "muscle", 2: "lung"})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['muscle (8 voxels, median 0 HU)', 'lung (8 voxels, median -800 HU)']
    """
    hu = as_array(volume)
    lab = as_array(labels, shape=hu.shape, name="labels")
    items = list(legend.items())
    if items and isinstance(items[0][0], str):
        items = [(v, k) for k, v in items]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    band_handles = _shade_bands(ax, bands, range_hu) if bands else []
    drawn = 0
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
              "#1f78b4", "#b2182b"]
    for n, (value, name) in enumerate(items):
        vals = hu[lab == int(value)]
        if vals.size == 0:
            continue
        counts, edges = np.histogram(vals, bins=bins, range=range_hu)
        y = 100.0 * counts / max(counts.sum(), 1) if density else counts
        ax.stairs(y, edges, color=colors[n % len(colors)], lw=1.6, zorder=2,
                  label=f"{name} ({vals.size:,} voxels, median {np.median(vals):.0f} HU)")
        drawn += 1
    if not drawn:
        present = sorted(int(v) for v in np.unique(lab))
        raise ValueError(f"none of the legend's labels {[v for v, _ in items]} is present; labels found: {present}")
    ax.set_xlim(*range_hu)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("Hounsfield units (HU)")
    ax.set_ylabel("% of the tissue's voxels per bin" if density else "voxels per bin")
    if band_handles:  # a figure legend below the axes; ax.get_legend() stays the tissue legend
        fig.legend(handles=band_handles, fontsize=7, loc="outside lower center", ncol=len(band_handles),
                   frameon=False)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "HU histogram per tissue", fontsize=10)
    return fig
