"""Reading a CT series from a folder, a ``.zip`` archive or a list of files.

:func:`load_series` turns a pile of DICOM files into one :class:`~helpers.volume.Volume`
in Hounsfield units, and :func:`list_series` shows what a source contains.

What the loader does that the 2017 tutorial's ``load_scan`` did not:

* recognises DICOM by content (the ``DICM`` marker at byte 128), not by extension,
  and counts the other files it skipped;
* groups files by (0020,000E) Series Instance UID and picks one series, or says
  clearly which ones tie;
* drops localizers and exact duplicates, with a :class:`~helpers.errors.SeriesWarning`;
* sorts slices by position along the slice normal, never by Instance Number or
  file name, and measures the slice spacing from the positions;
* applies (0028,1053) Rescale Slope and (0028,1052) Rescale Intercept of *every*
  slice, and turns out-of-field padding into air;
* checks geometry (size, pixel spacing, orientation, gaps, tilt) before stacking.

The source is only ever read, never written to; a ``.zip`` is read in place.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSTransferSyntaxes,
    UID,
)
from pydicom.pixels import pixel_array

from .errors import DicomSeriesError, SeriesWarning
from .volume import Volume

__all__ = ["load_series", "list_series", "SeriesInfo", "SeriesTable", "PADDING_HU"]

# ----------------------------------------------------------------- named thresholds
#: HU written where the scanner padded outside the reconstructed field of view.
PADDING_HU = -1024
#: Without a (0028,0120) Pixel Padding Value, HU values below this are padding, not tissue
#: (air is -1000 HU; scanners pad with -2000, -2048 or -3024 HU).
PADDING_BELOW_HU = -1100
#: On signed data without a padding tag, stored values at or below this are padding.
PADDING_STORED_AT_OR_BELOW = -2000
#: A step between neighbouring slices larger than this factor times the median step is a gap.
GAP_FACTOR = 1.5
#: Steps that differ from the median by more than this (mm) make the spacing "uneven".
UNEVEN_SPACING_MM = 0.05
#: Two slices closer than this (mm) along the normal are at the same position.
SAME_POSITION_MM = 1e-3
#: Stacks leaning more than this (degrees) from the slice normal are reported as tilted.
TILT_TOLERANCE_DEG = 0.5
#: Largest difference (direction cosine units) for two orientations to count as equal.
ORIENTATION_TOLERANCE = 1e-3
#: Largest difference (mm) between two (0028,0030) Pixel Spacing values to count as equal.
PIXEL_SPACING_TOLERANCE_MM = 1e-3
#: Images with another orientation than the stack are dropped as localizers when there
#: are at most this many of them; more means the series really mixes orientations.
MAX_ODD_ORIENTATION_IMAGES = 3
#: A compressed file whose header declares more than this many bytes of pixels, at more than
#: ``MAX_COMPRESSION_RATIO`` times its compressed size, has a lying header: refuse to allocate.
MAX_PLAUSIBLE_BYTES = 256 * 2**20
MAX_COMPRESSION_RATIO = 1000
#: Bytes read first from each file to parse its header (the rest only if needed).
HEADER_BYTES = 64 * 1024
#: pydicom decoding plugin tried first for JPEG-LS.
PREFERRED_JPEGLS_PLUGIN = "pyjpegls"
#: Transfer syntaxes decoded by imagecodecs when it is installed (function name per syntax):
#: JPEG Lossless (Process 14, and SV1), JPEG-LS (lossless, near-lossless), JPEG 2000 and HTJ2K.
IMAGECODECS_SYNTAXES = {
    "1.2.840.10008.1.2.4.57": "jpeg8_decode",
    "1.2.840.10008.1.2.4.70": "jpeg8_decode",
    "1.2.840.10008.1.2.4.80": "jpegls_decode",
    "1.2.840.10008.1.2.4.81": "jpegls_decode",
    "1.2.840.10008.1.2.4.90": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.91": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.201": "htj2k_decode",
    "1.2.840.10008.1.2.4.202": "htj2k_decode",
    "1.2.840.10008.1.2.4.203": "htj2k_decode",
}
#: Threads used to read and decode files (I/O and compressed decoding).
MAX_WORKERS = 4

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


# ----------------------------------------------------------------- internal records
@dataclass(eq=False)
class _File:
    name: str
    ds: Any  # header (stops before Pixel Data), or the whole data set when parsed fully
    ts: UID
    frames: int
    h: dict  # the header values the loader needs, read once
    reader: Any  # where to read the rest from (_Disk or _ZipMember)
    size: int  # file size in bytes
    data: bytes | None = field(default=None, repr=False)  # the whole file, when it was read whole
    pixel: Any = field(default=None, repr=False)  # native Pixel Data bytes already in memory
    pixel_offset: int = 0  # otherwise: where native Pixel Data starts in the file...
    pixel_nbytes: int = 0  # ...and how many bytes of it the file really holds


@dataclass(eq=False)
class _Frame:
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


def _tag_text(keyword: str) -> str:
    """``"(0028,1052) Rescale Intercept"`` for a keyword."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {dictionary_description(tag)}"


def _ts_text(ts: UID) -> str:
    return f"{ts} ({ts.name})" if ts.name and ts.name != str(ts) else str(ts)


