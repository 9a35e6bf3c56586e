"""Tumour boxes: read annotations and place them on a loaded :class:`~helpers.volume.Volume`.

Two sources are understood:

* **PASCAL-VOC XML**, as published by the Lung-PET-CT-Dx collection on TCIA: one
  file per annotated slice, named by that slice's (0008,0018) SOP Instance UID,
  each ``<object>`` holding a ``<bndbox>`` with ``xmin``/``xmax`` (pixel
  columns) and ``ymin``/``ymax`` (pixel rows).  A folder of them, or one file.
* **A simple table** (``.csv`` or ``.json``) written by hand or by another tool,
  one box per row, either in **voxels** (``slice`` -- the array index ``k`` -- or
  ``sop_instance_uid``, then ``row_min, row_max, col_min, col_max``) or in
  **mm** of patient space (``z_mm, x_min_mm, x_max_mm, y_min_mm, y_max_mm``, DICOM
  LPS: x towards the patient's left, y towards the back, z towards the head).
  An optional ``label`` column names the lesion; an optional ``series_uid``
  (column, or top-level key of the JSON) is checked against the volume.

Whatever the source, the result is a :class:`TumourBoxes`: one :class:`Box` per
annotated slice and lesion (slice index, z in mm, inclusive row and column
ranges) and :meth:`TumourBoxes.mask`, a boolean ``(z, y, x)`` box mask.

Every box is matched to a slice of the *loaded* series (by SOP Instance UID or by
position); a box that matches no slice, lies outside the image, or belongs to
another series raises :class:`~helpers.errors.DicomSeriesError` naming the file,
the field, what was expected and what to do.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicomSeriesError, SeriesWarning
from .volume import Volume, as_mask

__all__ = [
    "Box",
    "TumourBoxes",
    "ANNOTATION_FOLDER",
    "box_iou",
    "boxes_from_mask",
    "boxes_table",
    "case_boxes",
    "find_annotations",
    "read_boxes",
    "read_box_table",
    "read_voc_boxes",
    "sibling_series",
]

#: Name of the folder of XML boxes beside (or inside) a case's series folder.
ANNOTATION_FOLDER = "tumour-boxes"
#: A box given in mm matches a slice whose position is at most this far away (mm);
#: capped at half the slice spacing so that a box never matches two slices.
Z_TOLERANCE_MM = 0.5
#: Columns of a table in voxels and in mm.
VOXEL_COLUMNS = ("row_min", "row_max", "col_min", "col_max")
MM_COLUMNS = ("z_mm", "x_min_mm", "x_max_mm", "y_min_mm", "y_max_mm")


@dataclass(frozen=True)
class Box:
    """One annotated box on one slice.

    Attributes
    ----------
    slice_index : int
        Array index ``k`` of the slice in the volume (feet to head).
    z_mm : float
        Position of that slice along the slice normal, mm (``volume.slice_positions[k]``).
    rows, cols : tuple of 2 int
        First and last row (``j``) and column (``i``) inside the box, inclusive.
    label : str
        Lesion name from the annotation (``<name>`` in VOC XML, ``label`` in a table).
    sop_instance_uid : str
        (0008,0018) SOP Instance UID of the slice, when known.
    source : str
        File the box came from (and its row for a table).
    """

    slice_index: int
    z_mm: float
    rows: tuple[int, int]
    cols: tuple[int, int]
    label: str = ""
    sop_instance_uid: str = ""
    source: str = ""

    @property
    def centre(self) -> tuple[float, float, float]:
        """Voxel index ``(k, j, i)`` of the box centre (floats)."""
        return (float(self.slice_index), (self.rows[0] + self.rows[1]) / 2, (self.cols[0] + self.cols[1]) / 2)


@dataclass(frozen=True)
class TumourBoxes:
    """The boxes of one annotation source, placed on one volume.

    Attributes
    ----------
    boxes : tuple of Box
        Sorted by slice index, then label.
    shape : tuple of 3 int
        ``(z, y, x)`` shape of the volume they were placed on.
    spacing : tuple of 3 float
        ``(z, y, x)`` voxel size in mm of that volume.
    positions_mm : tuple of float
        Every slice's position along the normal (mm), for the z range and gaps.
    series_uid : str
        (0020,000E) Series Instance UID of the volume ("" when unknown).
    source : str
        Folder or file read.
    unmatched : tuple of str
        Annotation files left out because they name a slice of another series
        (see ``unmatched=`` in :func:`read_voc_boxes`).
    """

    boxes: tuple[Box, ...]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    positions_mm: tuple[float, ...]
    series_uid: str = ""
    source: str = ""
    unmatched: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)

    def __iter__(self):
        return iter(self.boxes)

    @property
    def slice_indices(self) -> list[int]:
        """Sorted indices ``k`` of the slices that carry at least one box."""
        return sorted({b.slice_index for b in self.boxes})

    @property
    def z_range_mm(self) -> tuple[float, float]:
        """Lowest and highest annotated slice position (mm)."""
        z = [b.z_mm for b in self.boxes]
        return (min(z), max(z))

    @property
    def missing_slices(self) -> list[int]:
        """Slice indices between the first and last annotated slice that carry no box."""
        ks = self.slice_indices
        return sorted(set(range(ks[0], ks[-1] + 1)) - set(ks)) if ks else []

    @property
    def labels(self) -> list[str]:
        """The distinct lesion labels, sorted."""
        return sorted({b.label for b in self.boxes})

    def for_label(self, label: str) -> "TumourBoxes":
        """Only the boxes of one lesion."""
        return replace(self, boxes=tuple(b for b in self.boxes if b.label == label))

    def mask(self) -> np.ndarray:
        """Boolean ``(z, y, x)`` mask: True inside every box (each on its own slice).

        Returns
        -------
        ndarray of bool, shape ``self.shape``
        """
        out = np.zeros(self.shape, dtype=bool)
        for b in self.boxes:
            out[b.slice_index, b.rows[0]:b.rows[1] + 1, b.cols[0]:b.cols[1] + 1] = True
        return out

    def bounding_box(self) -> tuple[slice, slice, slice]:
        """Index slices ``(k, j, i)`` of the smallest block holding every box."""
        ks = self.slice_indices
        r0 = min(b.rows[0] for b in self.boxes)
        r1 = max(b.rows[1] for b in self.boxes)
        c0 = min(b.cols[0] for b in self.boxes)
        c1 = max(b.cols[1] for b in self.boxes)
        return (slice(ks[0], ks[-1] + 1), slice(r0, r1 + 1), slice(c0, c1 + 1))

    def summary(self) -> str:
        """One sentence: how many boxes, which slices, the z range and any slice left out."""
        if not self.boxes:
            return "no boxes"
        ks = self.slice_indices
        lo, hi = self.z_range_mm
        text = (f"{len(self.boxes)} box(es) on {len(ks)} slice(s), indices {ks[0]}..{ks[-1]} "
                f"(z {lo:.1f} to {hi:.1f} mm)")
        miss = self.missing_slices
        text += (f"; {len(miss)} slice(s) in between carry no box: {miss}" if miss
                 else "; every slice in between is annotated")
        return text


# ----------------------------------------------------------------- shared checks
def _volume_uids(volume: Volume, source: str) -> list[str]:
    uids = list(volume.meta.get("sop_instance_uids") or [])
    if len(uids) != volume.shape[0]:
        raise DicomSeriesError(
            f"{source}: boxes are matched to slices by (0008,0018) SOP Instance UID, but the volume "
            f"carries {len(uids)} UIDs for {volume.shape[0]} slices (meta['sop_instance_uids']); "
            "load it with helpers.load_series(folder), or give the boxes by position (z_mm) or slice index"
        )
    return uids


def _check_series(series_uid: str, volume: Volume, source: str) -> None:
    mine = volume.meta.get("series_uid") or ""
    if series_uid and mine and series_uid != mine:
        raise DicomSeriesError(
            f"{source} annotates series {series_uid}, but the volume is series {mine} "
            f"({volume.meta.get('series_description', '')!r}, (0020,000E) Series Instance UID); "
            "load the annotated series with load_series(folder, series_uid=...) or use its annotations"
        )


def _place(volume: Volume, k: int, rows: Sequence[int], cols: Sequence[int], *, label: str, sop: str, source: str,
           what: str = "row/column") -> Box:
    """Check a box against the image and build it (rows/cols inclusive index pairs)."""
    nz, ny, nx = volume.shape
    (r0, r1), (c0, c1) = rows, cols
    for name, lo, hi in (("row", r0, r1), ("column", c0, c1)):
        if lo > hi:
            raise DicomSeriesError(
                f"{source}: the box's first {name} ({lo}) is after its last ({hi}); expected "
                f"min <= max in the {what} fields; fix the annotation"
            )
    if not (0 <= r0 and r1 < ny and 0 <= c0 and c1 < nx):
        raise DicomSeriesError(
            f"{source}: box rows {r0}..{r1}, columns {c0}..{c1} lie outside the image of slice {k}: "
            f"expected rows 0..{ny - 1} and columns 0..{nx - 1} ((0028,0010) Rows = {ny}, "
            f"(0028,0011) Columns = {nx}); the box was drawn on another image or series: check "
            "which series the annotations belong to"
        )
    if not 0 <= k < nz:
        raise DicomSeriesError(
            f"{source}: slice index {k} is outside the volume (expected 0..{nz - 1}); "
            "indices count slices from the feet (volume.hu[k])"
        )
    return Box(int(k), float(volume.slice_positions[k]), (int(r0), int(r1)), (int(c0), int(c1)),
               label=label, sop_instance_uid=sop, source=source)


def _result(boxes: list[Box], volume: Volume, source: str, unmatched: Iterable[str] = ()) -> TumourBoxes:
    if not boxes:
        raise DicomSeriesError(f"{source} holds no box; expected at least one annotated slice")
    boxes.sort(key=lambda b: (b.slice_index, b.label, b.rows, b.cols))
    return TumourBoxes(tuple(boxes), volume.shape, volume.spacing,
                       tuple(float(z) for z in volume.slice_positions),
                       str(volume.meta.get("series_uid") or ""), source, tuple(unmatched))


# ----------------------------------------------------------------- PASCAL-VOC XML
def _int_field(node: ET.Element, tag: str, path: Path) -> int:
    el = node.find(tag)
    if el is None or el.text is None:
        raise DicomSeriesError(
            f"{path}: <bndbox> has no <{tag}>; expected xmin, ymin, xmax, ymax in pixels "
            "(PASCAL-VOC); the file is not a box annotation or is truncated"
        )
    try:
        return int(round(float(el.text)))
    except ValueError:
        raise DicomSeriesError(f"{path}: <bndbox>/<{tag}> is {el.text!r}; expected a pixel number") from None


def read_voc_boxes(source: str | os.PathLike | Iterable[str | os.PathLike], volume: Volume, *, index_base: int = 0,
                   unmatched: str = "warn", other_series: Iterable[Volume] = (),
                   z_tolerance_mm: float = Z_TOLERANCE_MM) -> TumourBoxes:
    """Read PASCAL-VOC XML tumour boxes and match each file to a slice by SOP Instance UID.

    Parameters
    ----------
    source : path or list of paths
        A folder of ``*.xml`` files (Lung-PET-CT-Dx ``tumour-boxes``), one file,
        or a list of files.  Each file's name (without ``.xml``) is the
        (0008,0018) SOP Instance UID of the annotated slice.
    volume : Volume
        The loaded series (``meta["sop_instance_uids"]`` in z order, as
        :func:`helpers.load_series` keeps them).
    index_base : {0, 1}
        Index of the first pixel in the files.  Lung-PET-CT-Dx boxes were drawn with
        LabelImg, which writes 0-based pixel positions (default); the original
        PASCAL-VOC convention is 1-based.
    unmatched : {"warn", "ignore", "raise"}
        What to do with files named after a SOP Instance UID that is no slice of
        ``volume`` while other files do match.  Lung-PET-CT-Dx keeps the boxes of
        *every* reconstruction of a study in one folder (for subject A0002, 10 on
        the B40f series and 8 on the B70f series), so by default they are left
        out with a :class:`~helpers.errors.SeriesWarning` and listed in
        :attr:`TumourBoxes.unmatched`; ``"raise"`` makes them an error.
    other_series : sequence of Volume, optional
        Other series of the same study (same (0020,0052) Frame of Reference UID),
        loaded with :func:`helpers.load_series`.  A file naming one of *their*
        slices is placed on ``volume`` **by position**: its box corners go through
        patient coordinates (mm) to ``volume``'s grid, so the boxes drawn on one
        reconstruction show on the other.
    z_tolerance_mm : float
        A box placed by position must land within this distance of a slice of
        ``volume`` (capped at half its slice spacing).

    Returns
    -------
    TumourBoxes
        One :class:`Box` per ``<object>``, ``rows = (ymin, ymax)``,
        ``cols = (xmin, xmax)`` (inclusive), sorted by slice.

    Raises
    ------
    DicomSeriesError
        No XML file; a file that is not valid XML or has no ``<bndbox>``; an image
        ``<size>`` other than the series' Rows x Columns; a box outside the image;
        none of the files naming a slice of the volume (annotations for another
        series); with ``unmatched="raise"``, any file whose UID is no slice of the
        volume.

    Warns
    -----
    SeriesWarning
        Files left out because they name slices of another series (``unmatched="warn"``).

    Notes
    -----
    The boxes are 2-D: a tumour annotated on slices 10 and 14 only is *not* said
    to be on 11-13.  :attr:`TumourBoxes.missing_slices` lists such holes.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from helpers.volume import Volume
    >>> vol = Volume(np.zeros((3, 8, 8), np.int16), spacing=(5, 1, 1),
    ...              meta={"sop_instance_uids": ["1.2.3.1", "1.2.3.2", "1.2.3.3"]})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = pathlib.Path(tmp)
    ...     _ = (d / "1.2.3.2.xml").write_text("<annotation><object><name>A</name><bndbox>"
    ...         "<xmin>2</xmin><ymin>1</ymin><xmax>5</xmax><ymax>3</ymax></bndbox></object></annotation>")
    ...     boxes = read_voc_boxes(d, vol)
    >>> b = boxes.boxes[0]
    >>> b.slice_index, b.z_mm, b.rows, b.cols, b.label
    (1, 5.0, (1, 3), (2, 5), 'A')
    >>> int(boxes.mask().sum())
    12
    """
    files, label_src = _xml_files(source)
    uids = _volume_uids(volume, label_src)
    where = {u: k for k, u in enumerate(uids)}
    elsewhere = _slices_elsewhere(volume, other_series, label_src)
    if not any(f.stem in where or f.stem in elsewhere for f in files):
        raise DicomSeriesError(
            f"none of the {len(files)} annotation files in {label_src} is named after a slice of the "
            f"loaded series {volume.meta.get('series_uid', '?')} "
            f"({volume.meta.get('series_description', '')!r}): expected file names equal to the "
            f"slices' (0008,0018) SOP Instance UIDs (e.g. {uids[0]}.xml). These annotations belong to "
            "another series (another reconstruction of the same study?): load that one with "
            "load_series(folder, series_uid=...)"
        )
    if unmatched not in ("warn", "ignore", "raise"):
        raise ValueError(f"unmatched must be 'warn', 'ignore' or 'raise'; got {unmatched!r}")
    others = [f for f in files if f.stem not in where and f.stem not in elsewhere]
    if others:
        _report_unmatched(others, files, volume, label_src, unmatched)
    zpos = volume.slice_positions
    dz = float(np.min(np.abs(np.diff(zpos)))) if len(zpos) > 1 else float(volume.spacing[0])
    tol = min(float(z_tolerance_mm), dz / 2)
    boxes: list[Box] = []
    for f in files:
        if f.stem in where:
            drawn_on, k = volume, where[f.stem]
        elif f.stem in elsewhere:
            drawn_on, k = elsewhere[f.stem]
        else:
            continue
        for label, (y0, y1), (x0, x1) in _voc_objects(f, drawn_on.shape, index_base):
            if drawn_on is volume:
                boxes.append(_place(volume, k, (y0, y1), (x0, x1), label=label, sop=f.stem, source=f.name,
                                    what="<bndbox> ymin/ymax, xmin/xmax"))
            else:
                boxes.append(_box_by_position(f, volume, drawn_on, k, (y0, y1), (x0, x1), label=label, tol=tol))
    return _result(boxes, volume, label_src, [f.name for f in others])


def _xml_files(source: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[list[Path], str]:
    """The ``.xml`` files of a folder, one file or a list, and how to name them in a message."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            files = sorted(p.glob("*.xml"))
        elif p.is_file():
            files = [p]
        else:
            raise DicomSeriesError(f"{p} does not exist; expected a folder of PASCAL-VOC .xml box files")
        label_src = str(p)
    else:
        files = [Path(f) for f in source]
        label_src = f"{len(files)} annotation files"
    if not files:
        raise DicomSeriesError(
            f"no .xml file in {label_src}; expected one PASCAL-VOC file per annotated slice, "
            "named by the slice's SOP Instance UID"
        )
    return files, label_src


