"""Measuring a tumour from its boxes: a 3-D region, its volume, its longest axial diameter.

A box says *where* a lesion is, not *what* it is.  :func:`grow_tumour` turns the
boxes into a 3-D region: it starts from a seed voxel near each box's centre and
keeps the voxels that are connected to a seed, lie in a soft-tissue HU band
(``low_hu`` .. ``high_hu``) and stay inside the boxes widened by ``margin_mm``.
:func:`measure_tumour` then reports what a radiologist would:

* the volume in mL (voxel count x voxel volume);
* the **longest axial diameter** in mm, RECIST-style: on every axial slice the
  longest distance between two points of the lesion's outline (the maximum Feret
  diameter, measured on the outline drawn half-way between inside and outside
  pixels), and the slice where it is longest, with the two end points;
* the mean HU inside the region.

:func:`draw_tumour` draws the region and its diameter on that slice;
:func:`box_montage` shows every annotated slice with its box; and
:func:`tumour_viewer` is the book's slice viewer zoomed on the lesion, with the
box drawn on each slice that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .annotations import Box, TumourBoxes
from .errors import DicomSeriesError
from .volume import Volume, as_mask

if TYPE_CHECKING:
    from .intensity import WindowSpec

__all__ = [
    "TumourRegion",
    "grow_tumour",
    "measure_tumour",
    "longest_axial_diameter",
    "kept_fraction",
    "kept_table",
    "draw_tumour",
    "box_montage",
    "tumour_viewer",
]

#: Soft-tissue band a solid tumour's voxels fall in (HU): above aerated lung and
#: partial-volume edges (about -400 HU half-way to soft tissue), below bone and
#: dense calcification.
LOW_HU = -300.0
HIGH_HU = 200.0
#: How far (mm) the region may reach beyond the drawn boxes, in-plane (the boxes say which slices).
MARGIN_MM = 2.0
#: Display windows for the tumour figures.
TUMOUR_WINDOW = "mediastinum"


@dataclass(frozen=True, eq=False)
class TumourRegion:
    """A measured lesion.

    Attributes
    ----------
    mask : ndarray of bool, shape (z, y, x)
        The lesion's voxels.
    volume_ml : float
        Voxel count x voxel volume, mL.
    longest_axial_mm : float
        Longest in-plane diameter over all slices (mm).
    slice_index : int
        Slice ``k`` on which that diameter lies.
    z_mm : float
        Position of that slice along the normal (mm).
    endpoints : ndarray, shape (2, 2), float
        ``(row, col)`` voxel coordinates of the diameter's two ends on that slice.
    mean_hu : float
        Mean HU of the lesion's voxels.
    voxels : int
        Number of voxels.
    slices : int
        Number of slices the lesion appears on.
    seeds : tuple of (k, j, i)
        Seed voxels the region was grown from (empty for a given mask).
    """

    mask: np.ndarray
    volume_ml: float
    longest_axial_mm: float
    slice_index: int
    z_mm: float
    endpoints: np.ndarray
    mean_hu: float
    voxels: int
    slices: int
    seeds: tuple = ()

    def summary(self) -> str:
        """The measurements, one per line, as a report would give them."""
        return (f"volume                 {self.volume_ml:7.1f} mL ({self.voxels} voxels on {self.slices} slices)\n"
                f"longest axial diameter {self.longest_axial_mm:7.1f} mm on slice {self.slice_index} "
                f"(z {self.z_mm:+.1f} mm)\n"
                f"mean density           {self.mean_hu:7.0f} HU")

    def __repr__(self) -> str:
        return (f"TumourRegion(volume={self.volume_ml:.1f} mL, longest axial diameter="
                f"{self.longest_axial_mm:.1f} mm on slice {self.slice_index} (z {self.z_mm:+.1f} mm), "
                f"mean {self.mean_hu:.0f} HU, {self.voxels} voxels on {self.slices} slices)")


# ----------------------------------------------------------------- measuring
def _feret(points_mm: np.ndarray) -> tuple[float, int, int]:
    """Largest distance between 2-D points (via their convex hull): (length, index a, index b)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = points_mm
    if len(pts) > 3:
        try:
            hull = ConvexHull(pts)
            idx = hull.vertices
        except QhullError:  # all points on a line
            idx = np.arange(len(pts))
    else:
        idx = np.arange(len(pts))
    sub = pts[idx]
    d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1))
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(d[a, b]), int(idx[a]), int(idx[b])


