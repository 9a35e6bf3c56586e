"""Exercise checkers: a resident's answer in, a clear verdict out.

Every checker returns a :class:`Feedback` that shows as one short message in a
notebook: **Right** (and why it matters), **Not yet** (what is wrong, with the
numbers) plus a hint, or **Not answered yet** while the cell still holds ``...``.
A checker never raises on a wrong answer, so the book builds with the exercise
cells left blank.

Chapter authors: add a checker per exercise at the end of this file, built on
:func:`check_number`, :func:`check_array` or :func:`check_choice`, with a doctest
and a test in ``tests/test_checks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from ..hu import MAX_BOUND_HU, MIN_BOUND_HU

__all__ = [
    "Feedback",
    "check_number",
    "check_array",
    "check_choice",
    "check_rescale",
    "check_slice_spacing",
    "check_sorted_positions",
    "check_hu",
    "check_window",
    "check_unit_range",
    "check_resampled_shape",
    "check_memory_mb",
    "check_mask_order",
    "check_volume_ml",
    "check_dice",
    "check_query_keys",
    "check_pseudonym",
    "check_annotated_slices",
    "check_axial_diameter",
]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer.

    Attributes
    ----------
    ok : bool or None
        True right, False wrong, None not answered yet.
    message : str
        What is right or what is wrong.
    hint : str
        A nudge shown with a wrong or missing answer.
    """

    ok: bool | None
    message: str
    hint: str = ""

    @property
    def label(self) -> str:
        return {True: "Right", False: "Not yet", None: "Not answered yet"}[self.ok]

    def __bool__(self) -> bool:
        return bool(self.ok)

    def __repr__(self) -> str:
        text = f"{'✔' if self.ok else '✘' if self.ok is False else '…'} {self.label}: {self.message}"
        if self.hint and not self.ok:
            text += f"\n  Hint: {self.hint}"
        return text

    def _repr_html_(self) -> str:
        colour = {True: "#1a7f37", False: "#b35900", None: "#57606a"}[self.ok]
        hint = f"<br><em>Hint:</em> {escape(self.hint)}" if self.hint and not self.ok else ""
        return (
            f'<div class="exercise-feedback" style="border-left:4px solid {colour};padding:0.3em 0.8em">'
            f"<strong style=\"color:{colour}\">{self.label}:</strong> {escape(self.message)}{hint}</div>"
        )


def _unanswered(answer) -> bool:
    return answer is None or answer is Ellipsis


def _missing(hint: str) -> Feedback:
    return Feedback(None, "replace the ... with your answer and run the cell again.", hint)


def check_number(answer, expected: float, *, rtol: float = 0.02, atol: float = 0.0,
                 unit: str = "", hint: str = "", why: str = "") -> Feedback:
    """Check a number against the expected value within a tolerance.

    Parameters
    ----------
    answer : float or ...
        The resident's value (``...`` or ``None`` = not answered).
    expected : float
        The right value.
    rtol, atol : float
        Accepted relative and absolute error (``|a - e| <= atol + rtol * |e|``).
    unit : str
        Unit shown in the message.
    hint, why : str
        Hint for a wrong answer; sentence added to a right one.

    Returns
    -------
    Feedback

    Examples
    --------
    >>> check_number(2.5, 2.5, unit="mm")
    ✔ Right: 2.5 mm.
    >>> check_number(3, 2.5, unit="mm", hint="Use the positions.").ok
    False
    >>> check_number(..., 2.5).ok is None
    True
    """
    if _unanswered(answer):
        return _missing(hint)
    try:
        value = float(np.asarray(answer).item())
    except (TypeError, ValueError):
        return Feedback(False, f"expected one number, got {type(answer).__name__} {answer!r:.60}.", hint)
    u = f" {unit}" if unit else ""
    if abs(value - expected) <= atol + rtol * abs(expected):
        return Feedback(True, f"{value:.4g}{u}." + (f" {why}" if why else ""))
    return Feedback(False, f"you have {value:.4g}{u}; the expected value is {expected:.4g}{u}.", hint)


