"""Small array utilities shared by the helpers (memory-frugal versions of numpy calls)."""

from __future__ import annotations

import numpy as np

#: Voxels counted per block by :func:`bincount_blocks` (4 Mi voxels: 32 MB of int64 at most).
BLOCK_VOXELS = 1 << 22


def bincount_blocks(a: np.ndarray, *, minlength: int = 0, block_voxels: int = BLOCK_VOXELS) -> np.ndarray:
    """``np.bincount(a.ravel(), minlength=minlength)`` without a full-size int64 copy.

    ``np.bincount`` first converts its input to ``intp`` (8 bytes per voxel): on a
    label map of a 1 mm chest CT (uint8 or int32) that is a transient copy of
    several hundred MB.  Counting block by block gives the same counts with at
    most ``block_voxels`` converted at a time.

    Parameters
    ----------
    a : ndarray of non-negative integers or bool
        Any shape; counted in C order.
    minlength : int, default 0, keyword-only
        As in ``np.bincount``.
    block_voxels : int, keyword-only
        Voxels converted per step.

    Returns
    -------
    ndarray of int64
        ``counts[i]`` = number of elements equal to ``i``; length ``max(a.max() + 1, minlength)``.

    Examples
    --------
    >>> a = np.array([[0, 1, 1], [3, 0, 1]], np.uint8)
    >>> bincount_blocks(a, block_voxels=2).tolist()
    [2, 3, 0, 1]
    >>> bincount_blocks(a, minlength=6).tolist() == np.bincount(a.ravel(), minlength=6).tolist()
    True
    """
    flat = np.asarray(a).reshape(-1)
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    counts = np.zeros(max(int(minlength), 0), dtype=np.int64)
    for start in range(0, flat.size, max(int(block_voxels), 1)):
        part = np.bincount(flat[start:start + block_voxels])
        if part.size > counts.size:
            part[:counts.size] += counts
            counts = part.astype(np.int64, copy=False)
        else:
            counts[:part.size] += part
    return counts
