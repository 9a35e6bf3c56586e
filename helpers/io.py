"""Reading a CT series from a folder, a ``.zip`` archive or a list of files.

:func:`load_series` turns a pile of DICOM files into one :class:`~helpers.volume.Volume`
in Hounsfield units, and :func:`list_series` shows what a source contains.

What the loader does that the 2017 tutorial's ``load_scan`` did not:

* recognises DICOM by content (the ``DICM`` marker at byte 128), not by extension,
  and counts the other files it skipped (named pipes, sockets and devices are skipped
  without being opened);
* checks every size a header declares against the bytes really present, and caps what
  one file may make it allocate, before allocating anything;
* groups files by (0020,000E) Series Instance UID and picks one series, or says
  clearly which ones tie;
* drops localizers and exact duplicates, with a :class:`~helpers.errors.SeriesWarning`;
* sorts slices by position along the slice normal, never by Instance Number or
  file name, and measures the slice spacing from the positions;
* applies (0028,1053) Rescale Slope and (0028,1052) Rescale Intercept of *every*
  slice (a (0028,3000) Modality LUT Sequence is refused, never ignored), and turns
  out-of-field padding into air;
* checks geometry (finite positions, positive pixel spacing, orthonormal orientation,
  same size, gaps, spacing changes, tilt) before stacking.

:func:`load_series` is a pipeline of named steps, one function each, in this order:
:func:`_find_files` → :func:`_parse_headers` → :func:`_choose_series` →
:func:`_drop_duplicates_and_localizers` → :func:`_check_geometry` → :func:`_read_pixels` →
:func:`_order_and_space` → :func:`_to_hu` → :func:`_metadata`.  The byte-level speed-ups
(raw header values, imagecodecs decoding, direct reads, in-place int16 rescale) live in
:mod:`helpers._fastpath`.

The source is only ever read, never written to; a ``.zip`` is read in place.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Sequence, cast

import numpy as np
import pydicom
from numpy.typing import DTypeLike
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from . import _fastpath as fast
from ._fastpath import IMAGECODECS_SYNTAXES, PREFERRED_JPEGLS_PLUGIN  # noqa: F401 (part of this module's settings)
from .errors import DicomSeriesError, SeriesWarning
from .hu import PADDING_BELOW_HU, PADDING_HU
from .volume import Volume

__all__ = ["PADDING_HU", "SeriesInfo", "SeriesTable", "list_series", "load_series"]

#: What :func:`load_series` and :func:`list_series` read: a folder, a ``.zip`` archive, one file or a list of paths.
Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

# ----------------------------------------------------------------- named thresholds
# PADDING_HU (written where the scanner padded outside the reconstructed field of view) and
# PADDING_BELOW_HU (without a (0028,0120) Pixel Padding Value, HU below it are padding, not
# tissue) come from helpers.hu.
#: On signed data without a padding tag, stored values at or below this are padding.
PADDING_STORED_AT_OR_BELOW = -2000
#: A step between neighbouring slices larger than this factor times the median step is a gap.
GAP_FACTOR = 1.5
#: Steps that differ from the median by more than this (mm) make the spacing "uneven".
UNEVEN_SPACING_MM = 0.05
#: At least this many consecutive equal steps that differ from the median step are a change of
#: slice spacing (reported once, with where it happens), not that many gaps.
SPACING_CHANGE_MIN_STEPS = 3
#: Two slices closer than this (mm) along the normal are at the same position.
SAME_POSITION_MM = 1e-3
#: Stacks leaning more than this (degrees) from the slice normal are reported as tilted.
TILT_TOLERANCE_DEG = 0.5
#: Largest difference (direction cosine units) for two orientations to count as equal.
ORIENTATION_TOLERANCE = 1e-3
#: Largest deviation of each (0020,0037) Image Orientation (Patient) cosine vector's length
#: from 1, and of their dot product from 0, for the orientation to count as orthonormal.
ORTHONORMAL_TOLERANCE = 1e-2
#: Largest difference (mm) between two (0028,0030) Pixel Spacing values to count as equal.
PIXEL_SPACING_TOLERANCE_MM = 1e-3
#: Images with another orientation than the stack are dropped as localizers when there
#: are at most this many of them; more means the series really mixes orientations.
MAX_ODD_ORIENTATION_IMAGES = 3
#: A compressed file (or zip member) whose header declares more than this many bytes, at more
#: than ``MAX_COMPRESSION_RATIO`` times its compressed size, has a lying header: refuse to allocate.
MAX_PLAUSIBLE_BYTES = 256 * 2**20
MAX_COMPRESSION_RATIO = 1000
#: Most bytes one file may make the loader allocate (its pixels, or the file itself when it
#: is read whole); a header declaring more is refused before anything is allocated.
MAX_FILE_BYTES = 2 * 2**30
#: An RLE segment decodes to at most this many times its compressed size (2 bytes give 128).
RLE_MAX_EXPANSION = 64
#: Bytes read first from each file to parse its header (the rest only if needed).
HEADER_BYTES = 64 * 1024
#: Zip members are unpacked this many bytes at a time.
ZIP_CHUNK_BYTES = 2**20
#: Threads used to read and decode files (I/O and compressed decoding).
MAX_WORKERS = 4
#: Fewer files than this are read in the calling thread (threads cost more than they save).
MIN_FILES_FOR_THREADS = 9

_NATIVE = {
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
}
# Which package decodes which family of compressed transfer syntaxes.
_DECODERS = [
    ("1.2.840.10008.1.2.4.9", "pylibjpeg and pylibjpeg-openjpeg (JPEG 2000)"),
    ("1.2.840.10008.1.2.4.20", "pylibjpeg and pylibjpeg-openjpeg (HTJ2K)"),
    ("1.2.840.10008.1.2.4.8", "pyjpegls, or pylibjpeg and pylibjpeg-libjpeg (JPEG-LS)"),
    ("1.2.840.10008.1.2.4.10", "a video decoder: no Python package; convert the video to images (ffmpeg)"),
    ("1.2.840.10008.1.2.4.11", "a JPEG XL decoder (none in pydicom 3.0); convert the files with dcmtk or gdcm"),
    ("1.2.840.10008.1.2.4.", "pylibjpeg and pylibjpeg-libjpeg (JPEG)"),
    ("1.2.840.10008.1.2.5", "pylibjpeg and pylibjpeg-rle (RLE), or numpy alone"),
]
_ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
_PIXEL_TAG = {True: b"\xe0\x7f\x10\x00", False: b"\x7f\xe0\x00\x10"}
_UNDEFINED = 0xFFFFFFFF
_REPAIR = "The header is damaged: remove the file from the source, or repair the tag (e.g. with dcmodify)."


# ----------------------------------------------------------------- series table
@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a source (a row of :class:`SeriesTable`)."""

    series_uid: str
    series_number: int | None
    modality: str
    description: str
    slices: int
    rows: int | None
    columns: int | None
    kernel: str
    files: int

    def __repr__(self) -> str:
        return (
            f"SeriesInfo({self.description!r}, modality={self.modality!r}, slices={self.slices}, "
            f"size={self.rows}x{self.columns}, series_uid={self.series_uid!r})"
        )


class SeriesTable(list):
    """A list of :class:`SeriesInfo` that prints as a table (text and notebook HTML)."""

    _columns = ("series_number", "modality", "description", "slices", "rows", "columns", "kernel", "series_uid")

    def _cells(self) -> list[list[str]]:
        return [["" if getattr(s, c) is None else str(getattr(s, c)) for c in self._columns] for s in self]

    def __repr__(self) -> str:
        if not self:
            return "SeriesTable(no series)"
        head = ["#", "modality", "description", "slices", "rows", "cols", "kernel", "series_uid"]
        rows = [head] + self._cells()
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(c)}</th>" for c in self._columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------- entry points
def list_series(source: Source) -> SeriesTable:
    """List the image series found in a folder, ``.zip`` archive or list of files.

    Parameters
    ----------
    source : str, Path or list of paths
        A folder (searched recursively), a ``.zip`` archive (read in place) or
        a list of file paths.

    Returns
    -------
    SeriesTable
        A list of :class:`SeriesInfo` (``series_uid``, ``series_number``, ``modality``,
        ``description``, ``slices``, ``rows``, ``columns``, ``kernel``, ``files``),
        largest series first.  It prints as an aligned table, and as HTML in a notebook.

    Raises
    ------
    DicomSeriesError
        If the path does not exist.

    Notes
    -----
    Unreadable files, and files whose header declares more pixels than they hold, are
    left out here (no error): :func:`load_series` reports them.  Named pipes, sockets
    and devices are never opened.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     list_series(empty)
    SeriesTable(no series)
    """
    files, _, _ = _parse_all(_find_files(source))
    return _table(_group([f for f in files if f.problem is None]))


