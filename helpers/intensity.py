"""Window/level for display and intensity scaling for machine learning.

Two different jobs that the 2017 tutorial mixed up:

* **Display** (:func:`window`): map a Hounsfield-unit range centred on a *level*
  and *width* wide to black-to-white.  The named presets in :data:`WINDOWS` are
  the ones radiologists use on a workstation.
* **Model input** (:func:`clip_hu`, :func:`to_unit_range`, :func:`zero_center`):
  clip to a fixed HU range, scale it to ``[0, 1]`` and subtract a mean computed
  once on the *training set*.  The 2017 Kaggle tutorial used
  ``MIN_BOUND = -1000``, ``MAX_BOUND = 400`` and ``PIXEL_MEAN = 0.25``.

Every function returns a new ``float32`` array (``uint8`` where asked) and never
modifies its input.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from numpy.typing import ArrayLike

from .hu import MAX_BOUND_HU, MIN_BOUND_HU, WINDOWS
from .volume import Volume, as_array

__all__ = [
    "WINDOWS",
    "KAGGLE_2017_PIXEL_MEAN",
    "window",
    "window_bounds",
    "clip_hu",
    "to_unit_range",
    "zero_center",
]

# WINDOWS, the named display windows as ``(level, width)`` in HU, live in helpers.hu.

#: Mean of the ``[0, 1]``-scaled LUNA16 images that the 2017 Kaggle tutorial
#: ("Full preprocessing tutorial", Guido Zuidhof) subtracted as ``PIXEL_MEAN``.
KAGGLE_2017_PIXEL_MEAN = 0.25

WindowSpec = Union[str, tuple[float, float]]



def window_bounds(preset: WindowSpec) -> tuple[float, float]:
    """Lowest and highest HU of a window given by name or by ``(level, width)``.

    Parameters
    ----------
    preset : str or tuple of 2 float
        A key of :data:`WINDOWS` (``"lung"``, ``"mediastinum"``, ``"soft_tissue"``,
        ``"bone"``, ``"brain"``) or a ``(level, width)`` pair in HU.

    Returns
    -------
    tuple of 2 float
        ``(level - width / 2, level + width / 2)`` in HU.

    Raises
    ------
    ValueError
        Unknown preset name, or a width that is not positive.

    Examples
    --------
    >>> window_bounds("lung")
    (-1350.0, 150.0)
    >>> window_bounds((40, 400))
    (-160.0, 240.0)
    """
    if isinstance(preset, str):
        if preset not in WINDOWS:
            raise ValueError(
                f"unknown window preset {preset!r}; expected one of {sorted(WINDOWS)} "
                "or a (level, width) pair in HU such as (40, 400)"
            )
        level, width = WINDOWS[preset]
    else:
        try:
            level, width = (float(v) for v in preset)
        except (TypeError, ValueError):
            raise ValueError(
                f"window must be a preset name or a (level, width) pair in HU; got {preset!r}"
            ) from None
    if not width > 0:
        raise ValueError(f"window width must be positive HU; got width={width} (level={level})")
    return float(level - width / 2.0), float(level + width / 2.0)


def window(hu: ArrayLike | Volume, preset: WindowSpec = "lung", *, out: str = "unit") -> np.ndarray:
    """Window/level a CT image for display: HU range -> black..white.

    Parameters
    ----------
    hu : ndarray or Volume
        Image(s) in Hounsfield units, any shape.
    preset : str or tuple of 2 float, default "lung"
        A name from :data:`WINDOWS` or a ``(level, width)`` pair in HU.
    out : {"unit", "uint8"}, keyword-only
        ``"unit"``: float32 in ``[0, 1]``; ``"uint8"``: integers 0-255 (what an
        image file or a web page stores).

    Returns
    -------
    ndarray, float32 in [0, 1] or uint8
        Same shape as ``hu``.  Values below ``level - width/2`` are 0 (black),
        above ``level + width/2`` are 1 / 255 (white).

    Raises
    ------
    ValueError
        Unknown preset, non-positive width or unknown ``out``.

    Notes
    -----
    The DICOM standard (PS3.3 C.11.2.1.2, (0028,1050) Window Center and
    (0028,1051) Window Width) defines a slightly different linear function
    (centre - 0.5, width - 1) so that integer images map exactly; the
    difference is below one grey level and irrelevant for viewing.

    Examples
    --------
    >>> import numpy as np
    >>> window(np.array([-1350.0, -600.0, 150.0, 1000.0]), "lung")
    array([0. , 0.5, 1. , 1. ], dtype=float32)
    >>> window(np.array([-160, 40, 240]), (40, 400), out="uint8")
    array([  0, 128, 255], dtype=uint8)
    """
    low, high = window_bounds(preset)
    if out not in ("unit", "uint8"):
        raise ValueError(f"out must be 'unit' or 'uint8'; got {out!r}")
    arr = as_array(hu).astype(np.float32)  # a new array: the input is never touched
    arr -= np.float32(low)
    arr /= np.float32(high - low)
    np.clip(arr, 0.0, 1.0, out=arr)
    if out == "uint8":
        return np.rint(arr * 255.0).astype(np.uint8)
    return arr


def clip_hu(hu: ArrayLike | Volume, *, low: float = MIN_BOUND_HU, high: float = MAX_BOUND_HU) -> np.ndarray:
    """Clip HU to ``[low, high]`` (the 2017 tutorial's MIN_BOUND / MAX_BOUND).

    Parameters
    ----------
    hu : ndarray or Volume
        Image(s) in HU.
    low, high : float, keyword-only, default -1000 and 400
        HU bounds.  -1000 is air; above 400 is mostly bone, which the lung
        nodule models of 2017 did not need.

    Returns
    -------
    ndarray, float32
        A clipped copy.

    Raises
    ------
    ValueError
        If ``low >= high``.

    Examples
    --------
    >>> clip_hu([-3024, -500, 1200])
    array([-1000.,  -500.,   400.], dtype=float32)
    """
    if not low < high:
        raise ValueError(f"clip_hu needs low < high; got low={low}, high={high}")
    return np.clip(as_array(hu).astype(np.float32), np.float32(low), np.float32(high))


def to_unit_range(hu: ArrayLike | Volume, *, low: float = MIN_BOUND_HU, high: float = MAX_BOUND_HU) -> np.ndarray:
    """Scale HU linearly so that ``low -> 0`` and ``high -> 1``, clipping outside.

    This is the 2017 ``normalize(image)``: ``(image - MIN_BOUND) / (MAX_BOUND -
    MIN_BOUND)`` then clipped to ``[0, 1]``.

    Parameters
    ----------
    hu : ndarray or Volume
        Image(s) in HU.
    low, high : float, keyword-only, default -1000 and 400
        HU mapped to 0 and 1.

    Returns
    -------
    ndarray, float32 in [0, 1]

    Raises
    ------
    ValueError
        If ``low >= high``.

    Examples
    --------
    >>> to_unit_range([-1000, -300, 400, 2000])
    array([0. , 0.5, 1. , 1. ], dtype=float32)
    """
    if not low < high:
        raise ValueError(f"to_unit_range needs low < high; got low={low}, high={high}")
    arr = clip_hu(hu, low=low, high=high)
    arr -= np.float32(low)
    arr /= np.float32(high - low)
    return arr


def zero_center(x: ArrayLike | Volume, *, mean: float | None = None) -> np.ndarray:
    """Subtract a mean so model inputs are centred on zero.

    Parameters
    ----------
    x : ndarray or Volume
        Usually the output of :func:`to_unit_range`.
    mean : float, keyword-only, optional
        The value to subtract.  Pass the mean computed **once on the training
        set** (the 2017 tutorial used :data:`KAGGLE_2017_PIXEL_MEAN` = 0.25 for
        LUNA16) and reuse it for validation, test and every new patient.
        ``None`` uses the mean of ``x`` itself, which is fine for exploring
        but makes the same tissue come out differently in two patients.

    Returns
    -------
    ndarray, float32

    Examples
    --------
    >>> zero_center([0.0, 0.25, 1.0], mean=KAGGLE_2017_PIXEL_MEAN)
    array([-0.25,  0.  ,  0.75], dtype=float32)
    >>> zero_center([1.0, 3.0])
    array([-1.,  1.], dtype=float32)
    """
    arr = as_array(x).astype(np.float32)
    m = float(arr.mean(dtype=np.float64)) if mean is None else float(mean)
    arr -= np.float32(m)
    return arr