def check_array(answer, expected, *, atol: float = 1e-3, name: str = "the array",
                hint: str = "", why: str = "") -> Feedback:
    """Check an array: shape first, then values within ``atol``.

    Parameters
    ----------
    answer : array_like or ...
    expected : array_like
    atol : float
        Largest accepted absolute difference per element.
    name : str
        What the array is, for the message.
    hint, why : str

    Returns
    -------
    Feedback

    Examples
    --------
    >>> check_array([1, 2], [1, 2]).ok
    True
    >>> print(check_array([1, 2, 3], [1, 2], name="z"))
    ✘ Not yet: z has shape (3,); expected (2,).
    """
    if _unanswered(answer):
        return _missing(hint)
    a = np.asarray(answer)
    e = np.asarray(expected)
    if a.shape != e.shape:
        return Feedback(False, f"{name} has shape {a.shape}; expected {e.shape}.", hint)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        return Feedback(False, f"{name} should hold numbers; it has dtype {a.dtype}.", hint)
    diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
    bad = int(np.count_nonzero(diff > atol))
    if bad == 0:
        return Feedback(True, f"{name}: all {e.size} values match." + (f" {why}" if why else ""))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return Feedback(
        False,
        f"{bad} of {e.size} values of {name} differ; the worst at index {tuple(int(i) for i in worst)}: "
        f"{a[worst]:.5g} instead of {e[worst]:.5g}.",
        hint,
    )


def check_choice(answer, expected, *, options=None, hint: str = "", why: str = "") -> Feedback:
    """Check a choice (a string or an integer) among options.

    Examples
    --------
    >>> check_choice("nearest", "nearest", options=["linear", "nearest"]).ok
    True
    >>> check_choice("cubic", "nearest", options=["linear", "nearest"]).message
    "'cubic' is not one of ['linear', 'nearest']."
    """
    if _unanswered(answer):
        return _missing(hint)
    norm = (lambda v: v.strip().lower()) if isinstance(answer, str) else (lambda v: v)
    if options is not None and norm(answer) not in [norm(o) if isinstance(o, str) else o for o in options]:
        return Feedback(False, f"{answer!r} is not one of {list(options)}.", hint)
    if norm(answer) == (norm(expected) if isinstance(expected, str) else expected):
        return Feedback(True, f"{answer!r}." + (f" {why}" if why else ""))
    return Feedback(False, f"{answer!r} is not the best choice here.", hint)


# ------------------------------------------------------------------ chapter 1: load
def check_rescale(answer, dataset) -> Feedback:
    """Exercise 1: the ``(slope, intercept)`` of one file.

    Parameters
    ----------
    answer : tuple of 2 float or ...
    dataset : pydicom.Dataset
        The file the resident read.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.RescaleSlope = 1; ds.RescaleIntercept = -1024
    >>> check_rescale((1, -1024), ds).ok
    True
    >>> check_rescale((-1024, 1), ds).ok
    False
    """
    hint = "ds.RescaleSlope is tag (0028,1053) and ds.RescaleIntercept is (0028,1052); answer (slope, intercept)."
    expected = (float(dataset.RescaleSlope), float(dataset.RescaleIntercept))
    return check_array(answer, expected, atol=1e-6, name="(slope, intercept)", hint=hint,
                       why="HU = stored value × slope + intercept, for this file.")


def check_slice_spacing(answer, volume) -> Feedback:
    """Exercise 1: the distance between neighbouring slices, in mm, from the positions.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 2, 2)), spacing=(2.5, 0.7, 0.7))
    >>> check_slice_spacing(2.5, v).ok
    True
    """
    steps = np.diff(np.sort(np.asarray(volume.slice_positions)))
    expected = float(np.median(steps))
    return check_number(
        answer, expected, rtol=0.01, unit="mm",
        hint="Sort the z values of ImagePositionPatient (volume.slice_positions), take np.diff, then the median. "
             "(0018,0050) Slice Thickness is the thickness, not the spacing.",
        why="The spacing comes from the positions; Slice Thickness can differ from it.",
    )