def longest_axial_diameter(mask: np.ndarray, spacing: Sequence[float]) -> tuple[float, int, np.ndarray]:
    """The longest in-plane diameter of a 3-D mask over all its axial slices (RECIST-style).

    Parameters
    ----------
    mask : ndarray of bool, shape (z, y, x)
    spacing : tuple of 3 float
        ``(z, y, x)`` voxel size in mm (rows and columns may differ).

    Returns
    -------
    length_mm : float
        The longest distance between two points of the outline on one slice.
    slice_index : int
        The slice where it lies.
    endpoints : ndarray, shape (2, 2), float64
        ``(row, col)`` of its two ends (fractional voxel coordinates).

    Raises
    ------
    ValueError
        An empty mask.

    Notes
    -----
    The outline is the 0.5 iso-line of the slice (:func:`skimage.measure.find_contours`),
    i.e. half-way between lesion and background pixel centres, so a lesion of
    ``n`` pixels across measures ``n`` pixel widths -- as calipers on a screen
    would -- like ``regionprops``' ``feret_diameter_max``, but with the row and
    column spacing in mm.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((3, 20, 20), bool); m[1, 5, 4:14] = True    # one row of 10 pixels
    >>> length, k, ends = longest_axial_diameter(m, (5.0, 0.5, 0.8))
    >>> round(length, 2), k, ends.tolist()                        # 10 x 0.8 mm, edge to edge
    (8.0, 1, [[5.0, 3.5], [5.0, 13.5]])
    """
    from skimage.measure import find_contours

    mask = as_mask(mask)
    if not mask.any():
        raise ValueError("the mask is empty: there is no lesion to measure")
    sy, sx = float(spacing[1]), float(spacing[2])
    best = (-1.0, 0, np.zeros((2, 2)))
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        sl = np.pad(mask[k], 1).astype(np.float32)
        pts = np.concatenate(find_contours(sl, 0.5)) - 1.0  # back to unpadded (row, col)
        length, a, b = _feret(pts * (sy, sx))
        if length > best[0]:
            best = (length, int(k), np.stack([pts[a], pts[b]]))
    return best


def measure_tumour(mask: np.ndarray, volume: Volume, *, seeds: Sequence[Sequence[int]] = ()) -> TumourRegion:
    """Volume, longest axial diameter and mean HU of a lesion mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (z, y, x)
        The lesion (a grown region, or a ground-truth label).
    volume : Volume
        The CT it belongs to (HU and spacing).
    seeds : sequence of (k, j, i), optional
        Recorded in the result.

    Returns
    -------
    TumourRegion

    Raises
    ------
    ValueError
        Empty mask or a shape other than the volume's.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.full((4, 10, 10), 40, np.int16), spacing=(2.0, 1.0, 1.0))
    >>> m = np.zeros(v.shape, bool); m[1:3, 4, 2:7] = True      # 5 pixels on 2 slices
    >>> r = measure_tumour(m, v)
    >>> r.volume_ml, r.longest_axial_mm, r.mean_hu, r.slices
    (0.02, 5.0, 40.0, 2)
    """
    mask = as_mask(mask, shape=volume.shape)
    length, k, ends = longest_axial_diameter(mask, volume.spacing)
    n = int(mask.sum())
    return TumourRegion(
        mask=mask,
        volume_ml=round(n * volume.voxel_volume_ml, 6),
        longest_axial_mm=length,
        slice_index=k,
        z_mm=float(volume.slice_positions[k]),
        endpoints=ends,
        mean_hu=float(volume.hu[mask].mean()),
        voxels=n,
        slices=int(mask.any(axis=(1, 2)).sum()),
        seeds=tuple(tuple(int(c) for c in s) for s in seeds),
    )


