"""Byte-level fast paths of the loader, kept apart from its DICOM logic (:mod:`helpers.io`).

Each speed-up sits behind one function with a plain fallback, so :mod:`helpers.io` reads as
DICOM rules and this module as "how to do it quickly":

* :func:`header_values`: header values read straight from the raw element bytes (pydicom's
  generic value conversion is the slowest part of reading a big series); pydicom otherwise.
* :func:`decode`: compressed frames decoded by imagecodecs, which releases the GIL so the
  loader's threads decode in parallel (JPEG Lossless 6x, JPEG 2000 and JPEG-LS 2x faster
  than pydicom's plugins on 2 cores); pyjpegls for JPEG-LS next; pydicom otherwise.
* :func:`read_into`: uncompressed pixels read from the file straight into the output array.
* :func:`rescale_into`: stored values to HU into the output, in place in int16 when exact.

Two small byte-level helpers come with them: :func:`keep_stored_bits` and
:func:`codestream_shape` (the image size a JPEG / JPEG-LS / JPEG 2000 codestream declares,
read from its first bytes, so a lying DICOM header is caught before anything is allocated).
"""

from __future__ import annotations

import struct
from typing import Any, Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement

__all__ = [
    "codestream_shape",
    "decode",
    "header_values",
    "inflated_size",
    "keep_stored_bits",
    "read_into",
    "rescale_into",
]

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
#: pydicom decoding plugin tried first for JPEG-LS.
PREFERRED_JPEGLS_PLUGIN = "pyjpegls"
_JPEGLS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}


# ----------------------------------------------------------------- header values
def header_values(ds: pydicom.Dataset, fields: dict[str, tuple[int, str]], *, little: bool) -> dict[str, Any]:
    """The values of ``fields`` (keyword -> (tag, kind)) in ``ds``; None when absent or unreadable.

    ``kind`` is ``"str"``, ``"strs"`` (a list), ``"floats"`` (a list), ``"float"``, ``"int"``
    (an IS value) or ``"us"`` (an unsigned short).
    """
    raw_dict: Any = ds._dict  # keyed by BaseTag, an int: plain int tags find the same entries
    out: dict[str, Any] = {}
    for keyword, (tag, kind) in fields.items():
        elem = raw_dict.get(tag)
        if elem is None:
            out[keyword] = None
        elif isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            try:
                out[keyword] = _from_bytes(elem.value, kind, little)
            except (ValueError, struct.error):  # not what the tag should hold: ask pydicom
                out[keyword] = _from_pydicom(ds, tag, kind)
        else:
            out[keyword] = _from_pydicom(ds, tag, kind)
    return out


def _from_bytes(value: bytes, kind: str, little: bool) -> Any:
    if kind == "us":
        return struct.unpack("<H" if little else ">H", value[:2])[0] if len(value) >= 2 else None
    text = value.decode("latin-1").strip(" \x00")
    if not text:
        return None
    if kind == "str":
        return text
    if kind == "strs":
        return [t.strip() for t in text.split("\\")]
    if kind == "floats":
        return [float(t) for t in text.split("\\")]
    if kind == "float":
        return float(text)
    return int(text)


def _from_pydicom(ds: pydicom.Dataset, tag: int, kind: str) -> Any:
    try:
        value = ds[tag].value
    except Exception:  # a value pydicom cannot convert either: treated as absent
        return None
    if value is None or value == "":
        return None
    many = isinstance(value, (list, tuple, pydicom.multival.MultiValue))
    try:
        if kind == "str":
            return str(value)
        if kind == "strs":
            return [str(v) for v in value] if many else [str(value)]
        if kind in ("floats", "float"):
            values = [float(v) for v in (value if many else [value])]
            return values if kind == "floats" else (values[0] if values else None)
        return int(value[0] if many else value)
    except (TypeError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------- compressed pixels
def decode(ds: pydicom.Dataset, ts: str, frames: Sequence[bytes] | None = None) -> np.ndarray:
    """Pixels of a compressed data set as pydicom types them, by the fastest decoder that works.

    ``frames`` are the data set's encoded frames when the caller has split them already.
    Anything the imagecodecs path does not handle (colour, other syntaxes, a stream it
    rejects, imagecodecs missing) goes to pydicom, with pyjpegls first for JPEG-LS.
    """
    if ts in IMAGECODECS_SYNTAXES:
        try:
            arr = decode_imagecodecs(ds, ts, frames)
            if arr is not None:
                return arr
        except Exception:  # imagecodecs missing, or a stream it rejects: let pydicom choose
            pass
    if ts in _JPEGLS:
        try:
            return pydicom.pixels.pixel_array(ds, decoding_plugin=PREFERRED_JPEGLS_PLUGIN)
        except Exception:  # plugin missing or failing: let pydicom choose
            pass
    return ds.pixel_array


def decode_imagecodecs(ds: pydicom.Dataset, ts: str, frames: Sequence[bytes] | None = None) -> np.ndarray | None:
    """Grey-scale frames decoded by imagecodecs, typed as pydicom types them.

    Returns None when the file is not one this fast path handles (colour, not 8/16 bits
    allocated, a frame of another size or sign than the header says).
    """
    bits = int(ds.get("BitsAllocated", 16))
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or bits not in (8, 16):
        return None
    import imagecodecs
    from pydicom.encaps import generate_frames

    decoder = getattr(imagecodecs, IMAGECODECS_SYNTAXES[ts])
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns))
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    unsigned = np.dtype(np.uint16 if bits == 16 else np.uint8)
    chunks: Iterable[bytes] = frames if frames is not None else generate_frames(ds.PixelData, number_of_frames=n)
    out = []
    for data in chunks:
        frame = decoder(data)
        if frame.shape != shape or frame.dtype.itemsize > unsigned.itemsize or (frame.dtype.kind == "i" and not signed):
            return None
        out.append(frame.astype(unsigned, copy=False))  # signed codestreams wrap to their stored bits
    if len(out) != n:
        return None
    arr = np.stack(out) if n > 1 else out[0]
    if signed:
        arr = arr.view(np.int16 if bits == 16 else np.int8)  # sign-extended later from Bits Stored
    return arr