def check_sorted_positions(answer, volume) -> Feedback:
    """Exercise 1: slice positions sorted feet to head (ascending).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 2, 2)), spacing=(2.0, 1, 1))
    >>> check_sorted_positions([0, 2, 4], v).ok
    True
    >>> check_sorted_positions([4, 2, 0], v).ok
    False
    """
    expected = np.sort(np.asarray(volume.slice_positions))
    return check_array(
        answer, expected, atol=1e-3, name="the positions",
        hint="Use the z coordinate of (0020,0032) Image Position (Patient) and sort it ascending (np.sort).",
        why="Position, not Instance Number or file name, gives the anatomical order.",
    )


# ------------------------------------------------------------- chapter 2: normalize
def check_hu(answer, stored, slope: float, intercept: float) -> Feedback:
    """Exercise 2: stored values to HU by hand, in floating point.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([0, 1024, 3000], np.uint16)
    >>> check_hu(s * 1.0 - 1024, s, 1, -1024).ok
    True
    >>> check_hu(s - 1024, s, 1, -1024).ok  # uint16 arithmetic wraps around
    False
    """
    expected = np.asarray(stored, dtype=np.float64) * slope + intercept
    return check_array(
        answer, expected, atol=0.5, name="your HU values",
        hint="Convert to float first (stored.astype(np.float32)); unsigned 16-bit arithmetic wraps "
             "below zero. HU = stored × slope + intercept.",
        why="Air is about -1000 HU, water 0, dense bone above +700.",
    )


def check_window(answer, hu, level: float, width: float) -> Feedback:
    """Exercise 2: a window/level by hand, mapped to ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-2000.0, -600, 1000])
    >>> check_window(np.array([0.0, 0.5, 1.0]), hu, -600, 1500).ok
    True
    """
    hu = np.asarray(hu, dtype=np.float64)
    lo, hi = level - width / 2, level + width / 2
    expected = np.clip((hu - lo) / (hi - lo), 0, 1)
    return check_array(
        answer, expected, atol=1e-3, name="your windowed image",
        hint=f"low = level - width/2 = {lo:g}, high = level + width/2 = {hi:g}; "
             "(hu - low) / (high - low), then np.clip to [0, 1].",
        why="Everything below the window is black, above it white.",
    )


def check_unit_range(answer, hu, *, low: float = MIN_BOUND_HU, high: float = MAX_BOUND_HU) -> Feedback:
    """Exercise 2: clip to ``[low, high]`` HU and scale to ``[0, 1]`` for a model.

    Examples
    --------
    >>> import numpy as np
    >>> check_unit_range(np.array([0.0, 1.0]), np.array([-1200.0, 500])).ok
    True
    """
    hu = np.asarray(hu, dtype=np.float64)
    expected = (np.clip(hu, low, high) - low) / (high - low)
    return check_array(
        answer, expected, atol=1e-3, name="your scaled array",
        hint=f"np.clip(hu, {low:g}, {high:g}), subtract {low:g}, divide by {high - low:g}.",
        why="The same fixed range for every scan keeps the model's inputs comparable.",
    )