def _slices_elsewhere(volume: Volume, other_series: Iterable[Volume], label_src: str) -> dict:
    """SOP Instance UID -> ``(series, slice index)`` for the slices of ``other_series`` (same frame of reference)."""
    elsewhere: dict = {}
    for other in other_series:
        a, b = other.meta.get("frame_of_reference_uid"), volume.meta.get("frame_of_reference_uid")
        if a and b and a != b:
            raise DicomSeriesError(
                f"other_series {other.meta.get('series_uid', '?')} has (0020,0052) Frame of Reference UID "
                f"{a}, the volume {b}: their mm do not match, so boxes cannot be placed by position; "
                "pass only series of the same study and frame of reference"
            )
        for k, u in enumerate(_volume_uids(other, label_src)):
            elsewhere.setdefault(u, (other, k))
    return elsewhere


def _report_unmatched(others: list[Path], files: list[Path], volume: Volume, label_src: str, unmatched: str) -> None:
    """Warn about (or refuse) the files that name no slice of the loaded series."""
    text = (
        f"{len(others)} of the {len(files)} annotation files in {label_src} name no slice of the "
        f"loaded series {volume.meta.get('series_uid', '?')} ((0008,0018) SOP Instance UID = file "
        f"name; first: {others[0].name}); they annotate another series of the study, or slices "
        "missing from the loaded folder"
    )
    if unmatched == "raise":
        raise DicomSeriesError(text + "; remove them, load the complete series, or pass unmatched='warn'")
    if unmatched == "warn":
        warnings.warn(text + "; they were left out (TumourBoxes.unmatched lists them)",
                      SeriesWarning, stacklevel=3)