# ----------------------------------------------------------------- growing
def _allowed(boxes: TumourBoxes, spacing: Sequence[float], margin_mm: float,
             shape: str) -> tuple[tuple[slice, ...], np.ndarray]:
    """Where the region may grow: each box (or the ellipse inscribed in it) widened by the margin.

    Returns the block ``(k, j, i)`` slices holding it and the boolean array of that block.
    """
    from scipy import ndimage

    reach = [0] + [int(np.floor(margin_mm / s + 1e-9)) for s in spacing[1:]]  # in-plane only
    bb = boxes.bounding_box()
    block = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(bb, reach, boxes.shape))
    out = np.zeros(tuple(b.stop - b.start for b in block), dtype=bool)
    for b in boxes:
        (r0, r1), (c0, c1) = b.rows, b.cols
        k, j0, i0 = b.slice_index - block[0].start, r0 - block[1].start, c0 - block[2].start
        h, w = r1 - r0 + 1, c1 - c0 + 1
        if shape == "box":
            out[k, j0:j0 + h, i0:i0 + w] = True
            continue
        # the ellipse through the box's edge mid-points (pixel edges at +-0.5)
        jj, ii = np.ogrid[:h, :w]
        out[k, j0:j0 + h, i0:i0 + w] |= ((jj - (h - 1) / 2) / (h / 2)) ** 2 + ((ii - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0
    if any(reach):
        out = ndimage.maximum_filter(out, size=[2 * r + 1 for r in reach])
    return block, out


def _shifted(box, start):
    """The box in the coordinates of a block starting at ``start`` (k, j, i)."""
    from dataclasses import replace

    return replace(box, slice_index=box.slice_index - int(start[0]),
                   rows=(box.rows[0] - int(start[1]), box.rows[1] - int(start[1])),
                   cols=(box.cols[0] - int(start[2]), box.cols[1] - int(start[2])))


def _seed_in_box(inband: np.ndarray, box: Box) -> tuple[int, int, int] | None:
    """The in-band voxel of a box nearest its centre, or None."""
    k = box.slice_index
    (r0, r1), (c0, c1) = box.rows, box.cols
    sub = inband[k, r0:r1 + 1, c0:c1 + 1]
    if not sub.any():
        return None
    jj, ii = np.nonzero(sub)
    cj, ci = (r1 - r0) / 2, (c1 - c0) / 2
    t = int(np.argmin((jj - cj) ** 2 + (ii - ci) ** 2))
    return (k, r0 + int(jj[t]), c0 + int(ii[t]))


def grow_tumour(
    volume: Volume,
    boxes: TumourBoxes,
    *,
    low_hu: float = LOW_HU,
    high_hu: float = HIGH_HU,
    margin_mm: float = MARGIN_MM,
    seeds: Sequence[Sequence[int]] | None = None,
    shape: str = "ellipse",
    fill_holes: bool = True,
) -> TumourRegion:
    """Grow a 3-D tumour region from its boxes and measure it.

    Parameters
    ----------
    volume : Volume
        The CT in HU.
    boxes : TumourBoxes
        The lesion's boxes on this volume (:func:`helpers.annotations.read_boxes`);
        pass ``boxes.for_label(name)`` when a case has several lesions.
    low_hu, high_hu : float
        HU band of the lesion's voxels (default -300 .. 200 HU: solid soft tissue).
    margin_mm : float
        How far beyond each box (or its ellipse) the region may reach in-plane
        (whole pixels).  The region stays on the annotated slices: the boxes say
        which slices hold the lesion.
    seeds : sequence of (k, j, i), optional
        Start voxels; default one per box, the in-band voxel nearest its centre.
    shape : {"ellipse", "box"}
        Bound each slice by the ellipse inscribed in its box (default: a mass is
        round, and whatever fills the box's corners -- chest wall, mediastinum,
        a vessel -- is left out) or by the whole box.
    fill_holes : bool
        Fill enclosed holes slice by slice (an air bronchogram, a calcification,
        necrosis outside the band), so the volume is the lesion's, not its tissue's.

    Returns
    -------
    TumourRegion

    Raises
    ------
    DicomSeriesError
        Boxes placed on another volume (shape or series differ); no box has a
        voxel in the HU band (the band or the boxes are wrong); a given seed
        outside the band or outside the boxes.

    Notes
    -----
    The region is the union of the 6-connected components of
    ``band & boxes-with-margin`` that hold a seed.  A mass that touches the
    mediastinum or a vessel of the same density is cut where the box (plus
    margin) ends: the boxes are what keeps the region from leaking, so it can
    only be as good as they are.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> from helpers.annotations import boxes_from_mask
    >>> hu = np.full((5, 30, 30), -850, np.int16)
    >>> hu[1:4, 10:20, 8:22] = 30                   # the mass
    >>> hu[2, 14, 22:] = 40                         # a vessel leaving it
    >>> v = Volume(hu, spacing=(5.0, 1.0, 1.0))
    >>> r = grow_tumour(v, boxes_from_mask(hu == 30, v), margin_mm=2)
    >>> r.voxels, round(r.volume_ml, 2), round(r.longest_axial_mm, 1)   # the vessel's first 2 mm join
    (422, 2.11, 16.8)
    """
    from scipy import ndimage

    _check_grow_inputs(volume, boxes, low_hu=low_hu, high_hu=high_hu, shape=shape)
    block, allowed = _allowed(boxes, volume.spacing, margin_mm, shape)
    hu = volume.hu[block]
    inband = allowed & (hu >= low_hu) & (hu <= high_hu)
    start = np.array([b.start for b in block])
    seeds = _grow_seeds(volume, boxes, inband, start, seeds, low_hu=low_hu, high_hu=high_hu, margin_mm=margin_mm)
    labels, _ = ndimage.label(inband, structure=ndimage.generate_binary_structure(3, 1))
    keep = np.unique([labels[tuple(np.subtract(s, start))] for s in seeds])
    sub = np.isin(labels, keep[keep > 0])
    if fill_holes:
        for k in np.flatnonzero(sub.any(axis=(1, 2))):
            sub[k] = ndimage.binary_fill_holes(sub[k]) & allowed[k]
    region = np.zeros(volume.shape, dtype=bool)
    region[block] = sub
    return measure_tumour(region, volume, seeds=seeds)


def _check_grow_inputs(volume: Volume, boxes: TumourBoxes, *, low_hu: float, high_hu: float, shape: str) -> None:
    """Refuse boxes of another volume or series, no box, an empty HU band or an unknown shape."""
    if tuple(boxes.shape) != tuple(volume.shape):
        raise DicomSeriesError(
            f"the boxes were placed on a volume of shape {boxes.shape}, this one is {volume.shape}: "
            "read them again with read_boxes(source, volume) for this volume"
        )
    if boxes.series_uid and volume.meta.get("series_uid") and boxes.series_uid != volume.meta["series_uid"]:
        raise DicomSeriesError(
            f"the boxes belong to series {boxes.series_uid}, the volume is series "
            f"{volume.meta['series_uid']} ((0020,000E) Series Instance UID); read the boxes for this volume"
        )
    if len(boxes) == 0:
        raise DicomSeriesError("no box given: nothing to grow the tumour from")
    if not low_hu < high_hu:
        raise ValueError(f"low_hu must be below high_hu; got {low_hu} and {high_hu}")
    if shape not in ("ellipse", "box"):
        raise ValueError(f"shape must be 'ellipse' or 'box'; got {shape!r}")


def _grow_seeds(volume: Volume, boxes: TumourBoxes, inband: np.ndarray, start: np.ndarray, seeds: Any, *,
                low_hu: float, high_hu: float, margin_mm: float) -> list:
    """The seeds ``(k, j, i)``: one per box found in the HU band, or the ones given, each checked."""
    if seeds is None:
        local = [_seed_in_box(inband, _shifted(b, start)) for b in boxes]
        seeds = [tuple(int(c) for c in np.add(s, start)) for s in local if s is not None]
        if not seeds:
            inside = volume.hu[boxes.mask()]
            raise DicomSeriesError(
                f"no voxel inside the {len(boxes)} box(es) lies in {low_hu:g}..{high_hu:g} HU "
                f"(their median is {float(np.median(inside)):.0f} HU): the boxes do not hold soft tissue in "
                "this volume (boxes of another series? a ground-glass lesion?); check the boxes or widen "
                "low_hu/high_hu"
            )
    else:
        seeds = [tuple(int(c) for c in s) for s in seeds]
    for s in seeds:
        loc = tuple(np.subtract(s, start))
        if not all(0 <= c < n for c, n in zip(loc, inband.shape)) or not inband[loc]:
            raise DicomSeriesError(
                f"seed {s} is not a voxel of {low_hu:g}..{high_hu:g} HU inside the boxes (plus "
                f"{margin_mm:g} mm); pick a voxel of the mass, e.g. near a box's centre"
            )
    return seeds


def kept_fraction(kept_mask: np.ndarray, tumour_mask: np.ndarray) -> float:
    """Share of a tumour's voxels that lie inside another mask (e.g. a lung mask), 0..1.

    Parameters
    ----------
    kept_mask : ndarray, shape (z, y, x)
        Any non-zero voxel counts as kept (a lung label image works as is).
    tumour_mask : ndarray of bool, same shape

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes differ or the tumour mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros((1, 4, 4), bool); t[0, :2] = True
    >>> lungs = np.zeros((1, 4, 4), np.uint8); lungs[0, 0] = 1
    >>> kept_fraction(lungs, t)
    0.5
    """
    kept_mask, tumour_mask = np.asarray(kept_mask), np.asarray(tumour_mask, dtype=bool)
    if kept_mask.shape != tumour_mask.shape:
        raise ValueError(f"shapes differ: {kept_mask.shape} and {tumour_mask.shape}")
    n = int(tumour_mask.sum())
    if n == 0:
        raise ValueError("the tumour mask is empty")
    return float(np.count_nonzero(kept_mask[tumour_mask])) / n


def kept_table(masks: dict, tumours: dict) -> Any:
    """Share (%) of each tumour mask kept by each mask: rows tumours, columns masks.

    Parameters
    ----------
    masks : dict of str -> ndarray
        Named masks (e.g. ``{"robust mask": lungs, "2017 mask": lungs_2017}``);
        any non-zero voxel counts as kept.
    tumours : dict of str -> ndarray of bool
        Named tumour masks (a grown region, a ground truth, the solid tissue in boxes).

    Returns
    -------
    pandas.DataFrame
        Percentages rounded to 0.1, index the tumour names, columns the mask names.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros((1, 4, 4), bool); t[0, :2] = True
    >>> lungs = np.zeros((1, 4, 4), np.uint8); lungs[0, 0] = 1
    >>> kept_table({"lungs": lungs}, {"tumour": t}).to_dict()
    {'lungs': {'tumour': 50.0}}
    """
    import pandas as pd

    data = {name: [round(100 * kept_fraction(m, t), 1) for t in tumours.values()] for name, m in masks.items()}
    return pd.DataFrame(data, index=list(tumours)).rename_axis("share kept (%)")


# ----------------------------------------------------------------- drawing
def _axial_flips(volume: Volume) -> tuple[bool, bool]:
    from .display import plane_image

    p = plane_image(volume.with_array(np.zeros((1, 1, 1), np.int8), spacing=volume.spacing), "axial", 0)
    return p["flip_rows"], p["flip_cols"]


def _crop_window(volume: Volume, rows: Sequence[int], cols: Sequence[int],
                 margin_mm: float | None) -> tuple[slice, slice]:
    ny, nx = volume.shape[1:]
    if margin_mm is None:
        return slice(0, ny), slice(0, nx)
    my = int(round(margin_mm / volume.spacing[1]))
    mx = int(round(margin_mm / volume.spacing[2]))
    return (slice(max(0, rows[0] - my), min(ny, rows[1] + 1 + my)),
            slice(max(0, cols[0] - mx), min(nx, cols[1] + 1 + mx)))


def _show_slice(ax: Any, volume: Volume, k: int, rs: slice, cs: slice, window: WindowSpec, flips: Any) -> Any:
    """Draw slice ``k`` cropped to ``rs, cs``; data coordinates stay voxel ``(col, row)``."""
    from .intensity import window as apply_window

    img = apply_window(volume.hu[k, rs, cs].astype(np.float32), window)
    left, right = cs.start - 0.5, cs.stop - 0.5
    top, bottom = rs.start - 0.5, rs.stop - 0.5
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(left, right, bottom, top),
              aspect=volume.spacing[1] / volume.spacing[2], interpolation="antialiased")
    # radiological convention by flipping the view, not the data
    ax.set_xlim((right, left) if flips[1] else (left, right))
    ax.set_ylim((top, bottom) if flips[0] else (bottom, top))
    ax.set_xticks([])
    ax.set_yticks([])


def _box_patch(box, **style):
    from matplotlib.patches import Rectangle

    (r0, r1), (c0, c1) = box.rows, box.cols
    return Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, **style)


