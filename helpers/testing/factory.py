"""A factory of small DICOM CT series for the loader tests.

``clean_datasets()`` builds a clean axial CT series in memory (24 slices of
64x64, signed int16 stored values, Rescale Intercept -1024, known HU content);
``write()`` puts data sets on disk, and the other functions derive broken
variants from the clean one.  Everything is deterministic.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

N, ROWS, COLS = 24, 64, 64
SPACING = (2.5, 0.7, 0.7)  # (z, y, x) mm
ORIGIN = (-22.4, -22.4, -100.0)  # LPS of voxel [0, 0, 0] once sorted feet -> head
STUDY_UID = generate_uid(entropy_srcs=["factory study"])


def uid(*parts: object) -> UID:
    """A deterministic UID from some labels."""
    return generate_uid(entropy_srcs=[repr(p) for p in parts])


def expected_hu(n: int = N, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """Known HU content (int16, (z, y, x)): every slice differs, values -1000..99 HU."""
    k, j, i = np.ogrid[:n, :rows, :cols]
    return ((k * 53 + j * 7 + i * 3) % 1100 - 1000).astype(np.int16)


def clean_datasets(
    n: int = N,
    rows: int = ROWS,
    cols: int = COLS,
    *,
    hu: np.ndarray | None = None,
    spacing: Sequence[float] = SPACING,
    origin: Sequence[float] = ORIGIN,
    series: str = "clean",
    description: str = "clean 2.5mm",
    series_number: int = 2,
    modality: str = "CT",
    intercept: float = -1024.0,
    slope: float = 1.0,
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
) -> list[Dataset]:
    """One series (axial HFS by default), slice ``k`` at ``origin + k * spacing[0] * normal``.

    ``normal`` is the cross product of the row and column cosines of ``iop``.

    Instance Number runs head to feet (1 is the top slice), as many scanners do.
    """
    hu = expected_hu(n, rows, cols) if hu is None else hu
    series_uid = uid("series", series)
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    out = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = uid("sop", series, k)
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = modality
        ds.Manufacturer = "FACTORY"
        ds.SeriesDescription = description
        ds.PatientName = "Factory^Test"
        ds.PatientID = "F0001"
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = uid("for")
        ds.SeriesNumber = series_number
        ds.InstanceNumber = n - k
        ds.ConvolutionKernel = "B30f"
        ds.SliceThickness = spacing[0]
        ds.ImagePositionPatient = [round(float(o + k * spacing[0] * c), 4) for o, c in zip(origin, normal)]
        ds.ImageOrientationPatient = list(iop)
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
        stored = np.round((hu[k].astype(np.float64) - intercept) / slope).astype("<i2")
        ds.PixelData = stored.tobytes()
        out.append(ds)
    return out


def set_stored(ds: Dataset, stored: np.ndarray) -> Dataset:
    """Replace the pixel data of an uncompressed little-endian signed 16-bit slice."""
    ds.PixelData = np.asarray(stored).astype("<i2").tobytes()
    return ds


def stored_of(ds: Dataset) -> np.ndarray:
    return np.frombuffer(ds.PixelData, "<i2").reshape(ds.Rows, ds.Columns).copy()


#: Transfer syntaxes pydicom 3.0 cannot encode, encoded here with imagecodecs: JPEG Lossless
#: (Process 14 and SV1, libjpeg-turbo 3, predictor 1) and HTJ2K (OpenJPH, reversible).
IMAGECODECS_ENCODED = {
    "1.2.840.10008.1.2.4.57": "jpeg",
    "1.2.840.10008.1.2.4.70": "jpeg",
    "1.2.840.10008.1.2.4.201": "htj2k",
    "1.2.840.10008.1.2.4.202": "htj2k",
    "1.2.840.10008.1.2.4.203": "htj2k",
}


def compress_with_imagecodecs(ds: Dataset, syntax: str = "1.2.840.10008.1.2.4.70") -> Dataset:
    """Encode an uncompressed signed 16-bit slice with a syntax pydicom cannot encode (lossless).

    JPEG Lossless is the syntax most PACS exports use; HTJ2K the newest.  The 16-bit
    two's complement samples are encoded as they are stored (JPEG Lossless) or as signed
    values (HTJ2K); decoders type them back from Pixel Representation 1.
    """
    import imagecodecs
    from pydicom.encaps import encapsulate

    stored = stored_of(ds)
    if IMAGECODECS_ENCODED[syntax] == "jpeg":
        frame = imagecodecs.jpeg8_encode(stored.view(np.uint16), lossless=True, bitspersample=16, predictor=1)
    else:
        frame = imagecodecs.htj2k_encode(stored, reversible=True)
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    return ds


def write(
    datasets: Iterable[Dataset],
    folder: os.PathLike,
    *,
    names: Sequence[str] | None = None,
    big_endian: bool = False,
) -> list[Path]:
    """Write data sets as files (``slice_000.dcm``... unless ``names``), with preamble and file meta."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        p = folder / (names[i] if names else f"slice_{i:03d}.dcm")
        p.parent.mkdir(parents=True, exist_ok=True)
        if big_endian:
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            arr = np.frombuffer(ds.PixelData, "<i2")
            ds.PixelData = arr.astype(">i2").tobytes()
            ds.save_as(p, implicit_vr=False, little_endian=False, enforce_file_format=True)
        else:
            ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def localizer(like: Dataset) -> Dataset:
    """A coronal scout image in the same series (Image Type LOCALIZER, other orientation)."""
    ds = Dataset()
    ds.update(like)
    ds.file_meta = FileMetaDataset(like.file_meta)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("localizer", like.SOPInstanceUID)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-22.4, 0.0, 0.0]
    ds.InstanceNumber = 999
    return ds