# -------------------------------------------------------------- chapter 3: resample
def check_resampled_shape(answer, volume, spacing=(1.0, 1.0, 1.0)) -> Feedback:
    """Exercise 3: the array shape after resampling to ``spacing`` (extent / spacing, rounded).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((10, 100, 100)), spacing=(2.5, 0.7, 0.7))
    >>> check_resampled_shape((25, 70, 70), v).ok
    True
    """
    expected = tuple(int(round(n * s / t)) for n, s, t in zip(volume.shape, volume.spacing, spacing))
    if _unanswered(answer):
        return _missing("")
    try:
        got = tuple(int(a) for a in answer)
    except TypeError:
        return Feedback(False, f"expected a tuple of 3 integers (z, y, x), got {answer!r}.", "")
    hint = ("Physical extent = shape × spacing (mm) per axis; new shape = extent / new spacing, rounded. "
            f"Here the extent is {tuple(round(e, 1) for e in volume.extent_mm)} mm.")
    if len(got) == 3 and all(abs(g - e) <= 1 for g, e in zip(got, expected)):
        return Feedback(True, f"{got} (z, y, x). Rounding can differ by one voxel between libraries.")
    return Feedback(False, f"you have {got}; expected about {expected} (z, y, x).", hint)


def check_memory_mb(answer, shape, dtype="float32") -> Feedback:
    """Exercise 3: memory of an array in MB (10^6 bytes): voxels × bytes per voxel.

    Examples
    --------
    >>> check_memory_mb(4.0, (10, 100, 1000), "float32").ok
    True
    """
    expected = float(np.prod(shape)) * np.dtype(dtype).itemsize / 1e6
    return check_number(
        answer, expected, rtol=0.05, unit="MB",
        hint=f"Number of voxels (np.prod(shape)) × {np.dtype(dtype).itemsize} bytes for {dtype}, / 1e6.",
        why="Check this before resampling a whole scan on a laptop.",
    )


def check_mask_order(answer) -> Feedback:
    """Exercise 3: interpolation order for a label mask (0, nearest).

    Examples
    --------
    >>> check_mask_order(0).ok
    True
    >>> check_mask_order(1).ok
    False
    """
    hint = "Linear interpolation between label 1 and label 2 invents label 1.5 (or 1 at an edge of 2)."
    if isinstance(answer, str):
        answer = {"nearest": 0, "linear": 1, "cubic": 3}.get(answer.strip().lower(), answer)
    return check_choice(answer, 0, options=[0, 1, 3], hint=hint,
                        why="Nearest neighbour keeps labels as they are (no 0.5 voxels).")


# ---------------------------------------------------------- chapter 7: segmentation
def check_volume_ml(answer, mask, spacing) -> Feedback:
    """Exercise 7: volume of a mask in mL: voxel count × voxel volume (mm³) / 1000.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((10, 10, 10), bool)
    >>> check_volume_ml(2.0, m, (2.0, 1.0, 1.0)).ok
    True
    """
    expected = float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0
    return check_number(
        answer, expected, rtol=0.01, unit="mL",
        hint="np.count_nonzero(mask) × np.prod(spacing) gives mm³; 1 mL = 1000 mm³.",
        why="A healthy adult's lungs hold several litres at full inspiration.",
    )


def check_dice(answer, a, b) -> Feedback:
    """Exercise 7: Dice = 2 |A ∩ B| / (|A| + |B|).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([1, 1, 0, 0], bool); b = np.array([1, 0, 1, 0], bool)
    >>> check_dice(0.5, a, b).ok
    True
    """
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    denom = a.sum() + b.sum()
    expected = 1.0 if denom == 0 else 2.0 * np.logical_and(a, b).sum() / denom
    return check_number(
        answer, float(expected), atol=1e-3, rtol=0,
        hint="np.logical_and(a, b).sum() is |A ∩ B|; a.sum() and b.sum() are |A| and |B|.",
        why="1 is perfect overlap, 0 none; a Dice of 0.95 can still hide a missed tumour.",
    )