def codestream_shape(frame: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` declared by a JPEG, JPEG-LS or JPEG 2000 / HTJ2K codestream, else None.

    Only the first markers are read: the JPEG start-of-frame segment (SOF0-SOF15, SOF55 for
    JPEG-LS) or the JPEG 2000 SIZ segment (also inside a JP2 file).

    Examples
    --------
    >>> sof = b"\\xff\\xd8\\xff\\xc3\\x00\\x0b\\x10\\x02\\x00\\x01\\x80\\x01\\x01\\x11\\x00"
    >>> codestream_shape(sof)
    (512, 384)
    >>> codestream_shape(b"not a codestream") is None
    True
    """
    head = bytes(frame[:65536])
    siz = 0 if head[:4] == b"\xff\x4f\xff\x51" else (head.find(b"\xff\x4f\xff\x51") if head[4:8] == b"jP  " else -1)
    if siz >= 0 and len(head) >= siz + 24:  # SOC + SIZ: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz
        x, y, x0, y0 = struct.unpack(">IIII", head[siz + 8 : siz + 24])
        return y - y0, x - x0
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            if pos + 9 > len(head):
                return None
            rows, cols = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return (rows, cols) if rows else None  # 0: the height comes later (DNL marker)
        pos += 2 + length
    return None


# ----------------------------------------------------------------- uncompressed pixels
def read_into(path: str, offset: int, out: np.ndarray) -> int:
    """Read ``out.nbytes`` bytes of ``path`` from ``offset`` straight into ``out``; bytes read.

    ``out`` must be C-contiguous.  Raises OSError like :func:`open`.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]  # numpy's stubs: no Buffer


def keep_stored_bits(arr: np.ndarray, *, bits_allocated: int, bits_stored: int, signed: bool,
                     inplace: bool = False) -> np.ndarray:
    """Clear the bits above (0028,0101) Bits Stored (overlays, garbage) and sign-extend signed values.

    Examples
    --------
    >>> keep_stored_bits(np.array([0xF123], np.uint16), bits_allocated=16, bits_stored=12, signed=False)
    array([291], dtype=uint16)
    """
    if bits_stored >= bits_allocated:
        return arr
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    if (signed and arr.min() < lo) or arr.max() > hi:
        shift = arr.dtype.type(bits_allocated - bits_stored)
        if not inplace:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if signed:
            arr <<= shift
            arr >>= shift
        else:
            arr &= arr.dtype.type(hi)
    return arr


def rescale_into(stored: np.ndarray, out: np.ndarray, slope: float, intercept: float, *, inplace: bool) -> None:
    """``out = stored * slope + intercept``, computed in ``out``'s type (int16 or float32).

    With ``inplace`` ``out`` is ``stored`` seen as int16: the caller has checked that every
    result fits int16, so int16 arithmetic that wraps is exact and no second array is needed.
    """
    if inplace:
        if slope != 1:
            np.multiply(out, np.int16(slope), out=out)
        if intercept:
            np.add(out, np.int16(intercept), out=out)
        return
    kind = np.int16 if out.dtype == np.int16 else np.float32
    if slope == 1:
        np.add(stored, kind(intercept), out=out, dtype=kind, casting="unsafe")
    else:
        np.multiply(stored, kind(slope), out=out, dtype=kind, casting="unsafe")
        out += kind(intercept)


def inflated_size(data: bytes, limit: int, *, chunk: int = 1 << 20) -> int:
    """How many bytes the raw deflate stream ``data`` inflates to, counted up to just past ``limit``.

    The stream is inflated ``chunk`` bytes at a time and nothing is kept, so a deflate bomb
    costs time in proportion to ``limit`` but no memory.

    Examples
    --------
    >>> import zlib
    >>> packer = zlib.compressobj(wbits=-15)
    >>> bomb = packer.compress(bytes(10_000_000)) + packer.flush()
    >>> len(bomb) < 20_000, inflated_size(bomb, 1_000_000) > 1_000_000
    (True, True)
    """
    import zlib

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, data
    while pending and total <= limit and not inflater.eof:
        total += len(inflater.decompress(pending, chunk))
        pending = inflater.unconsumed_tail
    return total
