"""Lung segmentation that holds on real scans.

* :func:`segment_lungs` -- the method this package recommends.  3-D, in physical
  units (every threshold in HU, every size in mm or mL), right and left lung
  labelled separately, trachea and main bronchi excluded, tumours that bite
  into the lung (at the chest wall, the hilum, the mediastinum) kept inside
  the mask, the heart and mediastinal fat left out.  :func:`lung_qc` checks
  the result.

The two 2017 methods it replaces (the tutorial's per-slice ``make_lungmask`` and
the Kaggle kernel's 3-D ``segment_lung_mask``) are in :mod:`helpers.legacy`, with
the rest of the 2017 code, so a chapter can run them side by side.

How :func:`segment_lungs` works
-------------------------------
1. **Work grid.**  Connected components and morphology run on a block-averaged
   copy at about ``work_spacing_mm`` (2 mm); only the last step touches every
   full-resolution voxel.
2. **Body.**  The largest connected component above ``body_threshold_hu``, holes
   filled slice by slice.  Air outside the patient, in the table and its cushion
   is outside this mask.
3. **Air inside the body** below ``air_threshold_hu``.
4. **Airway.**  The trachea is the midline air tube in the upper slices; it is
   followed slice by slice towards the feet, through the carina into both main
   bronchi, and each branch stops where its cross-section jumps in area (it has
   reached lung: the leak guard).  The airway, grown by ``airway_margin_mm``, is
   removed.
5. **Pick the lungs** among the 3-D air components: the largest one, and a second
   one on the other side of the body's midline that is at least
   ``min_lung_fraction`` of its size and reaches as high as the first one's
   middle (bowel gas and the stomach bubble sit lower).  One component
   spanning both sides (lungs touching at the midline) is cut slice by slice
   along the antero-posterior line, near the body's midline, that crosses the
   fewest lung voxels (the junction line).
6. **Side** from patient coordinates: the lung with the smaller LPS ``x`` (the
   patient's right is towards negative ``x``) is label 1, whatever the image's
   orientation on screen.
7. **Tumours: bites kept, the mediastinum left out.**  Each lung is closed on
   its own with two balls.  A small one (``mediastinal_closing_radius_mm``,
   8 mm) is accepted everywhere: vessels at the hilum, juxtamediastinal
   nodules.  A large one (``closing_radius_mm``, 30 mm) rolls over tumours;
   each connected region it adds is kept only when it is a *bite*: deeper
   (from tissue that is neither lung nor addition) than ``bite_depth_ratio``
   times the equivalent radius of its opening, and surrounded by enough lung
   (``min_enclosure`` at ``enclosure_mm``).  The crescent a ball lays over
   the heart or a hilum is wide and shallow, so it is left out; of a bite,
   only what lies within ``bite_core_mm`` of its deep part is kept.  Nothing
   is ever added across the smooth 3-D midline between the lungs (each voxel
   belongs to the lung nearest to it, so no row- or column-aligned edge),
   within ``airway_guard_mm`` of the trachea and main bronchi, in bulk fat
   (``fat_hu``), or outside the body.  Next to a bite, the slice's convex hull
   fills the sliver the ball leaves against a flat chest wall
   (``hull_margin_mm``), and where the bite touches the chest wall, tissue as
   deep below the skin as the pleura around it is lung (``pleura_fill_mm``).
   Holes enclosed by a lung alone are filled in 3-D, never slice by slice: in
   an axial slice the top of a diaphragm dome is an island of liver
   surrounded by lung.
8. **Full resolution.**  Voxels deep inside a lung keep its label; voxels in a
   one-work-voxel band around the surface are lung when they are below
   ``air_threshold_hu`` (or were added as tumour in step 7).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from ._arrays import bincount_blocks
from .errors import DicomSeriesError, SeriesWarning
from .hu import BODY_THRESHOLD_HU
from .volume import Volume, as_array, as_volume

__all__ = [
    "segment_lungs",
    "LungParams",
    "lung_qc",
    "RIGHT_LUNG",
    "LEFT_LUNG",
]

#: Label of the patient's right lung in :func:`segment_lungs` output.
RIGHT_LUNG = 1
#: Label of the patient's left lung.
LEFT_LUNG = 2

# ------------------------------------------------------------------ defaults
#: Voxels below this (HU) are air-like: lung parenchyma, airway, gas.
AIR_THRESHOLD_HU = -400.0
# BODY_THRESHOLD_HU (voxels above it are body tissue: fat is about -100 HU, the cushion foam
# below) comes from helpers.hu, shared with crop_or_pad.
#: Spacing (mm) of the block-averaged copy used for components and morphology.
WORK_SPACING_MM = 2.0
#: A lung component must hold at least this many mL of air.
MIN_LUNG_ML = 20.0
#: The second lung must be at least this fraction of the first one's volume.
MIN_LUNG_FRACTION = 0.08
#: Trachea search: cross-section area range (mm^2) of the tracheal lumen.
TRACHEA_AREA_MM2 = (40.0, 900.0)
#: Trachea search: its centre lies within this distance (mm) of the body's midline.
TRACHEA_MIDLINE_MM = 35.0
#: Trachea search: look in this upper fraction of the slices holding air.
TRACHEA_SEARCH_FRACTION = 0.5
#: Airway tracking stops when a cross-section is this many times the previous one.
AIRWAY_LEAK_FACTOR = 2.5
#: Airway tracking stops when a cross-section exceeds this area (mm^2).
AIRWAY_MAX_AREA_MM2 = 900.0
#: The airway is grown by this margin (mm) before it is cut out of the lungs.
AIRWAY_MARGIN_MM = 3.0
#: Main bronchi are cut out down to this distance (mm, along z) below the carina.
BRONCHUS_LENGTH_MM = 25.0
#: Joined lungs are cut, slice by slice, within this distance (mm) of the body's midline.
SPLIT_SEARCH_MM = 40.0
#: Radius (mm) of the large ball closing each lung; what it adds is kept only
#: where it is a bite (keeps tumours; fills bites up to about twice this wide).
CLOSING_RADIUS_MM = 30.0
#: A closing addition is a bite when its deepest voxel lies at least this many
#: times its opening's equivalent radius from tissue outside lung and addition.
BITE_DEPTH_RATIO = 1.1
#: Of a bite, only what lies within this distance (mm) of its part this deep is kept.
BITE_CORE_MM = 10.0
#: Scale (mm, Gaussian sigma) of the "how much lung surrounds this voxel" measure.
ENCLOSURE_MM = 25.0
#: A closing addition must be surrounded by at least this fraction of lung (at ``ENCLOSURE_MM``).
MIN_ENCLOSURE = 0.3
#: What the closing adds stays this far (mm) from the tracked trachea and main bronchi.
AIRWAY_GUARD_MM = 8.0
#: Bulk tissue in this HU range (work grid, after a one-voxel opening) is fat, never a bite.
FAT_HU = (-200.0, -40.0)
#: Radius (mm) of the small ball closing each lung everywhere, accepted without
#: the bite test (vessels, juxtamediastinal nodules; the heart's wide impression stays out).
MEDIASTINAL_CLOSING_RADIUS_MM = 8.0
#: Next to a sizeable bite, the slice's convex hull fills the sliver the ball
#: leaves against a flat chest wall, within this distance (mm) of the bite.
HULL_MARGIN_MM = 10.0
#: A closing addition of at least this volume (mL) is a bite (tumour) worth the hull.
MIN_BITE_ML = 0.5
#: Bites are grown by this margin (mm): their edge at the pleura is only known to
#: a work voxel, and the tumour's rim should not be shaved off.
BITE_MARGIN_MM = 3.0
#: Next to a bite on the chest wall, voxels within this distance (mm) of it and
#: as deep below the skin as the pleura around it (up to this much deeper) are lung.
PLEURA_FILL_MM = 8.0

#: A scan needs at least this many slices for a 3-D lung segmentation.
MIN_SLICES = 3
#: The largest air component spans both lungs (joined at the midline or through
#: an airway) when at least this fraction of its voxels lies on each side of the body's midline.
JOINED_SIDE_FRACTION = 0.2
#: Around a bite, the chest wall's depth below the skin is measured within this distance (mm).
WALL_SEARCH_MM = 60.0
#: A bite touches the chest wall when it comes within this many work voxels
#: (of the largest spacing) of the depth of the pleura next to it.
WALL_TOUCH_VOXELS = 1.5
#: A slice needs at least this many lung pixels for a convex hull (a triangle).
HULL_MIN_PIXELS = 3


@dataclasses.dataclass(frozen=True)
class LungParams:
    """Every threshold and size of :func:`segment_lungs`, with its unit.

    Attributes
    ----------
    air_threshold_hu : float, default -400
        Lung parenchyma and airway air are below this (HU).
    body_threshold_hu : float, default -500
        Body tissue is above this (HU); the largest such component is the patient.
    work_spacing_mm : float, default 2.0
        Spacing of the block-averaged copy on which components and morphology run.
    min_slices : int, default 3
        Fewer slices than this raise :class:`~helpers.errors.DicomSeriesError`.
    min_lung_ml : float, default 20
        Smallest air component (mL) considered a lung.
    min_lung_fraction : float, default 0.08
        The second lung holds at least this fraction of the first one's air.
    trachea_area_mm2 : (float, float), default (40, 900)
        Cross-section area range (mm^2) of a tracheal lumen.
    trachea_midline_mm : float, default 35
        The trachea's centre is within this distance (mm) of the body's midline.
    trachea_search_fraction : float, default 0.5
        The trachea is looked for in this upper fraction of the slices holding air.
    airway_leak_factor : float, default 2.5
        Airway tracking stops where a branch's cross-section grows by more than this factor.
    airway_max_area_mm2 : float, default 900
        Airway tracking stops where a branch's cross-section exceeds this area (mm^2).
    airway_margin_mm : float, default 3
        The airway is grown by this margin (mm, its wall) before it is cut out.
    bronchus_length_mm : float, default 25
        Below the carina the main bronchi are followed for this distance (mm) along z.
    split_search_mm : float, default 40
        Lungs joined at the midline are cut, slice by slice, within this distance (mm)
        of the body's midline.
    closing_radius_mm : float, default 30
        Radius (mm) of the large ball closing each lung; what it adds is kept
        only where it is a compact bite (a tumour); 0 switches it off.
    mediastinal_closing_radius_mm : float, default 8
        Radius (mm) of the small ball closing each lung everywhere, kept
        without the bite test (vessels at the hilum, juxtamediastinal nodules);
        0 switches it off.
    bite_depth_ratio : float, default 1.1
        A large-ball addition is a bite when its deepest voxel lies at least this
        many times the equivalent radius of its opening (mm) from tissue that is
        neither lung nor addition: a tumour's bite is deep, the crescent the ball
        lays over the heart or a hilum is shallow and wide.
    bite_core_mm : float, default 10
        Of a bite, only what lies within this distance (mm) of its part at least
        this deep is kept (trims thin crescents attached to it); 0 keeps all.
    enclosure_mm : float, default 25
        Gaussian scale (mm) of the share of lung around a voxel.
    min_enclosure : float, default 0.3
        Large-ball additions must have at least this share of lung around them.
    airway_guard_mm : float, default 8
        Nothing is added within this distance (mm) of the tracked trachea and main bronchi.
    fat_hu : (float, float), default (-200, -40)
        Bulk tissue in this HU range (work grid, after a one-voxel opening) is
        fat and never added (the anterior mediastinal fat wedge).
    hull_margin_mm : float, default 10
        Next to a bite, the slice's convex hull fills the sliver the ball leaves
        against a flat chest wall, within this distance (mm); 0 switches it off.
    min_bite_ml : float, default 0.5
        Smallest bite (mL) for ``hull_margin_mm`` and ``bite_margin_mm``.
    bite_margin_mm : float, default 3
        Bites are grown by this margin (mm): their edge at the pleura is only
        known to one work voxel; 0 switches it off.
    pleura_fill_mm : float, default 8
        Next to a bite touching the chest wall, voxels within this distance (mm)
        of it, as deep below the skin as the pleura around it and at most this
        much deeper, are lung; 0 switches it off.

    Examples
    --------
    >>> LungParams().closing_radius_mm
    30.0
    >>> LungParams(closing_radius_mm=0).closing_radius_mm
    0
    """

    air_threshold_hu: float = AIR_THRESHOLD_HU
    body_threshold_hu: float = BODY_THRESHOLD_HU
    work_spacing_mm: float = WORK_SPACING_MM
    min_slices: int = MIN_SLICES
    min_lung_ml: float = MIN_LUNG_ML
    min_lung_fraction: float = MIN_LUNG_FRACTION
    trachea_area_mm2: tuple[float, float] = TRACHEA_AREA_MM2
    trachea_midline_mm: float = TRACHEA_MIDLINE_MM
    trachea_search_fraction: float = TRACHEA_SEARCH_FRACTION
    airway_leak_factor: float = AIRWAY_LEAK_FACTOR
    airway_max_area_mm2: float = AIRWAY_MAX_AREA_MM2
    airway_margin_mm: float = AIRWAY_MARGIN_MM
    bronchus_length_mm: float = BRONCHUS_LENGTH_MM
    split_search_mm: float = SPLIT_SEARCH_MM
    closing_radius_mm: float = CLOSING_RADIUS_MM
    mediastinal_closing_radius_mm: float = MEDIASTINAL_CLOSING_RADIUS_MM
    bite_depth_ratio: float = BITE_DEPTH_RATIO
    bite_core_mm: float = BITE_CORE_MM
    enclosure_mm: float = ENCLOSURE_MM
    min_enclosure: float = MIN_ENCLOSURE
    airway_guard_mm: float = AIRWAY_GUARD_MM
    fat_hu: tuple[float, float] = FAT_HU
    hull_margin_mm: float = HULL_MARGIN_MM
    min_bite_ml: float = MIN_BITE_ML
    bite_margin_mm: float = BITE_MARGIN_MM
    pleura_fill_mm: float = PLEURA_FILL_MM


def _params(params: LungParams | None, options: dict) -> LungParams:
    """``params`` (or the defaults) with keyword ``options`` replacing fields of the same name."""
    p = LungParams() if params is None else params
    if not isinstance(p, LungParams):
        raise TypeError(f"params must be a LungParams, got {type(p).__name__}")
    names = {f.name for f in dataclasses.fields(LungParams)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(
            f"segment_lungs got unknown option(s) {', '.join(unknown)}; the options are the fields "
            f"of LungParams: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(p, **options) if options else p


_SIX = ndimage.generate_binary_structure(3, 1)
_INPLANE = np.zeros((3, 3, 3), bool)
_INPLANE[1] = ndimage.generate_binary_structure(2, 1)


# ================================================================== utilities
def _pad_voxels(mm: float, spacing: Sequence[float]) -> list[int]:
    """Voxels per axis that cover ``mm`` (rounded up) plus one: the margin of a crop around a mask."""
    return [int(math.ceil(mm / s)) + 1 for s in spacing]


def _factors(spacing: Sequence[float], work_spacing_mm: float) -> tuple[int, int, int]:
    """Integer block sizes giving about ``work_spacing_mm`` (rounding up from 3/4 of a step)."""
    fz, fy, fx = (max(1, int(math.ceil(work_spacing_mm / s - 0.25))) for s in spacing)
    return fz, fy, fx


def _block_mean(hu: np.ndarray, f: tuple[int, int, int], *, chunk_slices: int = 16) -> np.ndarray:
    """Block-average ``hu`` by integer factors ``f`` (edge blocks padded by edge values), float32.

    The float32 sums are taken in the order numpy's
    ``block.reshape(k, fz, my, fy, mx, fx).mean(axis=(1, 3, 5))`` takes them (the
    ``fx`` neighbours of a row summed first, those row sums added in (z, y)
    order), as strided whole-array additions: the same bits, about 7x faster
    than numpy's reduction over length-2 axes (``tests/test_segment.py`` checks
    it against the reshape-mean).
    """
    nz, ny, nx = hu.shape
    fz, fy, fx = f
    mz, my, mx = -(-nz // fz), -(-ny // fy), -(-nx // fx)
    out = np.empty((mz, my, mx), np.float32)
    step = max(1, chunk_slices // fz)
    for k0 in range(0, mz, step):
        k1 = min(mz, k0 + step)
        block = hu[k0 * fz : min(nz, k1 * fz)].astype(np.float32, copy=False)
        pad = ((0, (k1 - k0) * fz - block.shape[0]), (0, my * fy - ny), (0, mx * fx - nx))
        if any(p[1] for p in pad):
            block = np.pad(block, pad, mode="edge")
        out[k0:k1] = _block_sum(block, f) / np.float32(fz * fy * fx)
    return out


def _block_sum(block: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    """Float32 sums of the ``f`` blocks of ``block`` (shape a multiple of ``f``), in numpy's reduction order."""
    fz, fy, fx = f
    if fx >= 8:  # numpy sums 8 or more neighbours pairwise: let it
        k, ny, nx = block.shape
        return block.reshape(k // fz, fz, ny // fy, fy, nx // fx, fx).sum(axis=(1, 3, 5), dtype=np.float32)
    acc = None
    for a in range(fz):
        for b in range(fy):
            row = block[a::fz, b::fy, 0::fx].copy()
            for c in range(1, fx):
                row += block[a::fz, b::fy, c::fx]
            if acc is None:
                acc = row
            else:
                acc += row
    assert acc is not None  # every factor is at least 1: the loops ran
    return acc


def _largest(labels: np.ndarray, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(labels.shape, bool)
    counts = bincount_blocks(labels, minlength=n + 1)
    counts[0] = 0
    return labels == int(np.argmax(counts))


def _fill_holes(mask: np.ndarray, structure: np.ndarray = _SIX) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask, structure)``, by labelling the background once.

    A background voxel is a hole unless its component (``structure`` connectivity)
    touches the array's border where ``structure`` reaches outside it: every face
    for a 3-D structure, the in-plane edges only for :data:`_INPLANE`.  Same result
    as scipy's iterated dilation from the border, in one labelling pass.
    """
    lab, n = ndimage.label(~mask, structure=structure)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    faces = [lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]]
    if structure[0].any() or structure[2].any():
        faces += [lab[0], lab[-1]]
    for face in faces:
        outside[face] = True
    outside[0] = True  # the mask itself
    filled = ~outside[lab]
    filled |= mask
    return filled


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice (axial planes) in one call."""
    return _fill_holes(mask, _INPLANE)


def _edt(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm, float32) of every ``True`` voxel to the nearest ``False`` one.

    The same distances as ``scipy.ndimage.distance_transform_edt(mask, sampling=...)``
    (to float32 precision; ``tests/test_segment.py`` checks it), from the ``edt``
    package (Felzenszwalb-Huttenlocher, anisotropic, float32): about 3x faster
    than scipy's feature transform on one core and a quarter of its memory (no
    index arrays).  A mask without a ``False`` voxel is infinitely far from one.
    """
    import edt

    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.all():
        return np.full(mask.shape, np.inf, np.float32)
    return edt.edt(mask, anisotropy=tuple(float(s) for s in sampling), black_border=False, parallel=1)


def _nearest_label(labels: np.ndarray, sampling: Sequence[float], *, chunk_slices: int = 16) -> np.ndarray:
    """For every voxel, the label (uint8) of the nearest non-zero voxel of ``labels`` (in mm)."""
    ft = ndimage.distance_transform_edt(labels == 0, sampling=sampling, return_distances=False, return_indices=True)
    out = np.empty(labels.shape, labels.dtype)
    for k0 in range(0, labels.shape[0], chunk_slices):  # gather in chunks: fancy indexing makes intp copies
        k1 = min(labels.shape[0], k0 + chunk_slices)
        out[k0:k1] = labels[ft[0, k0:k1], ft[1, k0:k1], ft[2, k0:k1]]
    return out


def _pad_mask(mask: np.ndarray, pad: Sequence[tuple[int, int]]) -> np.ndarray:
    """``mask`` padded with ``False`` by ``pad`` ((before, after) voxels per axis); itself when no pad."""
    return np.pad(mask, pad) if any(a or b for a, b in pad) else mask


def _closing_edt(mask: np.ndarray, radius_mm: float, spacing: Sequence[float], *,
                 pad: Sequence[tuple[int, int]] | None = None,
                 outside: np.ndarray | None = None) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm`` (exact, via distance maps).

    ``pad`` (voxels per axis, as ``(before, after)`` pairs) is added around the
    mask first so the closing is extensive at the array's edges; by default a
    full radius on every side.  ``outside``: the distance map
    ``_edt(~padded mask)`` when it is already known (two closings of one mask
    with the same ``pad`` share it).
    """
    if pad is None:
        p = _pad_voxels(radius_mm, spacing)
        pad = [(q, q) for q in p]
    if outside is None:
        outside = _edt(~_pad_mask(mask, pad), spacing)
    dil = outside <= radius_mm
    clo = _edt(dil, spacing) > radius_mm
    del dil
    sl = tuple(slice(a, a + n) for (a, _), n in zip(pad, mask.shape))
    return clo[sl] | mask