# ------------------------------------------------- chapter 4: histograms (added by the display/mesh engineer)
def check_laa_percent(answer, volume, lung_mask, *, threshold_hu: float = -950.0) -> Feedback:
    """Exercise 4: % of lung voxels below -950 HU (low-attenuation area, LAA-950).

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-1000, -900, -960, 40]); lungs = np.array([1, 1, 2, 0])
    >>> check_laa_percent(200 / 3, hu, lungs).ok
    True
    """
    hu = getattr(volume, "hu", volume)
    inside = np.asarray(lung_mask) > 0
    expected = 100.0 * np.count_nonzero(np.asarray(hu)[inside] < threshold_hu) / max(np.count_nonzero(inside), 1)
    return check_number(
        answer, expected, rtol=0.01, atol=0.01, unit="%",
        hint="Take vol.hu[lungs > 0], count the values < -950 and divide by how many there are (x 100).",
        why="Below 5-6 % is usual in healthy lungs on thin soft-kernel slices; the number moves with "
            "kernel, slice thickness and inspiration, so compare like with like.",
    )


def check_band_percent(answer, volume, mask, band=(-190.0, -30.0)) -> Feedback:
    """Exercise 4: % of the masked voxels whose HU lies in ``band`` (inclusive).

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-100, -50, 40, 60]); body = np.array([1, 1, 1, 1], bool)
    >>> check_band_percent(50, hu, body).ok
    True
    """
    hu = np.asarray(getattr(volume, "hu", volume))
    m = np.asarray(mask).astype(bool)
    values = hu[m]
    lo, hi = band
    expected = 100.0 * np.count_nonzero((values >= lo) & (values <= hi)) / max(values.size, 1)
    return check_number(
        answer, expected, rtol=0.01, atol=0.01, unit="%",
        hint=f"Take the voxels inside the mask, count those with {lo:g} <= HU <= {hi:g}, divide by the total (x 100).",
        why="Fat is easy to measure on CT because its band barely overlaps any other tissue.",
    )


# ------------------------------------------------------ chapter 5: montage and views
def check_aspect(answer, volume, plane: str = "coronal") -> Feedback:
    """Exercise 5: ``aspect`` for ``imshow`` of a reslice = row spacing / column spacing.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((3, 4, 4)), spacing=(2.5, 0.7, 0.7))
    >>> check_aspect(2.5 / 0.7, v).ok
    True
    >>> check_aspect(0.7 / 2.5, v).ok
    False
    """
    sz, sy, sx = volume.spacing
    rows_cols = {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]
    expected = rows_cols[0] / rows_cols[1]
    return check_number(
        answer, expected, rtol=0.01,
        hint="A coronal image's rows are slices (spacing[0] mm apart) and its columns are x pixels "
             "(spacing[2] mm): aspect = height of a pixel / its width.",
        why="With it the body keeps its real proportions.",
    )


def check_slice_at(answer, volume, position_mm: float) -> Feedback:
    """Exercise 5: index of the slice nearest a position along the slice normal (mm).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.volume import Volume
    >>> v = Volume(np.zeros((5, 2, 2)), spacing=(2.5, 1, 1), origin=(0, 0, -10))
    >>> check_slice_at(2, v, -5.2).ok
    True
    """
    expected = int(np.argmin(np.abs(np.asarray(volume.slice_positions) - position_mm)))
    return check_choice(
        answer, expected,
        hint="vol.slice_positions holds each slice's position in mm; np.argmin of the distance "
             "to the position gives the index.",
        why="Index and position differ: the index depends on where the scan starts and on the slice spacing.",
    )