def draw_tumour(
    volume: Volume,
    region: TumourRegion,
    *,
    boxes: TumourBoxes | None = None,
    window: WindowSpec = TUMOUR_WINDOW,
    margin_mm: float | None = 30.0,
    size_in: float = 5.0,
    title: str | None = None,
) -> Any:
    """The slice of the longest diameter: region outline, diameter and its length, the box.

    Parameters
    ----------
    volume : Volume
    region : TumourRegion
        From :func:`grow_tumour` or :func:`measure_tumour`.
    boxes : TumourBoxes, optional
        Drawn (dashed) when one lies on that slice.
    window : str or (level, width)
        Display window (default mediastinum: a mass is soft tissue).
    margin_mm : float or None
        Field of view around the lesion; ``None`` shows the whole slice.
    size_in : float
        Height of the figure in inches.
    title : str, optional
        Default: volume, diameter, mean HU, slice.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.full((3, 40, 40), -800, np.int16), spacing=(5.0, 0.8, 0.8))
    >>> m = np.zeros(v.shape, bool); m[1, 10:20, 12:30] = True
    >>> fig = draw_tumour(v, measure_tumour(m, v))
    >>> "mm" in fig.axes[0].get_title()
    True
    """
    from .display import _new_figure, _orientation_marks

    k = region.slice_index
    rows_any = np.flatnonzero(region.mask[k].any(axis=1))
    cols_any = np.flatnonzero(region.mask[k].any(axis=0))
    rs, cs = _crop_window(volume, (rows_any[0], rows_any[-1]), (cols_any[0], cols_any[-1]), margin_mm)
    aspect = volume.spacing[1] / volume.spacing[2]
    h, w = (rs.stop - rs.start) * aspect, cs.stop - cs.start
    fig = _new_figure((size_in * w / h + 0.3, size_in + 0.7))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.65 / (size_in + 0.7))
    flips = _axial_flips(volume)
    _show_slice(ax, volume, k, rs, cs, window, flips)
    ax.contour(np.arange(volume.shape[2]), np.arange(volume.shape[1]), region.mask[k].astype(np.float32),
               levels=[0.5], colors=["#E69F00"], linewidths=1.4)
    if boxes is not None:
        for b in boxes:
            if b.slice_index == k:
                ax.add_patch(_box_patch(b, edgecolor="#56B4E9", linestyle="--", linewidth=1.2))
    (r0, c0), (r1, c1) = region.endpoints
    ax.plot([c0, c1], [r0, r1], "-", color="#F0E442", linewidth=1.6)
    ax.plot([c0, c1], [r0, r1], "o", color="#F0E442", markersize=4)
    from matplotlib import patheffects

    ax.annotate(f"{region.longest_axial_mm:.1f} mm", ((c0 + c1) / 2, (r0 + r1) / 2), color="#F0E442",
                fontsize=11, fontweight="bold", ha="center", va="bottom", xytext=(0, 6),
                textcoords="offset points",
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])
    _orientation_marks(ax, _letters_for(volume))
    ax.set_title(title or (
        f"slice {k} (z {region.z_mm:+.1f} mm): longest axial diameter {region.longest_axial_mm:.1f} mm; "
        f"{region.volume_ml:.1f} mL, mean {region.mean_hu:.0f} HU"), fontsize=9)
    return fig