def _voc_objects(f: Path, shape: tuple[int, ...],
                 index_base: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """``(label, (ymin, ymax), (xmin, xmax))`` of every ``<object>`` of one PASCAL-VOC file, 0-based pixels."""
    nz, ny, nx = shape
    try:
        root = ET.parse(f).getroot()
    except ET.ParseError as exc:
        raise DicomSeriesError(f"{f} is not valid XML ({exc}); expected a PASCAL-VOC annotation") from None
    size = root.find("size")
    if size is not None:
        w, h = size.findtext("width"), size.findtext("height")
        if w and h and (int(float(w)), int(float(h))) != (nx, ny):
            raise DicomSeriesError(
                f"{f}: <size> is {w} x {h} pixels, the slice is {nx} x {ny} "
                "((0028,0011) Columns x (0028,0010) Rows); the boxes were drawn on another image: "
                "check which series they belong to"
            )
    objects = root.findall("object")
    if not objects:
        raise DicomSeriesError(f"{f} has no <object>; expected one <object> with a <bndbox> per lesion")
    out = []
    for obj in objects:
        bb = obj.find("bndbox")
        if bb is None:
            raise DicomSeriesError(f"{f}: an <object> has no <bndbox>; expected xmin, ymin, xmax, ymax")
        x0, x1, y0, y1 = (_int_field(bb, t, f) - index_base for t in ("xmin", "xmax", "ymin", "ymax"))
        out.append(((obj.findtext("name") or "").strip(), (y0, y1), (x0, x1)))
    return out


def _box_by_position(f: Path, volume: Volume, drawn_on: Volume, k: int, ys: tuple[int, int], xs: tuple[int, int],
                     *, label: str, tol: float) -> Box:
    """A box drawn on slice ``k`` of another series, moved to this volume's grid: pixel edges -> mm -> pixels."""
    (y0, y1), (x0, x1) = ys, xs
    zpos = volume.slice_positions
    _place(drawn_on, k, (y0, y1), (x0, x1), label=label, sop=f.stem, source=f.name)  # checks the box
    corners = drawn_on.index_to_lps([(k, y0 - 0.5, x0 - 0.5), (k, y1 + 0.5, x1 + 0.5)])
    idx = volume.lps_to_index(corners)
    z = float(drawn_on.slice_positions[k])
    kk = int(np.argmin(np.abs(zpos - z)))
    if abs(zpos[kk] - z) > tol:
        raise DicomSeriesError(
            f"{f}: its slice (series {drawn_on.meta.get('series_uid', '?')}, z = {z:.2f} mm) matches no "
            f"slice of the volume: the nearest is {kk} at {zpos[kk]:.2f} mm (tolerance {tol:g} mm); "
            "boxes can only be moved between series whose slices lie at the same positions"
        )
    j = np.sort(idx[:, 1])
    i = np.sort(idx[:, 2])
    # every pixel whose centre lies inside the box's edges (on an edge included)
    rows = (int(np.ceil(j[0] - 1e-6)), int(np.floor(j[1] + 1e-6)))
    cols = (int(np.ceil(i[0] - 1e-6)), int(np.floor(i[1] + 1e-6)))
    return _place(volume, kk, rows, cols, label=label, sop="",
                  source=f"{f.name} (series {drawn_on.meta.get('series_uid', '?')}, by position)")


# ----------------------------------------------------------------- CSV / JSON tables
def _rows_of(path: Path) -> tuple[list[dict], str]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DicomSeriesError(f"{path} is not valid JSON ({exc})") from None
        series = ""
        if isinstance(data, dict):
            series = str(data.get("series_uid") or "")
            data = data.get("boxes")
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DicomSeriesError(
                f"{path}: expected a list of boxes, or {{'series_uid': ..., 'boxes': [...]}}, each box an "
                f"object with {', '.join(VOXEL_COLUMNS)} (+ slice or sop_instance_uid) or {', '.join(MM_COLUMNS)}"
            )
        return data, series
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in r.items() if k} for r in rows], ""
    raise DicomSeriesError(f"{path}: expected a .csv or .json table of boxes (or .xml files)")


