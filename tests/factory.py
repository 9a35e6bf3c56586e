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
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

N, ROWS, COLS = 24, 64, 64
SPACING = (2.5, 0.7, 0.7)  # (z, y, x) mm
ORIGIN = (-22.4, -22.4, -100.0)  # LPS of voxel [0, 0, 0] once sorted feet -> head
STUDY_UID = generate_uid(entropy_srcs=["factory study"])


def uid(*parts) -> str:
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
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
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
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
            h.update(p.read_bytes())
        h.update(f"dirs:{dirs}".encode())
    return h.hexdigest()