def enhanced(datasets: Sequence[Dataset], *, per_frame_rescale: bool = True) -> Dataset:
    """One Enhanced CT (multi-frame) data set holding all slices of ``datasets``.

    Positions and (optionally) rescale go in the per-frame functional groups;
    pixel measures and orientation in the shared ones.  Frames are written in
    the order given.
    """
    first = datasets[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid("enhanced", first.SeriesInstanceUID)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for kw in ("Modality", "Manufacturer", "SeriesDescription", "PatientName", "PatientID", "StudyInstanceUID",
               "FrameOfReferenceUID", "SeriesNumber", "SamplesPerPixel", "PhotometricInterpretation",
               "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        setattr(ds, kw, getattr(first, kw))
    ds.SeriesInstanceUID = uid("enhanced series", first.SeriesInstanceUID)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(datasets)

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = first.PixelSpacing
    pm.SliceThickness = first.SliceThickness
    shared.PixelMeasuresSequence = DicomSequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = first.ImageOrientationPatient
    shared.PlaneOrientationSequence = DicomSequence([po])
    if not per_frame_rescale:
        pv = Dataset()
        pv.RescaleIntercept, pv.RescaleSlope, pv.RescaleType = first.RescaleIntercept, first.RescaleSlope, "HU"
        shared.PixelValueTransformationSequence = DicomSequence([pv])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per = []
    for src in datasets:
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = src.ImagePositionPatient
        item.PlanePositionSequence = DicomSequence([pp])
        if per_frame_rescale:
            pv = Dataset()
            pv.RescaleIntercept, pv.RescaleSlope, pv.RescaleType = src.RescaleIntercept, src.RescaleSlope, "HU"
            item.PixelValueTransformationSequence = DicomSequence([pv])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per)
    ds.PixelData = b"".join(src.PixelData for src in datasets)
    return ds


def tree_hash(folder: os.PathLike) -> str:
    """SHA-256 over every file name, size, mtime and content under ``folder``."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(os.fspath(folder)):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
            h.update(p.read_bytes())
        h.update(f"dirs:{dirs}".encode())
    return h.hexdigest()


def write_vr_mismatch(datasets: Iterable[Dataset], folder: os.PathLike) -> list[Path]:
    """Files whose meta header says Explicit VR Little Endian while the data set is Implicit VR.

    Some PACS exports write such files; pydicom and SimpleITK read them as they are
    really encoded.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        head = DicomBytesIO()
        head.is_little_endian, head.is_implicit_VR = True, False
        head.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(head, ds.file_meta, enforce_standard=True)
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, True
        write_dataset(body, ds)
        p = folder / f"slice_{i:03d}.dcm"
        p.write_bytes(head.getvalue() + body.getvalue())
        paths.append(p)
    return paths


def with_steps(datasets: Sequence[Dataset], steps: Sequence[float]) -> list[Dataset]:
    """Place the slices along the normal with these steps (mm) between neighbours (len(datasets) - 1 of them)."""
    z = ORIGIN[2] + np.concatenate([[0.0], np.cumsum(steps)])
    for ds, zk in zip(datasets, z):
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], round(float(zk), 4)]
    return list(datasets)