# Header values read straight from the raw element bytes (pydicom's generic
# conversion is the slowest part of reading a big series): keyword -> (tag, kind).
_HEADER = {
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


def _convert(value, kind: str):
    """Convert a pydicom element value to ``kind`` (fallback path)."""
    if value is None or value == "":
        return None
    if kind == "str":
        return str(value)
    if kind == "strs":
        return [str(v) for v in value] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [str(value)]
    if kind == "floats":
        return _floats(value)
    if kind == "float":
        v = _floats(value)
        return v[0] if v else None
    return int(value) if not isinstance(value, (list, pydicom.multival.MultiValue)) else int(value[0])


def _header(ds, little: bool) -> dict:
    """Read the :data:`_HEADER` values of ``ds`` (None when absent or unreadable)."""
    raw_dict = ds._dict
    fmt = "<H" if little else ">H"
    out = {}
    for kw, (tag, kind) in _HEADER.items():
        elem = raw_dict.get(tag)
        if elem is None:
            out[kw] = None
            continue
        value = None
        done = False
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            v = elem.value
            try:
                if kind == "us":
                    value = struct.unpack(fmt, v[:2])[0] if len(v) >= 2 else None
                else:
                    text = v.decode("latin-1").strip(" \x00")
                    if kind == "str":
                        value = text or None
                    elif kind == "strs":
                        value = [t.strip() for t in text.split("\\")] if text else None
                    elif kind == "floats":
                        value = [float(t) for t in text.split("\\")] if text else None
                    elif kind == "float":
                        value = float(text) if text else None
                    else:
                        value = int(text) if text else None
                done = True
            except (ValueError, struct.error):
                done = False
        if not done:
            try:
                value = _convert(ds[tag].value, kind)
            except Exception:
                value = None
        out[kw] = value
    return out


# ----------------------------------------------------------------- collecting files
def _sources(source) -> tuple[str, list[tuple[str, Any]]]:
    """A display name for the source and a list of ``(name, reader)`` pairs."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DicomSeriesError(
                f"{path} does not exist: expected a folder of DICOM files, a .zip archive or a list of "
                "files. Check the path (relative paths start from the current folder "
                f"{Path.cwd()})."
            )
        if path.is_dir():
            items = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    p = os.path.join(root, f)
                    items.append((p, _file_reader(p)))
            return str(path), items
        if zipfile.is_zipfile(path):
            return str(path), _zip_items(path)
        return str(path), [(str(path), _file_reader(str(path)))]
    if isinstance(source, Iterable):
        items = []
        for p in source:
            p = Path(p)
            if not p.exists():
                raise DicomSeriesError(f"{p} (in the list of files given) does not exist; remove it from the list.")
            if p.is_dir():
                items.extend(_sources(p)[1])
            else:
                items.append((str(p), _file_reader(str(p))))
        return f"a list of {len(items)} files", items
    raise DicomSeriesError(
        f"source must be a folder, a .zip archive or a list of file paths; got {type(source).__name__}"
    )


class _Disk:
    """A file on disk: read the first bytes, the whole file, or pixels at an offset."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def read(self, limit: int = -1) -> tuple[bytes, int]:
        with open(self.path, "rb") as fh:
            data = fh.read(limit)
            size = os.fstat(fh.fileno()).st_size
        return data, size


class _ZipMember:
    """A member of a zip archive, read in place (always whole)."""

    __slots__ = ("archive", "member")
    path = None

    def __init__(self, archive: Path, member: str):
        self.archive, self.member = archive, member

    def read(self, limit: int = -1) -> tuple[bytes, int]:
        with zipfile.ZipFile(self.archive) as zf:
            data = zf.read(self.member)
        return data, len(data)


def _file_reader(path: str) -> _Disk:
    return _Disk(path)


def _zip_items(path: Path) -> list[tuple[str, Any]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DicomSeriesError(f"cannot open the zip archive {path}: {exc}. Is it complete?") from None
    return [(f"{path}::{n}", _ZipMember(path, n)) for n in sorted(names)]


def _looks_preambleless(head: bytes) -> bool:
    """True when the bytes start like a DICOM data set without preamble: a (0002,xxxx) or (0008,xxxx) tag."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


_PIXEL_TAG = {True: b"\xe0\x7f\x10\x00", False: b"\x7f\xe0\x00\x10"}
_UNDEFINED = 0xFFFFFFFF


def _read(name: str, reader) -> tuple[bytes | None, int, str | None]:
    """The first :data:`HEADER_BYTES` of a file (zip members: all of it), its size, or an error text."""
    try:
        data, size = reader.read(HEADER_BYTES)
        return data, size, None
    except OSError as exc:
        return None, 0, f"cannot read {name}: {exc.strerror or exc}"
    except Exception as exc:  # zip member errors
        return None, 0, f"cannot read {name}: {exc}"


def _parse(name: str, data: bytes, size: int, reader) -> tuple[str, Any]:
    """Parse one file's header: ``("dicom", _File)``, ``("skip", reason)`` or ``("bad", message)``.

    The header is parsed once from the first bytes of the file, stopping before
    (7FE0,0010) Pixel Data (the whole file is read only when the header is longer).
    Uncompressed pixels are read later, and only for the chosen series.
    """
    dicm = len(data) >= 132 and data[128:132] == b"DICM"
    if not dicm and not _looks_preambleless(data):
        return "skip", "not DICOM"

    def header(buf: bytes):
        bio = BytesIO(buf)
        ds = pydicom.dcmread(bio, force=not dicm, stop_before_pixels=True)
        return ds, bio.tell()

    def at_pixels(ds, buf, pos) -> bool:
        little = ds.original_encoding[1] is not False
        return buf[pos : pos + 4] == _PIXEL_TAG[little]

    whole = len(data) >= size
    try:
        try:
            ds, pos = header(data)
            complete = whole or at_pixels(ds, data, pos)
        except Exception:
            if whole:
                raise
            complete = False
        if not complete:  # the header goes on past the first bytes: read it all
            data, size = reader.read()
            whole = True
            ds, pos = header(data)
    except Exception as exc:
        if not dicm:
            return "skip", "not DICOM"
        return "bad", (
            f"{name} starts like a DICOM file but cannot be parsed ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or corrupt. Copy it again from the source, or pass "
            "on_error='skip' to leave it out."
        )
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    implicit, little = ds.original_encoding
    if ts is None:  # preamble-less files: pydicom guessed the encoding
        ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    ts = UID(str(ts))
    little = little is not False
    f = _File(name=name, ds=ds, ts=ts, frames=1, h={}, reader=reader, size=size)
    has_pixels = False
    if ts == DeflatedExplicitVRLittleEndian:  # positions refer to the inflated stream: parse it all
        try:
            if not whole:
                data, size = reader.read()
            ds = f.ds = pydicom.dcmread(BytesIO(data), force=not dicm)
        except Exception as exc:
            return "bad", f"{name}: the deflated data set cannot be inflated ({type(exc).__name__}: {exc})."
        has_pixels = "PixelData" in ds
        if has_pixels:
            f.pixel = ds.PixelData
    elif data[pos : pos + 4] == _PIXEL_TAG[little]:
        has_pixels = True
        fmt = "<I" if little else ">I"
        start = pos + (8 if implicit else 12)
        length = struct.unpack(fmt, data[start - 4 : start])[0] if len(data) >= start else 0
        if length == _UNDEFINED or ts not in _NATIVE:  # encapsulated: decoded later from the whole file
            f.data = data if whole else None
        elif start + length <= len(data) or whole:
            f.data = data
            f.pixel = memoryview(data)[start : start + length]
        else:
            f.pixel_offset, f.pixel_nbytes = start, max(0, min(length, size - start))
    h = f.h = _header(ds, little)
    if not has_pixels:
        sop = h["SOPClassUID"] or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
        if not dicm:
            return "skip", "not DICOM"
        if h["Rows"] is not None or (sop is not None and "Image Storage" in UID(str(sop)).name):
            return "bad", (
                f"{name} is a DICOM image header without (7FE0,0010) Pixel Data: the file is truncated. "
                "Copy it again from the source, or pass on_error='skip' to leave it out."
            )
        if sop is None:
            return "bad", (
                f"{name} starts like a DICOM file (DICM at byte 128) but holds no recognisable data set "
                "(no (0008,0016) SOP Class UID); the file is truncated or corrupt. Copy it again, or pass "
                "on_error='skip' to leave it out."
            )
        return "skip", "DICOM without pixel data"
    if not dicm and h["SOPClassUID"] is None:
        return "skip", "not DICOM"
    f.frames = max(int(h["NumberOfFrames"] or 1), 1)
    return "dicom", f


def _collect(source, on_error: str):
    root, items = _sources(source)
    files: list[_File] = []
    skipped: list[str] = []
    bad: list[str] = []
    workers = min(MAX_WORKERS, os.cpu_count() or 1)

    def parsed():
        # Threads read the bytes (I/O releases the GIL); parsing stays in this thread.
        if len(items) > 8 and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                yield from zip(items, pool.map(lambda it: _read(*it), items))
        else:
            for it in items:
                yield it, _read(*it)

    for (name, reader), (data, size, err) in parsed():
        if err:
            bad.append(err)
            continue
        kind, value = _parse(name, data, size, reader)
        if kind == "dicom":
            files.append(value)
        elif kind == "skip":
            skipped.append(name)
        else:
            bad.append(value)
    if bad and on_error == "raise":
        raise DicomSeriesError(bad[0] + (f" ({len(bad) - 1} more such files)" if len(bad) > 1 else ""))
    return root, items, files, skipped, bad


# ----------------------------------------------------------------- header reading
def _floats(value, n: int | None = None):
    if value is None:
        return None
    try:
        out = [float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value])]
    except (TypeError, ValueError):
        return None
    if n is not None and len(out) != n:
        return None
    return out


def _first(seq_owner, seq_kw: str, kw: str):
    seq = seq_owner.get(seq_kw) if seq_owner is not None else None
    if seq:
        return seq[0].get(kw)
    return None


def _frames_of(f: _File) -> list[_Frame]:
    h = f.h
    rows, cols = int(h["Rows"] or 0), int(h["Columns"] or 0)
    sop = h["SOPInstanceUID"] or ""
    image_type = [v.upper() for v in (h["ImageType"] or [])]
    localizer = "LOCALIZER" in image_type
    ds = f.ds
    if f.frames > 1 or h["SOPClassUID"] == _ENHANCED_CT:
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        per = ds.get("PerFrameFunctionalGroupsSequence") or []
        out = []
        for i in range(f.frames):
            item = per[i] if i < len(per) else None

            def get(seq_kw, kw, default=None):
                for owner in (item, shared):
                    v = _first(owner, seq_kw, kw)
                    if v is not None:
                        return v
                return default

            ipp = _floats(get("PlanePositionSequence", "ImagePositionPatient", h["ImagePositionPatient"]), 3)
            iop = _floats(get("PlaneOrientationSequence", "ImageOrientationPatient", h["ImageOrientationPatient"]), 6)
            ps = _floats(get("PixelMeasuresSequence", "PixelSpacing", h["PixelSpacing"]), 2)
            slope = get("PixelValueTransformationSequence", "RescaleSlope", h["RescaleSlope"])
            inter = get("PixelValueTransformationSequence", "RescaleIntercept", h["RescaleIntercept"])
            ftype = [str(v).upper() for v in (get("CTImageFrameTypeSequence", "FrameType") or [])]
            out.append(
                _Frame(
                    f, i, sop,
                    None if ipp is None else np.array(ipp),
                    None if iop is None else np.array(iop),
                    None if ps is None else tuple(ps),
                    float(slope if slope is not None else 1.0),
                    float(inter if inter is not None else 0.0),
                    rows, cols, localizer or "LOCALIZER" in ftype,
                    has_rescale=inter is not None,
                )
            )
        return out
    ipp = _floats(h["ImagePositionPatient"], 3)
    iop = _floats(h["ImageOrientationPatient"], 6)
    ps = _floats(h["PixelSpacing"], 2)
    slope, inter = h["RescaleSlope"], h["RescaleIntercept"]
    return [
        _Frame(
            f, 0, sop,
            None if ipp is None else np.array(ipp),
            None if iop is None else np.array(iop),
            None if ps is None else tuple(ps),
            float(slope if slope is not None else 1.0),
            float(inter if inter is not None else 0.0),
            rows, cols, localizer, has_rescale=inter is not None,
        )
    ]


def _series_key(f: _File) -> str:
    return f.h["SeriesInstanceUID"] or "(no Series Instance UID)"


def _group(files: Sequence[_File]) -> dict[str, list[_File]]:
    groups: dict[str, list[_File]] = {}
    for f in files:
        groups.setdefault(_series_key(f), []).append(f)
    return groups


def _info(uid: str, files: list[_File]) -> SeriesInfo:
    ds = files[0].ds
    try:
        number = int(ds.get("SeriesNumber")) if ds.get("SeriesNumber") is not None else None
    except (TypeError, ValueError):
        number = None
    kernel = ds.get("ConvolutionKernel") or ""
    if isinstance(kernel, pydicom.multival.MultiValue):
        kernel = "\\".join(map(str, kernel))
    return SeriesInfo(
        series_uid=uid,
        series_number=number,
        modality=files[0].h["Modality"] or "",
        description=str(ds.get("SeriesDescription", "")),
        slices=sum(f.frames for f in files),
        rows=files[0].h["Rows"],
        columns=files[0].h["Columns"],
        kernel=str(kernel),
        files=len(files),
    )


def _table(groups: dict[str, list[_File]]) -> SeriesTable:
    infos = [_info(uid, fs) for uid, fs in groups.items()]
    infos.sort(key=lambda s: (-s.slices, s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return SeriesTable(infos)


def _describe(s: SeriesInfo) -> str:
    return f"{s.series_uid} ({s.description!r}, {s.modality}, {s.slices} slices)"


# ----------------------------------------------------------------- pixel decoding
def _decoder_hint(ts: UID) -> str:
    for prefix, pkg in _DECODERS:
        if str(ts).startswith(prefix):
            return pkg
    return "a pydicom pixel-data plugin for this transfer syntax"


def _stored(f: _File, *, check_only: bool = False) -> np.ndarray | None:
    """Stored values of every frame of ``f``, shape (frames, rows, cols); raises DicomSeriesError.

    With ``check_only`` an uncompressed file is only checked (sizes against the
    bytes really present) and None is returned; :func:`_read_into` reads it later.
    """
    h = f.h
    rows, cols = int(h["Rows"] or 0), int(h["Columns"] or 0)
    bits = int(h["BitsAllocated"] or 0)
    stored_bits = int(h["BitsStored"] or bits)
    signed = (h["PixelRepresentation"] or 0) == 1
    samples = int(h["SamplesPerPixel"] or 1)
    if samples != 1:
        raise DicomSeriesError(
            f"{f.name}: (0028,0002) Samples per Pixel is {samples}; a CT slice has 1 (grey values). "
            "This is a colour image (a screenshot or secondary capture?); remove it from the source."
        )
    if rows <= 0 or cols <= 0 or bits not in (8, 16, 32):
        raise DicomSeriesError(
            f"{f.name}: expected (0028,0010) Rows and (0028,0011) Columns above 0 and (0028,0100) Bits "
            f"Allocated of 8, 16 or 32; found {rows}, {cols} and {bits}. The header is damaged."
        )
    n = rows * cols * f.frames
    if f.ts in _NATIVE:
        nbytes = len(f.pixel) if f.pixel is not None else f.pixel_nbytes
        expected = n * bits // 8
        if nbytes not in (expected, expected + 1):
            raise DicomSeriesError(
                f"{f.name}: (7FE0,0010) Pixel Data holds {nbytes} bytes but (0028,0010) Rows {rows} x "
                f"(0028,0011) Columns {cols} x (0028,0100) Bits Allocated {bits}/8"
                + (f" x (0028,0008) Number of Frames {f.frames}" if f.frames > 1 else "")
                + f" = {expected} bytes were expected. The file is truncated or its header is wrong; "
                "copy it again, or pass on_error='skip' to leave it out."
            )
        if check_only:
            return None
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder(">" if f.ts == ExplicitVRBigEndian else "<")
        if f.pixel is not None:
            arr = np.frombuffer(f.pixel, dtype, count=n)
        else:
            try:
                arr = np.fromfile(f.reader.path, dtype, count=n, offset=f.pixel_offset)
            except OSError as exc:
                raise DicomSeriesError(f"{f.name}: cannot read the pixel data: {exc.strerror or exc}") from None
            if arr.size != n:
                raise DicomSeriesError(f"{f.name}: the file became shorter while it was being read; load again.")
        arr = arr.reshape(f.frames, rows, cols)
    else:
        declared = n * bits // 8
        if declared > MAX_PLAUSIBLE_BYTES and declared > MAX_COMPRESSION_RATIO * f.size:
            raise DicomSeriesError(
                f"{f.name}: the header declares {declared / 1e6:.0f} MB of pixels ((0028,0010) Rows {rows} x "
                f"(0028,0011) Columns {cols} x (0028,0100) Bits Allocated {bits}/8 x {f.frames} frame(s)) but "
                f"the whole file holds {f.size / 1e6:.2f} MB of compressed data; the header is wrong. "
                "Nothing was allocated. Remove or repair the file, or pass on_error='skip'."
            )
        try:
            if "PixelData" in f.ds:
                ds = f.ds
            else:
                data = f.data if f.data is not None else f.reader.read()[0]
                ds = pydicom.dcmread(BytesIO(data), force=True)
            arr = _decode(ds, f.ts)
        except Exception as exc:  # missing plugin or corrupt stream
            text = str(exc)
            missing = isinstance(exc, (NotImplementedError, ImportError)) or any(
                w in text for w in ("required", "plugin", "missing dependencies", "not supported")
            )
            if missing:
                raise DicomSeriesError(
                    f"{f.name}: cannot decode pixel data compressed with (0002,0010) Transfer Syntax UID "
                    f"{_ts_text(f.ts)}: no installed decoder handles it; it needs {_decoder_hint(f.ts)}. "
                    "Install that into this environment (pip install ...), or convert the files to "
                    "uncompressed DICOM (e.g. gdcmconv --raw in.dcm out.dcm)."
                ) from None
            raise DicomSeriesError(
                f"{f.name}: the compressed pixel data ((0002,0010) Transfer Syntax UID {_ts_text(f.ts)}) "
                f"could not be decoded ({type(exc).__name__}: {text.splitlines()[0] if text else ''}). "
                "The file is probably truncated or corrupt; copy it again, or pass on_error='skip'."
            ) from None
        arr = np.asarray(arr)
        if arr.size != n:
            raise DicomSeriesError(
                f"{f.name}: the decoded pixel data has {arr.size} values but (0028,0010) Rows {rows} x "
                f"(0028,0011) Columns {cols} x {f.frames} frame(s) = {n} were expected; the header is wrong."
            )
        arr = arr.reshape(f.frames, rows, cols)
        return arr
    return _keep_stored_bits(f, arr)


def _decode(ds, ts: UID) -> np.ndarray:
    """Pixels of a compressed file as pydicom types them, decoded by imagecodecs where it can.

    imagecodecs releases the GIL, so the loader's threads decode files in parallel: on 2
    cores JPEG 2000 and JPEG-LS decode twice as fast as with pydicom's plugins (which hold
    it), and JPEG Lossless 6 times as fast as pylibjpeg-libjpeg.  Anything the fast path
    does not handle (colour, other syntaxes, a stream it rejects, imagecodecs missing)
    goes to pydicom, with pyjpegls first for JPEG-LS.
    """
    if ts in IMAGECODECS_SYNTAXES:
        try:
            arr = _decode_imagecodecs(ds, ts)
            if arr is not None:
                return arr
        except Exception:  # imagecodecs missing, or a stream it rejects: let pydicom choose
            pass
    if ts in JPEGLSTransferSyntaxes:
        try:
            return pixel_array(ds, decoding_plugin=PREFERRED_JPEGLS_PLUGIN)
        except Exception:  # plugin missing or failing: let pydicom choose
            pass
    return ds.pixel_array


def _decode_imagecodecs(ds, ts: UID) -> np.ndarray | None:
    """Grey-scale frames decoded by imagecodecs, typed as pydicom types them.

    Returns None when the file is not one this fast path handles (colour, not 8/16 bits
    allocated, a frame of another size or sign than the header says).
    """
    bits = int(ds.get("BitsAllocated", 16))
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or bits not in (8, 16):
        return None
    import imagecodecs
    from pydicom.encaps import generate_frames

    decode = getattr(imagecodecs, IMAGECODECS_SYNTAXES[ts])
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns))
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    unsigned = np.dtype(np.uint16 if bits == 16 else np.uint8)
    frames = []
    for data in generate_frames(ds.PixelData, number_of_frames=n):
        f = decode(data)
        if f.shape != shape or f.dtype.itemsize > unsigned.itemsize or (f.dtype.kind == "i" and not signed):
            return None
        frames.append(f.astype(unsigned, copy=False))  # signed codestreams wrap to their stored bits
    if len(frames) != n:
        return None
    arr = np.stack(frames) if n > 1 else frames[0]
    if signed:
        arr = arr.view(np.int16 if bits == 16 else np.int8)  # sign-extended later from Bits Stored
    return arr


def _keep_stored_bits(f: _File, arr: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Clear the bits above (0028,0101) Bits Stored (overlays, garbage) and sign-extend signed values."""
    h = f.h
    bits = int(h["BitsAllocated"] or 16)
    stored_bits = int(h["BitsStored"] or bits)
    if stored_bits >= bits:
        return arr
    signed = (h["PixelRepresentation"] or 0) == 1
    lo, hi = (-(1 << (stored_bits - 1)), (1 << (stored_bits - 1)) - 1) if signed else (0, (1 << stored_bits) - 1)
    if (signed and arr.min() < lo) or arr.max() > hi:
        shift = arr.dtype.type(bits - stored_bits)
        if not inplace:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if signed:
            arr <<= shift
            arr >>= shift
        else:
            arr &= arr.dtype.type(hi)
    return arr


def _direct(f: _File) -> bool:
    """True when the file's pixels can be read straight into the output (one 16-bit little-endian frame)."""
    h = f.h
    return (
        f.ts in _NATIVE and f.ts != ExplicitVRBigEndian and f.frames == 1
        and h["BitsAllocated"] == 16 and (h["SamplesPerPixel"] or 1) == 1
    )


def _read_into(f: _File, out: np.ndarray) -> None:
    """Copy the (checked) uncompressed pixels of ``f`` into ``out`` (C-contiguous, right size)."""
    if f.pixel is not None:
        out[...] = np.frombuffer(f.pixel, out.dtype, count=out.size).reshape(out.shape)
        return
    try:
        with open(f.reader.path, "rb") as fh:
            fh.seek(f.pixel_offset)
            got = fh.readinto(memoryview(out).cast("B"))
    except OSError as exc:
        raise DicomSeriesError(f"{f.name}: cannot read the pixel data: {exc.strerror or exc}") from None
    if got != out.nbytes:
        raise DicomSeriesError(f"{f.name}: the file became shorter while it was being read; load again.")


# ----------------------------------------------------------------- main entry points
def list_series(source) -> SeriesTable:
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
    Unreadable files are left out here (no error): :func:`load_series` reports them.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as empty:
    ...     list_series(empty)
    SeriesTable(no series)
    """
    _, _, files, _, _ = _collect(source, on_error="skip")
    return _table(_group(files))


def load_series(
    source,
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
        (unless ``on_error="skip"``); slices of different size, pixel spacing or
        orientation; two slices at the same position.

    Warns
    -----
    SeriesWarning
        Other series left out; localizers or duplicates dropped; gaps; tilted
        stack; uneven spacing; skipped files.  The texts are also kept in
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
    ``GAP_FACTOR``, ``TILT_TOLERANCE_DEG``, ``ORIENTATION_TOLERANCE``,
    ``PIXEL_SPACING_TOLERANCE_MM``, ``SAME_POSITION_MM``.

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
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    if dtype not in (None, "float32", "int16", np.float32, np.int16):
        raise ValueError(f"dtype must be None, 'float32' or 'int16'; got {dtype!r}")
    notes: list[str] = []

    def warn(text: str) -> None:
        notes.append(text)
        warnings.warn(text, SeriesWarning, stacklevel=3)

    root, items, files, skipped, bad = _collect(source, on_error)
    for b in bad:
        warn(f"skipped a file that cannot be read (on_error='skip'): {b}")
    if not files:
        looked = ", ".join(Path(n).name for n in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        raise DicomSeriesError(
            f"no DICOM image files found in {root} "
            + ("(it is empty)" if not items else f"({len(items)} files looked at, none is a DICOM image: {looked})")
            + ". Point load_series at the folder that holds the .dcm files (they may have no extension)."
        )

    # ------------------------------------------------------------ choose the series
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
        chosen = candidates[0]
        others = [s for s in table if s is not chosen]
        if others:
            warn(
                f"{root} holds {len(table)} series; loaded the largest {'' if allow_non_ct else 'CT '}series {_describe(chosen)} and left out "
                + "; ".join(_describe(s) for s in others)
                + ". Pass series_uid='...' to load another."
            )
    if chosen.modality != "CT" and not allow_non_ct:
        raise DicomSeriesError(
            f"series {_describe(chosen)} has (0008,0060) Modality {chosen.modality!r}, expected 'CT'. "
            "Hounsfield units only exist for CT; pass allow_non_ct=True to load it anyway."
        )
    sfiles = groups[chosen.series_uid]

    # ------------------------------------------------------------ frames, localizers, duplicates
    frames: list[_Frame] = []
    for f in sfiles:
        frames.extend(_frames_of(f))
    kept, seen = [], {}
    for fr in frames:
        key = (fr.sop_uid, fr.index)
        if fr.sop_uid and key in seen:
            warn(
                f"dropped {fr.file.name}: exact duplicate of {seen[key].file.name} (same (0008,0018) "
                f"SOP Instance UID {fr.sop_uid})."
            )
            continue
        seen[key] = fr
        kept.append(fr)
    frames = kept
    locs = [fr for fr in frames if fr.localizer]
    if locs and len(locs) < len(frames):
        for fr in locs:
            warn(f"dropped localizer (scout) image {fr.file.name}: (0008,0008) Image Type contains LOCALIZER.")
        frames = [fr for fr in frames if not fr.localizer]
    for fr in frames:
        for kw, val in (("ImagePositionPatient", fr.ipp), ("ImageOrientationPatient", fr.iop), ("PixelSpacing", fr.pixel_spacing)):
            if val is None:
                raise DicomSeriesError(
                    f"{fr.file.name}: {_tag_text(kw)} is missing or malformed; a CT slice needs it to be placed "
                    "in the volume. The file may be a derived or anonymised-too-far image; remove it."
                )
    # orientation: the largest group is the stack; a few odd ones are localizers
    ogroups: list[list[_Frame]] = []
    for fr in frames:
        for g in ogroups:
            if np.max(np.abs(g[0].iop - fr.iop)) <= ORIENTATION_TOLERANCE:
                g.append(fr)
                break
        else:
            ogroups.append([fr])
    if len(ogroups) > 1:
        ogroups.sort(key=len, reverse=True)
        odd = [fr for g in ogroups[1:] for fr in g]
        if len(odd) > MAX_ODD_ORIENTATION_IMAGES or len(ogroups[0]) == len(ogroups[1]):
            raise DicomSeriesError(
                f"series {chosen.series_uid} mixes orientations: "
                + "; ".join(f"{len(g)} images with {_tag_text('ImageOrientationPatient')} "
                            f"{np.round(g[0].iop, 4).tolist()} (e.g. {g[0].file.name})" for g in ogroups)
                + ". Expected one orientation for the whole stack; pass a list of paths with one orientation."
            )
        for fr in odd:
            warn(
                f"dropped {fr.file.name} as a localizer: its {_tag_text('ImageOrientationPatient')} "
                f"{np.round(fr.iop, 4).tolist()} differs from the stack's {np.round(ogroups[0][0].iop, 4).tolist()}."
            )
        frames = ogroups[0]

    # ------------------------------------------------------------ geometry checks (headers only)
    def check_same(values, what: str, close) -> None:
        ref = values[0][1]
        odd = [(fr, v) for fr, v in values if not close(v, ref)]
        if odd:
            fr, v = odd[0]
            raise DicomSeriesError(
                f"expected every slice of series {chosen.series_uid} to have the same {what}; "
                f"{values[0][0].file.name} has {ref} but {fr.file.name} has {v}"
                + (f" ({len(odd)} slices differ)" if len(odd) > 1 else "")
                + ". Remove the odd files or pass a list of paths with matching slices."
            )

    check_same([(fr, (fr.rows, fr.cols)) for fr in frames], "(0028,0010) Rows x (0028,0011) Columns", lambda a, b: a == b)
    check_same(
        [(fr, fr.pixel_spacing) for fr in frames], "(0028,0030) Pixel Spacing",
        lambda a, b: max(abs(x - y) for x, y in zip(a, b)) <= PIXEL_SPACING_TOLERANCE_MM,
    )

    # ------------------------------------------------------------ check pixel data (decode compressed files)
    by_file: dict[int, list[_Frame]] = {}
    for fr in frames:
        by_file.setdefault(id(fr.file), []).append(fr)
    ffiles = [frs[0].file for frs in by_file.values()]

    # Single-frame 16-bit little-endian files (nearly all CT) are only checked here and
    # read later straight into the output array, in slice order.
    direct = all(_direct(f) for f in ffiles) and len({f.h["PixelRepresentation"] or 0 for f in ffiles}) == 1

    def decode(f: _File):
        try:
            return _stored(f, check_only=direct)
        except DicomSeriesError as exc:
            return exc

    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if not direct and len(ffiles) > 8 and workers > 1:  # file reads and decoders release the GIL
        with ThreadPoolExecutor(workers) as pool:
            decoded = list(pool.map(decode, ffiles))
    else:
        decoded = [decode(f) for f in ffiles]
    good: list[_Frame] = []
    for f, arr in zip(ffiles, decoded):
        if isinstance(arr, DicomSeriesError):
            if on_error == "raise":
                raise arr
            warn(f"left out a slice (on_error='skip'): {arr}")
            continue
        for fr in by_file[id(f)]:
            fr.stored = None if arr is None else arr[fr.index]
            good.append(fr)
    frames = good
    if not frames:
        raise DicomSeriesError(f"no readable slice left in series {chosen.series_uid} of {root}.")

    # ------------------------------------------------------------ order, spacing, gaps, tilt
    row_cos, col_cos = frames[0].iop[:3], frames[0].iop[3:]
    normal = np.cross(row_cos, col_cos)
    normal /= np.linalg.norm(normal)
    pos = np.array([fr.ipp for fr in frames])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    frames = [frames[i] for i in order]
    pos, along = pos[order], along[order]
    steps = np.diff(along)
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
    if steps.size:
        dz = float(np.median(steps))
        for k in np.nonzero(steps > GAP_FACTOR * dz)[0]:
            warn(
                f"gap in series {chosen.series_uid}: {steps[k]:.2f} mm between slice {k} (at {along[k]:.2f} mm, "
                f"{frames[k].file.name}) and slice {k + 1} (at {along[k + 1]:.2f} mm, {frames[k + 1].file.name}) "
                f"where {dz:.2f} mm is expected; about {round(steps[k] / dz) - 1} slice(s) missing. "
                "Volume.positions keeps the real positions; resample by position before measuring along z."
            )
        uneven = np.abs(steps - dz) > UNEVEN_SPACING_MM
        uneven &= steps <= GAP_FACTOR * dz
        if uneven.any():
            warn(
                f"uneven slice spacing in series {chosen.series_uid}: steps from {steps.min():.3f} to "
                f"{steps.max():.3f} mm (median {dz:.3f} mm used as spacing). Volume.positions keeps the "
                "real positions."
            )
        span = pos[-1] - pos[0]
        length = float(np.linalg.norm(span))
        if length > 0:
            angle = math.degrees(math.acos(min(1.0, abs(float(span @ normal)) / length)))
            if angle > TILT_TOLERANCE_DEG:
                warn(
                    f"series {chosen.series_uid} is tilted/sheared: the slices are stacked {angle:.1f} degrees "
                    "away from the slice normal (gantry tilt?). The volume's axes assume a straight stack, so "
                    "shapes are sheared by that angle; Volume.positions keeps the real positions."
                )
    else:
        thick = _floats(frames[0].file.ds.get("SliceThickness"), 1)
        dz = thick[0] if thick and thick[0] > 0 else 1.0
        warn(f"series {chosen.series_uid} has a single slice; slice spacing set to {dz} mm ((0018,0050) Slice Thickness).")

    # ------------------------------------------------------------ rescale into the output
    slopes = np.array([fr.slope for fr in frames])
    inters = np.array([fr.intercept for fr in frames])
    if not all(fr.has_rescale for fr in frames) and chosen.modality == "CT":
        miss = next(fr for fr in frames if not fr.has_rescale)
        warn(f"{miss.file.name} has no {_tag_text('RescaleIntercept')}; used slope 1 and intercept 0.")
    integer = bool(np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters)))
    rows, cols = frames[0].rows, frames[0].cols
    raw = None
    if direct:  # sizes were checked against the files above: now allocate and read in slice order
        signed = (frames[0].file.h["PixelRepresentation"] or 0) == 1
        raw = np.empty((len(frames), rows, cols), "<i2" if signed else "<u2")

        def fill(k: int) -> None:
            _read_into(frames[k].file, raw[k])
            _keep_stored_bits(frames[k].file, raw[k], inplace=True)

        if len(frames) > 8 and workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, range(len(frames))))
        else:
            for k in range(len(frames)):
                fill(k)
        for k, fr in enumerate(frames):
            fr.stored = raw[k]
    want_int = dtype in ("int16", np.int16) or (dtype is None and integer and float(padding_hu).is_integer())
    ranges = [_value_range(fr) for fr in frames]
    if want_int:
        ends = [e for (mn, mx), s_, b_ in zip(ranges, slopes, inters) for e in (mn * s_ + b_, mx * s_ + b_)]
        lo, hi = min(ends), max(ends)
        if lo < -32768 or hi > 32767:  # the declared range is too wide: look at the actual values
            ranges = [(int(fr.stored.min()), int(fr.stored.max())) for fr in frames]
            ends = [e for (mn, mx), s_, b_ in zip(ranges, slopes, inters) for e in (mn * s_ + b_, mx * s_ + b_)]
            lo, hi = min(ends), max(ends)
        if not integer or lo < -32768 or hi > 32767:
            if dtype is not None:
                raise DicomSeriesError(
                    f"dtype='int16' asked but the HU of series {chosen.series_uid} "
                    + ("are not integers (non-integer rescale slope/intercept)" if not integer else f"span {lo}..{hi}")
                    + "; use dtype=None or 'float32'."
                )
            want_int = False
    # int16 results computed in place in the stored-value array when every factor fits int16
    inplace = raw is not None and want_int and bool(
        np.all(np.abs(slopes) <= 32767) and np.all(np.abs(inters) <= 32767)
    )
    hu = raw.view(np.int16) if inplace else np.empty((len(frames), rows, cols), np.int16 if want_int else np.float32)
    mask = np.empty((rows, cols), bool)
    padded = 0
    for k, fr in enumerate(frames):
        s, b, st, out = slopes[k], inters[k], fr.stored, hu[k]
        have = _padding_before(fr, st, ranges[k], s, b, mask)  # needs the stored values: before the rescale
        if inplace:
            # Every result fits int16 (checked above), so int16 arithmetic that wraps is exact.
            if s != 1:
                np.multiply(out, np.int16(s), out=out)
            if b:
                np.add(out, np.int16(b), out=out)
        elif want_int:
            if s == 1:
                np.add(st, np.int16(b), out=out, dtype=np.int16, casting="unsafe")
            else:
                np.multiply(st, np.int16(s), out=out, dtype=np.int16, casting="unsafe")
                out += np.int16(b)
        else:
            if s == 1:
                np.add(st, np.float32(b), out=out, dtype=np.float32, casting="unsafe")
            else:
                np.multiply(st, np.float32(s), out=out, dtype=np.float32, casting="unsafe")
                out += np.float32(b)
        if _padding_after(fr, out, ranges[k], s, b, mask, have):
            n = int(np.count_nonzero(mask))
            if n:
                np.copyto(out, padding_hu, where=mask, casting="unsafe")
                padded += n
        fr.stored = None
    del raw

    # ------------------------------------------------------------ volume
    ds0 = frames[0].file.ds
    ps = frames[0].pixel_spacing
    direction = np.column_stack([normal, col_cos, row_cos])
    meta = _meta(ds0, chosen, root, frames, skipped, notes, padded, padding_hu)
    return Volume(hu, spacing=(dz, ps[0], ps[1]), origin=tuple(pos[0]), direction=direction, positions=pos, meta=meta)


def _value_range(fr: _Frame) -> tuple[int, int]:
    """Smallest and largest stored value the slice can hold (declared for native data, actual otherwise)."""
    h = fr.file.h
    if fr.file.ts in _NATIVE:
        bits = int(h["BitsStored"] or h["BitsAllocated"] or 16)
        if (h["PixelRepresentation"] or 0) == 1:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1
    return int(fr.stored.min()), int(fr.stored.max())


def _padding_before(fr: _Frame, stored, value_range, slope, intercept, out) -> bool:
    """Padding found from stored values, into ``out``; False when there is none to look for.

    (0028,0120) Pixel Padding Value (up to (0028,0121) Pixel Padding Range Limit)
    when present; else, on signed data, stored values at or below
    :data:`PADDING_STORED_AT_OR_BELOW` that the HU rule would not catch.
    """
    h = fr.file.h
    ppv = h["PixelPaddingValue"]
    signed = (h["PixelRepresentation"] or 0) == 1
    if ppv is not None:
        bits = int(h["BitsAllocated"] or 16)

        def as_signed(v):
            v = int(v)
            return v - (1 << bits) if signed and v >= 1 << (bits - 1) else v

        ppv = as_signed(ppv)
        limit = h["PixelPaddingRangeLimit"]
        if limit is None:
            np.equal(stored, ppv, out=out)
        else:
            lo, hi = sorted((ppv, as_signed(limit)))
            np.greater_equal(stored, lo, out=out)
            out &= stored <= hi
        return True
    stored_rule = signed and value_range[0] <= PADDING_STORED_AT_OR_BELOW and (
        PADDING_STORED_AT_OR_BELOW * slope + intercept >= PADDING_BELOW_HU  # not already caught in HU
    )
    if stored_rule:
        np.less_equal(stored, PADDING_STORED_AT_OR_BELOW, out=out)
    return bool(stored_rule)


def _padding_after(fr: _Frame, hu, value_range, slope, intercept, out, have: bool) -> bool:
    """Add the HU rule (below :data:`PADDING_BELOW_HU`, when no padding tag) to ``out``."""
    if fr.file.h["PixelPaddingValue"] is not None:
        return have
    lo_st, hi_st = value_range
    if min(lo_st * slope + intercept, hi_st * slope + intercept) >= PADDING_BELOW_HU:
        return have  # no value of this slice can be that low
    if have:
        out |= hu < PADDING_BELOW_HU
    else:
        np.less(hu, PADDING_BELOW_HU, out=out)
    return True


def _meta(ds, chosen: SeriesInfo, root, frames, skipped, notes, padded, padding_hu) -> dict:
    centers = _floats(ds.get("WindowCenter"))
    widths = _floats(ds.get("WindowWidth"))
    names = ds.get("WindowCenterWidthExplanation")
    if isinstance(names, str):
        names = [names]
    windows = []
    if centers and widths:
        for i, (c, w) in enumerate(zip(centers, widths)):
            windows.append({"name": str(names[i]) if names and i < len(names) else f"window {i + 1}", "center": c, "width": w})
    thick = _floats(ds.get("SliceThickness"), 1)
    files = [fr.file.name for fr in frames]
    return {
        "modality": chosen.modality,
        "series_description": chosen.description,
        "series_uid": chosen.series_uid,
        "series_number": chosen.series_number,
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "manufacturer": str(ds.get("Manufacturer", "")) or None,
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
        "patient_name": str(ds.get("PatientName", "")),
        "patient_id": str(ds.get("PatientID", "")),
    }