def _number(row: dict, key: str, where: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise DicomSeriesError(f"{where}: {key!r} is {row.get(key)!r}; expected a number") from None


def read_box_table(path: str | os.PathLike, volume: Volume, *, z_tolerance_mm: float = Z_TOLERANCE_MM) -> TumourBoxes:
    """Read boxes from a CSV or JSON table, in voxels or in mm, and place them on ``volume``.

    Parameters
    ----------
    path : path
        ``.csv`` with a header row, or ``.json`` (a list of objects, or
        ``{"series_uid": ..., "boxes": [...]}``).  Voxel columns: ``slice`` (array
        index ``k``) or ``sop_instance_uid``, and ``row_min, row_max, col_min,
        col_max`` (inclusive).  Or mm columns: ``z_mm, x_min_mm, x_max_mm,
        y_min_mm, y_max_mm`` (patient LPS).  Optional: ``label``, ``series_uid``.
    volume : Volume
        The loaded series the boxes were drawn on.
    z_tolerance_mm : float
        A box in mm matches the slice whose position is within this distance
        (capped at half the slice spacing).

    Returns
    -------
    TumourBoxes

    Raises
    ------
    DicomSeriesError
        Unknown columns; a value that is not a number; a box that matches no slice
        (z between slices, an unknown SOP Instance UID, an index out of range); a
        box outside the image; a ``series_uid`` other than the volume's.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from helpers.volume import Volume
    >>> vol = Volume(np.zeros((4, 10, 10), np.int16), spacing=(2.5, 0.5, 0.5), origin=(-2.5, -2.5, 100.0))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = pathlib.Path(tmp) / "boxes.csv"
    ...     _ = p.write_text("z_mm,x_min_mm,x_max_mm,y_min_mm,y_max_mm\\n105,-1.5,0.5,-2,-1\\n")
    ...     b = read_box_table(p, vol).boxes[0]
    >>> b.slice_index, b.rows, b.cols
    (2, (1, 3), (2, 6))
    """
    path = Path(path)
    if not path.is_file():
        raise DicomSeriesError(f"{path} does not exist; expected a .csv or .json table of boxes")
    rows, series = _rows_of(path)
    _check_series(series, volume, str(path))
    zpos = volume.slice_positions
    dz = float(np.min(np.abs(np.diff(zpos)))) if len(zpos) > 1 else float(volume.spacing[0])
    tol = min(float(z_tolerance_mm), dz / 2)
    boxes: list[Box] = []
    for n, row in enumerate(rows, start=1):
        where = f"{path.name} box {n}"
        _check_series(str(row.get("series_uid") or ""), volume, where)
        label = str(row.get("label") or "")
        if all(c in row and row[c] not in ("", None) for c in MM_COLUMNS):
            boxes.append(_box_in_mm(row, volume, where, label=label, tol=tol))
        elif all(c in row and row[c] not in ("", None) for c in VOXEL_COLUMNS):
            k = _row_slice(row, volume, where)
            vals = [int(round(_number(row, c, where))) for c in VOXEL_COLUMNS]
            boxes.append(_place(volume, k, vals[0:2], vals[2:4], label=label,
                                sop=str(row.get("sop_instance_uid") or ""), source=where))
        else:
            raise DicomSeriesError(
                f"{where}: found columns {sorted(row)}; expected {', '.join(VOXEL_COLUMNS)} with 'slice' "
                f"or 'sop_instance_uid' (voxels), or {', '.join(MM_COLUMNS)} (mm)"
            )
    return _result(boxes, volume, str(path))


def _box_in_mm(row: dict, volume: Volume, where: str, *, label: str, tol: float) -> Box:
    """A table row in mm (z_mm, x/y min/max mm) placed on the slice at ``z_mm``."""
    zpos = volume.slice_positions
    z = _number(row, "z_mm", where)
    k = int(np.argmin(np.abs(zpos - z)))
    if abs(zpos[k] - z) > tol:
        raise DicomSeriesError(
            f"{where}: z_mm = {z:g} matches no slice: the nearest slice {k} is at "
            f"{zpos[k]:.2f} mm ({abs(zpos[k] - z):.2f} mm away, tolerance {tol:g} mm); slices run "
            f"{zpos.min():.1f}..{zpos.max():.1f} mm. Give the position of an existing slice "
            "((0020,0032) Image Position (Patient)), or its index in a 'slice' column"
        )
    xs = (_number(row, "x_min_mm", where), _number(row, "x_max_mm", where))
    ys = (_number(row, "y_min_mm", where), _number(row, "y_max_mm", where))
    plane = volume.positions[k]
    normal = volume.direction[:, 0]
    corners = []
    for x in xs:
        for y in ys:
            p = np.array([x, y, plane[2]], float)
            if abs(normal[2]) > 1e-6:  # put the corner on the slice plane
                p[2] = plane[2] - ((p - plane) @ normal - (p - plane)[2] * normal[2]) / normal[2]
            corners.append(volume.lps_to_index(p)[1:])
    jj = np.round(np.asarray(corners)[:, 0]).astype(int)
    ii = np.round(np.asarray(corners)[:, 1]).astype(int)
    return _place(volume, k, (jj.min(), jj.max()), (ii.min(), ii.max()), label=label,
                  sop="", source=where, what="x/y mm")


def _row_slice(row: dict, volume: Volume, where: str) -> int:
    """The slice index of a table row in voxels: from its sop_instance_uid, else its 'slice' column."""
    if row.get("sop_instance_uid"):
        uids = _volume_uids(volume, where)
        sop = str(row["sop_instance_uid"])
        if sop not in uids:
            raise DicomSeriesError(
                f"{where}: sop_instance_uid {sop} matches no slice of series "
                f"{volume.meta.get('series_uid', '?')} ((0008,0018) SOP Instance UID); the box "
                "belongs to another series or the folder lacks that slice"
            )
        return uids.index(sop)
    if row.get("slice") not in ("", None):
        kf = _number(row, "slice", where)
        k = int(kf)
        if k != kf or not 0 <= k < volume.shape[0]:
            raise DicomSeriesError(
                f"{where}: slice = {row['slice']} matches no slice; expected an integer index "
                f"0..{volume.shape[0] - 1} counted from the feet (volume.hu[k])"
            )
        return k
    raise DicomSeriesError(f"{where}: a box in voxels needs a 'slice' index or a 'sop_instance_uid'")


# ----------------------------------------------------------------- one entry point
def read_boxes(source: str | os.PathLike, volume: Volume, **options: Any) -> TumourBoxes:
    """Read tumour boxes from a folder of XML files, one XML file, or a CSV/JSON table.

    Parameters
    ----------
    source : path
        A folder of PASCAL-VOC ``.xml`` files or one of them (see
        :func:`read_voc_boxes`), or a ``.csv``/``.json`` table (see
        :func:`read_box_table`).
    volume : Volume
        The loaded series.
    **options
        Passed to the reader (``index_base`` or ``z_tolerance_mm``).

    Returns
    -------
    TumourBoxes

    Raises
    ------
    DicomSeriesError
        See the two readers.
    """
    p = Path(source)
    if p.is_dir() or p.suffix.lower() == ".xml":
        return read_voc_boxes(p, volume, **options)
    return read_box_table(p, volume, **options)


def find_annotations(dicom_dir: str | os.PathLike) -> Path | None:
    """The tumour-box folder that belongs with a series folder, or ``None``.

    Looks for ``tumour-boxes/`` inside ``dicom_dir`` and beside it (the layout of a
    fetched case and of the Lung-PET-CT-Dx download), for a folder holding at
    least one ``.xml`` file.

    Parameters
    ----------
    dicom_dir : path
        The folder the chapter loads.

    Returns
    -------
    pathlib.Path or None

    Examples
    --------
    >>> find_annotations("/nonexistent/series") is None
    True
    """
    d = Path(dicom_dir)
    for cand in (d / ANNOTATION_FOLDER, d.parent / ANNOTATION_FOLDER):
        if cand.is_dir() and any(cand.glob("*.xml")):
            return cand
    return None


def boxes_from_mask(mask: np.ndarray, volume: Volume, *, label: str = "A", source: str = "a mask") -> TumourBoxes:
    """One box per slice around a mask: what an annotator would draw from a known lesion.

    The book uses it on the synthetic sample, whose tumour is known voxel by
    voxel, to run exactly the steps it runs on real boxes.

    Parameters
    ----------
    mask : ndarray of bool, shape (z, y, x)
    volume : Volume
        Supplies shape, spacing, slice positions and UIDs.
    label : str
        Lesion name given to every box.
    source : str
        Recorded as the boxes' source.

    Returns
    -------
    TumourBoxes

    Raises
    ------
    ValueError
        Shape differs from the volume's.
    DicomSeriesError
        The mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((4, 10, 10), np.int16), spacing=(2.0, 1.0, 1.0))
    >>> m = np.zeros(v.shape, bool); m[1, 2:4, 3:7] = True; m[2, 5, 5] = True
    >>> [(b.slice_index, b.rows, b.cols) for b in boxes_from_mask(m, v)]
    [(1, (2, 3), (3, 6)), (2, (5, 5), (5, 5))]
    """
    mask = as_mask(mask, shape=volume.shape)
    uids = list(volume.meta.get("sop_instance_uids") or [])
    boxes = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        rows = np.flatnonzero(mask[k].any(axis=1))
        cols = np.flatnonzero(mask[k].any(axis=0))
        boxes.append(_place(volume, int(k), (rows[0], rows[-1]), (cols[0], cols[-1]), label=label,
                            sop=uids[k] if len(uids) == volume.shape[0] else "", source=source))
    return _result(boxes, volume, source)


def case_boxes(dicom_dir: str | os.PathLike, volume: Volume, *,
               truth_mask: np.ndarray | None = None) -> tuple[TumourBoxes | None, str]:
    """The tumour boxes a chapter shows for the folder it reads, and one line saying where they come from.

    The annotation files found by :func:`find_annotations` (files of another
    series left out silently: the line says how many); else, when the caller
    knows the tumour (the bundled sample's ground truth), boxes drawn around it
    with :func:`boxes_from_mask`; else ``None``.

    Parameters
    ----------
    dicom_dir : path
        The series folder the chapter loaded.
    volume : Volume
        The volume loaded from it.
    truth_mask : ndarray of bool, optional
        A known tumour (the sample's), used when there are no annotation files.

    Returns
    -------
    boxes : TumourBoxes or None
    description : str
        One line for the reader ("10 boxes from tumour-boxes/ ...", or why there are none).

    Notes
    -----
    Annotation files that cannot be used (broken, or all of another series) give
    ``None`` and the error's message as the description, so a chapter says why
    and carries on; :func:`read_boxes` raises instead.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 8, 8), np.int16), spacing=(2, 1, 1))
    >>> case_boxes("/nonexistent/series", v)[0] is None
    True
    """
    folder = find_annotations(dicom_dir)
    if folder is not None:
        try:
            boxes = read_voc_boxes(folder, volume, unmatched="ignore")
        except DicomSeriesError as exc:  # shown to the reader, who can carry on without boxes
            return None, f"the annotation files in {folder} cannot be used for this scan: {exc}"
        text = f"{len(boxes)} tumour box(es) from {folder.name}/ (PASCAL-VOC XML files named by SOP Instance UID)"
        if boxes.unmatched:
            text += (f"; {len(boxes.unmatched)} more file(s) there name slices of another series "
                     "(another reconstruction) and are left out")
        return boxes, text
    if truth_mask is not None and np.any(truth_mask):
        boxes = boxes_from_mask(truth_mask, volume, source="the ground-truth tumour")
        return boxes, (f"{len(boxes)} tumour box(es) drawn around the ground-truth tumour (no annotation files: "
                       "the sample's generator knows the tumour voxel by voxel)")
    return None, (f"no tumour annotations for this scan (no {ANNOTATION_FOLDER}/ folder in or beside "
                  f"{Path(dicom_dir).name})")


def boxes_table(boxes: TumourBoxes, volume: Volume) -> Any:
    """One row per box: the three "slice numbers" a reader may mean, and the box in pixels and mm.

    Parameters
    ----------
    boxes : TumourBoxes
    volume : Volume
        The volume the boxes were placed on; its ``meta["files"]`` (z order, as
        :func:`helpers.load_series` keeps them) give each slice's file and its
        (0020,0013) Instance Number.

    Returns
    -------
    pandas.DataFrame
        Columns ``k`` (array index, feet to head), ``z_mm``, ``instance_number``
        (None when the file cannot be read), ``file``, ``rows``, ``cols``
        (first-last, inclusive), ``width_mm``, ``height_mm``, ``label``.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 8, 8), np.int16), spacing=(2.0, 0.5, 0.5))
    >>> m = np.zeros(v.shape, bool); m[1, 2:4, 3:7] = True
    >>> boxes_table(boxes_from_mask(m, v), v)[["k", "z_mm", "rows", "cols", "width_mm", "height_mm"]].to_dict("records")
    [{'k': 1, 'z_mm': 2.0, 'rows': '2-3', 'cols': '3-6', 'width_mm': 2.0, 'height_mm': 1.0}]
    """
    import pandas as pd
    import pydicom

    files = list(volume.meta.get("files") or [])
    rows = []
    for b in boxes:
        f = files[b.slice_index] if len(files) == volume.shape[0] else None
        inst = None
        if f is not None:
            try:
                value = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["InstanceNumber"]).get(
                    "InstanceNumber")
                inst = int(value) if value is not None else None
            except Exception:  # a zip member, a moved file: the number is only informative
                inst = None
        rows.append({
            "k": b.slice_index,
            "z_mm": round(b.z_mm, 2),
            "instance_number": inst,
            "file": str(f).replace("\\", "/").rsplit("/", 1)[-1] if f is not None else "",
            "rows": f"{b.rows[0]}-{b.rows[1]}",
            "cols": f"{b.cols[0]}-{b.cols[1]}",
            "width_mm": round((b.cols[1] - b.cols[0] + 1) * volume.spacing[2], 1),
            "height_mm": round((b.rows[1] - b.rows[0] + 1) * volume.spacing[1], 1),
            "label": b.label,
        })
    return pd.DataFrame(rows)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes on the same slice (0 when on different slices).

    Examples
    --------
    >>> a = Box(3, 0.0, (0, 9), (0, 9)); b = Box(3, 0.0, (5, 14), (0, 9))
    >>> round(box_iou(a, b), 3)      # 50 of 150 pixels
    0.333
    """
    if a.slice_index != b.slice_index:
        return 0.0
    ir = max(0, min(a.rows[1], b.rows[1]) - max(a.rows[0], b.rows[0]) + 1)
    ic = max(0, min(a.cols[1], b.cols[1]) - max(a.cols[0], b.cols[0]) + 1)

    def area(x: Box) -> int:
        return (x.rows[1] - x.rows[0] + 1) * (x.cols[1] - x.cols[0] + 1)

    inter = ir * ic
    return inter / float(area(a) + area(b) - inter)


def sibling_series(dicom_dir: str | os.PathLike, volume: Volume, *, max_series: int = 4) -> list[Volume]:
    """The other CT series stored beside ``dicom_dir`` (in its parent folder), loaded.

    For placing annotations drawn on another reconstruction of the same study
    (``read_voc_boxes(..., other_series=sibling_series(folder, vol))``).

    Parameters
    ----------
    dicom_dir : path
        The series folder the volume was loaded from.
    volume : Volume
        That volume (its series is left out).
    max_series : int
        Load at most this many other series (largest first).

    Returns
    -------
    list of Volume
        Empty when the parent folder holds no other series (or cannot be read).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> sibling_series("/nonexistent/series", Volume(np.zeros((2, 2, 2)), spacing=(1, 1, 1)))
    []
    """
    from .io import list_series, load_series

    parent = Path(dicom_dir).parent
    if not parent.is_dir():
        return []
    try:
        table = list_series(parent)
    except DicomSeriesError:
        return []
    out: list[Volume] = []
    for info in table:
        if info.series_uid == volume.meta.get("series_uid") or info.modality != "CT":
            continue
        if len(out) >= max_series:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeriesWarning)
            try:
                out.append(load_series(parent, series_uid=info.series_uid))
            except DicomSeriesError:
                continue
    return out