def load_series(
    source: Source,
    *,
    series_uid: str | None = None,
    on_error: str = "raise",
    allow_non_ct: bool = False,
    padding_hu: float = PADDING_HU,
    dtype: str | None = None,
) -> Volume:
    """Load one CT series as a :class:`~helpers.volume.Volume` in Hounsfield units.

    Parameters
    ----------
    source : str, Path or list of paths
        A folder (searched recursively), a ``.zip`` archive (read in place, never
        extracted) or a list of file paths.  Files are recognised as DICOM by
        their content; other files are skipped and counted.
    series_uid : str, optional
        (0020,000E) Series Instance UID of the series to load.  By default the CT
        series with the most slices; see :func:`list_series`.
    on_error : {"raise", "skip"}
        What to do with a truncated, corrupt or undecodable file: raise a
        :class:`DicomSeriesError`, or leave it out with a warning (the missing
        slice is then reported as a gap).
    allow_non_ct : bool
        Load a series whose (0008,0060) Modality is not ``CT`` (values are then
        the rescaled stored values, not HU).
    padding_hu : float
        Value given to padding voxels outside the reconstructed field of view
        (default -1024 HU, air).
    dtype : {None, "float32", "int16"}
        Output type.  ``None``: int16 when every slice's slope and intercept are
        integers and all values fit, else float32.

    Returns
    -------
    Volume
        ``hu`` (z, y, x) int16 or float32 in HU; ``spacing`` (z, y, x) mm with z the
        median step between slice positions; ``origin`` the first slice's
        (0020,0032) Image Position (Patient); ``direction`` columns: slice normal,
        column direction (down the image), row direction (along a row);
        ``positions`` the real position of every slice; ``meta`` (modality,
        series_description, series_uid, study_uid, manufacturer, kernel,
        slice_thickness, file_count, skipped_files, warnings, source,
        sop_instance_uids in z order, files in z order, windows, patient_name,
        patient_id...).

    Raises
    ------
    DicomSeriesError
        Missing path; no DICOM image found; several series tie for the largest;
        ``series_uid`` not found; non-CT series; truncated or corrupt file,
        undecodable compression, pixel data length not matching the header
        (unless ``on_error="skip"``); a header declaring more pixels than its file
        holds, or more than :data:`MAX_FILE_BYTES`; slices of different size, pixel
        spacing or orientation; a position that is not finite, a pixel spacing that is
        not positive, an orientation that is not orthonormal (within
        ``ORTHONORMAL_TOLERANCE``); a zero Rescale Slope; a (0028,3000) Modality LUT
        Sequence (a lookup table instead of the rescale); two slices at the same position.

    Warns
    -----
    SeriesWarning
        Other series left out; localizers or duplicates dropped; gaps (one per
        missing run); a change of slice spacing (once, with where); tilted stack;
        uneven spacing; skipped files; files whose declared VR encoding is not the
        real one (read as pydicom reads them).  The texts are also kept in
        ``meta["warnings"]``.

    Notes
    -----
    Slices are ordered by their (0020,0032) Image Position (Patient) projected on
    the slice normal (the cross product of the two (0020,0037) Image Orientation
    (Patient) cosines), ascending, i.e. feet to head for an axial scan, as ITK
    does; never by (0020,0013) Instance Number or file name.  The slice spacing is
    the median step between positions, not (0018,0050) Slice Thickness.

    HU = stored value x (0028,1053) Rescale Slope + (0028,1052) Rescale Intercept,
    per slice.  Voxels equal to (0028,0120) Pixel Padding Value (up to
    (0028,0121) Pixel Padding Range Limit) become ``padding_hu``; without those tags,
    stored values at or below ``PADDING_STORED_AT_OR_BELOW`` on signed data and
    values below ``PADDING_BELOW_HU`` HU do.  Tolerances are the module constants
    ``GAP_FACTOR``, ``SPACING_CHANGE_MIN_STEPS``, ``TILT_TOLERANCE_DEG``,
    ``ORIENTATION_TOLERANCE``, ``ORTHONORMAL_TOLERANCE``, ``PIXEL_SPACING_TOLERANCE_MM``,
    ``SAME_POSITION_MM``; the allocation caps ``MAX_FILE_BYTES``, ``MAX_PLAUSIBLE_BYTES``,
    ``MAX_COMPRESSION_RATIO``.

    The body is the pipeline, one named step per line; named pipes, sockets and devices
    in the source are counted as skipped without being opened.

    Examples
    --------
    >>> load_series("no/such/folder")
    Traceback (most recent call last):
    ...
    helpers.errors.DicomSeriesError: no/such/folder does not exist: ...
    >>> vol = load_series("data/sample/dicom")  # doctest: +SKIP
    >>> vol.hu.dtype, vol.spacing  # doctest: +SKIP
    (dtype('int16'), (2.5, 0.7, 0.7))
    """
    _check_options(on_error=on_error, dtype=dtype)
    notes = _Notes()
    found = _find_files(source)
    files, skipped = _parse_headers(found, on_error=on_error, notes=notes)
    chosen, files = _choose_series(files, found.root, series_uid=series_uid, allow_non_ct=allow_non_ct, notes=notes)
    frames = _drop_duplicates_and_localizers(_frames(files), chosen, notes)
    _check_geometry(frames, chosen)
    frames, direct = _read_pixels(frames, chosen, found.root, on_error=on_error, notes=notes)
    stack = _order_and_space(frames, chosen, notes)
    hu, padded = _to_hu(stack, chosen, direct=direct, dtype=dtype, padding_hu=padding_hu, notes=notes)
    return _metadata(hu, stack, chosen, found.root, skipped=skipped, notes=notes, padded=padded, padding_hu=padding_hu)


def _check_options(*, on_error: str, dtype: DTypeLike | None) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    if dtype not in (None, "float32", "int16", np.float32, np.int16):
        raise ValueError(f"dtype must be None, 'float32' or 'int16'; got {dtype!r}")


# ----------------------------------------------------------------- internal records
class _Notes(list):
    """The warnings of one load, in order: each one is issued as a :class:`SeriesWarning` and kept."""

    def warn(self, text: str) -> None:
        self.append(text)
        # Point the warning at the caller's line: the first frame outside this module.
        frame: FrameType | None = sys._getframe(1)
        level = 2
        while frame is not None and frame.f_code.co_filename == __file__:
            frame, level = frame.f_back, level + 1
        warnings.warn(text, SeriesWarning, stacklevel=level)


class _Skip(Exception):
    """A file that is not a DICOM image (skipped and counted, not an error)."""


# Header values the loader needs: keyword -> (tag, how to read it); see fast.header_values.
_FIELDS = {
    "SOPClassUID": (0x00080016, "str"),
    "SOPInstanceUID": (0x00080018, "str"),
    "ImageType": (0x00080008, "strs"),
    "Modality": (0x00080060, "str"),
    "SeriesInstanceUID": (0x0020000E, "str"),
    "ImagePositionPatient": (0x00200032, "floats"),
    "ImageOrientationPatient": (0x00200037, "floats"),
    "PixelSpacing": (0x00280030, "floats"),
    "SamplesPerPixel": (0x00280002, "us"),
    "NumberOfFrames": (0x00280008, "int"),
    "Rows": (0x00280010, "us"),
    "Columns": (0x00280011, "us"),
    "BitsAllocated": (0x00280100, "us"),
    "BitsStored": (0x00280101, "us"),
    "PixelRepresentation": (0x00280103, "us"),
    "PixelPaddingValue": (0x00280120, "us"),
    "PixelPaddingRangeLimit": (0x00280121, "us"),
    "RescaleIntercept": (0x00281052, "float"),
    "RescaleSlope": (0x00281053, "float"),
}


