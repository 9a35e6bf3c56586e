"""Saving masks with their geometry: ``.npy`` + JSON sidecar, NIfTI, DICOM SEG.

Every writer is atomic (a temporary file in the destination folder, then
``os.replace``), so a crash never leaves half a file behind, and none writes into
the folder the DICOM series was read from.

* :func:`save_npy` / :func:`load_npy` -- the array plus a JSON sidecar with
  spacing, origin and direction (the cheapest format that keeps the geometry).
* :func:`save_nifti` -- NIfTI-1 via nibabel.  NIfTI stores RAS+ coordinates and
  ``(x, y, z)`` array order; DICOM and :class:`~helpers.volume.Volume` use LPS
  and ``(z, y, x)``.  The affine is converted here, once (SimpleITK, 3D Slicer
  and ITK-SNAP read it back in the right place).
* :func:`save_dicom_seg` -- a DICOM Segmentation via highdicom that references
  every source slice by SOP Instance UID, so a PACS or viewer overlays it on the
  right images.  Each mask plane is matched to its source file by UID (or by
  position), never by file order.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DicomSeriesError
from .volume import PATIENT_KEYS, Volume, as_array

__all__ = ["save_npy", "load_npy", "save_nifti", "save_dicom_seg", "nifti_affine", "LUNG_LEGEND", "atomic_write",
           "json_default"]

#: Default label legend (the output of :func:`helpers.segment.segment_lungs`).
LUNG_LEGEND = {0: "background", 1: "right lung", 2: "left lung"}
#: A mask plane and a source image match when their positions differ by less (mm).
POSITION_TOL_MM = 0.05
#: SNOMED CT codes for the default segments: (code, meaning).
_SCT = {
    "category": ("123037004", "Anatomical Structure"),
    "right lung": ("3341006", "Right lung"),
    "left lung": ("44029006", "Left lung"),
    "lung": ("39607008", "Lung"),
}
#: Type-2 attributes highdicom copies from the source images (left empty if a source lacks them).
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: Meta keys copied into the JSON sidecar (identifying keys never are; nor is free text such as
#: (0008,103E) Series Description, where names get typed: PS3.15 Annex E removes it too).
_SIDECAR_META = ("series_uid", "study_uid", "frame_of_reference_uid", "modality")


# ----------------------------------------------------------------- utilities
def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Write a file so that it is either whole or absent: the package's one file writer.

    ``write(tmp_name)`` writes a temporary file in the destination folder (same
    file system), which is then moved onto ``path`` in one step
    (``os.replace``).  A crash or an exception in ``write`` leaves no partial
    file and no temporary file behind; a reader never sees half a file.

    Parameters
    ----------
    path : str or Path
        The file to create or replace; its folder is created if needed.
    write : callable
        Called with the temporary file's name (a str, with the same suffix as
        ``path``, ``.nii.gz`` included, for writers that look at it).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = atomic_write(pathlib.Path(d) / "a" / "note.txt", lambda tmp: pathlib.Path(tmp).write_text("hi"))
    ...     p.read_text(), sorted(f.name for f in p.parent.iterdir())
    ('hi', ['note.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _check_not_source(path: Path, volume: Volume) -> None:
    src = volume.meta.get("source") if isinstance(volume, Volume) else None
    if not src:
        return
    src = Path(src)
    if src.is_file():  # a .zip or a single file: writing next to it does not touch it
        return
    try:
        Path(path).resolve().relative_to(src.resolve())
    except ValueError:
        return
    raise ValueError(
        f"refusing to write {path} inside the source DICOM folder {src}: outputs go elsewhere "
        "(the source is never modified); choose another folder"
    )


def json_default(o: Any) -> Any:
    """``json.dump(..., default=json_default)``: numpy numbers and arrays as plain JSON, anything else as text.

    Examples
    --------
    >>> json.dumps({"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2), "p": Path("a")}, default=json_default)
    '{"n": 3, "x": 0.5, "a": [0, 1], "p": "a"}'
    """
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


# ----------------------------------------------------------------- npy + JSON
def save_npy(labels: np.ndarray | Volume, volume: Volume, path: str | os.PathLike[str], *,
             legend: dict[int, str] | None = None) -> Path:
    """Save a mask as ``.npy`` with a JSON sidecar holding its geometry.

    Parameters
    ----------
    labels : ndarray or Volume, shape (z, y, x)
        The mask or label map.
    volume : Volume
        The CT it belongs to (spacing, origin, direction, positions).
    path : str or Path
        Output ``.npy`` file (the suffix is added if missing); the sidecar is
        the same name with ``.json``.
    legend : dict, optional
        Label -> name, stored in the sidecar (default: background / right lung
        / left lung).

    Returns
    -------
    Path
        The ``.npy`` path.

    Raises
    ------
    ValueError
        If the shapes differ, or ``path`` is inside the source DICOM folder.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> vol = Volume(np.zeros((2, 3, 4), np.int16), spacing=(2.5, 0.7, 0.7), origin=(-10.0, -20.0, 30.0))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = save_npy(np.ones(vol.shape, np.uint8), vol, pathlib.Path(tmp) / "mask")
    ...     back = load_npy(p)
    >>> p.name, back.spacing, back.origin, back.hu.dtype.name
    ('mask.npy', (2.5, 0.7, 0.7), (-10.0, -20.0, 30.0), 'uint8')
    """
    vol = volume
    arr = as_array(labels, shape=vol.shape)
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    _check_not_source(path, vol)
    side: dict[str, Any] = {
        "axes": "z, y, x (plane, row, column)",
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "spacing_mm": list(vol.spacing),
        "origin_lps_mm": list(vol.origin),
        "direction": np.asarray(vol.direction).tolist(),
        "direction_note": "columns are the LPS unit vectors of array axes z, y, x",
        "positions_lps_mm": np.asarray(vol.positions).tolist(),
        "labels": {str(k): v for k, v in (legend or LUNG_LEGEND).items()},
    }
    for k in _SIDECAR_META:
        if vol.meta.get(k) and k not in PATIENT_KEYS:
            side[k] = vol.meta[k]

    def write_npy(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, arr)

    atomic_write(path, write_npy)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(side, indent=1)))
    return path


def load_npy(path: str | os.PathLike[str]) -> Volume:
    """Read a mask written by :func:`save_npy` back as a :class:`Volume`.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file; its ``.json`` sidecar must sit next to it.

    Returns
    -------
    Volume
        ``hu`` holds the mask; ``meta["labels"]`` the legend.

    Raises
    ------
    FileNotFoundError
        If the sidecar is missing.
    """
    path = Path(path)
    side_path = path.with_suffix(".json")
    if not side_path.exists():
        raise FileNotFoundError(f"{path} has no JSON sidecar {side_path.name}: the geometry is unknown; "
                                "save with helpers.export.save_npy")
    side = json.loads(side_path.read_text())
    arr = np.load(path)
    meta = {k: side[k] for k in _SIDECAR_META if k in side}
    meta["labels"] = {int(k): v for k, v in side.get("labels", {}).items()}
    # without the positions of the sidecar, Volume computes them from the origin and the slice spacing
    positions = {"positions": np.array(side["positions_lps_mm"])} if "positions_lps_mm" in side else {}
    return Volume(arr, spacing=side["spacing_mm"], origin=side["origin_lps_mm"], direction=np.array(side["direction"]),
                  meta=meta, **positions)


# ----------------------------------------------------------------- NIfTI
def nifti_affine(volume: Volume) -> np.ndarray:
    """The NIfTI (RAS+, ``(i, j, k) = (x, y, z)`` index order) affine of a Volume.

    ``Volume.affine`` maps ``(k, j, i)`` to LPS; NIfTI wants ``(i, j, k)`` to RAS:
    swap the first and third index columns, then negate the x and y rows.

    Examples
    --------
    >>> v = Volume(np.zeros((3, 4, 5)), spacing=(2.0, 0.5, 0.5), origin=(10.0, 20.0, 30.0))
    >>> nifti_affine(v).round(2).tolist()
    [[-0.5, 0.0, 0.0, -10.0], [0.0, -0.5, 0.0, -20.0], [0.0, 0.0, 2.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    """
    a = np.asarray(volume.affine)[:, [2, 1, 0, 3]]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a


def save_nifti(labels: np.ndarray | Volume, volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Save a mask as NIfTI-1 (``.nii`` or ``.nii.gz``) with the right affine.

    Parameters
    ----------
    labels : ndarray or Volume, shape (z, y, x)
        The mask or label map (uint8 recommended).
    volume : Volume
        The CT it belongs to.
    path : str or Path
        Output file, ending in ``.nii`` or ``.nii.gz``.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If the suffix is not NIfTI, the shapes differ, or ``path`` is inside
        the source folder.

    Notes
    -----
    The array is written in ``(x, y, z)`` order with :func:`nifti_affine` as
    both qform and sform (code 1, scanner coordinates).  Unevenly spaced slices
    cannot be described by an affine: resample first.
    """
    import nibabel as nib

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"NIfTI files end in .nii or .nii.gz; got {path.name!r}")
    arr = as_array(labels, shape=volume.shape)
    _check_not_source(path, volume)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    img = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), nifti_affine(volume))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    return atomic_write(path, lambda tmp: nib.save(img, tmp))


# ----------------------------------------------------------------- DICOM SEG
def _source_datasets(source: Any, volume: Volume) -> list:
    """Source datasets in the volume's plane order (matched by SOP UID, else by position)."""
    dsets = _read_source(source, volume)
    series_uid = volume.meta.get("series_uid")
    if series_uid:
        dsets = [d for d in dsets if str(d.get("SeriesInstanceUID", "")) == series_uid]
    uids = volume.meta.get("sop_instance_uids")
    if uids and len(uids) == volume.shape[0]:
        ordered = _order_by_uid(dsets, uids)
    else:
        ordered = _order_by_position(dsets, volume)
    if len(ordered) != volume.shape[0]:
        raise DicomSeriesError(f"found {len(ordered)} source images for a volume of {volume.shape[0]} planes; "
                               "pass the series the volume was loaded from")
    return ordered


def _read_source(source: Any, volume: Volume) -> list:
    """Every DICOM dataset of ``source`` (a folder, a file, a list of files or datasets; default: the volume's)."""
    import pydicom

    if source is None:
        source = volume.meta.get("files") or volume.meta.get("source")
    if source is None:
        raise DicomSeriesError("save_dicom_seg needs the source series: pass source= (folder or file list); "
                               "the volume's meta has neither 'files' nor 'source'")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    elif isinstance(source, (str, os.PathLike)):
        files = [Path(source)]
    else:
        files = list(source)
    dsets: list[pydicom.Dataset] = []
    for f in files:
        if isinstance(f, pydicom.Dataset):
            dsets.append(f)
            continue
        try:
            dsets.append(pydicom.dcmread(f))
        except Exception:  # not DICOM (a README, a thumbnail): not a source image
            continue
    return dsets


def _order_by_uid(dsets: list, uids: list) -> list:
    by_uid = {str(d.SOPInstanceUID): d for d in dsets}
    missing = [u for u in uids if u not in by_uid]
    if missing:
        raise DicomSeriesError(
            f"{len(missing)} of the volume's {len(uids)} slices are not in the source "
            f"(first missing (0008,0018) SOP Instance UID {missing[0]}); pass the folder the volume was loaded from"
        )
    return [by_uid[u] for u in uids]


def _order_by_position(dsets: list, volume: Volume) -> list:
    """For each plane of ``volume``, the source image at its (0020,0032) position (within POSITION_TOL_MM)."""
    ordered: list = []
    if not dsets:
        return ordered
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in dsets])
    for k, p in enumerate(volume.positions):
        dist = np.linalg.norm(pos - p, axis=1)
        j = int(np.argmin(dist))
        if dist[j] > POSITION_TOL_MM:
            raise DicomSeriesError(
                f"no source image at plane {k}'s position {np.round(p, 2).tolist()} mm (closest "
                f"(0020,0032) Image Position (Patient) is {dist[j]:.2f} mm away); "
                "pass the series the volume came from"
            )
        ordered.append(dsets[j])
    return ordered


