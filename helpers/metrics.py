"""Overlap and surface-distance metrics for segmentation masks, in physical units.

* :func:`dice` -- Dice similarity coefficient ``2|A∩B| / (|A| + |B|)``.
* :func:`hausdorff95` -- the 95th-percentile Hausdorff distance in mm between the
  two masks' surfaces: the robust version of the Hausdorff distance, which one
  stray voxel cannot dominate.

Both accept label maps: pass ``label=`` to compare one label (e.g. the right lung),
or nothing to compare "anything non-zero".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .volume import Volume, as_array, as_mask, as_volume

__all__ = ["dice", "hausdorff95", "surface_distances", "slices_missing_lungs"]

#: Percentile used by :func:`hausdorff95`.
HD_PERCENTILE = 95.0

#: :func:`slices_missing_lungs`: a lung counts as found on a slice when the other
#: mask covers at least this share of it.
FOUND_SHARE = 0.5

#: :func:`slices_missing_lungs`: a lung smaller than this on a slice (mm^2, a
#: sliver at the apex or the diaphragm) is not counted as present there.
MIN_LUNG_AREA_MM2 = 100.0


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"the two masks differ in shape: {a.shape} vs {b.shape}; "
                         "resample one onto the other's grid first")


def dice(a: Volume | np.ndarray, b: Volume | np.ndarray, *, label: int | None = None) -> float:
    """Dice similarity coefficient of two masks.

    Parameters
    ----------
    a, b : ndarray or Volume
        Masks or label maps of the same shape.
    label : int, optional
        Compare ``a == label`` with ``b == label``; default: non-zero voxels.

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when both masks are empty (they agree perfectly).

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), np.uint8); a[:2] = 1
    >>> b = np.zeros((4, 4), np.uint8); b[1:3] = 1
    >>> dice(a, b)
    0.5
    >>> dice(np.array([0, 1, 2]), np.array([0, 2, 2]), label=2)
    0.6666666666666666
    """
    ma, mb = as_mask(a, label=label, name="a"), as_mask(b, label=label, name="b")
    _check(ma, mb)
    na, nb = int(ma.sum()), int(mb.sum())
    if na + nb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(ma, mb).sum()) / (na + nb)


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, ndimage.generate_binary_structure(m.ndim, 1), border_value=0)


def surface_distances(a: Volume | np.ndarray, b: Volume | np.ndarray, *, spacing: Sequence[float] | None = None,
                      label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to ``b``'s surface, and back.

    Parameters
    ----------
    a, b : ndarray or Volume
        Masks or label maps of the same shape.
    spacing : tuple of float, optional
        Voxel size per axis in mm; taken from ``a`` (or ``b``) when it is a
        Volume.  Required for two bare arrays.
    label : int, optional
        As in :func:`dice`.

    Returns
    -------
    (ndarray, ndarray) of float64
        ``a`` -> ``b`` and ``b`` -> ``a`` distances, one per surface voxel.

    Notes
    -----
    Surface voxels are mask voxels with a face neighbour outside the mask (or
    on the array border).  Distances are between voxel centres, in mm, found
    exactly by a nearest-neighbour search (k-d tree) between the two surfaces,
    within the bounding box of both masks: memory grows with the number of
    surface voxels, not with the volume (whole lungs stay cheap).
    """
    ma, mb = as_mask(a, label=label, name="a"), as_mask(b, label=label, name="b")
    _check(ma, mb)
    if spacing is None:
        ref = a if isinstance(a, Volume) else b if isinstance(b, Volume) else None
        if ref is None:
            raise ValueError(
                f"surface distances are in mm, but both masks are bare arrays (shape {ma.shape}) with no "
                "voxel size: pass spacing=vol.spacing (mm per axis), or pass the masks as Volumes"
            )
        spacing = ref.spacing
    spacing = tuple(float(s) for s in spacing)
    both = ma | mb
    if not both.any():
        return np.zeros(0), np.zeros(0)
    idx = [np.nonzero(both.any(axis=tuple(j for j in range(both.ndim) if j != i)))[0] for i in range(both.ndim)]
    sl = tuple(slice(max(0, int(i[0]) - 1), int(i[-1]) + 2) for i in idx)
    ma, mb = ma[sl], mb[sl]
    sa, sb = _surface(ma), _surface(mb)
    if not sa.any() or not sb.any():
        return np.full(int(sa.sum()), np.inf), np.full(int(sb.sum()), np.inf)
    # nearest surface voxel by a k-d tree on the surface voxels' centres (mm): the same distances as a
    # Euclidean distance transform of the box, without its float64 + int32-index arrays of the box's size
    from scipy.spatial import cKDTree

    pa = np.argwhere(sa) * np.asarray(spacing)
    pb = np.argwhere(sb) * np.asarray(spacing)
    da = cKDTree(pb).query(pa)[0]
    db = cKDTree(pa).query(pb)[0]
    return da, db