@dataclass(frozen=True)
class _Header:
    """The header values the loader needs, typed and read once per file.

    Absent values take the standard's defaults where it has one (1 sample per pixel,
    Bits Stored = Bits Allocated, unsigned); 0 rows/columns/bits mean "absent" and are
    rejected before any pixel is read.
    """

    sop_class_uid: str | None
    sop_instance_uid: str
    image_type: tuple[str, ...]
    modality: str
    series_uid: str | None
    position: list[float] | None  # (0020,0032), as written (checked when the frame is made)
    orientation: list[float] | None  # (0020,0037)
    pixel_spacing: list[float] | None  # (0028,0030)
    samples_per_pixel: int
    declared_frames: int | None  # (0028,0008) Number of Frames, None when absent
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    padding_value: int | None
    padding_limit: int | None
    slope: float | None
    intercept: float | None

    @classmethod
    def read(cls, ds: Any, *, little: bool) -> _Header:
        v = fast.header_values(ds, _FIELDS, little=little)
        bits = v["BitsAllocated"] or 0
        return cls(
            sop_class_uid=v["SOPClassUID"],
            sop_instance_uid=v["SOPInstanceUID"] or "",
            image_type=tuple(t.upper() for t in v["ImageType"] or ()),
            modality=v["Modality"] or "",
            series_uid=v["SeriesInstanceUID"],
            position=v["ImagePositionPatient"],
            orientation=v["ImageOrientationPatient"],
            pixel_spacing=v["PixelSpacing"],
            samples_per_pixel=v["SamplesPerPixel"] or 1,
            declared_frames=v["NumberOfFrames"],
            rows=v["Rows"] or 0,
            columns=v["Columns"] or 0,
            bits_allocated=bits,
            bits_stored=v["BitsStored"] or bits,
            signed=v["PixelRepresentation"] == 1,
            padding_value=v["PixelPaddingValue"],
            padding_limit=v["PixelPaddingRangeLimit"],
            slope=v["RescaleSlope"],
            intercept=v["RescaleIntercept"],
        )

    @property
    def pixels_per_frame(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel


@dataclass(eq=False)
class _File:
    """One DICOM image file: where it is, its header, and where its pixels are."""

    name: str
    ds: Any  # header (stops before Pixel Data), or the whole data set when parsed fully
    ts: UID
    header: _Header
    reader: Any  # where to read the rest from (_Disk or _ZipMember)
    size: int  # file size in bytes
    frames: int = 1  # (0028,0008) Number of Frames once checked against the bytes present
    encapsulated: bool = False  # compressed pixel data (decoded later from the whole file)
    data: bytes | None = field(default=None, repr=False)  # the whole file, when it was read whole
    pixel: Any = field(default=None, repr=False)  # native Pixel Data bytes already in memory
    pixel_offset: int = 0  # otherwise: where the Pixel Data value starts in the file...
    pixel_nbytes: int = 0  # ...and how many bytes of it the file really holds
    problem: str | None = None  # declared sizes the bytes contradict: raised if this file is loaded
    vr_note: str | None = None  # pydicom's note when the declared VR encoding is not the real one

    @property
    def series_key(self) -> str:
        return self.header.series_uid or "(no Series Instance UID)"


@dataclass(eq=False)
class _Frame:
    """One plane of the volume to be: a frame of a file, with its checked geometry and rescale."""

    file: _File
    index: int  # frame number inside the file (0 for single-frame files)
    sop_uid: str
    ipp: np.ndarray | None
    iop: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    rows: int
    cols: int
    localizer: bool
    has_rescale: bool = True
    stored: np.ndarray | None = field(default=None, repr=False)


def _iop(fr: _Frame) -> np.ndarray:
    """``fr.iop``, once step 4 (:func:`_require_geometry`) has refused frames without one."""
    return cast(np.ndarray, fr.iop)


def _stored_of(fr: _Frame) -> np.ndarray:
    """``fr.stored``, once step 6 has read every frame's stored values."""
    return cast(np.ndarray, fr.stored)


def _stored_range(fr: _Frame) -> tuple[int, int]:
    """Smallest and largest stored value actually present in the frame."""
    stored = _stored_of(fr)
    return int(stored.min()), int(stored.max())


@dataclass(eq=False)
class _Stack:
    """Frames in slice order with the geometry measured from their positions."""

    frames: list[_Frame]
    positions: np.ndarray  # (z, 3) Image Position (Patient), in slice order
    normal: np.ndarray  # unit slice normal (row cosines x column cosines)
    spacing_z: float  # median step along the normal, mm


def _tag_text(keyword: str) -> str:
    """``"(0028,1052) Rescale Intercept"`` for a keyword."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {dictionary_description(tag)}"


def _ts_text(ts: UID) -> str:
    return f"{ts} ({ts.name})" if ts.name and ts.name != str(ts) else str(ts)


def _parallel(func: Callable, items: Sequence, *, threaded: bool = True) -> list:
    """``[func(x) for x in items]``, on :data:`MAX_WORKERS` threads when there are enough items."""
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if threaded and workers > 1 and len(items) >= MIN_FILES_FOR_THREADS:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(func, items))
    return [func(x) for x in items]


# ----------------------------------------------------------------- step 1: find files
@dataclass
class _Found:
    """What a source holds: a display name, the regular files to look at, and what was passed over."""

    root: str
    items: list[tuple[str, Any]]  # (name, reader) of every file to look at
    passed_over: list[str] = field(default_factory=list)  # named pipes, sockets, devices: never opened


class _Disk:
    """A file on disk: read the first bytes or the whole file (at most :data:`MAX_FILE_BYTES`)."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def read(self, limit: int = -1) -> tuple[bytes, int]:
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if limit < 0 and size > MAX_FILE_BYTES:
                raise DicomSeriesError(
                    f"{self.path} is {size / 2**30:.1f} GiB, more than one file may make the loader read "
                    f"(helpers.io.MAX_FILE_BYTES = {MAX_FILE_BYTES / 2**30:.0f} GiB). Remove it from the source, "
                    "or raise helpers.io.MAX_FILE_BYTES if it really is one image."
                )
            data = fh.read(limit)
        return data, size


class _Unopenable:
    """A directory entry that cannot be opened (dangling or looping symbolic link): reading it says why."""

    __slots__ = ("text",)
    path = None

    def __init__(self, text: str):
        self.text = text

    def read(self, limit: int = -1) -> tuple[bytes, int]:
        raise DicomSeriesError(self.text)


class _ZipMember:
    """A member of a zip archive, read in place in bounded chunks after its declared size is checked."""

    __slots__ = ("archive", "compress_size", "file_size", "member")
    path = None

    def __init__(self, archive: Path, info: zipfile.ZipInfo):
        self.archive, self.member = archive, info.filename
        self.file_size, self.compress_size = info.file_size, info.compress_size

    def read(self, limit: int = -1) -> tuple[bytes, int]:
        _check_zip_member(self)
        want = self.file_size if limit < 0 else min(limit, self.file_size)
        chunks, got = [], 0
        with zipfile.ZipFile(self.archive) as zf, zf.open(self.member) as fh:
            while got < want:
                chunk = fh.read(min(ZIP_CHUNK_BYTES, want - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        return b"".join(chunks), self.file_size


def _check_zip_member(m: _ZipMember) -> None:
    """Refuse a member whose declared unpacked size is above the cap or implausibly compressed."""
    size, packed = m.file_size, max(m.compress_size, 1)
    if size > MAX_FILE_BYTES or (size > MAX_PLAUSIBLE_BYTES and size > MAX_COMPRESSION_RATIO * packed):
        raise DicomSeriesError(
            f"{m.archive}::{m.member}: the zip archive declares this member as {size / 1e6:.0f} MB unpacked "
            f"from {packed / 1e6:.2f} MB ({size / packed:.0f}:1); a DICOM file is at most "
            f"{MAX_FILE_BYTES / 2**30:.0f} GiB and compresses far less than {MAX_COMPRESSION_RATIO}:1. "
            "Nothing was unpacked. Remove the member from the archive, or pass on_error='skip'."
        )


_NOT_REGULAR = [
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
]


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is (``"a named pipe (FIFO)"``...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _NOT_REGULAR if test(mode)), "not a regular file")


def _entry(path: str) -> tuple[str, Any] | None:
    """``(name, reader)`` for a file or a link to one; None for what must not be opened (a FIFO...).

    Only ``stat`` is called, so a named pipe is never opened (opening one blocks).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # dangling or looping symbolic link, or vanished
        return path, _Unopenable(_unopenable_text(path, exc))
    return None if _not_regular(mode) else (path, _Disk(path))


def _unopenable_text(path: str, exc: OSError) -> str:
    if os.path.islink(path):
        target = os.readlink(path)
        missing = isinstance(exc, FileNotFoundError)
        why = "which does not exist" if missing else f"which cannot be followed ({exc.strerror})"
        return (
            f"{path} is a symbolic link to {target}, {why}. Point the link at the file, delete the link, "
            "or pass on_error='skip' to leave it out."
        )
    return f"cannot read {path}: {exc.strerror or exc}"


def _entry_is(test: Callable[[], bool]) -> bool:
    """``DirEntry.is_dir()`` / ``is_file()``, False for a link that loops (they raise then)."""
    try:
        return test()
    except OSError:
        return False


def _walk(folder: Path) -> tuple[list[tuple[str, Any]], list[str]]:
    """Every file under ``folder`` (sorted, recursively, not following folder links), and the passed-over ones.

    ``DirEntry.is_file`` answers from the directory listing for regular files, so only
    links and odd entries cost a ``stat``; named pipes are never opened.
    """
    items, passed_over = [], []
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if _entry_is(e.is_dir):
            continue
        if _entry_is(e.is_file):
            items.append((e.path, _Disk(e.path)))
        elif e.is_symlink():  # dangling, looping, or a link to a pipe or device
            entry = _entry(e.path)
            if entry is None:
                passed_over.append(e.path)
            else:
                items.append(entry)
        else:
            passed_over.append(e.path)
    for e in entries:
        if _entry_is(e.is_dir) and not e.is_symlink():
            sub_items, sub_passed = _walk(Path(e.path))
            items.extend(sub_items)
            passed_over.extend(sub_passed)
    return items, passed_over


def _zip_items(path: Path) -> list[tuple[str, Any]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DicomSeriesError(f"cannot open the zip archive {path}: {exc}. Is it complete?") from None
    return [(f"{path}::{i.filename}", _ZipMember(path, i)) for i in sorted(infos, key=lambda i: i.filename)]


def _find_files(source: Source) -> _Found:
    """Step 1: the files of a folder (recursively), a ``.zip`` archive, one file or a list of paths."""
    if isinstance(source, (str, os.PathLike)):
        return _find_in_path(Path(source))
    if isinstance(source, Iterable):
        items, passed_over = [], []
        for p in map(Path, source):
            if not p.exists():
                raise DicomSeriesError(f"{p} (in the list of files given) does not exist; remove it from the list.")
            if p.is_dir():
                found = _find_in_path(p)
                items.extend(found.items)
                passed_over.extend(found.passed_over)
            elif _entry(str(p)) is None:
                passed_over.append(str(p))
            else:
                items.append((str(p), _Disk(str(p))))
        return _Found(f"a list of {len(items)} files", items, passed_over)
    raise DicomSeriesError(
        f"source must be a folder, a .zip archive or a list of file paths; got {type(source).__name__}"
    )


def _find_in_path(path: Path) -> _Found:
    if not path.exists():
        raise DicomSeriesError(
            f"{path} does not exist: expected a folder of DICOM files, a .zip archive or a list of "
            "files. Check the path (relative paths start from the current folder "
            f"{Path.cwd()})."
        )
    if path.is_dir():
        return _Found(str(path), *_walk(path))
    what = _not_regular(path.stat().st_mode)
    if what:
        raise DicomSeriesError(
            f"{path} is {what}, not a file or folder: expected a folder of DICOM files, a .zip archive or "
            "a list of files. Copy the data into a folder and point load_series at it."
        )
    if zipfile.is_zipfile(path):
        return _Found(str(path), _zip_items(path))
    return _Found(str(path), [(str(path), _Disk(str(path)))])


# ----------------------------------------------------------------- step 2: parse headers
def _read_head(item: tuple[str, Any]) -> tuple[bytes | None, int, str | None]:
    """The first :data:`HEADER_BYTES` of a file, its size, or an error text (runs on worker threads)."""
    name, reader = item
    try:
        data, size = reader.read(HEADER_BYTES)
        return data, size, None
    except DicomSeriesError as exc:
        return None, 0, str(exc)
    except OSError as exc:
        return None, 0, f"cannot read {name}: {exc.strerror or exc}"
    except Exception as exc:  # zip member errors
        return None, 0, f"cannot read {name}: {exc}"


def _parse_all(found: _Found) -> tuple[list[_File], list[str], list[str]]:
    """Parse every file's header: DICOM images, skipped names, and error texts of broken files."""
    files: list[_File] = []
    skipped: list[str] = list(found.passed_over)
    bad: list[str] = []
    workers = min(MAX_WORKERS, os.cpu_count() or 1)

    def heads():
        # Threads read the bytes (I/O releases the GIL); parsing stays in this thread.
        if len(found.items) >= MIN_FILES_FOR_THREADS and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                yield from zip(found.items, pool.map(_read_head, found.items))
        else:
            for item in found.items:
                yield item, _read_head(item)

    for (name, reader), (data, size, err) in heads():
        try:
            if err:
                raise DicomSeriesError(err)
            files.append(_parse(name, data, size, reader))
        except _Skip:
            skipped.append(name)
        except DicomSeriesError as exc:
            bad.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - pydicom failing on a damaged value in the header
            bad.append(_unparseable(name, exc))
    return files, skipped, bad


def _parse_headers(found: _Found, *, on_error: str, notes: _Notes) -> tuple[list[_File], list[str]]:
    """Step 2: the DICOM image files of the source and the names of the other files.

    Broken files raise (``on_error="raise"``) or are left out with a warning.
    """
    files, skipped, bad = _parse_all(found)
    if bad and on_error == "raise":
        raise DicomSeriesError(bad[0] + (f" ({len(bad) - 1} more such files)" if len(bad) > 1 else ""))
    for text in bad:
        notes.warn(f"skipped a file that cannot be read (on_error='skip'): {text}")
    if not files:
        looked = len(found.items) + len(found.passed_over)
        names = ", ".join(Path(n).name for n in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        raise DicomSeriesError(
            f"no DICOM image files found in {found.root} "
            + ("(it is empty)" if not looked else f"({looked} files looked at, none is a DICOM image: {names})")
            + ". Point load_series at the folder that holds the .dcm files (they may have no extension)."
        )
    return files, skipped


def _looks_preambleless(head: bytes) -> bool:
    """True when the bytes start like a DICOM data set without preamble: a (0002,xxxx) or (0008,xxxx) tag."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _parse(name: str, data: bytes, size: int, reader: Any) -> _File:
    """One file's header, parsed from its first bytes and stopping before (7FE0,0010) Pixel Data.

    Raises :class:`_Skip` for a file that is not a DICOM image, :class:`DicomSeriesError`
    for a broken one.  Uncompressed pixels are read later, and only for the chosen series.
    """
    dicm = len(data) >= 132 and data[128:132] == b"DICM"
    if not dicm and not _looks_preambleless(data):
        raise _Skip("not DICOM")
    ds, pos, data, size, vr_note = _dataset(name, data, size, reader, dicm=dicm)
    ts, implicit, little = _encoding(ds, data, pos)
    f = _File(name=name, ds=ds, ts=ts, header=None, reader=reader, size=size, vr_note=vr_note)  # type: ignore[arg-type]
    has_pixels = _locate_pixels(f, data, pos, implicit=implicit, little=little)
    f.header = _Header.read(f.ds, little=little)
    if not has_pixels:
        raise _no_pixel_data(f, dicm)
    if not dicm and f.header.sop_class_uid is None:
        raise _Skip("not DICOM")
    f.problem = _size_problem(f)
    f.frames = 1 if f.problem else (f.header.declared_frames or 1)
    return f


def _dataset(name: str, data: bytes, size: int, reader: Any, *, dicm: bool) -> tuple[Any, int, bytes, int, str | None]:
    """``(ds, position after the header, data, size, VR note)``; reads the whole file if the header needs it."""
    if dicm:
        data, size = _refuse_deflate_bomb(name, data, reader, size)
    whole = len(data) >= size
    try:
        try:
            ds, pos, vr_note = _header_dataset(data, dicm=dicm)
            complete = whole or data[pos : pos + 4] in _PIXEL_TAG.values()
        except Exception:
            if whole:
                raise
            complete = False
        if not complete:  # the header goes on past the first bytes: read it all
            data, size = reader.read()
            ds, pos, vr_note = _header_dataset(data, dicm=dicm)
    except DicomSeriesError:
        raise
    except Exception as exc:
        if not dicm:
            raise _Skip("not DICOM") from None
        raise DicomSeriesError(_unparseable(name, exc)) from None
    return ds, pos, data, size, vr_note


def _unparseable(name: str, exc: Exception) -> str:
    return (
        f"{name} starts like a DICOM file but cannot be parsed ({type(exc).__name__}: {exc}); "
        "the file is probably truncated or corrupt. Copy it again from the source, or pass "
        "on_error='skip' to leave it out."
    )


def _header_dataset(buf: bytes, *, dicm: bool) -> tuple[Any, int, str | None]:
    """pydicom's header (stopping before Pixel Data), where it stopped, and its VR-mismatch note.

    When (0002,0010) Transfer Syntax UID says explicit VR but the data set is implicit VR (or
    the reverse) pydicom reads it the way it is really encoded and says so; that note is kept
    (and reported once per series) instead of being printed for every file.
    """
    bio = BytesIO(buf)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(bio, force=not dicm, stop_before_pixels=True)
    vr_note = None
    for w in caught:
        text = str(w.message)
        if "VR, but found" in text:
            vr_note = text
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds, bio.tell(), vr_note


def _encoding(ds: Any, data: bytes, pos: int) -> tuple[UID, bool, bool]:
    """Transfer syntax, and whether the data set is really implicit VR / little endian.

    Implicit or explicit VR is read from the Pixel Data element itself (a VR is two capital
    letters), so a file whose meta header declares the wrong one is still read right.
    """
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    implicit, little = ds.original_encoding
    if ts is None:  # preamble-less files: pydicom guessed the encoding
        ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    little = little is not False
    if data[pos : pos + 4] == _PIXEL_TAG[little]:
        vr = data[pos + 4 : pos + 6]
        implicit = not (len(vr) == 2 and all(0x40 < c < 0x5B for c in vr))
    return UID(str(ts)), bool(implicit), little


def _locate_pixels(f: _File, data: bytes, pos: int, *, implicit: bool, little: bool) -> bool:
    """Find the Pixel Data of ``f`` (in memory, or where it is in the file); False when it has none."""
    whole = len(data) >= f.size
    if f.ts == DeflatedExplicitVRLittleEndian:  # positions refer to the inflated stream: parse it all
        if not whole:
            data, f.size = f.reader.read()
        f.ds = _inflated_dataset(f.name, data)
        if "PixelData" not in f.ds:
            return False
        f.pixel = f.ds.PixelData
        return True
    if data[pos : pos + 4] != _PIXEL_TAG[little]:
        return False
    start = pos + (8 if implicit else 12)
    length = struct.unpack("<I" if little else ">I", data[start - 4 : start])[0] if len(data) >= start else 0
    if length == _UNDEFINED or f.ts not in _NATIVE:  # encapsulated: decoded later from the whole file
        f.encapsulated = True
        f.data = data if whole else None
        f.pixel_offset, f.pixel_nbytes = start, max(0, f.size - start)
    elif start + length <= len(data) or whole:
        f.data = data
        f.pixel = memoryview(data)[start : start + length]
    else:
        f.pixel_offset, f.pixel_nbytes = start, max(0, min(length, f.size - start))
    return True


def _meta_end(data: bytes) -> int | None:
    """Where the file meta group ends, from its (0002,0000) group length (None when it has none)."""
    if data[132:138] != b"\x02\x00\x00\x00UL" or len(data) < 144:
        return None
    return 144 + struct.unpack("<I", data[140:144])[0]


def _refuse_deflate_bomb(name: str, data: bytes, reader: Any, size: int) -> tuple[bytes, int]:
    """For a Deflated Explicit VR file: check what its data set inflates to before pydicom inflates it.

    pydicom inflates the whole data set in memory, so a few MB can become gigabytes; this
    counts the inflated bytes chunk by chunk first.  Returns the whole file.
    """
    end = _meta_end(data)
    if end is None or DeflatedExplicitVRLittleEndian.encode() not in data[132:end]:
        return data, size
    if len(data) < size:
        data, size = reader.read()
    if fast.inflated_size(data[end:], MAX_FILE_BYTES) > MAX_FILE_BYTES:
        raise DicomSeriesError(
            f"{name}: the deflated data set inflates to more than {MAX_FILE_BYTES / 2**20:.0f} MB "
            f"(helpers.io.MAX_FILE_BYTES) from a file of {size / 1e6:.2f} MB; it is not a CT image. "
            "Nothing was unpacked. Remove it, or pass on_error='skip'."
        )
    return data, size


def _inflated_dataset(name: str, data: bytes) -> pydicom.Dataset:
    """The whole data set of a Deflated Explicit VR file (its inflated size was checked when parsed)."""
    try:
        return pydicom.dcmread(BytesIO(data), force=True)
    except Exception as exc:
        raise DicomSeriesError(
            f"{name}: the deflated data set cannot be inflated ({type(exc).__name__}: {exc})."
        ) from None


def _no_pixel_data(f: _File, dicm: bool) -> Exception:
    """Why a data set without Pixel Data is skipped (a report, a DICOMDIR) or is an error (a cut image)."""
    meta = getattr(f.ds, "file_meta", None)
    sop = f.header.sop_class_uid or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if not dicm:
        return _Skip("not DICOM")
    if f.header.rows or (sop is not None and "Image Storage" in UID(str(sop)).name):
        return DicomSeriesError(
            f"{f.name} is a DICOM image header without (7FE0,0010) Pixel Data: the file is truncated. "
            "Copy it again from the source, or pass on_error='skip' to leave it out."
        )
    if sop is None:
        return DicomSeriesError(
            f"{f.name} starts like a DICOM file (DICM at byte 128) but holds no recognisable data set "
            "(no (0008,0016) SOP Class UID); the file is truncated or corrupt. Copy it again, or pass "
            "on_error='skip' to leave it out."
        )
    return _Skip("DICOM without pixel data")


def _size_problem(f: _File) -> str | None:
    """What is wrong with the sizes ``f``'s header declares, checked against its bytes; None if nothing.

    Checked here, before anything is allocated and before any per-frame loop, so that a lying
    (0028,0008) Number of Frames or (0028,0010) Rows x (0028,0011) Columns costs nothing.
    """
    h = f.header
    frames = 1 if h.declared_frames is None else h.declared_frames
    if frames < 1:
        return f"{f.name}: (0028,0008) Number of Frames is {frames}; expected 1 or more. {_REPAIR}"
    if h.rows <= 0 or h.columns <= 0 or h.bits_allocated not in (8, 16, 32):
        return (
            f"{f.name}: expected (0028,0010) Rows and (0028,0011) Columns above 0 and (0028,0100) Bits "
            f"Allocated of 8, 16 or 32; found {h.rows}, {h.columns} and {h.bits_allocated}. The header is damaged."
        )
    if not 1 <= h.bits_stored <= h.bits_allocated:
        return (
            f"{f.name}: (0028,0101) Bits Stored is {h.bits_stored}; expected 1 to (0028,0100) Bits Allocated "
            f"({h.bits_allocated}). {_REPAIR}"
        )
    declared = h.pixels_per_frame * frames * h.bits_allocated // 8
    if not f.encapsulated:
        nbytes = len(f.pixel) if f.pixel is not None else f.pixel_nbytes
        if nbytes in (declared, declared + 1):
            return None
        return (
            f"{f.name}: (7FE0,0010) Pixel Data holds {nbytes} bytes but (0028,0010) Rows {h.rows} x "
            f"(0028,0011) Columns {h.columns} x (0028,0100) Bits Allocated {h.bits_allocated}/8"
            + (f" x (0028,0002) Samples per Pixel {h.samples_per_pixel}" if h.samples_per_pixel != 1 else "")
            + (f" x (0028,0008) Number of Frames {frames}" if frames > 1 else "")
            + f" = {declared} bytes were expected. The file is truncated or its header is wrong; "
            "copy it again, or pass on_error='skip' to leave it out."
        )
    return _encapsulated_size_problem(f, declared, frames)


def _encapsulated_size_problem(f: _File, declared: int, frames: int) -> str | None:
    h = f.header
    if declared > MAX_FILE_BYTES or (declared > MAX_PLAUSIBLE_BYTES and declared > MAX_COMPRESSION_RATIO * f.size):
        return (
            f"{f.name}: the header declares {declared / 1e6:.0f} MB of pixels ((0028,0010) Rows {h.rows} x "
            f"(0028,0011) Columns {h.columns} x (0028,0100) Bits Allocated {h.bits_allocated}/8 x "
            f"{frames} frame(s)) but "
            f"the whole file holds {f.size / 1e6:.2f} MB of compressed data; the header is wrong. "
            "Nothing was allocated. Remove or repair the file, or pass on_error='skip'."
        )
    most = f.pixel_nbytes // 8  # every compressed frame needs at least one 8-byte item
    if frames > most:
        return (
            f"{f.name}: (0028,0008) Number of Frames is {frames} but the {f.pixel_nbytes} bytes of compressed "
            f"(7FE0,0010) Pixel Data can hold at most {most} frames. Nothing was allocated. {_REPAIR}"
        )
    return None


# ----------------------------------------------------------------- step 3: choose the series
def _group(files: Sequence[_File]) -> dict[str, list[_File]]:
    groups: dict[str, list[_File]] = {}
    for f in files:
        groups.setdefault(f.series_key, []).append(f)
    return groups


def _info(uid: str, files: list[_File]) -> SeriesInfo:
    ds = files[0].ds
    try:
        number = int(_get(ds, "SeriesNumber")) if _get(ds, "SeriesNumber") is not None else None
    except (TypeError, ValueError, OverflowError):
        number = None
    kernel = _get(ds, "ConvolutionKernel") or ""
    if isinstance(kernel, pydicom.multival.MultiValue):
        kernel = "\\".join(map(str, kernel))
    return SeriesInfo(
        series_uid=uid,
        series_number=number,
        modality=files[0].header.modality,
        description=str(_get(ds, "SeriesDescription", "")),
        slices=sum(f.frames for f in files),
        rows=files[0].header.rows or None,
        columns=files[0].header.columns or None,
        kernel=str(kernel),
        files=len(files),
    )


def _table(groups: dict[str, list[_File]]) -> SeriesTable:
    infos = [_info(uid, fs) for uid, fs in groups.items()]
    infos.sort(key=lambda s: (-s.slices, s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return SeriesTable(infos)


def _describe(s: SeriesInfo) -> str:
    return f"{s.series_uid} ({s.description!r}, {s.modality}, {s.slices} slices)"


def _choose_series(files: list[_File], root: str, *, series_uid: str | None, allow_non_ct: bool,
                   notes: _Notes) -> tuple[SeriesInfo, list[_File]]:
    """Step 3: the series asked for, or the largest CT series (an error when two tie)."""
    groups = _group(files)
    table = _table(groups)
    if series_uid is not None:
        if series_uid not in groups:
            raise DicomSeriesError(
                f"series_uid {series_uid!r} is not in {root}; it holds: "
                + "; ".join(_describe(s) for s in table)
                + ". Copy one UID from helpers.io.list_series(source)."
            )
        chosen = next(s for s in table if s.series_uid == series_uid)
    else:
        chosen = _largest(table, root, allow_non_ct=allow_non_ct)
        others = [s for s in table if s is not chosen]
        if others:
            notes.warn(
                f"{root} holds {len(table)} series; loaded the largest {'' if allow_non_ct else 'CT '}series "
                f"{_describe(chosen)} and left out " + "; ".join(_describe(s) for s in others)
                + ". Pass series_uid='...' to load another."
            )
    if chosen.modality != "CT" and not allow_non_ct:
        raise DicomSeriesError(
            f"series {_describe(chosen)} has (0008,0060) Modality {chosen.modality!r}, expected 'CT'. "
            "Hounsfield units only exist for CT; pass allow_non_ct=True to load it anyway."
        )
    files = groups[chosen.series_uid]
    _report_vr_mismatch(files, notes)
    return chosen, files


def _report_vr_mismatch(files: list[_File], notes: _Notes) -> None:
    odd = [f for f in files if f.vr_note]
    if odd:
        notes.warn(
            f"{len(odd)} file(s) of the series (e.g. {odd[0].name}) declare {_ts_text(odd[0].ts)} in "
            f"(0002,0010) Transfer Syntax UID but their data sets are encoded otherwise (pydicom: "
            f"{odd[0].vr_note!r}); read as they are really encoded, as pydicom and SimpleITK read them. "
            "Rewrite the files (e.g. dcmconv) to make them consistent."
        )


def _largest(table: SeriesTable, root: str, *, allow_non_ct: bool) -> SeriesInfo:
    candidates = list(table) if allow_non_ct else [s for s in table if s.modality == "CT"]
    if not candidates:
        raise DicomSeriesError(
            f"no CT series in {root}: found " + "; ".join(_describe(s) for s in table)
            + ". This loader expects (0008,0060) Modality 'CT'; pass allow_non_ct=True to load "
            "another modality anyway (values are then not HU)."
        )
    top = [s for s in candidates if s.slices == candidates[0].slices]
    if len(top) > 1:
        raise DicomSeriesError(
            f"{len(top)} series in {root} have {top[0].slices} slices each: "
            + "; ".join(_describe(s) for s in top)
            + ". Choose one with load_series(source, series_uid='...'); "
            "helpers.io.list_series(source) shows them all."
        )
    return candidates[0]


# ----------------------------------------------------------------- step 4: frames, duplicates, localizers
def _floats(value: Any, n: int | None = None) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])]
    except (TypeError, ValueError):
        return None
    if n is not None and len(out) != n:
        return None
    return out


def _get(ds: Any, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)``, with ``default`` also for a value pydicom cannot convert.

    pydicom converts values when they are first read; a damaged value (an unknown VR, an
    infinite IS) raises anything from ValueError to NotImplementedError.  The loader's own
    checks then report what is missing, with the file and tag.
    """
    try:
        return ds.get(keyword, default)
    except Exception:  # noqa: BLE001 - any conversion error means "not usable"
        return default


def _first(seq_owner: Any, seq_kw: str, kw: str) -> Any:
    seq = _get(seq_owner, seq_kw) if seq_owner is not None else None
    try:
        return _get(seq[0], kw) if seq else None
    except Exception:  # noqa: BLE001 - a sequence pydicom cannot parse
        return None


def _frames(files: list[_File]) -> list[_Frame]:
    """Every frame of ``files``, geometry and rescale checked where they are read."""
    frames: list[_Frame] = []
    for f in files:
        _refuse_modality_lut(f)
        if f.frames > 1 or f.header.sop_class_uid == _ENHANCED_CT:
            frames.extend(_enhanced_frames(f))
        else:
            h = f.header
            frames.append(_frame(f, 0, h.position, h.orientation, h.pixel_spacing, h.slope, h.intercept, False))
    return frames


#: (0028,3000) Modality LUT Sequence: a lookup table from stored values to the output unit.
_MODALITY_LUT_SEQUENCE = 0x00283000


def _refuse_modality_lut(f: _File) -> None:
    """A (0028,3000) Modality LUT Sequence replaces the rescale: refused, never silently ignored.

    When the sequence is present, the standard (PS3.3 C.11.1) and pydicom's
    ``apply_modality_lut`` use the lookup table, not (0028,1052)/(0028,1053);
    the linear rescale this loader applies would then give wrong HU.  CT images
    use the rescale; a LUT here is rare enough to convert first.
    """
    try:
        present = _MODALITY_LUT_SEQUENCE in f.ds and bool(f.ds[_MODALITY_LUT_SEQUENCE].value)
    except Exception:  # noqa: BLE001 - a sequence pydicom cannot parse still means "a LUT was meant"
        present = True
    if not present:
        return
    lut_type = _first(f.ds, "ModalityLUTSequence", "ModalityLUTType")
    raise DicomSeriesError(
        f"{f.name}: {_tag_text('ModalityLUTSequence')} is present"
        + (f" (Modality LUT Type {str(lut_type)!r})" if lut_type else "")
        + f"; expected stored values mapped to HU by {_tag_text('RescaleSlope')} and "
        f"{_tag_text('RescaleIntercept')} only, which this loader applies. A lookup table is not "
        "linear, so applying the rescale would give wrong HU. Convert the series first: "
        "pydicom.pixels.apply_modality_lut(ds.pixel_array, ds) gives the values; write them back "
        "with Rescale Slope 1 and Intercept 0 and remove the sequence."
    )


def _enhanced_frames(f: _File) -> list[_Frame]:
    """Frames of a multi-frame file: per-frame functional groups first, then shared ones, then the top level."""
    h, ds = f.header, f.ds
    shared = (_get(ds, "SharedFunctionalGroupsSequence") or [None])[0]
    per = _get(ds, "PerFrameFunctionalGroupsSequence") or []
    out = []
    for i in range(f.frames):  # f.frames was checked against the bytes present
        owners = (per[i] if i < len(per) else None, shared)

        def get(seq_kw, kw, default=None, owners=owners):
            return next((v for v in (_first(o, seq_kw, kw) for o in owners) if v is not None), default)

        ftype = [str(v).upper() for v in (get("CTImageFrameTypeSequence", "FrameType") or [])]
        out.append(_frame(
            f, i,
            get("PlanePositionSequence", "ImagePositionPatient", h.position),
            get("PlaneOrientationSequence", "ImageOrientationPatient", h.orientation),
            get("PixelMeasuresSequence", "PixelSpacing", h.pixel_spacing),
            get("PixelValueTransformationSequence", "RescaleSlope", h.slope),
            get("PixelValueTransformationSequence", "RescaleIntercept", h.intercept),
            "LOCALIZER" in ftype,
        ))
    return out


def _frame(f: _File, index: int, ipp: Any, iop: Any, ps: Any, slope: Any, intercept: Any,
           localizer: bool) -> _Frame:
    """One frame's record, its geometry and rescale validated (:class:`DicomSeriesError` naming the tag)."""
    ipp, iop, ps = _floats(ipp, 3), _floats(iop, 6), _floats(ps, 2)
    where = f.name if f.frames == 1 else f"{f.name} (frame {index + 1})"
    _check_plane(where, ipp, iop, ps)
    slope, intercept = _checked_rescale(where, slope, intercept)
    h = f.header
    return _Frame(
        f, index, h.sop_instance_uid,
        None if ipp is None else np.array(ipp),
        None if iop is None else np.array(iop),
        None if ps is None else (ps[0], ps[1]),
        slope, 0.0 if intercept is None else intercept, h.rows, h.columns,
        localizer or "LOCALIZER" in h.image_type,
        has_rescale=intercept is not None,
    )


def _check_plane(where: str, ipp: Any, iop: Any, ps: Any) -> None:
    """Finite position, positive finite pixel spacing, orthonormal orientation (absent values are checked later)."""
    if ipp is not None and not all(map(math.isfinite, ipp)):
        raise DicomSeriesError(
            f"{where}: {_tag_text('ImagePositionPatient')} is {ipp}; expected three finite numbers (mm). {_REPAIR}"
        )
    if ps is not None and not all(math.isfinite(v) and v > 0 for v in ps):
        raise DicomSeriesError(
            f"{where}: {_tag_text('PixelSpacing')} is {ps}; expected two positive finite numbers (mm). {_REPAIR}"
        )
    if iop is not None:
        row, col = iop[:3], iop[3:]
        lengths = math.sqrt(sum(v * v for v in row)), math.sqrt(sum(v * v for v in col))
        dot = sum(a * b for a, b in zip(row, col))
        off = max(abs(lengths[0] - 1), abs(lengths[1] - 1), abs(dot))
        ok = all(map(math.isfinite, iop)) and off <= ORTHONORMAL_TOLERANCE
        if not ok:
            raise DicomSeriesError(
                f"{where}: {_tag_text('ImageOrientationPatient')} is {iop}; expected two perpendicular unit "
                f"vectors (row and column direction cosines), found lengths {lengths[0]:.4g} and {lengths[1]:.4g} "
                f"and dot product {dot:.4g} (tolerance {ORTHONORMAL_TOLERANCE}). {_REPAIR}"
            )


def _checked_rescale(where: str, slope: Any, intercept: Any) -> tuple[float, float | None]:
    """(0028,1053) Rescale Slope (default 1) and (0028,1052) Rescale Intercept (None when absent), checked."""
    s = _floats(slope, 1) if slope is not None else [1.0]
    b = _floats(intercept, 1) if intercept is not None else None
    if s is None or not math.isfinite(s[0]) or s[0] == 0:
        value = s[0] if s else slope
        raise DicomSeriesError(
            f"{where}: {_tag_text('RescaleSlope')} is {value!r}; expected a finite, non-zero number (CT "
            "writes 1): with this slope every voxel would be "
            + (f"the intercept ({intercept} HU)" if s and s[0] == 0 else "undefined") + f". {_REPAIR}"
        )
    if intercept is not None and (b is None or not math.isfinite(b[0])):
        raise DicomSeriesError(
            f"{where}: {_tag_text('RescaleIntercept')} is {intercept!r}; expected a finite number (HU). {_REPAIR}"
        )
    return s[0], None if b is None else b[0]


def _drop_duplicates_and_localizers(frames: list[_Frame], chosen: SeriesInfo, notes: _Notes) -> list[_Frame]:
    """Step 4: drop exact duplicates, images typed LOCALIZER and a few images of another orientation."""
    frames = _drop_duplicates(frames, notes)
    locs = [fr for fr in frames if fr.localizer]
    if locs and len(locs) < len(frames):
        for fr in locs:
            notes.warn(f"dropped localizer (scout) image {fr.file.name}: (0008,0008) Image Type contains LOCALIZER.")
        frames = [fr for fr in frames if not fr.localizer]
    _require_geometry(frames)
    return _drop_odd_orientations(frames, chosen, notes)


def _drop_duplicates(frames: list[_Frame], notes: _Notes) -> list[_Frame]:
    kept: list[_Frame] = []
    seen: dict[tuple[str, int], _Frame] = {}
    for fr in frames:
        key = (fr.sop_uid, fr.index)
        if fr.sop_uid and key in seen:
            notes.warn(
                f"dropped {fr.file.name}: exact duplicate of {seen[key].file.name} (same (0008,0018) "
                f"SOP Instance UID {fr.sop_uid})."
            )
            continue
        seen[key] = fr
        kept.append(fr)
    return kept


def _require_geometry(frames: list[_Frame]) -> None:
    for fr in frames:
        per_frame = (("ImagePositionPatient", fr.ipp), ("ImageOrientationPatient", fr.iop),
                     ("PixelSpacing", fr.pixel_spacing))
        for kw, val in per_frame:
            if val is None:
                raise DicomSeriesError(
                    f"{fr.file.name}: {_tag_text(kw)} is missing or malformed; a CT slice needs it to be placed "
                    "in the volume. The file may be a derived or anonymised-too-far image; remove it."
                )


def _drop_odd_orientations(frames: list[_Frame], chosen: SeriesInfo, notes: _Notes) -> list[_Frame]:
    """The largest group of equal orientations is the stack; a few odd ones are localizers."""
    groups: list[list[_Frame]] = []
    for fr in frames:  # _require_geometry checked every iop
        g = next((g for g in groups if np.max(np.abs(_iop(g[0]) - _iop(fr))) <= ORIENTATION_TOLERANCE), None)
        if g is None:
            groups.append([fr])
        else:
            g.append(fr)
    if len(groups) == 1:
        return frames
    groups.sort(key=len, reverse=True)
    odd = [fr for g in groups[1:] for fr in g]
    if len(odd) > MAX_ODD_ORIENTATION_IMAGES or len(groups[0]) == len(groups[1]):
        raise DicomSeriesError(
            f"series {chosen.series_uid} mixes orientations: "
            + "; ".join(f"{len(g)} images with {_tag_text('ImageOrientationPatient')} "
                        f"{np.round(_iop(g[0]), 4).tolist()} (e.g. {g[0].file.name})" for g in groups)
            + ". Expected one orientation for the whole stack; pass a list of paths with one orientation."
        )
    for fr in odd:
        notes.warn(
            f"dropped {fr.file.name} as a localizer: its {_tag_text('ImageOrientationPatient')} "
            f"{np.round(_iop(fr), 4).tolist()} differs from the stack's {np.round(_iop(groups[0][0]), 4).tolist()}."
        )
    return groups[0]


# ----------------------------------------------------------------- step 5: check geometry (headers only)
def _check_geometry(frames: list[_Frame], chosen: SeriesInfo) -> None:
    """Step 5: every slice has the same Rows x Columns and Pixel Spacing (orientation: step 4)."""
    _check_same(frames, chosen, "(0028,0010) Rows x (0028,0011) Columns", lambda fr: (fr.rows, fr.cols),
                lambda a, b: a == b)
    _check_same(frames, chosen, "(0028,0030) Pixel Spacing", lambda fr: fr.pixel_spacing,
                lambda a, b: max(abs(x - y) for x, y in zip(a, b)) <= PIXEL_SPACING_TOLERANCE_MM)


def _check_same(frames: list[_Frame], chosen: SeriesInfo, what: str, value: Callable, close: Callable) -> None:
    ref = value(frames[0])
    odd = [(fr, value(fr)) for fr in frames if not close(value(fr), ref)]
    if odd:
        fr, v = odd[0]
        raise DicomSeriesError(
            f"expected every slice of series {chosen.series_uid} to have the same {what}; "
            f"{frames[0].file.name} has {ref} but {fr.file.name} has {v}"
            + (f" ({len(odd)} slices differ)" if len(odd) > 1 else "")
            + ". Remove the odd files or pass a list of paths with matching slices."
        )


# ----------------------------------------------------------------- step 6: read pixels
def _read_pixels(frames: list[_Frame], chosen: SeriesInfo, root: str, *, on_error: str,
                 notes: _Notes) -> tuple[list[_Frame], bool]:
    """Step 6: decode or check every file's pixels; ``(readable frames, direct)``.

    ``direct``: every file is one uncompressed 16-bit little-endian frame (nearly all CT);
    their sizes were checked when parsed, and they are read later, in slice order, straight
    into the output array (:func:`_read_direct`).  Other files are decoded here, on threads.
    """
    files = list(dict.fromkeys(fr.file for fr in frames))
    direct = all(map(_is_direct, files)) and len({f.header.signed for f in files}) == 1

    def stored(f: _File) -> np.ndarray | DicomSeriesError | None:
        try:
            return _stored(f, check_only=direct)
        except DicomSeriesError as exc:
            return exc

    arrays = {}
    for f, arr in zip(files, _parallel(stored, files, threaded=not direct)):
        if isinstance(arr, DicomSeriesError):
            if on_error == "raise":
                raise arr
            notes.warn(f"left out a slice (on_error='skip'): {arr}")
        else:
            arrays[f] = arr
    good = [fr for fr in frames if fr.file in arrays]
    for fr in good:
        arr = arrays[fr.file]
        fr.stored = None if arr is None else arr[fr.index]
    if not good:
        raise DicomSeriesError(f"no readable slice left in series {chosen.series_uid} of {root}.")
    return good, direct


def _is_direct(f: _File) -> bool:
    """True when the file's pixels can be read straight into the output (one 16-bit little-endian frame)."""
    h = f.header
    return (
        not f.encapsulated and f.ts != ExplicitVRBigEndian and f.frames == 1
        and h.bits_allocated == 16 and h.samples_per_pixel == 1 and f.problem is None
    )


def _stored(f: _File, *, check_only: bool = False) -> np.ndarray | None:
    """Stored values of every frame of ``f``, shape (frames, rows, cols); raises DicomSeriesError.

    With ``check_only`` nothing is read (sizes were checked when the header was parsed) and
    None is returned; :func:`_read_direct` reads the pixels later.
    """
    h = f.header
    if f.problem:
        raise DicomSeriesError(f.problem)
    if h.samples_per_pixel != 1:
        raise DicomSeriesError(
            f"{f.name}: (0028,0002) Samples per Pixel is {h.samples_per_pixel}; a CT slice has 1 (grey values). "
            "This is a colour image (a screenshot or secondary capture?); remove it from the source."
        )
    if check_only:
        return None
    arr = _decoded(f) if f.encapsulated else _native(f)
    return fast.keep_stored_bits(arr, bits_allocated=h.bits_allocated, bits_stored=h.bits_stored, signed=h.signed)


def _native(f: _File) -> np.ndarray:
    """Uncompressed stored values, (frames, rows, cols), from memory or from the file."""
    h = f.header
    n = h.rows * h.columns * f.frames
    dtype = np.dtype(f"{'i' if h.signed else 'u'}{h.bits_allocated // 8}")
    dtype = dtype.newbyteorder(">" if f.ts == ExplicitVRBigEndian else "<")
    if f.pixel is not None:
        arr = np.frombuffer(f.pixel, dtype, count=n)
    else:
        try:
            arr = np.fromfile(f.reader.path, dtype, count=n, offset=f.pixel_offset)
        except OSError as exc:
            raise DicomSeriesError(f"{f.name}: cannot read the pixel data: {exc.strerror or exc}") from None
        if arr.size != n:
            raise DicomSeriesError(f"{f.name}: the file became shorter while it was being read; load again.")
    return arr.reshape(f.frames, h.rows, h.columns)


def _decoded(f: _File) -> np.ndarray:
    """Compressed pixels decoded, (frames, rows, cols), after checking the frames against the header."""
    h = f.header
    ds = f.ds if "PixelData" in f.ds else _whole_dataset(f)
    encoded = _encoded_frames(f, ds)
    try:
        arr = np.asarray(fast.decode(ds, f.ts, encoded))
    except Exception as exc:  # missing plugin or corrupt stream
        raise _decode_error(f, exc) from None
    n = h.rows * h.columns * f.frames
    if arr.size != n:
        raise DicomSeriesError(
            f"{f.name}: the decoded pixel data has {arr.size} values but (0028,0010) Rows {h.rows} x "
            f"(0028,0011) Columns {h.columns} x {f.frames} frame(s) = {n} were expected; the header is wrong."
        )
    return arr.reshape(f.frames, h.rows, h.columns)


def _whole_dataset(f: _File) -> pydicom.Dataset:
    """The whole data set of ``f``, pixels included (its header was parsed without them)."""
    try:
        data = f.data if f.data is not None else f.reader.read()[0]
        return pydicom.dcmread(BytesIO(data), force=True)
    except DicomSeriesError:
        raise
    except Exception as exc:  # noqa: BLE001 - a zip member failing its CRC, a data set cut short...
        raise DicomSeriesError(_unparseable(f.name, exc)) from None


def _encoded_frames(f: _File, ds: Any) -> list[bytes] | None:
    """The compressed frames, checked against the header before anything is decoded.

    There must be at least (0028,0008) Number of Frames of them; a JPEG, JPEG-LS or JPEG 2000
    codestream must declare the header's Rows x Columns, and an RLE frame must be large enough
    for them.  None when the fragments cannot be split (the decoder then says what is wrong).
    """
    from pydicom.encaps import generate_frames

    h = f.header
    try:
        frames = []
        for frame in generate_frames(ds.PixelData, number_of_frames=f.frames):
            frames.append(frame)
            if len(frames) == f.frames:
                break
    except Exception:
        return None
    if len(frames) < f.frames:
        raise DicomSeriesError(
            f"{f.name}: (0028,0008) Number of Frames is {f.frames} but (7FE0,0010) Pixel Data holds "
            f"{len(frames)} compressed frame(s). Nothing was decoded. {_REPAIR}"
        )
    frame_bytes = h.pixels_per_frame * h.bits_allocated // 8
    for k, frame in enumerate(frames):
        shape = fast.codestream_shape(frame)
        if shape is not None and shape != (h.rows, h.columns):
            raise DicomSeriesError(
                f"{f.name}: compressed frame {k + 1} is a {shape[0]} x {shape[1]} image but (0028,0010) Rows x "
                f"(0028,0011) Columns say {h.rows} x {h.columns}. Nothing was decoded. {_REPAIR}"
            )
        if f.ts == RLELossless and frame_bytes > RLE_MAX_EXPANSION * len(frame):
            raise DicomSeriesError(
                f"{f.name}: RLE frame {k + 1} holds {len(frame)} bytes, too few for the {h.rows} x {h.columns} "
                f"image the header declares (RLE expands at most {RLE_MAX_EXPANSION}x). Nothing was decoded. {_REPAIR}"
            )
    return frames


def _decode_error(f: _File, exc: Exception) -> DicomSeriesError:
    """An unknown transfer syntax, no decoder installed for it, or a stream that a decoder rejected."""
    if not f.ts.is_transfer_syntax:
        return DicomSeriesError(
            f"{f.name}: (0002,0010) Transfer Syntax UID is {str(f.ts)!r}, which is not a DICOM transfer syntax, "
            "so its pixel data cannot be read. The file meta header is damaged; copy the file again, or pass "
            "on_error='skip' to leave it out."
        )
    if f.ts in _NATIVE:
        return DicomSeriesError(
            f"{f.name}: (7FE0,0010) Pixel Data is encapsulated (compressed) but (0002,0010) Transfer Syntax UID "
            f"says {_ts_text(f.ts)}, an uncompressed syntax, so it cannot be read. The file meta header is damaged; "
            "copy the file again, or pass on_error='skip' to leave it out."
        )
    if not _decoder_available(f.ts):
        return DicomSeriesError(
            f"{f.name}: cannot decode pixel data compressed with (0002,0010) Transfer Syntax UID "
            f"{_ts_text(f.ts)}: no installed decoder handles it; it needs {_decoder_hint(f.ts)}. "
            "Install that into this environment (pip install ...), or convert the files to "
            "uncompressed DICOM (e.g. gdcmconv --raw in.dcm out.dcm)."
        )
    text = str(exc)
    return DicomSeriesError(
        f"{f.name}: the compressed pixel data ((0002,0010) Transfer Syntax UID {_ts_text(f.ts)}) "
        f"could not be decoded ({type(exc).__name__}: {text.splitlines()[0] if text else ''}). "
        "The file is probably truncated or corrupt; copy it again, or pass on_error='skip'."
    )


def _decoder_available(ts: UID) -> bool:
    """Whether pydicom has a working plugin for ``ts``, or imagecodecs decodes it."""
    try:
        from pydicom.pixels.decoders.base import get_decoder

        if get_decoder(ts).is_available:
            return True
    except Exception:  # no decoder at all for this syntax
        pass
    if ts in IMAGECODECS_SYNTAXES:
        try:
            import imagecodecs

            return hasattr(imagecodecs, IMAGECODECS_SYNTAXES[ts])
        except ImportError:
            return False
    return False


def _decoder_hint(ts: UID) -> str:
    for prefix, pkg in _DECODERS:
        if str(ts).startswith(prefix):
            return pkg
    return "a pydicom pixel-data plugin for this transfer syntax"


# ----------------------------------------------------------------- step 7: order and space
def _order_and_space(frames: list[_Frame], chosen: SeriesInfo, notes: _Notes) -> _Stack:
    """Step 7: sort by position along the slice normal; measure the spacing; report gaps and tilt."""
    row_cos, col_cos = _iop(frames[0])[:3], _iop(frames[0])[3:]
    normal = np.cross(row_cos, col_cos)
    normal /= np.linalg.norm(normal)
    pos = np.array([fr.ipp for fr in frames])
    order = np.argsort(pos @ normal, kind="stable")
    frames = [frames[i] for i in order]
    pos = pos[order]
    along = pos @ normal
    steps = np.diff(along)
    _check_distinct_positions(frames, along, steps, chosen)
    if steps.size:
        dz = float(np.median(steps))
        _report_steps(frames, along, steps, dz, chosen, notes)
        _report_tilt(pos, normal, chosen, notes)
    else:
        dz = _single_slice_spacing(frames[0], chosen, notes)
    return _Stack(frames, pos, normal, dz)


def _check_distinct_positions(frames: list[_Frame], along: np.ndarray, steps: np.ndarray, chosen: SeriesInfo) -> None:
    same = np.nonzero(steps < SAME_POSITION_MM)[0]
    if same.size:
        a, b = frames[same[0]], frames[same[0] + 1]
        raise DicomSeriesError(
            f"two slices of series {chosen.series_uid} are at the same position ({along[same[0]]:.2f} mm along the "
            f"slice normal, (0020,0032) Image Position (Patient)): {a.file.name} and {b.file.name}"
            + (f" ({same.size} such pairs)" if same.size > 1 else "")
            + ". Expected one slice per position; the series may mix two acquisitions "
            "((0020,0012) Acquisition Number). Pass a list of paths holding one of them."
        )


def _runs(steps: np.ndarray) -> list[tuple[int, int]]:
    """``(first, stop)`` index ranges of consecutive steps that differ by at most :data:`UNEVEN_SPACING_MM`."""
    cuts = (np.nonzero(np.abs(np.diff(steps)) > UNEVEN_SPACING_MM)[0] + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(steps)]))


def _report_steps(frames: list[_Frame], along: np.ndarray, steps: np.ndarray, dz: float,
                  chosen: SeriesInfo, notes: _Notes) -> None:
    """One warning for a change of spacing (with where), one per gap, one for uneven steps."""
    changes = [(a, b) for a, b in _runs(steps)
               if b - a >= SPACING_CHANGE_MIN_STEPS and abs(float(np.median(steps[a:b])) - dz) > UNEVEN_SPACING_MM]
    in_change = np.zeros(steps.size, bool)
    for a, b in changes:
        in_change[a:b] = True
    if changes:
        notes.warn(
            f"the slice spacing of series {chosen.series_uid} changes: "
            + "; ".join(f"{float(np.median(steps[a:b])):.2f} mm from slice {a} (at {along[a]:.2f} mm, "
                        f"{frames[a].file.name}) to slice {b} (at {along[b]:.2f} mm, {frames[b].file.name})"
                        for a, b in changes)
            + f"; {dz:.2f} mm (the median step, used as the spacing) elsewhere. Volume.positions keeps the "
            "real positions; resample by position before measuring along z."
        )
    for k in np.nonzero((steps > GAP_FACTOR * dz) & ~in_change)[0]:
        notes.warn(
            f"gap in series {chosen.series_uid}: {steps[k]:.2f} mm between slice {k} (at {along[k]:.2f} mm, "
            f"{frames[k].file.name}) and slice {k + 1} (at {along[k + 1]:.2f} mm, {frames[k + 1].file.name}) "
            f"where {dz:.2f} mm is expected; about {round(steps[k] / dz) - 1} slice(s) missing. "
            "Volume.positions keeps the real positions; resample by position before measuring along z."
        )
    uneven = (np.abs(steps - dz) > UNEVEN_SPACING_MM) & (steps <= GAP_FACTOR * dz) & ~in_change
    if uneven.any():
        rest = steps[~in_change]
        notes.warn(
            f"uneven slice spacing in series {chosen.series_uid}: steps from {rest.min():.3f} to "
            f"{rest.max():.3f} mm (median {dz:.3f} mm used as spacing). Volume.positions keeps the "
            "real positions."
        )


def _report_tilt(pos: np.ndarray, normal: np.ndarray, chosen: SeriesInfo, notes: _Notes) -> None:
    span = pos[-1] - pos[0]
    length = float(np.linalg.norm(span))
    if length > 0:
        angle = math.degrees(math.acos(min(1.0, abs(float(span @ normal)) / length)))
        if angle > TILT_TOLERANCE_DEG:
            notes.warn(
                f"series {chosen.series_uid} is tilted/sheared: the slices are stacked {angle:.1f} degrees "
                "away from the slice normal (gantry tilt?). The volume's axes assume a straight stack, so "
                "shapes are sheared by that angle; Volume.positions keeps the real positions."
            )


def _single_slice_spacing(fr: _Frame, chosen: SeriesInfo, notes: _Notes) -> float:
    thick = _floats(_get(fr.file.ds, "SliceThickness"), 1)
    dz = thick[0] if thick and math.isfinite(thick[0]) and thick[0] > 0 else 1.0
    notes.warn(f"series {chosen.series_uid} has a single slice; "
               f"slice spacing set to {dz} mm ((0018,0050) Slice Thickness).")
    return dz


# ----------------------------------------------------------------- step 8: to HU
def _to_hu(stack: _Stack, chosen: SeriesInfo, *, direct: bool, dtype: DTypeLike | None, padding_hu: float,
           notes: _Notes) -> tuple[np.ndarray, int]:
    """Step 8: HU = stored x slope + intercept per slice, padding to ``padding_hu``; (array, padded voxels)."""
    frames = stack.frames
    slopes = np.array([fr.slope for fr in frames])
    inters = np.array([fr.intercept for fr in frames])
    if chosen.modality == "CT" and not all(fr.has_rescale for fr in frames):
        miss = next(fr for fr in frames if not fr.has_rescale)
        notes.warn(f"{miss.file.name} has no {_tag_text('RescaleIntercept')}; used slope 1 and intercept 0.")
    raw = _read_direct(frames) if direct else None
    ranges = [_value_range(fr) for fr in frames]
    want_int = _int16_output(frames, ranges, slopes, inters, chosen, dtype=dtype, padding_hu=padding_hu)
    # int16 results computed in place in the stored-value array when every factor fits int16
    inplace = raw is not None and want_int and bool(np.all(np.abs(slopes) <= 32767) and np.all(np.abs(inters) <= 32767))
    rows, cols = frames[0].rows, frames[0].cols
    hu = (raw.view(np.int16) if inplace and raw is not None
          else np.empty((len(frames), rows, cols), np.int16 if want_int else np.float32))
    mask = np.empty((rows, cols), bool)
    padded = 0
    for k, fr in enumerate(frames):
        stored = _stored_of(fr)
        have = _padding_before(fr, stored, ranges[k], slopes[k], inters[k], mask)  # needs the stored values
        fast.rescale_into(stored, hu[k], slopes[k], inters[k], inplace=inplace)
        if _padding_after(fr, hu[k], ranges[k], slopes[k], inters[k], mask, have):
            n = int(np.count_nonzero(mask))
            if n:
                np.copyto(hu[k], padding_hu, where=mask, casting="unsafe")
                padded += n
        fr.stored = None
    return hu, padded


def _read_direct(frames: list[_Frame]) -> np.ndarray:
    """Stored values of single-frame 16-bit files read in slice order straight into one array."""
    h = frames[0].file.header
    raw = np.empty((len(frames), h.rows, h.columns), "<i2" if h.signed else "<u2")

    def fill(k: int) -> None:
        f = frames[k].file
        if f.pixel is not None:
            raw[k] = np.frombuffer(f.pixel, raw.dtype, count=raw[k].size).reshape(raw[k].shape)
        else:
            try:
                got = fast.read_into(f.reader.path, f.pixel_offset, raw[k])
            except OSError as exc:
                raise DicomSeriesError(f"{f.name}: cannot read the pixel data: {exc.strerror or exc}") from None
            if got != raw[k].nbytes:
                raise DicomSeriesError(f"{f.name}: the file became shorter while it was being read; load again.")
        fast.keep_stored_bits(raw[k], bits_allocated=16, bits_stored=f.header.bits_stored,
                              signed=f.header.signed, inplace=True)

    _parallel(fill, range(len(frames)))
    for k, fr in enumerate(frames):
        fr.stored = raw[k]
    return raw


def _int16_output(frames: list[_Frame], ranges: list[tuple[int, int]], slopes: np.ndarray, inters: np.ndarray,
                  chosen: SeriesInfo, *, dtype: DTypeLike | None, padding_hu: float) -> bool:
    """Whether the output is int16: asked for, or (by default) every HU value is an integer that fits."""
    integer = bool(np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters)))
    want_int = dtype in ("int16", np.int16) or (dtype is None and integer and float(padding_hu).is_integer())
    if not want_int:
        return False
    lo, hi = _hu_span(ranges, slopes, inters)
    if lo < -32768 or hi > 32767:  # the declared range is too wide: look at the actual values
        lo, hi = _hu_span([_stored_range(fr) for fr in frames], slopes, inters)
    if integer and -32768 <= lo and hi <= 32767:
        return True
    if dtype is not None:
        raise DicomSeriesError(
            f"dtype='int16' asked but the HU of series {chosen.series_uid} "
            + ("are not integers (non-integer rescale slope/intercept)" if not integer else f"span {lo}..{hi}")
            + "; use dtype=None or 'float32'."
        )
    return False


