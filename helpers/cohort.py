"""From one scan to a cohort: a resumable batch pipeline on Dask.

Every *case* under a source folder goes through the same steps —
load → HU → resample → lung mask → crop/pad (or resize) to a fixed shape — and is
written to one Zarr store, one group per case, ready to be read batch by batch
for training a network.  A QC table (CSV and :class:`pandas.DataFrame`) says what
happened to every case.

Layout of an output folder ``OUT``::

    OUT/cohort.zarr/              Zarr v3 root group (attributes: the run's parameters)
    OUT/cohort.zarr/<case_id>/    one group per case: arrays ``image`` and ``mask``,
                                  attributes spacing, origin, direction, series_uid...
    OUT/cohort.zarr/<case_id>/_complete.json   completion marker (the case's QC row)
    OUT/qc.csv                    the QC table, rewritten atomically after every case
    OUT/.tmp/                     cases being written (cleaned at the start of a run)
    OUT/.lock                     present while a run is going on

Why this is safe to kill
------------------------
A worker writes a case into ``OUT/.tmp/<case_id>-<random>/``, flushes the files
to disk, writes the completion marker *last*, and only then renames the whole
folder to ``OUT/cohort.zarr/<case_id>``.  On a local (POSIX) filesystem renaming
a directory within one filesystem is atomic: another process sees either no case
folder or the complete one, never half of it.  A killed run therefore loses only
the cases in flight (their temporary folders are deleted by the next run), and a
case whose folder exists *and* holds the marker is skipped by the next run.
On network filesystems (NFS, Lustre, GPFS) a rename inside one directory is
still atomic for the client that does it; object stores (S3) have no rename, so
``OUT`` must be a filesystem path.  Source folders are only ever read.

Memory and throughput
---------------------
A case's memory peaks while its lung mask is computed: the mask must be the one
:func:`~helpers.segment.segment_lungs` gives on the resampled grid, so the
resampled float32 volume is the largest array; everything else is released as
soon as no later stage needs it and the output is written one chunk at a time
(see :func:`preprocess_case`).  :func:`case_memory` predicts the peak from a
scan's size, :func:`workers_that_fit` turns it into a number of workers, and the
QC table records each case's measured peak (``peak_rss_mb``).  A local cluster
runs one case at a time per worker process and shares the cores out between
the workers (:func:`default_threads`); the largest cases start first, so the
last one to finish is a small one.  ``bench/bench_cohort.py`` measures all of
this on a real-size five-scan mix, stage by stage.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence, cast

import numpy as np

from .errors import DicomSeriesError
from .export import atomic_write, json_default
from .volume import Volume

if TYPE_CHECKING:
    import argparse

    import pandas as pd
    from distributed import Client, Future, LocalCluster

#: A file or folder: a ``str`` or a path-like object.
_Path = str | os.PathLike[str]

__all__ = [
    "QC_COLUMNS",
    "Case",
    "CaseResult",
    "discover_cases",
    "case_id_from_name",
    "preprocess_case",
    "write_case",
    "process_case",
    "run_cohort",
    "default_threads",
    "case_memory",
    "workers_that_fit",
    "stage_profile",
    "read_qc",
    "is_complete",
    "CohortDataset",
    "Batch",
]

#: Name of the Zarr store inside the output folder.
STORE_NAME = "cohort.zarr"
#: Completion marker written last inside every case group.
MARKER_NAME = "_complete.json"
#: QC table file name inside the output folder.
QC_NAME = "qc.csv"
#: Folder (inside the output folder) for cases being written.
TMP_NAME = ".tmp"
#: Lock file present while a run writes to the output folder.
LOCK_NAME = ".lock"
#: Planes per image/mask chunk along z (a case is read as a few chunks).
CHUNK_DEPTH = 32
#: zstd compression level inside Blosc (1 fast ... 9 small).  Level 1: half the CPU of level 3
#: for a 1 mm case (0.43 vs 0.9 CPU-s), files 1 % larger (``bench/bench_cohort.py``).
ZSTD_LEVEL = 1
#: Bytes at offset 128 of a DICOM Part 10 file.
DICOM_MAGIC = b"DICM"
#: On Linux (glibc), allocations of at least this many bytes get their own memory
#: map, so a freed array goes back to the operating system at once instead of
#: staying in the heap for reuse (lowers a real-size case's peak by ~140 MB).
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_malloc_tuned: bool | None = None

#: Columns of the QC table, in order.
QC_COLUMNS = [
    "case_id",
    "status",
    "series_uid",
    "slices",
    "spacing_z_mm",
    "spacing_y_mm",
    "spacing_x_mm",
    "right_lung_ml",
    "left_lung_ml",
    "lung_outside_pct",
    "warnings",
    "error",
    "seconds",
    "peak_rss_mb",
    "source",
    "worker",
]


# ------------------------------------------------------------------ discovery
@dataclass(frozen=True)
class Case:
    """One case to process: its id (the Zarr group name) and its source path."""

    case_id: str
    source: Path


def case_id_from_name(name: str) -> str:
    """A safe Zarr group name from a folder or zip file name.

    Keeps letters, digits, ``-``, ``_`` and ``.``; every other run of characters
    becomes ``_``; a ``.zip`` suffix is dropped; a leading ``.`` or ``_`` is
    removed (Zarr reserves names starting with ``__``).

    Examples
    --------
    >>> case_id_from_name("LUNG1-001.zip")
    'LUNG1-001'
    >>> case_id_from_name("Patient 7 (follow-up)")
    'Patient_7_follow-up'
    """
    if name.lower().endswith(".zip"):
        name = name[:-4]
    cid = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cid or "case"


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == DICOM_MAGIC
    except OSError:
        return False


def discover_cases(source_root: _Path) -> list[Case]:
    """List the cases under ``source_root``.

    Parameters
    ----------
    source_root : str or Path
        A folder.  Each immediate sub-folder and each ``.zip`` file in it is one
        case (the loader searches a case folder recursively).  If the folder holds
        DICOM files *directly* (a single series copied flat), the folder itself is
        the one case.  Hidden entries (names starting with ``.``) are ignored.

    Returns
    -------
    list of Case
        Sorted by name; ids made safe by :func:`case_id_from_name` and made
        unique with a ``-2``, ``-3``... suffix when two names collide.

    Raises
    ------
    DicomSeriesError
        The folder does not exist or holds no case.

    Examples
    --------
    >>> import shutil, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "case 1").mkdir(); _ = (root / "case2.zip").write_bytes(b"")
    >>> [c.case_id for c in discover_cases(root)]
    ['case_1', 'case2']
    >>> shutil.rmtree(root)  # leave nothing behind
    """
    root = Path(source_root)
    if not root.is_dir():
        raise DicomSeriesError(
            f"source folder {root} does not exist or is not a folder; "
            "pass the folder that holds one sub-folder (or .zip) per case"
        )
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    flat = [p for p in entries if p.is_file() and _is_dicom_file(p)]
    if flat:
        sources = [root]
    else:
        sources = [p for p in entries if p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip")]
    if not sources:
        raise DicomSeriesError(
            f"no case found in {root}: expected one sub-folder or .zip file per case "
            f"(or DICOM files directly in it); found {len(entries)} other entries"
        )
    cases: list[Case] = []
    seen: set[str] = set()
    for p in sources:
        cid = base = case_id_from_name(p.name)
        k = 2
        while cid in seen:
            cid, k = f"{base}-{k}", k + 1
        seen.add(cid)
        cases.append(Case(cid, p))
    return cases


# ------------------------------------------------------------- one case
@dataclass
class CaseResult:
    """What :func:`preprocess_case` returns: the fixed-shape image, its mask, QC facts.

    Attributes
    ----------
    image : Volume
        The resampled, cropped/padded (or resized) CT in HU (float32).
    mask : ndarray of uint8, shape = image.shape
        0 background, 1 right lung, 2 left lung.
    qc : dict
        Entries of the QC table (series_uid, slices, spacing_*_mm, lung volumes,
        lung_outside_pct, warnings...).
    """

    image: Volume
    mask: np.ndarray
    qc: dict = field(default_factory=dict)


def preprocess_case(
    source: _Path,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    shape: Sequence[int] = (128, 256, 256),
    mode: str = "crop",
    series_uid: str | None = None,
    threads: int | None = None,
    on_stage: Callable[[str, float], None] | None = None,
) -> CaseResult:
    """Load one case and bring it to a fixed spacing and shape with its lung mask.

    Steps: :func:`helpers.io.load_series` (HU) → :func:`helpers.resample.resample`
    to ``spacing`` → :func:`helpers.segment.segment_lungs` on the resampled
    volume → a fixed ``shape`` by :func:`helpers.resample.crop_or_pad` centred on
    the lungs (``mode="crop"``) or :func:`helpers.resample.resize_to_shape`
    (``mode="resize"``; the spacing then becomes extent / shape).

    Parameters
    ----------
    source : str or Path
        A series folder or .zip (anything :func:`~helpers.io.load_series` reads).
    spacing : tuple of 3 float, default (1.0, 1.0, 1.0)
        Voxel size ``(z, y, x)`` in mm before the crop/resize.
    shape : tuple of 3 int, default (128, 256, 256)
        Output array shape ``(z, y, x)``.
    mode : {"crop", "resize"}, default "crop"
        "crop" keeps the spacing and cuts/pads around the lungs (air -1024 HU
        outside the scan); "resize" keeps the whole field of view and changes
        the spacing.
    series_uid : str, optional
        Passed to the loader when a case holds several series.
    threads : int, optional
        Threads for the resampling (default: the resampler's choice).  The batch
        runner passes the Dask worker's thread count so two workers on two cores
        do not oversubscribe them.
    on_stage : callable, optional
        Called as ``on_stage(name, seconds)`` after each stage ("load",
        "resample", "segment", "crop", "qc"), e.g. by ``bench/bench_cohort.py`` to
        see where time and memory go.

    Returns
    -------
    CaseResult
        ``image`` float32 HU, ``mask`` uint8 of the same shape, ``qc`` dict.

    Raises
    ------
    DicomSeriesError
        From the loader (no DICOM, several series, broken geometry...).
    ValueError
        Unknown ``mode``.

    Notes
    -----
    Lung volumes in ``qc`` are measured on the resampled mask *before* the crop
    and :func:`helpers.segment.lung_qc` flags (implausible volume, missing lung,
    lung touching the scan border) are added to the warnings;
    ``lung_outside_pct`` is the share of lung voxels the crop cut off (0 for
    "resize"), so a too small ``shape`` shows up in the QC table instead of
    silently truncating lungs.

    Memory: the largest array is the resampled float32 volume, which the lung
    mask needs at full resolution (the mask must stay the one
    :func:`~helpers.segment.segment_lungs` gives on that grid).  Everything
    else is released as soon as the next stage no longer needs it: the
    loaded scan right after resampling (only its header facts are kept), the
    resampled volume right after the crop, before the QC of the mask, which
    runs on the lungs' bounding box (plus one voxel, so "touches the border"
    is unchanged) instead of the whole grid; the crop of the mask reuses the
    image's window.  On Linux the process's C library is asked (once) to give
    freed arrays of :data:`MMAP_THRESHOLD_BYTES` or more back to the operating
    system at once, rather than keep them for reuse.  :func:`case_memory`
    predicts the peak from the scan's size.
    """
    from .io import load_series
    from .resample import crop_or_pad, resample, resize_to_shape
    from .segment import segment_lungs

    if mode not in ("crop", "resize"):
        raise ValueError(f"mode must be 'crop' or 'resize'; got {mode!r}")
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    _return_freed_memory()
    stage = _Stages(on_stage)
    vol = load_series(source, series_uid=series_uid)
    facts: dict[str, Any] = {
        "series_uid": vol.meta.get("series_uid") or vol.meta.get("series_instance_uid") or "",
        "slices": int(vol.shape[0]),
        "spacing": tuple(vol.spacing),
        "warnings": [str(w) for w in vol.meta.get("warnings", [])],
    }
    stage("load")
    res = resample(vol, spacing=spacing, workers=threads)
    del vol  # the int16 scan: only its header facts are needed from here on
    stage("resample")
    labels = np.asarray(segment_lungs(res), dtype=np.uint8)
    stage("segment")
    box = _lung_box(labels)
    grid_shape, grid_spacing = res.shape, res.spacing
    if mode == "crop":
        center = "mask" if box is not None else "body"
        image = crop_or_pad(res, shape, center=center, mask=labels if center == "mask" else None)
        del res
        mask = _crop_like(labels, image.meta["crop_or_pad"]["start_index"], shape)
        kept = int(np.count_nonzero(mask))
        total = int(np.count_nonzero(labels[box])) if box is not None else 0
        outside = 100.0 * (total - kept) / total if total else 0.0
    else:
        mask_vol = res.with_array(labels)
        image = resize_to_shape(res, shape)
        del res
        mask = resize_to_shape(mask_vol, shape, order=0).hu.astype(np.uint8)
        del mask_vol
        outside = 0.0
    image = image.with_array(np.asarray(image.hu, dtype=np.float32))
    stage("crop")
    lqc = _lung_qc_in_box(labels, box, shape=grid_shape, spacing=grid_spacing)
    del labels
    warn = facts["warnings"]
    if lqc["flags"]:
        warn.append(f"lung_qc: {', '.join(lqc['flags'])}")
    if mode == "crop" and outside > 0.5:
        warn.append(
            f"the crop to {shape} cut off {outside:.1f}% of the lung voxels; "
            "use a larger shape, a larger spacing or mode='resize'"
        )
    stage("qc")
    sz, sy, sx = facts["spacing"]
    qc = {
        "series_uid": facts["series_uid"],
        "slices": facts["slices"],
        "spacing_z_mm": round(sz, 4),
        "spacing_y_mm": round(sy, 4),
        "spacing_x_mm": round(sx, 4),
        "right_lung_ml": round(float(lqc["right_ml"]), 1),
        "left_lung_ml": round(float(lqc["left_ml"]), 1),
        "lung_outside_pct": round(outside, 2),
        "warnings": warn,
    }
    return CaseResult(image=image, mask=mask, qc=qc)


def _return_freed_memory() -> bool:
    """Once per process: glibc maps every allocation of :data:`MMAP_THRESHOLD_BYTES` or more on its own.

    By default glibc keeps freed blocks below a moving threshold (up to 32 MB) in
    its heap for reuse, so a stage's freed work arrays still count in the
    process's memory during the next stage.  No effect (returns False) where
    ``mallopt`` does not exist (macOS, Windows, musl).
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError, TypeError):
            _malloc_tuned = False
        else:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            _malloc_tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    return _malloc_tuned