def _letters_for(volume: Volume) -> dict:
    from .display import plane_image

    p = plane_image(volume.with_array(np.zeros((1, 1, 1), np.int8), spacing=volume.spacing), "axial", 0)
    return {key: p[key] for key in ("top", "bottom", "left", "right")}


def box_montage(
    volume: Volume,
    boxes: TumourBoxes,
    *,
    cols: int = 4,
    window: WindowSpec = TUMOUR_WINDOW,
    margin_mm: float | None = 25.0,
    ax_size_in: float = 2.2,
    region: TumourRegion | None = None,
) -> Any:
    """Every annotated slice, zoomed on its box, with the box drawn and index/z written.

    Parameters
    ----------
    volume : Volume
    boxes : TumourBoxes
    cols : int
        Tiles per row.
    window : str or (level, width)
    margin_mm : float or None
        Field of view around the union of all boxes (the same on every tile, so
        the anatomy lines up from tile to tile); ``None`` shows whole slices.
    ax_size_in : float
        Width of one tile in inches.
    region : TumourRegion, optional
        Also outline a grown region.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> from helpers.annotations import boxes_from_mask
    >>> v = Volume(np.full((6, 40, 40), -800, np.int16), spacing=(5.0, 0.8, 0.8))
    >>> m = np.zeros(v.shape, bool); m[1:4, 10:20, 12:30] = True
    >>> fig = box_montage(v, boxes_from_mask(m, v), cols=2)
    >>> len([ax for ax in fig.axes if ax.images])
    3
    """
    import math

    from .display import _new_figure

    ks = boxes.slice_indices
    _, rsl, csl = boxes.bounding_box()
    rs, cs = _crop_window(volume, (rsl.start, rsl.stop - 1), (csl.start, csl.stop - 1), margin_mm)
    cols = max(1, min(cols, len(ks)))
    nrows = math.ceil(len(ks) / cols)
    aspect = volume.spacing[1] / volume.spacing[2]
    tile_h = ax_size_in * (rs.stop - rs.start) * aspect / (cs.stop - cs.start)
    title_in = 0.4
    fig = _new_figure((cols * ax_size_in, nrows * tile_h + title_in))
    axes = fig.subplots(nrows, cols, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - title_in / (nrows * tile_h + title_in))
    flips = _axial_flips(volume)
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    for t, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if t >= len(ks):
            continue
        k = ks[t]
        _show_slice(ax, volume, k, rs, cs, window, flips)
        for b in boxes:
            if b.slice_index == k:
                ax.add_patch(_box_patch(b, edgecolor="#56B4E9", linewidth=1.2))
        if region is not None and region.mask[k].any():
            ax.contour(np.arange(volume.shape[2]), np.arange(volume.shape[1]),
                       region.mask[k].astype(np.float32), levels=[0.5], colors=["#E69F00"], linewidths=1.0)
        ax.text(0.03, 0.97, f"{k}\n{volume.slice_positions[k]:+.1f} mm", transform=ax.transAxes,
                ha="left", va="top", color="yellow", fontsize=max(8, 4.5 * ax_size_in), linespacing=1.1,
                path_effects=outline)
    lo, hi = boxes.z_range_mm
    letters = _letters_for(volume)
    fig.suptitle(f"{len(boxes)} box(es) on slices {ks[0]}..{ks[-1]} (z {lo:+.1f}..{hi:+.1f} mm); "
                 f"image left = patient {letters['left']}; tiles: index, z", fontsize=11, va="top",
                 y=1 - 0.05 * title_in / (nrows * tile_h + title_in))
    return fig