#: Header values a corrupted file may be given (text for string VRs, raw bytes otherwise).
HOSTILE_TEXT = [
    "", "0", "-1", "NaN", "nan\\nan\\nan", "inf", "-inf", "1e309", "1e-320", "0\\0", "0\\0\\0\\0\\0\\0",
    "1\\0\\0\\1\\0\\0", "99999999999", "-99999999999", "1\\2", "abc", "1\\2\\3\\4\\5\\6\\7", "\\\\\\", "3.5",
    "2147483648", "-2147483649", " ", "1.2.3", "LOCALIZER",
]
HOSTILE_US = [b"\x00\x00", b"\xff\xff", b"\x01\x00", b"\x08\x00", b"\x20\x00", b"\x00\x80", b"\x03\x00", b"\x00"]
#: Header tags of a CT slice worth corrupting (those the loader reads, and some it does not).
CORRUPTIBLE = [
    "SOPClassUID", "SOPInstanceUID", "ImageType", "Modality", "SeriesInstanceUID", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SamplesPerPixel", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope", "SliceThickness",
    "WindowCenter", "WindowWidth", "SeriesNumber", "ConvolutionKernel", "NumberOfFrames", "PixelPaddingValue",
]


def corrupted(ds: Dataset, rng: np.random.Generator) -> bytes:
    """The bytes of ``ds`` as a file with one to three header values, or a few header bytes, made hostile.

    Half the cases replace element values in the written bytes (hostile text for string
    VRs, hostile 2-byte values, odd lengths included, for US), adding (0028,0008) Number of
    Frames or (0028,0120) Pixel Padding Value first when they are picked; the other half
    overwrite one to four random bytes between the preamble and (7FE0,0010) Pixel Data.
    """
    import copy
    import io
    import struct

    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = copy.deepcopy(ds)
    picked = [CORRUPTIBLE[k] for k in rng.choice(len(CORRUPTIBLE), size=int(rng.integers(1, 4)), replace=False)]
    if "NumberOfFrames" in picked:
        ds.NumberOfFrames = 1
    if "PixelPaddingValue" in picked:
        ds.PixelPaddingValue = -2000
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    raw = bytearray(buf.getvalue())
    if rng.random() < 0.5:
        end = raw.rfind(b"\xe0\x7f\x10\x00")
        for _ in range(int(rng.integers(1, 5))):
            raw[int(rng.integers(132, end))] = int(rng.integers(256))
        return bytes(raw)
    parsed = pydicom.dcmread(io.BytesIO(bytes(raw)), stop_before_pixels=True)
    edits = []
    for kw in picked:
        elem = parsed._dict[Tag(kw)]  # a RawDataElement: where its value is in the file
        assert isinstance(elem, RawDataElement), kw  # read with defer_size=None, so never parsed
        if elem.VR in ("US", "SS"):
            new = HOSTILE_US[int(rng.integers(len(HOSTILE_US)))]
        else:
            new = HOSTILE_TEXT[int(rng.integers(len(HOSTILE_TEXT)))].encode("latin-1")
        edits.append((elem.value_tell, elem.length, new))
    for at, old_length, new in sorted(edits, reverse=True):  # explicit VR, short length field
        raw[at - 2 : at + old_length] = struct.pack("<H", len(new)) + new
    return bytes(raw)
