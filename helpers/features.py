"""Per-case numbers from a lung mask, for learners that take a table, not an image.

A convolutional network reads the whole array, ``(N, C, Z, Y, X)``.  Most other
learners (logistic regression, random forests, SVMs in scikit-learn) read a
table: one row per case, one column per number.  :func:`lung_features` makes
that row from a case's image and lung mask (volumes in mL, the low-attenuation
area, the share of lung in HU bands), and :func:`cohort_features` makes the
table for a whole preprocessed cohort.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .hu import LAA_HU

if TYPE_CHECKING:
    import pandas as pd

    from .cohort import CohortDataset

__all__ = ["LUNG_BANDS_HU", "lung_features", "cohort_features"]

#: Edges (HU) of the bands whose share of the lung becomes a feature: the lung's
#: HU histogram in a few coarse bins (-1000..-950 is the LAA band, -950..-850
#: aerated lung, up to -500 denser lung, -500..-100 ground glass and vessels,
#: above -100 soft tissue inside the mask).
LUNG_BANDS_HU: tuple[float, ...] = (-1024.0, -950.0, -850.0, -700.0, -500.0, -100.0, 3072.0)


def lung_features(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float], *, laa_hu: float = LAA_HU,
                  bands_hu: tuple[float, ...] = LUNG_BANDS_HU) -> dict[str, float]:
    """One row of numbers for one case: lung volumes, LAA %, HU band shares.

    Parameters
    ----------
    image : ndarray (z, y, x)
        HU (any numeric dtype).
    mask : ndarray (z, y, x)
        Lung labels: 1 right, 2 left (any non-zero value counts as lung).
    spacing : 3 floats
        Voxel size (z, y, x) in mm.
    laa_hu : float, default -950, keyword-only
        Threshold of the low-attenuation area.
    bands_hu : tuple of floats
        Edges of the HU bands (increasing); values outside the first and last
        edge go to the first and last band.

    Returns
    -------
    dict of str to float
        ``right_ml``, ``left_ml``, ``lung_ml``; ``laa_pct`` (% of lung voxels
        below ``laa_hu``); ``mean_hu`` of the lung; and ``hu_<lo>_<hi>_pct``,
        the % of lung voxels in each band (they add up to 100).  NaN for the
        HU numbers when the mask is empty.

    Raises
    ------
    ValueError
        If the image and the mask differ in shape.

    Examples
    --------
    >>> image = np.array([[[-980, -900, -600, 40]]], dtype=np.int16)
    >>> mask = np.array([[[1, 1, 2, 0]]], dtype=np.uint8)
    >>> f = lung_features(image, mask, (10.0, 10.0, 10.0))
    >>> f["right_ml"], f["left_ml"], round(f["laa_pct"], 1), round(f["mean_hu"], 1)
    (2.0, 1.0, 33.3, -826.7)
    >>> round(f["hu_-1024_-950_pct"], 1), round(f["hu_-700_-500_pct"], 1)
    (33.3, 33.3)
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape: use the pair of one case")
    voxel_ml = float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0
    lung = mask > 0
    n = int(np.count_nonzero(lung))
    row = {
        "right_ml": np.count_nonzero(mask == 1) * voxel_ml,
        "left_ml": np.count_nonzero(mask == 2) * voxel_ml,
        "lung_ml": n * voxel_ml,
    }
    hu = image[lung].astype(np.float64)
    row["laa_pct"] = 100.0 * np.count_nonzero(hu < laa_hu) / n if n else float("nan")
    row["mean_hu"] = float(hu.mean()) if n else float("nan")
    edges = np.asarray(bands_hu, dtype=float)
    counts = np.bincount(np.clip(np.searchsorted(edges, hu, side="right") - 1, 0, edges.size - 2),
                         minlength=edges.size - 1)
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        row[f"hu_{lo:g}_{hi:g}_pct"] = 100.0 * c / n if n else float("nan")
    return {k: float(v) for k, v in row.items()}


def cohort_features(dataset: CohortDataset, **options: Any) -> pd.DataFrame:
    """The feature table of a preprocessed cohort: one row per case.

    Parameters
    ----------
    dataset : helpers.cohort.CohortDataset
        The store written by :func:`helpers.cohort.run_cohort`.
    **options
        Passed to :func:`lung_features` (``laa_hu=``, ``bands_hu=``).

    Returns
    -------
    pandas.DataFrame
        Index ``case_id``; the columns of :func:`lung_features`.  Volumes are
        those of the stored (cropped) arrays at the cohort's spacing.
    """
    import pandas as pd

    rows = {}
    for i in range(len(dataset)):
        image, mask, meta = dataset[i]
        rows[meta["case_id"]] = lung_features(image, mask, meta["spacing"], **options)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "case_id"
    return table