class _Stages:
    """Calls ``on_stage(name, seconds since the previous stage)``; does nothing without a callback."""

    def __init__(self, on_stage: Callable[[str, float], None] | None) -> None:
        self.fn = on_stage
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.fn is not None:
            now = time.perf_counter()
            self.fn(name, now - self.t)
            self.t = time.perf_counter()  # the callback's own time is not charged to the next stage


def _lung_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box (slices) of the non-zero voxels, or None when there are none."""
    zs = np.flatnonzero(labels.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    sub = labels[zs[0] : zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    bz, by, bx = (slice(int(v[0]), int(v[-1]) + 1) for v in (zs, ys, xs))
    return bz, by, bx


def _lung_qc_in_box(labels: np.ndarray, box: tuple[slice, slice, slice] | None, *, shape: tuple[int, ...],
                    spacing: tuple[float, float, float]) -> dict[str, Any]:
    """:func:`helpers.segment.lung_qc` of ``labels`` on a grid of ``shape`` and ``spacing``, run on the
    lungs' bounding box grown by one voxel: the same volumes and flags (a lung touches the array's
    border in the box exactly when it does in the whole grid), a fraction of the memory (no CT
    needed: only the grid's voxel size counts).  Components are not counted: no QC column or flag
    uses them, and labelling each lung at 1 mm was half a second of a tall case."""
    from .segment import lung_qc

    if box is not None:
        box = _grow_box(box, labels.shape)
        labels = labels[box]
        shape = labels.shape
    grid = Volume(np.broadcast_to(np.float32(0), shape), spacing=spacing)  # no memory: a grid only
    return lung_qc(labels, grid, warn=False, count_components=False)


def _grow_box(box: Sequence[slice], shape: Sequence[int]) -> tuple[slice, slice, slice]:
    """``box`` grown by one voxel on every side, within the array."""
    bz, by, bx = (slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape))
    return bz, by, bx


def _crop_like(a: np.ndarray, start: Sequence[int], shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """``a`` cut/padded to ``shape`` from index ``start`` (what crop_or_pad does to the array)."""
    out = np.full(shape, fill, dtype=a.dtype)
    src = tuple(slice(max(s, 0), min(s + m, n)) for s, m, n in zip(start, shape, a.shape))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    if all(sl.stop > sl.start for sl in src):
        out[dst] = a[src]
    return out


# ------------------------------------------------------------- memory per case
#: Resident memory of a Dask worker process once numpy, scipy, pydicom, zarr and Dask are
#: imported, before any case (bytes; measured by ``bench/bench_cohort.py``: 110 MB; a
#: plain Python process running ``workers=0`` needs ~90 MB).
PROCESS_BASE_BYTES = 120e6
#: Peak working memory of :func:`helpers.segment.segment_lungs` on top of the volume it
#: segments and its uint8 labels: a fixed part (bytes) plus a part per voxel (bytes per
#: voxel).  Fitted, rounded up, to ``bench/bench_cohort.py``'s stage profiles: 202 MB for
#: the full-size sample at 1 mm (39 M voxels), 456 MB for the tall 134-slice case (122 M).
SEGMENT_FIXED_BYTES = 100e6
SEGMENT_BYTES_PER_VOXEL = 3.2
#: Share of the machine's memory :func:`workers_that_fit` plans to use (the rest: the
#: operating system, the scheduler, the notebook).
MEMORY_SHARE = 0.8


def case_memory(scan_shape: Sequence[int], scan_spacing: Sequence[float], *,
                spacing: float | Sequence[float] = (1.0, 1.0, 1.0)) -> dict[str, Any]:
    """Peak memory of one worker running :func:`preprocess_case` on a scan, before running it.

    Parameters
    ----------
    scan_shape : tuple of 3 int
        The scan's array shape ``(slices, rows, columns)``.
    scan_spacing : tuple of 3 float
        Its voxel size ``(z, y, x)`` in mm.
    spacing : tuple of 3 float, default (1.0, 1.0, 1.0)
        The spacing it is resampled to (mm).

    Returns
    -------
    dict
        ``resampled_shape``, ``resampled_bytes`` (float32), ``peak_bytes`` (the
        process's peak resident memory, imports included), ``stages`` (bytes of
        arrays alive at the load, resample and segment stages) and ``text``.

    Notes
    -----
    The largest stage is the lung mask: the resampled float32 volume, its
    uint8 labels and the segmentation's working memory
    (:data:`SEGMENT_FIXED_BYTES` + :data:`SEGMENT_BYTES_PER_VOXEL` per voxel);
    the loaded int16 scan is released after resampling.  Add
    :data:`PROCESS_BASE_BYTES` for the process itself.  The constants are
    measured by ``python -m bench --only cohort``, which also prints this
    prediction next to the measured peak.

    Examples
    --------
    >>> m = case_memory((134, 512, 512), (3.0, 1.074, 1.074))
    >>> m["resampled_shape"]
    (402, 550, 550)
    >>> round(m["resampled_bytes"] / 1e6)
    486
    >>> m["peak_bytes"] < 3 * m["resampled_bytes"]
    True
    """
    scan_shape = tuple(int(n) for n in scan_shape)
    scan_spacing = tuple(float(s) for s in scan_spacing)
    spacing = tuple(float(t) for t in np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    out = tuple(max(1, int(np.floor(n * s / t + 0.5))) for n, s, t in zip(scan_shape, scan_spacing, spacing))
    n_in, n_out = int(np.prod(scan_shape)), int(np.prod(out))
    stages = {
        "load": 2 * n_in,  # int16 HU
        "resample": 2 * n_in + 4 * n_out + min(4 * n_out // 4, 48 * 2**20),  # + one slab of scratch
        "segment": 4 * n_out + n_out + int(SEGMENT_FIXED_BYTES + SEGMENT_BYTES_PER_VOXEL * n_out),
    }
    peak = int(PROCESS_BASE_BYTES + max(stages.values()))
    sp = f"{spacing[0]:g}" if len(set(spacing)) == 1 else "x".join(f"{t:g}" for t in spacing)
    text = (f"{'x'.join(map(str, scan_shape))} -> {'x'.join(map(str, out))} ({sp} mm): "
            f"float32 {4 * n_out / 1e6:.0f} MB, peak about {peak / 1e9:.2f} GB per worker")
    return {"resampled_shape": out, "resampled_bytes": 4 * n_out, "peak_bytes": peak, "stages": stages,
            "text": text}


def available_memory() -> int | None:
    """Bytes of memory available for new work (``MemAvailable`` of ``/proc/meminfo``; None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def workers_that_fit(memory_bytes: float, peak_bytes: float, *, cores: int | None = None,
                     share: float = MEMORY_SHARE) -> int:
    """How many worker processes fit: ``share`` of ``memory_bytes`` over one worker's peak, at most ``cores``.

    Parameters
    ----------
    memory_bytes : float
        Memory you can give the run (a laptop's RAM, a Binder session's limit).
    peak_bytes : float
        One worker's peak (``case_memory(...)["peak_bytes"]`` or the QC table's
        ``peak_rss_mb`` x 1e6).
    cores : int, optional
        Upper bound (more processes than cores do not go faster).
    share : float, default 0.8
        Part of the memory the workers may use.

    Returns
    -------
    int
        0 when not even one worker fits (run with ``workers=0`` on a bigger machine).

    Examples
    --------
    >>> workers_that_fit(8e9, 1.0e9)
    6
    >>> workers_that_fit(8e9, 1.0e9, cores=2), workers_that_fit(2e9, 2.6e9)
    (2, 0)
    """
    n = int(share * float(memory_bytes) // float(peak_bytes))
    return max(0, min(n, cores) if cores is not None else n)


def stage_profile(source: _Path, out: _Path, *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                  shape: Sequence[int] = (128, 256, 256), mode: str = "crop", image_dtype: str = "int16",
                  hook: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """One case, stage by stage: :func:`preprocess_case` then :func:`write_case`, ``hook(name, seconds)`` after each.

    Used by ``bench/bench_cohort.py`` (which reads the process's peak memory in
    ``hook``) to show where time and memory go.  ``out`` must not exist.

    Returns
    -------
    dict
        ``case`` (a description) and ``resampled_mb`` (the float32 volume the
        mask is computed on, MB) and ``predicted_peak_mb`` (:func:`case_memory`).
    """
    hook = hook or (lambda name, seconds: None)
    result = preprocess_case(source, spacing=spacing, shape=shape, mode=mode, on_stage=hook)
    t = time.perf_counter()
    write_case(result, out, case_id=Path(source).name, image_dtype=image_dtype)
    hook("write", time.perf_counter() - t)
    scan = result.image.meta["resampling"][0]  # the first resampling: from the scan's grid
    mem = case_memory(scan["from_shape"], scan["from_spacing"], spacing=spacing)
    return {"case": f"{Path(source).name}: {tuple(scan['from_shape'])} -> {mem['resampled_shape']}",
            "resampled_mb": mem["resampled_bytes"] / 1e6, "predicted_peak_mb": mem["peak_bytes"] / 1e6}


# ------------------------------------------------------------- writing
def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder below ``folder`` to disk (before the rename)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        with contextlib.suppress(OSError):
            fd = os.open(dirpath, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_case(
    result: CaseResult,
    folder: _Path,
    *,
    case_id: str,
    image_dtype: str = "int16",
    chunk_depth: int = CHUNK_DEPTH,
    marker: dict | None = None,
) -> Path:
    """Write one case as a Zarr v3 group in ``folder`` (which must not exist yet).

    Parameters
    ----------
    result : CaseResult
        From :func:`preprocess_case`.
    folder : str or Path
        New folder for the group (the runner passes a temporary name).
    case_id : str
        Stored in the attributes.
    image_dtype : {"int16", "float32"}, default "int16"
        int16 rounds HU to whole units (half the size; CT is acquired in whole
        HU anyway); float32 keeps the interpolated values.
    chunk_depth : int, default 32
        Planes per chunk: a case is a handful of chunks, so reading one case
        reads a few files, and reading a slab reads only what it needs.
    marker : dict, optional
        If given, written last as ``_complete.json`` (the completion marker).

    Returns
    -------
    Path
        ``folder``.

    Notes
    -----
    Arrays are compressed with Blosc-zstd (:data:`ZSTD_LEVEL`) and bit-shuffle.  Group
    attributes: ``case_id``, ``spacing`` and ``origin`` (z, y, x / LPS x, y, z mm),
    ``direction`` (3x3), ``series_uid``, ``image_dtype``, ``labels``.
    """
    import zarr
    from zarr.codecs import BloscCodec

    if image_dtype not in ("int16", "float32"):
        raise ValueError(f"image_dtype must be 'int16' or 'float32'; got {image_dtype!r}")
    folder = Path(folder)
    img = np.asarray(result.image.hu)
    mask = np.asarray(result.mask, dtype=np.uint8)
    if mask.shape != img.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {img.shape}")
    chunks = (max(1, min(int(chunk_depth), img.shape[0])),) + img.shape[1:]
    g = zarr.open_group(str(folder), mode="w-")
    dtypes = {"image": np.dtype(image_dtype), "mask": np.dtype(np.uint8)}
    for name, arr in (("image", img), ("mask", mask)):
        codec = BloscCodec(cname="zstd", clevel=ZSTD_LEVEL, shuffle="bitshuffle")
        z = g.create_array(name, shape=arr.shape, dtype=dtypes[name], chunks=chunks, compressors=codec)
        for k0 in range(0, arr.shape[0], chunks[0]):  # one chunk at a time: no whole-case copies
            part = arr[k0 : k0 + chunks[0]]
            if name == "image":
                part = _image_values(part, image_dtype)
            z[k0 : k0 + chunks[0]] = part
    vol = result.image
    g.attrs.update(
        {
            "case_id": case_id,
            "series_uid": result.qc.get("series_uid", ""),
            "spacing": [float(s) for s in vol.spacing],
            "origin": [float(o) for o in vol.origin],
            "direction": np.asarray(vol.direction).tolist(),
            "image_dtype": image_dtype,
            "image_units": "HU",
            "labels": {"0": "background", "1": "right lung", "2": "left lung"},
        }
    )
    if marker is not None:
        _fsync_tree(folder)
        _write_json_atomic(folder / MARKER_NAME, marker)
    return folder


def _image_values(part: np.ndarray, image_dtype: str) -> np.ndarray:
    """HU as stored: float32, or rounded to whole HU and clipped to int16."""
    part = np.asarray(part, dtype=np.float32)
    if image_dtype == "int16":
        return np.clip(np.rint(part), -32768, 32767).astype(np.int16)
    return part


def _write_json_atomic(path: Path, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, default=json_default)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def is_complete(case_folder: _Path) -> bool:
    """True when a case group exists and holds its completion marker."""
    return (Path(case_folder) / MARKER_NAME).is_file()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, DicomSeriesError):
        return str(exc)
    # Name the step that failed: the innermost frame inside helpers/.
    where = ""
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        if f"{os.sep}helpers{os.sep}" in fr.filename:
            where = f" (in {Path(fr.filename).name}:{fr.lineno} {fr.name})"
            break
    return f"{type(exc).__name__}: {exc}{where}"


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


class _PeakMemory:
    """Peak resident memory (MB) of this process while a case runs (Linux ``/proc``; None elsewhere).

    In a process of its own (a Dask worker) the kernel's high-water mark is
    reset when the case starts, so the figure is the case's own peak.  In a
    process we do not own (``workers=0``, e.g. a notebook kernel) the mark is
    left alone: the figure is given only when the case raised it (else None).
    """

    def __init__(self) -> None:
        self.reset = False
        self.before = _status_mb("VmHWM")
        if self.before is not None and _worker_threads() is not None:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.reset = True
            except OSError:
                pass

    def peak_mb(self) -> float | None:
        now = _status_mb("VmHWM")
        if now is None or (not self.reset and (self.before is None or now <= self.before)):
            return None
        return round(now, 1)


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def _worker_threads() -> int | None:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def process_case(
    source: _Path,
    case_id: str,
    out: _Path,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    shape: Sequence[int] = (128, 256, 256),
    mode: str = "crop",
    image_dtype: str = "int16",
    chunk_depth: int = CHUNK_DEPTH,
    step: Callable[..., CaseResult] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run one case end to end and return its QC row; never raises for a bad case.

    This is the task a Dask worker runs.  The worker reads ``source`` and writes
    ``out/cohort.zarr/<case_id>`` itself (temporary folder, marker, rename), so
    both must be reachable from the worker.

    Parameters
    ----------
    source : str or Path
        The case folder or .zip.
    case_id : str
        Group name.
    out : str or Path
        The output folder (already prepared by :func:`run_cohort`).
    spacing, shape, mode
        As in :func:`preprocess_case`.
    image_dtype, chunk_depth
        As in :func:`write_case`.
    step : callable, optional
        Replaces :func:`preprocess_case` (same keyword arguments, returns a
        :class:`CaseResult`), to plug in another per-case recipe.
    threads : int, optional
        Threads for the case's resampling.  Default: the Dask worker's thread
        count inside a worker, the resampler's own choice (every core) outside.

    Returns
    -------
    dict
        A QC row (keys :data:`QC_COLUMNS`); ``status`` is "done" or "failed",
        ``error`` holds the message of what went wrong.
    """
    t0 = time.perf_counter()
    mem = _PeakMemory()
    out = Path(out)
    row: dict[str, Any] = {c: None for c in QC_COLUMNS}
    row.update(case_id=case_id, source=str(source), worker=_worker_name(), warnings="", error="")
    step = step or preprocess_case
    tmp = out / TMP_NAME / f"{case_id}-{uuid.uuid4().hex[:8]}"
    final = out / STORE_NAME / case_id
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads = threads or _worker_threads()
            kw: dict[str, Any] = {"threads": threads} if (threads and step is preprocess_case) else {}
            result = step(source, spacing=spacing, shape=shape, mode=mode, **kw)
        qc = dict(result.qc)
        warns = list(qc.pop("warnings", []) or [])
        for w in caught:
            msg = str(w.message)
            if msg not in warns:
                warns.append(msg)
        row.update({k: v for k, v in qc.items() if k in row})
        row["warnings"] = " | ".join(warns)
        row["status"] = "done"
        row["seconds"] = round(time.perf_counter() - t0, 2)
        row["peak_rss_mb"] = mem.peak_mb()
        tmp.parent.mkdir(parents=True, exist_ok=True)
        write_case(result, tmp, case_id=case_id, image_dtype=image_dtype, chunk_depth=chunk_depth, marker=row)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run finished it first
        with contextlib.suppress(OSError):
            fd = os.open(final.parent, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    except Exception as exc:  # one bad case never stops the run: it is reported in the row
        shutil.rmtree(tmp, ignore_errors=True)
        row["status"] = "failed"
        row["error"] = _error_text(exc)
        row["peak_rss_mb"] = mem.peak_mb()
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


# ------------------------------------------------------------- the run
def _write_qc(rows: list[dict], path: Path) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=QC_COLUMNS)
    df["slices"] = df["slices"].astype("Int64")
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


def read_qc(out: _Path) -> pd.DataFrame:
    """The QC table of an output folder as a :class:`pandas.DataFrame` (from ``qc.csv``)."""
    import pandas as pd

    path = Path(out) / QC_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no QC table at {path}: run `python -m helpers preprocess SOURCE {out}` first")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"slices": "Int64"})
    return df.reindex(columns=QC_COLUMNS)


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """One run per output folder: a lock file with host and pid, stale locks taken over."""
    lock = out / LOCK_NAME
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                other = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                other = {}
            alive = True
            if other.get("host") == me["host"]:
                try:
                    os.kill(int(other.get("pid", -1)), 0)
                except (ProcessLookupError, ValueError):
                    alive = False
                except PermissionError:
                    alive = True
            if alive:
                raise RuntimeError(
                    f"{out} is being written by another run (host {other.get('host')}, pid {other.get('pid')}); "
                    f"wait for it, or delete {lock} if that run is dead"
                ) from None
            lock.unlink(missing_ok=True)  # a killed run left it: take over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _prepare_out(out: Path, source_root: Path, params: dict) -> None:
    import zarr

    src, dst = source_root.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise ValueError(
            f"the output folder {out} is inside the source folder {source_root}; "
            "source folders are never written to: choose an output folder elsewhere"
        )
    out.mkdir(parents=True, exist_ok=True)
    store = out / STORE_NAME
    if (store / "zarr.json").is_file():
        # written by _prepare_out below: a dict (zarr types attributes as any JSON value)
        old = cast("dict[str, Any]", dict(zarr.open_group(str(store), mode="r").attrs).get("params", {}))
        diff = {k: (old.get(k), v) for k, v in params.items() if old.get(k) != v}
        if diff:
            said = ", ".join(f"{k}={a!r} (asked {b!r})" for k, (a, b) in diff.items())
            raise ValueError(
                f"{store} was written with {said}; mixing would give cases of different "
                "shapes or spacing: choose another output folder, or delete this one"
            )
    else:
        g = zarr.open_group(str(store), mode="a")
        g.attrs["params"] = params
    (out / TMP_NAME).mkdir(exist_ok=True)


def _clean_tmp(out: Path) -> list[str]:
    """Delete cases a killed run left half written; returns their names."""
    tmp = out / TMP_NAME
    gone = []
    if tmp.is_dir():
        for p in tmp.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        ip = get_ipython()
        return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    if _in_notebook():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="case", desc="preprocess", file=sys.stderr)


def _make_client(scheduler: str | None, workers: int,
                 memory_limit: str | int) -> tuple[Client, LocalCluster | None, str | None]:
    """(client, cluster, scratch folder) — cluster and folder are None for an existing scheduler."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None, None
    import dask

    # the cluster's scratch space (otherwise a dask-scratch-space left in the system temp folder),
    # removed when run_cohort closes the cluster
    scratch = tempfile.mkdtemp(prefix="dask-cohort-")
    with dask.config.set({"temporary-directory": scratch}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one case at a time per process; the case's own threads: process_case(threads=)
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
            local_directory=scratch,
        )
    return Client(cluster), cluster, scratch


def run_cohort(
    source_root: _Path,
    out: _Path,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    shape: Sequence[int] = (128, 256, 256),
    mode: str = "crop",
    image_dtype: str = "int16",
    chunk_depth: int = CHUNK_DEPTH,
    scheduler: str | None = None,
    client: Client | None = None,
    workers: int = 2,
    threads_per_worker: int | None = None,
    memory_limit: str | int = "auto",
    progress: bool = True,
    step: Callable[..., CaseResult] | None = None,
) -> pd.DataFrame:
    """Preprocess every case under ``source_root`` into ``out``; resumable.

    Parameters
    ----------
    source_root : str or Path
        One sub-folder or .zip per case (see :func:`discover_cases`).  Never written to.
    out : str or Path
        Output folder (created); must not be inside ``source_root``.
    spacing, shape, mode
        As in :func:`preprocess_case`.
    image_dtype, chunk_depth
        As in :func:`write_case`.
    scheduler : str, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``): a Slurm,
        Kubernetes or any other Dask cluster.  Default: start a
        :class:`~distributed.LocalCluster` of ``workers`` processes.
    client : distributed.Client, optional
        Use this client (and its cluster) instead; it is not closed.
    workers : int, default 2
        Worker processes of the local cluster.  ``0`` runs the cases one after
        the other in this process, without Dask (handy for debugging); so does a
        run with a single case left to do.  Plan the number with
        :func:`case_memory` and :func:`workers_that_fit`.
    threads_per_worker : int, optional
        Threads each worker process uses inside a case (the resampling); every
        worker runs one case at a time.  Default for a local cluster
        :func:`default_threads`: the usable cores divided among the workers, so
        two workers on two cores get one thread each and never fight over a
        core, and one worker gets both.  Default with ``scheduler`` or
        ``client``: each Dask worker's own thread count.
    memory_limit : str or int, default "auto"
        Per-worker memory limit of the local cluster ("auto" = RAM / workers).
    progress : bool, default True
        Progress bar (tqdm in a terminal, a widget in a notebook).
    step : callable, optional
        Replaces :func:`preprocess_case` (see :func:`process_case`).

    Returns
    -------
    pandas.DataFrame
        The QC table, one row per case in discovery order, also in ``out/qc.csv``.
        ``status``: "done" (this run), "skipped" (completed by an earlier run; its
        row comes from the case's marker) or "failed" (``error`` says why; the
        case is tried again by the next run).

    Raises
    ------
    DicomSeriesError
        ``source_root`` holds no case.
    ValueError
        ``out`` is inside ``source_root`` or was written with other parameters.
    RuntimeError
        Another run is writing to ``out``.

    Notes
    -----
    The QC CSV is rewritten atomically after every finished case, so a killed run
    leaves a table of what it finished.  Workers read the sources and write the
    output themselves: on a cluster both paths must be on a filesystem every
    worker sees, and ``helpers`` must be installed in the workers' environment.
    """
    source_root, out = Path(source_root), Path(out)
    cases = discover_cases(source_root)
    shape = [int(n) for n in shape]
    spacing = [float(s) for s in spacing]
    params = {"spacing": spacing, "shape": shape, "mode": mode, "image_dtype": image_dtype}
    if mode not in ("crop", "resize"):
        raise ValueError(f"mode must be 'crop' or 'resize'; got {mode!r}")
    _prepare_out(out, source_root, params)
    task_kw = dict(spacing=tuple(spacing), shape=tuple(shape), mode=mode, image_dtype=image_dtype,
                   chunk_depth=chunk_depth, step=step)
    qc_path = out / QC_NAME
    with _run_lock(out):
        _clean_tmp(out)
        rows, todo = _done_and_todo(cases, out)

        def ordered() -> list[dict]:
            return [rows[c.case_id] for c in cases if c.case_id in rows]

        _write_qc(ordered(), qc_path)
        bar = _progress_bar(len(cases), len(cases) - len(todo), progress)
        try:
            if not todo:
                pass
            elif client is None and scheduler is None and (workers == 0 or len(todo) == 1):
                # no Dask: asked for, or one case left (a cluster would only add its start-up time)
                _run_serial(todo, out, task_kw, rows, ordered, qc_path, bar)
            else:
                if threads_per_worker is None and client is None and scheduler is None:
                    threads_per_worker = default_threads(workers)
                if threads_per_worker:
                    task_kw["threads"] = int(threads_per_worker)
                _run_on_dask(_largest_first(todo), out, task_kw, rows, ordered, qc_path, bar,
                             client=client, scheduler=scheduler, workers=workers, memory_limit=memory_limit)
        finally:
            if bar is not None:
                bar.close()
        return _write_qc(ordered(), qc_path)


def _done_and_todo(cases: list[Case], out: Path) -> tuple[dict[str, dict], list[Case]]:
    """QC rows of the cases an earlier run completed ("skipped"), and the cases still to do.

    A case folder without its completion marker was not written by this
    pipeline atomically: it is moved aside, deleted and redone.
    """
    rows: dict[str, dict] = {}
    todo: list[Case] = []
    for case in cases:
        final = out / STORE_NAME / case.case_id
        if is_complete(final):
            try:
                row = json.loads((final / MARKER_NAME).read_text())
            except (OSError, ValueError):
                row = {"case_id": case.case_id}
            row.update(status="skipped", source=str(case.source))
            rows[case.case_id] = row
            continue
        if final.exists():  # no marker: not written by us atomically; redo it
            aside = out / TMP_NAME / f"{case.case_id}-incomplete-{uuid.uuid4().hex[:8]}"
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        todo.append(case)
    return rows, todo


def _run_serial(todo: list[Case], out: Path, task_kw: dict, rows: dict[str, dict],
                ordered: Callable[[], list[dict]], qc_path: Path, bar: Any) -> None:
    """The cases one after the other in this process; the QC table is rewritten after each."""
    for case in todo:
        rows[case.case_id] = process_case(str(case.source), case.case_id, str(out), **task_kw)
        _write_qc(ordered(), qc_path)
        if bar is not None:
            bar.update(1)


def _source_bytes(path: Path) -> int:
    """Bytes of a case's files (its size on disk: a proxy for its processing time)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path, followlinks=True)
                   for f in files)
    except OSError:
        return 0


def _largest_first(todo: list[Case]) -> list[Case]:
    """Largest cases first, so the last case to finish is a small one (shorter total time on N workers)."""
    return sorted(todo, key=lambda c: -_source_bytes(c.source))


def default_threads(workers: int) -> int:
    """Threads per worker process: the usable cores divided among ``workers`` processes (at least 1).

    Examples
    --------
    >>> default_threads(10_000)
    1
    >>> default_threads(1) == default_threads(0) >= 1
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(workers)))


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = 40) -> Iterator[None]:
    """Only errors (level 40) from logger ``name`` inside the block."""
    import logging

    log = logging.getLogger(name)
    old = log.level
    log.setLevel(max(level, old))
    try:
        yield
    finally:
        log.setLevel(old)


def _run_on_dask(todo: list[Case], out: Path, task_kw: dict, rows: dict[str, dict],
                 ordered: Callable[[], list[dict]], qc_path: Path, bar: Any, *, client: Client | None,
                 scheduler: str | None, workers: int, memory_limit: str | int) -> None:
    """The cases as Dask tasks (one per case, largest first); the QC table is rewritten as each finishes."""
    from distributed import as_completed

    own: tuple[Client | None, LocalCluster | None, str | None] = (None, None, None)
    if client is None:
        made = _make_client(scheduler, workers, memory_limit)
        own, client = made, made[0]
    futures = {}
    try:
        run = uuid.uuid4().hex[:6]
        for case in todo:
            fut = client.submit(process_case, str(case.source), case.case_id, str(out), **task_kw,
                                key=f"preprocess-{case.case_id}-{run}", pure=False, retries=0)
            futures[fut] = case
        for fut in as_completed(list(futures)):
            case = futures[fut]
            rows[case.case_id] = _task_row(fut, case)
            _write_qc(ordered(), qc_path)
            if bar is not None:
                bar.update(1)
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()
        _close_own(*own)


def _task_row(fut: Future, case: Case) -> dict:
    """The QC row a finished task returned, or a "failed" row when the task itself died."""
    try:
        return fut.result()
    except Exception as exc:  # the task itself died (worker killed, out of memory...)
        row: dict[str, Any] = {c: None for c in QC_COLUMNS}
        msg = _error_text(exc)
        if type(exc).__name__ == "KilledWorker":
            msg = (f"the worker died while processing this case (out of memory? "
                   f"raise --memory-limit or use fewer workers): {msg}")
        row.update(case_id=case.case_id, status="failed", source=str(case.source), error=msg, warnings="")
        return row


def _close_own(client: Client | None, cluster: LocalCluster | None, scratch: str | None) -> None:
    """Close the client, the local cluster and its scratch folder that :func:`_make_client` started."""
    if client is not None:
        client.close()
    if cluster is not None:
        with _quiet_logger("distributed.nanny"):  # "still alive after 4 s, killing": our own workers, busy machine
            cluster.close()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------- reading back
class Batch(NamedTuple):
    """One training batch: ``images`` and ``masks`` of shape (N, Z, Y, X), and the case ids."""

    images: np.ndarray
    masks: np.ndarray
    case_ids: list


class CohortDataset:
    """Read a preprocessed cohort case by case or batch by batch (numpy only).

    Parameters
    ----------
    out : str or Path
        The output folder of :func:`run_cohort` (or its ``cohort.zarr`` store).

    Notes
    -----
    Only completed cases (with the marker) are listed, sorted by id, so a cohort
    that is still being written can already be read.  Images come back in the
    stored dtype (int16 HU by default); scale them for a network yourself, e.g.
    ``np.clip((image + 1000) / 1400, 0, 1)``.

    Examples
    --------
    >>> ds = CohortDataset(out)                                    # doctest: +SKIP
    >>> image, mask, meta = ds[0]                                  # doctest: +SKIP
    >>> for images, masks, ids in ds.batches(4, shuffle=True):     # doctest: +SKIP
    ...     pass
    """

    def __init__(self, out: _Path) -> None:
        import zarr

        p = Path(out)
        self.store_path = p if (p / "zarr.json").is_file() and p.name.endswith(".zarr") else p / STORE_NAME
        if not (self.store_path / "zarr.json").is_file():
            raise FileNotFoundError(f"no cohort store at {self.store_path}: run the preprocessing first")
        self._root = zarr.open_group(str(self.store_path), mode="r")
        self.params = dict(self._root.attrs).get("params", {})
        self.case_ids = sorted(
            d.name for d in self.store_path.iterdir() if d.is_dir() and is_complete(d)
        )

    def __len__(self) -> int:
        return len(self.case_ids)

    def __repr__(self) -> str:
        return f"CohortDataset({str(self.store_path)!r}, cases={len(self)}, params={self.params})"

    def _group(self, key: int | np.integer | str) -> tuple[str, Any]:
        cid = self.case_ids[key] if isinstance(key, (int, np.integer)) else str(key)
        if cid not in self.case_ids:
            raise KeyError(f"case {cid!r} is not a completed case of {self.store_path}")
        return cid, self._root[cid]

    def __getitem__(self, key: int | np.integer | str) -> tuple[np.ndarray, np.ndarray, dict]:
        """``(image, mask, meta)`` of case number ``key`` (or case id)."""
        cid, g = self._group(key)
        meta = dict(g.attrs)
        meta.setdefault("case_id", cid)
        return g["image"][...], g["mask"][...], meta

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                drop_last: bool = False) -> Iterator[Batch]:
        """Yield :class:`Batch` es of ``batch_size`` cases stacked to (N, Z, Y, X).

        Parameters
        ----------
        batch_size : int
            Cases per batch.
        shuffle : bool, default True
            Random case order (one permutation per call, from ``seed``).
        seed : int, default 0
            Seed of the permutation; pass the epoch number for a new order each epoch.
        drop_last : bool, default False
            Drop the last, smaller batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(order)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            items = [self[int(k)] for k in idx]
            yield Batch(
                np.stack([it[0] for it in items]),
                np.stack([it[1] for it in items]),
                [it[2]["case_id"] for it in items],
            )


# ------------------------------------------------------------- command line
def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m helpers preprocess`` (used by :mod:`helpers.__main__`)."""
    parser.add_argument("source_root", help="folder with one sub-folder or .zip per case (never written to)")
    parser.add_argument("out", help="output folder: cohort.zarr, qc.csv")
    parser.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("Z", "Y", "X"),
                        help="voxel size in mm (default 1 1 1)")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], metavar=("Z", "Y", "X"),
                        help="output array shape (default 128 256 256)")
    parser.add_argument("--mode", choices=["crop", "resize"], default="crop",
                        help="crop/pad around the lungs (default) or resize the whole field of view")
    parser.add_argument("--image-dtype", choices=["int16", "float32"], default="int16")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="address of a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the local cluster (default 2; 0 = no Dask, one case at a time)")
    parser.add_argument("--memory-limit", default="auto", help="memory per local worker, e.g. 4GiB (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def preprocess_main(args: argparse.Namespace) -> int:
    """Run ``python -m helpers preprocess``; exit status 1 when a case failed."""
    try:
        df = run_cohort(
            args.source_root, args.out, spacing=args.spacing, shape=args.shape, mode=args.mode,
            image_dtype=args.image_dtype, scheduler=args.scheduler, workers=args.workers,
            memory_limit=args.memory_limit, progress=not args.no_progress,
        )
    except (DicomSeriesError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = df["status"].value_counts().to_dict()
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(df)} cases: {summary}. QC table: {Path(args.out) / QC_NAME}")
    for _, r in df[df["status"] == "failed"].iterrows():
        print(f"  FAILED {r['case_id']}: {r['error']}", file=sys.stderr)
    return 1 if counts.get("failed") else 0
