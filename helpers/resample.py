"""Resampling a :class:`~helpers.volume.Volume` in physical space (mm), fast and exactly.

The grid convention (used by every function here)
------------------------------------------------
A voxel value is the value at the voxel's *centre*; a voxel covers half a spacing
on each side of its centre.  Along one axis, an input with centres ``c[0] ... c[n-1]``
and nominal spacing ``s`` therefore covers the physical extent
``[c[0] - s/2, c[n-1] + s/2]`` (length ``L = c[n-1] - c[0] + s``, i.e. ``n * s``
for evenly spaced slices).

* ``resample(vol, spacing=t)`` keeps the requested spacing ``t`` *exactly* and uses
  ``m = round(L / t)`` output voxels (at least 1).  The output extent ``m * t``
  differs from ``L`` by at most ``t / 2``; the difference is split equally on
  both ends, so the output grid is *centred on the input extent*.  The new
  ``origin`` is the centre of the first output voxel.
* ``resample(vol, shape=m)`` (and :func:`resize_to_shape`) keep the extent
  exactly: spacing ``L / m``, first centre ``c[0] - s/2 + (L/m)/2``.

SimpleITK does not pick a grid for you: ``sitk.Resample`` samples whatever output
origin/spacing/size you pass.  The usual recipe (SimpleITK notebooks,
``new_size = round(size * spacing / new_spacing)`` with the *input origin kept*)
aligns the first voxel *centres*, so its output extent is shifted by
``(t - s) / 2`` against the input (e.g. 0.75 mm in z for 2.5 mm -> 1 mm).
Both use the same half-voxel-inside rule for values at the border: ITK's linear
interpolator accepts points up to half a voxel outside the first/last centre and
uses the border value there (clamping), which is what this module does too, so
on the same output grid the two results agree to float32 rounding.

The 2017 tutorial's ``scipy.ndimage.zoom`` (see :mod:`helpers.legacy`) uses
neither: it maps the first and last *centres* onto each other, which stretches
the image by up to one voxel and moves every structure by a fraction of a mm.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, cast

import numpy as np
from scipy import ndimage

from ._arrays import bincount_blocks
from .hu import BODY_THRESHOLD_HU, PADDING_HU
from .volume import Volume, as_array, as_volume, is_mask

__all__ = ["resample", "output_grid", "estimate_memory", "resize_to_shape", "crop_or_pad"]

#: An output voxel size in mm: one number (isotropic) or ``(z, y, x)``.
SpacingLike = float | Sequence[float]

# PADDING_HU (the HU that pads images, -1024) and BODY_THRESHOLD_HU (the default body/air
# threshold of ``crop_or_pad(center="body")``) come from helpers.hu.
#: Working memory one thread may use for its slab, as a fraction of the output size.
SLAB_FRACTION = 0.25
#: Upper bound on one thread's slab working memory (bytes).
SLAB_MAX_BYTES = 48 * 2**20
#: Measured allowance for numpy temporaries beyond the arrays counted in ``_slab_bytes``.
SCRATCH_ALLOWANCE = 1.3
#: Relative tolerance when rounding ``extent / spacing`` to a whole voxel count.
ROUND_TOL = 1e-6

_ORDERS = {0: 1, 1: 2, 3: 4}  # interpolation order -> taps per output sample


# ---------------------------------------------------------------------- geometry
def _pick_order(volume: Volume, order: int | None) -> int:
    if order is None:
        return 0 if is_mask(volume.hu) else 1
    if order not in _ORDERS:
        raise ValueError(
            f"order must be 0 (nearest, for label masks), 1 (linear) or 3 (cubic B-spline); got {order!r}"
        )
    if order > 0 and volume.hu.dtype == np.bool_:
        raise ValueError(
            f"a bool mask cannot be interpolated with order={order}; pass order=0 to keep it a mask, "
            "or convert it with mask.astype(np.float32) to get partial-volume fractions"
        )
    return order


def _axis_centres(volume: Volume) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) along z, y, x; z uses the real slice positions."""
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    pos = np.asarray(volume.slice_positions, dtype=np.float64)
    if pos.shape != (nz,):
        raise ValueError(
            f"Volume.positions has {pos.shape[0]} rows but the array has {nz} planes; "
            "rebuild the Volume with one Image Position (Patient) per plane"
        )
    zc = pos - pos[0]
    if nz > 1 and not np.all(np.diff(zc) > 0):
        raise ValueError(
            "slice positions along the slice normal (Volume.slice_positions) must increase strictly "
            f"with the plane index; found steps {np.round(np.diff(zc)[:5], 3).tolist()}... mm. "
            "Sort the planes by position (helpers.io.load_series does) before resampling"
        )
    return [zc, np.arange(ny) * sy, np.arange(nx) * sx]