# ------------------------------------------------------------- chapter 6: meshes
def check_mesh_budget(answer, max_triangles: int, *, level: float | None = None) -> Feedback:
    """Exercise 6: a :class:`helpers.mesh.Mesh` within a triangle budget (and at a level).

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.mesh import Mesh
    >>> m = Mesh(np.eye(3), [[0, 1, 2]], {"level": 300.0})
    >>> check_mesh_budget(m, 10, level=300).ok
    True
    >>> check_mesh_budget(m, 0).ok
    False
    """
    if _unanswered(answer):
        return _missing("Call surface_mesh(vol, level=..., max_triangles=...).")
    n = getattr(answer, "n_triangles", None)
    if n is None:
        return Feedback(False, f"expected a Mesh from surface_mesh, got {type(answer).__name__}.",
                        "surface_mesh returns a Mesh; keep the returned object.")
    if level is not None and abs(float(answer.meta.get("level", np.nan)) - level) > 1e-6:
        return Feedback(False, f"this mesh was made at level {answer.meta.get('level')}; the exercise asks {level:g}.",
                        "Pass level= to surface_mesh.")
    if n > max_triangles:
        return Feedback(False, f"{n:,} triangles is above the budget of {max_triangles:,}.",
                        "Pass max_triangles= to surface_mesh.")
    if n == 0:
        return Feedback(False, "the mesh is empty.", "Check the level: is it inside the data range?")
    return Feedback(True, f"{n:,} triangles, within {max_triangles:,}. At ~25 bytes per triangle that is "
                          f"about {n * 25 / 1e6:.1f} MB of web page.")


# ------------------------------------------------------------- chapter 8: cohort
def check_failed_cases(answer, qc) -> Feedback:
    """Exercise 8: the case id(s) the QC table marks as failed (a string or a list of strings).

    Parameters
    ----------
    answer : str, list of str or ...
        Case id(s).
    qc : pandas.DataFrame
        The QC table of :func:`helpers.cohort.run_cohort` (columns ``case_id``, ``status``).

    Examples
    --------
    >>> import pandas as pd
    >>> qc = pd.DataFrame({"case_id": ["a", "b"], "status": ["done", "failed"]})
    >>> check_failed_cases("b", qc).ok, check_failed_cases(["a"], qc).ok
    (True, False)
    """
    if _unanswered(answer):
        return _missing("Filter the table: qc[qc['status'] == 'failed']['case_id'].")
    got = {answer} if isinstance(answer, str) else {str(a) for a in np.atleast_1d(np.asarray(answer, dtype=object))}
    expected = set(qc.loc[qc["status"] == "failed", "case_id"].astype(str))
    if got == expected:
        return Feedback(True, f"{', '.join(sorted(expected)) or 'none'}. The run went on without "
                              "them; the error column says what to fix, and the next run tries them again.")
    return Feedback(False, f"you have {sorted(got)}; the failed case(s): {len(expected)}.",
                    "The status column is 'done', 'skipped' or 'failed'.")


#: Voxel budget of the chapter 8 crop exercise.
CROP_BUDGET_VOXELS = 300_000
#: Share of lung voxels (%) a crop may cut off and still count as keeping the lungs.
CROP_MAX_OUTSIDE_PCT = 0.5


def check_crop_keeps_lungs(answer, *, budget: int = CROP_BUDGET_VOXELS,
                           max_outside_pct: float = CROP_MAX_OUTSIDE_PCT) -> Feedback:
    """Exercise 8: a :class:`helpers.cohort.CaseResult` whose crop keeps the lungs within a voxel budget.

    Parameters
    ----------
    answer : CaseResult or ...
        From ``preprocess_case(..., mode="crop")``.
    budget : int, default 300000
        Largest accepted number of voxels of the cropped array.
    max_outside_pct : float, default 0.5
        Largest accepted share (%) of lung voxels outside the crop.

    Examples
    --------
    >>> import numpy as np
    >>> from helpers.cohort import CaseResult
    >>> from helpers.volume import Volume
    >>> r = CaseResult(Volume(np.zeros((8, 8, 8)), spacing=(4, 4, 4)), np.zeros((8, 8, 8), np.uint8),
    ...                {"lung_outside_pct": 0.0})
    >>> check_crop_keeps_lungs(r).ok
    True
    """
    if _unanswered(answer):
        return _missing("Call preprocess_case(case, spacing=(4, 4, 4), shape=(z, y, x)) with a larger shape.")
    qc = getattr(answer, "qc", None)
    image = getattr(answer, "image", None)
    if qc is None or image is None:
        return Feedback(False, f"expected the result of preprocess_case, got {type(answer).__name__}.",
                        "Keep what preprocess_case returns.")
    n = int(np.prod(image.shape))
    outside = float(qc.get("lung_outside_pct", np.nan))
    if not outside <= max_outside_pct:
        return Feedback(False, f"the crop {tuple(image.shape)} still cuts off {outside:.1f}% of the lung voxels.",
                        "Find the lungs' extent along each axis (in voxels) and choose a shape at least that large.")
    if n > budget:
        return Feedback(False, f"the lungs fit, but {tuple(image.shape)} is {n:,} voxels, above the budget of "
                               f"{budget:,}.", "Shrink the axes where the lungs leave room; each axis is independent.")
    return Feedback(True, f"{tuple(image.shape)}: {n:,} voxels, {outside:.2f}% of the lungs outside. A shape "
                          "fitted to the lungs of the whole cohort keeps every case without wasting memory.")