def tumour_viewer(
    volume: Volume,
    boxes: TumourBoxes,
    *,
    margin_mm: float = 50.0,
    extra_slices: int = 3,
    window: WindowSpec = TUMOUR_WINDOW,
    max_size_px: int = 320,
    region: TumourRegion | None = None,
) -> Any:
    """The book's slice viewer (:func:`helpers.display.slice_viewer`) zoomed on the lesion.

    It pages through the annotated slices plus ``extra_slices`` above and below,
    on a field of view ``margin_mm`` around the boxes; on each slice that has a
    box it is drawn (and the grown region's outline box when ``region`` is
    given).  Scroll through it: a vessel moves from slice to slice, a mass stays.

    Parameters
    ----------
    volume : Volume
    boxes : TumourBoxes
    margin_mm : float
    extra_slices : int
    window : str or (level, width)
    max_size_px : int
    region : TumourRegion, optional

    Returns
    -------
    plotly.graph_objects.Figure
        Works on the static site (no kernel): every step swaps the image and the shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> from helpers.annotations import boxes_from_mask
    >>> v = Volume(np.full((9, 40, 40), -800, np.int16), spacing=(5.0, 0.8, 0.8))
    >>> m = np.zeros(v.shape, bool); m[3:6, 10:20, 12:30] = True
    >>> fig = tumour_viewer(v, boxes_from_mask(m, v), extra_slices=1)
    >>> len(fig.layout.sliders[0].steps), len(fig.layout.shapes)
    (5, 1)
    """
    from .display import slice_viewer

    ks = boxes.slice_indices
    k0, k1 = max(0, ks[0] - extra_slices), min(volume.shape[0], ks[-1] + 1 + extra_slices)
    _, rsl, csl = boxes.bounding_box()
    rs, cs = _crop_window(volume, (rsl.start, rsl.stop - 1), (csl.start, csl.stop - 1), margin_mm)
    sub = Volume(volume.hu[k0:k1, rs, cs], volume.spacing,
                 origin=tuple(volume.index_to_lps((k0, rs.start, cs.start))), direction=volume.direction,
                 positions=volume.positions[k0:k1] + (volume.index_to_lps((0, rs.start, cs.start))
                                                      - volume.index_to_lps((0, 0, 0))),
                 meta=dict(volume.meta))
    fig = slice_viewer(sub, window=window, max_slices=k1 - k0, max_size_px=max_size_px,
                       title="tumour", image_format="jpeg")
    flips = _axial_flips(volume)
    ny, nx = sub.shape[1:]
    sy, sx = volume.spacing[1], volume.spacing[2]

    def rect(j0, j1, i0, i1, line):
        """Plotly rectangle around crop pixels rows j0..j1, cols i0..i1 (x, y in mm from the image corner)."""
        xs = sorted(((nx - e) if flips[1] else e) * sx for e in (i0, i1 + 1))
        ys = sorted(((ny - e) if flips[0] else e) * sy for e in (j0, j1 + 1))
        return {"type": "rect", "x0": xs[0], "x1": xs[1], "y0": ys[0], "y1": ys[1], "line": line}

    def shapes_for(k):
        out = [rect(b.rows[0] - rs.start, b.rows[1] - rs.start, b.cols[0] - cs.start, b.cols[1] - cs.start,
                    {"color": "#56B4E9", "width": 2})
               for b in boxes if b.slice_index == k]
        if region is not None and region.mask[k, rs, cs].any():
            jj, ii = np.nonzero(region.mask[k, rs, cs])
            out.append(rect(jj.min(), jj.max(), ii.min(), ii.max(), {"color": "#E69F00", "width": 1, "dash": "dot"}))
        return out

    steps = fig.layout.sliders[0].steps
    new_steps = []
    for st in steps:
        k = k0 + int(st.label)
        args = list(st.args)
        layout = dict(args[1])
        layout["shapes"] = shapes_for(k)
        layout["title.text"] = layout["title.text"].replace(f"axial slice {st.label} ", f"axial slice {k} ")
        new_steps.append(dict(method=st.method, label=str(k), args=[args[0], layout]))
    active = fig.layout.sliders[0].active
    fig.layout.sliders[0].steps = new_steps
    fig.update_layout(shapes=shapes_for(k0 + active), title_text=new_steps[active]["args"][1]["title.text"])
    return fig