def save_dicom_seg(
    labels: np.ndarray | Volume,
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    source: Any = None,
    legend: dict[int, str] | None = None,
    series_description: str = "Lung segmentation",
    series_number: int = 900,
    algorithm: str = "helpers.segment.segment_lungs",
) -> Path:
    """Save a label map as a DICOM Segmentation (binary, one segment per label).

    Parameters
    ----------
    labels : ndarray or Volume, shape (z, y, x)
        Integer label map in the volume's plane order (0 = background).
    volume : Volume
        The CT the labels were computed from (a Volume from
        :func:`helpers.io.load_series` knows its files and SOP Instance UIDs).
    path : str or Path
        Output ``.dcm`` file.
    source : folder, list of paths or datasets, optional
        The source series; default ``volume.meta["files"]``.  Read only.
    legend : dict, optional
        Label -> name; names "right lung", "left lung" and "lung" get their
        SNOMED CT codes, others a generic "Tissue" code.  Default: the lung legend.
    series_description, series_number, algorithm : optional
        Written into the SEG.

    Returns
    -------
    Path

    Raises
    ------
    DicomSeriesError
        If a mask plane has no source image (by (0008,0018) SOP Instance UID,
        else by (0020,0032) Image Position (Patient)).
    ValueError
        If the shapes differ or ``path`` is inside the source folder.

    Notes
    -----
    Frame order is the classic trap: files on disk are in any order, and a
    SEG frame must reference the image it was drawn on.  Mask plane ``k`` is
    paired with the source image whose SOP Instance UID is
    ``volume.meta["sop_instance_uids"][k]`` (or, failing that, whose position
    is ``volume.positions[k]``), and highdicom records that reference per frame.
    Empty frames are omitted.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    arr = as_array(labels, shape=volume.shape)
    path = Path(path)
    _check_not_source(path, volume)
    legend = dict(legend or LUNG_LEGEND)
    present = sorted(int(v) for v in np.unique(arr) if v != 0)
    if not present:
        raise ValueError("the label map is empty: a DICOM SEG needs at least one segment")
    unknown = [v for v in present if v not in legend]
    if unknown:
        raise ValueError(f"labels {unknown} have no name in legend {legend}")
    srcs = _source_datasets(source, volume)
    for ds in srcs:  # in-memory copies only: type-2 attributes highdicom copies, empty if absent
        for kw in _TYPE2_COPIED:
            if kw not in ds:
                setattr(ds, kw, "")
    numbers = {lab: i + 1 for i, lab in enumerate(present)}
    pix = np.zeros(arr.shape, np.uint8)
    for lab, num in numbers.items():
        pix[arr == lab] = num
    category = Code(_SCT["category"][0], "SCT", _SCT["category"][1])
    descs = []
    for lab, num in numbers.items():
        name = legend[lab]
        code = _SCT.get(name.lower())
        prop = Code(code[0], "SCT", code[1]) if code else Code("85756007", "SCT", "Tissue")
        descs.append(
            hd.seg.SegmentDescription(
                segment_number=num,
                segment_label=name,
                segmented_property_category=category,
                segmented_property_type=prop,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=hd.AlgorithmIdentificationSequence(
                    name=algorithm, version="1", family=codes.cid7162.MorphologicalOperations,
                ),
            )
        )
    with warnings.catch_warnings():
        # pydicom quotes a one-component (0010,0010) Patient's Name in a warning: keep it out of logs
        warnings.filterwarnings("ignore", message=".*is unlikely to represent the intended person name")
        seg = _segmentation(hd, srcs, pix, descs, series_description, series_number)
        return atomic_write(path, lambda tmp: seg.save_as(tmp))


def _segmentation(hd, srcs, pix, descs, series_description, series_number):
    return hd.seg.Segmentation(
        source_images=srcs,
        pixel_array=pix,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="dicom-teaching-helpers",
        manufacturer_model_name="helpers",
        software_versions="0.1.0",
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=True,
    )