def hausdorff95(a: Volume | np.ndarray, b: Volume | np.ndarray, *, spacing: Sequence[float] | None = None,
                label: int | None = None, percentile: float = HD_PERCENTILE) -> float:
    """95th-percentile Hausdorff distance between two masks' surfaces, in mm.

    Parameters
    ----------
    a, b : ndarray or Volume
        Masks or label maps of the same shape.
    spacing : tuple of float, optional
        Voxel size per axis in mm (``(z, y, x)`` for volumes); taken from a
        Volume argument.  Required for two bare arrays.
    label : int, optional
        As in :func:`dice`.
    percentile : float, default 95
        100 gives the classical (maximum) Hausdorff distance.

    Returns
    -------
    float
        ``max(P95(d(A->B)), P95(d(B->A)))`` in mm; 0.0 when both masks are
        empty, ``inf`` when only one is.

    Raises
    ------
    ValueError
        If the shapes differ, or both are bare arrays and no ``spacing`` is given.

    Notes
    -----
    The larger of the two directed percentiles, as in DeepMind's
    ``surface-distance`` and MONAI's ``compute_hausdorff_distance``; MedPy's
    ``hd95`` pools both directions first, which can give a slightly smaller
    value.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((1, 20, 20), bool); a[0, 5:15, 5:15] = True
    >>> b = np.zeros_like(a); b[0, 5:15, 7:17] = True      # shifted by 2 columns
    >>> hausdorff95(a, b, spacing=(1.0, 0.5, 0.5))
    1.0
    """
    da, db = surface_distances(a, b, spacing=spacing, label=label)
    if da.size == 0 and db.size == 0:
        return 0.0
    if np.isinf(da).any() or np.isinf(db).any():
        return float("inf")
    return float(max(np.percentile(da, percentile), np.percentile(db, percentile)))


def slices_missing_lungs(labels: Volume | np.ndarray, other: Volume | np.ndarray, *,
                         spacing: Sequence[float] | None = None, found_share: float = FOUND_SHARE,
                         min_area_mm2: float = MIN_LUNG_AREA_MM2) -> dict:
    """Slices where another mask finds no lung, or only one of the two.

    Parameters
    ----------
    labels : Volume or ndarray (z, y, x)
        Reference lung labels: 1 right, 2 left (e.g. ``segment_lungs``).
    other : ndarray (z, y, x)
        The mask to judge (any non-zero value is lung), e.g. the 2017 per-slice mask.
    spacing : 3 floats, keyword-only
        Voxel size (z, y, x) in mm; the in-plane part turns pixels into mm^2.
        Taken from ``labels`` when it is a Volume; a bare array without it
        is refused (never taken as 1 mm).
    found_share : float, default 0.5
        A lung counts as found on a slice when ``other`` covers at least this
        share of its area there.
    min_area_mm2 : float, default 100
        A lung smaller than this on a slice is not counted as present there.

    Returns
    -------
    dict
        ``no_lung``: slices (indices, increasing) where the reference has a
        lung and ``other`` finds none; ``one_lung``: slices where the reference
        has both lungs and ``other`` finds exactly one; ``with_lung``: how
        many slices have a lung in the reference; ``found``: bool array
        (z, 2), lung found per slice (right, left); ``present``: the same for
        the reference.

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> ref = np.zeros((3, 4, 4), np.uint8); ref[:, 1:3, 0:2] = 1; ref[:, 1:3, 2:4] = 2
    >>> other = ref.copy(); other[0] = 0; other[1][ref[1] == 2] = 0
    >>> r = slices_missing_lungs(ref, other, spacing=(5, 10, 10))
    >>> r["no_lung"], r["one_lung"], r["with_lung"]
    ([0], [1], 3)
    """
    reference = as_volume(labels, spacing=spacing, name="labels")
    labels = reference.hu
    other_mask = as_array(other, name="other") != 0
    _check(labels, other_mask)
    pixel_mm2 = float(reference.spacing[1]) * float(reference.spacing[2])
    present = np.zeros((labels.shape[0], 2), bool)
    found = np.zeros_like(present)
    for j, lab in enumerate((1, 2)):
        lung = labels == lab
        area = lung.sum(axis=(1, 2))
        covered = (lung & other_mask).sum(axis=(1, 2))
        present[:, j] = area * pixel_mm2 >= min_area_mm2
        found[:, j] = present[:, j] & (covered >= found_share * np.maximum(area, 1))
    n_present, n_found = present.sum(axis=1), found.sum(axis=1)
    return {
        "no_lung": np.flatnonzero((n_present > 0) & (n_found == 0)).tolist(),
        "one_lung": np.flatnonzero((n_present == 2) & (n_found == 1)).tolist(),
        "with_lung": int(np.count_nonzero(n_present)),
        "found": found,
        "present": present,
    }
