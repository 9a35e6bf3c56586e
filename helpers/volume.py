"""`Volume`: a CT array that carries its geometry with it.

Conventions used everywhere in :mod:`helpers`:

* the array is indexed ``(z, y, x)`` = (plane, row, column);
* ``spacing`` is a ``(z, y, x)`` tuple of floats in millimetres;
* ``origin`` is the patient-space position (DICOM LPS, ``(x, y, z)`` in mm) of the
  *centre* of voxel ``[0, 0, 0]``: the (0020,0032) Image Position (Patient) of the
  first plane;
* ``direction`` is a 3x3 matrix whose *columns* are the LPS unit vectors of the
  array axes ``z``, ``y`` and ``x`` in that order.

So the LPS position of voxel ``(k, j, i)`` is
``origin + direction @ (spacing * (k, j, i))``.  The conversion from DICOM's
``(x, y, z)`` order happens in the loader only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Volume", "as_volume", "as_array", "is_mask", "as_mask"]

# Tags that identify a person; never shown by ``repr`` and never written to sidecars.
PATIENT_KEYS = ("patient_name", "patient_id", "patient_birth_date", "accession_number")


@dataclass(repr=False, eq=False)
class Volume:
    """A 3-D image in Hounsfield units with its spacing, origin and orientation.

    Parameters
    ----------
    hu : ndarray, shape (z, y, x)
        Voxel values (float32 or int16 for CT in HU; any dtype for masks).
    spacing : tuple of 3 float
        Voxel size ``(z, y, x)`` in mm.
    origin : tuple of 3 float, optional
        LPS position in mm of the centre of voxel ``[0, 0, 0]``.
    direction : ndarray, shape (3, 3), optional
        Columns are the LPS directions of the ``z``, ``y`` and ``x`` array axes.
        Default: an axial scan, feet to head (z up), rows anterior to posterior,
        columns right to left, i.e. ``[[0, 0, 1], [0, 1, 0], [1, 0, 0]]``.
    positions : ndarray, shape (z, 3), optional
        The real (0020,0032) Image Position (Patient) of every plane, kept so that
        unevenly spaced slices can be resampled by position.  Default: the even
        grid implied by ``origin``, ``direction`` and ``spacing``.
    meta : dict, optional
        Facts about the source (modality, series description, file counts,
        warnings...).  Patient-identifying entries are hidden in ``repr``.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((4, 8, 8), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> v.shape, v.spacing
    ((4, 8, 8), (2.5, 0.7, 0.7))
    >>> v.extent_mm
    (10.0, 5.6, 5.6)
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # None only until __post_init__ fills them in (identity, positions on the slice normal)
    direction: np.ndarray = field(default=None)  # type: ignore[arg-type]
    positions: np.ndarray = field(default=None)  # type: ignore[arg-type]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hu = np.asarray(self.hu)
        if self.hu.ndim != 3:
            raise ValueError(f"Volume needs a 3-D (z, y, x) array; got shape {self.hu.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if len(self.spacing) != 3 or not all(s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive mm values (z, y, x); got {self.spacing}")
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        if self.direction is None:
            self.direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if self.positions is None:
            k = np.arange(self.hu.shape[0], dtype=np.float64)
            self.positions = np.asarray(self.origin) + np.outer(k * self.spacing[0], self.direction[:, 0])
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.hu.shape)

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Physical size ``(z, y, x)`` in mm (voxel count times spacing)."""
        return tuple(round(n * s, 6) for n, s in zip(self.shape, self.spacing))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def slice_positions(self) -> np.ndarray:
        """Position of every plane along the slice normal, in mm (float64, shape (z,))."""
        return self.positions @ self.direction[:, 0]

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, j, i, 1)`` voxel indices to LPS ``(x, y, z, 1)`` in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def index_to_lps(self, index: ArrayLike) -> np.ndarray:
        """LPS position (mm) of voxel index/indices ``(k, j, i)`` (last axis of size 3)."""
        idx = np.asarray(index, dtype=np.float64)
        return idx * np.asarray(self.spacing) @ self.direction.T + np.asarray(self.origin)

    def lps_to_index(self, point: ArrayLike) -> np.ndarray:
        """Fractional voxel index ``(k, j, i)`` of LPS point(s) in mm (last axis of size 3)."""
        p = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        return p @ np.linalg.inv(self.direction).T / np.asarray(self.spacing)

    # --------------------------------------------------------------- conveniences
    def with_array(self, array: np.ndarray, **changes: Any) -> "Volume":
        """A copy with another array of the same geometry (e.g. a mask), other fields kept."""
        array = np.asarray(array)
        if array.shape != self.hu.shape and "spacing" not in changes:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.hu.shape}")
        return replace(self, hu=array, meta=dict(self.meta), **changes)

    def __repr__(self) -> str:
        m = self.meta
        desc = m.get("series_description") or ""
        shown = {k: m[k] for k in ("modality", "manufacturer", "kernel", "slice_thickness") if m.get(k) is not None}
        warn = len(m.get("warnings", []))
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.hu.dtype}, spacing=({sp}) mm, "
            f"extent={tuple(round(e, 1) for e in self.extent_mm)} mm"
            + (f", series={desc!r}" if desc else "")
            + "".join(f", {k}={v!r}" for k, v in shown.items())
            + (f", warnings={warn}" if warn else "")
            + ")"
        )


# ------------------------------------------------------------------ coercion
def as_volume(data: Any, *, spacing: ArrayLike | None = None, name: str = "volume") -> Volume:
    """``data`` as a :class:`Volume`: the one place a bare array gets its geometry.

    Every helper that works in mm or mL calls this on its input, so a bare
    array never silently becomes 1 mm voxels.

    Parameters
    ----------
    data : Volume or array_like, shape (z, y, x)
        A Volume is returned as it is.  A bare array needs ``spacing``.
    spacing : tuple of 3 float, optional, keyword-only
        Voxel size ``(z, y, x)`` in mm of a bare array (the default axial
        orientation is assumed).  Must not disagree with a Volume's own spacing.
    name : str, default "volume", keyword-only
        What the caller calls the argument, used in error messages.

    Returns
    -------
    Volume
        ``data`` itself, or a new Volume sharing the array's memory.

    Raises
    ------
    ValueError
        A bare array without ``spacing`` (the message says what to pass), an
        array that is not 3-D, or a ``spacing`` that contradicts a Volume's.

    Examples
    --------
    >>> v = as_volume(np.zeros((2, 3, 4), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> v.spacing, as_volume(v) is v
    ((2.5, 0.7, 0.7), True)
    >>> as_volume(np.zeros((2, 3, 4)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: volume is a bare array of shape (2, 3, 4) with no voxel size, ... spacing=(z, y, x)).
    """
    if isinstance(data, Volume):
        if spacing is not None and not np.allclose(np.broadcast_to(np.asarray(spacing, float), (3,)), data.spacing):
            raise ValueError(
                f"{name} is a Volume with spacing {data.spacing} mm "
                f"but spacing={tuple(np.asarray(spacing).ravel().tolist())} was passed; "
                "drop spacing= (a Volume carries its own) or pass volume.hu"
            )
        return data
    arr = as_array(data, ndim=3, name=name)
    if spacing is None:
        raise ValueError(
            f"{name} is a bare array of shape {arr.shape} with no voxel size, and the sizes here are in mm: "
            "pass the Volume from helpers.load_series, or wrap the array with its spacing in mm, "
            "helpers.Volume(array, spacing=(z, y, x))."
        )
    return Volume(arr, spacing=tuple(np.broadcast_to(np.asarray(spacing, float), (3,))))


def as_array(data: Any, *, shape: tuple[int, ...] | None = None, ndim: int | None = None,
             name: str = "mask") -> np.ndarray:
    """The voxel array of a :class:`Volume`, or ``np.asarray(data)``: for steps that need no mm.

    Parameters
    ----------
    data : Volume or array_like
    shape : tuple of int, optional, keyword-only
        The shape the array must have (the volume a mask or label map belongs to).
    ndim : int, optional, keyword-only
        The number of dimensions the array must have.
    name : str, default "mask", keyword-only
        What the caller calls the argument, used in error messages.

    Returns
    -------
    ndarray
        The array itself (no copy), any dtype.

    Raises
    ------
    ValueError
        If ``shape`` or ``ndim`` is given and differs.

    Examples
    --------
    >>> as_array(Volume(np.ones((1, 2, 2), np.int16), spacing=(1, 1, 1))).dtype.name
    'int16'
    >>> as_array([1, 2]).tolist()
    [1, 2]
    >>> as_array(np.zeros((2, 2)), shape=(3, 2))
    Traceback (most recent call last):
    ...
    ValueError: mask shape (2, 2) differs from the volume's (3, 2); resample the mask onto the volume grid first
    """
    arr = data.hu if isinstance(data, Volume) else np.asarray(data)
    if ndim is not None and arr.ndim != ndim:
        axes = "(z, y, x) " if ndim == 3 else ""
        raise ValueError(f"{name} must be a Volume or a {ndim}-D {axes}array; got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(
            f"{name} shape {arr.shape} differs from the volume's {tuple(shape)}; "
            "resample the mask onto the volume grid first"
        )
    return arr


def is_mask(array: Any) -> bool:
    """The one rule for "is this a mask (or label map), not a CT?": decided by the dtype alone.

    bool, unsigned integers and int8 are masks: CT is int16 or float32 in
    this project, and int8 cannot hold HU (the 2017 methods return int8 0/1).
    Masks are resampled by nearest neighbour, padded with 0 and meshed at
    level 0.5; the data are never scanned to decide.

    Parameters
    ----------
    array : Volume or ndarray

    Returns
    -------
    bool

    Examples
    --------
    >>> is_mask(np.zeros(3, bool)), is_mask(np.array([0, 2], np.uint8)), is_mask(np.array([0, 1], np.int8))
    (True, True, True)
    >>> is_mask(np.array([-1024, 40], np.int16)), is_mask(np.array([0.0, 1.0]))
    (False, False)
    """
    dtype = as_array(array).dtype
    return dtype == np.bool_ or dtype == np.int8 or np.issubdtype(dtype, np.unsignedinteger)


def as_mask(data: Any, *, label: int | None = None, shape: tuple[int, ...] | None = None,
            name: str = "mask") -> np.ndarray:
    """A boolean mask from a mask, a label map or a :class:`Volume` of either.

    Parameters
    ----------
    data : Volume or array_like
        Any dtype: non-zero voxels are inside.
    label : int, optional, keyword-only
        Keep only voxels equal to ``label`` (one lung of a label map).
    shape : tuple of int, optional, keyword-only
        The shape the mask must have (the volume it belongs to).
    name : str, default "mask", keyword-only
        What the caller calls the argument, used in error messages.

    Returns
    -------
    ndarray of bool
        ``data`` itself when it is already a bool array and no label is asked.

    Raises
    ------
    ValueError
        If ``shape`` is given and differs.

    Examples
    --------
    >>> lab = np.array([0, 1, 2, 2], np.uint8)
    >>> as_mask(lab).tolist(), as_mask(lab, label=2).tolist()
    ([False, True, True, True], [False, False, True, True])
    """
    arr = as_array(data, shape=shape, name=name)
    if label is not None:
        return arr == label
    return arr if arr.dtype == np.bool_ else arr != 0