# ------------------------------------------------------------------ chapter 0: PACS
def check_query_keys(answer, *, patient_id: str, study_date: str, modality: str = "CT") -> Feedback:
    """Exercise 0: the C-FIND / QIDO-RS keys for "this patient's CT studies in that year".

    Parameters
    ----------
    answer : dict or ...
        Keyword -> value, as passed to ``c_find(pacs, "STUDY", **answer)``.
    patient_id : str
        The patient's (0010,0020) Patient ID.
    study_date : str
        The study's (0008,0020) Study Date, ``YYYYMMDD``; the range must cover it.
    modality : str
        The modality to ask for in (0008,0061) Modalities in Study.

    Examples
    --------
    >>> check_query_keys({"PatientID": "P1", "StudyDate": "20170101-20171231", "ModalitiesInStudy": "CT"},
    ...                  patient_id="P1", study_date="20170315").ok
    True
    >>> check_query_keys({"PatientID": "P1", "StudyDate": "2017"}, patient_id="P1", study_date="20170315").ok
    False
    """
    import re

    hint = ('A dict like {"PatientID": ..., "StudyDate": "YYYYMMDD-YYYYMMDD", "ModalitiesInStudy": "CT"}: '
            "the date is a range, first-last day of the year.")
    if _unanswered(answer):
        return _missing(hint)
    if not isinstance(answer, dict):
        return Feedback(False, f"expected a dict of keyword -> value, got {type(answer).__name__}.", hint)
    if str(answer.get("PatientID", "")) != patient_id:
        return Feedback(False, f"PatientID is {answer.get('PatientID')!r}; the query must name the patient.", hint)
    rng = str(answer.get("StudyDate", ""))
    m = re.fullmatch(r"(\d{8})-(\d{8})", rng)
    if not m:
        return Feedback(False, f"StudyDate {rng!r} is not a range YYYYMMDD-YYYYMMDD.", hint)
    if not (m.group(1) <= study_date <= m.group(2) and m.group(1)[:4] == m.group(2)[:4] == study_date[:4]):
        return Feedback(False, f"the range {rng} does not cover the study's year {study_date[:4]} (only).", hint)
    mod = str(answer.get("ModalitiesInStudy", answer.get("Modality", "")))
    if mod.upper() != modality.upper():
        return Feedback(False, f"ModalitiesInStudy is {mod!r}; ask for {modality} only.",
                        "At STUDY level the key is ModalitiesInStudy; Modality belongs to the SERIES level.")
    return Feedback(True, "the same keys work in C-FIND and as QIDO-RS query parameters.")


def check_pseudonym(answer, mapping) -> Feedback:
    """Exercise 0: the new Patient ID of the de-identified copy, read from the mapping table.

    Parameters
    ----------
    answer : str or ...
    mapping : path
        The CSV written by :func:`helpers.deid.deidentify`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "m.csv"
    ...     _ = p.write_text("original_PatientID,new_PatientID\\nA1,ZZ9\\n")
    ...     ok = check_pseudonym("ZZ9", p).ok
    >>> ok
    True
    """
    import csv
    from pathlib import Path

    hint = "Read the CSV with pandas.read_csv(mapping) and look at the new_PatientID column."
    if _unanswered(answer):
        return _missing(hint)
    with Path(mapping).open(newline="") as fh:
        new = {row["new_PatientID"] for row in csv.DictReader(fh)}
    if str(answer).strip() in new:
        return Feedback(True, f"{answer!r}. Whoever holds the mapping can undo the de-identification: keep "
                              "it apart from the data, like a key.")
    return Feedback(False, f"{answer!r} is not the new Patient ID.", hint)