def _hu_span(ranges: list[tuple[int, int]], slopes: np.ndarray, inters: np.ndarray) -> tuple[float, float]:
    ends = [e for (mn, mx), s, b in zip(ranges, slopes, inters) for e in (mn * s + b, mx * s + b)]
    return min(ends), max(ends)


def _value_range(fr: _Frame) -> tuple[int, int]:
    """Smallest and largest stored value the slice can hold (declared for native data, actual otherwise)."""
    h = fr.file.header
    if not fr.file.encapsulated:
        bits = h.bits_stored or 16
        if h.signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1
    return _stored_range(fr)


def _padding_before(fr: _Frame, stored: np.ndarray, value_range: tuple[int, int], slope: float, intercept: float,
                    out: np.ndarray) -> bool:
    """Padding found from stored values, into ``out``; False when there is none to look for.

    (0028,0120) Pixel Padding Value (up to (0028,0121) Pixel Padding Range Limit)
    when present; else, on signed data, stored values at or below
    :data:`PADDING_STORED_AT_OR_BELOW` that the HU rule would not catch.
    """
    h = fr.file.header
    if h.padding_value is not None:
        bits = h.bits_allocated or 16

        def as_signed(v: int) -> int:
            v = int(v)
            return v - (1 << bits) if h.signed and v >= 1 << (bits - 1) else v

        ppv = as_signed(h.padding_value)
        if h.padding_limit is None:
            np.equal(stored, ppv, out=out)
        else:
            lo, hi = sorted((ppv, as_signed(h.padding_limit)))
            np.greater_equal(stored, lo, out=out)
            out &= stored <= hi
        return True
    stored_rule = h.signed and value_range[0] <= PADDING_STORED_AT_OR_BELOW and (
        PADDING_STORED_AT_OR_BELOW * slope + intercept >= PADDING_BELOW_HU  # not already caught in HU
    )
    if stored_rule:
        np.less_equal(stored, PADDING_STORED_AT_OR_BELOW, out=out)
    return bool(stored_rule)