def _crop_with_deficit(mask: np.ndarray, margin: Sequence[int]) -> tuple[tuple[slice, ...], list[tuple[int, int]]]:
    """Bounding box of ``mask`` grown by ``margin`` voxels, and the margin the array edge cut off."""
    sl = _bbox(mask, margin)
    idx = [np.nonzero(mask.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    deficit = []
    for i, (_s, m, n) in enumerate(zip(sl, margin, mask.shape)):
        lo = max(0, m - int(idx[i][0]))
        hi = max(0, m - (n - 1 - int(idx[i][-1])))
        deficit.append((lo, hi))
    return sl, deficit


def _centroid(mask: np.ndarray) -> np.ndarray:
    """Mean index of a 3-D mask's voxels, from its marginal sums (no index arrays)."""
    n = float(mask.sum())
    return np.array([float((mask.sum(axis=tuple(j for j in range(3) if j != i)) * np.arange(mask.shape[i])).sum()) / n
                     for i in range(3)])


def _bbox(mask: np.ndarray, margin: Sequence[int] = (0, 0, 0)) -> tuple[slice, ...]:
    idx = [np.nonzero(mask.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    return tuple(
        slice(max(0, int(i[0]) - m), min(n, int(i[-1]) + 1 + m)) for i, m, n in zip(idx, margin, mask.shape)
    )


class _Grid:
    """Mapping between the work grid and the volume's indices / LPS coordinates."""

    def __init__(self, volume: Volume, f: Sequence[int]) -> None:
        self.vol = volume
        self.f = np.asarray(f, float)
        self.spacing = tuple(float(s) * int(k) for s, k in zip(volume.spacing, f))
        # unit LPS vectors of the array axes
        self.dir = volume.direction

    def lps(self, idx: ArrayLike) -> np.ndarray:
        """LPS (mm) of work-grid indices ``(..., 3)``."""
        full = np.asarray(idx, float) * self.f + (self.f - 1) / 2.0
        return self.vol.index_to_lps(full)

    def lps_x(self, idx: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """LPS x (mm) of the work-grid voxels ``(iz, iy, ix)`` (index arrays), without an (N, 3) copy."""
        coef = self.dir[0] * np.asarray(self.vol.spacing, float)
        x = np.full(len(idx[0]), float(np.asarray(self.vol.origin, float)[0]))
        for i, f, c in zip(idx, self.f, coef):
            if c != 0:
                x += (i * f + (f - 1) / 2.0) * c
        return x

    def superior_axis_sign(self) -> float:
        """+1 if the array's z index grows towards the head, -1 if towards the feet."""
        s = float(self.dir[2, 0])
        return 1.0 if s >= 0 else -1.0

    def right_axis(self) -> tuple[int, float]:
        """(axis index, sign): the array axis (1=y rows, 2=x columns) most aligned with LPS +x (patient's left)."""
        comps = [abs(self.dir[0, 1]), abs(self.dir[0, 2])]
        ax = 1 + int(np.argmax(comps))
        return ax, float(np.sign(self.dir[0, ax]) or 1.0)

    def posterior_axis(self) -> tuple[int, float]:
        """(axis index, sign): the in-plane array axis most aligned with LPS +y (posterior)."""
        comps = [abs(self.dir[1, 1]), abs(self.dir[1, 2])]
        ax = 1 + int(np.argmax(comps))
        return ax, float(np.sign(self.dir[1, ax]) or 1.0)


# ================================================================== the method
@overload
def segment_lungs(volume: Volume, *, params: LungParams | None = ..., return_steps: Literal[False] = ...,
                  **options: Any) -> np.ndarray: ...


@overload
def segment_lungs(volume: Volume, *, params: LungParams | None = ..., return_steps: Literal[True],
                  **options: Any) -> tuple[np.ndarray, dict[str, Any]]: ...


@overload
def segment_lungs(volume: Volume, *, params: LungParams | None = ..., return_steps: bool = ...,
                  **options: Any) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]: ...


def segment_lungs(volume: Volume, *, params: LungParams | None = None, return_steps: bool = False,
                  **options: Any) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Segment the right and left lung of a CT volume in 3-D.

    Parameters
    ----------
    volume : Volume
        CT in HU.  Its ``direction`` and ``origin`` decide which lung is the
        patient's right, its spacing turns every mm and mL into voxels.  A bare
        array is refused: wrap it as ``Volume(array, spacing=(z, y, x))``.
    params : LungParams, optional
        Every threshold (HU) and size (mm, mL) of the method, grouped; see
        :class:`LungParams` for each field, its unit and default.
    **options
        Any :class:`LungParams` field by name (``closing_radius_mm=0``),
        overriding ``params``; an unknown name raises :class:`TypeError`.
    return_steps : bool, default False
        Also return a dict of intermediate work-grid masks (for teaching).

    Returns
    -------
    labels : ndarray of uint8, shape (z, y, x)
        0 background, 1 the patient's right lung, 2 the left lung.
    steps : dict
        Only with ``return_steps=True``: work-grid arrays ``body``, ``air``,
        ``airway``, ``lungs_raw`` (labels before closing), ``added`` (voxels the
        closing and hole filling added), ``labels_work``, and ``work_spacing``.

    Raises
    ------
    ValueError
        If the input is not 3-D, or is a bare array (no spacing).
    DicomSeriesError
        If the volume has fewer than ``min_slices`` slices (a single slice
        has no 3-D lung to find).
    TypeError
        If an option is not a :class:`LungParams` field.

    Notes
    -----
    See the module docstring for the steps.  When no lung is found, the result
    is all zeros and a :class:`~helpers.errors.SeriesWarning` says so;
    :func:`lung_qc` flags implausible results.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> hu = np.full((20, 64, 64), -1000, np.int16)
    >>> zz, yy, xx = np.mgrid[:20, :64, :64]
    >>> hu[(yy - 32) ** 2 / 28**2 + (xx - 32) ** 2 / 30**2 < 1] = 40      # body
    >>> hu[(2 < zz) & (zz < 18) & ((yy - 32) ** 2 + (xx - 18) ** 2 < 100)] = -850  # lung on low x
    >>> hu[(2 < zz) & (zz < 18) & ((yy - 32) ** 2 + (xx - 46) ** 2 < 100)] = -850  # lung on high x
    >>> lab = segment_lungs(Volume(hu, spacing=(5.0, 5.0, 5.0)))
    >>> lab.dtype, int(lab[10, 32, 18]), int(lab[10, 32, 46]), int(lab[10, 32, 32])
    (dtype('uint8'), 1, 2, 0)

    Options are :class:`LungParams` fields, grouped or one by one:

    >>> a = segment_lungs(Volume(hu, spacing=(5.0, 5.0, 5.0)), params=LungParams(closing_radius_mm=20.0))
    >>> b = segment_lungs(Volume(hu, spacing=(5.0, 5.0, 5.0)), closing_radius_mm=20.0)
    >>> bool((a == b).all())
    True
    """
    p = _params(params, options)
    vol = as_volume(volume)
    if vol.shape[0] < p.min_slices:
        src = vol.meta.get("source", "this volume") if isinstance(getattr(vol, "meta", None), dict) else "this volume"
        raise DicomSeriesError(
            f"segment_lungs needs a 3-D scan of at least {p.min_slices} slices; {src} has "
            f"{vol.shape[0]} (shape {vol.shape}). Load the whole series (helpers.io.load_series on its "
            "folder), not one file, or segment a single slice with helpers.legacy.segment_lungs_2017."
        )
    hu = vol.hu
    f = _factors(vol.spacing, p.work_spacing_mm)
    grid = _Grid(vol, f)
    sp = grid.spacing
    vox_ml = float(np.prod(sp)) / 1000.0

    lo = _block_mean(hu, f)

    # -- 1. body
    tissue = lo > p.body_threshold_hu
    lab, n = ndimage.label(tissue, structure=_SIX)
    body_tissue = _largest(lab, n)
    del lab
    body = _fill_holes_2d(body_tissue)

    # -- 2. air inside the body
    air = body & (lo < p.air_threshold_hu)

    # -- 3. airway
    airway = _find_airway(
        air, body, grid,
        area_range=p.trachea_area_mm2, midline_mm=p.trachea_midline_mm,
        search_fraction=p.trachea_search_fraction, leak_factor=p.airway_leak_factor,
        max_area_mm2=p.airway_max_area_mm2, bronchus_length_mm=p.bronchus_length_mm,
    )
    if airway.any() and p.airway_margin_mm > 0:
        sl = _bbox(airway, _pad_voxels(p.airway_margin_mm, sp))
        airway_cut = np.zeros(airway.shape, bool)
        airway_cut[sl] = _edt(~airway[sl], sp) <= p.airway_margin_mm
    else:
        airway_cut = airway
    cand = air & ~airway_cut

    # -- 4. pick the lungs
    lab, n = ndimage.label(cand, structure=_SIX)
    lungs = _pick_lungs(
        lab, n, body, grid, vox_ml=vox_ml, min_lung_ml=p.min_lung_ml,
        min_lung_fraction=p.min_lung_fraction, split_search_mm=p.split_search_mm,
    )
    del lab
    if not lungs:
        warnings.warn(
            "segment_lungs found no air component of at least "
            f"{p.min_lung_ml} mL inside the body (expected two lungs: air below {p.air_threshold_hu} HU "
            f"surrounded by tissue above {p.body_threshold_hu} HU; this volume spans "
            f"{float(hu.min()):.0f} to {float(hu.max()):.0f} HU). Is this a chest CT in HU (pass the "
            "Volume from load_series, not raw stored values)? The result is empty.",
            SeriesWarning, stacklevel=2,
        )
        out = np.zeros(hu.shape, np.uint8)
        return (out, {}) if return_steps else out

    raw = np.zeros(lo.shape, np.uint8)
    for label, m in lungs.items():
        raw[m] = label

    # -- 5. tumours at the pleura: per-lung closing + hole filling, mediastinum guarded
    final, added = _close_lungs(raw, lo, body, airway, airway_cut, grid, p)

    # -- 6. back to full resolution
    out = _refine_full(hu, final, added, airway_cut, f, air_threshold_hu=p.air_threshold_hu)
    if return_steps:
        steps = dict(body=body, air=air, airway=airway, lungs_raw=raw, added=added,
                     labels_work=final, work_spacing=sp)
        return out, steps
    return out


def _find_airway(air: np.ndarray, body: np.ndarray, grid: _Grid, *, area_range: tuple[float, float],
                 midline_mm: float, search_fraction: float, leak_factor: float, max_area_mm2: float,
                 bronchus_length_mm: float) -> np.ndarray:
    """Trachea and main bronchi on the work grid (bool), followed from the top slice down."""
    nz = air.shape[0]
    order = list(range(nz - 1, -1, -1)) if grid.superior_axis_sign() > 0 else list(range(nz))  # head first
    has_air = [k for k in order if air[k].any()]
    airway = np.zeros(air.shape, bool)
    if not has_air:
        return airway
    search = has_air[: max(1, int(math.ceil(len(has_air) * search_fraction)))]
    found = _trachea_seed(air, body, grid, search, area_range=area_range, midline_mm=midline_mm)
    if found is None:
        return airway
    seed_k, seed = found
    airway[seed_k] = seed
    _follow_airway(air, airway, grid, order[order.index(seed_k) + 1 :], seed, area_range=area_range,
                   leak_factor=leak_factor, max_area_mm2=max_area_mm2, bronchus_length_mm=bronchus_length_mm)
    return airway


def _trachea_seed(air: np.ndarray, body: np.ndarray, grid: _Grid, search: list[int], *,
                  area_range: tuple[float, float], midline_mm: float) -> tuple[int, np.ndarray] | None:
    """(slice, 2-D mask) of the first tracheal cross-section in ``search`` (slices, head first), or None.

    The trachea is the largest air component of tracheal area whose centre lies
    within ``midline_mm`` of the body's midline (its centre of mass in LPS x, per
    slice: robust to an off-centre patient).
    """
    px = grid.spacing[1] * grid.spacing[2]
    for k in search:
        lab2, n2 = ndimage.label(air[k])
        if n2 == 0:
            continue
        bz = np.argwhere(body[k])
        if len(bz) == 0:
            continue
        mid_x = grid.lps(np.c_[np.full(len(bz), k), bz].mean(axis=0))[0]
        areas = np.bincount(lab2.ravel())[1:] * px
        cms = ndimage.center_of_mass(np.ones_like(lab2), lab2, range(1, n2 + 1))
        best, best_area = None, 0.0
        for i, (a, cm) in enumerate(zip(areas, cms)):
            if not (area_range[0] <= a <= area_range[1]):
                continue
            x = grid.lps([k, cm[0], cm[1]])[0]
            if abs(x - mid_x) <= midline_mm and a > best_area:
                best, best_area = i + 1, a
        if best is not None:
            return k, lab2 == best
    return None


def _follow_airway(air: np.ndarray, airway: np.ndarray, grid: _Grid, slices: list[int], seed: np.ndarray, *,
                   area_range: tuple[float, float], leak_factor: float, max_area_mm2: float,
                   bronchus_length_mm: float) -> None:
    """Follow the airway from ``seed`` through ``slices`` (towards the feet), writing into ``airway``.

    Each 2-D component overlapping the previous section is airway unless it is
    too large or grew too fast (leak guard); after the carina (the first slice
    with two branches) the main bronchi are followed for ``bronchus_length_mm``
    only, so lobar bronchi stay in the lung.
    """
    sp = grid.spacing
    px = sp[1] * sp[2]
    prev = seed
    prev_area = seed.sum() * px
    grow = ndimage.generate_binary_structure(2, 2)
    carina_k = None
    for k in slices:
        if carina_k is not None and abs(k - carina_k) * sp[0] > bronchus_length_mm:
            break
        cur, branches = _airway_section(air[k], ndimage.binary_dilation(prev, grow), prev, prev_area, px,
                                        area_range=area_range, leak_factor=leak_factor, max_area_mm2=max_area_mm2)
        if cur is None:
            break
        if carina_k is None and branches >= 2:
            carina_k = k
        airway[k] = cur
        prev, prev_area = cur, cur.sum() * px


def _airway_section(air_k: np.ndarray, near: np.ndarray, prev: np.ndarray, prev_area: float, px: float, *,
                    area_range: tuple[float, float], leak_factor: float,
                    max_area_mm2: float) -> tuple[np.ndarray | None, int]:
    """The airway's cross-section in one slice (None: the tracking stops) and its number of branches."""
    lab2, n2 = ndimage.label(air_k)
    if n2 == 0:
        return None, 0
    hit = np.unique(lab2[near & (lab2 > 0)])
    cur = np.zeros_like(prev)
    areas = np.bincount(lab2.ravel(), minlength=n2 + 1) * px
    branches = 0
    for h in hit:
        a = areas[h]
        ref = max(prev_area / max(1, len(hit)), (prev & (lab2 == h)).sum() * px, area_range[0])
        if a > max_area_mm2 or a > leak_factor * ref:
            continue  # reached lung: stop this branch
        cur |= lab2 == h
        branches += a >= area_range[0] / 2
    if not cur.any():
        return None, branches
    return cur, branches


def _pick_lungs(lab: np.ndarray, n: int, body: np.ndarray, grid: _Grid, *, vox_ml: float, min_lung_ml: float,
                min_lung_fraction: float, split_search_mm: float) -> dict[int, np.ndarray]:
    """Return {RIGHT_LUNG: mask, LEFT_LUNG: mask} (either may be missing) on the work grid."""
    if n == 0:
        return {}
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    counts[0] = 0
    big = [i for i in np.argsort(counts)[::-1] if counts[i] * vox_ml >= min_lung_ml]
    if not big:
        return {}
    objs = ndimage.find_objects(lab)
    # body midline (LPS x) over the slices of the largest component
    first = big[0]
    ksl = objs[first - 1][0]
    c = _centroid(body[ksl])
    c[0] += ksl.start
    mid_x = float(grid.lps(c)[0])
    # fraction of the largest component's voxels on each side of the midline
    iz, xs = _component_x(lab, first, objs, grid)
    left_frac = float((xs > mid_x).mean())
    lungs: dict[int, np.ndarray] = {}
    if min(left_frac, 1 - left_frac) >= JOINED_SIDE_FRACTION:
        # one component on both sides: lungs joined (at the midline or through an airway)
        right, left = _split_two(lab == first, grid, mid_x, search_mm=split_search_mm)
        return {RIGHT_LUNG: right, LEFT_LUNG: left}
    x1 = xs.mean()
    lungs = {RIGHT_LUNG if x1 < mid_x else LEFT_LUNG: lab == first}
    second = _second_lung(lab, counts, big, objs, grid, mid_x=mid_x, side1=bool(x1 > mid_x),
                          cz1=float(np.mean(iz)) * grid.superior_axis_sign(),
                          min_lung_fraction=min_lung_fraction)
    if second is not None:
        i, xi = second
        lungs[RIGHT_LUNG if xi < mid_x else LEFT_LUNG] = lab == i
    return lungs


def _component_x(lab: np.ndarray, i: int, objs: Sequence[tuple[slice, ...]],
                 grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """(z indices, LPS x in mm) of the voxels of component ``i``, found in its bounding box."""
    box = objs[i - 1]
    iz, iy, ix = (a + s.start for a, s in zip(np.nonzero(lab[box] == i), box))
    return iz, grid.lps_x((iz, iy, ix))


def _second_lung(lab: np.ndarray, counts: np.ndarray, big: list, objs: Sequence[tuple[slice, ...]], grid: _Grid, *,
                 mid_x: float, side1: bool, cz1: float, min_lung_fraction: float) -> tuple[int, float] | None:
    """(label, mean LPS x) of the second lung among the big components, or None.

    It is on the other side of the midline than the first (largest) one, holds
    at least ``min_lung_fraction`` of its voxels, reaches as high as its middle
    (bowel gas and the stomach bubble sit lower) and overlaps it in height.
    """
    up = grid.superior_axis_sign()

    def sup_range(i: int) -> tuple[float, float]:
        sl = objs[i - 1][0]
        s = np.array([sl.start, sl.stop - 1], float) * up
        return s.min(), s.max()

    first = big[0]
    lo1, hi1 = sup_range(first)
    for i in big[1:]:
        if counts[i] < min_lung_fraction * counts[first]:
            break
        lo_i, hi_i = sup_range(i)
        xi = float(_component_x(lab, i, objs, grid)[1].mean())
        if (xi > mid_x) == side1:
            continue  # same side as the first lung
        if hi_i < cz1:
            continue  # does not reach the first lung's middle: gas below the diaphragm
        if hi_i < lo1 or lo_i > hi1:
            continue  # no overlap in height
        return i, xi
    return None


def _split_two(mask: np.ndarray, grid: _Grid, mid_x: float, *, search_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Split one component spanning both sides into (right, left) parts.

    Slice by slice, the cut is the straight line along the antero-posterior
    axis, within ``search_mm`` of the body's midline, that crosses the fewest
    lung voxels: the anterior (or posterior) junction where the lungs touch,
    or the gap between them when they do not.  Among equally thin lines the
    one nearest the midline wins.
    """
    right = np.zeros(mask.shape, bool)
    left = np.zeros(mask.shape, bool)
    xax, xsign = grid.right_axis()
    ax = xax - 1
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        m = mask[k]
        if ax == 0:
            m = m.T
        if xsign < 0:
            m = m[:, ::-1]
        r2, l2 = _split_slice(m, _column_x(grid, int(k), m.shape[1], ax, xsign), mid_x, search_mm=search_mm)
        if xsign < 0:
            r2, l2 = r2[:, ::-1], l2[:, ::-1]
        right[k] = r2.T if ax == 0 else r2
        left[k] = l2.T if ax == 0 else l2
    # pieces cut off their lung (a lobe tip across the line) join the lung they touch most
    _join_cut_pieces(right, left)
    _join_cut_pieces(left, right)
    return right, left


def _column_x(grid: _Grid, k: int, n: int, ax: int, xsign: float) -> np.ndarray:
    """LPS x (mm) of the ``n`` columns of slice ``k`` as :func:`_split_two` orders them (right to left)."""
    cols = np.arange(n)
    idx = np.zeros((n, 3))
    idx[:, 0] = k
    idx[:, 1 + ax] = cols if xsign > 0 else n - 1 - cols
    return grid.lps(idx)[:, 0]


def _split_slice(m: np.ndarray, xs: np.ndarray, mid_x: float, *, search_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) of one slice ``m`` (columns ordered right to left, at LPS x ``xs``): the thinnest cut."""
    window = np.abs(xs - mid_x) <= search_mm
    if not window.any():
        window[:] = True
    count = m.sum(axis=0).astype(float)
    count[~window] = np.inf
    best = np.nonzero(count == count.min())[0]
    c = best[np.argmin(np.abs(xs[best] - mid_x))]
    cols = np.arange(m.shape[1])
    return m & (cols[None, :] < c), m & (cols[None, :] >= c)


def _join_cut_pieces(a_: np.ndarray, b_: np.ndarray) -> None:
    """Move the pieces of ``a_`` (but its largest) that touch ``b_`` more than ``a_``'s main part into ``b_``."""
    lab, n = ndimage.label(a_, structure=_SIX)
    if n <= 1:
        return
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    main = int(np.argmax(counts))
    grown_b = ndimage.binary_dilation(b_, _SIX)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if i == main or sl is None:
            continue
        piece = lab[sl] == i
        touch_b = (piece & grown_b[sl]).sum()
        touch_a = (piece & ndimage.binary_dilation(lab[sl] == main, _SIX)).sum()
        if touch_b > touch_a:
            a_[sl][piece] = False
            b_[sl][piece] = True


def _hull_near(ml: np.ndarray, costal: np.ndarray, forbidden: np.ndarray, sp: Sequence[float], *, margin_mm: float,
               min_ml: float, shape_from: np.ndarray | None = None) -> np.ndarray:
    """Per-slice convex hull of lung + bite, kept within ``margin_mm`` of sizeable closing additions.

    A ball leaves a sliver between its surface and a flat chest wall; the convex
    hull of the slice bridges it.  Far from a bite (e.g. over the liver dome) the
    hull is not used.
    """
    from skimage.morphology import convex_hull_image

    lab, n = ndimage.label(costal, structure=_SIX)
    if n == 0:
        return np.zeros(ml.shape, bool)
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    big = np.nonzero(counts * float(np.prod(sp)) / 1000.0 >= min_ml)[0]
    if len(big) == 0:
        return np.zeros(ml.shape, bool)
    bites = np.isin(lab, big)
    near = np.zeros(ml.shape, bool)
    sl = _bbox(bites, _pad_voxels(margin_mm, sp))
    near[sl] = _edt(~bites[sl], sp) <= margin_mm
    out = np.zeros(ml.shape, bool)
    shape_from = costal if shape_from is None else shape_from
    for k in np.nonzero(bites.any(axis=(1, 2)))[0]:
        both = ml[k] | shape_from[k]
        if both.sum() < HULL_MIN_PIXELS:
            continue
        h = convex_hull_image(both)
        out[k] = h & near[k] & ~both & ~forbidden[k]
    return out


def _wall_sliver(ml: np.ndarray, bites: np.ndarray, body: np.ndarray, sp: Sequence[float], *, margin_mm: float,
                 wall_search_mm: float = WALL_SEARCH_MM) -> np.ndarray:
    """Between a bite on the chest wall and the wall: voxels as deep below the skin as the pleura nearby.

    The pleura under a tumour is not visible (tumour and chest wall are both
    soft tissue); the chest wall's thickness is, around the bite.  For each bite
    that reaches the depth of the pleura next to it (it touches the chest
    wall), voxels within ``margin_mm`` of it and between that depth and
    ``margin_mm`` deeper are lung.  Bites on the diaphragm or mediastinum lie
    deeper than the pleura around them and are left alone.
    """
    out = np.zeros(ml.shape, bool)
    pad = _pad_voxels(wall_search_mm, sp)
    s4 = _bbox(bites, pad)
    lab, n = ndimage.label(bites[s4], structure=_SIX)
    if n == 0:
        return out
    depth = _edt(body[s4], sp)
    dist, inds = ndimage.distance_transform_edt(lab == 0, sampling=sp, return_indices=True)
    nearest = lab[tuple(inds)]  # label of the nearest bite
    del inds
    near = dist <= margin_mm
    del dist
    m4 = ml[s4]
    rim_lab = np.where(m4 & near, nearest, 0)
    if not rim_lab.any():
        return out
    lo_d = np.full(n + 1, np.inf)
    sel = rim_lab > 0
    np.minimum.at(lo_d, rim_lab[sel], depth[sel])
    bite_min = np.full(n + 1, np.inf)
    sel = lab > 0
    np.minimum.at(bite_min, lab[sel], depth[sel])
    ok = np.isfinite(lo_d) & (bite_min <= lo_d + WALL_TOUCH_VOXELS * max(sp))  # the bite touches the chest wall
    ok[0] = False
    lo_t = np.where(ok, lo_d, np.inf)[nearest]
    out[s4] = near & ~m4 & (depth >= lo_t) & (depth <= lo_t + margin_mm)
    return out


def _close_lungs(raw: np.ndarray, lo: np.ndarray, body: np.ndarray, airway: np.ndarray,
                 airway_cut: np.ndarray, grid: _Grid, p: LungParams) -> tuple[np.ndarray, np.ndarray]:
    """Close each lung; keep what the large ball adds only where it is a bite.

    Per lung (3-D, exact balls, on the work grid):

    * *Guards* -- never added: outside the body, the other lung's side of the
      smooth 3-D midline (voxels nearer the other lung), within
      ``airway_guard_mm`` of the tracked trachea and main bronchi, bulk fat
      (``fat_hu`` after a one-voxel opening).
    * *Small closing* (``mediastinal_closing_radius_mm``) everywhere, accepted
      as is: vessels entering the lung, juxtamediastinal nodules.
    * *Large closing* (``closing_radius_mm``) with its enclosed holes: each
      connected addition, restricted to voxels at least ``min_enclosure``
      surrounded by the lung (Gaussian of ``enclosure_mm``), is a *bite* if it
      is deep relative to its opening: its deepest voxel lies at least
      ``bite_depth_ratio`` times the opening's equivalent radius from tissue
      that is neither lung nor addition.  Of a bite, only what lies within
      ``bite_core_mm`` of its part deeper than ``bite_core_mm`` is kept, which
      trims thin crescents it drags along (the heart's, the hilum's).
    * Next to a bite, the slice's convex hull fills the sliver against a flat
      chest wall (``hull_margin_mm``), the bite's rim is grown by
      ``bite_margin_mm`` and the invisible pleura under it filled
      (``pleura_fill_mm``).
    """
    sp = grid.spacing
    final = raw.copy()
    added = np.zeros(raw.shape, bool)
    present = [lung for lung in (RIGHT_LUNG, LEFT_LUNG) if (raw == lung).any()]
    radius = max(p.closing_radius_mm, p.mediastinal_closing_radius_mm, 0.0)
    if radius <= 0:
        return final, added
    pad0 = _pad_voxels(radius, sp)  # nothing is added farther than the ball from a lung
    guard = _guard(raw, lo, body, airway, airway_cut, sp, p, pad0)
    other_side = _other_side(raw, present, sp, pad0)
    for lung in present:
        sl, deficit = _crop_with_deficit(raw == lung, pad0)
        forbid = guard[sl] | other_side[lung][sl]
        new = _lung_additions(raw[sl] == lung, lo[sl], body[sl], forbid, final[sl] == 0, sp, p, deficit)
        region = final[sl]
        region[new] = lung
        added[sl] |= new
    return final, added


def _guard(raw: np.ndarray, lo: np.ndarray, body: np.ndarray, airway: np.ndarray, airway_cut: np.ndarray,
           sp: Sequence[float], p: LungParams, pad0: Sequence[int]) -> np.ndarray:
    """Where the closing never adds (bool): outside the body, the lungs, near the airway, bulk fat.

    Only read within ``pad0`` (work voxels) of a lung, so the fat opening runs
    in that box grown by its own reach (two voxels).
    """
    guard = ~body | (raw > 0) | airway_cut
    if airway.any() and p.airway_guard_mm > 0:
        sl = _bbox(airway, _pad_voxels(p.airway_guard_mm, sp))
        guard[sl] |= _edt(~airway[sl], sp) <= p.airway_guard_mm
    if p.fat_hu is not None:
        sl = _bbox(raw > 0, [q + 2 for q in pad0])
        fat = (lo[sl] >= p.fat_hu[0]) & (lo[sl] <= p.fat_hu[1])
        guard[sl] |= ndimage.binary_opening(fat, _SIX)
    return guard


def _other_side(raw: np.ndarray, present: list[int], sp: Sequence[float], pad0: Sequence[int]) -> dict[int, np.ndarray]:
    """Per lung, the voxels nearer the other lung (a smooth 3-D midline), within ``pad0`` of the lungs."""
    other_side = {lung: np.zeros(raw.shape, bool) for lung in present}
    if len(present) == 2:  # each voxel goes to the lung nearest to it
        sl = _bbox(raw > 0, pad0)
        nearest = _nearest_label(raw[sl], sp)
        other_side[RIGHT_LUNG][sl] = nearest == LEFT_LUNG
        other_side[LEFT_LUNG][sl] = nearest == RIGHT_LUNG
    return other_side


def _lung_additions(ml: np.ndarray, lo: np.ndarray, body: np.ndarray, forbid: np.ndarray, free: np.ndarray,
                    sp: Sequence[float], p: LungParams, deficit: Sequence[tuple[int, int]]) -> np.ndarray:
    """What the closings add to one lung (bool, in its crop): small ball, enclosed holes, bites and their rims."""
    c = ml.copy()
    outside = None  # distances outside the padded lung, shared by the two closings
    if p.mediastinal_closing_radius_mm > 0 and p.closing_radius_mm > 0:
        outside = _edt(~_pad_mask(ml, deficit), sp)
    if p.mediastinal_closing_radius_mm > 0:
        c |= _closing_edt(ml, p.mediastinal_closing_radius_mm, sp, pad=deficit, outside=outside) & ~forbid
    c |= _fill_holes(ml) & ~forbid  # vessels and a dome top, enclosed by the lung alone
    allowed = ~forbid & free
    if p.closing_radius_mm <= 0:
        return c & ~ml & allowed
    bites = _bites(ml, lo, forbid, sp, p, deficit, outside=outside)
    del outside
    c |= bites
    open_bites = bites & ~_fill_holes_2d(ml)  # bites not enclosed by the lung in their slice
    if p.hull_margin_mm > 0:
        c |= _hull_near(ml, open_bites, forbid, sp, margin_mm=p.hull_margin_mm, min_ml=p.min_bite_ml,
                        shape_from=bites)
    new = c & ~ml & allowed
    if p.bite_margin_mm > 0 and bites.any():
        new |= _bite_rims(ml, open_bites, body, sp, p) & allowed
    return new


def _bite_rims(ml: np.ndarray, open_bites: np.ndarray, body: np.ndarray, sp: Sequence[float],
               p: LungParams) -> np.ndarray:
    """Sizeable bites grown by ``bite_margin_mm``, and the invisible pleura under those on the chest wall.

    A bite's edge on the chest wall is only known to a work voxel: growing it
    keeps the tumour's rim at the pleura from being shaved off.
    """
    out = np.zeros(ml.shape, bool)
    lab, _n = ndimage.label(open_bites, structure=_SIX)
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    big = np.nonzero(counts * (float(np.prod(sp)) / 1000.0) >= p.min_bite_ml)[0]
    if not len(big):
        return out
    big_bites = np.isin(lab, big)
    s3 = _bbox(big_bites, _pad_voxels(p.bite_margin_mm, sp))
    out[s3] = _edt(~big_bites[s3], sp) <= p.bite_margin_mm
    if p.pleura_fill_mm > 0:
        out |= _wall_sliver(ml, big_bites, body, sp, margin_mm=p.pleura_fill_mm)
    return out


def _bites(ml: np.ndarray, lo: np.ndarray, forbid: np.ndarray, sp: Sequence[float], p: LungParams,
           deficit: Sequence[tuple[int, int]], *,
           outside: np.ndarray | None = None) -> np.ndarray:
    """What the large closing adds to one lung that is a compact bite (see :func:`_close_lungs`)."""
    closed = _closing_edt(ml, p.closing_radius_mm, sp, pad=deficit, outside=outside)
    enc = _enclosure(ml, sp, p.enclosure_mm)
    cand = _fill_holes((closed & ~forbid) | ml) & ~ml & ~forbid & (enc >= p.min_enclosure)
    del closed, enc
    lab, n = ndimage.label(cand, structure=_SIX)
    if n == 0:
        return cand
    inside = ml | cand
    depth = _edt(inside, sp)  # mm to tissue that is neither
    deepest = np.zeros(n + 1, np.float32)
    np.maximum.at(deepest, lab[cand], depth[cand])  # per-bite maximum (ndimage.maximum sorts: slower)
    deepest = deepest[1:]
    rim = cand & ~ndimage.binary_erosion(inside, _SIX, border_value=1)
    face = float(np.prod(sp)) ** (2.0 / 3.0)
    opening = np.bincount(lab[rim], minlength=n + 1)[1:] * face
    eq_r = np.sqrt(np.maximum(opening, face) / np.pi)
    ok = np.r_[False, deepest >= p.bite_depth_ratio * eq_r]
    bites = ok[lab]
    if p.bite_core_mm > 0 and bites.any():
        core = bites & (depth >= p.bite_core_mm)
        near = np.zeros(bites.shape, bool)
        if core.any():
            s5 = _bbox(bites, _pad_voxels(p.bite_core_mm, sp))
            near[s5] = _edt(~core[s5], sp) <= p.bite_core_mm
        bites &= near
    return bites


def _enclosure(ml: np.ndarray, sp: Sequence[float], enclosure_mm: float) -> np.ndarray:
    """Share of lung around every voxel (float32 Gaussian of ``enclosure_mm``), in the lung's box only.

    Outside the box the result is 0: nothing is ever added there (a closing stays
    inside the convex hull, holes inside the bounding box).  Inside it, the values
    are those of the Gaussian of the whole crop: outside the box the lung is all
    zeros, which is what ``mode="constant"`` pads with, so each sum gets the same
    terms in the same order.  On the padded crop of a lung this is about half the
    work.
    """
    enc = np.zeros(ml.shape, np.float32)
    if not ml.any():
        return enc
    box = _bbox(ml)
    enc[box] = ndimage.gaussian_filter(ml[box].astype(np.float32), [enclosure_mm / s for s in sp], mode="constant")
    return enc


def _refine_maps(final: np.ndarray, added: np.ndarray,
                 airway_cut: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """Work-grid maps of :func:`_refine_full`: (core, ring, kept) labels (uint8), ``keep_near``, ``lung``.

    *core*: deep inside a lung, keeps its label; *ring*: the one-work-voxel band
    around the surface (labels grown by one voxel, the nearest lung winning where
    both grow), lung only where the full-resolution voxel is air; *kept*: tumour
    voxels added by the closing and their in-plane neighbours, whose outline is
    drawn from the lung mask upsampled bilinearly (no 2-mm staircase).
    """
    lung = final > 0
    core = ndimage.binary_erosion(lung, _SIX)
    grown = ndimage.grey_dilation(final, footprint=_SIX)
    both = ndimage.grey_dilation(np.where(final == LEFT_LUNG, 0, final), footprint=_SIX)
    clash = (grown == LEFT_LUNG) & (both == RIGHT_LUNG) & ~lung
    grown[clash] = 0
    grown[lung] = final[lung]
    ring = (grown > 0) & ~core & ~airway_cut
    keep = added  # tumour voxels stay lung whatever their HU
    keep_near = keep | (ndimage.binary_dilation(keep, _INPLANE) & ~lung) if keep.any() else keep
    core_lab = np.where(core & ~keep, final, 0).astype(np.uint8)
    ring_lab = np.where(ring & ~keep, grown, 0).astype(np.uint8)
    keep_lab = np.where(keep_near, grown, 0).astype(np.uint8)
    return (core_lab, ring_lab, keep_lab), keep_near, lung


def _repeat_up(a: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """``a`` with every work voxel repeated ``f`` times along each axis (nearest upsampling)."""
    for axis, k in enumerate(f):
        if k > 1:
            a = np.repeat(a, k, axis=axis)
    return a


def _refine_full(hu: np.ndarray, final: np.ndarray, added: np.ndarray, airway_cut: np.ndarray,
                 f: Sequence[int], *, air_threshold_hu: float, chunk_slices: int = 8) -> np.ndarray:
    """Upsample work-grid labels; re-decide the surface band with the full-resolution HU.

    Only the box around the labels (grown by one work voxel, plus the margin the
    bilinear outline of a tumour needs) is visited at full resolution, a few
    slices at a time; everything outside it is background.
    """
    out = np.zeros(hu.shape, np.uint8)
    if not final.any():
        return out
    # the maps in the labels' box grown by 1 (z) and 4 (y, x) work voxels: every grown label
    # and the in-plane margin of the bilinear outline lie inside, as in the whole grid
    crop = _bbox(final > 0, (1, 4, 4))
    (core_lab, ring_lab, keep_lab), keep_near, lung = _refine_maps(final[crop], added[crop], airway_cut[crop])
    support = (core_lab > 0) | (ring_lab > 0) | (keep_lab > 0)
    wz, wy, wx = (slice(a.start + c.start, a.stop + c.start) for a, c in zip(_bbox(support, (0, 3, 3)), crop))
    del support
    fz, fy, fx = f
    nz, ny, nx = hu.shape
    ys, xs = slice(wy.start * fy, min(ny, wy.stop * fy)), slice(wx.start * fx, min(nx, wx.stop * fx))
    step = max(1, chunk_slices // fz)
    for k0 in range(wz.start, wz.stop, step):
        k1 = min(wz.stop, k0 + step)
        z0, z1 = k0 * fz, min(nz, k1 * fz)
        work = tuple(slice(a.start - c.start, a.stop - c.start) for a, c in zip((slice(k0, k1), wy, wx), crop))
        trim = (slice(0, z1 - z0), slice(0, ys.stop - ys.start), slice(0, xs.stop - xs.start))
        lab_c = _repeat_up(core_lab[work], f)[trim]
        keep_c = _repeat_up(keep_lab[work], f)[trim]
        if keep_near[work].any():
            keep_c[~_smooth_up(lung[work], keep_near[work], f)[trim]] = 0
        chunk = _repeat_up(ring_lab[work], f)[trim]
        chunk[hu[z0:z1, ys, xs] >= air_threshold_hu] = 0  # the band is lung only where it is air
        np.copyto(chunk, keep_c, where=keep_c > 0)
        np.copyto(chunk, lab_c, where=lab_c > 0)
        out[z0:z1, ys, xs] = chunk
    return out


def _smooth_up(mask: np.ndarray, where: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """``mask`` upsampled by ``f``: bilinear in-plane (threshold 0.5), repeated along z; only near ``where``."""
    fz, fy, fx = f
    out = np.zeros((mask.shape[0] * fz, mask.shape[1] * fy, mask.shape[2] * fx), bool)
    sl = _bbox(where, (0, 2, 2))
    sub: np.ndarray = mask[sl].astype(np.float32)
    if fy > 1 or fx > 1:
        sub = ndimage.zoom(sub, (1, fy, fx), order=1, mode="nearest", grid_mode=True)
    sub = sub > 0.5
    if fz > 1:
        sub = np.repeat(sub, fz, axis=0)
    out[sl[0].start * fz : sl[0].stop * fz, sl[1].start * fy : sl[1].stop * fy,
        sl[2].start * fx : sl[2].stop * fx] = sub
    return out


# ================================================================== quality control
#: Plausible total lung volume (mL) of an adult chest scan covering both lungs.
QC_TOTAL_ML = (1500.0, 9000.0)
#: Plausible left/right volume ratio.
QC_RATIO = (0.5, 1.5)
#: Connected pieces smaller than this (mL) are not counted as components.
QC_MIN_COMPONENT_ML = 0.1


def lung_qc(labels: np.ndarray, volume: Volume, *, total_ml_range: tuple[float, float] = QC_TOTAL_ML,
            ratio_range: tuple[float, float] = QC_RATIO, min_component_ml: float = QC_MIN_COMPONENT_ML,
            warn: bool = True, count_components: bool = True) -> dict[str, Any]:
    """Volumes and plausibility flags of a right/left lung label map.

    Parameters
    ----------
    labels : ndarray of uint8, shape (z, y, x)
        Output of :func:`segment_lungs` (0 background, 1 right, 2 left).
    volume : Volume
        The CT it was computed from (for the voxel volume).
    total_ml_range : (float, float), default (1500, 9000)
        Plausible total lung volume in mL for an adult scan covering both lungs.
    ratio_range : (float, float), default (0.5, 1.5)
        Plausible left/right volume ratio (the left lung is usually ~10 % smaller).
    min_component_ml : float, default 0.1
        Pieces smaller than this are not counted in ``components`` (a few
        voxels at the boundary between two touching lungs).
    warn : bool, default True
        Emit a :class:`~helpers.errors.SeriesWarning` listing the flags when any is set.
    count_components : bool, default True
        Count each lung's connected components (a 3-D labelling of its bounding
        box, the slowest part); with False ``components`` is an empty dict.  No
        flag depends on it.

    Returns
    -------
    dict
        ``right_ml``, ``left_ml``, ``total_ml`` (float), ``left_right_ratio``
        (float or nan), ``components`` (dict: label -> number of 3-D connected
        components of at least ``min_component_ml``), ``flags`` (list of str: ``"implausible total volume"``,
        ``"implausible left/right ratio"``, ``"right lung missing"``,
        ``"left lung missing"``, ``"lung touches the scan border"``),
        ``border`` (list of the borders touched: ``"first slice"``,
        ``"last slice"``, ``"in-plane"``), ``plausible`` (bool).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> lab = np.zeros((10, 20, 20), np.uint8); lab[2:8, 5:15, 2:9] = 1; lab[2:8, 5:15, 11:18] = 2
    >>> qc = lung_qc(lab, Volume(np.zeros(lab.shape), spacing=(10.0, 10.0, 10.0)), warn=False)
    >>> qc["right_ml"], qc["left_ml"], qc["left_right_ratio"], qc["flags"]
    (420.0, 420.0, 1.0, ['implausible total volume'])
    """
    vol = as_volume(volume)
    labels = as_array(labels, shape=vol.shape, name="labels")
    counts = bincount_blocks(labels, minlength=3)  # no full-size int64 copy of the labels
    v = vol.voxel_volume_ml
    right, left = float(counts[RIGHT_LUNG] * v), float(counts[LEFT_LUNG] * v)
    total = right + left
    ratio = left / right if right > 0 else float("nan")
    comps = _count_components(labels, counts, min_component_ml / v) if count_components else {}
    border = _borders_touched(labels)
    flags = _qc_flags(counts, right, left, ratio, total_ml_range=total_ml_range, ratio_range=ratio_range)
    if border:
        flags.append("lung touches the scan border")
    qc = dict(right_ml=right, left_ml=left, total_ml=total, left_right_ratio=ratio, components=comps,
              flags=flags, border=border, plausible=not flags)
    if flags and warn:
        warnings.warn(
            f"lung_qc: {', '.join(flags)} (right {right:.0f} mL, left {left:.0f} mL"
            + (f", touches {', '.join(border)}" if border else "")
            + "); look at the mask before using it.",
            SeriesWarning, stacklevel=2,
        )
    return qc


def _count_components(labels: np.ndarray, counts: np.ndarray, min_vox: float) -> dict[int, int]:
    """Per lung label, its 3-D components of at least ``min_vox`` voxels, labelled in its bounding box."""
    comps = {}
    boxes = ndimage.find_objects(labels.view(np.uint8) if labels.dtype == bool else labels)
    for lung in (RIGHT_LUNG, LEFT_LUNG):
        if not counts[lung]:
            comps[lung] = 0
            continue
        lab, _n = ndimage.label(labels[boxes[lung - 1]] == lung, structure=_SIX)
        sizes = bincount_blocks(lab)[1:]
        comps[lung] = int((sizes >= min_vox).sum())
    return comps


def _qc_flags(counts: np.ndarray, right: float, left: float, ratio: float, *,
              total_ml_range: tuple[float, float], ratio_range: tuple[float, float]) -> list[str]:
    """The volume flags of :func:`lung_qc` (the border flag is added by the caller)."""
    flags = []
    if not (total_ml_range[0] <= right + left <= total_ml_range[1]):
        flags.append("implausible total volume")
    if counts[RIGHT_LUNG] == 0:
        flags.append("right lung missing")
    if counts[LEFT_LUNG] == 0:
        flags.append("left lung missing")
    if right > 0 and left > 0 and not (ratio_range[0] <= ratio <= ratio_range[1]):
        flags.append("implausible left/right ratio")
    return flags


def _borders_touched(labels: np.ndarray) -> list[str]:
    """Which borders of the scan the labels touch: "first slice", "last slice", "in-plane"."""
    border = []
    if labels[0].any():
        border.append("first slice")
    if labels[-1].any():
        border.append("last slice")
    if labels[:, 0].any() or labels[:, -1].any() or labels[:, :, 0].any() or labels[:, :, -1].any():
        border.append("in-plane")
    return border