# ------------------------------------------------- chapter 7b: the tumour (added by the tumour engineer)
def check_annotated_slices(answer, boxes) -> Feedback:
    """Exercise 7b: how many slices a lesion spans, its first and last slice included.

    Parameters
    ----------
    answer : int or ...
        The resident's count.
    boxes : helpers.annotations.TumourBoxes
        The lesion's boxes (their first and last slice index).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> boxes = SimpleNamespace(slice_indices=[97, 98, 112])
    >>> check_annotated_slices(16, boxes).ok, check_annotated_slices(15, boxes).ok
    (True, False)
    """
    ks = list(boxes.slice_indices)
    expected = ks[-1] - ks[0] + 1
    hint = (f"The first annotated slice is {ks[0]} and the last {ks[-1]}; count both ends "
            "(last - first + 1).")
    if not _unanswered(answer):
        try:
            if float(np.asarray(answer).item()) == expected - 1:
                hint = (f"{expected - 1} = {ks[-1]} - {ks[0]} counts the gaps between slices, not the slices: "
                        "slices 97 through 112 are 16 slices, not 15 (a fencepost error).")
        except (TypeError, ValueError):
            pass
    return check_number(answer, float(expected), rtol=0, atol=0, unit="slices", hint=hint,
                        why="A box on the first and the last slice means a lesion on every slice in between.")


def check_axial_diameter(answer, endpoints, spacing) -> Feedback:
    """Exercise 7b: the length in mm of a diameter given by its two ``(row, col)`` end points.

    Parameters
    ----------
    answer : float or ...
        The resident's length in mm.
    endpoints : array-like, shape (2, 2)
        ``(row, col)`` of both ends (``TumourRegion.endpoints``).
    spacing : tuple of 3 float
        ``(z, y, x)`` voxel size in mm: rows are ``spacing[1]`` apart, columns ``spacing[2]``.

    Examples
    --------
    >>> check_axial_diameter(5.0, [[0, 0], [3, 4]], (5.0, 1.0, 1.0)).ok
    True
    >>> check_axial_diameter(5.0, [[0, 0], [3, 4]], (5.0, 0.5, 0.5)).hint.startswith("5 is in pixels")
    True
    """
    (r0, c0), (r1, c1) = np.asarray(endpoints, dtype=float)
    expected = float(np.hypot((r1 - r0) * spacing[1], (c1 - c0) * spacing[2]))
    pixels = float(np.hypot(r1 - r0, c1 - c0))
    hint = ("Multiply the row difference by spacing[1] and the column difference by spacing[2] "
            "(both in mm), then take the hypotenuse: np.hypot(dr_mm, dc_mm).")
    if not _unanswered(answer):
        try:
            value = float(np.asarray(answer).item())
            if abs(value - pixels) < 0.01 * pixels and abs(pixels - expected) > 0.01 * expected:
                hint = f"{value:.4g} is in pixels: convert each difference to mm with the pixel spacing first."
            elif abs(value - abs(r1 - r0) * spacing[1] - abs(c1 - c0) * spacing[2]) < 0.01 * expected:
                hint = "You added the two sides; the diameter is the hypotenuse: np.hypot(dr_mm, dc_mm)."
        except (TypeError, ValueError):
            pass
    return check_number(answer, expected, rtol=0.01, unit="mm", hint=hint,
                        why="RECIST follows a lesion by this longest axial diameter from scan to scan.")