def _plan(volume: Volume, spacing: SpacingLike, shape: Sequence[int] | None) -> dict[str, Any]:
    """Output grid: shape, spacing, first-centre offsets (mm, per axis) and source coordinates."""
    centres = _axis_centres(volume)
    half = np.asarray(volume.spacing) / 2.0
    want: tuple[float, ...] = ()  # the output spacing asked for, when no shape is given
    if shape is not None:
        shape = tuple(int(m) for m in np.broadcast_to(shape, (3,)))
        if any(m < 1 for m in shape):
            raise ValueError(f"shape must be three positive voxel counts (z, y, x); got {shape}")
    else:
        want = tuple(float(t) for t in np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
        if not all(t > 0 for t in want):
            raise ValueError(f"spacing must be three positive mm values (z, y, x); got {want}")
    out_shape, out_spacing, first = [], [], []
    for ax in range(3):
        c = centres[ax]
        start = c[0] - half[ax]
        length = c[-1] + half[ax] - start
        if shape is not None:
            m = shape[ax]
            t = length / m
            t0 = start + t / 2
        else:
            t = want[ax]
            m = max(1, int(np.floor(length / t * (1 + ROUND_TOL) + 0.5)))
            t0 = start + (length - m * t) / 2 + t / 2
        out_shape.append(m)
        out_spacing.append(float(t))
        first.append(float(t0))
    return {"centres": centres, "shape": tuple(out_shape), "spacing": tuple(out_spacing), "first": first}


def _fractional_index(c: np.ndarray, t0: float, t: float, m: int) -> np.ndarray:
    """Fractional input index of each output centre, clamped to ``[0, n-1]`` (border = edge value)."""
    targets = t0 + t * np.arange(m)
    return np.interp(targets, c, np.arange(c.size, dtype=np.float64))


def _taps(u: np.ndarray, n: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (m, K) int and weights (m, K) float32 of a 1-D kernel at fractional indices u."""
    if order == 0:
        idx = np.clip(np.floor(u + 0.5), 0, n - 1).astype(np.intp)[:, None]
        return idx, np.ones(idx.shape, np.float32)
    if order == 1:
        i0 = np.clip(np.floor(u), 0, max(n - 2, 0)).astype(np.intp)
        w = np.clip(u - i0, 0.0, 1.0)
        i1 = np.minimum(i0 + 1, n - 1)
        return np.stack([i0, i1], 1), np.stack([1 - w, w], 1).astype(np.float32)
    # cubic B-spline (applied to spline coefficients), mirror boundary as scipy's default
    f = np.floor(u)
    x = u - f
    w = np.stack(
        [(1 - x) ** 3 / 6, (3 * x**3 - 6 * x**2 + 4) / 6, (-3 * x**3 + 3 * x**2 + 3 * x + 1) / 6, x**3 / 6], 1
    )
    idx = f.astype(np.intp)[:, None] + np.arange(-1, 3)[None, :]
    if n == 1:
        idx[:] = 0
    else:
        period = 2 * (n - 1)
        idx = np.abs(idx) % period
        idx = np.where(idx > n - 1, period - idx, idx)
    return idx, w.astype(np.float32)


# ---------------------------------------------------------------------- kernels
def _apply_axis(a: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
    """Weighted sum of K gathered copies of ``a`` along ``axis`` (float32 result)."""
    shape_w = [1, 1, 1]
    shape_w[axis] = -1
    if idx.shape[1] == 1:  # nearest: exact gather, dtype kept
        r = np.take(a, idx[:, 0], axis=axis)
        if out is None:
            return r
        out[...] = r
        return out
    for k in range(idx.shape[1]):
        g = np.take(a, idx[:, k], axis=axis)
        wk = w[:, k].reshape(shape_w)
        if k == 0:
            if out is None:
                out = np.multiply(g, wk, dtype=np.float32)
            else:
                np.multiply(g, wk, out=out, dtype=np.float32)
        else:
            if g.dtype == np.float32:
                np.multiply(g, wk, out=g)
                out += g
            else:
                out += np.multiply(g, wk, dtype=np.float32)
        del g
    return cast(np.ndarray, out)  # set at k == 0: idx has at least one column


def _xy(planes: np.ndarray, ty: tuple[np.ndarray, np.ndarray], tx: tuple[np.ndarray, np.ndarray],
        order: int) -> np.ndarray:
    """In-plane (y, x) resampling of a stack of planes; x or y first, whichever makes less data."""
    (iy, wy), (ix, wx) = ty, tx
    _, ny, nx = planes.shape
    my, mx = iy.shape[0], ix.shape[0]
    if order == 3:
        planes = ndimage.spline_filter1d(planes, 3, axis=2, output=np.float32, mode="mirror")
        planes = _apply_axis(planes, 2, ix, wx)
        ndimage.spline_filter1d(planes, 3, axis=1, output=planes, mode="mirror")
        return _apply_axis(planes, 1, iy, wy)
    if ny * mx <= my * nx:
        return _apply_axis(_apply_axis(planes, 2, ix, wx), 1, iy, wy)
    return _apply_axis(_apply_axis(planes, 1, iy, wy), 2, ix, wx)


def _slab_bytes(plan: dict, order: int, isz: int, planes: int) -> int:
    """Scratch bytes one thread needs for a slab of ``planes`` output planes (the steps in _xy/_apply_axis)."""
    mz, my, mx = plan["shape"]
    nz, ny, nx = (c.size for c in plan["centres"])
    kz = min(nz, int(np.ceil(planes * nz / mz)) + _ORDERS[order])  # input planes the slab reads
    if order == 0:  # two gathers in the input dtype, then the z gather
        return kz * my * nx * isz + kz * my * mx * isz + planes * my * mx * isz
    f = 4  # float32
    first = ny * mx if ny * mx <= my * nx else my * nx  # plane size after the first in-plane axis
    pre = kz * ny * nx * f if order == 3 else 0  # spline coefficients of the slab
    step1 = kz * first * (2 * f + isz)  # result + gathered copy + weighted copy
    step2 = kz * first * f + kz * my * mx * 2 * f
    step_z = kz * my * mx * f + planes * my * mx * f
    return int(SCRATCH_ALLOWANCE * (pre + max(step1, step2, step_z)))


def _slab_planes(plan: dict, order: int, in_itemsize: int, out_itemsize: int, workers: int) -> int:
    """Output planes per slab so one thread's scratch stays under its share of the budget."""
    mz, my, mx = plan["shape"]
    budget = min(SLAB_MAX_BYTES, SLAB_FRACTION * mz * my * mx * out_itemsize / max(workers, 1))
    lo, hi = 1, mz
    while lo < hi:  # largest slab that fits (at least one plane)
        mid = (lo + hi + 1) // 2
        if _slab_bytes(plan, order, in_itemsize, mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


# ---------------------------------------------------------------------- public
def resample(
    volume: Volume,
    *,
    spacing: SpacingLike = (1.0, 1.0, 1.0),
    order: int | None = None,
    shape: Sequence[int] | None = None,
    workers: int | None = None,
) -> Volume:
    """Resample a volume to a new voxel spacing (mm) or shape, keeping positions exact.

    Parameters
    ----------
    volume : Volume
        CT (int16 or float32 HU) or a label mask (bool / uint8).  Unevenly spaced
        planes (a missing slice) are handled: the z interpolation uses the real
        plane positions in ``volume.positions``.
    spacing : float or tuple of 3 float, default (1.0, 1.0, 1.0)
        Output voxel size ``(z, y, x)`` in mm; kept exactly (see the module notes
        for where the grid is placed).  Ignored when ``shape`` is given.
    order : {None, 1, 0, 3}, default None
        1 = linear, 0 = nearest (label masks: values and dtype kept exactly),
        3 = cubic B-spline (sharper, may overshoot).  The default ``None`` picks
        0 for bool and unsigned-integer arrays (the project's mask dtypes, e.g.
        the uint8 labels of :func:`helpers.segment.segment_lungs`) and 1 for
        everything else (int16 / float32 HU), so ``resample(mask)`` never
        invents fractional labels.  Pass ``order=1`` explicitly to get
        partial-volume fractions from a uint8 mask.
    shape : tuple of 3 int, optional
        Explicit output shape ``(z, y, x)``; the spacing becomes extent / shape.
    workers : int, optional
        Threads used (default: the number of cores, at most 8).

    Returns
    -------
    Volume
        Array float32 for order 1 and 3 (never float64), the input dtype for
        order 0.  ``origin`` is the LPS centre of the first output voxel,
        ``direction`` is unchanged, ``positions`` are the new even grid, and
        ``meta["resampling"]`` records what was done.

    Raises
    ------
    ValueError
        Bad ``spacing``/``shape``/``order``, a bool mask with ``order > 0``, or
        plane positions that do not increase with the plane index.

    Notes
    -----
    Separable interpolation: per-axis source indices and weights are computed
    once; the in-plane step (x then y, or y then x, whichever produces less
    data) runs on the few input planes each output slab needs, then the z step
    combines them by position.  Slabs run on a thread pool (numpy releases the
    GIL) and each slab's scratch memory is capped at a quarter of the output
    divided by the thread count, so the peak memory of order 0/1 is below 2.5x
    the output array.  Order 3 applies scipy's B-spline prefilter per axis
    (mirror boundary, as ``scipy.ndimage.map_coordinates(order=3)``) and keeps
    one float32 intermediate of shape (input z, output y, output x) on top
    (so when z is *down*-sampled the peak can exceed 2.5x the output).
    Outside the first/last voxel centre (up to half a voxel) the border value
    is used.  See :func:`estimate_memory` to know the cost in advance.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((4, 10, 10), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> r = resample(v, spacing=(1.0, 1.0, 1.0))
    >>> r.shape, r.spacing, r.hu.dtype
    ((10, 7, 7), (1.0, 1.0, 1.0), dtype('float32'))
    >>> [round(o, 3) for o in r.origin]  # (x, y, z) centre of the first output voxel
    [0.15, 0.15, -0.75]
    """
    volume = as_volume(volume)
    order = _pick_order(volume, order)
    plan = _plan(volume, spacing, shape)
    mz, my, mx = plan["shape"]
    a = volume.hu
    nz = a.shape[0]
    u = [_fractional_index(plan["centres"][ax], plan["first"][ax] + plan["centres"][ax][0],
                           plan["spacing"][ax], plan["shape"][ax]) for ax in range(3)]
    taps = [_taps(u[ax], a.shape[ax], order) for ax in range(3)]
    out_dtype = a.dtype if order == 0 else np.dtype(np.float32)
    out = np.empty(plan["shape"], dtype=out_dtype)
    workers = workers or _workers()
    iz, wz = taps[0]

    if order == 3:
        inter = np.empty((nz, my, mx), np.float32)
        step = max(1, _slab_planes(plan, 1, a.itemsize, 4, workers))
        jobs = [(s, min(s + step, nz)) for s in range(0, nz, step)]

        def xy_job(lo_hi):
            lo, hi = lo_hi
            inter[lo:hi] = _xy(a[lo:hi], taps[1], taps[2], 3)

        _run(xy_job, jobs, workers)
        ndimage.spline_filter1d(inter, 3, axis=0, output=inter, mode="mirror")
        src, pre_done = inter, True
    else:
        src, pre_done = a, False

    step = _slab_planes(plan, order, a.itemsize, out.itemsize, workers)
    jobs = [(s, min(s + step, mz)) for s in range(0, mz, step)]

    def z_job(m0_m1: tuple[int, int]) -> None:
        m0, m1 = m0_m1
        idx = iz[m0:m1]
        lo, hi = int(idx.min()), int(idx.max()) + 1
        if pre_done:
            planes = src[lo:hi]
        elif order == 0:
            planes = np.take(np.take(a[lo:hi], taps[1][0][:, 0], axis=1), taps[2][0][:, 0], axis=2)
        else:
            planes = _xy(a[lo:hi], taps[1], taps[2], order)
        _apply_axis(planes, 0, idx - lo, wz[m0:m1], out=out[m0:m1])

    _run(z_job, jobs, workers)

    direction = volume.direction
    offset = np.asarray(plan["first"])  # mm along the z, y, x axes from voxel [0, 0, 0]
    origin = np.asarray(volume.origin) + direction @ offset
    meta = dict(volume.meta)
    note = {
        "from_shape": tuple(volume.shape),
        "from_spacing": tuple(volume.spacing),
        "to_shape": plan["shape"],
        "to_spacing": plan["spacing"],
        "order": order,
        "uneven_z": bool(nz > 2 and np.ptp(np.diff(plan["centres"][0])) > 1e-3),
        "by": "helpers.resample.resample",
    }
    meta["resampling"] = list(meta.get("resampling", [])) + [note]
    return Volume(out, spacing=plan["spacing"], origin=tuple(origin), direction=direction.copy(), meta=meta)


def output_grid(volume: Volume, *, spacing: SpacingLike = (1.0, 1.0, 1.0), shape: Sequence[int] | None = None) -> dict:
    """The output grid :func:`resample` would use, without resampling.

    Handy to give SimpleITK (or any other tool) exactly the same grid.

    Parameters
    ----------
    volume : Volume
        The input.
    spacing, shape
        As in :func:`resample`.

    Returns
    -------
    dict
        ``shape`` (z, y, x), ``spacing`` (z, y, x) mm, ``origin`` (LPS x, y, z mm
        of the first output voxel's centre) and ``direction`` (3x3, unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> g = output_grid(Volume(np.zeros((4, 10, 10), np.int16), spacing=(2.5, 0.7, 0.7)))
    >>> g["shape"], [round(o, 3) for o in g["origin"]]
    ((10, 7, 7), [0.15, 0.15, -0.75])
    """
    volume = as_volume(volume)
    plan = _plan(volume, spacing, shape)
    origin = np.asarray(volume.origin) + volume.direction @ np.asarray(plan["first"])
    return {
        "shape": plan["shape"],
        "spacing": plan["spacing"],
        "origin": tuple(float(o) for o in origin),
        "direction": volume.direction.copy(),
    }


def _run(fn: Callable[[Any], None], jobs: Sequence[Any], workers: int) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            fn(j)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as ex:
        for _ in ex.map(fn, jobs):
            pass


def estimate_memory(volume: Volume, *, spacing: SpacingLike = (1.0, 1.0, 1.0), shape: Sequence[int] | None = None,
                    order: int | None = None) -> dict:
    """Output shape and memory of :func:`resample` *before* running it.

    Parameters
    ----------
    volume : Volume
        The volume you are about to resample.
    spacing, shape, order
        As in :func:`resample`.

    Returns
    -------
    dict
        ``shape`` (tuple), ``spacing`` (tuple, mm), ``dtype`` (str),
        ``output_bytes`` (int), ``peak_bytes`` (int, upper estimate of the extra
        memory the call needs, output included, input excluded) and ``text``
        (human-readable summary).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((120, 512, 512), np.int16), spacing=(2.5, 0.7, 0.7))
    >>> est = estimate_memory(v)
    >>> est["shape"], est["dtype"]
    ((300, 358, 358), 'float32')
    >>> est["text"]  # doctest: +ELLIPSIS
    'output (300, 358, 358) float32 = 146.7 MiB; peak about ... MiB'
    >>> est["peak_bytes"] < 2.5 * est["output_bytes"]
    True
    """
    volume = as_volume(volume)
    order = _pick_order(volume, order)
    plan = _plan(volume, spacing, shape)
    dtype = volume.hu.dtype if order == 0 else np.dtype(np.float32)
    out_bytes = int(np.prod(plan["shape"])) * dtype.itemsize
    workers = _workers()
    # every thread may hold one slab's scratch at the same time
    mz, my, mx = plan["shape"]
    if order == 3:  # in-plane pass over input slabs into one (input z, y, x) intermediate, then z
        step = _slab_planes(plan, 1, volume.hu.itemsize, 4, workers)
        inter = volume.shape[0] * my * mx * 4
        scratch = _slab_bytes(plan, 3, volume.hu.itemsize, step)
    else:
        step = _slab_planes(plan, order, volume.hu.itemsize, dtype.itemsize, workers)
        scratch = _slab_bytes(plan, order, volume.hu.itemsize, step)
    peak = out_bytes + min(workers, -(-mz // step)) * scratch + (inter if order == 3 else 0)
    mib = 2**20
    text = (
        f"output {plan['shape']} {dtype} = {out_bytes / mib:.1f} MiB; "
        f"peak about {peak / mib:.1f} MiB"
    )
    return {
        "shape": plan["shape"],
        "spacing": plan["spacing"],
        "dtype": str(dtype),
        "output_bytes": out_bytes,
        "peak_bytes": peak,
        "text": text,
    }


def resize_to_shape(volume: Volume, shape: Sequence[int], *, order: int | None = None) -> Volume:
    """Resample to a fixed array shape (e.g. a CNN input), keeping the physical extent.

    Parameters
    ----------
    volume : Volume
        Image or mask.
    shape : tuple of 3 int
        Output shape ``(z, y, x)``.
    order : {None, 1, 0, 3}, default None
        As in :func:`resample` (None: nearest for bool/uint8 masks, else linear).

    Returns
    -------
    Volume
        ``spacing = extent / shape`` per axis (usually anisotropic), ``origin``
        the centre of the first output voxel: the extent
        ``[first centre - half voxel, last centre + half voxel]`` is the input's.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((30, 512, 512), np.int16), spacing=(8.0, 0.6465, 0.6465))
    >>> r = resize_to_shape(v, (64, 128, 128))
    >>> r.shape, tuple(round(s, 4) for s in r.spacing), r.extent_mm == v.extent_mm
    ((64, 128, 128), (3.75, 2.586, 2.586), True)
    """
    return resample(volume, shape=shape, order=order)


def _body_centre(volume: Volume, threshold_hu: float) -> np.ndarray:
    body = volume.hu > threshold_hu
    lab, n = ndimage.label(body)
    if n == 0:
        raise ValueError(
            f"no voxel above the body threshold {threshold_hu} HU: is this a CT in HU? "
            "Pass center='array', or a mask with center='mask'"
        )
    sizes = bincount_blocks(lab)  # np.bincount would copy the labels to int64 first
    sizes[0] = 0
    sl = ndimage.find_objects(lab)[int(sizes.argmax()) - 1]
    return np.array([(s.start + s.stop - 1) / 2 for s in sl])


def _mask_centre(mask: np.ndarray | Volume | None, shape: tuple[int, ...]) -> np.ndarray:
    """Centre ``(z, y, x)`` (voxels) of the bounding box of a non-empty mask of the volume's shape."""
    if mask is None:
        raise ValueError("center='mask' needs mask=<array of the volume's shape>")
    m = as_array(mask, shape=shape)
    nz = np.nonzero(m.any(axis=(1, 2)))[0]
    if nz.size == 0:
        raise ValueError("the mask is empty: no voxel to centre on; use center='body' or 'array'")
    ys = np.nonzero(m.any(axis=(0, 2)))[0]
    xs = np.nonzero(m.any(axis=(0, 1)))[0]
    return np.array([(v[0] + v[-1]) / 2 for v in (nz, ys, xs)])


def crop_or_pad(
    volume: Volume,
    shape: Sequence[int],
    *,
    center: str = "body",
    mask: np.ndarray | Volume | None = None,
    fill: float | None = None,
    body_threshold_hu: float = BODY_THRESHOLD_HU,
) -> Volume:
    """Cut or pad the array to ``shape`` around the body, a mask or the array centre.

    Parameters
    ----------
    volume : Volume
        Image or mask.
    shape : tuple of 3 int
        Output shape ``(z, y, x)``; each axis is cropped or padded independently.
    center : {"body", "mask", "array"}, default "body"
        "body": centre of the bounding box of the largest connected region above
        ``body_threshold_hu``; "mask": centre of the bounding box of ``mask``
        (required); "array": the array centre.
    mask : ndarray or Volume, optional
        Same shape as the volume; any non-zero voxel counts.  Only with center="mask".
    fill : float, optional
        Padding value.  Default: 0 for bool / unsigned-integer arrays (masks),
        -1024 HU (air) otherwise.
    body_threshold_hu : float, default -500
        HU above which a voxel counts as body for center="body".

    Returns
    -------
    Volume
        Same dtype and spacing; ``origin`` moved so that every kept voxel keeps
        its LPS position (``out.index_to_lps(k - start) == in.index_to_lps(k)``).

    Raises
    ------
    ValueError
        Unknown ``center``, mask missing / of the wrong shape / empty, or no body found.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.full((4, 6, 6), -1000, np.int16), spacing=(2.0, 1.0, 1.0))
    >>> c = crop_or_pad(v, (4, 8, 4), center="array")
    >>> c.shape, c.origin, int(c.hu[0, 0, 0])
    ((4, 8, 4), (1.0, -1.0, 0.0), -1024)
    """
    volume = as_volume(volume)
    shape = tuple(int(m) for m in np.broadcast_to(shape, (3,)))
    if any(m < 1 for m in shape):
        raise ValueError(f"shape must be three positive voxel counts (z, y, x); got {shape}")
    a = volume.hu
    if mask is not None and center != "mask":
        raise ValueError(f"a mask was passed but center={center!r}; pass center='mask' to centre on it")
    if center == "array":
        c = (np.asarray(a.shape) - 1) / 2.0
    elif center == "body":
        c = _body_centre(volume, body_threshold_hu)
    elif center == "mask":
        c = _mask_centre(mask, a.shape)
    else:
        raise ValueError(f"center must be 'body', 'mask' or 'array'; got {center!r}")
    start = np.floor(c - (np.asarray(shape) - 1) / 2 + 0.5).astype(int)
    if fill is None:
        fill = 0 if is_mask(a) else PADDING_HU
    out = np.full(shape, fill, dtype=a.dtype)
    src = tuple(slice(max(s, 0), min(s + m, n)) for s, m, n in zip(start, shape, a.shape))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    if all(sl.stop > sl.start for sl in src):
        out[dst] = a[src]
    k = np.arange(shape[0]) + start[0]
    positions = volume.index_to_lps(np.stack([k, np.full_like(k, start[1]), np.full_like(k, start[2])], 1))
    inside = (k >= 0) & (k < a.shape[0])
    shift = volume.index_to_lps([0, start[1], start[2]]) - np.asarray(volume.origin)
    positions[inside] = volume.positions[k[inside]] + shift
    origin = positions[0]
    meta = dict(volume.meta)
    meta["crop_or_pad"] = {"start_index": tuple(int(s) for s in start), "shape": shape, "center": center}
    return Volume(out, spacing=volume.spacing, origin=tuple(origin), direction=volume.direction.copy(),
                  positions=positions, meta=meta)