def _padding_after(fr: _Frame, hu: np.ndarray, value_range: tuple[int, int], slope: float, intercept: float,
                   out: np.ndarray, have: bool) -> bool:
    """Add the HU rule (below :data:`PADDING_BELOW_HU`, when no padding tag) to ``out``."""
    if fr.file.header.padding_value is not None:
        return have
    lo_st, hi_st = value_range
    if min(lo_st * slope + intercept, hi_st * slope + intercept) >= PADDING_BELOW_HU:
        return have  # no value of this slice can be that low
    if have:
        out |= hu < PADDING_BELOW_HU
    else:
        np.less(hu, PADDING_BELOW_HU, out=out)
    return True


# ----------------------------------------------------------------- step 9: metadata
def _metadata(hu: np.ndarray, stack: _Stack, chosen: SeriesInfo, root: str, *, skipped: list[str],
              notes: _Notes, padded: int, padding_hu: float) -> Volume:
    """Step 9: the :class:`Volume`, with DICOM's (x, y, z) geometry turned into (z, y, x)."""
    first = stack.frames[0]
    row_cos, col_cos = _iop(first)[:3], _iop(first)[3:]
    ps = cast(tuple[float, float], first.pixel_spacing)  # checked by _require_geometry
    return Volume(
        hu,
        spacing=(stack.spacing_z, ps[0], ps[1]),
        origin=tuple(stack.positions[0]),
        direction=np.column_stack([stack.normal, col_cos, row_cos]),
        positions=stack.positions,
        meta=_meta(first.file.ds, chosen, root, stack.frames, skipped, notes, padded, padding_hu),
    )


def _meta(ds: Any, chosen: SeriesInfo, root: str, frames: list[_Frame], skipped: list[str], notes: _Notes,
          padded: int, padding_hu: float) -> dict:
    centers = _floats(_get(ds, "WindowCenter"))
    widths = _floats(_get(ds, "WindowWidth"))
    names = _get(ds, "WindowCenterWidthExplanation")
    if isinstance(names, str):
        names = [names]
    windows = []
    if centers and widths:
        for i, (c, w) in enumerate(zip(centers, widths)):
            name = str(names[i]) if names and i < len(names) else f"window {i + 1}"
            windows.append({"name": name, "center": c, "width": w})
    thick = _floats(_get(ds, "SliceThickness"), 1)
    files = [fr.file.name for fr in frames]
    return {
        "modality": chosen.modality,
        "series_description": chosen.description,
        "series_uid": chosen.series_uid,
        "series_number": chosen.series_number,
        "study_uid": str(_get(ds, "StudyInstanceUID", "")),
        "frame_of_reference_uid": str(_get(ds, "FrameOfReferenceUID", "")),
        "manufacturer": str(_get(ds, "Manufacturer", "")) or None,
        "kernel": chosen.kernel or None,
        "slice_thickness": thick[0] if thick else None,
        "file_count": len(dict.fromkeys(files)),
        "skipped_files": len(skipped),
        "warnings": list(notes),
        "source": root,
        "files": files,
        "sop_instance_uids": [fr.sop_uid for fr in frames],
        "frame_indices": [fr.index for fr in frames],
        "transfer_syntax": str(frames[0].file.ts),
        "rescale_slopes": sorted({fr.slope for fr in frames}),
        "rescale_intercepts": sorted({fr.intercept for fr in frames}),
        "padding_voxels": padded,
        "padding_hu": padding_hu,
        "windows": windows,
        "patient_name": str(_get(ds, "PatientName", "")),
        "patient_id": str(_get(ds, "PatientID", "")),
    }
